"""HyperDomainNet (Alanov et al., NeurIPS 2022): one network maps a text prompt to a domain vector.

A domain vector d scales every conv layer of a frozen StyleGAN2 by (1 + d) along its input channels
(``G.synthesis(ws, style_scale=d, modulation=...)``, after demodulation unless the settings say
otherwise; the order is stored with the hyper-network); its width is the sum of the conv layers' input channels,
about 6k at 1024 px against ~30M generator weights. Instead of optimising one d per domain
(`text_domain.train_text_vector`), `HyperNetwork` predicts d from the CLIP text embedding of the
domain's description and is trained on many prompts at once, so any prompt -- seen in training
or not -- gets a vector.

Training (`train_hyper`) follows the official code's ``td_multiple.yaml`` (trainer
``td_multiple_resample_and_convex``) and never touches the generator. Every step draws B
style-mixed latents and B training prompts (with replacement), then

- mixes the prompts' embeddings inside their convex hull (Dirichlet weights, one mixture per
  image), so the network learns the space between prompts and not only the prompts themselves;
- moves each mixed target embedding to a random point within cos >= 0.95 of it (resampling),
  the second mechanism behind generalising to unseen prompts;
- renders source and adapted images with independent noise, crops each at a random 80% window
  and encodes them with CLIP;
- minimises the directional CLIP loss (StyleGAN-NADA) plus 0.4 x the target-target direction
  loss, whose pairs differ in latent and domain. gancraft's in-domain angle and domain-norm
  terms (both exist as options in the official loss registry) are off unless weighted.

The network itself, and reading it back from a checkpoint, are in latent/hyper.py.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from ..checkpoint import Checkpoint
from ..errors import GancraftError
from ..latent.domains import check_modulation_order
from ..latent.hyper import HYPER_PREFIX, MAPPER, HyperConfig, HyperNetwork, check_clip_matches, load_hyper, style_dims
from ..latent.hyper import parameters_per_domain as parameters_per_domain  # cli/hyper.py reads it here
from ..nets.stylegan2 import DEFAULT_MODULATION
from . import text_domain as td

# -- prompts ----------------------------------------------------------------------------------


def read_prompts(path: str | os.PathLike) -> list[str]:
    """One prompt per line; blank lines and lines starting with '#' are skipped."""
    p = Path(path)
    if not p.is_file():
        raise GancraftError(f"{p}: prompts file not found")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GancraftError(f"{p}: prompts file is not UTF-8 text") from None
    except OSError as exc:
        raise GancraftError(f"{p}: cannot read prompts file ({exc.strerror})") from None
    prompts = [line.strip() for line in text.splitlines()]
    prompts = [q for q in prompts if q and not q.startswith("#")]
    if not prompts:
        raise GancraftError(f"{p}: no prompts (write one prompt per line)")
    return check_prompts(prompts, where=str(p))


def check_prompts(prompts: Sequence[str], source_prompt: str | None = None, where: str = "prompts") -> list[str]:
    prompts = [q.strip() for q in prompts]
    if not prompts or any(not q for q in prompts):
        raise GancraftError(f"{where}: prompts must be non-empty text")
    seen: set[str] = set()
    for q in prompts:
        if q in seen:
            raise GancraftError(f"{where}: prompt {q!r} appears twice")
        seen.add(q)
    if source_prompt is not None and source_prompt.strip() in seen:
        raise GancraftError(f"{where}: prompt {source_prompt.strip()!r} is the source prompt; nothing to learn")
    return prompts


# -- training ---------------------------------------------------------------------------------


@dataclass
class HyperSettings:
    """Defaults of the official td_multiple.yaml."""

    steps: int = 10000
    batch: int = 8  # images per step, each with its own latent and prompt mixture
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.999)
    seed: int = 0
    source_prompt: str = td.SOURCE_PROMPT
    width: int = 512
    depth: int = 4
    head_depth: int = 2
    tt_weight: float = 0.4  # target-target direction
    angle_weight: float = 0.0  # in-domain angle consistency (gancraft's addition)
    norm_weight: float = 0.0  # domain-norm, mean square of the vectors (gancraft's addition)
    convex_hull: bool = True
    resample_cos: float | None = 0.95  # None: targets are the (mixed) prompts themselves
    crop: float | None = 0.8  # None: CLIP sees whole images
    style_mixing: float = 0.9
    templates: bool = True  # loss targets averaged over the prompt templates
    truncation_psi: float = 1.0
    modulation: str = DEFAULT_MODULATION

    def validate(self) -> "HyperSettings":
        if self.steps < 1:
            raise GancraftError(f"--steps must be at least 1, got {self.steps}")
        if self.batch < 2:
            raise GancraftError(
                f"--batch must be at least 2 (the hyper-network's BatchNorm and the "
                f"target-target pairs need two images), got {self.batch}"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise GancraftError(f"--lr must be a positive number, got {self.lr}")
        for opt, v in (
            ("--tt-weight", self.tt_weight),
            ("--angle-weight", self.angle_weight),
            ("--norm-weight", self.norm_weight),
        ):
            if not (v >= 0 and math.isfinite(v)):
                raise GancraftError(f"{opt} must be a finite number >= 0, got {v}")
        if self.resample_cos is not None and not 0 < self.resample_cos <= 1:
            raise GancraftError(f"--resample-cos must be in (0, 1], got {self.resample_cos}")
        if self.crop is not None and not 0 < self.crop <= 1:
            raise GancraftError(f"--crop must be a fraction in (0, 1], got {self.crop}")
        if not 0 <= self.style_mixing <= 1:
            raise GancraftError(f"--style-mixing must be a probability in [0, 1], got {self.style_mixing}")
        if not self.source_prompt.strip():
            raise GancraftError("--source-prompt must be non-empty text")
        check_modulation_order(self.modulation)
        if min(self.width, self.depth, self.head_depth) < 1:
            raise GancraftError(
                f"hyper-network width and depths must be positive, got {self.width}, {self.depth}, {self.head_depth}"
            )
        return self


@dataclass
class HyperResult:
    hyper: HyperNetwork
    prompts: list[str]
    settings: HyperSettings
    clip_model: str
    clip_name: str
    generator: nn.Module  # the frozen generator the losses were computed with
    log: list[dict[str, float]] = field(default_factory=list)


class _Texts:
    """CLIP text embeddings computed once: the hyper-network's inputs (each prompt alone, as the
    official mapper inputs) and the loss targets (each prompt in every template)."""

    def __init__(self, clip, prompts: Sequence[str], source_prompt: str, templates: bool):
        forms = td.prompt_templates() if templates else None
        with torch.no_grad():
            self.inputs = clip.encode_text(list(prompts)).detach()
        self.targets = td.templated_text(clip, prompts, forms)  # [P, T, e]
        self.source = td.templated_text(clip, [source_prompt], forms)[0]  # [T, e]


def check_generator(ckpt: Checkpoint) -> None:
    td.check_vector_parent(ckpt, "hyper-networks")
    if any(k.startswith(HYPER_PREFIX) for k in ckpt.tensors):
        raise GancraftError(
            f"{ckpt.path or 'checkpoint'}: already holds a hyper-network; "
            "train a new one from the generator it was made from"
        )


def clip_terms(
    src_enc: torch.Tensor, ada_enc: torch.Tensor, src_text: torch.Tensor, trg_text: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The CLIP loss terms of B image pairs; src_text [T, e], trg_text [B, T, e]."""
    return {
        "direction": td.directional_loss(src_enc, ada_enc, td.text_directions(src_text, trg_text)).mean(),
        "tt_direction": td.target_target_loss(ada_enc, trg_text),
        "in_domain_angle": td.in_domain_angle_loss(src_enc, ada_enc),
    }


def weighted_total(terms: dict[str, torch.Tensor], settings: HyperSettings) -> torch.Tensor:
    return (
        terms["direction"]
        + settings.tt_weight * terms["tt_direction"]
        + settings.angle_weight * terms["in_domain_angle"]
        + settings.norm_weight * terms["domain_norm"]
    )


def hyper_step_losses(
    G: nn.Module, hyper: HyperNetwork, clip, texts: _Texts, settings: HyperSettings, device: torch.device
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One official td_multiple batch: draws latents, prompts, mixtures, resampled targets and crops
    from the global RNG (see text_domain.seeded) and returns the total loss and its terms."""
    b = settings.batch
    ws = td.mixing_latents(G, b, settings.style_mixing, device, settings.truncation_psi)
    idx = torch.randint(0, texts.inputs.shape[0], [b]).to(device)
    inputs, targets = texts.inputs[idx], texts.targets[idx]
    if settings.convex_hull:
        alphas = td.dirichlet_alphas(b).to(device)
        inputs, targets = td.convex_mix(inputs, alphas), td.convex_mix(targets, alphas)
    if settings.resample_cos is not None:
        targets = td.resample_near(targets, settings.resample_cos)
    d = hyper(inputs)
    src_img, ada_img = td.render_pair(G, ws, d, settings.modulation)
    if settings.crop is not None:
        # independent windows for the two images, as the official trainer draws them
        src_img, ada_img = td.random_crop(src_img, settings.crop), td.random_crop(ada_img, settings.crop)
    # the official td_multiple trainer compares raw (unnormalised) CLIP image embeddings
    src_enc = clip.encode_images(src_img, normalize=False).detach()
    ada_enc = clip.encode_images(ada_img, normalize=False)
    terms = {**clip_terms(src_enc, ada_enc, texts.source, targets), "domain_norm": d.square().mean()}
    return weighted_total(terms, settings), terms


def train_hyper(
    ckpt: Checkpoint,
    prompts: Sequence[str],
    clip,
    settings: HyperSettings | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    clip_model: str = "ViT-B-32",
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> HyperResult:
    """Train a HyperNetwork for ckpt's (frozen) generator on `prompts` with `clip` (a metrics.clip.ClipModel).

    Deterministic for a given seed on CPU; the caller's RNG state is left as it was. The
    generator's weights are never given to the optimiser.
    """
    from tqdm import tqdm

    settings = (settings or HyperSettings()).validate()
    check_generator(ckpt)
    prompts = check_prompts(prompts, settings.source_prompt)
    device = torch.device(device)
    G = ckpt.generator(device=device)
    texts = _Texts(clip, prompts, settings.source_prompt, settings.templates)
    cfg = HyperConfig(
        embed_dim=texts.inputs.shape[1],
        style_dims=style_dims(G),
        width=settings.width,
        depth=settings.depth,
        head_depth=settings.head_depth,
    )
    with td.seeded(settings.seed, device):
        hyper = HyperNetwork(cfg).to(device).train()
        params = list(hyper.parameters())
        opt = torch.optim.Adam(params, lr=settings.lr, betas=settings.betas)
        result = HyperResult(hyper, list(prompts), settings, clip_model, clip.name, G)
        bar = tqdm(
            range(settings.steps),
            desc="hyper",
            unit="step",
            disable=not progress,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        )
        for step in bar:
            total, terms = hyper_step_losses(G, hyper, clip, texts, settings, device)
            td.optimizer_step(
                opt,
                total,
                params,
                step,
                {"loss": total.item(), **{n: v.item() for n, v in terms.items()}},
                "hyper-network training",
                result.log,
                on_step,
                bar,
            )
    hyper.eval().requires_grad_(False)
    return result


@torch.no_grad()
def evaluate(
    ckpt: Checkpoint,
    hyper: HyperNetwork | None,
    clip,
    prompts: Sequence[str],
    source_prompt: str = td.SOURCE_PROMPT,
    n: int = 8,
    seed: int = 1234,
    device: str | torch.device = "cpu",
    modulation: str = DEFAULT_MODULATION,
) -> dict[str, float]:
    """Mean loss terms over every prompt on n fixed latents, whole images, fixed noise and the prompts'
    own templated embeddings (hyper None: the untouched generator, d = 0); vectors applied in order
    `modulation`."""
    device = torch.device(device)
    G = ckpt.generator(device=device)
    prompts = check_prompts(prompts, source_prompt)
    texts = _Texts(clip, prompts, source_prompt, templates=True)
    z = torch.randn([n, G.z_dim], generator=torch.Generator().manual_seed(seed)).to(device)
    ws = G.mapping(z, None)
    src_enc = clip.encode_images(G.synthesis(ws, noise_mode="const"), normalize=False)
    sums: dict[str, float] = {}
    for k in range(len(prompts)):
        d = (
            hyper.to(device).eval()(texts.inputs[k : k + 1])
            if hyper is not None
            else torch.zeros([1, G.synthesis.style_dim], device=device)
        ).expand(n, -1)
        ada_enc = clip.encode_images(
            G.synthesis(ws, noise_mode="const", style_scale=d, modulation=modulation), normalize=False
        )
        terms = clip_terms(src_enc, ada_enc, texts.source, texts.targets[k : k + 1].expand(n, -1, -1))
        terms["domain_norm"] = d.square().mean()
        for name, v in terms.items():
            if name != "tt_direction":  # one prompt at a time: no target-target pairs
                sums[name] = sums.get(name, 0.0) + v.item() / len(prompts)
    return sums


# -- checkpoints ------------------------------------------------------------------------------


def hyper_checkpoint(
    parent: Checkpoint,
    result: HyperResult,
    params: dict[str, Any] | None = None,
    inputs: Sequence[str | os.PathLike] = (),
) -> Checkpoint:
    """parent's tensors, domains and history unchanged, plus `hyper.*` tensors, extra["hyper"] and prompt domains."""
    clash = [q for q in result.prompts if q in (parent.domains or {})]
    if clash:
        raise GancraftError(f"prompt {clash[0]!r} is already a domain name of {parent.path or 'the checkpoint'}")
    tensors = dict(parent.tensors)
    for name, t in result.hyper.state_dict().items():
        tensors[HYPER_PREFIX + name] = t.detach().cpu().contiguous().clone()
    domains = dict(parent.domains or {})
    domains.update({q: {"kind": "hyper", "prompt": q} for q in result.prompts})
    extra = dict(parent.extra or {})
    extra["hyper"] = {
        "mapper": MAPPER,
        "architecture": asdict(result.hyper.cfg),
        "clip_model": result.clip_model,
        "clip": result.clip_name,
        "source_prompt": result.settings.source_prompt,
        "modulation": result.settings.modulation,
        "prompts": list(result.prompts),
        "steps": result.settings.steps,
        "final": {k: v for k, v in result.log[-1].items() if k != "step"} if result.log else {},
    }
    ckpt = Checkpoint(
        tensors=tensors,
        g_config=parent.g_config,
        d_config=parent.d_config,
        domains=domains,
        history=list(parent.history),
        extra=extra,
        source_format="native",
    )
    return ckpt.with_operation("hyper", {**(params or {}), "settings": asdict(result.settings)}, list(inputs))


@torch.no_grad()
def domain_vectors_for_prompts(
    ckpt: Checkpoint, prompts: Sequence[str], clip, hyper: HyperNetwork | None = None
) -> torch.Tensor:
    """[len(prompts), style_dim] domain vectors (G's style_scale, in the order `PromptVectors.modulation`
    reads from ckpt), on clip's device."""
    check_clip_matches(ckpt, clip)
    hyper = (hyper or load_hyper(ckpt)).to(clip.device)
    return hyper(clip.encode_text(list(prompts)))


def domain_vector_for_prompt(ckpt: Checkpoint, prompt: str, clip, hyper: HyperNetwork | None = None) -> torch.Tensor:
    """The domain vector [style_dim] for any prompt, seen in training or not."""
    return domain_vectors_for_prompts(ckpt, [prompt], clip, hyper)[0]
