"""The allocator setting: large freed blocks are reused instead of being faulted in again."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import json, resource, sys, torch
from gancraft.runtime import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
def faults_for_one_buffer():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(16 << 20).fill_(1.0)   # 64 MiB, above glibc's largest mmap threshold
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_for_one_buffer()
# posix_memalign asks for a little more than the block it hands back, so a just-freed block can
# be too small for the next request; of two consecutive reuses at least one fits
print(json.dumps({"applied": applied, "faults": min(faults_for_one_buffer() for _ in range(3))}))
"""


def _probe(mode: str, env_extra: dict[str, str] | None = None) -> dict:
    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_freed_blocks_are_reused_without_page_faults():
    pages = (64 << 20) // 4096
    system = _probe("system")
    kept = _probe("keep")
    assert not system["applied"] and kept["applied"]
    assert system["faults"] > pages // 2      # a fresh mmap: every page faults again
    assert kept["faults"] < pages // 20       # the freed block came back from the heap


def test_environment_variable_keeps_the_system_allocator():
    assert _probe("keep", {"GANCRAFT_MALLOC": "system"})["applied"] is False
