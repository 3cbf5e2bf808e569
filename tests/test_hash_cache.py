"""file_digest's digest cache: right answers, no re-reads of unchanged files, and never an error."""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import blake3
import pytest

from gancraft import io_util, load, save
from gancraft.io_util import cached_digest, file_digest, hash_cache_path, sha256_file
from gancraft.merge import average

from conftest import make_tiny_checkpoint


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("GANCRAFT_CACHE_DIR", str(folder))
    monkeypatch.delenv("GANCRAFT_HASH_CACHE", raising=False)
    # files made by a test are milliseconds old; the guard against same-tick rewrites has its own test
    monkeypatch.setattr(io_util, "_RACY_SECONDS", 0.0)
    return folder


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """Resolved paths of the files io_util opens (cache file included), in order."""
    seen: list[str] = []

    def counting_open(file, *args, **kwargs):
        seen.append(os.path.realpath(file))
        return builtins.open(file, *args, **kwargs)

    monkeypatch.setattr(io_util, "open", counting_open, raising=False)
    return seen


def write(path: Path, data: bytes, mtime_ns: int | None = None) -> Path:
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cached_sha256(path: Path) -> str | None:
    return cached_digest(path, "sha256")


def entries(cache_dir: Path) -> dict:
    return json.loads((cache_dir / "digests.json").read_text())["entries"]


def test_second_call_answers_from_the_cache_without_reading(cache_dir, tmp_path, opened):
    data = bytes(range(256)) * 41 + b"tail"  # many 7-byte chunks, the last one short
    f = write(tmp_path / "model.st", data)
    assert cached_sha256(f) is None
    assert file_digest(f, "sha256", chunk=7) == digest(data)
    assert opened.count(str(f.resolve())) == 1
    assert sha256_file(f) == digest(data) and cached_sha256(f) == digest(data)
    assert opened.count(str(f.resolve())) == 1
    # another spelling of the same file (relative, through a symlink) is the same entry
    (tmp_path / "link.st").symlink_to(f)
    os.chdir(tmp_path)
    assert sha256_file("link.st") == digest(data)
    assert opened.count(str(f.resolve())) == 1
    assert list(entries(cache_dir)) == [str(f.resolve())]


def test_a_remembered_digest_is_what_is_returned(cache_dir, tmp_path, opened):
    """Plant a wrong digest for the file as it is now: the cache is trusted, so it comes back."""
    f = write(tmp_path / "m.st", b"abc")
    sha256_file(f)
    fake = "f" * 64
    cache = cache_dir / "digests.json"
    data = json.loads(cache.read_text())
    data["entries"][str(f.resolve())]["sha256"] = fake
    cache.write_text(json.dumps(data))
    assert sha256_file(f) == fake
    assert opened.count(str(f.resolve())) == 1


@pytest.mark.parametrize(
    "change", ["grow", "same size, new mtime_ns", "same size, mtime set back", "replaced by another file"]
)
def test_changed_file_is_hashed_again(cache_dir, tmp_path, change):
    f = write(tmp_path / "m.st", b"first version", mtime_ns=1_600_000_000_123_456_789)
    assert sha256_file(f) == digest(b"first version")
    if change == "grow":
        new = write(f, b"first version, longer", mtime_ns=1_600_000_100_000_000_000).read_bytes()
    elif change == "same size, new mtime_ns":
        new = write(f, b"FIRST version", mtime_ns=1_600_000_000_123_456_790).read_bytes()
    elif change == "same size, mtime set back":
        # as `touch -r` or a copy preserving times would leave it: only ctime tells
        new = write(f, b"first VERSION", mtime_ns=1_600_000_000_123_456_789).read_bytes()
    else:
        other = write(tmp_path / "other.st", b"other version", mtime_ns=1_600_000_000_123_456_789)
        os.replace(other, f)
        new = b"other version"
    assert cached_sha256(f) is None
    assert sha256_file(f) == digest(new) and cached_sha256(f) == digest(new)


def test_file_changed_within_the_timestamp_tick_is_not_remembered(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(io_util, "_RACY_SECONDS", 2.0)
    f = write(tmp_path / "fresh.st", b"just written")
    assert sha256_file(f) == digest(b"just written")
    assert cached_sha256(f) is None and not (cache_dir / "digests.json").exists()


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xff not json",
        b'{"version": 1, "entries": {"a"',
        b"[]",
        b'{"version": 1, "entries": []}',
        b'{"version": 99, "entries": {}}',
        b"[" * 100000,
        b"",
    ],
)
def test_corrupt_cache_file_is_ignored_and_rewritten(cache_dir, tmp_path, content):
    cache_dir.mkdir()
    (cache_dir / "digests.json").write_bytes(content)
    f = write(tmp_path / "m.st", b"payload")
    assert sha256_file(f) == digest(b"payload")
    assert entries(cache_dir)[str(f.resolve())]["sha256"] == digest(b"payload")
    assert cached_sha256(f) == digest(b"payload")


@pytest.mark.parametrize(
    "entry",
    [
        {"stat": "x", "sha256": "0" * 64},
        {"sha256": "0" * 64},
        "nonsense",
        {"stat": None, "sha256": 5},
        {"stat": "current", "sha256": "not hex"},
        {"stat": "current", "sha256": "A" * 64},
    ],
)
def test_malformed_entry_is_ignored(cache_dir, tmp_path, entry):
    f = write(tmp_path / "m.st", b"payload")
    if isinstance(entry, dict) and entry.get("stat") == "current":
        entry = {**entry, "stat": io_util._signature(os.stat(f))}
    cache_dir.mkdir()
    (cache_dir / "digests.json").write_text(json.dumps({"version": 1, "entries": {str(f.resolve()): entry}}))
    assert sha256_file(f) == digest(b"payload") and cached_sha256(f) == digest(b"payload")


def test_hash_cache_off_neither_reads_nor_writes(cache_dir, tmp_path, monkeypatch, opened):
    f = write(tmp_path / "m.st", b"abc")
    sha256_file(f)
    cache = cache_dir / "digests.json"
    data = json.loads(cache.read_text())
    data["entries"][str(f.resolve())]["sha256"] = "f" * 64
    cache.write_text(json.dumps(data))
    before = cache.read_bytes()
    monkeypatch.setenv("GANCRAFT_HASH_CACHE", "off")
    g = write(tmp_path / "g.st", b"not remembered")
    assert hash_cache_path() is None
    assert sha256_file(f) == digest(b"abc") and sha256_file(g) == digest(b"not remembered")
    assert cached_sha256(f) is None
    assert str(cache) not in opened and cache.read_bytes() == before


@pytest.mark.parametrize("blocker", ["cache folder is a file", "cache file is a folder"])
def test_unwritable_cache_just_means_no_caching(tmp_path, monkeypatch, opened, blocker):
    # tests run as root here, so permission bits would not stop a write: block it by file type
    monkeypatch.delenv("GANCRAFT_HASH_CACHE", raising=False)
    monkeypatch.setattr(io_util, "_RACY_SECONDS", 0.0)
    if blocker == "cache folder is a file":
        (tmp_path / "blocked").write_text("a file where the cache folder should be")
        monkeypatch.setenv("GANCRAFT_CACHE_DIR", str(tmp_path / "blocked" / "sub"))
    else:
        (tmp_path / "blocked" / "digests.json").mkdir(parents=True)
        monkeypatch.setenv("GANCRAFT_CACHE_DIR", str(tmp_path / "blocked"))
    f = write(tmp_path / "m.st", b"abc")
    assert sha256_file(f) == digest(b"abc") and sha256_file(f) == digest(b"abc")
    assert opened.count(str(f.resolve())) == 2
    assert cached_sha256(f) is None
    assert not [p for p in (tmp_path / "blocked").rglob("*") if p.name.endswith(".tmp")]


def test_missing_file_raises_as_before(cache_dir, tmp_path):
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "absent.st")


def test_cache_keeps_the_newest_entries(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(io_util, "_CACHE_ENTRIES", 3)
    files = [write(tmp_path / f"m{i}.st", b"%d" % i) for i in range(5)]
    for f in files:
        sha256_file(f)
    assert list(entries(cache_dir)) == [str(f.resolve()) for f in files[2:]]
    # a file hashed again (changed) moves to the newest end
    write(files[2], b"changed", mtime_ns=1_700_000_000_000_000_000)
    sha256_file(files[2])
    assert list(entries(cache_dir)) == [str(f.resolve()) for f in (files[3], files[4], files[2])]
    assert not list(cache_dir.glob("*.tmp")) and not list(cache_dir.glob(".*.tmp"))


def test_entries_written_by_another_process_are_kept(cache_dir, tmp_path):
    a, b = write(tmp_path / "a.st", b"a"), write(tmp_path / "b.st", b"b")
    sha256_file(a)  # this process now holds a parsed copy of the cache
    # b is milliseconds old, so the child lifts the same-tick guard as the fixture does here
    code = (
        "import sys; import gancraft.io_util as u; u._RACY_SECONDS = 0; "
        "assert u.sha256_file(sys.argv[1]) == u.cached_digest(sys.argv[1], 'sha256')"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(b)], check=True, env={**os.environ, "GANCRAFT_CACHE_DIR": str(cache_dir)}
    )
    c = write(tmp_path / "c.st", b"c")
    sha256_file(c)
    assert set(entries(cache_dir)) == {str(p.resolve()) for p in (a, b, c)}


def test_threads_hashing_at_once_lose_no_entry(cache_dir, tmp_path):
    files = [write(tmp_path / f"m{i}.st", os.urandom(1 << 16)) for i in range(8)]
    threads = [threading.Thread(target=sha256_file, args=(f,)) for f in files]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {k: v["sha256"] for k, v in entries(cache_dir).items()} == {
        str(f.resolve()): digest(f.read_bytes()) for f in files
    }


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("GANCRAFT_HASH_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GANCRAFT_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hash_cache_path() == tmp_path / "mine" / "digests.json"
    monkeypatch.delenv("GANCRAFT_CACHE_DIR")
    assert hash_cache_path() == tmp_path / "xdg" / "gancraft" / "digests.json"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # invalid per the XDG spec: ignored
    assert hash_cache_path() == tmp_path / "home" / ".cache" / "gancraft" / "digests.json"
    monkeypatch.setenv("GANCRAFT_HASH_CACHE", "off")
    assert hash_cache_path() is None


def test_average_reads_unchanged_inputs_once_for_hashing(cache_dir, tmp_path, opened):
    a, b = tmp_path / "a.st", tmp_path / "b.st"
    save(make_tiny_checkpoint(1), a)
    save(make_tiny_checkpoint(2), b)
    average([a, b], tmp_path / "o1.st")
    average([a, b], tmp_path / "o2.st")
    hashed = [p for p in opened if p in (str(a.resolve()), str(b.resolve()))]
    assert sorted(hashed) == sorted([str(a.resolve()), str(b.resolve())])
    want = [blake3.blake3(a.read_bytes()).hexdigest(), blake3.blake3(b.read_bytes()).hexdigest()]
    for out in ("o1.st", "o2.st"):
        assert [i["blake3"] for i in load(tmp_path / out).history[-1]["inputs"]] == want
    # outputs are not hashed while they are written
    assert set(entries(cache_dir)) == {str(a.resolve()), str(b.resolve())}


def test_one_entry_holds_each_digest_of_an_unchanged_file(cache_dir, tmp_path, opened):
    f = write(tmp_path / "m.st", b"payload" * 1000, mtime_ns=1_600_000_000_000_000_000)
    assert file_digest(f, "blake3") == blake3.blake3(b"payload" * 1000).hexdigest()
    assert file_digest(f, "sha256") == digest(b"payload" * 1000)
    assert opened.count(str(f.resolve())) == 2
    assert file_digest(f, "blake3") == cached_digest(f, "blake3") and sha256_file(f) == cached_sha256(f)
    assert opened.count(str(f.resolve())) == 2
    assert set(entries(cache_dir)[str(f.resolve())]) == {"stat", "sha256", "blake3"}
    # a changed file loses both: the new digest is stored alone
    write(f, b"changed", mtime_ns=1_700_000_000_000_000_000)
    assert file_digest(f, "sha256") == digest(b"changed")
    assert cached_digest(f, "blake3") is None
    assert set(entries(cache_dir)[str(f.resolve())]) == {"stat", "sha256"}
    with pytest.raises(ValueError, match="unknown digest"):
        file_digest(f, "md5")
