"""Seed lists ('0-63', '1,5,9-12') and the z vectors they stand for."""

from __future__ import annotations

import re

import numpy as np
import torch

from ..errors import GancraftError

# np.random.RandomState accepts seeds in [0, 2**32)
MAX_SEED = 2**32 - 1
# more seeds than any one sampling run needs (FID's 50k images come from -n, not --seeds); the
# list is built in memory, so a mistyped range must stop here rather than exhaust the machine
MAX_SEEDS = 1_000_000

_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def parse_seeds(text: str, option: str = "--seeds", allow_duplicates: bool = False) -> list[int]:
    """Parse a comma-separated list of seeds and inclusive ranges, keeping the order given.

    '0-3,7' -> [0, 1, 2, 3, 7]. Duplicates are refused unless allowed, because two images with
    the same seed would be written to the same file.
    """
    if text is None or not str(text).strip():
        raise GancraftError(f"{option}: empty seed list (expected e.g. 0-63 or 1,5,9-12)")
    seeds: list[int] = []
    for part in str(text).split(","):
        item = part.strip()
        if not item:
            raise GancraftError(f"{option} {text!r}: empty item between commas")
        m = _RANGE.match(item)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise GancraftError(f"{option} {text!r}: range {item!r} ends before it starts")
            _check_bound(hi, option, text)
            _check_count(len(seeds) + hi - lo + 1, option, text)
            seeds.extend(range(lo, hi + 1))
        elif item.isdigit():
            value = int(item)
            _check_bound(value, option, text)
            _check_count(len(seeds) + 1, option, text)
            seeds.append(value)
        else:
            raise GancraftError(f"{option} {text!r}: {item!r} is not a non-negative integer or a range like 0-63")
    if not allow_duplicates:
        seen: set[int] = set()
        for s in seeds:
            if s in seen:
                raise GancraftError(f"{option} {text!r}: seed {s} appears more than once")
            seen.add(s)
    return seeds


def _check_count(count: int, option: str, text: str) -> None:
    # checked before the list grows, so a typo like 0-4000000000 costs nothing
    if count > MAX_SEEDS:
        raise GancraftError(
            f"{option} {text!r}: more than {MAX_SEEDS:,} seeds in one run; split the range over several runs"
        )


def _check_bound(value: int, option: str, text: str) -> None:
    if value > MAX_SEED:
        raise GancraftError(f"{option} {text!r}: seed {value} is larger than {MAX_SEED}")


def z_from_seeds(seeds: list[int] | np.ndarray, z_dim: int) -> torch.Tensor:
    """[N, z_dim] float32 latents, one per seed.

    Uses NVIDIA generate.py's convention, RandomState(seed).randn(z_dim), so a seed names the
    same z here as in NVIDIA's and rosinality-derived tools (float64 draws, rounded to float32,
    which is what their mapping network does with them).
    """
    # seed lists are bounded when parsed; computed ones (an offset plus a count, as FID's
    # --seed-offset and -n make) are checked here, before numpy refuses them with a traceback
    past = [int(s) for s in seeds if not 0 <= int(s) <= MAX_SEED]
    if past:
        raise GancraftError(
            f"seed {past[0]} is outside numpy's seed range 0-{MAX_SEED}: a seed offset plus the "
            "number of images must stay within it (lower --seed-offset or -n)"
        )
    if z_dim <= 0:
        return torch.zeros([len(seeds), 0])
    rows = [np.random.RandomState(int(s)).randn(z_dim) for s in seeds]
    if not rows:
        return torch.zeros([0, z_dim])
    return torch.from_numpy(np.stack(rows)).to(torch.float32)
