"""Number options checked in one place: every number option of every command is finite and bounded.

The ParamTypes of options that hold several numbers in one string (lists, ranges, pairs) are
here as well (NumberText and its subclasses), so each syntax is parsed and refused one way.

Commands declare their options with plain click types (type=float, type=int, click.FloatRange,
click.IntRange); the command group swaps those types for the subclasses below when it loads a
command, so that

- a NaN or infinity never reaches a comparison like `x <= 0` (false for NaN);
- no integer is left without an upper bound, so nothing can allocate or loop in proportion to a
  mistyped number (`--frames 1000000000000`): a bound declared with the option wins, then the
  one in INT_LIMITS / FLOAT_LIMITS below, then MAX_COUNT;
- every bad value ends as one line, exit code 2, naming the option (click's own messages take
  four lines, with a usage banner).
"""

from __future__ import annotations

import abc
import math

import click

from ..errors import GancraftError
from ..latent.seeds import MAX_SEED, MAX_SEEDS

# the bound of an integer option that has none of its own: a count of images, samples or steps
# beyond this is a typo, and every such count is at most proportional to it in memory or time
MAX_COUNT = MAX_SEEDS

# (min, max) by option name, or by "command --option" where one name means different things;
# None keeps the declared end. These are the counts whose memory grows with the value itself.
INT_LIMITS: dict[str, tuple[int | None, int | None]] = {
    # numpy's RandomState (NVIDIA's seed-to-z convention) takes seeds in [0, 2**32)
    "--seed": (0, MAX_SEED),
    "--cluster-seed": (0, MAX_SEED),
    "--seed-offset": (0, MAX_SEED),
    # one batch of 1024 images at 1024 px is 12 GB of float32 pixels; the papers use 32-64
    "--batch": (None, 1024),
    # an hour of video at 30 fps; every frame's w is planned in memory before rendering
    "--frames": (None, 108_000),
    # four times the largest published StyleGAN2 resolution
    "--resolution": (None, 4096),
    "--switch": (None, 4096),
    # hyper-network layers are width x width, stacked depth deep
    "--width": (1, 8192),
    "--depth": (1, 64),
    "--head-depth": (1, 64),
    # a traversal sheet is top-k rows x steps columns of full-size images in one PNG
    "sefa --steps": (None, 64),
    "sefa --top-k": (None, 512),
    # k-means over cluster-samples x height x width activations of one layer
    "--cluster-samples": (None, 4096),
    "--clusters": (None, 4096),
}

# training lengths in kimg: NVIDIA's longest published runs are 25,000 kimg; beyond a million
# the number is a typo (1e30), not a plan
FLOAT_LIMITS: dict[str, tuple[float | None, float | None]] = {
    "--kimg": (None, 1e6),
    "--snap": (None, 1e6),
    "--ema": (None, 1e6),
    # truncation psi: 1 is the plain model, 0 the average image, and published extrapolations stay
    # within +-2; far beyond, w overflows inside the network and the images come out NaN (black)
    "--trunc": (-10, 10),
    "--preview-psi": (-10, 10),
    # a probability
    "--style-mixing": (0, 1),
    # distances along unit directions in W, whose vectors have norms of ~sqrt(w_dim) (20-30);
    # the papers step 3-20
    "--distance": (None, 1000),
    # loss weights: the papers use 0.1-10; a term weighted beyond 10,000 drowns the others and
    # overflows to a diverged run
    "--replay-l2": (None, 1e4),
    "--replay-lpips": (None, 1e4),
    "--source-weight": (None, 1e4),
    "--expansion-weight": (None, 1e4),
    "--tt-weight": (None, 1e4),
    "--angle-weight": (None, 1e4),
    "--norm-weight": (None, 1e4),
    # faster than any display; GIF stores frame times in hundredths of a second
    "--fps": (None, 1000),
}


def primary_name(param: click.Parameter) -> str:
    """The name an option is known by in --help and in messages: its longest name that is not a
    hidden alias (options.Option)."""
    shown = [o for o in param.opts if o not in getattr(param, "aliases", ())]
    return max(shown or param.opts, key=len)


def _name(param: click.Parameter | None) -> str:
    if param is None or not param.opts:
        return "value"
    return primary_name(param)


def _finite(value: float, raw, param: click.Parameter | None) -> float:
    if not math.isfinite(value):
        raise GancraftError(f"{_name(param)} {raw!r}: expected a finite number")
    return value


def _parse(base: click.ParamType, value, param: click.Parameter | None, what: str):
    try:
        return base.convert(value, param, None)
    except click.BadParameter:
        raise GancraftError(f"{_name(param)} {value!r}: expected {what}") from None


def _in_range(value, raw, param: click.Parameter | None, rng: click.IntRange | click.FloatRange):
    low_ok = rng.min is None or (value > rng.min if rng.min_open else value >= rng.min)
    high_ok = rng.max is None or (value < rng.max if rng.max_open else value <= rng.max)
    if low_ok and high_ok:
        return value
    parts = []
    if rng.min is not None:
        parts.append(f"{'above' if rng.min_open else 'at least'} {rng.min:g}")
    if rng.max is not None:
        parts.append(f"{'below' if rng.max_open else 'at most'} {rng.max:g}")
    raise GancraftError(f"{_name(param)} {raw!r}: must be {' and '.join(parts)}")


class FiniteFloat(click.types.FloatParamType):
    def convert(self, value, param, ctx):
        return _finite(_parse(click.FLOAT, value, param, "a number"), value, param)


class FiniteFloatRange(click.FloatRange):
    def convert(self, value, param, ctx):
        # finiteness first: NaN passes every range comparison
        number = _finite(_parse(click.FLOAT, value, param, "a number"), value, param)
        return _in_range(number, value, param, self)


class BoundedInt(click.IntRange):
    """An integer with both ends checked (an unbounded end is given one by `check_numbers`)."""

    def convert(self, value, param, ctx):
        return _in_range(_parse(click.INT, value, param, "a whole number"), value, param, self)


def _limits(table: dict, command: click.Command, param: click.Parameter) -> tuple:
    name = _name(param)
    return table.get(f"{command.name} {name}", table.get(name, (None, None)))


def _bounded_int(command: click.Command, param: click.Parameter) -> BoundedInt:
    t = param.type
    low, high = _limits(INT_LIMITS, command, param)
    declared = isinstance(t, click.IntRange)
    lo = t.min if declared and t.min is not None else low
    hi = t.max if declared and t.max is not None else (high if high is not None else MAX_COUNT)
    return BoundedInt(lo, hi, declared and t.min_open, declared and t.max_open)


def _finite_float(command: click.Command, param: click.Parameter) -> click.ParamType:
    t = param.type
    low, high = _limits(FLOAT_LIMITS, command, param)
    declared = isinstance(t, click.FloatRange)
    lo = t.min if declared and t.min is not None else low
    hi = t.max if declared and t.max is not None else high
    if lo is None and hi is None:
        return FiniteFloat()
    return FiniteFloatRange(lo, hi, declared and t.min_open, declared and t.max_open)


def _path_fail(param: click.Parameter | None, message: str) -> None:
    # click's path checks (a directory where a file is wanted, a missing input) otherwise end in
    # its four-line usage error; its message already quotes the path
    who = param.human_readable_name if isinstance(param, click.Argument) else _name(param)
    raise GancraftError(f"{who}: {message}")


def check_numbers(command: click.Command) -> click.Command:
    """Give every number option of `command` (and of its subcommands) the checks above, and every
    path parameter one-line errors; returns it."""
    for param in command.params:
        t = param.type
        if isinstance(t, (BoundedInt, FiniteFloat, FiniteFloatRange)):
            continue
        if isinstance(t, click.types.IntParamType):
            param.type = _bounded_int(command, param)
        elif isinstance(t, click.types.FloatParamType):
            param.type = _finite_float(command, param)
        elif isinstance(t, click.Path):
            # an instance attribute: click.Path.convert reports every problem through self.fail
            t.fail = lambda message, param=None, ctx=None: _path_fail(param, message)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            check_numbers(sub)
    return command


class NumberText(click.ParamType, abc.ABC):
    """Several numbers written as one string; a refusal is one line naming the option.

    A value that is already parsed (a default given as a list or tuple) passes unchanged.
    """

    name = "numbers"

    def convert(self, value, param, ctx):
        if isinstance(value, (list, tuple)):
            return value
        return self.parse(str(value), _name(param))

    @abc.abstractmethod
    def parse(self, text: str, name: str):
        """`text` parsed; `name` is the option, for the messages."""


class FloatList(NumberText):
    """'0.7,0.3': finite numbers separated by commas (empty items are skipped)."""

    def parse(self, text: str, name: str) -> list[float]:
        try:
            values = [float(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise GancraftError(f"{name} {text!r}: expected comma-separated numbers") from None
        if not all(math.isfinite(v) for v in values):
            raise GancraftError(f"{name} {text!r}: expected finite numbers")
        return values


class IntList(NumberText):
    """'0,1,510': at least one whole number, separated by commas (empty items are skipped).

    `what` names the numbers in messages; `words` are other values the option takes, returned as
    the text itself: 'WORD' alone or 'WORD:ARG'.
    """

    def __init__(self, what: str = "numbers", words: tuple[str, ...] = ()):
        self.what = what
        self.words = words

    def parse(self, text: str, name: str) -> list[int] | str:
        if text.partition(":")[0] in self.words:
            return text
        try:
            values = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            values = []
        if not values:
            alternatives = "".join(f", '{w}' or '{w}:...'" for w in self.words)
            raise GancraftError(f"{name} {text!r}: expected comma-separated {self.what}{alternatives}")
        return values


class IntRanges(NumberText):
    """'0,1,2' or '0-3': whole numbers and inclusive ranges, mixed (a leading '-' is a sign).

    Every number lies within `bounds` (inclusive) where given, and the list is at most MAX_COUNT long,
    checked before a range is expanded (so '0-4000000000' costs nothing).
    """

    def __init__(self, bounds: tuple[int, int] | None = None):
        self.bounds = bounds

    def parse(self, text: str, name: str) -> list[int]:
        out: list[int] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            lo, sep, hi = part.partition("-")
            try:
                first, last = (int(lo), int(hi)) if sep and lo else (int(part), int(part))
            except ValueError:
                raise GancraftError(f"{name} {text!r}: expected numbers like 0,1,2 or 0-3") from None
            for end in (first, last) if self.bounds else ():
                if not self.bounds[0] <= end <= self.bounds[1]:
                    raise GancraftError(f"{name} {text!r}: {end} is outside {self.bounds[0]}-{self.bounds[1]}")
            if len(out) + last - first + 1 > MAX_COUNT:
                raise GancraftError(f"{name} {text!r}: more than {MAX_COUNT:,} numbers")
            out.extend(range(first, last + 1))
        if not out:
            raise GancraftError(f"{name} {text!r}: no numbers given")
        return out


class FloatPair(NumberText):
    """Two finite numbers joined by `sep` ('-3:3', '0.3,1'), named `names` in messages;
    `distinct` refuses two equal ones (an empty range)."""

    def __init__(self, sep: str, names: tuple[str, str], example: str, distinct: bool = False):
        self.sep = sep
        self.names = names
        self.example = example
        self.distinct = distinct

    def parse(self, text: str, name: str) -> tuple[float, float]:
        a, b = self.names
        expected = f"{name} {text!r}: expected two numbers {a}{self.sep}{b}, e.g. {self.example}"
        parts = text.split(self.sep)
        try:
            if len(parts) != 2:
                raise ValueError
            pair = (float(parts[0]), float(parts[1]))
        except ValueError:
            raise GancraftError(expected) from None
        if not all(math.isfinite(v) for v in pair) or (self.distinct and pair[0] == pair[1]):
            also = " and different" if self.distinct else ""
            raise GancraftError(f"{name} {text!r}: {a} and {b} must be finite{also}")
        return pair
