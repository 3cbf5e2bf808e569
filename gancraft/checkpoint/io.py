"""Load any supported checkpoint (format detected from content) and save native, rosinality or NVIDIA files."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Callable

from ..errors import CheckpointError
from ..io_util import atomic_write
from .core import Checkpoint

# torch.save's pre-zip ("legacy") format starts with a pickled magic number
_TORCH_LEGACY_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")
# what save() writes: gancraft safetensors, rosinality .pt, NVIDIA network pickle
WRITE_FORMATS = ("native", "rosinality", "nvidia")


def detect_format(path: str | os.PathLike) -> str:
    """Return 'native', 'safetensors', 'torch' (rosinality-style .pt) or 'pickle' from the file's bytes."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, expected a checkpoint file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read ({exc.strerror})") from None
    if not head:
        raise CheckpointError(f"{p}: empty file")
    if head.startswith(b"PK\x03\x04") or head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and n < (1 << 40):
            return "safetensors"
    if head[0] == 0x80:
        return "pickle"
    raise CheckpointError(f"{p}: unknown checkpoint format (not safetensors, a torch .pt file or a pickle)")


def load(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint of any supported format. Nothing in the file is ever executed."""
    p = Path(path)
    fmt = detect_format(p)
    if fmt == "safetensors":
        from .native import read_native

        ckpt = read_native(p)
    elif fmt == "torch":
        from .rosinality import read_rosinality

        ckpt = read_rosinality(p)
    else:
        from .nvidia import read_pickle

        ckpt = read_pickle(p)
    ckpt.path = p
    return ckpt


def _writer(to: str) -> Callable[..., Any]:
    if to == "native":
        from .native import write_native

        return write_native
    if to == "rosinality":
        from .rosinality import write_rosinality

        return write_rosinality
    from .nvidia_export import write_nvidia

    return write_nvidia


def save(ckpt: Checkpoint, path: str | os.PathLike, to: str = "native", force: bool = False,
         inputs: tuple = (), **options: Any) -> Path:
    """Write atomically in format `to` (one of WRITE_FORMATS); refuses to replace an input, or an
    existing file unless force. `options` go to that format's writer (write_rosinality, write_nvidia)."""
    if to not in WRITE_FORMATS:
        raise CheckpointError(f"unknown output format {to!r} (choose {', '.join(WRITE_FORMATS)})")
    writer = _writer(to)
    with atomic_write(path, force=force, inputs=inputs) as tmp:
        writer(ckpt, tmp, **options)
    return Path(path)
