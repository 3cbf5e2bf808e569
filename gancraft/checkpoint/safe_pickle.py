"""A pickle reader that rebuilds data and never runs anything the file names.

NVIDIA's network pickles (stylegan2-ada-pytorch, stylegan3) and the original TensorFlow
StyleGAN2 pickles embed Python source that the reference loaders execute. Here every global a
pickle references is looked up in a fixed table of builders that only make tensors, numpy
arrays, numbers, strings and containers; NVIDIA persistence records and TF ``Network`` objects
are captured as inert data. Anything else stops the load with a ``CheckpointError``.

The pure-Python unpickler is used (not the C one) so that the opcodes that mutate objects
(BUILD, SETITEMS, APPENDS, ...) can be limited to the object kinds this module creates: with the
C unpickler a crafted BUILD on a tensor would reach ``Tensor.__setstate__``/``set_``, which does
not bounds-check its storage.
"""

from __future__ import annotations

import _compat_pickle
import io
import os
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError


@dataclass
class PersistentRecord:
    """One ``torch_utils.persistence`` object: its class and state, with its source kept as text only."""

    class_name: str
    module_src: str
    version: int | None
    state: dict[str, Any]

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args", ()) or ())

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs", {}) or {})


class TFNetworkRecord:
    """A ``dnnlib.tflib.network.Network`` from a TF pickle: only its pickled state, never its build code."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("TF Network state is not a dict")
        self.state = state

    @property
    def name(self) -> str:
        return str(self.state.get("name", ""))

    @property
    def version(self) -> int | None:
        return self.state.get("version")

    @property
    def build_func_name(self) -> str:
        return str(self.state.get("build_func_name", ""))

    @property
    def static_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("static_kwargs", {}) or {})

    @property
    def components(self) -> dict[str, Any]:
        return dict(self.state.get("components", {}) or {})

    @property
    def variables(self) -> list[tuple[str, Any]]:
        return list(self.state.get("variables", []) or [])

    def __repr__(self) -> str:
        return f"TFNetworkRecord(name={self.name!r}, build_func_name={self.build_func_name!r})"


# ---------------------------------------------------------------- numpy


_ARRAY_KINDS = set("biufcSU")


def _checked_dtype(dt: Any) -> np.dtype:
    if isinstance(dt, _DtypeSpec):
        return dt.dtype
    if isinstance(dt, np.dtype):
        if dt.hasobject or dt.kind not in _ARRAY_KINDS or dt.fields is not None or dt.subdtype is not None:
            raise pickle.UnpicklingError(f"numpy dtype {dt} is not allowed")
        return dt
    raise pickle.UnpicklingError(f"expected a numpy dtype, got {type(dt).__name__}")


class _DtypeSpec:
    """Stands in for ``numpy.dtype`` while unpickling; only plain numeric and string dtypes."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = False) -> None:
        if not isinstance(spec, str):
            raise pickle.UnpicklingError("numpy dtype spec must be a string")
        try:
            dt = np.dtype(spec)
        except TypeError as exc:
            raise pickle.UnpicklingError(f"bad numpy dtype {spec!r}") from exc
        self._base = _checked_dtype(dt)
        self._order = "="

    def __setstate__(self, state: Any) -> None:
        # numpy's state: (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 5:
            raise pickle.UnpicklingError("bad numpy dtype state")
        order, subarray, names, fields = state[1:5]
        if subarray is not None or names is not None or fields is not None:
            raise pickle.UnpicklingError("structured numpy dtypes are not allowed")
        if order not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError("bad numpy byte order")
        self._order = order

    @property
    def dtype(self) -> np.dtype:
        return self._base if self._order in ("|", "=") else self._base.newbyteorder(self._order)


class _NdarrayMarker:
    """What ``numpy.ndarray`` resolves to: only accepted as ``_reconstruct``'s first argument."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise pickle.UnpicklingError("constructing numpy.ndarray directly is not allowed")


class _ArrayBuilder:
    """Created by ``_reconstruct``; becomes an array when its state arrives (swapped in after loading)."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple):
            raise pickle.UnpicklingError("bad numpy array state")
        if len(state) == 5:
            state = state[1:]
        if len(state) != 4:
            raise pickle.UnpicklingError("bad numpy array state")
        shape, dt, fortran, raw = state
        self.array = _array_from_bytes(raw, dt, shape, "F" if fortran else "C")

    def result(self) -> np.ndarray:
        if self.array is None:
            raise pickle.UnpicklingError("numpy array without data")
        return self.array


def _checked_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (tuple, list)) or not all(type(s) is int and s >= 0 for s in shape):
        raise pickle.UnpicklingError("bad array shape")
    return tuple(shape)


def _array_from_bytes(raw: Any, dt: Any, shape: Any, order: str) -> np.ndarray:
    dtype = _checked_dtype(dt)
    shape = _checked_shape(shape)
    if isinstance(raw, str):  # protocol-0/2 pickles from Python 2 carry latin-1 text
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray)):
        raise pickle.UnpicklingError("numpy array data must be bytes")
    if len(raw) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise pickle.UnpicklingError("numpy array data has the wrong size")
    flat = np.frombuffer(bytes(raw), dtype=dtype)
    return flat.reshape(shape, order=order).copy()


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> _ArrayBuilder:
    if subtype is not _NdarrayMarker:
        raise pickle.UnpicklingError("only plain numpy arrays are allowed")
    return _ArrayBuilder()


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if isinstance(buf, pickle.PickleBuffer):
        buf = bytes(buf.raw())
    if order not in ("C", "F"):
        raise pickle.UnpicklingError("bad array order")
    return _array_from_bytes(buf, dtype, shape, order)


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    dt = _checked_dtype(dtype)
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(data, bytes) or len(data) != dt.itemsize:
        raise pickle.UnpicklingError("bad numpy scalar")
    return np.frombuffer(data, dtype=dt)[0]


# ---------------------------------------------------------------- torch


def _load_storage(data: Any) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("tensor storage must be bytes")
    # torch's own restricted loader; handles both the zip and the pre-zip ("legacy") layouts
    storage = torch.load(io.BytesIO(bytes(data)), weights_only=True, map_location="cpu")
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise pickle.UnpicklingError("tensor storage bytes do not hold a storage")
    return storage


def _rebuild_tensor(
    storage: Any,
    offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    if isinstance(storage, torch.TypedStorage):
        dtype, untyped = storage.dtype, storage._untyped_storage
    elif isinstance(storage, torch.UntypedStorage):
        dtype, untyped = torch.uint8, storage
    else:
        raise pickle.UnpicklingError("tensor without a storage")
    size, stride = _checked_shape(size), _checked_shape(stride)
    if type(offset) is not int or offset < 0 or len(size) != len(stride):
        raise pickle.UnpicklingError("bad tensor layout")
    if backward_hooks:
        raise pickle.UnpicklingError("tensors with backward hooks are not allowed")
    itemsize = torch.empty((), dtype=dtype).element_size()
    available = untyped.nbytes() // itemsize
    # Tensor.set_ does not check bounds, so a crafted layout could read outside the storage
    if all(size):
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= available:
            raise pickle.UnpicklingError("tensor layout exceeds its storage")
    t = torch.empty(0, dtype=dtype)
    t.set_(untyped, offset, size, stride)
    return t


def _rebuild_tensor_legacy(storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(
    data: Any, requires_grad: Any = False, backward_hooks: Any = None, state: Any = None
) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise pickle.UnpicklingError("parameter without tensor data")
    if backward_hooks:
        raise pickle.UnpicklingError("parameters with backward hooks are not allowed")
    return data


_TORCH_DTYPES = {name: obj for name in dir(torch) if isinstance(obj := getattr(torch, name, None), torch.dtype)}


def _torch_device(spec: Any, index: Any = None) -> torch.device:
    if not isinstance(spec, str) or not (index is None or type(index) is int):
        raise pickle.UnpicklingError("bad torch.device")
    return torch.device(spec) if index is None else torch.device(spec, index)


def _torch_size(dims: Any = ()) -> torch.Size:
    return torch.Size(_checked_shape(tuple(dims) if isinstance(dims, list) else dims))


# ---------------------------------------------------------------- records and containers


def _persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise pickle.UnpicklingError("unsupported torch_utils.persistence record")
    class_name, src, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(src, str):
        raise pickle.UnpicklingError("persistence record without class name or source")
    if state is None:
        state = {}
    if not isinstance(state, dict):
        raise pickle.UnpicklingError("persistence record state is not a dict")
    return PersistentRecord(class_name=class_name, module_src=src, version=meta.get("version"), state=state)


def _copyreg_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # protocol 0/1 spelling of "make an empty instance"; only for the types protocol 2+ may NEWOBJ
    if cls is TFNetworkRecord and base is object and state is None:
        return TFNetworkRecord()
    if cls is dict and base is dict:
        return dict(state or {})
    raise pickle.UnpicklingError("copyreg._reconstructor on a type that is not allowed")


def _bytearray(data: Any = b"") -> bytearray:
    # only from data already in the file: a bare size would let a tiny file demand huge memory
    if isinstance(data, str):
        data = data.encode("latin1")
    if not isinstance(data, (bytes, bytearray)):
        raise pickle.UnpicklingError("bytearray from something other than bytes")
    return bytearray(data)


def _codecs_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    # how protocol-2 pickles spell bytes objects
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError("bad _codecs.encode call")
    return text.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_legacy,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage,
    ("torch", "device"): _torch_device,
    ("torch", "Size"): _torch_size,
    ("collections", "OrderedDict"): OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "bytearray"): _bytearray,
    ("_codecs", "encode"): _codecs_encode,
    ("copyreg", "_reconstructor"): _copyreg_reconstructor,
    ("dnnlib.util", "EasyDict"): dict,
    ("dnnlib", "EasyDict"): dict,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_obj,
    ("dnnlib.tflib.network", "Network"): TFNetworkRecord,
    ("numpy", "ndarray"): _NdarrayMarker,
    ("numpy", "dtype"): _DtypeSpec,
}
for _np_core in ("numpy.core", "numpy._core"):
    _ALLOWED[(f"{_np_core}.multiarray", "_reconstruct")] = _np_reconstruct
    _ALLOWED[(f"{_np_core}.multiarray", "scalar")] = _np_scalar
    _ALLOWED[(f"{_np_core}.numeric", "_frombuffer")] = _np_frombuffer
for _name, _dt in _TORCH_DTYPES.items():
    _ALLOWED[("torch", _name)] = _dt

_CALLABLE = {id(v) for v in _ALLOWED.values() if callable(v)}
# types the NEWOBJ opcode may instantiate (cls.__new__(cls) with no side effects)
_NEWOBJ_TYPES = (dict, OrderedDict, set, frozenset, TFNetworkRecord, _ArrayBuilder)
# the only objects whose state BUILD may set; everything else has no business receiving state
_BUILD_TYPES = (_DtypeSpec, _ArrayBuilder, TFNetworkRecord)


class _Refused(Exception):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


class _SafeUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def find_class(self, module: str, name: str) -> Any:
        if self.proto < 3 and self.fix_imports:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        if not isinstance(module, str) or not isinstance(name, str):
            raise pickle.UnpicklingError("global names must be strings")
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent references are not supported in network pickles")

    # ---- opcodes that call or mutate: limited to what this module builds

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in _CALLABLE or not isinstance(args, tuple):
            raise pickle.UnpicklingError("REDUCE on an object that is not an allowed builder")
        self.stack[-1] = func(*args)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, _BUILD_TYPES):
            inst.__setstate__(state)
        elif isinstance(inst, (dict, OrderedDict)) and not state:
            pass  # dict subclasses (EasyDict) pickle an empty instance dict
        else:
            raise pickle.UnpicklingError(f"refusing to set the state of a {type(inst).__name__}")

    dispatch[pickle.BUILD[0]] = load_build

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new_instance(cls, args, {}))

    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()
        args = self.stack.pop()
        cls = self.stack.pop()
        self.append(self._new_instance(cls, args, kwargs))

    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex

    @staticmethod
    def _new_instance(cls: Any, args: Any, kwargs: Any) -> Any:
        if not (isinstance(cls, type) and issubclass(cls, _NEWOBJ_TYPES)) or args or kwargs:
            raise pickle.UnpicklingError("NEWOBJ on a type that is not allowed")
        return cls.__new__(cls) if cls not in (TFNetworkRecord, _ArrayBuilder) else cls()

    def load_inst(self) -> None:
        module = self.readline()[:-1].decode("ascii")
        name = self.readline()[:-1].decode("ascii")
        self.find_class(module, name)  # a dangerous name is reported as such
        raise pickle.UnpicklingError("INST opcode is not allowed")

    dispatch[pickle.INST[0]] = load_inst

    def load_obj(self) -> None:
        raise pickle.UnpicklingError("OBJ opcode is not allowed")

    dispatch[pickle.OBJ[0]] = load_obj

    def load_setitem(self) -> None:
        value = self.stack.pop()
        key = self.stack.pop()
        target = self.stack[-1]
        if not isinstance(target, dict):
            raise pickle.UnpicklingError("SETITEM on something that is not a dict")
        target[key] = value

    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if not isinstance(target, dict) or len(items) % 2:
            raise pickle.UnpicklingError("SETITEMS on something that is not a dict")
        for i in range(0, len(items), 2):
            target[items[i]] = items[i + 1]

    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_append(self) -> None:
        value = self.stack.pop()
        target = self.stack[-1]
        if not isinstance(target, list):
            raise pickle.UnpicklingError("APPEND on something that is not a list")
        target.append(value)

    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if not isinstance(target, list):
            raise pickle.UnpicklingError("APPENDS on something that is not a list")
        target.extend(items)

    dispatch[pickle.APPENDS[0]] = load_appends

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        if not isinstance(target, set):
            raise pickle.UnpicklingError("ADDITEMS on something that is not a set")
        target.update(items)

    dispatch[pickle.ADDITEMS[0]] = load_additems


def _finalize(obj: Any, memo: dict[int, Any]) -> Any:
    """Swap array builders for their arrays and dtype stand-ins for real dtypes, everywhere."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, _ArrayBuilder):
        memo[key] = obj.result()
        return memo[key]
    if isinstance(obj, _DtypeSpec):
        memo[key] = obj.dtype
        return memo[key]
    memo[key] = obj
    if isinstance(obj, dict):
        for k in list(obj):
            obj[k] = _finalize(obj[k], memo)
    elif isinstance(obj, list):
        obj[:] = [_finalize(v, memo) for v in obj]
    elif type(obj) is tuple:
        memo[key] = tuple(_finalize(v, memo) for v in obj)
    elif isinstance(obj, PersistentRecord):
        obj.state = _finalize(obj.state, memo)
    elif isinstance(obj, TFNetworkRecord):
        obj.state = _finalize(obj.state, memo)
    return memo[key]


def safe_loads(data: bytes, where: str = "<bytes>") -> Any:
    """Unpickle ``data`` with the restricted rules; ``where`` names the source in error messages."""
    return _load(io.BytesIO(data), where)


def safe_load(path: str | os.PathLike) -> Any:
    """Read a network pickle without executing anything it references.

    Raises ``CheckpointError`` naming the file when it references anything but data builders,
    or when it is empty, truncated or corrupt.
    """
    p = Path(path)
    try:
        fh = open(p, "rb")
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read ({exc.strerror})") from None
    with fh:
        return _load(fh, str(p))


def _load(fh: Any, where: str) -> Any:
    try:
        data = _SafeUnpickler(fh).load()
        return _finalize(data, {})
    except _Refused as exc:
        raise CheckpointError(
            f"{where}: refusing to load: the pickle references {exc.module}.{exc.name}, which could run code"
        ) from None
    except CheckpointError:
        raise
    except EOFError:
        raise CheckpointError(f"{where}: pickle is empty or truncated") from None
    except RecursionError:
        raise CheckpointError(f"{where}: pickle is nested too deeply to be a network checkpoint") from None
    except Exception as exc:  # nothing from the file runs, so any other failure means a damaged or foreign file
        # torch's own messages (a damaged storage blob) run to several paragraphs: keep the first line
        lines = str(exc).strip().splitlines()
        detail = lines[0][:200] if lines else ""
        raise CheckpointError(f"{where}: corrupt or unsupported pickle ({type(exc).__name__}: {detail})") from None


__all__ = ["PersistentRecord", "TFNetworkRecord", "safe_load", "safe_loads"]
