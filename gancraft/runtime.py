"""Process-wide CPU settings that make generation and training faster.

OpenMP threads (torch's CPU kernels, oneDNN, MKL) spin for a while after each parallel region
instead of sleeping. One process alone gains a little from it; two processes on the same cores
(`make -j2`, `xargs -P`) spin against each other and each runs at about half speed.
`configure_openmp()` lets idle threads sleep (`OMP_WAIT_POLICY=PASSIVE`) unless the user set an
OpenMP variable; the command line calls it before torch is imported, since the OpenMP runtime
reads its environment only when it is loaded. GANCRAFT_OMP=spin keeps the runtime's default.
`benchmarks/bench_concurrent.py` measures both with two jobs side by side.

Each activation of a 256 px generator at batch 8 is 134-268 MB. glibc's malloc serves blocks
that large with a fresh mmap and unmaps them on free, so every layer pays a page fault per 4 KiB
of its output (about 60 ms per activation at 256 px). With mmap off and trimming raised, freed
blocks stay in the heap and are reused: `benchmarks/bench_vs_nvidia.py` measures the effect on
both implementations. The cost is that memory is returned to the system at exit rather than
after each batch. The command line applies it to the commands that run networks; set
GANCRAFT_MALLOC=system to keep glibc's defaults.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_INT_MAX = 2**31 - 1

_applied = False

# the OpenMP variables that decide how long idle threads spin; any of them set means the user chose
_WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def configure_openmp() -> bool:
    """Let idle OpenMP threads sleep, so that concurrent gancraft processes share cores well.

    Must run before torch is imported (returns False, changing nothing, if it already was, if
    the user set one of the OpenMP wait variables, or if GANCRAFT_OMP=spin). Returns True when
    it set OMP_WAIT_POLICY=PASSIVE.
    """
    if os.environ.get("GANCRAFT_OMP", "") == "spin" or "torch" in sys.modules:
        return False
    if any(v in os.environ for v in _WAIT_VARIABLES):
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def keep_freed_memory() -> bool:
    """Keep large freed blocks for reuse instead of unmapping them (glibc only).

    Returns True when the setting is in force. Idempotent; a no-op returning False on other C
    libraries or when GANCRAFT_MALLOC=system.
    """
    global _applied
    if _applied:
        return True
    if os.environ.get("GANCRAFT_MALLOC", "") == "system" or platform.libc_ver()[0] != "glibc":
        return False
    path = ctypes.util.find_library("c")
    if path is None:
        return False
    libc = ctypes.CDLL(path)
    # mallopt returns 1 on success; trimming first, so a failure leaves mmap as it was
    if libc.mallopt(_M_TRIM_THRESHOLD, _INT_MAX) != 1 or libc.mallopt(_M_MMAP_MAX, 0) != 1:
        return False
    _applied = True
    return True
