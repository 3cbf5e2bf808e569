"""HyperDomainNet (Alanov et al., NeurIPS 2022): one network maps a text prompt to a domain vector.

A domain vector d scales the style of every conv layer of a frozen StyleGAN2 by (1 + d)
(``G.synthesis(ws, style_scale=d)``); its width is the sum of the conv layers' input channels,
about 6k at 1024 px against ~30M generator weights. Instead of optimising one d per domain,
`HyperNetwork` predicts d from the CLIP text embedding of the domain's description and is
trained on many prompts at once, so any prompt -- seen in training or not -- gets a vector.

Training (`train_hyper`) never touches the generator: every step takes M latents and K of the
prompts, renders the K x M adapted images through the modulation path, and minimises

- the directional CLIP loss (StyleGAN-NADA): the CLIP image change source -> adapted should
  point along the text change source prompt -> target prompt;
- the target-target direction loss: for the same latent, the image change between two target
  domains should point along the text change between their prompts (this is what ties the
  domains to each other when one network serves them all);
- the in-domain angle consistency loss: pairwise cosines between the CLIP embeddings of one
  domain's images should equal those of the source images, which keeps the adapted images as
  varied as the source ones instead of collapsing onto one CLIP-preferred picture;
- a domain-norm penalty: the mean square of the predicted vectors, which keeps each domain no
  further from the source generator than its losses ask for.
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
import torch.nn.functional as F

from ..checkpoint import Checkpoint
from ..errors import GancraftError
from .data import step_seed

HYPER_PREFIX = "hyper."


@dataclass
class HyperConfig:
    """Architecture: CLIP text embedding (embed_dim) -> MLP backbone -> one linear head per conv layer."""

    embed_dim: int
    style_dims: list[int]   # input widths of G's conv layers, in style_scale order
    width: int = 512
    depth: int = 2          # backbone layers

    @property
    def out_dim(self) -> int:
        return sum(self.style_dims)


class HyperNetwork(nn.Module):
    """Unit CLIP text embeddings [N, embed_dim] -> domain vectors [N, sum(style_dims)].

    The heads start at exactly zero, so before training every prompt gives d = 0, i.e. the
    original generator; the backbone still receives gradients through the heads from step two.
    """

    def __init__(self, cfg: HyperConfig):
        super().__init__()
        if cfg.depth < 1 or cfg.width < 1 or cfg.embed_dim < 1 or not cfg.style_dims:
            raise GancraftError(f"hyper-network: invalid architecture {asdict(cfg)}")
        self.cfg = cfg
        layers: list[nn.Module] = []
        width_in = cfg.embed_dim
        for _ in range(cfg.depth):
            layers += [nn.Linear(width_in, cfg.width), nn.LeakyReLU(0.2)]
            width_in = cfg.width
        self.backbone = nn.Sequential(*layers)
        self.heads = nn.ModuleList(nn.Linear(cfg.width, c) for c in cfg.style_dims)
        for head in self.heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, text_emb: torch.Tensor) -> torch.Tensor:
        h = self.backbone(text_emb.float())
        return torch.cat([head(h) for head in self.heads], dim=-1)


def style_dims(G: nn.Module) -> list[int]:
    """What each conv layer's slice of a domain vector scales: its input channels."""
    return [info.in_channels for info in G.synthesis.layers() if info.kind == "conv"]


def parameters_per_domain(ckpt: Checkpoint) -> int:
    """Width of one domain vector of this generator (sum of its conv layers' style widths)."""
    g = ckpt.g_config
    res = [2 ** i for i in range(2, int(math.log2(g.img_resolution)) + 1)]
    return sum(g.channels(4) if r == 4 else g.channels(r // 2) + g.channels(r) for r in res)


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


# -- losses -----------------------------------------------------------------------------------

def _pair_mask(n: int, device: torch.device) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool, device=device).triu(diagonal=1)


def directional_loss(src_img: torch.Tensor, adapted_img: torch.Tensor, src_text: torch.Tensor,
                     target_text: torch.Tensor) -> torch.Tensor:
    """1 - cos(E_I(adapted) - E_I(src), E_T(target) - E_T(source)) per image.

    src_img [M, e], adapted_img [K, M, e], src_text [e], target_text [K, e] -> [K, M].
    Same quantity as clip_losses.DirectionalClipLoss, batched over K prompts sharing M sources.
    """
    img_dir = F.normalize(adapted_img - src_img.unsqueeze(0), dim=-1)
    text_dir = F.normalize(target_text - src_text.unsqueeze(0), dim=-1)
    return 1 - (img_dir * text_dir.unsqueeze(1)).sum(-1)


def target_target_loss(adapted_img: torch.Tensor, target_text: torch.Tensor) -> torch.Tensor:
    """Mean over latents and prompt pairs of 1 - cos(E_I(x_l) - E_I(x_k), E_T(t_l) - E_T(t_k))."""
    k = adapted_img.shape[0]
    if k < 2:
        return adapted_img.new_zeros(())
    mask = _pair_mask(k, adapted_img.device)
    img_d = F.normalize(adapted_img.unsqueeze(0) - adapted_img.unsqueeze(1), dim=-1)  # [K, K, M, e]
    txt_d = F.normalize(target_text.unsqueeze(0) - target_text.unsqueeze(1), dim=-1)  # [K, K, e]
    cos = (img_d * txt_d.unsqueeze(2)).sum(-1)  # [K, K, M]
    return (1 - cos[mask]).mean()


def in_domain_angle_loss(src_img: torch.Tensor, adapted_img: torch.Tensor) -> torch.Tensor:
    """Mean squared change of the pairwise cosines between one domain's images, over domains."""
    m = src_img.shape[0]
    if m < 2:
        return adapted_img.new_zeros(())
    mask = _pair_mask(m, src_img.device)
    src = F.normalize(src_img, dim=-1)
    ada = F.normalize(adapted_img, dim=-1)
    src_cos = (src @ src.T)[mask]                        # [P]
    ada_cos = (ada @ ada.transpose(1, 2))[:, mask]       # [K, P]
    return (ada_cos - src_cos.unsqueeze(0)).square().mean()


# -- training ---------------------------------------------------------------------------------

@dataclass
class HyperSettings:
    steps: int = 2000
    batch: int = 8                 # images per step: K prompts x M latents
    lr: float = 1e-4
    seed: int = 0
    source_prompt: str = "a photo"
    width: int = 512
    depth: int = 2
    tt_weight: float = 0.1         # target-target direction
    angle_weight: float = 0.5      # in-domain angle consistency
    norm_weight: float = 0.1       # domain-norm (mean square of the vectors)
    truncation_psi: float = 1.0

    def validate(self) -> "HyperSettings":
        if self.steps < 1:
            raise GancraftError(f"--steps must be at least 1, got {self.steps}")
        if self.batch < 2:
            raise GancraftError(f"--batch must be at least 2 (pairs of images feed the regularisers), got {self.batch}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise GancraftError(f"--lr must be a positive number, got {self.lr}")
        for opt, v in (("--tt-weight", self.tt_weight), ("--angle-weight", self.angle_weight),
                       ("--norm-weight", self.norm_weight)):
            if not (v >= 0 and math.isfinite(v)):
                raise GancraftError(f"{opt} must be a finite number >= 0, got {v}")
        if not self.source_prompt.strip():
            raise GancraftError("--source-prompt must be non-empty text")
        if self.width < 1 or self.depth < 1:
            raise GancraftError(f"hyper-network width and depth must be positive, got {self.width}, {self.depth}")
        return self

    def split(self, n_prompts: int) -> tuple[int, int]:
        """(K prompts, M latents) per step: as many prompts as allow two latents each."""
        k = max(1, min(n_prompts, self.batch // 2))
        return k, self.batch // k


@dataclass
class HyperResult:
    hyper: HyperNetwork
    prompts: list[str]
    settings: HyperSettings
    clip_model: str
    clip_name: str
    generator: nn.Module            # the frozen generator the losses were computed with
    log: list[dict[str, float]] = field(default_factory=list)


class _Texts:
    """Unit CLIP text embeddings of the training prompts and the source prompt, computed once."""

    def __init__(self, clip, prompts: Sequence[str], source_prompt: str):
        with torch.no_grad():
            self.prompts = clip.encode_text(list(prompts)).detach()
            self.source = clip.encode_text([source_prompt])[0].detach()


def check_generator(ckpt: Checkpoint) -> None:
    if ckpt.g_config.c_dim:
        raise GancraftError(f"{ckpt.path or 'checkpoint'}: hyper-networks need an unconditional generator "
                            f"(this one has c_dim {ckpt.g_config.c_dim})")
    if any(k.startswith(HYPER_PREFIX) for k in ckpt.tensors):
        raise GancraftError(f"{ckpt.path or 'checkpoint'}: already holds a hyper-network; "
                            "train a new one from the generator it was made from")


def _latents(G: nn.Module, m: int, gen: torch.Generator, psi: float, device: torch.device) -> torch.Tensor:
    z = torch.randn([m, G.z_dim], generator=gen).to(device)
    return G.mapping(z, None, truncation_psi=psi)


def hyper_losses(G: nn.Module, hyper: HyperNetwork, clip, ws: torch.Tensor, text_emb: torch.Tensor,
                 source_emb: torch.Tensor, settings: HyperSettings,
                 src_emb: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its terms for M latents (ws) under K prompts (text_emb [K, e])."""
    k, m = text_emb.shape[0], ws.shape[0]
    if src_emb is None:
        with torch.no_grad():
            src_emb = clip.encode_images(G.synthesis(ws, noise_mode="const"))
    d = hyper(text_emb)                                          # [K, style_dim]
    scale = d.repeat_interleave(m, dim=0)
    img = G.synthesis(ws.repeat(k, 1, 1), noise_mode="const", style_scale=scale)
    ada_emb = clip.encode_images(img).view(k, m, -1)
    terms = {
        "direction": directional_loss(src_emb, ada_emb, source_emb, text_emb).mean(),
        "tt_direction": target_target_loss(ada_emb, text_emb),
        "in_domain_angle": in_domain_angle_loss(src_emb, ada_emb),
        "domain_norm": d.square().mean(),
    }
    total = (terms["direction"] + settings.tt_weight * terms["tt_direction"]
             + settings.angle_weight * terms["in_domain_angle"] + settings.norm_weight * terms["domain_norm"])
    return total, terms


def train_hyper(ckpt: Checkpoint, prompts: Sequence[str], clip, settings: HyperSettings | None = None,
                device: str | torch.device = "cpu", progress: bool = False, clip_model: str = "ViT-B-32",
                on_step: Callable[[int, dict[str, float]], None] | None = None) -> HyperResult:
    """Train a HyperNetwork for ckpt's (frozen) generator on `prompts` with `clip` (a metrics.clip.ClipModel).

    Deterministic for a given seed on CPU: step s draws its prompts and latents from a generator
    seeded with (seed, s). The generator's weights are never given to the optimiser.
    """
    from tqdm import tqdm

    settings = (settings or HyperSettings()).validate()
    check_generator(ckpt)
    prompts = check_prompts(prompts, settings.source_prompt)
    device = torch.device(device)
    G = ckpt.generator(device=device)
    texts = _Texts(clip, prompts, settings.source_prompt)
    torch.manual_seed(settings.seed)
    hyper = HyperNetwork(HyperConfig(embed_dim=texts.prompts.shape[1], style_dims=style_dims(G),
                                     width=settings.width, depth=settings.depth)).to(device)
    opt = torch.optim.Adam(hyper.parameters(), lr=settings.lr, betas=(0.9, 0.99))
    k, m = settings.split(len(prompts))
    result = HyperResult(hyper, list(prompts), settings, clip_model, clip.name, G)
    bar = tqdm(range(settings.steps), desc="hyper", unit="step", disable=not progress, file=sys.stderr,
               leave=False, dynamic_ncols=True)
    for step in bar:
        gen = torch.Generator().manual_seed(step_seed(settings.seed, step, 0, 7))
        idx = torch.randperm(len(prompts), generator=gen)[:k].to(device)
        with torch.no_grad():
            ws = _latents(G, m, gen, settings.truncation_psi, device)
        total, terms = hyper_losses(G, hyper, clip, ws, texts.prompts[idx], texts.source, settings)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        stats = {"step": step + 1, "loss": total.item(), **{n: v.item() for n, v in terms.items()}}
        if not all(math.isfinite(v) for v in stats.values()):
            raise GancraftError(f"hyper-network training diverged at step {step + 1}; lower --lr")
        result.log.append(stats)
        if on_step is not None:
            on_step(step + 1, stats)
        bar.set_postfix(direction=f"{stats['direction']:.3f}", refresh=False)
    hyper.eval().requires_grad_(False)
    return result


@torch.no_grad()
def evaluate(ckpt: Checkpoint, hyper: HyperNetwork | None, clip, prompts: Sequence[str],
             source_prompt: str = "a photo", n: int = 8, seed: int = 1234,
             device: str | torch.device = "cpu") -> dict[str, float]:
    """Loss terms on n fixed latents and every prompt (hyper None: the untouched generator, d = 0)."""
    device = torch.device(device)
    G = ckpt.generator(device=device)
    texts = _Texts(clip, check_prompts(prompts, source_prompt), source_prompt)
    if hyper is None:
        hyper = HyperNetwork(HyperConfig(texts.prompts.shape[1], style_dims(G), 1, 1)).to(device)
    ws = _latents(G, n, torch.Generator().manual_seed(seed), 1.0, device)
    _, terms = hyper_losses(G, hyper.to(device).eval(), clip, ws, texts.prompts, texts.source,
                            HyperSettings(source_prompt=source_prompt))
    return {name: v.item() for name, v in terms.items()}


# -- checkpoints ------------------------------------------------------------------------------

def hyper_checkpoint(parent: Checkpoint, result: HyperResult, params: dict[str, Any] | None = None,
                     inputs: Sequence[str | os.PathLike] = ()) -> Checkpoint:
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
        "architecture": asdict(result.hyper.cfg),
        "clip_model": result.clip_model,
        "clip": result.clip_name,
        "source_prompt": result.settings.source_prompt,
        "prompts": list(result.prompts),
        "steps": result.settings.steps,
        "final": {k: v for k, v in result.log[-1].items() if k != "step"} if result.log else {},
    }
    ckpt = Checkpoint(tensors=tensors, g_config=parent.g_config, d_config=parent.d_config, domains=domains,
                      history=list(parent.history), extra=extra, source_format="native")
    return ckpt.with_operation("hyper", {**(params or {}), "settings": asdict(result.settings)}, list(inputs))


def has_hyper(ckpt: Checkpoint) -> bool:
    return "hyper" in (ckpt.extra or {}) and any(k.startswith(HYPER_PREFIX) for k in ckpt.tensors)


def load_hyper(ckpt: Checkpoint, device: str | torch.device = "cpu") -> HyperNetwork:
    """The checkpoint's hyper-network, frozen, in eval mode."""
    where = f"{ckpt.path}: " if ckpt.path else ""
    if not has_hyper(ckpt):
        raise GancraftError(f"{where}holds no hyper-network (train one with `gancraft hyper`)")
    arch = ckpt.extra["hyper"].get("architecture")
    try:
        cfg = HyperConfig(embed_dim=int(arch["embed_dim"]), style_dims=[int(c) for c in arch["style_dims"]],
                          width=int(arch["width"]), depth=int(arch["depth"]))
    except (TypeError, KeyError, ValueError):
        raise GancraftError(f"{where}extra['hyper']['architecture'] is missing or malformed") from None
    if cfg.out_dim != parameters_per_domain(ckpt):
        raise GancraftError(f"{where}hyper-network predicts {cfg.out_dim} values but the generator's "
                            f"domain vectors have {parameters_per_domain(ckpt)}")
    net = HyperNetwork(cfg)
    sd = {k[len(HYPER_PREFIX):]: v for k, v in ckpt.tensors.items() if k.startswith(HYPER_PREFIX)}
    own = net.state_dict()
    if set(sd) != set(own) or any(sd[k].shape != own[k].shape for k in own):
        raise GancraftError(f"{where}hyper.* tensors do not match the stored hyper-network architecture")
    net.load_state_dict(sd)
    return net.to(device).eval().requires_grad_(False)


def _same_clip(a: str, b: str) -> bool:
    """Names from metrics.clip.load_clip: 'clip-M:sha256=H' (a file), 'clip-M:TAG' (a download), random ones.

    A file and a download of the same model cannot be told apart by name, so those compare
    by model only; two files compare by hash; random weights only match themselves.
    """
    if a == b:
        return True
    if "RANDOM" in a or "RANDOM" in b:
        return False
    (ma, _, wa), (mb, _, wb) = a.partition(":"), b.partition(":")
    if wa.startswith("sha256=") and wb.startswith("sha256="):
        return False
    return ma == mb


def check_clip_matches(ckpt: Checkpoint, clip) -> None:
    """A hyper-network only understands the text embeddings of the CLIP it was trained with."""
    info = ckpt.extra.get("hyper", {})
    trained = info.get("clip")
    if trained and not _same_clip(trained, clip.name):
        raise GancraftError(f"{ckpt.path or 'checkpoint'}: its hyper-network was trained with CLIP {trained}, "
                            f"not {clip.name}; pass the same weights with --clip-weights")


@torch.no_grad()
def domain_vectors_for_prompts(ckpt: Checkpoint, prompts: Sequence[str], clip,
                               hyper: HyperNetwork | None = None) -> torch.Tensor:
    """[len(prompts), style_dim] domain vectors (use as G's style_scale), on clip's device."""
    check_clip_matches(ckpt, clip)
    hyper = (hyper or load_hyper(ckpt)).to(clip.device)
    return hyper(clip.encode_text(list(prompts)))


def domain_vector_for_prompt(ckpt: Checkpoint, prompt: str, clip, hyper: HyperNetwork | None = None) -> torch.Tensor:
    """The domain vector [style_dim] for any prompt, seen in training or not."""
    return domain_vectors_for_prompts(ckpt, [prompt], clip, hyper)[0]
