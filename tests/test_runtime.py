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
def faults_for_one_buffer(mib):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(mib << 18).fill_(1.0)   # above glibc's largest mmap threshold
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_for_one_buffer(64)
# posix_memalign asks for a little more than the block it hands back, and small allocations may
# land behind a freed block, so the next request of the same size may not fit in it: ask for a
# little less (60 MiB), and of three consecutive reuses at least one fits
print(json.dumps({"applied": applied, "faults": min(faults_for_one_buffer(60) for _ in range(3))}))
"""


def _probe(mode: str, env_extra: dict[str, str] | None = None) -> dict:
    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's")
def test_freed_blocks_are_reused_without_page_faults():
    pages = (60 << 20) // 4096
    system = _probe("system")
    kept = _probe("keep")
    assert not system["applied"] and kept["applied"]
    assert system["faults"] > pages // 2  # a fresh mmap: every page faults again
    assert kept["faults"] < pages // 20  # the freed block came back from the heap


def test_environment_variable_keeps_the_system_allocator():
    assert _probe("keep", {"GANCRAFT_MALLOC": "system"})["applied"] is False


# what the command line's start-up leaves in the environment, and whether torch was loaded by then
WAIT_PROBE = """
import json, os, sys
import gancraft.cli.main
print(json.dumps({"torch_loaded": "torch" in sys.modules, "policy": os.environ.get("OMP_WAIT_POLICY")}))
"""
_OMP_VARS = ("GANCRAFT_OMP", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def test_command_line_lets_idle_openmp_threads_sleep_before_torch_loads():
    env = {k: v for k, v in os.environ.items() if k not in _OMP_VARS}
    out = subprocess.run([sys.executable, "-c", WAIT_PROBE], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout) == {"torch_loaded": False, "policy": "PASSIVE"}


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "PASSIVE"),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),  # the user's choice stands
        ({"GOMP_SPINCOUNT": "1000"}, None),  # so does any other wait setting
        ({"GANCRAFT_OMP": "spin"}, None),  # the escape hatch: the runtime's own default
    ],
)
def test_wait_policy_respects_the_user(monkeypatch, env, expected):
    from gancraft.runtime import configure_openmp

    for k in _OMP_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delitem(sys.modules, "torch")  # as at the command line's start-up
    assert configure_openmp() is (expected == "PASSIVE" and not env)
    assert os.environ.get("OMP_WAIT_POLICY") == expected


def test_wait_policy_unchanged_once_torch_is_loaded(monkeypatch):
    from gancraft.runtime import configure_openmp

    for k in _OMP_VARS:
        monkeypatch.delenv(k, raising=False)
    import torch  # noqa: F401

    assert configure_openmp() is False and "OMP_WAIT_POLICY" not in os.environ
