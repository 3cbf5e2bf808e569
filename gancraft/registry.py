"""The one registry behind gancraft's plug-in kinds: merge methods, training methods, checkpoint
formats and feature extractors.

Each kind keeps one Registry in the module that defines its base class, and a new member is a
class decorated with that registry's `add` (the module exposes it as `register`). Entries keep
their registration order, which is the order --help lists them in and the order formats are
tried in.

Tests that register a stand-in member do it inside `scoped()`, which puts the entries back when
it ends. Registries are never replaced by another object: a decorator bound to `REGISTRY.add`
must reach the registry every lookup reads (an earlier version's tests swapped the module's
dict for a copy, and the bound decorator kept writing to the original).
"""

from __future__ import annotations

import contextlib
from typing import Generic, Iterator, TypeVar

V = TypeVar("V")
C = TypeVar("C", bound=type)


class Registry(Generic[V]):
    """Members by name, in registration order; a name may be registered once."""

    def __init__(self, what: str, instances: bool = True):
        """`what` names a member in errors ("merge method"). With `instances`, a registered class
        is kept as one instance of it (the stateless kinds); without, the class itself is kept,
        for kinds built anew for every use (a training method holds one run's state)."""
        self.what = what
        self.instances = instances
        self._entries: dict[str, V] = {}

    def add(self, cls: C) -> C:
        """Class decorator: register `cls` under `cls.name`."""
        name = cls.name
        if name in self._entries:
            raise RuntimeError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = cls() if self.instances else cls
        return cls

    def get(self, name: str) -> V | None:
        return self._entries.get(name)

    def __getitem__(self, name: str) -> V:
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def values(self) -> tuple[V, ...]:
        return tuple(self._entries.values())

    @contextlib.contextmanager
    def scoped(self) -> Iterator["Registry[V]"]:
        """Registrations made inside the block are undone when it ends (for tests)."""
        saved = dict(self._entries)
        try:
            yield self
        finally:
            self._entries.clear()
            self._entries.update(saved)
