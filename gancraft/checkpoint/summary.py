"""What `inspect` reports about a checkpoint, as plain data."""

from __future__ import annotations

import re
from typing import Any

from ..io_util import display_name, sha256_file
from ..nets.config import config_to_dict
from ..nets.stylegan3 import StyleGAN3Config
from .core import Checkpoint

_RES = re.compile(r"(?:^|\.)b(\d+)\.")
# tensors outside G/D that are networks or parameters of their own (hyper-network, per-domain vectors)
_EXTRA_NETS = ("hyper", "domain_vectors")


def tensor_resolution(name: str) -> int | None:
    """Resolution of the block a tensor belongs to (None for mapping and w_avg)."""
    m = _RES.search(name)
    return int(m.group(1)) if m else None


def summarize(ckpt: Checkpoint, layers: bool = False) -> dict[str, Any]:
    g = ckpt.g_config
    sg3 = isinstance(g, StyleGAN3Config)
    res = [] if sg3 else g.block_resolutions
    out: dict[str, Any] = {
        "file": display_name(ckpt.path) if ckpt.path else None,
        "format": ckpt.source_format,
        "sha256": sha256_file(ckpt.path) if ckpt.path else None,
        "family": ckpt.family,
        "resolution": g.img_resolution,
        "img_channels": g.img_channels,
        "z_dim": g.z_dim,
        "w_dim": g.w_dim,
        "c_dim": g.c_dim,
        "num_ws": g.num_ws,
        "mapping_layers": g.mapping_layers,
        "channels": (
            {s.name: s.out_channels for s in g.layer_specs()} if sg3 else {str(r): g.channels(r) for r in res}
        ),
        "networks": {},
        "domains": ckpt.domains,
        "history": ckpt.history,
        "config": {"G": config_to_dict(g), "D": config_to_dict(ckpt.d_config) if ckpt.d_config else None},
        "warnings": [],
    }
    for net in ckpt.nets:
        sd = ckpt.state_dict(net)
        params = sum(v.numel() for k, v in sd.items() if not _is_buffer(k))
        out["networks"][net] = {"tensors": len(sd), "parameters": params}
    for net in _EXTRA_NETS:
        own = [v for k, v in ckpt.tensors.items() if k.startswith(net + ".")]
        if own:
            out["networks"][net] = {"tensors": len(own), "parameters": sum(v.numel() for v in own)}
    bad = ckpt.non_finite()
    if bad:
        out["warnings"].append(f"{len(bad)} tensors hold NaN or Inf (first: {bad[0]})")
    if ckpt.extra.get("w_avg_estimated"):
        out["warnings"].append("w_avg was not in the file; it was estimated from 10,000 samples")
    if sg3:
        out["stylegan3_config"] = g.config_name
        out["synthesis_layers"] = [
            {
                "name": s.name,
                "size": s.out_size,
                "channels": s.out_channels,
                "sampling_rate": s.out_sampling_rate,
                "cutoff": s.out_cutoff,
                "critically_sampled": s.is_critically_sampled,
                "torgb": s.is_torgb,
            }
            for s in g.layer_specs()
        ]
    # domain vectors scale StyleGAN2's conv inputs; gancraft has none for StyleGAN3
    out["domain_vector_dim"] = None if sg3 else sum(ch for r in res for ch in _conv_inputs(g, r))
    out["domain_parameters"] = _domain_parameters(ckpt)
    if isinstance(ckpt.extra.get("hyper"), dict):
        out["hyper"] = _hyper_summary(ckpt, out["networks"].get("hyper"))
    if layers:
        out["layers"] = [
            {
                "name": k,
                "shape": list(v.shape),
                "dtype": str(v.dtype).replace("torch.", ""),
                "resolution": tensor_resolution(k),
            }
            for k, v in ckpt.tensors.items()
        ]
    return out


def _domain_parameters(ckpt: Checkpoint) -> dict[str, int]:
    """What each stored domain costs in parameters of its own: a domain vector's size; 0 for hyper
    domains (predicted from text by the shared hyper-network), classes and subspaces."""
    out: dict[str, int] = {}
    for name, d in (ckpt.domains or {}).items():
        tensor = ckpt.tensors.get(d.get("tensor")) if isinstance(d, dict) and d.get("kind") == "vector" else None
        out[name] = tensor.numel() if tensor is not None else 0
    return out


def _hyper_summary(ckpt: Checkpoint, net: dict | None) -> dict[str, Any]:
    info = ckpt.extra["hyper"]
    prompts = info.get("prompts") or []
    return {
        "parameters": net["parameters"] if net else 0,
        "architecture": info.get("architecture"),
        "clip_model": info.get("clip_model"),
        "clip": info.get("clip"),
        "prompts": len(prompts),
        "prompt_list": list(prompts),
        "source_prompt": info.get("source_prompt"),
        "steps": info.get("steps"),
    }


def _conv_inputs(g, res: int) -> list[int]:
    """Input widths of the conv layers of one block (what a domain vector scales)."""
    if res == 4:
        return [g.channels(4)]
    return [g.channels(res // 2), g.channels(res)]


def _is_buffer(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last in (
        "w_avg",
        "noise_const",
        "resample_filter",
        "magnitude_ema",
        "up_filter",
        "down_filter",
        "transform",
        "freqs",
        "phases",
    )  # StyleGAN3's
