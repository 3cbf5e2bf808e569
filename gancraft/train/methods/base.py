"""What a training method is, and the registry that `finetune --method` takes its choices from.

A training method is a `Method` of the one training loop (loop.py): it supplies the starting
networks, the parameters that train, the data, penalties and what the checkpoint records. The
ones a user picks by name are subclasses of TrainingMethod, registered here. A new one is a
module in this package holding a subclass decorated with @register, plus its import line in
__init__.py (which fixes the order --help lists them in).
"""

from __future__ import annotations

import math
import re
from typing import Any, ClassVar, Sequence

from ...errors import GancraftError
from ...registry import Registry
from ..loop import Method

# what follows NAME on --method: none, one number, or numbers (EWC's three lambdas)
MethodValue = float | tuple[float, float, float] | None

_DOMAIN_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class TrainingMethod(Method):
    """A training method a command selects by name."""

    name: ClassVar[str]
    # the command that runs it
    command: ClassVar[str]
    # the option of `command` that selects it: "--method" (whose --help lists `summary`), another
    # option ("--params" for domain vectors), or "" when the command runs this method only
    option: ClassVar[str] = "--method"
    # its entry in --help, spelling included ("freeze-d=K (K layers of D from the image side)")
    summary: ClassVar[str] = ""
    # the value --method NAME=VALUE takes ("K"), "" when it takes none
    metavar: ClassVar[str] = ""
    # other names --method accepts for it; they name this class only, not its subclasses
    aliases: ClassVar[tuple[str, ...]] = ()
    # the keyword settings __init__ takes, which `build` passes on
    settings: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def parse_value(cls, spec: str, values: list[float]) -> MethodValue:
        """The value of `--method spec` from its numbers (finite, >= 0); only called when metavar is set."""
        raise NotImplementedError(f"{cls.name} declares metavar {cls.metavar!r} but parses no value")


REGISTRY: Registry[type[TrainingMethod]] = Registry("training method", instances=False)
# class decorator: makes the method known to parse_method, build and --help under cls.name
register = REGISTRY.add


def methods(command: str, option: str = "--method") -> tuple[type[TrainingMethod], ...]:
    """The methods `command` selects with `option`, in registration order."""
    return tuple(m for m in REGISTRY.values() if m.command == command and m.option == option)


def _aliases(cls: type[TrainingMethod]) -> tuple[str, ...]:
    # read from the class itself: a subclass of an aliased method inherits the attribute, not the alias
    return vars(cls).get("aliases", ())


def _spellings(command: str) -> list[str]:
    out = []
    for m in methods(command):
        out.append(f"{m.name}={m.metavar}" if m.metavar else m.name)
        out.extend(_aliases(m))
    return out


def help_text(command: str) -> str:
    """--method's help: every method's summary."""
    summaries = [m.summary for m in methods(command)]
    return ", ".join(summaries[:-1]) + ", or " + summaries[-1] + "." if len(summaries) > 1 else summaries[0] + "."


def parse_method(spec: str, command: str = "finetune") -> tuple[type[TrainingMethod], MethodValue]:
    """The method and value of a --method spec: NAME, or NAME=VALUE (also 'NAME VALUE', 'NAME:VALUE')
    for a method with a metavar; numbers are comma-separated."""
    parts = re.split(r"[=: ]+", spec.strip(), maxsplit=1)
    name = parts[0].lower()
    arg = parts[1] if len(parts) > 1 else None
    cls = next((m for m in methods(command) if name == m.name or name in _aliases(m)), None)
    if cls is None:
        raise GancraftError(f"--method: unknown method {spec!r} (choose from {', '.join(_spellings(command))})")
    if not cls.metavar:
        if arg is not None:
            raise GancraftError(f"--method {name} takes no value (got {arg!r})")
        return cls, None
    if arg is None:
        raise GancraftError(f"--method {name} needs a value: {name}={cls.metavar}")
    try:
        values = [float(v) for v in arg.split(",")]
    except ValueError:
        raise GancraftError(f"--method {spec}: {arg!r} is not a number") from None
    if any(not (v >= 0 and math.isfinite(v)) for v in values):
        raise GancraftError(f"--method {spec}: values must be finite and >= 0")
    return cls, cls.parse_value(spec, values)


def check_names(names: Sequence[str], option: str) -> None:
    """Domain names become tensor and folder names: letters, digits, '-' and '_', each once."""
    for n in names:
        if not _DOMAIN_NAME.match(n):
            raise GancraftError(f"{option} {n}: names may use letters, digits, '-' and '_' only")
    dup = next((n for n in names if list(names).count(n) > 1), None)
    if dup is not None:
        raise GancraftError(f"{option}: {dup!r} is given twice")


def build(cls: type[TrainingMethod], value: MethodValue, params: str, *args: Any, **settings: Any) -> TrainingMethod:
    """The method to run: `cls` (the --method choice, with its value), or the variant that
    --params names (it must extend `cls`), built from `args` and the settings it takes.
    Callers pass every method's settings (e.g. fisher_samples, modulation); each gets its own."""
    variants = [m for m in REGISTRY.values() if m.command == cls.command and m.option == "--params"]
    if params != "all":
        chosen = next((m for m in variants if m.name == params), None)
        if chosen is None:
            raise GancraftError(
                f"--params: expected {' or '.join(['all', *(m.name for m in variants)])}, got {params!r}"
            )
        if not issubclass(chosen, cls):
            raise GancraftError(f"--params {params} cannot be combined with --method {cls.name}")
        cls = chosen
    kwargs = {k: v for k, v in settings.items() if k in cls.settings}
    if cls.metavar:
        kwargs["value"] = value
    return cls(*args, **kwargs)
