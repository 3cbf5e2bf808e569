"""What a merge method is, and the registry that `average` takes its --method choices from.

A method turns one vector of per-model weights into a recipe for every mixed tensor (see
stream.py); `average` applies it to each tensor, with the weights of that tensor's resolution
under --weights-by-res, and copies buffers from the input the method names. A new method is a
module in this package holding a subclass decorated with @register, plus its import line in
__init__.py (which fixes the order --help lists the methods in).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar, Mapping

from ...errors import GancraftError
from ...registry import Registry
from ..stream import Recipe

# the value of a parameter the user must give (mergekit's ConfigParameterDef(required=True))
REQUIRED = object()


class MergeMethod(ABC):
    """One way of combining N models, or N models and their common parent (--base)."""

    name: ClassVar[str]
    # one line for --help: what the method writes
    summary: ClassVar[str]
    # task-vector methods need --base: their task vectors are MODEL - PARENT
    needs_base: ClassVar[bool] = False
    # the method's own options: name (the CLI flag without dashes) -> default or REQUIRED
    parameters: ClassVar[Mapping[str, object]] = {}

    def check(self, n_models: int, has_base: bool) -> None:
        """Refuse a model count or a --base the method cannot use."""
        if self.needs_base and not has_base:
            raise GancraftError(f"--method {self.name} needs --base PARENT: it merges the task vectors MODEL - PARENT")

    def default_weights(self, n_models: int, has_base: bool) -> list[float]:
        # 1/N against a parent makes the default the mean task vector; without one, equal weights
        return [1.0 / n_models] * n_models if has_base else [1.0] * n_models

    @abstractmethod
    def mix(
        self, weights: tuple[float, ...], has_base: bool, params: Mapping[str, object], what: str
    ) -> tuple[Recipe, int]:
        """The recipe of every mixed tensor under these per-model weights (input 0 is the parent
        with --base), and the input whose buffers the output copies. `what` names the weights'
        option in errors."""

    def suffix(self, has_base: bool) -> str:
        """The tag of the output name `average` derives when -o is not given."""
        return self.name


REGISTRY: Registry[MergeMethod] = Registry("merge method")
# class decorator: makes the method available to `average` under cls.name
register = REGISTRY.add


def names() -> tuple[str, ...]:
    return REGISTRY.names()


def methods() -> tuple[MergeMethod, ...]:
    return REGISTRY.values()


def get(name: str) -> MergeMethod:
    method = REGISTRY.get(name)
    if method is None:
        raise GancraftError(f"--method: unknown method {name!r} (choose {', '.join(REGISTRY.names())})")
    return method


def taking(parameter: str) -> list[str]:
    """The methods that take `parameter`, for --help and refusals."""
    return [m.name for m in REGISTRY.values() if parameter in m.parameters]


def resolve_params(method: MergeMethod, given: Mapping[str, object]) -> dict[str, object]:
    """The method's parameters with defaults filled in; refuses one it does not take (so that
    `--density` on `mean` is an error, not silently ignored) and a missing required one."""
    for name, value in given.items():
        if name not in method.parameters:
            users = taking(name)
            raise GancraftError(
                f"--{name}: --method {method.name} does not take it "
                f"({'only ' + ', '.join(users) + ' do' if users else 'no method does'})"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise GancraftError(f"--{name}: expected a finite number, got {value}")
    out = {name: given.get(name, default) for name, default in method.parameters.items()}
    missing = [name for name, value in out.items() if value is REQUIRED]
    if missing:
        raise GancraftError(f"--method {method.name} needs --{missing[0]}")
    return out


def check_fraction(value: object, what: str) -> float:
    """A density: the fraction of a task vector kept, in (0, 1]."""
    if not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise GancraftError(f"{what}: must be above 0 and at most 1, got {value!r}")
    return float(value)
