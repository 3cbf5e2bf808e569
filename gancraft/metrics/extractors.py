"""What a feature-extractor kind is, and the registry that `load_extractor` and `fid --extractor` take
their choices from.

A kind recognises the --extractor values it answers to (a name, a name:MODEL, a file) and
builds the extractor. A new kind is a module holding a subclass decorated with @register, plus
its import line in metrics/__init__.py. The built-in ones are in features.py, registered in the
order --help lists them; the package's __init__ imports it, so they are registered whenever this
module is imported.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import ClassVar, Protocol

import torch

from ..errors import GancraftError
from ..registry import Registry


class FeatureExtractor(Protocol):
    name: str
    resize: str
    description: str
    device: torch.device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor: ...


class ExtractorKind(ABC):
    """One family of feature extractors, named by the --extractor values it accepts."""

    name: ClassVar[str]
    # the accepted spellings, for the unknown-extractor message ("clip", "clip:MODEL")
    spellings: ClassVar[tuple[str, ...]]
    # its entry in --extractor's help
    summary: ClassVar[str]
    # whether the kind takes --resize (a resize convention) or brings images to its input its own way
    takes_resize: ClassVar[bool] = False

    def accepts(self, spec: str) -> bool:
        return spec == self.name

    @abstractmethod
    def build(
        self,
        spec: str,
        weights: str | os.PathLike | None,
        device: str | torch.device | None,
        download: bool,
        resize: str | None,
    ) -> FeatureExtractor:
        """The extractor for `spec` (which accepts() said yes to); `resize` is None unless takes_resize."""


REGISTRY: Registry[ExtractorKind] = Registry("feature extractor")
# class decorator: makes the kind available to load_extractor under cls.name
register = REGISTRY.add


def kinds() -> tuple[ExtractorKind, ...]:
    return REGISTRY.values()


def _either(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def help_text() -> str:
    """--extractor's help: every kind's summary."""
    summaries = [k.summary for k in REGISTRY.values()]
    return (_either(summaries) if len(summaries) < 3 else ", ".join(summaries[:-1]) + ", or " + summaries[-1]) + "."


def find(spec: str, resize: str | None = None) -> ExtractorKind:
    """The kind that accepts `spec`; refuses --resize for a kind that resizes its own way."""
    kind = next((k for k in REGISTRY.values() if k.accepts(spec)), None)
    if resize is not None and (kind is None or not kind.takes_resize):
        users = [k.name for k in REGISTRY.values() if k.takes_resize]
        raise GancraftError(
            f"--resize applies to the {_either(users)} extractor only; '{spec}' resizes images its own way"
        )
    if kind is None:
        spellings = [s for k in REGISTRY.values() for s in k.spellings]
        raise GancraftError(f"unknown feature extractor '{spec}': use {_either(spellings)}")
    return kind
