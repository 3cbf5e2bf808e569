"""gancraft: a command-line toolbelt for pretrained GAN generators.

The Python API does everything the CLI does; the CLI is a thin layer over it.
"""

__version__ = "0.1.0"

__all__ = ["Checkpoint", "load", "save", "__version__"]


def __getattr__(name: str):
    # imported on first use, not with the package: the command line sets OpenMP's environment
    # (gancraft.runtime.configure_openmp) before anything imports torch
    if name in ("Checkpoint", "load", "save"):
        from . import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'gancraft' has no attribute {name!r}")
