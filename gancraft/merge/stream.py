"""The merge engine: streaming reader, per-tensor recipes and their evaluator, streaming writer.

Every merge (`average`'s methods, layer blending, channel swaps) is a *recipe* per output
tensor - a linear combination of the inputs, or a function of the whole input tensors -
evaluated tensor by tensor and appended to a safetensors file whose header was written first.
Native inputs are read with plain positioned reads rather than a memory map, because touched
pages of a map stay in the process's resident set and would add up to N whole models. Linear
recipes - nearly every tensor - stream in fixed-size chunks through reused buffers, so peak
memory is a few MB over the interpreter whatever the model size.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch

from ..checkpoint.core import NETS, Checkpoint
from ..checkpoint.io import detect_format, load
from ..checkpoint.native import LazyCheckpoint, build_metadata, read_header
from ..errors import GancraftError
from ..io_util import HISTORY_DIGEST, atomic_write, display_name, file_digest
from ..nets.config import config_to_dict

_ST_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
_TORCH_DTYPES = {v: k for k, v in _ST_DTYPES.items()}
_NUMPY_DTYPES = frozenset(_ST_DTYPES) - {torch.bfloat16}

# ---------------------------------------------------------------------------------------------
# inputs


class Source:
    """One merge input: its metadata, tensor names/shapes/dtypes, and tensors on demand."""

    def __init__(
        self,
        skeleton: Checkpoint,
        shapes: dict[str, tuple[int, ...]],
        dtypes: dict[str, torch.dtype],
        getter: Callable[[str], torch.Tensor],
        path: Path | None,
        closer: Callable[[], None] | None = None,
        reader: Callable[[str, int, torch.Tensor], None] | None = None,
    ):
        self.skeleton = skeleton
        self.shapes = shapes
        self.dtypes = dtypes
        self._get = getter
        self._read = reader
        self.path = path
        self._close = closer

    @property
    def name(self) -> str:
        return str(self.path) if self.path else "<in-memory checkpoint>"

    def get(self, key: str) -> torch.Tensor:
        return self._get(key)

    def read_into(self, key: str, start: int, out: torch.Tensor) -> torch.Tensor:
        """Fill the flat, contiguous `out` (this tensor's dtype) with elements start.. of tensor
        `key` in row-major order: a chunk of a tensor without reading the rest of it."""
        if self._read is not None:
            self._read(key, start, out)
        else:
            out.copy_(self._get(key).reshape(-1)[start : start + out.numel()])
        return out

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint) -> "Source":
        skel = replace(ckpt, tensors={})
        return cls(
            skel,
            {k: tuple(v.shape) for k, v in ckpt.tensors.items()},
            {k: v.dtype for k, v in ckpt.tensors.items()},
            ckpt.tensors.__getitem__,
            ckpt.path,
        )

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Source":
        """Native files stream; other formats are converted in memory once."""
        p = Path(path)
        if detect_format(p) != "safetensors":
            return cls.from_checkpoint(load(p))
        lazy = LazyCheckpoint(p)
        header = read_header(p)
        with open(p, "rb") as fh:
            data_start = 8 + struct.unpack("<Q", fh.read(8))[0]
        offsets = {k: v["data_offsets"] for k, v in header.items() if k != "__metadata__"}
        dtypes = {k: _TORCH_DTYPES.get(v) for k, v in lazy.dtypes.items()}
        for k, dt in dtypes.items():
            if dt is None:
                raise GancraftError(f"{p}: tensor {k!r} has dtype {lazy.dtypes[k]}, which cannot be merged")
        fh = open(p, "rb", buffering=0)
        fd = fh.fileno()

        def read(key: str, start: int, out: torch.Tensor) -> None:
            if out.dtype != dtypes[key] or not out.is_contiguous():
                raise ValueError(f"read_into needs a contiguous {dtypes[key]} buffer for {key}")
            # a merge reads thousands of chunks: one view per read (numpy has no bfloat16)
            target = out.numpy() if out.dtype in _NUMPY_DTYPES else out.reshape(-1).view(torch.uint8).numpy()
            size = target.nbytes
            if not size:
                return
            begin = offsets[key][0] + start * out.element_size()
            if begin + size > offsets[key][1]:
                raise ValueError(f"read_into past the end of {key}")
            if os.preadv(fd, [target], data_start + begin) != size:
                raise GancraftError(f"{p}: short read of tensor {key!r} (file changed or truncated?)")

        def get(key: str) -> torch.Tensor:
            out = torch.empty(lazy.shapes[key], dtype=dtypes[key])
            read(key, 0, out.view(-1))
            return out

        skel = lazy.skeleton()
        skel.path = p
        return cls(skel, dict(lazy.shapes), dtypes, get, p, fh.close, read)


def open_sources(inputs: Sequence[str | os.PathLike | Checkpoint]) -> list[Source]:
    out = []
    try:
        for item in inputs:
            out.append(Source.from_checkpoint(item) if isinstance(item, Checkpoint) else Source.open(item))
    except BaseException:
        for s in out:
            s.close()
        raise
    return out


def select_keys(sources: Sequence[Source], nets: Sequence[str] | None) -> list[str]:
    """Keys of the chosen networks (default: every network all inputs have), checked compatible."""
    first = sources[0]
    have = [set(n for n in NETS if any(k.startswith(n + ".") for k in s.shapes)) for s in sources]
    if nets is None:
        nets = [n for n in NETS if all(n in h for h in have)]
        if not any(n in ("G", "G_ema") for n in nets):
            raise GancraftError("the inputs have no generator network in common")
    else:
        for n in nets:
            if n not in NETS:
                raise GancraftError(f"--nets: unknown network {n!r} (choose from {', '.join(NETS)})")
            for s, h in zip(sources, have):
                if n not in h:
                    raise GancraftError(
                        f"--nets: {s.name} has no {n} network (it has {', '.join(sorted(h)) or 'none'})"
                    )
    check_configs(sources, with_d="D" in nets)
    keys = [k for k in first.shapes if k.split(".", 1)[0] in nets]
    check_compatible(sources, keys)
    return keys


def check_configs(sources: Sequence[Source], with_d: bool) -> None:
    ref = sources[0]
    g0 = config_to_dict(ref.skeleton.g_config)
    for s in sources[1:]:
        g = config_to_dict(s.skeleton.g_config)
        diff = [k for k in g0 if g0[k] != g.get(k)]
        if diff:
            k = diff[0]
            raise GancraftError(
                f"{s.name}: generator architecture differs from {ref.name} "
                f"({k} = {g.get(k)!r} vs {g0[k]!r}); only models of one architecture can be merged"
            )
        if with_d and ref.skeleton.d_config != s.skeleton.d_config:
            raise GancraftError(f"{s.name}: discriminator architecture differs from {ref.name}")


def check_compatible(sources: Sequence[Source], keys: Sequence[str]) -> None:
    """Refuse, naming the first differing tensor and both shapes, before anything is written."""
    ref = sources[0]
    for s in sources[1:]:
        for k in keys:
            if k not in s.shapes:
                raise GancraftError(
                    f"{s.name}: has no tensor {k} (present in {ref.name}); the models are not compatible"
                )
            if s.shapes[k] != ref.shapes[k]:
                raise GancraftError(
                    f"{s.name}: tensor {k} has shape {list(s.shapes[k])}, but {ref.name} has "
                    f"{list(ref.shapes[k])}; the models are not compatible"
                )


# ---------------------------------------------------------------------------------------------
# recipes


@dataclass(frozen=True)
class Linear:
    """sum_i weights[i] * input_i; a weight of exactly 0 skips that input (it is not even read).

    `rows` optionally overrides whole slices along dim 0 (output channels) with other weights:
    ``{row_index: weights}`` - used by per-channel swapping.
    """

    weights: tuple[float, ...]
    rows: dict[int, tuple[float, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Apply:
    """fn(key, inputs) on the whole tensors of every input, for merges that are no linear
    combination (slerp, TIES, DARE): they need all of a tensor at once, so they do not stream in
    chunks. The result must have the shape of the inputs and the dtype of input `dtype_from`."""

    fn: Callable[[str, list[torch.Tensor]], torch.Tensor]
    dtype_from: int = 0


Recipe = Linear | Apply


def combine(
    tensors: Callable[[int], torch.Tensor], weights: Sequence[float], like: torch.Tensor | None = None
) -> torch.Tensor:
    """Weighted sum in float64, cast back to the input dtype.

    A single weight of exactly 1 returns that input unchanged (bit for bit, -0.0 included);
    zero weights are skipped so unread inputs cost nothing.
    """
    active = [(i, float(w)) for i, w in enumerate(weights) if w != 0]
    if len(active) == 1 and active[0][1] == 1.0:
        return tensors(active[0][0])
    acc = scratch = None
    dtype = None
    for i, w in active:
        x = tensors(i)
        dtype = x.dtype
        if not x.is_floating_point():
            raise GancraftError(f"cannot mix a non-floating tensor ({x.dtype}); copy it from one input instead")
        # float64 so that equal weights on identical inputs give the input back exactly. Later
        # inputs are widened into one reused buffer: a same-dtype add is vectorised, while a
        # mixed float64 += float32 add measured 2.7x slower than copy + add.
        if acc is None:
            acc = x.to(torch.float64).mul_(w)
        else:
            scratch = torch.empty_like(acc) if scratch is None else scratch
            acc.add_(scratch.copy_(x), alpha=w)
    if acc is None:
        if like is None:
            raise ValueError("all weights are zero and no template tensor was given")
        return torch.zeros_like(like)
    return acc.to(dtype)


def evaluate(recipe: Recipe, key: str, sources: Sequence[Source]) -> torch.Tensor:
    cache: dict[int, torch.Tensor] = {}

    def get(i: int) -> torch.Tensor:
        if i not in cache:
            cache[i] = sources[i].get(key)
        return cache[i]

    if isinstance(recipe, Apply):
        return recipe.fn(key, [get(i) for i in range(len(sources))])
    out = combine(get, recipe.weights, like=sources[0].get(key) if not any(recipe.weights) else None)
    if recipe.rows:
        out = out.clone()
        for row, weights in recipe.rows.items():
            out[row] = combine(lambda i: get(i)[row], weights)
    return out


# Elements per chunk of a streamed merge. Its float64 accumulator and scratch (1 MiB together)
# stay in the L2 cache, so every pass over a chunk after its read runs from cache instead of
# main memory. A multiple of every SIMD width, so chunk edges never move an element between a
# kernel's vector body and its scalar tail: chunked results are bit for bit the whole-tensor ones.
CHUNK = 1 << 16


class _Buffers:
    """One CHUNK-sized buffer per role and dtype, reused for the whole merge: a fresh large
    allocation per tensor page-faults on every 4 KiB page at first touch (with them, reading
    and widening took 0.44 s of a 4-input 1024px merge's 0.70 s; measured)."""

    def __init__(self) -> None:
        self._bufs: dict[tuple[str, torch.dtype], torch.Tensor] = {}

    def get(self, role: str, dtype: torch.dtype) -> torch.Tensor:
        buf = self._bufs.get((role, dtype))
        if buf is None:
            buf = self._bufs[role, dtype] = torch.empty(CHUNK, dtype=dtype)
        return buf


def linear_chunks(
    weights: Sequence[float], key: str, sources: Sequence[Source], dtype: torch.dtype, buffers: _Buffers
) -> Iterator[torch.Tensor]:
    """`combine` of one tensor, chunk by chunk, as flat pieces of `dtype`.

    Same arithmetic as `combine` (float64 products and sums, one rounding back at the end), so
    the output is identical; each piece lives in a reused buffer and is only valid until the
    next one is asked for.
    """
    active = [(i, float(w)) for i, w in enumerate(weights) if w != 0]
    copy = len(active) == 1 and active[0][1] == 1.0 and sources[active[0][0]].dtypes[key] == dtype
    if not copy and any(not sources[i].dtypes[key].is_floating_point for i, _ in active):
        raise GancraftError(f"cannot mix a non-floating tensor ({key}); copy it from one input instead")
    numel = math.prod(sources[0].shapes[key])
    # every input shares one read buffer per dtype: each is widened before the next is read
    reads = [(sources[i].read_into, buffers.get("in", sources[i].dtypes[key]), w) for i, w in active]
    out = buffers.get("out", dtype)
    acc = buffers.get("acc", torch.float64)
    wide = buffers.get("wide", torch.float64)
    for start in range(0, numel, CHUNK):
        n = min(CHUNK, numel - start)
        if n < CHUNK:  # the last, partial chunk
            reads = [(read, x[:n], w) for read, x, w in reads]
            out, acc, wide = out[:n], acc[:n], wide[:n]
        if copy:
            yield reads[0][0](key, start, out)
        elif not reads:
            yield out.zero_()
        else:
            read, x, w = reads[0]
            acc.copy_(read(key, start, x)).mul_(w)
            for read, x, w in reads[1:]:
                acc.add_(wide.copy_(read(key, start, x)), alpha=w)
            yield out.copy_(acc)


def iter_merged(
    sources: Sequence[Source], recipes: dict[str, Recipe], overrides: dict[str, torch.Tensor] | None = None
) -> Iterator[tuple[str, torch.Tensor]]:
    """Output tensors in recipe order; `overrides` replaces computed ones (e.g. a recomputed w_avg)."""
    overrides = overrides or {}
    for key, recipe in recipes.items():
        if key in overrides:
            yield key, overrides[key]
            continue
        with _one_thread():
            out = evaluate(recipe, key, sources)
        yield key, out


def _iter_streamed(
    sources: Sequence[Source],
    recipes: dict[str, Recipe],
    specs: dict[str, tuple[tuple[int, ...], torch.dtype]],
    overrides: dict[str, torch.Tensor],
) -> Iterator[tuple[str, torch.Tensor | Iterator[torch.Tensor]]]:
    """`iter_merged` for a file: plain linear recipes (nearly every tensor) arrive in chunks."""
    buffers = _Buffers()
    for key, recipe in recipes.items():
        if key in overrides:
            yield key, overrides[key]
        elif isinstance(recipe, Linear) and not recipe.rows:
            yield key, linear_chunks(recipe.weights, key, sources, specs[key][1], buffers)
        else:
            yield key, evaluate(recipe, key, sources)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Element-wise merging is memory-bound: a thread team gains little, and on a busy shared
    CPU its synchronisation made the merge 15x slower than one thread (measured, 2 cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


# ---------------------------------------------------------------------------------------------
# output


def write_streaming(
    path: str | os.PathLike,
    specs: dict[str, tuple[tuple[int, ...], torch.dtype]],
    tensors: Iterable[tuple[str, torch.Tensor | Iterable[torch.Tensor]]],
    metadata: dict[str, str],
    force: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
    final_metadata: Callable[[], dict[str, str]] | None = None,
) -> Path:
    """Write a safetensors file tensor by tensor: the header is computed from `specs` up front.

    Tensors must arrive in `specs` order with the declared shapes and dtypes, each either whole
    or as an iterable of pieces of its flattened data (written as they come); the file appears
    atomically, and only after the last tensor has been written. `final_metadata`, if given,
    is called after the data and rewrites the header in place; its JSON must not be longer
    than `metadata`'s (placeholders of the final length keep the data offsets valid).
    """
    entries: dict[str, object] = {}
    offset = 0
    for name, (shape, dtype) in specs.items():
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        entries[name] = {"dtype": _ST_DTYPES[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = _header_bytes(metadata, entries)
    order = iter(specs.items())
    with atomic_write(path, force=force, inputs=tuple(inputs)) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(struct.pack("<Q", len(raw)))
            fh.write(raw)
            for name, data in tensors:
                want_name, (shape, dtype) = next(order)
                whole = isinstance(data, torch.Tensor)
                count = 0
                for t in [data] if whole else data:
                    if name != want_name or t.dtype != dtype or (whole and tuple(t.shape) != tuple(shape)):
                        raise RuntimeError(
                            f"merge produced {name} {tuple(t.shape)} {t.dtype}, expected "
                            f"{want_name} {tuple(shape)} {dtype}"
                        )
                    t = t.detach().cpu().contiguous()
                    if t.numel():
                        fh.write(t.view(-1).view(torch.uint8).numpy().data)
                    count += t.numel()
                if count != math.prod(shape):
                    raise RuntimeError(f"merge produced {count} values for {name}, expected {math.prod(shape)}")
            if next(order, None) is not None:
                raise RuntimeError("merge ended before every declared tensor was written")
            if final_metadata is not None:
                # the data goes to disk while final_metadata() may still be waiting (for the
                # inputs' hashes); the closing fsync then has only the header page left
                fh.flush()
                os.fsync(fh.fileno())
                final = _header_bytes(final_metadata(), entries)
                if len(final) > len(raw):
                    raise RuntimeError("final safetensors header is longer than the space reserved for it")
                fh.seek(8)
                fh.write(final + b" " * (len(raw) - len(final)))
    return Path(path)


def _header_bytes(metadata: dict[str, str], entries: dict[str, object]) -> bytes:
    raw = json.dumps({"__metadata__": metadata, **entries}, separators=(",", ":")).encode()
    return raw + b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned, as safetensors' writer does


def merge_to_file(
    sources: Sequence[Source],
    recipes: dict[str, Recipe],
    out: str | os.PathLike,
    skeleton: Checkpoint,
    command: str,
    params: dict,
    force: bool = False,
    overrides: dict[str, torch.Tensor] | None = None,
    progress: bool = False,
) -> Path:
    """Stream the merge into `out`, appending a history entry with the inputs' digests.

    The inputs are hashed on a background thread while the merge runs (the hash releases the
    GIL), and the header is patched with the digests at the end. file_digest remembers the
    digests of unchanged files across runs, so merging the same sources again skips the reads.
    """
    specs = {k: (sources[0].shapes[k], sources[_dtype_source(r)].dtypes[k]) for k, r in recipes.items()}
    stream: Iterable[tuple[str, torch.Tensor | Iterator[torch.Tensor]]] = _iter_streamed(
        sources, recipes, specs, overrides or {}
    )
    if progress:
        from tqdm import tqdm

        stream = tqdm(stream, total=len(recipes), desc="merging", unit="tensor", leave=False)
    paths = [s.path for s in sources if s.path is not None]
    recorded = skeleton.with_operation(command, params, [])

    def metadata(digests: Sequence[str]) -> dict[str, str]:
        entry = {
            **recorded.history[-1],
            "inputs": [{"path": display_name(p), HISTORY_DIGEST: d} for p, d in zip(paths, digests)],
        }
        return build_metadata(replace(recorded, history=[*recorded.history[:-1], entry]))

    # blake3 on one thread outpaces the merge's own reads, and a second hashing thread only
    # takes the core the merge runs on (4 inputs of 133 MB on 2 cores: 0.34-0.44 s with one,
    # 0.48-0.52 s with two; sha256 on two threads, 0.42-0.51 s)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gancraft-digest")
    try:
        digests = [pool.submit(file_digest, p) for p in paths]
        with _one_thread():
            return write_streaming(
                out,
                specs,
                stream,
                metadata(["0" * 64] * len(paths)),
                force=force,
                inputs=paths,
                final_metadata=lambda: metadata([d.result() for d in digests]),
            )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def merge_to_checkpoint(
    sources: Sequence[Source],
    recipes: dict[str, Recipe],
    skeleton: Checkpoint,
    overrides: dict[str, torch.Tensor] | None = None,
) -> Checkpoint:
    return replace(skeleton, tensors=dict(iter_merged(sources, recipes, overrides)), path=None, source_format="native")


def _dtype_source(recipe: Recipe) -> int:
    if isinstance(recipe, Apply):
        return recipe.dtype_from
    return dominant(recipe.weights)


def dominant(weights: Sequence[float]) -> int:
    """Index of the largest weight (first on ties): where copied buffers come from."""
    return max(range(len(weights)), key=lambda i: (weights[i], -i))


def output_skeleton(sources: Sequence[Source], keys: Sequence[str]) -> Checkpoint:
    """Metadata for the merged file: the first input's configs; domains kept only if all inputs agree."""
    first = sources[0].skeleton
    nets = {k.split(".", 1)[0] for k in keys}
    domains = first.domains
    if any(s.skeleton.domains != domains for s in sources[1:]) or any(
        d.get("kind") == "vector" for d in domains.values()
    ):
        # per-model domain tables (or domain vectors, which are not merged) would mislabel the result
        domains = {}
    skel = Checkpoint(
        tensors={},
        g_config=first.g_config,
        d_config=first.d_config if "D" in nets else None,
        domains=domains,
        history=list(first.history),
        extra={},
        source_format="native",
    )
    return skel
