"""What a checkpoint format is, and the registry that `load` detects files with and `convert --to` takes
its choices from.

A format recognises its files from their first bytes (never from the name) and reads them; a
format gancraft can also produce has a writer, an output suffix and a line for --help. A new
format is a subclass decorated with @register, in the module that implements it, plus that
module's import in io.py (which fixes the order files are tried and --help lists the writers).

NVIDIA's and TF's network pickles are one container with two contents: which one a file is
shows only once it is unpickled (as data), so both are NetworkPickle formats, and whichever
reads the file hands the unpickled data to the one that claims it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import torch

from ..errors import CheckpointError
from ..registry import Registry
from .core import Checkpoint
from .safe_pickle import safe_load

# how many leading bytes detect() is shown
HEAD_BYTES = 16


class CheckpointFormat(ABC):
    """One kind of checkpoint file: a reader, and a writer where gancraft can write it."""

    name: ClassVar[str]
    # the kind of file detect_format reports; formats sharing one are told apart by content
    container: ClassVar[str]
    # writers only: the output file's suffix and one line for convert's --help
    suffix: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # writers only: the keyword options (convert's flags, without dashes) prepare() takes
    options: ClassVar[tuple[str, ...]] = ()
    # writers only: the network families the format can hold
    families: ClassVar[tuple[str, ...]] = ("stylegan2",)

    @abstractmethod
    def detect(self, head: bytes) -> bool:
        """Whether a file starting with `head` (up to HEAD_BYTES, never empty) may be this format."""

    @abstractmethod
    def read(self, path: Path) -> Checkpoint:
        """Read the file as data; nothing in it is ever executed."""

    @property
    def writable(self) -> bool:
        return type(self).write is not CheckpointFormat.write

    def write(self, ckpt: Checkpoint, path: Path, **options: Any) -> Any:
        """Write `ckpt` straight to `path` (save() makes it atomic); `options` come from prepare()."""
        raise CheckpointError(f"gancraft cannot write {self.name} checkpoints")

    def prepare(
        self, ckpt: Checkpoint, device: str | torch.device = "cpu", **options: Any
    ) -> tuple[dict[str, Any], str | None]:
        """Check that `ckpt` can be written with these options before anything is written; returns
        the writer's keyword options and a line worth telling the user (or None)."""
        return dict(options), None


class NetworkPickle(CheckpointFormat):
    """A format whose files are network pickles (NVIDIA's or TF's); read with the safe unpickler."""

    container = "pickle"

    def detect(self, head: bytes) -> bool:
        return head[:1] == b"\x80"

    def read(self, path: Path) -> Checkpoint:
        return read_network_pickle(path)

    @abstractmethod
    def claims(self, data: Any) -> bool:
        """Whether the unpickled content is this format's."""

    @abstractmethod
    def convert(self, data: Any, path: Path) -> Checkpoint:
        """The Checkpoint of unpickled content this format claims."""


REGISTRY: Registry[CheckpointFormat] = Registry("checkpoint format")
# class decorator: makes the format known to `load` (and to `convert --to` if it writes)
register = REGISTRY.add


def formats() -> tuple[CheckpointFormat, ...]:
    return REGISTRY.values()


def writers() -> tuple[CheckpointFormat, ...]:
    return tuple(f for f in REGISTRY.values() if f.writable)


def writer_names() -> tuple[str, ...]:
    return tuple(f.name for f in writers())


def get_writer(name: str) -> CheckpointFormat:
    fmt = REGISTRY.get(name)
    if fmt is None or not fmt.writable:
        raise CheckpointError(f"unknown output format {name!r} (choose {', '.join(writer_names())})")
    return fmt


def detect(head: bytes) -> CheckpointFormat | None:
    """The first registered format that recognises `head`; registration order settles overlaps
    (torch's pre-zip files are pickles too, so rosinality is tried before the network pickles)."""
    return next((f for f in REGISTRY.values() if f.detect(head)), None)


def read_network_pickle(path: Path) -> Checkpoint:
    """Unpickle `path` once (as data) and convert it with the network-pickle format that claims it."""
    data = safe_load(path)
    for fmt in REGISTRY.values():
        if isinstance(fmt, NetworkPickle) and fmt.claims(data):
            return fmt.convert(data, path)
    raise CheckpointError(f"{path}: this pickle is not a StyleGAN network pickle")
