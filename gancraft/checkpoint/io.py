"""Load any supported checkpoint (format detected from content) and save native, rosinality or NVIDIA files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..io_util import atomic_write

# isort: off
# importing a format's module registers it; files are tried in this order (rosinality before the
# network pickles: torch's pre-zip files are pickles too), and convert --help lists writers in it
from . import native, rosinality, tf, nvidia  # noqa: F401

# isort: on
from .core import Checkpoint
from .formats import HEAD_BYTES, CheckpointFormat, detect, get_writer, writer_names

# what save() writes: gancraft safetensors, rosinality .pt, NVIDIA network pickle
WRITE_FORMATS = writer_names()


def detect_format(path: str | os.PathLike) -> str:
    """Return 'safetensors', 'torch' (rosinality-style .pt) or 'pickle' from the file's bytes."""
    return _detect(Path(path)).container


def _detect(p: Path) -> CheckpointFormat:
    if not p.exists():
        raise CheckpointError(f"{p}: no such file")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, expected a checkpoint file")
    try:
        with open(p, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read ({exc.strerror})") from None
    if not head:
        raise CheckpointError(f"{p}: empty file")
    fmt = detect(head)
    if fmt is None:
        raise CheckpointError(f"{p}: unknown checkpoint format (not safetensors, a torch .pt file or a pickle)")
    return fmt


def load(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint of any supported format. Nothing in the file is ever executed."""
    p = Path(path)
    ckpt = _detect(p).read(p)
    ckpt.path = p
    return ckpt


def save(
    ckpt: Checkpoint,
    path: str | os.PathLike,
    to: str = "native",
    force: bool = False,
    inputs: tuple = (),
    **options: Any,
) -> Path:
    """Write atomically in format `to` (one of WRITE_FORMATS); refuses to replace an input, or an
    existing file unless force. `options` go to that format's writer (write_rosinality, write_nvidia)."""
    fmt = get_writer(to)
    with atomic_write(path, force=force, inputs=inputs) as tmp:
        fmt.write(ckpt, tmp, **options)
    return Path(path)
