"""gancraft: a command-line toolbelt for pretrained GAN generators.

The Python API does everything the CLI does; the CLI is a thin layer over it.
"""

__version__ = "0.1.0"

from .checkpoint import Checkpoint, load, save  # noqa: E402

__all__ = ["Checkpoint", "load", "save", "__version__"]
