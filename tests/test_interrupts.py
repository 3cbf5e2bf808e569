"""Interrupted commands leave the complete old output or the complete new one, never a partial file."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from gancraft import load, save
from gancraft.io_util import atomic_write, remove_stale_temporaries

from conftest import cli_invoke, make_tiny_checkpoint


def _convert_cmd(src: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "gancraft", "convert", str(src), "-o", str(out), "--force"]


def test_killed_convert_leaves_old_or_new(tmp_path):
    # a larger model so the write takes long enough to be interrupted part way
    torch.manual_seed(0)
    ck = make_tiny_checkpoint(resolution=64)
    src = save(ck, tmp_path / "src.st")
    out = tmp_path / "out.st"
    old = b"previous complete output"
    rng = random.Random(0)
    outcomes = set()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGKILL):
        out.write_bytes(old)
        proc = subprocess.Popen(_convert_cmd(src, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.5, 3.0))
        proc.send_signal(sig)
        proc.wait(timeout=60)
        data = out.read_bytes()
        if data == old:
            outcomes.add("old")
        else:
            back = load(out)  # must be complete and valid
            assert all(torch.equal(back.tensors[k], v) for k, v in ck.tensors.items())
            outcomes.add("new")
        if sig != signal.SIGKILL:
            assert not list(tmp_path.glob(".out.st.*.tmp")), f"temporary file left after {sig!r}"
    # the next run cleans what SIGKILL left behind
    remove_stale_temporaries(tmp_path, "out.st")
    assert not list(tmp_path.glob(".out.st.*.tmp"))
    assert outcomes


def test_failed_write_leaves_nothing(tmp_path):
    out = tmp_path / "x.bin"
    try:
        with atomic_write(out) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_stale_temporaries_of_live_processes_are_kept(tmp_path):
    live = tmp_path / f".x.bin.{os.getpid()}.abc.tmp"
    live.write_bytes(b"")
    dead = tmp_path / ".x.bin.999999999.abc.tmp"
    dead.write_bytes(b"")
    removed = remove_stale_temporaries(tmp_path, "x.bin")
    assert removed == [dead] and live.exists()


def test_disk_full_is_a_clear_error_and_leaves_nothing(tmp_path, tiny_ckpt_path):
    """A real full file system where we may mount one (root on Linux), else a simulated ENOSPC."""
    import errno

    mnt = tmp_path / "small"
    mnt.mkdir()
    mounted = (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True).returncode
        == 0
    )
    try:
        if mounted:
            r = cli_invoke("convert", tiny_ckpt_path, "-o", mnt / "out.st")
        else:
            import gancraft.checkpoint.native as native

            def full(*a, **k):
                raise OSError(errno.ENOSPC, "No space left on device")

            orig, native.save_file = native.save_file, full
            try:
                r = cli_invoke("convert", tiny_ckpt_path, "-o", mnt / "out.st")
            finally:
                native.save_file = orig
        assert r.exit_code == 2, r.output
        assert "no space left" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert os.listdir(mnt) == []
    finally:
        if mounted:
            subprocess.run(["umount", str(mnt)])
