"""Per-resolution weights for `average`: one weight vector per synthesis resolution.

'4:1,0;64:0,1' lists the models' weights at some resolutions. A resolution between two listed
ones gets the weights interpolated linearly in log2(resolution), i.e. in the number of doublings
(resolutions double from block to block, so equal steps in the exponent are equal steps
through the network); below the first or above the last listed one, the nearest listed weights
hold. So '4:1,0;64:0,1' gives 8: 0.75,0.25; 16: 0.5,0.5; 32: 0.25,0.75; 128 and up: 0,1, and
a hard switch is two neighbouring resolutions: '16:1,0;32:0,1'.
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

from ..errors import GancraftError

_SYNTHESIS_BLOCK = re.compile(r"^(?:G|G_ema)\.synthesis\.b(\d+)\.")


def parse_weights_by_res(text: str) -> dict[int, tuple[float, ...]]:
    """'RES:W1,W2,...;RES:...' -> {res: weights}, resolutions in any order, each once."""
    table: dict[int, tuple[float, ...]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        res_text, sep, weights_text = part.partition(":")
        try:
            res = int(res_text)
            weights = tuple(float(w) for w in weights_text.split(","))
        except ValueError:
            res, weights = 0, ()
        if not sep or res < 4 or res & (res - 1) or not weights:
            raise GancraftError(
                f"--weights-by-res: {part!r} is not RES:W1,W2,... with RES a power of two >= 4 (e.g. '4:1,0;64:0,1')"
            )
        if any(not math.isfinite(w) for w in weights):
            raise GancraftError(f"--weights-by-res: {part!r}: weights must be finite numbers")
        if res in table:
            raise GancraftError(f"--weights-by-res: resolution {res} is given twice")
        table[res] = weights
    if not table:
        raise GancraftError("--weights-by-res: no RES:W1,W2,... given (e.g. '4:1,0;64:0,1')")
    lengths = {len(w) for w in table.values()}
    if len(lengths) > 1:
        raise GancraftError("--weights-by-res: every resolution needs the same number of weights")
    return table


def check_table(table: Mapping[int, Sequence[float]], n_models: int, resolutions: Sequence[int]) -> None:
    """Refuse a table that does not fit the models: one weight per model, resolutions they have."""
    for res, weights in table.items():
        if len(weights) != n_models:
            raise GancraftError(f"--weights-by-res: got {len(weights)} weights at {res} for {n_models} models")
        if res not in resolutions:
            raise GancraftError(
                f"--weights-by-res: the models have no resolution {res} "
                f"(their blocks are at {', '.join(map(str, resolutions))})"
            )


def weights_at(table: Mapping[int, Sequence[float]], res: int) -> tuple[float, ...]:
    """The weights at `res` under the rule in the module docstring."""
    points = sorted(table)
    if res <= points[0]:
        return tuple(table[points[0]])
    if res >= points[-1]:
        return tuple(table[points[-1]])
    hi = next(p for p in points if p >= res)
    if hi == res:
        return tuple(table[res])
    lo = points[points.index(hi) - 1]
    t = (math.log2(res) - math.log2(lo)) / (math.log2(hi) - math.log2(lo))
    return tuple((1 - t) * a + t * b for a, b in zip(table[lo], table[hi]))


def block_resolution(key: str) -> int | None:
    """The resolution of a StyleGAN2 synthesis block's tensor; None for every other tensor."""
    m = _SYNTHESIS_BLOCK.match(key)
    return int(m.group(1)) if m else None
