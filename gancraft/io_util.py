"""Atomic file output and small helpers shared by every command that writes files."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import GancraftError


def check_output_path(path: str | os.PathLike, force: bool = False, inputs: tuple = ()) -> Path:
    """Validate an output path before any work is done, so long jobs fail fast."""
    out = Path(path)
    for inp in inputs:
        try:
            if Path(inp).exists() and out.exists() and out.resolve() == Path(inp).resolve():
                raise GancraftError(f"{out}: refusing to overwrite an input file; choose another output path")
        except OSError:
            pass
    if out.is_dir():
        raise GancraftError(f"{out}: is a directory, expected a file path")
    if out.exists() and not force:
        raise GancraftError(f"{out}: already exists (use --force to replace it)")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise GancraftError(f"{out}: folder {parent} does not exist")
    if not parent.is_dir():
        raise GancraftError(f"{out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise GancraftError(f"{out}: folder {parent} is not writable")
    return out


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, force: bool = False, inputs: tuple = ()) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    A reader therefore sees either the complete old file or the complete new one, and an
    interrupted or failed write leaves nothing behind.
    """
    out = check_output_path(path, force=force, inputs=inputs)
    folder = out.parent if str(out.parent) else Path(".")
    remove_stale_temporaries(folder, out.name)
    # the pid in the name lets a later run recognise leftovers of a process killed with SIGKILL
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; outputs should get the usual permissions from the umask
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, out)
    except OSError as exc:
        _unlink_quietly(tmp_path)
        if exc.errno == errno.ENOSPC:
            raise GancraftError(f"{out}: no space left on device; nothing was written") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise GancraftError(f"{out}: cannot write ({exc.strerror})") from None
        raise
    except Exception as exc:
        _unlink_quietly(tmp_path)
        # some writers (safetensors) wrap the OS error in their own exception type
        if "No space left on device" in str(exc) or "os error 28" in str(exc):
            raise GancraftError(f"{out}: no space left on device; nothing was written") from None
        raise
    except BaseException:
        _unlink_quietly(tmp_path)
        raise


def remove_stale_temporaries(folder: Path, name: str) -> list[Path]:
    """Delete temporary files that a killed gancraft process left for `name` in `folder`."""
    removed = []
    for tmp in folder.glob(f".{name}.*.tmp"):
        parts = tmp.name[len(name) + 2:].split(".")
        if not parts or not parts[0].isdigit():
            continue
        if not _pid_alive(int(parts[0])):
            _unlink_quietly(tmp)
            removed.append(tmp)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unlink_quietly(p: Path) -> None:
    try:
        p.unlink()
    except FileNotFoundError:
        pass


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()
