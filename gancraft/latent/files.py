"""Latent files (.npz: z, w, seeds, domains) and direction files (safetensors: directions, singular_values)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import GancraftError
from ..io_util import atomic_write, read_npz


@dataclass
class Latents:
    """Rows of latents. `w` ([N, num_ws, w_dim], float32) is what was synthesised, so it alone
    reproduces the images; `z` and `seeds` say where it came from (seed -1: not from a seed)."""

    z: np.ndarray
    w: np.ndarray
    seeds: np.ndarray
    domains: list[str]
    batch: int | None = None

    def __len__(self) -> int:
        return int(self.w.shape[0])


def save_latents(path: str | os.PathLike, latents: Latents, force: bool = False) -> Path:
    """Write a latents .npz atomically (plain arrays only, so it loads without pickle)."""
    n = len(latents)
    if latents.z.shape[0] != n or latents.seeds.shape[0] != n or len(latents.domains) != n:
        raise ValueError("latents: z, w, seeds and domains must have one row each")
    arrays = {
        "z": np.asarray(latents.z, dtype=np.float32),
        "w": np.asarray(latents.w, dtype=np.float32),
        "seeds": np.asarray(latents.seeds, dtype=np.int64),
        "domain": np.asarray(list(latents.domains), dtype=str).reshape(n),
    }
    if latents.batch is not None:
        arrays["batch"] = np.asarray(latents.batch, dtype=np.int64)
    with atomic_write(path, force=force) as tmp:
        # a file object, because np.savez appends '.npz' to a name that lacks it
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    return Path(path)


def load_latents(path: str | os.PathLike) -> Latents:
    """Read and validate a latents .npz; every problem is a GancraftError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise GancraftError(f"{p}: latents file does not exist")
    arrays = read_npz(p, "latents")
    if "w" not in arrays:
        raise GancraftError(f"{p}: latents file has no 'w' array (has: {', '.join(sorted(arrays)) or 'nothing'})")
    w = arrays["w"]
    if w.ndim == 2:
        w = w[:, None, :]
    if w.ndim != 3 or w.shape[0] == 0 or not np.issubdtype(w.dtype, np.floating):
        raise GancraftError(f"{p}: 'w' must be float N x num_ws x w_dim (or N x w_dim), got {w.dtype} {w.shape}")
    if not np.isfinite(w).all():
        raise GancraftError(f"{p}: 'w' holds NaN or Inf")
    n = w.shape[0]
    z = arrays.get("z", np.zeros((n, 0), dtype=np.float32))
    seeds = arrays.get("seeds", np.full(n, -1, dtype=np.int64))
    domains = arrays.get("domain", np.full(n, "", dtype=str))
    for key, arr in (("z", z), ("seeds", seeds), ("domain", domains)):
        if arr.shape[0] != n:
            raise GancraftError(f"{p}: '{key}' has {arr.shape[0]} rows but 'w' has {n}")
    if not np.issubdtype(seeds.dtype, np.integer):
        raise GancraftError(f"{p}: 'seeds' must be integers, got {seeds.dtype}")
    if domains.dtype.kind != "U":
        raise GancraftError(f"{p}: 'domain' must be strings, got {domains.dtype}")
    batch = int(arrays["batch"]) if "batch" in arrays and arrays["batch"].size == 1 else None
    return Latents(
        z=z.astype(np.float32),
        w=w.astype(np.float32),
        seeds=seeds.astype(np.int64),
        domains=[str(d) for d in domains],
        batch=batch,
    )


@dataclass
class Directions:
    """K unit directions in W; `layers` (w indices or layer names) says where edits apply (None: all)."""

    directions: torch.Tensor
    singular_values: torch.Tensor | None
    names: list[str] | None
    layers: list[int | str] | None
    path: Path | None = None

    def index_of(self, key: str) -> int:
        """A row by number or by name."""
        where = f"{self.path}: " if self.path else ""
        k = self.directions.shape[0]
        if key.lstrip("-").isdigit():
            i = int(key)
            if not 0 <= i < k:
                raise GancraftError(f"{where}direction index {i} is out of range (file has {k}: 0-{k - 1})")
            return i
        if self.names and key in self.names:
            return self.names.index(key)
        known = f" (names: {', '.join(self.names)})" if self.names else ""
        raise GancraftError(f"{where}no direction named {key!r}; give an index 0-{k - 1}{known}")


def load_directions(path: str | os.PathLike) -> Directions:
    """Read and validate a directions safetensors file."""
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    if not p.is_file():
        raise GancraftError(f"{p}: directions file does not exist")
    try:
        with safe_open(str(p), framework="pt") as fh:
            keys = set(fh.keys())
            meta = fh.metadata() or {}
            if "directions" not in keys:
                raise GancraftError(f"{p}: no 'directions' tensor (has: {', '.join(sorted(keys)) or 'nothing'})")
            d = fh.get_tensor("directions")
            sv = fh.get_tensor("singular_values") if "singular_values" in keys else None
    except (SafetensorError, OSError, ValueError) as exc:
        raise GancraftError(f"{p}: not a readable safetensors directions file ({exc})") from None
    if d.ndim != 2 or d.shape[0] == 0 or not d.is_floating_point():
        raise GancraftError(f"{p}: 'directions' must be a float K x w_dim matrix, got {d.dtype} {tuple(d.shape)}")
    d = d.to(torch.float32)
    if not torch.isfinite(d).all():
        raise GancraftError(f"{p}: 'directions' holds NaN or Inf")
    norms = d.norm(dim=1)
    bad = (norms - 1).abs() > 1e-3
    if bad.any():
        i = int(bad.nonzero()[0])
        raise GancraftError(f"{p}: direction {i} has length {norms[i]:.4g}; rows must be unit vectors")
    if sv is not None and sv.reshape(-1).shape[0] != d.shape[0]:
        raise GancraftError(f"{p}: 'singular_values' has {sv.numel()} values for {d.shape[0]} directions")
    names = _meta_list(meta, "names", p)
    layers = _meta_list(meta, "layers", p)
    if names is not None and len(names) != d.shape[0]:
        raise GancraftError(f"{p}: metadata 'names' has {len(names)} entries for {d.shape[0]} directions")
    if layers is not None and not all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in layers):
        raise GancraftError(f"{p}: metadata 'layers' must list w indices or layer names")
    return Directions(
        directions=d,
        singular_values=None if sv is None else sv.reshape(-1).to(torch.float32),
        names=[str(n) for n in names] if names is not None else None,
        layers=layers,
        path=p,
    )


def _meta_list(meta: dict, key: str, p: Path) -> list | None:
    if key not in meta:
        return None
    try:
        value = json.loads(meta[key])
    except json.JSONDecodeError:
        raise GancraftError(f"{p}: metadata '{key}' is not valid JSON") from None
    if not isinstance(value, list):
        raise GancraftError(f"{p}: metadata '{key}' must be a JSON list")
    return value


@dataclass
class Direction:
    """One direction picked from a file, with the layers it applies to."""

    vector: torch.Tensor
    layers: list[int | str] | None
    label: str
    source: str


def load_direction(spec: str, option: str = "--direction") -> Direction:
    """'FILE:INDEX' (INDEX a row number or a name from the file's metadata) -> one unit direction."""
    path, sep, key = str(spec).rpartition(":")
    if not sep or not path or not key:
        raise GancraftError(f"{option} {spec!r}: expected FILE:INDEX, e.g. ffhq.sefa.st:3")
    dirs = load_directions(path)
    i = dirs.index_of(key)
    label = dirs.names[i] if dirs.names else str(i)
    return Direction(vector=dirs.directions[i].clone(), layers=dirs.layers, label=label, source=str(spec))


@dataclass
class Edit:
    """Move w by alpha along a direction (on its layers only, when the file names them)."""

    direction: Direction
    alpha: float


def parse_edit(spec: str, option: str = "--edit") -> Edit:
    """'FILE:INDEX:ALPHA' -> Edit (ALPHA may be negative: 'dirs.st:2:-1.5')."""
    head, sep, alpha_text = str(spec).rpartition(":")
    if not sep or ":" not in head:
        raise GancraftError(f"{option} {spec!r}: expected FILE:INDEX:ALPHA, e.g. ffhq.sefa.st:3:2.0")
    try:
        alpha = float(alpha_text)
    except ValueError:
        raise GancraftError(f"{option} {spec!r}: ALPHA {alpha_text!r} is not a number") from None
    if not np.isfinite(alpha):
        raise GancraftError(f"{option} {spec!r}: ALPHA must be finite")
    return Edit(direction=load_direction(head, option), alpha=alpha)
