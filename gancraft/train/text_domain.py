"""Text-driven domain vectors as HyperDomainNet's official code trains them (MACderRu/HyperDomainNet).

A domain vector d rescales every conv layer of a frozen StyleGAN2 by (1 + d) along its input
channels (``G.synthesis(ws, style_scale=d, modulation=...)``; by default after demodulation, as
the official code). This module holds

- what the two text-driven recipes share (`hyper` trains a network that predicts d, this module
  trains one d): CLIP losses over prompt templates, style-mixed latents, crops, the recipe's
  random draws;
- `train_text_vector`, the single-domain recipe of the official config ``td_single_ffhq.yaml``:
  only the directional CLIP loss, ViT-B/32 and ViT-B/16 together, Adam lr 0.1 betas (0.9, 0.999),
  300 iterations of batch 4, style mixing with probability 0.9, d starting at zero.

Source and adapted images are always rendered with independent random noise, as the official
code renders them (rosinality's generator draws new noise on every call). This is what keeps the
directional loss defined at the first step: with d = 0 and shared noise both images are the
same, their CLIP difference is zero, and normalising it gives gradients of ~1e8 that then own
Adam's second moment for thousands of steps.
"""

from __future__ import annotations

import contextlib
import math
import sys
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import Checkpoint
from ..errors import GancraftError
from ..latent.domains import check_modulation_order
from ..nets.config import STYLEGAN3_NOT_TRAINABLE
from ..nets.stylegan2 import DEFAULT_MODULATION

# the official configs' source_class
SOURCE_PROMPT = "Photo"
# the official list is OpenAI's ImageNet templates without this one
_NOT_IN_OFFICIAL_TEMPLATES = "a photo of many {}."


def prompt_templates() -> list[str]:
    """The 79 sentence templates the official code averages text embeddings over ('a sketch of a {}.', ...)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [t for t in (f("{}") for f in OPENAI_IMAGENET_TEMPLATES) if t != _NOT_IN_OFFICIAL_TEMPLATES]


@torch.no_grad()
def templated_text(clip, prompts: Sequence[str], templates: Sequence[str] | None) -> torch.Tensor:
    """[len(prompts), T, e]: unit CLIP text embeddings of each prompt in every template (T = 1 without)."""
    forms = list(templates) if templates else ["{}"]
    return torch.stack([clip.encode_text([t.format(p) for t in forms]) for p in prompts])


def text_directions(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over templates of target - source ([..., T, e] -> [..., e]), as the official direction losses."""
    return (target - source).mean(dim=-2)


def directional_loss(src_enc: torch.Tensor, ada_enc: torch.Tensor, text_dir: torch.Tensor) -> torch.Tensor:
    """[B]: 1 - cos(E_I(adapted) - E_I(source), text direction) (StyleGAN-NADA's directional loss)."""
    return 1 - F.cosine_similarity(ada_enc - src_enc, text_dir.expand_as(src_enc), dim=-1)


def _lower_pairs(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tril_indices(n, n, offset=-1, device=device).unbind(0)


def target_target_loss(ada_enc: torch.Tensor, trg_text: torch.Tensor) -> torch.Tensor:
    """Mean over batch pairs (i, j) of 1 - cos(E_I(x_i) - E_I(x_j), text(t_i) - text(t_j)).

    ada_enc [B, e], trg_text [B, T, e]. As in the official code the two images of a pair come
    from different latents as well as different domains.
    """
    if ada_enc.shape[0] < 2:
        return ada_enc.new_zeros(())
    i, j = _lower_pairs(ada_enc.shape[0], ada_enc.device)
    txt = text_directions(trg_text[j], trg_text[i])
    return (1 - F.cosine_similarity(ada_enc[i] - ada_enc[j], txt, dim=-1)).mean()


def in_domain_angle_loss(src_enc: torch.Tensor, ada_enc: torch.Tensor) -> torch.Tensor:
    """Mean squared change of the pairwise cosines between the batch's images (the official 'indomain' loss)."""
    if src_enc.shape[0] < 2:
        return ada_enc.new_zeros(())
    i, j = _lower_pairs(src_enc.shape[0], src_enc.device)
    src, ada = F.normalize(src_enc, dim=-1), F.normalize(ada_enc, dim=-1)
    return ((ada[i] * ada[j]).sum(-1) - (src[i] * src[j]).sum(-1)).square().mean()


# -- the recipes' random draws (all from the global RNG; see seeded) ----------------------------


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run with every torch RNG the recipe touches seeded, and the caller's RNG state restored after."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def mixing_latents(G: nn.Module, n: int, mixing: float, device: torch.device, psi: float = 1.0) -> torch.Tensor:
    """ws [n, num_ws, w_dim]; with probability `mixing` the whole batch switches to a second z at one
    random layer (the official code's mixing_noise with rosinality's crossover)."""
    with torch.no_grad():
        z = torch.randn([n, G.z_dim], device=device)
        ws = G.mapping(z, None, truncation_psi=psi)
        if mixing > 0 and torch.rand([]).item() < mixing:
            cut = int(torch.randint(1, ws.shape[1], []).item())
            ws2 = G.mapping(torch.randn_like(z), None, truncation_psi=psi)
            ws = torch.cat([ws[:, :cut], ws2[:, cut:]], dim=1)
    return ws


def random_crop(images: torch.Tensor, fraction: float) -> torch.Tensor:
    """One square crop of side fraction * size at a random position, the same for the whole batch.

    The official crop is 819 of 1024 px (fraction 0.8) with its corner drawn below 1024 - 819;
    here the side follows the image size.
    """
    size = images.shape[-1]
    side = int(size * fraction)
    room = int(size * (1 - fraction))
    if room < 1:
        return images
    y, x = (int(v) for v in torch.randint(0, room, [2]))
    return images[..., y : y + side, x : x + side]


def convex_mix(vectors: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
    """Rows alphas @ vectors along dim 0, renormalised (vectors [B, e] or [B, T, e], alphas [B, B])."""
    return F.normalize(torch.einsum("ij,j...->i...", alphas, vectors), dim=-1)


def dirichlet_alphas(n: int) -> torch.Tensor:
    """[n, n] convex weights, each row Dirichlet with concentration 2 / n (the official sampling)."""
    return torch.distributions.Dirichlet(torch.full([n, n], 2.0 / n)).sample()


def resample_near(vectors: torch.Tensor, min_cos: float) -> torch.Tensor:
    """Unit vectors at a random angle from each row, cos uniform in [min_cos, 1], in a random direction."""
    u = F.normalize(vectors, dim=-1)
    r = torch.rand_like(u) * 2 - 1
    perp = F.normalize(r - (r * u).sum(-1, keepdim=True) * u, dim=-1)
    cos = torch.rand(u.shape[:-1] + (1,), device=u.device) * (1 - min_cos) + min_cos
    return cos * u + (1 - cos.square()).sqrt() * perp


def render_pair(
    G: nn.Module, ws: torch.Tensor, style_scale: torch.Tensor, modulation: str = DEFAULT_MODULATION
) -> tuple[torch.Tensor, torch.Tensor]:
    """(source, adapted) images of the same latents, each with its own random noise (see the module docstring)."""
    with torch.no_grad():
        src = G.synthesis(ws, noise_mode="random")
    return src, G.synthesis(ws, noise_mode="random", style_scale=style_scale, modulation=modulation)


def grad_norm(params: Sequence[torch.Tensor]) -> float:
    return math.sqrt(sum(float(p.grad.detach().square().sum()) for p in params if p.grad is not None))


def optimizer_step(
    opt: torch.optim.Optimizer,
    loss: torch.Tensor,
    params: Sequence[torch.Tensor],
    step: int,
    figures: dict[str, float],
    what: str,
    log: list[dict[str, float]],
    on_step: Callable[[int, dict[str, float]], None] | None,
    bar,
) -> None:
    """One update of a text-driven recipe: backward, Adam step, and the step's figures logged
    (with the gradient norm, which shows a blow-up); a non-finite figure stops the run."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    stats = {"step": step + 1, **figures, "grad_norm": grad_norm(params)}
    opt.step()
    if not all(math.isfinite(v) for v in stats.values()):
        raise GancraftError(f"{what} diverged at step {step + 1}; lower --lr")
    log.append(stats)
    if on_step is not None:
        on_step(step + 1, stats)
    bar.set_postfix(direction=f"{stats['direction']:.3f}", refresh=False)


def check_vector_parent(ckpt: Checkpoint, what: str) -> None:
    """Refuse a generator that `what` (text-driven domain vectors, hyper-networks) cannot adapt; called
    as soon as the model is read, before CLIP is loaded and anything is logged."""
    if ckpt.family == "stylegan3":
        raise GancraftError(STYLEGAN3_NOT_TRAINABLE)
    if ckpt.g_config.c_dim:
        raise GancraftError(
            f"{ckpt.path or 'checkpoint'}: {what} need an unconditional generator "
            f"(this one has c_dim {ckpt.g_config.c_dim})"
        )


# -- td_single: one domain vector from one prompt -----------------------------------------------


@dataclass
class TextVectorSettings:
    """Defaults of the official td_single_ffhq.yaml."""

    steps: int = 300
    batch: int = 4
    lr: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    source_prompt: str = SOURCE_PROMPT
    style_mixing: float = 0.9
    templates: bool = True
    seed: int = 0
    modulation: str = DEFAULT_MODULATION

    def validate(self) -> "TextVectorSettings":
        if self.steps < 1:
            raise GancraftError(f"--steps must be at least 1, got {self.steps}")
        if self.batch < 1:
            raise GancraftError(f"--batch must be at least 1, got {self.batch}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise GancraftError(f"--lr must be a positive number, got {self.lr}")
        if not 0 <= self.style_mixing <= 1:
            raise GancraftError(f"--style-mixing must be a probability in [0, 1], got {self.style_mixing}")
        if not self.source_prompt.strip():
            raise GancraftError("--source-prompt must be non-empty text")
        check_modulation_order(self.modulation)
        return self


@dataclass
class TextVectorResult:
    vector: torch.Tensor  # [style_dim], on the CPU
    prompt: str
    settings: TextVectorSettings
    clips: list[str]  # names of the CLIP models the loss used
    log: list[dict[str, float]] = field(default_factory=list)


def check_target(prompt: str, source_prompt: str) -> None:
    if not prompt.strip() or prompt.strip() == source_prompt.strip():
        raise GancraftError(f"--prompt {prompt!r}: give a target description other than the source prompt")


def train_text_vector(
    ckpt: Checkpoint,
    prompt: str,
    clips: Sequence,
    settings: TextVectorSettings | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TextVectorResult:
    """Optimise one domain vector of ckpt's frozen generator toward `prompt` with the directional CLIP
    loss summed over `clips` (metrics.clip.ClipModel; the official recipe uses ViT-B-32 and ViT-B-16)."""
    from tqdm import tqdm

    settings = (settings or TextVectorSettings()).validate()
    check_vector_parent(ckpt, "text-driven domain vectors")
    if not clips:
        raise GancraftError("text-driven domain vectors need at least one CLIP model")
    check_target(prompt, settings.source_prompt)
    device = torch.device(device)
    G = ckpt.generator(device=device)
    templates = prompt_templates() if settings.templates else None
    text_dirs = [
        text_directions(
            templated_text(c, [settings.source_prompt], templates)[0], templated_text(c, [prompt], templates)[0]
        ).to(device)
        for c in clips
    ]
    vector = nn.Parameter(torch.zeros(G.synthesis.style_dim, device=device))
    opt = torch.optim.Adam([vector], lr=settings.lr, betas=settings.betas)
    result = TextVectorResult(vector, prompt, settings, [c.name for c in clips])
    bar = tqdm(
        range(settings.steps),
        desc=f"vector {prompt[:24]}",
        unit="step",
        disable=not progress,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    )
    with seeded(settings.seed, device):
        for step in bar:
            ws = mixing_latents(G, settings.batch, settings.style_mixing, device)
            src_img, ada_img = render_pair(G, ws, vector.expand(settings.batch, -1), settings.modulation)
            # the official trainer sums the per-encoder losses
            total = sum(
                directional_loss(c.encode_images(src_img).detach(), c.encode_images(ada_img), d).mean()
                for c, d in zip(clips, text_dirs)
            )
            optimizer_step(
                opt,
                total,
                [vector],
                step,
                {"direction": total.item() / len(clips)},
                "text-driven domain vector",
                result.log,
                on_step,
                bar,
            )
    result.vector = vector.detach().cpu()
    return result


def vector_checkpoint(
    parent: Checkpoint, results: dict[str, TextVectorResult], params: dict | None = None, inputs: Sequence[str] = ()
) -> Checkpoint:
    """parent's tensors and domains plus `domain_vectors.NAME` and a vector domain (with its prompt) per result."""
    clash = [n for n in results if n in (parent.domains or {})]
    if clash:
        raise GancraftError(f"domain {clash[0]!r} already exists in {parent.path or 'the checkpoint'}")
    tensors = dict(parent.tensors)
    domains = dict(parent.domains or {})
    for name, r in results.items():
        tensors[f"domain_vectors.{name}"] = r.vector.contiguous().clone()
        domains[name] = {
            "kind": "vector",
            "tensor": f"domain_vectors.{name}",
            "prompt": r.prompt,
            "modulation": r.settings.modulation,
        }
    ckpt = Checkpoint(
        tensors=tensors,
        g_config=parent.g_config,
        d_config=parent.d_config,
        domains=domains,
        history=list(parent.history),
        extra=dict(parent.extra or {}),
        source_format="native",
    )
    info = {n: {"prompt": r.prompt, "clip": r.clips, "final": r.log[-1] if r.log else {}} for n, r in results.items()}
    return ckpt.with_operation("finetune", {**(params or {}), "text_vectors": info}, list(inputs))
