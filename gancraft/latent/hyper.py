"""The HyperDomainNet hyper-network (text embedding -> domain vector), and reading it back from a
checkpoint written by `gancraft hyper`; training it is train/hyper.py's job.

The hyper-network is the official residual mapper: a shared backbone (linear-ReLU-BatchNorm,
then residual blocks) and per conv layer a head of residual blocks ending in a linear layer to
that layer's input channels; every linear layer starts as Xavier-uniform x 0.01 with zero bias,
so untrained vectors are small but not zero (~14M parameters at width 512 for 1024 px).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..checkpoint import Checkpoint
from ..errors import GancraftError

HYPER_PREFIX = "hyper."
MAPPER = "residual"  # recorded in checkpoints; earlier gancraft versions wrote a plain MLP


@dataclass
class HyperConfig:
    """Architecture of the official ``residual_channelin`` mapper (td_multiple.yaml: width 512, backbone 4, head 2)."""

    embed_dim: int
    style_dims: list[int]  # input widths of G's conv layers, in style_scale order
    width: int = 512  # also the inner width of the residual blocks (the official code fixes it at 512)
    depth: int = 4  # backbone: one linear block then depth - 1 residual blocks
    head_depth: int = 2  # per head: head_depth - 1 residual blocks then the output layer

    @property
    def out_dim(self) -> int:
        return sum(self.style_dims)


class _LinearBlock(nn.Sequential):
    """Linear -> ReLU -> BatchNorm (the official order: normalisation after the activation)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__(nn.Linear(n_in, n_out), nn.ReLU(), nn.BatchNorm1d(n_out))


class _ResidualBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, width), nn.BatchNorm1d(width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class HyperNetwork(nn.Module):
    """Unit CLIP text embeddings [N, embed_dim] -> domain vectors [N, sum(style_dims)].

    BatchNorm makes training depend on the batch (as in the official mapper): train with
    batches of at least 2; in eval mode each prompt's vector depends on that prompt only.
    """

    def __init__(self, cfg: HyperConfig):
        super().__init__()
        if min(cfg.depth, cfg.head_depth, cfg.width, cfg.embed_dim) < 1 or not cfg.style_dims:
            raise GancraftError(f"hyper-network: invalid architecture {asdict(cfg)}")
        self.cfg = cfg
        self.backbone = nn.Sequential(
            _LinearBlock(cfg.embed_dim, cfg.width), *(_ResidualBlock(cfg.width) for _ in range(cfg.depth - 1))
        )
        self.heads = nn.ModuleList(
            nn.Sequential(*(_ResidualBlock(cfg.width) for _ in range(cfg.head_depth - 1)), nn.Linear(cfg.width, c))
            for c in cfg.style_dims
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                # small, not zero: at exactly d = 0 nothing distinguishes the prompts yet
                nn.init.xavier_uniform_(m.weight, gain=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, text_emb: torch.Tensor) -> torch.Tensor:
        h = self.backbone(text_emb.float())
        return torch.cat([head(h) for head in self.heads], dim=-1)


def style_dims(G: nn.Module) -> list[int]:
    """What each conv layer's slice of a domain vector scales: its input channels."""
    return [info.in_channels for info in G.synthesis.layers() if info.kind == "conv"]


def parameters_per_domain(ckpt: Checkpoint) -> int:
    """Width of one domain vector of this generator (sum of its conv layers' style widths)."""
    g = ckpt.g_config
    res = [2**i for i in range(2, int(math.log2(g.img_resolution)) + 1)]
    return sum(g.channels(4) if r == 4 else g.channels(r // 2) + g.channels(r) for r in res)


def has_hyper(ckpt: Checkpoint) -> bool:
    return "hyper" in (ckpt.extra or {}) and any(k.startswith(HYPER_PREFIX) for k in ckpt.tensors)


def load_hyper(ckpt: Checkpoint, device: str | torch.device = "cpu") -> HyperNetwork:
    """The checkpoint's hyper-network, frozen, in eval mode."""
    where = f"{ckpt.path}: " if ckpt.path else ""
    if not has_hyper(ckpt):
        raise GancraftError(f"{where}holds no hyper-network (train one with `gancraft hyper`)")
    info = ckpt.extra["hyper"]
    if info.get("mapper") != MAPPER:
        raise GancraftError(
            f"{where}its hyper-network is the plain MLP of an earlier gancraft version; "
            "train it again with `gancraft hyper` (now the official residual mapper)"
        )
    arch = info.get("architecture")
    try:
        cfg = HyperConfig(
            embed_dim=int(arch["embed_dim"]),
            style_dims=[int(c) for c in arch["style_dims"]],
            width=int(arch["width"]),
            depth=int(arch["depth"]),
            head_depth=int(arch["head_depth"]),
        )
    except (TypeError, KeyError, ValueError):
        raise GancraftError(f"{where}extra['hyper']['architecture'] is missing or malformed") from None
    if cfg.out_dim != parameters_per_domain(ckpt):
        raise GancraftError(
            f"{where}hyper-network predicts {cfg.out_dim} values but the generator's "
            f"domain vectors have {parameters_per_domain(ckpt)}"
        )
    net = HyperNetwork(cfg)
    sd = {k[len(HYPER_PREFIX) :]: v for k, v in ckpt.tensors.items() if k.startswith(HYPER_PREFIX)}
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
        raise GancraftError(
            f"{ckpt.path or 'checkpoint'}: its hyper-network was trained with CLIP {trained}, "
            f"not {clip.name}; pass the same weights with --clip-weights"
        )
