"""Number options checked in one place: every float option of every command must be finite.

Commands declare their options with plain click types (type=float, click.FloatRange); the
command group swaps those types for the subclasses below when it loads a command, so a NaN or
infinity never reaches a comparison like `x <= 0` (false for NaN) and ends as one line,
exit code 2, naming the option.
"""

from __future__ import annotations

import math

import click

from ..errors import GancraftError


def _finite(value: float, raw, param: click.Parameter | None) -> float:
    if not math.isfinite(value):
        name = param.opts[0] if param is not None and param.opts else "value"
        raise GancraftError(f"{name} {raw!r}: expected a finite number")
    return value


class FiniteFloat(click.types.FloatParamType):
    def convert(self, value, param, ctx):
        return _finite(super().convert(value, param, ctx), value, param)


class FiniteFloatRange(click.FloatRange):
    def convert(self, value, param, ctx):
        # finiteness first: NaN passes every range comparison
        return super().convert(_finite(click.FLOAT.convert(value, param, ctx), value, param), param, ctx)


def check_numbers(command: click.Command) -> click.Command:
    """Give every float option of `command` (and of its subcommands) the finite check; returns it."""
    for param in command.params:
        t = param.type
        if isinstance(t, click.FloatRange) and not isinstance(t, FiniteFloatRange):
            param.type = FiniteFloatRange(t.min, t.max, t.min_open, t.max_open, t.clamp)
        elif type(t) is click.types.FloatParamType:
            param.type = FiniteFloat()
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            check_numbers(sub)
    return command
