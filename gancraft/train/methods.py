"""Methods plugged into the training loop: from scratch, GAN Cocktail's rooting and union
fine-tuning, the paper's baselines (TransferGAN, Freeze-D, EWC) and HyperDomainNet-style
domain vectors.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..checkpoint import Checkpoint
from ..errors import GancraftError
from ..nets.config import DiscriminatorConfig, GeneratorConfig
from ..nets.ops import LRELU_GAIN
from ..nets.stylegan2 import Discriminator, Generator
from .data import GeneratedData
from .loop import Method


class ScratchMethod(Method):
    """Random initialisation, every parameter trained (NVIDIA's `train.py` without a resume file)."""

    name = "scratch"

    def __init__(self, data: Any, g_cfg: GeneratorConfig, d_cfg: DiscriminatorConfig,
                 domain_names: Sequence[str] = ()):
        if g_cfg.img_resolution != data.resolution:
            raise GancraftError(f"data resolution {data.resolution} does not match the model's {g_cfg.img_resolution}")
        self.data, self.g_cfg, self.d_cfg = data, g_cfg, d_cfg
        self.domain_names = list(domain_names)

    def networks(self):
        return Generator(self.g_cfg), Discriminator(self.d_cfg), None

    def domains(self) -> dict[str, dict]:
        return {n: {"kind": "class", "class": i} for i, n in enumerate(self.domain_names)}

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "g_config": self.g_cfg.__dict__, "d_config": self.d_cfg.__dict__,
                "domains": self.domain_names}


def _start_nets(ckpt: Checkpoint, what: str) -> tuple[Generator, Discriminator, Generator]:
    """Trainable copies (G, D, G_ema) of a checkpoint; G falls back to G_ema when only that is stored."""
    where = ckpt.path or what
    if ckpt.d_config is None or "D" not in ckpt.nets:
        raise GancraftError(f"{where}: has no discriminator, which {what} needs to keep training "
                            "(NVIDIA pickles and native files from `train`/`root` carry one)")
    G = ckpt.generator("G" if "G" in ckpt.nets else None).requires_grad_(True)
    G_ema = ckpt.generator()
    D = ckpt.discriminator().requires_grad_(True)
    return G, D, G_ema


class RootingMethod(Method):
    """GAN Cocktail stage 1: copies of the root's G and D trained toward one source generator,
    whose images (drawn on the fly) are the only data."""

    name = "root"

    def __init__(self, root: Checkpoint, source: Checkpoint, truncation_psi: float = 1.0):
        self.root = root
        G_src = source.generator()
        self.data = GeneratedData([G_src], root.g_config.img_resolution, truncation_psi=truncation_psi)
        self.source_name = str(source.path) if source.path else "source"

    def networks(self):
        return _start_nets(self.root, "rooting")

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "source": self.source_name, "truncation_psi": self.data.truncation_psi}


def conditional_from_unconditional(ckpt: Checkpoint, num_classes: int, seed: int = 0
                                   ) -> tuple[Generator, Discriminator, Generator]:
    """(G, D, G_ema) with `num_classes` classes, built from the unconditional model's weights.

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
    then exactly the old output. The class mapping is new, so it trains at the full learning
    rate (lr multiplier 1 instead of NVIDIA's 0.01), for the same reason as above.
    """
    if ckpt.g_config.c_dim:
        raise GancraftError(f"{ckpt.path or 'start model'}: is already conditional (c_dim {ckpt.g_config.c_dim}); "
                            "expected an unconditional (e.g. averaged) model")
    G_old, D_old, G_ema_old = _start_nets(ckpt, "fine-tuning")
    torch.manual_seed(seed)
    g_cfg = dataclasses.replace(ckpt.g_config, c_dim=num_classes)
    d_cfg = dataclasses.replace(ckpt.d_config, c_dim=num_classes, mapping_lr_multiplier=1.0)
    out = []
    for old in (G_old, G_ema_old):
        new = Generator(g_cfg)
        _copy_matching(new, old)
        with torch.no_grad():
            fc0_new, fc0_old = new.mapping.fc0.weight, old.mapping.fc0.weight
            z_dim = old.z_dim
            fc0_new[:, :z_dim] = fc0_old * math.sqrt(fc0_new.shape[1] / fc0_old.shape[1])
        out.append(new)
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
    G, G_ema = out
    return G.requires_grad_(True), D.requires_grad_(True), G_ema.requires_grad_(False)


def _copy_matching(new: torch.nn.Module, old: torch.nn.Module) -> None:
    """Copy every tensor whose name and shape agree; the rest keep their fresh initialisation."""
    own = new.state_dict()
    keep = {k: v for k, v in old.state_dict().items() if k in own and own[k].shape == v.shape}
    own.update(keep)
    new.load_state_dict(own)


METHODS = ("union", "transfer", "freeze-d", "ewc", "scratch")


def parse_method(spec: str) -> tuple[str, float | None]:
    """'union', 'transfer', 'scratch', 'freeze-d=K' (or 'freeze-d K', 'freeze-d:K'), 'ewc=LAMBDA'."""
    parts = re.split(r"[=: ]+", spec.strip(), maxsplit=1)
    name = parts[0].lower()
    arg = parts[1] if len(parts) > 1 else None
    if name not in METHODS:
        raise GancraftError(f"--method: unknown method {spec!r} (choose from union, transfer, freeze-d=K, "
                            "ewc=LAMBDA, scratch)")
    if name in ("freeze-d", "ewc"):
        if arg is None:
            raise GancraftError(f"--method {name} needs a value: {name}={'K' if name == 'freeze-d' else 'LAMBDA'}")
        try:
            value = float(arg)
        except ValueError:
            raise GancraftError(f"--method {spec}: {arg!r} is not a number") from None
        if name == "freeze-d" and (value != int(value) or value < 0):
            raise GancraftError(f"--method {spec}: K must be a whole number of blocks >= 0")
        if value < 0:
            raise GancraftError(f"--method {spec}: lambda must be >= 0")
        return name, value
    if arg is not None:
        raise GancraftError(f"--method {name} takes no value (got {arg!r})")
    return ("union" if name == "transfer" else name), None


_DOMAIN_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class UnionMethod(Method):
    """GAN Cocktail stage 2 and the baselines of its tables, one conditional union GAN over sources.

    method:
      union     fine-tune the start model (converted to conditional, see
                `conditional_from_unconditional`) on every source's generated images. With the
                averaged rooted model as start this is GAN Cocktail; with one pretrained model it is
                TransferGAN (`transfer` is accepted as its name).
      freeze-d  the same, with D's first K blocks (highest resolutions) frozen (Freeze-D).
      ewc       the same, plus lambda * sum_i F_i (theta_i - theta*_i)^2 on G, F the diagonal Fisher
                information of G's non-saturating loss at the start weights theta*, estimated over
                `fisher_batches` batches of `fisher_batch` generated images (EWC, Li et al. 2020).
      scratch   the union architecture from random weights.
    params='domain-vector' (HyperDomainNet): G and its w_avg stay frozen; one vector per domain,
    applied as G.synthesis style_scale to every conv layer's style, is trained (D is trained too,
    conditional when there are several domains).
    """

    def __init__(self, start: Checkpoint, sources: dict[str, Checkpoint], method: str = "union",
                 value: float | None = None, params: str = "all", seed: int = 0, truncation_psi: float = 1.0,
                 fisher_batches: int = 8, fisher_batch: int = 4):
        if not sources:
            raise GancraftError("give at least one --domain NAME=SOURCE")
        for n in sources:
            if not _DOMAIN_NAME.match(n):
                raise GancraftError(f"--domain {n}: names may use letters, digits, '-' and '_' only")
        if params not in ("all", "domain-vector"):
            raise GancraftError(f"--params: expected all or domain-vector, got {params!r}")
        if params == "domain-vector" and method not in ("union",):
            raise GancraftError(f"--params domain-vector cannot be combined with --method {method}")
        self.start, self.names, self.method, self.value = start, list(sources), method, value
        self.params, self.seed = params, seed
        self.name = method if params == "all" else "domain-vector"
        self.fisher_batches, self.fisher_batch = fisher_batches, fisher_batch
        self.update_w_avg = params == "all"
        res = start.g_config.img_resolution
        self.data = GeneratedData([c.generator() for c in sources.values()], res, labelled=True,
                                  truncation_psi=truncation_psi)
        self.source_paths = {n: str(c.path) if c.path else n for n, c in sources.items()}
        self.fisher: list[torch.Tensor] = []
        self.anchor: list[torch.Tensor] = []
        self.vectors: torch.nn.ParameterDict | None = None
        if params == "domain-vector":
            if start.g_config.c_dim:
                raise GancraftError(f"{start.path or 'start model'}: domain vectors need an unconditional model")
            style_dim = start.generator().synthesis.style_dim
            self.vectors = torch.nn.ParameterDict(
                {n: torch.nn.Parameter(torch.zeros(style_dim)) for n in self.names})

    def networks(self):
        n = len(self.names)
        if self.params == "domain-vector":
            G, D, G_ema = _start_nets(self.start, "domain-vector training")
            G.requires_grad_(False)
            if n > 1:
                _, D, _ = conditional_from_unconditional(self.start, n, self.seed)
            return G, D, G_ema
        if self.start.g_config.c_dim == n and self.start.d_config is not None and self.start.d_config.c_dim == n:
            G, D, G_ema = _start_nets(self.start, "fine-tuning")  # already a union model: continue it
        else:
            G, D, G_ema = conditional_from_unconditional(self.start, n, self.seed)
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
        k = int(self.value)
        blocks = D.blocks()
        if k > len(blocks):
            raise GancraftError(f"--method freeze-d={k}: D has only {len(blocks)} blocks")
        frozen = {id(p) for b in blocks[:k] for p in b.parameters()}
        return [p for p in D.parameters() if id(p) not in frozen]

    def extra_modules(self):
        return {"domain_vectors": self.vectors} if self.vectors is not None else {}

    def g_conditioning(self, labels, G):
        if self.vectors is None:
            return super().g_conditioning(labels, G)
        table = torch.stack([self.vectors[n] for n in self.names])
        return None, table[labels]

    def setup(self, G, D, device):
        if self.method != "ewc":
            return
        self.anchor = [p.detach().clone() for p in G.parameters()]
        self.fisher = [torch.zeros_like(p) for p in G.parameters()]
        gen = torch.Generator().manual_seed(self.seed)
        D.requires_grad_(False)
        G.requires_grad_(True)
        for _ in range(self.fisher_batches):
            labels = torch.randint(0, len(self.names), [self.fisher_batch], generator=gen).to(device)
            z = torch.randn([self.fisher_batch, G.z_dim], generator=gen).to(device)
            c, scale = self.g_conditioning(labels, G)
            img = G(z, c, noise_mode="const", style_scale=scale)
            loss = F.softplus(-D(img, self.d_conditioning(labels, D))).mean()
            grads = torch.autograd.grad(loss, list(G.parameters()), allow_unused=True)
            for f, g in zip(self.fisher, grads):
                if g is not None:
                    f += g.detach().square() / self.fisher_batches
        D.requires_grad_(True)

    def g_penalty(self, G):
        if self.method != "ewc" or not self.value:
            return None
        total = sum(((p - a).square() * f).sum() for p, a, f in zip(G.parameters(), self.anchor, self.fisher))
        return self.value * total

    def domains(self) -> dict[str, dict]:
        if self.vectors is not None:
            return {n: {"kind": "vector", "tensor": f"domain_vectors.{n}"} for n in self.names}
        return {n: {"kind": "class", "class": i} for i, n in enumerate(self.names)}

    def describe(self) -> dict[str, Any]:
        return {"method": self.name, "value": self.value, "params": self.params, "domains": self.source_paths,
                "truncation_psi": self.data.truncation_psi}
