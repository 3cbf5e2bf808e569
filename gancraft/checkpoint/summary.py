"""What `inspect` reports about a checkpoint, as plain data."""

from __future__ import annotations

import re
from typing import Any

from ..io_util import sha256_file
from ..nets.config import config_to_dict
from .core import Checkpoint

_RES = re.compile(r"(?:^|\.)b(\d+)\.")


def tensor_resolution(name: str) -> int | None:
    """Resolution of the block a tensor belongs to (None for mapping and w_avg)."""
    m = _RES.search(name)
    return int(m.group(1)) if m else None


def summarize(ckpt: Checkpoint, layers: bool = False) -> dict[str, Any]:
    g = ckpt.g_config
    res = g.block_resolutions
    out: dict[str, Any] = {
        "file": str(ckpt.path) if ckpt.path else None,
        "format": ckpt.source_format,
        "sha256": sha256_file(ckpt.path) if ckpt.path else None,
        "family": "stylegan2",
        "resolution": g.img_resolution,
        "img_channels": g.img_channels,
        "z_dim": g.z_dim,
        "w_dim": g.w_dim,
        "c_dim": g.c_dim,
        "num_ws": g.num_ws,
        "mapping_layers": g.mapping_layers,
        "channels": {str(r): g.channels(r) for r in res},
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
    bad = ckpt.non_finite()
    if bad:
        out["warnings"].append(f"{len(bad)} tensors hold NaN or Inf (first: {bad[0]})")
    if ckpt.extra.get("w_avg_estimated"):
        out["warnings"].append("w_avg was not in the file; it was estimated from 10,000 samples")
    style_dim = sum(ch for r in res for ch in _conv_inputs(g, r))
    out["domain_vector_dim"] = style_dim
    if layers:
        out["layers"] = [
            {"name": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
             "resolution": tensor_resolution(k)}
            for k, v in ckpt.tensors.items()
        ]
    return out


def _conv_inputs(g, res: int) -> list[int]:
    """Input widths of the conv layers of one block (what a domain vector scales)."""
    if res == 4:
        return [g.channels(4)]
    return [g.channels(res // 2), g.channels(res)]


def _is_buffer(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last in ("w_avg", "noise_const", "resample_filter")
