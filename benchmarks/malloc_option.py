"""The --malloc option every benchmark shares: measure what the command line runs by default."""

from __future__ import annotations

import argparse

from gancraft.runtime import keep_freed_memory


def add_malloc_option(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--malloc",
        choices=["keep", "system"],
        default="keep",
        help="keep: gancraft.runtime.keep_freed_memory(), as the gancraft command applies it "
        "(default); system: the C library's defaults",
    )


def apply_malloc_option(args: argparse.Namespace) -> str:
    """Apply the setting before any large allocation; returns what is in force, for the results."""
    if args.malloc == "keep" and keep_freed_memory():
        return "keep"
    return "system"
