"""The Checkpoint type: named tensors of up to three networks plus the metadata to rebuild them."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from .. import __version__
from ..errors import CheckpointError
from ..nets.config import DiscriminatorConfig, GeneratorConfig
from ..nets.stylegan3 import StyleGAN3Config

NETS = ("G_ema", "G", "D")


@dataclass
class Checkpoint:
    """Tensors are namespaced by network: ``G_ema.<NVIDIA state_dict key>``, ``G.…``, ``D.…``.

    Keys after the prefix are exactly those of NVIDIA stylegan2-ada-pytorch's modules, buffers
    included (``mapping.w_avg``, ``…noise_const``, ``…resample_filter``), so NVIDIA files map
    one to one and other formats are translated once, in their adapters.
    """

    tensors: dict[str, torch.Tensor]
    g_config: GeneratorConfig | StyleGAN3Config
    d_config: DiscriminatorConfig | None = None
    # name -> {"class": int} for conditional models, or {"direction": [...], "distance": s}
    # for expanded models, or {"vector": tensor name} for domain-vector models
    domains: dict[str, dict[str, Any]] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    source_format: str = "native"
    path: Path | None = None

    @property
    def nets(self) -> list[str]:
        return [n for n in NETS if any(k.startswith(n + ".") for k in self.tensors)]

    def state_dict(self, net: str) -> dict[str, torch.Tensor]:
        prefix = net + "."
        sd = {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}
        if not sd:
            where = f" in {self.path}" if self.path else ""
            raise CheckpointError(f"no {net} network{where} (has: {', '.join(self.nets) or 'none'})")
        return sd

    def generator_net(self) -> str:
        """The generator to sample from: the EMA copy when present, as every reference tool does."""
        for n in ("G_ema", "G"):
            if n in self.nets:
                return n
        where = f"{self.path}: " if self.path else ""
        raise CheckpointError(f"{where}checkpoint holds no generator")

    @property
    def family(self) -> str:
        """'stylegan2' or 'stylegan3': which generator the tensors belong to."""
        return "stylegan3" if isinstance(self.g_config, StyleGAN3Config) else "stylegan2"

    def generator(self, net: str | None = None, device: str | torch.device = "cpu") -> "torch.nn.Module":
        from ..nets import stylegan2, stylegan3

        net = net or self.generator_net()
        family = stylegan3 if self.family == "stylegan3" else stylegan2
        G = _build(lambda: family.Generator(self.g_config), self.g_config, self.state_dict(net), net, self.path)
        return G.to(device).eval().requires_grad_(False)

    def discriminator(self, device: str | torch.device = "cpu") -> "torch.nn.Module":
        from ..nets.stylegan2 import Discriminator

        if self.d_config is None:
            where = f"{self.path}: " if self.path else ""
            raise CheckpointError(f"{where}checkpoint holds no discriminator")
        D = _build(lambda: Discriminator(self.d_config), self.d_config, self.state_dict("D"), "D", self.path)
        return D.to(device).eval().requires_grad_(False)

    @classmethod
    def from_modules(
        cls,
        G_ema: torch.nn.Module | None = None,
        G: torch.nn.Module | None = None,
        D: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> "Checkpoint":
        tensors: dict[str, torch.Tensor] = {}
        g_cfg = None
        for name, mod in (("G_ema", G_ema), ("G", G), ("D", D)):
            if mod is None:
                continue
            for k, v in mod.state_dict().items():
                tensors[f"{name}.{k}"] = v.detach().cpu().contiguous().clone()
            if name != "D":
                g_cfg = mod.cfg
        if g_cfg is None:
            raise ValueError("from_modules needs at least one generator")
        return cls(tensors=tensors, g_config=g_cfg, d_config=D.cfg if D is not None else None, **kwargs)

    def with_operation(self, command: str, params: dict[str, Any], inputs: list[str | Path]) -> "Checkpoint":
        """Return a copy whose history ends with this operation (inputs recorded with their digests)."""
        from ..io_util import HISTORY_DIGEST, display_name, file_digest, with_display_names

        entry = {
            "command": command,
            "params": with_display_names(_jsonable(params)),
            "inputs": [{"path": display_name(p), HISTORY_DIGEST: file_digest(p)} for p in inputs],
            "gancraft": __version__,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        return replace(self, history=[*self.history, entry])

    def non_finite(self) -> list[str]:
        """Names of floating tensors holding NaN or Inf."""
        return [k for k, v in self.tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _build(
    make: Callable[[], torch.nn.Module], cfg: Any, sd: dict[str, torch.Tensor], net: str, path: Path | None
) -> torch.nn.Module:
    """The network `cfg` describes, holding `sd`.

    The config comes from the file, so it is built first on the meta device (no memory) and
    compared with the file's tensors: a config declaring a network far larger than the tensors
    it came with is refused before anything is allocated in proportion to it.
    """
    where = f"{path}: " if path else ""
    for name, value in vars(cfg).items():
        # each layer has at least one tensor; a loop over a billion declared layers would never end
        if name.endswith("layers") and isinstance(value, int) and value > len(sd):
            raise CheckpointError(f"{where}{net} config declares {value} {name}, but the file holds {len(sd)} tensors")
    try:
        with torch.device("meta"):
            _check_matches(make().state_dict(), sd, net, path)
    except CheckpointError:
        raise
    except (ArithmeticError, ValueError, TypeError, RuntimeError, IndexError, KeyError) as exc:
        text = str(exc).strip().splitlines()
        raise CheckpointError(
            f"{where}{net}: its architecture config cannot be built ({text[0][:200] if text else type(exc).__name__})"
        ) from None
    module = make()
    _load_strict(module, sd, net, path)
    return module


def _load_strict(module: torch.nn.Module, sd: dict[str, torch.Tensor], net: str, path: Path | None) -> None:
    own = module.state_dict()
    _check_matches(own, sd, net, path)
    module.load_state_dict({k: sd[k].to(v.dtype) for k, v in own.items()}, strict=True)


def _check_matches(own: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], net: str, path: Path | None) -> None:
    where = f"{path}: " if path else ""
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (first: {net}.{missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (first: {net}.{unexpected[0]})")
        raise CheckpointError(f"{where}{net} does not match its architecture config: {'; '.join(parts)}")
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{where}{net}.{k} has shape {tuple(sd[k].shape)}, architecture expects {tuple(v.shape)}"
            )
