"""Methods plugged into the training loop: from scratch, GAN Cocktail's rooting and union
fine-tuning, the paper's baselines (TransferGAN, Freeze-D, EWC) and HyperDomainNet-style
domain vectors.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..checkpoint import Checkpoint, save
from ..errors import GancraftError
from ..latent.domains import check_modulation_order
from ..nets.config import DiscriminatorConfig, GeneratorConfig
from ..nets.ops import LRELU_GAIN
from ..nets.stylegan2 import DEFAULT_MODULATION, Discriminator, Generator
from .data import GeneratedData
from .loop import Method


class ScratchMethod(Method):
    """Random initialisation, every parameter trained (NVIDIA's `train.py` without a resume file)."""

    name = "scratch"

    def __init__(self, data: Any, g_cfg: GeneratorConfig, d_cfg: DiscriminatorConfig, domain_names: Sequence[str] = ()):
        if g_cfg.img_resolution != data.resolution:
            raise GancraftError(f"data resolution {data.resolution} does not match the model's {g_cfg.img_resolution}")
        self.data, self.g_cfg, self.d_cfg = data, g_cfg, d_cfg
        self.domain_names = list(domain_names)

    def networks(self):
        return Generator(self.g_cfg), Discriminator(self.d_cfg), None

    def domains(self) -> dict[str, dict]:
        return {n: {"kind": "class", "class": i} for i, n in enumerate(self.domain_names)}

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "g_config": self.g_cfg.__dict__,
            "d_config": self.d_cfg.__dict__,
            "domains": self.domain_names,
        }


def _start_nets(ckpt: Checkpoint, what: str) -> tuple[Generator, Discriminator, Generator]:
    """Trainable (G, D, G_ema) of a checkpoint. As in the official GAN Cocktail code, training
    starts from the stored G_ema (the model one samples from): G is a copy of it and G_ema
    starts equal to G."""
    where = ckpt.path or what
    if ckpt.d_config is None or "D" not in ckpt.nets:
        raise GancraftError(
            f"{where}: has no discriminator, which {what} needs to keep training "
            "(NVIDIA pickles and native files from `train`/`root` carry one)"
        )
    G = ckpt.generator().requires_grad_(True)
    D = ckpt.discriminator().requires_grad_(True)
    return G, D, copy.deepcopy(G).requires_grad_(False)


def class_names(ckpt: Checkpoint) -> list[str] | None:
    """The domain names of a class-conditional checkpoint in class order (None when it has no class table)."""
    table = {n: e["class"] for n, e in (ckpt.domains or {}).items() if isinstance(e, dict) and e.get("kind") == "class"}
    if not table or sorted(table.values()) != list(range(len(table))):
        return None
    return sorted(table, key=table.__getitem__)


class _OneClassData(GeneratedData):
    """One source generator's images, every one labelled with the same class of a K-class model."""

    def __init__(
        self, generator: torch.nn.Module, resolution: int, label: int, num_classes: int, truncation_psi: float = 1.0
    ):
        super().__init__([generator], resolution, truncation_psi=truncation_psi)
        self.label, self.num_classes = label, num_classes

    def batch(
        self, n: int, seed: int, step: int, rank: int, world: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        imgs, _ = super().batch(n, seed, step, rank, world, device)
        return imgs, torch.full([n], self.label, dtype=torch.int64, device=device)


class RootingMethod(Method):
    """GAN Cocktail stage 1 (model rooting), as the official code runs it: the root's G and D
    are made class-conditional with one class per domain of the future union model (new class
    pathway at random, `conditional_from_unconditional`), then trained on one source
    generator's images (drawn on the fly, the only data), all labelled with that source's
    class; generated images are drawn for that class only. Rooted models therefore share the
    root's weight space and class table, and their average starts class-aware."""

    name = "root"

    def __init__(
        self,
        root: Checkpoint,
        source: Checkpoint,
        classes: Sequence[str],
        source_class: str,
        seed: int = 0,
        truncation_psi: float = 1.0,
    ):
        _check_names(classes, "--classes")
        if source_class not in classes:
            raise GancraftError(f"--classes {','.join(classes)}: the source {source_class!r} is not one of them")
        self.root, self.classes, self.seed = root, list(classes), seed
        self.label = self.classes.index(source_class)
        self.data = _OneClassData(
            source.generator(),
            root.g_config.img_resolution,
            self.label,
            len(self.classes),
            truncation_psi=truncation_psi,
        )
        self.source_name = str(source.path) if source.path else "source"

    def networks(self):
        return union_start(self.root, self.classes, self.seed, "rooting")

    def sample_labels(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return torch.full([n], self.label, dtype=torch.int64)

    def domains(self) -> dict[str, dict]:
        return {n: {"kind": "class", "class": i} for i, n in enumerate(self.classes)}

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.name,
            "source": self.source_name,
            "classes": self.classes,
            "label": self.label,
            "truncation_psi": self.data.truncation_psi,
        }


def save_rooting_start(
    method: RootingMethod,
    out: str | os.PathLike,
    params: dict[str, Any],
    inputs: Sequence[str | os.PathLike],
    force: bool = False,
) -> Path:
    """Write the common start of every rooting run (the root with its new class pathway, G_ema = G):
    the paper averages the root itself with the rooted models, and this is its conditional form."""
    G, D, G_ema = method.networks()
    ckpt = Checkpoint.from_modules(G_ema=G_ema, G=G, D=D, domains=method.domains())
    ckpt = ckpt.with_operation("root", {**params, "seed": method.seed}, list(inputs))
    return save(ckpt, out, force=force, inputs=tuple(inputs))


def union_start(
    start: Checkpoint, classes: Sequence[str], seed: int, what: str
) -> tuple[Generator, Discriminator, Generator]:
    """(G, D, G_ema) of a model with one class per name: START itself when it already has exactly
    these classes in this order (a rooted or averaged model), else START made conditional."""
    if not start.g_config.c_dim:
        return conditional_from_unconditional(start, len(classes), seed)
    have = class_names(start)
    if have != list(classes) or start.d_config is None or start.d_config.c_dim != len(classes):
        raise GancraftError(
            f"{start.path or 'start model'}: its classes are {have or start.g_config.c_dim}, "
            f"expected {', '.join(classes)} in this order (give the domains in its class order)"
        )
    return _start_nets(start, what)


def conditional_from_unconditional(
    ckpt: Checkpoint, num_classes: int, seed: int = 0
) -> tuple[Generator, Discriminator, Generator]:
    """(G, D, G_ema) with `num_classes` classes, built from the unconditional model's G_ema and D.

    G: NVIDIA's mapping concatenates normalize(z) with normalize(embed(c)) before fc0. The z
    columns of fc0 are the old ones scaled by sqrt((z_dim + embed) / z_dim), undoing the change
    of fc0's equalised-lr gain; the new class columns keep their fresh random initialisation.
    They must: with the mapping's 0.01 learning-rate multiplier, zero-initialised class columns
    stay near zero for thousands of steps (measured: classes differed by < 3e-3 in pixels after
    12 kimg), so the union model would remain unconditional. With the class columns zeroed
    the new G computes exactly the old one, which is what the tests check.

    D: the projection discriminator outputs <out(x), cmap(c)> / sqrt(cmap_dim). Every row of the
    new `out` layer is the old single output row, and the last layer of the class mapping starts
    with zero weights and a bias that makes every cmap entry 1/sqrt(cmap_dim): the projection is
    then exactly the old output. The class mapping keeps NVIDIA's 0.01 learning-rate multiplier,
    as the official code's D does: at the full rate (tried before) Adam shrinks the projection
    toward zero within ~20 steps, since scaling every output down is the fastest way out of the
    large initial loss (the source's D calls the new domain's real images fake), and D then sits
    at chance (loss 2 log 2, G without signal) for the whole run: measured on the example models,
    rooting face -> cat for 2.5 kimg, D loss 1.39-1.40 in every 10-step block after the first at
    multiplier 1, 1.05-1.44 at 0.01.
    """
    if ckpt.g_config.c_dim:
        raise GancraftError(
            f"{ckpt.path or 'start model'}: is already conditional (c_dim {ckpt.g_config.c_dim}); "
            "expected an unconditional (e.g. averaged) model"
        )
    G_old, D_old, _ = _start_nets(ckpt, "fine-tuning")
    torch.manual_seed(seed)
    g_cfg = dataclasses.replace(ckpt.g_config, c_dim=num_classes)
    d_cfg = dataclasses.replace(ckpt.d_config, c_dim=num_classes)
    G = Generator(g_cfg)
    _copy_matching(G, G_old)
    with torch.no_grad():
        fc0_new, fc0_old = G.mapping.fc0.weight, G_old.mapping.fc0.weight
        fc0_new[:, : G_old.z_dim] = fc0_old * math.sqrt(fc0_new.shape[1] / fc0_old.shape[1])
    D = Discriminator(d_cfg)
    _copy_matching(D, D_old)
    with torch.no_grad():
        D.b4.out.weight.copy_(D_old.b4.out.weight.expand_as(D.b4.out.weight))
        D.b4.out.bias.copy_(D_old.b4.out.bias.expand_as(D.b4.out.bias))
        last = getattr(D.mapping, f"fc{D.mapping.num_layers - 1}")
        cmap_dim = last.weight.shape[0]
        last.weight.zero_()
        # bias_act(lrelu) of gain * bias must give 1/sqrt(cmap_dim)
        last.bias.fill_(1 / math.sqrt(cmap_dim) / (LRELU_GAIN * last.bias_gain))
    # one class pathway: G_ema is a copy of G, as in the official code (two conversions would
    # draw two different random pathways, and the scored G_ema would keep its own for long)
    return G.requires_grad_(True), D.requires_grad_(True), copy.deepcopy(G).requires_grad_(False)


def _copy_matching(new: torch.nn.Module, old: torch.nn.Module) -> None:
    """Copy every tensor whose name and shape agree; the rest keep their fresh initialisation."""
    own = new.state_dict()
    keep = {k: v for k, v in old.state_dict().items() if k in own and own[k].shape == v.shape}
    own.update(keep)
    new.load_state_dict(own)


METHODS = ("union", "transfer", "freeze-d", "ewc", "scratch")
_DOMAIN_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


MethodValue = float | tuple[float, float, float] | None


def parse_method(spec: str) -> tuple[str, MethodValue]:
    """'union', 'transfer', 'scratch', 'freeze-d=K' (or 'freeze-d K', 'freeze-d:K'), 'ewc=LAMBDA' or
    'ewc=MAPPING,SYNTHESIS,D' (the official code's three lambdas; one value sets all three)."""
    parts = re.split(r"[=: ]+", spec.strip(), maxsplit=1)
    name = parts[0].lower()
    arg = parts[1] if len(parts) > 1 else None
    if name not in METHODS:
        raise GancraftError(
            f"--method: unknown method {spec!r} (choose from union, transfer, freeze-d=K, ewc=LAMBDA, scratch)"
        )
    if name in ("freeze-d", "ewc"):
        if arg is None:
            raise GancraftError(f"--method {name} needs a value: {name}={'K' if name == 'freeze-d' else 'LAMBDA'}")
        try:
            values = [float(v) for v in arg.split(",")]
        except ValueError:
            raise GancraftError(f"--method {spec}: {arg!r} is not a number") from None
        if any(not (v >= 0 and math.isfinite(v)) for v in values):
            raise GancraftError(f"--method {spec}: values must be finite and >= 0")
        if name == "freeze-d":
            if len(values) != 1 or values[0] != int(values[0]):
                raise GancraftError(f"--method {spec}: K must be a whole number of D layers >= 0")
            return name, values[0]
        if len(values) not in (1, 3):
            raise GancraftError(f"--method {spec}: give one lambda or three (mapping,synthesis,D)")
        return name, tuple(values * 3 if len(values) == 1 else values)
    if arg is not None:
        raise GancraftError(f"--method {name} takes no value (got {arg!r})")
    return ("union" if name == "transfer" else name), None


def _check_names(names: Sequence[str], option: str) -> None:
    for n in names:
        if not _DOMAIN_NAME.match(n):
            raise GancraftError(f"{option} {n}: names may use letters, digits, '-' and '_' only")
    dup = next((n for n in names if list(names).count(n) > 1), None)
    if dup is not None:
        raise GancraftError(f"{option}: {dup!r} is given twice")


def freeze_d_layers(D: Discriminator, k: int) -> list[torch.nn.Module]:
    """The first K layers of D counted from the image side, as the official Freeze-D counts them:
    per block (highest resolution first) fromrgb (first block only), conv0, conv1, skip."""
    layers = [m for b in D.blocks() for m in ([b.fromrgb] if b.in_channels == 0 else []) + [b.conv0, b.conv1, b.skip]]
    if k > len(layers):
        raise GancraftError(f"--method freeze-d={k}: D has only {len(layers)} layers before its epilogue")
    return layers[:k]


class UnionMethod(Method):
    """GAN Cocktail stage 2 and the baselines of its tables, one conditional union GAN over sources.

    method:
      union     fine-tune the start model on every source's generated images. With the average
                of rooted models (already conditional, one class per domain) as start this is GAN
                Cocktail; with one pretrained unconditional model (converted by
                `conditional_from_unconditional`) it is TransferGAN (`transfer` is accepted too).
      freeze-d  the same, with D's first K layers from the image side frozen (Freeze-D, counted
                as the official code counts them, see `freeze_d_layers`).
      ewc       the same, plus lambda * sum_i F_i (theta_i - theta*_i)^2 with separate lambdas for
                G's mapping, G's synthesis and D (the D term joins D's loss); F is the diagonal
                Fisher information of G's non-saturating loss at the start weights theta*, over
                `fisher_samples` generated images (random noise) in batches of `fisher_batch`.
                The class embeddings are not held (the official code skips them).
      scratch   the union architecture from random weights.
    params='domain-vector' (HyperDomainNet): G and its w_avg stay frozen; one vector per domain,
    applied as G.synthesis style_scale to every conv layer in the `modulation` order (default the
    official code's, after demodulation; recorded in each domain's entry), is trained (D is trained
    too, conditional when there are several domains).
    """

    def __init__(
        self,
        start: Checkpoint,
        sources: dict[str, Checkpoint],
        method: str = "union",
        value: MethodValue = None,
        params: str = "all",
        seed: int = 0,
        truncation_psi: float = 1.0,
        fisher_samples: int = 50000,
        fisher_batch: int = 32,
        modulation: str = DEFAULT_MODULATION,
    ):
        if not sources:
            raise GancraftError("give at least one --domain NAME=SOURCE")
        _check_names(list(sources), "--domain")
        if params not in ("all", "domain-vector"):
            raise GancraftError(f"--params: expected all or domain-vector, got {params!r}")
        if params == "domain-vector" and method not in ("union",):
            raise GancraftError(f"--params domain-vector cannot be combined with --method {method}")
        if method == "ewc" and not isinstance(value, tuple):
            value = (float(value or 0.0),) * 3
        if method == "ewc" and fisher_samples < fisher_batch:
            raise GancraftError(f"--fisher-samples {fisher_samples}: needs at least one batch of {fisher_batch}")
        have = class_names(start) if start.g_config.c_dim else None
        if have is not None:
            # a rooted/averaged start fixes which class is which domain: follow its order
            if set(have) != set(sources):
                raise GancraftError(
                    f"{start.path or 'start model'}: its classes are {', '.join(have)}; "
                    f"--domain gives {', '.join(sources)}"
                )
            sources = {n: sources[n] for n in have}
        self.start, self.names, self.method, self.value = start, list(sources), method, value
        self.params, self.seed = params, seed
        self.modulation = check_modulation_order(modulation)
        self.name = method if params == "all" else "domain-vector"
        self.fisher_samples, self.fisher_batch = fisher_samples, fisher_batch
        self.update_w_avg = params == "all"
        res = start.g_config.img_resolution
        self.data = GeneratedData(
            [c.generator() for c in sources.values()], res, labelled=True, truncation_psi=truncation_psi
        )
        self.source_paths = {n: str(c.path) if c.path else n for n, c in sources.items()}
        self.fisher: dict[str, dict[str, torch.Tensor]] = {}
        self.anchor: dict[str, dict[str, torch.Tensor]] = {}
        self.vectors: torch.nn.ParameterDict | None = None
        if params == "domain-vector":
            if start.g_config.c_dim:
                raise GancraftError(f"{start.path or 'start model'}: domain vectors need an unconditional model")
            style_dim = start.generator().synthesis.style_dim
            self.vectors = torch.nn.ParameterDict({n: torch.nn.Parameter(torch.zeros(style_dim)) for n in self.names})

    def networks(self):
        n = len(self.names)
        if self.params == "domain-vector":
            G, D, G_ema = _start_nets(self.start, "domain-vector training")
            G.requires_grad_(False)
            if n > 1:
                _, D, _ = conditional_from_unconditional(self.start, n, self.seed)
            return G, D, G_ema
        G, D, G_ema = union_start(self.start, self.names, self.seed, "fine-tuning")
        if self.method == "scratch":
            torch.manual_seed(self.seed)
            G, D = Generator(G.cfg), Discriminator(D.cfg)
            G_ema = copy.deepcopy(G)
        return G, D, G_ema

    def g_params(self, G):
        return [] if self.params == "domain-vector" else list(G.parameters())

    def d_params(self, D):
        if self.method != "freeze-d":
            return list(D.parameters())
        frozen = {id(p) for layer in freeze_d_layers(D, int(self.value)) for p in layer.parameters()}
        return [p for p in D.parameters() if id(p) not in frozen]

    def extra_modules(self):
        return {"domain_vectors": self.vectors} if self.vectors is not None else {}

    def g_conditioning(self, labels, G):
        if self.vectors is None:
            return super().g_conditioning(labels, G)
        table = torch.stack([self.vectors[n] for n in self.names])
        return None, table[labels]

    @staticmethod
    def _held(net: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        """Parameters EWC holds to their start values: all but the class embedding."""
        return {k: p for k, p in net.named_parameters() if not k.startswith("mapping.embed.")}

    def setup(self, G, D, device):
        if self.method != "ewc":
            return
        nets = {"G": G, "D": D}
        self.anchor = {k: {n: p.detach().clone() for n, p in self._held(net).items()} for k, net in nets.items()}
        self.fisher = {k: {n: torch.zeros_like(p) for n, p in self._held(net).items()} for k, net in nets.items()}
        gen = torch.Generator().manual_seed(self.seed)
        noise_seed = int(torch.randint(0, 2**62, [], generator=gen))
        batches = self.fisher_samples // self.fisher_batch
        G.requires_grad_(True)
        D.requires_grad_(True)
        for i in range(batches):
            labels = torch.randint(0, len(self.names), [self.fisher_batch], generator=gen).to(device)
            z = torch.randn([self.fisher_batch, G.z_dim], generator=gen).to(device)
            torch.manual_seed(noise_seed + i)
            c, scale = self.g_conditioning(labels, G)
            img = G(z, c, noise_mode="random", style_scale=scale)
            loss = F.softplus(-D(img, self.d_conditioning(labels, D))).mean()
            params = {k: self._held(net) for k, net in nets.items()}
            flat = [p for ps in params.values() for p in ps.values()]
            grads = iter(torch.autograd.grad(loss, flat, allow_unused=True))
            for k, ps in params.items():
                for n in ps:
                    g = next(grads)
                    if g is not None:
                        self.fisher[k][n] += g.detach().square() / batches

    def _ewc(self, net: torch.nn.Module, which: str, prefix: str = "") -> torch.Tensor:
        return sum(
            ((p - self.anchor[which][n]).square() * self.fisher[which][n]).sum()
            for n, p in self._held(net).items()
            if n.startswith(prefix)
        )

    def g_penalty(self, G):
        if self.method != "ewc":
            return None
        lam_map, lam_syn, _ = self.value
        return lam_map * self._ewc(G, "G", "mapping.") + lam_syn * self._ewc(G, "G", "synthesis.")

    def d_penalty(self, D):
        if self.method != "ewc" or not self.value[2]:
            return None
        return self.value[2] * self._ewc(D, "D")

    def domains(self) -> dict[str, dict]:
        if self.vectors is not None:
            return {
                n: {"kind": "vector", "tensor": f"domain_vectors.{n}", "modulation": self.modulation}
                for n in self.names
            }
        return {n: {"kind": "class", "class": i} for i, n in enumerate(self.names)}

    def describe(self) -> dict[str, Any]:
        out = {
            "method": self.name,
            "value": self.value,
            "params": self.params,
            "domains": self.source_paths,
            "truncation_psi": self.data.truncation_psi,
        }
        if self.method == "ewc":
            out["fisher_samples"] = self.fisher_samples
        if self.vectors is not None:
            out["modulation"] = self.modulation
        return out
