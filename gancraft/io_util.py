"""Atomic file output and small helpers shared by every command that writes files."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import threading
import time
import tokenize
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Iterator

import blake3

from .errors import GancraftError, first_line

if TYPE_CHECKING:
    import torch

# what the command line takes for standard input or output in place of a file name
STDIO = "-"
# the digest a checkpoint's history records for each input file, under its name (files from
# earlier versions of gancraft record "sha256"; readers take either)
HISTORY_DIGEST = "blake3"


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


def spool_stream(stream: BinaryIO, folder: Path, chunk: int = 1 << 20) -> Path:
    """Copy a whole binary stream (standard input) into a file in `folder` and return its path.

    Readers memory-map, seek and hash their inputs, which a pipe allows none of, so the bytes
    are kept in a file first. The file's extension names the format found in its first bytes
    (.st, .pt, .pkl or .npz; none when unknown), because statistics and checkpoints share no
    other sign in a path. Messages about the file call it '-' (see `display_name`).
    """
    tmp = folder / "stdin"
    size = 0
    with open(tmp, "wb") as fh:
        while True:
            block = stream.read(chunk)
            if not block:
                break
            fh.write(block)
            size += len(block)
    if size == 0:
        tmp.unlink()
        raise GancraftError(f"{STDIO}: standard input is empty (did the command before the pipe fail?)")
    path = tmp.with_name(tmp.name + _stream_suffix(tmp))
    os.replace(tmp, path)
    _display_names[str(path)] = STDIO
    return path


def _stream_suffix(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            return ""  # a cut-off zip: the reader reports it
        return ".npz" if names and all(n.endswith(".npy") for n in names) else ".pt"
    if len(head) >= 9 and head[8:9] == b"{":
        return ".st"
    if head[:1] == b"\x80":
        return ".pkl"
    return ""


# temporary files standing for '-' -> the name the user gave
_display_names: dict[str, str] = {}


def display_name(path: str | os.PathLike) -> str:
    """The name to record or show for `path`: '-' for standard input kept in a file, else the path."""
    return _display_names.get(str(path), str(path))


def with_display_names(obj):
    """`obj` (JSON-like: dicts, lists, strings) with every string that is such a temporary file named '-'."""
    if isinstance(obj, str):
        return display_name(obj)
    if isinstance(obj, dict):
        return {k: with_display_names(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [with_display_names(v) for v in obj]
    return obj


def display_text(text: str) -> str:
    """`text` with the temporary files that stand for '-' named '-' again (for error messages)."""
    for tmp, name in _display_names.items():
        text = text.replace(tmp, name)
    return text


def no_log(message: str) -> None:
    """The default `log` of the library functions behind the commands: the command passes its
    stderr logger, a Python caller sees the outcome in what the function returns."""


def remove_stale_temporaries(folder: Path, name: str) -> list[Path]:
    """Delete temporary files that a killed gancraft process left for `name` in `folder`."""
    removed = []
    for tmp in folder.glob(f".{name}.*.tmp"):
        parts = tmp.name[len(name) + 2 :].split(".")
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


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's contents (see `file_digest`)."""
    return file_digest(path, "sha256")


def file_digest(path: str | os.PathLike, algorithm: str = HISTORY_DIGEST, chunk: int = 1 << 20) -> str:
    """Hex digest (`algorithm`: sha256 or blake3) of a file's contents, remembered across runs
    so that an unchanged file is read once.

    Digests are kept in one small JSON file, `hash_cache_path()`: digests.json in
    $GANCRAFT_CACHE_DIR, else in $XDG_CACHE_HOME/gancraft/, else in ~/.cache/gancraft/. An entry
    is keyed by the file's resolved path and used only while the file's size, mtime_ns,
    ctime_ns, inode and device are all unchanged, so a file rewritten or replaced in any way
    (even at the same size with its mtime set back: that still moves ctime) is read again. A
    digest is remembered only when the file did not change while it was read and its last
    change is older than the filesystem's timestamp resolution. The newest 4096 files are
    kept. The cache is best effort: an unreadable or corrupt cache file counts as empty and is
    rewritten, an unwritable folder means nothing is remembered, and concurrent processes
    replace the file atomically (the last writer wins). GANCRAFT_HASH_CACHE=off neither reads
    nor writes it.
    """
    if algorithm not in _HASHES:
        raise ValueError(f"unknown digest {algorithm!r}")
    cache = hash_cache_path()
    if cache is None:
        return _hash_contents(path, algorithm, chunk)
    try:
        key = os.path.realpath(path)
        before = _signature(os.stat(key))
    except OSError:
        # reading reports a missing or unreadable file the usual way
        return _hash_contents(path, algorithm, chunk)
    known = _lookup(cache, key, before, algorithm)
    if known is not None:
        return known
    digest = _hash_contents(path, algorithm, chunk)
    try:
        after = os.stat(key)
    except OSError:
        return digest
    if _signature(after) == before and time.time() - after.st_ctime_ns / 1e9 >= _RACY_SECONDS:
        _store(cache, key, before, algorithm, digest)
    return digest


def cached_digest(path: str | os.PathLike, algorithm: str = HISTORY_DIGEST) -> str | None:
    """The digest `file_digest` remembers for `path` as it is now, or None (the file is not read)."""
    cache = hash_cache_path()
    if cache is None:
        return None
    try:
        key = os.path.realpath(path)
        return _lookup(cache, key, _signature(os.stat(key)), algorithm)
    except OSError:
        return None


def hash_cache_path() -> Path | None:
    """The file where `file_digest` remembers digests; None when GANCRAFT_HASH_CACHE=off."""
    if os.environ.get("GANCRAFT_HASH_CACHE", "").strip().lower() in ("off", "0", "no", "false"):
        return None
    root = os.environ.get("GANCRAFT_CACHE_DIR")
    if root:
        return Path(root) / _CACHE_NAME
    xdg = os.environ.get("XDG_CACHE_HOME")
    # the XDG spec says a relative value is invalid and must be ignored
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "gancraft" / _CACHE_NAME
    try:
        return Path.home() / ".cache" / "gancraft" / _CACHE_NAME
    except RuntimeError:  # no HOME and no password entry: nowhere to keep it
        return None


_CACHE_NAME = "digests.json"
_CACHE_VERSION = 1
# blake3 runs at 4.7 GB/s a core on the 2-core x86-64 test machine against sha256's 1.4 GB/s
# (SHA-NI): merges hash every input beside the merge itself, where that was most of the time
_HASHES = {"sha256": hashlib.sha256, "blake3": blake3.blake3}
_CACHE_ENTRIES = 4096
# a cache this large was not written by us; reading it could cost more than hashing
_CACHE_MAX_BYTES = 64 << 20
# Timestamps only move once per filesystem clock tick (a few ms on ext4, 2 s on FAT): a file
# rewritten at the same size within the tick of its previous change keeps every stat field,
# so its digest is remembered only once that tick is surely over.
_RACY_SECONDS = 2.0
# one load-merge-write at a time within a process: merges hash their inputs on threads
_cache_lock = threading.RLock()
# the parsed cache and the stat of the file it came from, so threads and repeated calls skip the parse
_parsed: tuple[tuple, dict[str, dict]] | None = None


def _hash_contents(path: str | os.PathLike, algorithm: str, chunk: int) -> str:
    h = _HASHES[algorithm]()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _same_file(entry: object, signature: list[int]) -> bool:
    return isinstance(entry, dict) and entry.get("stat") == signature


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _lookup(cache: Path, key: str, signature: list[int], algorithm: str) -> str | None:
    entry = _load(cache).get(key)
    if not _same_file(entry, signature):
        return None
    digest = entry.get(algorithm)
    if isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
        return digest
    return None


def _cache_file_id(cache: Path) -> tuple:
    st = os.stat(cache)
    return (str(cache), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


def _load(cache: Path) -> dict[str, dict]:
    """The cache's entries, oldest first; {} for a missing, unreadable or malformed file."""
    global _parsed
    with _cache_lock:
        try:
            ident = _cache_file_id(cache)
            if _parsed is not None and _parsed[0] == ident:
                return _parsed[1]
            if ident[1] > _CACHE_MAX_BYTES:
                return {}
            with open(cache, "rb") as fh:
                data = json.loads(fh.read())
        except (OSError, ValueError, RecursionError):
            return {}
        entries = data.get("entries") if isinstance(data, dict) and data.get("version") == _CACHE_VERSION else None
        if not isinstance(entries, dict):
            return {}
        _parsed = (ident, entries)
        return entries


def _store(cache: Path, key: str, signature: list[int], algorithm: str, digest: str) -> None:
    global _parsed
    with _cache_lock:
        # re-read first, so entries that other processes added since our lookup are kept
        entries = _load(cache)
        old = entries.get(key)
        # the file's other digests stay while it is unchanged
        kept = {a: old[a] for a in _HASHES if a != algorithm and a in old} if _same_file(old, signature) else {}
        entries = {k: v for k, v in entries.items() if k != key}
        entries[key] = {"stat": signature, **kept, algorithm: digest}
        if len(entries) > _CACHE_ENTRIES:
            entries = dict(list(entries.items())[-_CACHE_ENTRIES:])
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(cache.parent, cache.name)
            fd, tmp = tempfile.mkstemp(prefix=f".{cache.name}.{os.getpid()}.", suffix=".tmp", dir=cache.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump({"version": _CACHE_VERSION, "entries": entries}, fh, separators=(",", ":"))
                os.replace(tmp, cache)
            except BaseException:
                _unlink_quietly(Path(tmp))
                raise
            _parsed = (_cache_file_id(cache), entries)
        except OSError:
            # a cache that cannot be written only costs the next run a re-hash
            return


# deflate cannot expand data by more than this factor, so a member declaring more is lying
_DEFLATE_MAX_RATIO = 1032


def read_npz(path: Path, what: str) -> dict:
    """The arrays of an .npz file, each checked against its bytes before numpy allocates it.

    numpy allocates the shape an .npy header declares before reading any data, so a few bytes
    of header could demand terabytes; here every member must be an .npy array whose declared
    size fits in what the archive holds for it. `what` names the file's kind in errors.
    """
    import numpy as np

    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                _check_npy_member(archive, info, path, what)
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except GancraftError:
        raise
    except (
        OSError,
        ValueError,
        EOFError,
        zipfile.BadZipFile,
        NotImplementedError,
        RuntimeError,
        SyntaxError,
        tokenize.TokenError,
    ) as exc:
        # zipfile raises NotImplementedError for unknown compression methods, RuntimeError for
        # encryption; numpy parses .npy headers as Python literals (SyntaxError, TokenError)
        first = first_line(exc)[:200]
        raise GancraftError(f"{path}: cannot read {what} file: not a readable .npz ({first})") from None


def _check_npy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, what: str) -> None:
    import numpy as np

    if not info.filename.endswith(".npy"):
        raise GancraftError(f"{path}: {what} .npz member {info.filename!r} is not an .npy array")
    stored = info.compress_size * (_DEFLATE_MAX_RATIO if info.compress_type != zipfile.ZIP_STORED else 1)
    if info.file_size > stored:
        raise GancraftError(
            f"{path}: {what} .npz member {info.filename!r} declares {info.file_size} bytes but "
            f"stores {info.compress_size}: corrupt"
        )
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        header = fh.tell()
    declared = dtype.itemsize * int(np.prod(shape, dtype=object))
    if declared > info.file_size - header:
        raise GancraftError(
            f"{path}: {what} .npz member {info.filename!r} declares shape {shape} "
            f"({declared} bytes) but holds {info.file_size - header}: truncated or corrupt"
        )


def load_torchscript(path: str | os.PathLike, what: str, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The TorchScript module in `path` (eval mode), refused naming the file when it is missing or
    not TorchScript. `what` names the network in those messages ("feature extractor")."""
    import warnings

    import torch

    p = Path(path)
    if not p.is_file():
        raise GancraftError(f"{p}: TorchScript {what} not found")
    try:
        with warnings.catch_warnings():
            # TorchScript is the documented format for user networks here; torch's deprecation
            # notice of jit.load would only clutter every run's output
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(p), map_location=device).eval()
    except Exception as exc:  # jit.load raises RuntimeError/ValueError/zip errors for a bad file
        raise GancraftError(f"{p}: not a TorchScript {what} ({first_line(exc)})") from None
