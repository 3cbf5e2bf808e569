"""Model merging: weighted averages, layer blends and channel swaps, streamed tensor by tensor."""

from .average import average, average_checkpoints, average_recipes
from .blend import ChannelSwap, blend_checkpoints, blend_layers, blend_recipes, parse_alpha, render_preview
from .methods.slerp import slerp

__all__ = [
    "average",
    "average_checkpoints",
    "average_recipes",
    "slerp",
    "ChannelSwap",
    "blend_checkpoints",
    "blend_layers",
    "blend_recipes",
    "parse_alpha",
    "render_preview",
]
