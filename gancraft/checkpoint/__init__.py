"""Checkpoints: the Checkpoint type, native safetensors files and adapters for other formats."""

from .core import Checkpoint
from .io import detect_format, load, save

__all__ = ["Checkpoint", "detect_format", "load", "save"]
