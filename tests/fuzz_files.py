"""Seeded mutation fuzzing of every file reader gancraft has.

Each reader starts from real files that gancraft (or the format's own writer) produces, and
each case damages one copy: bit flips, overwritten and deleted runs of bytes, truncation,
appended junk, and edits that understand the format (safetensors headers with huge shapes,
offsets and foreign dtypes, architecture configs declaring huge networks, zip members renamed,
duplicated, nested or declared huge, .npy headers with huge shapes, PNG headers with huge
dimensions). A case passes when the reader either loads the file or raises GancraftError; any
other exception, a case running past its time limit, or a process past its memory limit fails.

Cases run in a worker process (`python tests/fuzz_files.py READER CASES SEED FOLDER`) that
prints one JSON line per case, so that a hang or a crash in C code costs one worker, not the
test run; `run_campaign` starts the workers and collects what they report.
"""

from __future__ import annotations

import io
import json
import os
import random
import resource
import signal
import struct
import subprocess
import sys
import time
import traceback
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

HERE = Path(__file__).resolve().parent
READERS = ("native", "rosinality", "nvidia", "tf", "latents", "directions", "stats", "images", "torchscript")
# a case using more CPU than this fails; the slowest honest case (a rosinality load) takes ~0.3 s
CASE_SECONDS = 10.0
# wall-clock time after which a case counts as hung (generous: the machine may be busy)
HANG_SECONDS = 60.0
# memory a worker may take beyond what it holds after building its corpus: far above what any
# tiny input can honestly need, far below what a huge declared shape would allocate
MEMORY_HEADROOM = 2 << 30


# ------------------------------------------------------------------ corpus


def build_corpus(reader: str, folder: Path) -> list[Path]:
    """Real files for `reader`, written into `folder`."""
    sys.path.insert(0, str(HERE))
    import numpy as np
    import torch

    from gancraft import save

    from conftest import make_tiny_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    if reader in ("native", "rosinality"):
        to = "native" if reader == "native" else "rosinality"
        ext = ".st" if to == "native" else ".pt"
        paths = [folder / f"plain{ext}", folder / f"cond{ext}"]
        # tiny channel counts are not rosinality's stock ones; its writer takes them on request
        options = {} if to == "native" else {"allow_custom_channels": True}
        save(make_tiny_checkpoint(seed=0, resolution=8), paths[0], to=to, **options)
        # rosinality's generator takes no class labels
        cond = (
            {}
            if to == "rosinality"
            else dict(c_dim=2, domains={"a": {"kind": "class", "class": 0}, "b": {"kind": "class", "class": 1}})
        )
        save(make_tiny_checkpoint(seed=1, resolution=8, **cond), paths[1], to=to, **options)
        return paths
    if reader in ("nvidia", "tf"):
        from pickle_fixtures import dump, nvidia_snapshot, tf_discriminator, tf_generator

        ck = make_tiny_checkpoint(seed=0, resolution=8)
        G, D = ck.generator(), ck.discriminator()
        if reader == "nvidia":
            return [dump(nvidia_snapshot(G_ema=G, D=D), folder / "snap.pkl", protocol=p) for p in (2, 4)][:1] + [
                dump(nvidia_snapshot(G_ema=G), folder / "g.pkl", protocol=2)
            ]
        return [
            dump((tf_generator(G, "G"), tf_discriminator(D), tf_generator(G, "Gs")), folder / "tf.pkl"),
            dump(tf_generator(G, "Gs"), folder / "gs.pkl", protocol=2),
        ]
    if reader == "latents":
        from gancraft.latent.files import Latents, save_latents

        rng = np.random.default_rng(0)
        lat = Latents(
            z=rng.standard_normal((3, 8)).astype(np.float32),
            w=rng.standard_normal((3, 6, 8)).astype(np.float32),
            seeds=np.arange(3),
            domains=["a", "b", "a"],
            batch=2,
        )
        return [save_latents(folder / "lat.npz", lat)]
    if reader == "directions":
        from gancraft.latent.sefa import save_directions

        d = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
        return [
            save_directions(
                folder / "dirs.st",
                d,
                {"names": ["a", "b", "c", "d"], "layers": [0, 1]},
                singular_values=torch.tensor([4.0, 3.0, 2.0, 1.0]),
            )
        ]
    if reader == "stats":
        from gancraft.metrics.fid import FeatureStats, save_stats

        f = np.random.default_rng(0).standard_normal((6, 4))
        return [
            save_stats(
                folder / "stats.npz",
                FeatureStats(
                    mu=f.mean(0), sigma=np.cov(f, rowvar=False), n=6, extractor="x", resize="clean", features=f
                ),
            )
        ]
    if reader == "images":
        from PIL import Image

        rng = np.random.default_rng(0)
        paths = []
        for i, mode in enumerate(("RGB", "L", "RGBA", "P")):
            img = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).convert(mode)
            paths.append(folder / f"img{i}.png")
            img.save(paths[-1])
        jpg = folder / "img4.jpg"
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(jpg, quality=90)
        return [*paths, jpg]
    if reader == "torchscript":
        return [HERE.parent / "examples" / "toy-features.pt"]
    raise ValueError(reader)


def read(reader: str, path: Path) -> None:
    """Use `path` the way gancraft's commands do; raises what they would."""
    if reader in ("native", "rosinality", "nvidia", "tf"):
        from gancraft import load

        ck = load(path)
        for net in ck.nets:
            ck.discriminator() if net == "D" else ck.generator(net)
    elif reader == "latents":
        from gancraft.latent.files import load_latents

        load_latents(path)
    elif reader == "directions":
        from gancraft.latent.files import load_direction

        load_direction(f"{path}:0")
    elif reader == "stats":
        from gancraft.metrics.fid import load_stats

        load_stats(path)
    elif reader == "images":
        # both readers: training's folder listing (decoded, resized) and FID's batches
        from gancraft.media.images import read_image_folder
        from gancraft.metrics.features import iter_folder_batches

        for _ in read_image_folder(path.parent, resolution=8):
            pass
        for _ in iter_folder_batches(path.parent, batch=2):
            pass
    elif reader == "torchscript":
        import torch

        from gancraft.metrics.features import TorchScriptExtractor

        TorchScriptExtractor(path, device="cpu")(torch.rand(2, 3, 8, 8))


# ------------------------------------------------------------------ mutations


def _flip_bits(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 16))):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _overwrite(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    pos = rng.randrange(len(out))
    value = rng.choice((b"\x00", b"\xff", b"\x7f", b"\x80", b"\xff\xff\xff\x7f", b"\x00" * 8, b"\xff" * 8))
    out[pos : pos + len(value)] = value
    return bytes(out[: len(data)])


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.choice((0, 1, 7, 8, 9, rng.randrange(len(data)), len(data) - 1))]


def _cut(rng: random.Random, data: bytes) -> bytes:
    a = rng.randrange(len(data))
    return data[:a] + data[a + rng.randrange(1, 64) :]


def _duplicate(rng: random.Random, data: bytes) -> bytes:
    a = rng.randrange(len(data))
    return data[:a] + data[a : a + rng.randrange(1, 256)] + data[a:]


def _append(rng: random.Random, data: bytes) -> bytes:
    return data + rng.choice((b"\x00" * 100, bytes(rng.randrange(256) for _ in range(64)), data[:200]))


GENERIC: list[Callable[[random.Random, bytes], bytes]] = [_flip_bits, _overwrite, _truncate, _cut, _duplicate, _append]

HUGE = (2**31, 2**32 + 1, 2**40, 2**62, 2**64 - 1, -1, 10**30)


def _safetensors_edit(rng: random.Random, data: bytes) -> bytes:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    tensors = [k for k in header if k != "__metadata__"]
    what = rng.randrange(7)
    name = rng.choice(tensors)
    if what == 0:
        header[name]["shape"] = [rng.choice(HUGE)] + header[name]["shape"][1:]
    elif what == 1:
        header[name]["data_offsets"][rng.randrange(2)] = rng.choice(HUGE)
    elif what == 2:
        header[name]["dtype"] = rng.choice(("F8_E4M3", "C64", "U64", "BOOL", "I8", "F64", "XYZ", 7))
    elif what == 3:
        header[name] = rng.choice(
            ({}, [], None, "x", {"dtype": "F32"}, {"dtype": "F32", "shape": "abc", "data_offsets": [0, 4]})
        )
    elif what == 4 and "__metadata__" in header:
        meta = header["__metadata__"]
        key = rng.choice(sorted(meta))
        meta[key] = rng.choice(
            ("", "{", "[]", "null", "1e999", json.dumps({"G": {"img_resolution": 2**30}}), json.dumps(rng.choice(HUGE)))
        )
    elif what == 5 and "__metadata__" in header and "config" in header["__metadata__"]:
        # a config that declares a network far larger than the tensors in the file
        config = json.loads(header["__metadata__"]["config"])
        net = rng.choice(("G", "D")) if "D" in config else "G"
        key = rng.choice(
            (
                "img_resolution",
                "channel_base",
                "channel_max",
                "z_dim",
                "w_dim",
                "mapping_layers",
                "c_dim",
                "img_channels",
                "num_fp16_res",
                "cmap_dim",
                "mbstd_group_size",
            )
        )
        config[net][key] = rng.choice((*HUGE, 0, 3, 1e300, "x", None, [1]))
        header["__metadata__"]["config"] = json.dumps(config)
    else:
        fake = struct.pack("<Q", rng.choice(HUGE[:-2] + (n + 1, n - 1, 0)))
        return fake + data[8:]
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _zip_edit(rng: random.Random, data: bytes) -> bytes:
    """Rebuild the zip with one member renamed, dropped, duplicated, nested, recompressed or resized."""
    src = zipfile.ZipFile(io.BytesIO(data))
    infos = src.infolist()
    victim = rng.randrange(len(infos))
    what = rng.randrange(7)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for i, info in enumerate(infos):
            payload = src.read(info)
            if i == victim:
                if what == 0:
                    continue
                if what == 1:
                    info = zipfile.ZipInfo(info.filename + "x")
                elif what == 2:
                    dst.writestr(info, payload)
                elif what == 3:
                    payload = data  # the whole archive inside itself
                elif what == 4:
                    info.compress_type = zipfile.ZIP_DEFLATED
                    payload = payload + b"\x00" * rng.choice((1, 10**6))
                elif what == 5 and info.filename.endswith(".npy"):
                    payload = _npy_edit(rng, payload)
                else:
                    payload = _flip_bits(rng, payload) if payload else b"x"
            dst.writestr(info, payload)
    raw = out.getvalue()
    if what == 6:
        # a central directory that declares a member far larger than it is
        i = raw.rfind(b"PK\x01\x02")
        raw = raw[: i + 24] + struct.pack("<I", 0xFFFFFFF0) + raw[i + 28 :]
    return raw


def _npy_edit(rng: random.Random, payload: bytes) -> bytes:
    """An .npy member whose header declares another shape or dtype than its data holds."""
    header_len = struct.unpack("<H", payload[8:10])[0]
    header = payload[10 : 10 + header_len].decode("latin1")
    choice = rng.randrange(3)
    if choice == 0:
        header = header.replace("'shape': (", f"'shape': ({rng.choice(HUGE[:4])}, ", 1)
    elif choice == 1:
        header = header.replace("'descr': '", f"'descr': '{rng.choice(('|O', '<c16', '|V8', '>f8', '<U99'))}'#", 1)
    else:
        header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }"
    header = header.ljust(header_len - 1) + "\n" if len(header) < header_len else header + "\n"
    return payload[:8] + struct.pack("<H", len(header)) + header.encode("latin1") + payload[10 + header_len :]


def _png_edit(rng: random.Random, data: bytes) -> bytes:
    """A PNG whose IHDR declares huge or zero dimensions, with a valid CRC so decoders believe it."""
    if not data.startswith(b"\x89PNG"):
        return _flip_bits(rng, data)
    width, height = rng.choice(((2**31 - 1, 1), (65535, 65535), (0, 8), (8, 0), (10**5, 10**5), (1, 2**31 - 1)))
    ihdr = struct.pack(">II", width, height) + data[24:29]
    chunk = b"IHDR" + ihdr
    return data[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[33:]


def _pickle_edit(rng: random.Random, data: bytes) -> bytes:
    """Pickle opcodes swapped for neighbours that build other things: huge sizes, foreign globals,
    a pickle inside a pickle."""
    out = bytearray(data)
    what = rng.randrange(4)
    if what == 0:
        # BININT (J) / LONG1 operands rewritten as huge numbers: shapes, strides, storage sizes
        starts = [i for i, b in enumerate(out) if b == ord("J")]
        if starts:
            i = rng.choice(starts)
            out[i + 1 : i + 5] = struct.pack("<i", rng.choice((2**31 - 1, -(2**31), 2**30)))
    elif what == 1:
        for name in (b"_rebuild_tensor_v2", b"FloatStorage", b"_reconstruct_persistent_obj"):
            j = out.find(name)
            if j >= 0:
                out[j : j + len(name)] = rng.choice(
                    (b"_rebuild_parameter", b"HalfStorage", b"LongStorage", b"ByteStorage", name[::-1])
                )[: len(name)].ljust(len(name), b"_")
                break
    elif what == 2:
        return data[:-1] + b"\x80\x02" + data[2:]  # a second pickle glued inside the first
    else:
        # a string operand that is itself a pickle
        return b"\x80\x02" + b"X" + struct.pack("<I", len(data)) + data + b"."
    return bytes(out)


STRUCTURAL: dict[str, Callable[[random.Random, bytes], bytes]] = {
    "native": _safetensors_edit,
    "directions": _safetensors_edit,
    "rosinality": _zip_edit,
    "latents": _zip_edit,
    "stats": _zip_edit,
    "torchscript": _zip_edit,
    "images": _png_edit,
    "nvidia": _pickle_edit,
    "tf": _pickle_edit,
}


def mutate(reader: str, rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """(mutation name, damaged bytes); a third of the cases use the format-aware edit."""
    if not data:
        return "empty", data
    fn = STRUCTURAL[reader] if rng.random() < 0.34 else rng.choice(GENERIC)
    try:
        return fn.__name__.strip("_"), fn(rng, data)
    except (ValueError, KeyError, IndexError, TypeError, zipfile.BadZipFile, struct.error):
        # the seed file lacks what this edit changes; damage it the plain way
        return "flip_bits", _flip_bits(rng, data)


# ------------------------------------------------------------------ worker


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that no reader's `except Exception` swallows it."""


def _alarm(signum, frame):
    raise _Timeout


def run_cases(reader: str, cases: int, seed: int, folder: Path) -> Iterator[dict]:
    """Build `reader`'s corpus in `folder`, then yield one record per damaged copy read."""
    import torch

    from gancraft.errors import GancraftError

    torch.set_num_threads(1)
    corpus = [(p, p.read_bytes()) for p in build_corpus(reader, folder / "seed")]
    work = folder / "case"
    work.mkdir(exist_ok=True)
    rng = random.Random(seed)
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        # the undamaged files first: they must load, and the libraries they import are not
        # charged to the first case
        for src, _ in corpus:
            outcome, detail, _ = _one_case(reader, src, GancraftError)
            if outcome != "loaded":
                raise RuntimeError(f"{reader}: the undamaged {src.name} does not load: {detail}")
        for case in range(cases):
            src, data = corpus[case % len(corpus)]
            name, damaged = mutate(reader, rng, data)
            for old in work.iterdir():
                old.unlink()
            if reader == "images":
                for other, other_data in corpus:
                    (work / other.name).write_bytes(other_data)
            target = work / src.name
            target.write_bytes(damaged)
            before = set(work.iterdir())
            outcome, detail, seconds = _one_case(reader, target, GancraftError)
            if outcome in ("loaded", "refused") and seconds > CASE_SECONDS:
                outcome, detail = "hang", f"{seconds:.1f} s of CPU time"
            left = sorted(p.name for p in set(work.iterdir()) - before)
            if left and outcome != "crash":
                outcome, detail = "crash", f"left files behind: {left}"
            yield dict(
                reader=reader, case=case, mutation=name, outcome=outcome, seconds=round(seconds, 4), detail=detail
            )
    finally:
        signal.signal(signal.SIGALRM, previous)


def _one_case(reader: str, target: Path, refusal: type) -> tuple[str, str, float]:
    t0 = time.process_time()
    signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
    try:
        read(reader, target)
        outcome, detail = "loaded", ""
    except refusal as exc:
        text = str(exc)
        outcome, detail = ("refused", text[:200]) if "\n" not in text else ("crash", f"multi-line error: {text}"[:2000])
    except _Timeout:
        outcome, detail = "hang", f"over {HANG_SECONDS} s"
    except BaseException as exc:  # noqa: BLE001 - anything else is what the campaign looks for
        outcome, detail = "crash", "".join(traceback.format_exception(exc))[-2000:]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return outcome, detail, time.process_time() - t0


def _data_size() -> int:
    """The process's data segment as RLIMIT_DATA counts it (VmData), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmData in /proc/self/status")


def worker(reader: str, cases: int, seed: int, folder: Path) -> None:
    """`run_cases` under a memory limit, one JSON line per case, then the peak memory."""
    import warnings

    warnings.simplefilter("ignore")
    records = run_cases(reader, cases, seed, folder)
    first = next(records, None)
    # the limit starts after the corpus is built and the first case has loaded every library
    limit = _data_size() + MEMORY_HEADROOM
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    for rec in [first] if first else []:
        print(json.dumps(rec), flush=True)
    for rec in records:
        print(json.dumps(rec), flush=True)
    print(
        json.dumps(
            dict(reader=reader, summary=True, peak_rss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        ),
        flush=True,
    )


# ------------------------------------------------------------------ driver


@dataclass
class ReaderReport:
    reader: str
    cases: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    max_seconds: float = 0.0
    peak_rss: int = 0
    failures: list[dict] = field(default_factory=list)


def run_campaign(
    readers: tuple[str, ...], cases: int, seed: int, folder: Path, jobs: int = 1, worker_seconds: float = 3600
) -> dict[str, ReaderReport]:
    """Run `cases` cases per reader in worker processes (`jobs` at a time); a report per reader.

    A worker that dies or stops reporting is a failure of the case it was on; the rest of that
    reader's cases start again in a fresh worker from the next case's seed.
    """
    reports = {r: ReaderReport(r) for r in readers}
    queue = [(r, 0) for r in readers]
    running: list[tuple[str, subprocess.Popen, float]] = []
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
    while queue or running:
        while queue and len(running) < jobs:
            reader, start = queue.pop(0)
            todo = cases - start
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                reader,
                str(todo),
                str(seed * 1_000_003 + start),
                str(folder / f"{reader}-{start}"),
            ]
            running.append(
                (
                    reader,
                    subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True),
                    time.monotonic(),
                )
            )
        reader, proc, started = running.pop(0)
        try:
            out, err = proc.communicate(timeout=max(1.0, worker_seconds - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += "\nworker stopped: past its time limit"
        report = reports[reader]
        done = 0
        summary = False
        for line in out.splitlines():
            rec = json.loads(line)
            if rec.get("summary"):
                report.peak_rss = max(report.peak_rss, rec["peak_rss"])
                summary = True
                continue
            done += 1
            report.cases += 1
            report.counts[rec["outcome"]] = report.counts.get(rec["outcome"], 0) + 1
            report.max_seconds = max(report.max_seconds, rec["seconds"])
            if rec["outcome"] in ("crash", "hang"):
                report.failures.append(rec)
        if not summary:
            # the worker died inside a case (a signal, the memory limit in C code, a hard hang)
            report.cases += 1
            report.counts["crash"] = report.counts.get("crash", 0) + 1
            report.failures.append(
                dict(
                    reader=reader,
                    case=done,
                    outcome="crash",
                    detail=f"worker died (exit {proc.returncode}): {err.strip()[-1500:]}",
                )
            )
            restart = report.cases
            if restart < cases:
                queue.append((reader, restart))
    return reports


if __name__ == "__main__":
    worker(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
