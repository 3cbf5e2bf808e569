"""When each frame of a morph falls between its keyframes; shared by latent, domain and prompt morphs."""

from __future__ import annotations

import math

from ..errors import GancraftError


def frame_times(n_keys: int, frames: int, loop: bool) -> list[tuple[int, int, float]]:
    """(from key, to key, t) for each frame. Without loop the first and last frames are the end
    keys; with loop the path returns to the first key and the last frame stops one step short."""
    if n_keys < 2:
        raise GancraftError("interpolation needs at least two keyframes")
    if frames < 1:
        raise GancraftError(f"--frames must be >= 1, got {frames}")
    if loop:
        positions = [i * n_keys / frames for i in range(frames)]
    else:
        positions = [0.0] if frames == 1 else [i * (n_keys - 1) / (frames - 1) for i in range(frames)]
    out = []
    for p in positions:
        i = min(int(math.floor(p)), n_keys - 1 if loop else n_keys - 2)
        out.append((i, (i + 1) % n_keys, p - i))
    return out
