"""Native checkpoint files: safetensors with JSON metadata, validated before anything is allocated."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import __version__
from ..errors import CheckpointError
from ..nets.config import DiscriminatorConfig, GeneratorConfig, config_from_dict, config_to_dict
from ..nets.stylegan3 import StyleGAN3Config
from .core import Checkpoint
from .formats import CheckpointFormat, register

FORMAT_TAG = "gancraft"
MAX_HEADER = 100 * 1024 * 1024
_DTYPE_SIZES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "U16": 2,
    "U32": 4,
    "U64": 8,
}


def read_header(path: Path) -> dict[str, Any]:
    """Parse and check a safetensors header: every tensor must lie inside the file with a size
    that matches its shape, so a hostile header cannot trigger a huge allocation."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file (no header)")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER or 8 + n > size:
            raise CheckpointError(f"{path}: corrupt safetensors header (declares {n} header bytes, file has {size})")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: corrupt safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    data_size = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            count = 1
            for d in shape:
                if not isinstance(d, int) or d < 0:
                    raise ValueError
                count *= d
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: corrupt safetensors entry for tensor {name!r}") from None
        if dtype not in _DTYPE_SIZES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dtype}")
        if not (isinstance(begin, int) and isinstance(end, int)) or not 0 <= begin <= end <= data_size:
            raise CheckpointError(
                f"{path}: tensor {name!r} lies outside the file (offsets {begin}..{end}, "
                f"data is {data_size} bytes): truncated or corrupt"
            )
        if count * _DTYPE_SIZES[dtype] != end - begin:
            raise CheckpointError(f"{path}: tensor {name!r} declares shape {shape} but holds {end - begin} bytes")
    return header


def _meta_json(meta: dict[str, str], key: str, default: Any, path: Path) -> Any:
    if key not in meta:
        return default
    try:
        return json.loads(meta[key])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: metadata field {key!r} is not valid JSON") from None


def parse_metadata(meta: dict[str, str], path: Path) -> dict[str, Any]:
    if meta.get("format") != FORMAT_TAG:
        raise CheckpointError(
            f"{path}: a safetensors file, but not a gancraft checkpoint (no architecture config in its metadata)"
        )
    config = _meta_json(meta, "config", None, path)
    if not isinstance(config, dict) or "G" not in config:
        raise CheckpointError(f"{path}: metadata has no generator architecture config")
    family = config.get("family", "stylegan2")
    g_class = {"stylegan2": GeneratorConfig, "stylegan3": StyleGAN3Config}.get(family)
    if g_class is None:
        raise CheckpointError(f"{path}: model family {family!r} is not supported")
    g_cfg = config_from_dict(g_class, config["G"], f"{path}: generator")
    d_cfg = config_from_dict(DiscriminatorConfig, config["D"], f"{path}: discriminator") if config.get("D") else None
    return dict(
        g_config=g_cfg,
        d_config=d_cfg,
        domains=_meta_json(meta, "domains", {}, path),
        history=_meta_json(meta, "history", [], path),
        extra=_meta_json(meta, "extra", {}, path),
    )


def build_metadata(ckpt: Checkpoint) -> dict[str, str]:
    config = {"family": ckpt.family, "G": config_to_dict(ckpt.g_config)}
    if ckpt.d_config is not None:
        config["D"] = config_to_dict(ckpt.d_config)
    return {
        "format": FORMAT_TAG,
        "gancraft_version": __version__,
        "config": json.dumps(config),
        "domains": json.dumps(ckpt.domains),
        "history": json.dumps(ckpt.history),
        "extra": json.dumps(ckpt.extra),
    }


class LazyCheckpoint:
    """A native checkpoint opened for tensor-by-tensor reading (merges stream through this)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        header = read_header(self.path)
        meta = header.get("__metadata__") or {}
        self.info = parse_metadata(meta, self.path)
        self.shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
        self.dtypes = {k: v["dtype"] for k, v in header.items() if k != "__metadata__"}
        try:
            self._handle = safe_open(str(self.path), framework="pt")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{self.path}: cannot open safetensors file ({exc})") from None

    def keys(self) -> list[str]:
        return list(self.shapes)

    def get(self, name: str) -> torch.Tensor:
        try:
            return self._handle.get_tensor(name)
        except Exception as exc:
            raise CheckpointError(f"{self.path}: cannot read tensor {name!r} ({exc})") from None

    def items(self) -> Iterator[tuple[str, torch.Tensor]]:
        for k in self.keys():
            yield k, self.get(k)

    def skeleton(self) -> Checkpoint:
        """A Checkpoint with this file's metadata and no tensors (filled by the caller)."""
        return Checkpoint(tensors={}, source_format="native", path=self.path, **self.info)


def read_native(path: Path) -> Checkpoint:
    lazy = LazyCheckpoint(path)
    ckpt = lazy.skeleton()
    ckpt.tensors = dict(lazy.items())
    return ckpt


def write_native(ckpt: Checkpoint, path: Path) -> None:
    save_file(_unshared(ckpt.tensors), str(path), metadata=build_metadata(ckpt))


@register
class Native(CheckpointFormat):
    name = "native"
    container = "safetensors"
    suffix = ".st"
    summary = "gancraft safetensors"
    families = ("stylegan2", "stylegan3")

    def detect(self, head: bytes) -> bool:
        # a little-endian header length, then the header's JSON object
        return len(head) >= 9 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < (1 << 40)

    def read(self, path: Path) -> Checkpoint:
        return read_native(path)

    def write(self, ckpt: Checkpoint, path: Path, **options: Any) -> None:
        write_native(ckpt, path)


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU tensors that safetensors can write: each owns its whole storage.

    Tensors that share memory are legitimate (a pickle that stores one network as both G and
    G_ema, or views of one buffer), but safetensors refuses them, so those get copies.
    """
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        t = v.detach().cpu().contiguous()
        storage = t.untyped_storage()
        if storage.data_ptr() in seen or storage.nbytes() != t.numel() * t.element_size():
            t = t.clone()
            storage = t.untyped_storage()
        seen.add(storage.data_ptr())
        out[k] = t
    return out
