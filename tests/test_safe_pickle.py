"""The restricted unpickler: rebuilds data faithfully, never runs anything, fails cleanly on damage."""

from __future__ import annotations

import io
import os
import pickle
import random
import subprocess
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from pickle_fixtures import Persistent, dump, nvidia_snapshot, persistent_tree, stand_in_modules, tf_generator

from gancraft.checkpoint import load
from gancraft.checkpoint.nvidia import read_nvidia_pickle
from gancraft.checkpoint.safe_pickle import PersistentRecord, TFNetworkRecord, safe_load, safe_loads
from gancraft.checkpoint.tf import read_tf_pickle
from gancraft.errors import CheckpointError
from gancraft.nets.config import GeneratorConfig
from gancraft.nets.stylegan2 import Generator


def _tiny_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(
        GeneratorConfig(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8, mapping_layers=1)
    ).eval()


def _write(tmp_path: Path, data: bytes, name: str = "x.pkl") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------ faithful data


@pytest.mark.parametrize("protocol", range(0, pickle.HIGHEST_PROTOCOL + 1))
def test_plain_data_round_trips(protocol):
    obj = {
        "param": torch.nn.Parameter(torch.arange(6.0).reshape(2, 3)),
        "half_view": torch.arange(8, dtype=torch.float16)[2:5],
        "transposed": torch.arange(12, dtype=torch.int64).reshape(3, 4).t(),
        "big_endian": np.arange(5, dtype=">f4").reshape(5, 1),
        "fortran": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
        "scalar": np.float32(2.5),
        "od": OrderedDict(a=1, b=[1.5, "x", b"raw"]),
        "sets": ({1, 2}, frozenset({3})),
        "device": torch.device("cpu"),
        "dtype": torch.bfloat16,
        "np_dtype": np.dtype("<i2"),
        "size": torch.Size([2, 3]),
        "none": None,
        "flag": True,
        "big": 2**70,
        "c": 1 + 2j,
        "ba": bytearray(b"\x00\xffab"),
    }
    back = safe_loads(pickle.dumps(obj, protocol=protocol))
    for key in ("param", "half_view", "transposed"):
        assert back[key].dtype == obj[key].dtype and torch.equal(back[key], obj[key]), key
    for key in ("big_endian", "fortran"):
        assert type(back[key]) is np.ndarray and back[key].dtype == obj[key].dtype
        assert np.array_equal(back[key], obj[key])
    assert back["scalar"] == np.float32(2.5) and back["scalar"].dtype == np.float32
    for key in ("od", "sets", "device", "dtype", "np_dtype", "size", "none", "flag", "big", "c", "ba"):
        assert back[key] == obj[key], key


class _StorageBytes:
    """A storage pickled the way torch does it, but with the chosen ``torch.save`` layout."""

    def __init__(self, storage, zip_format: bool) -> None:
        self.storage, self.zip_format = storage, zip_format

    def __reduce__(self):
        buf = io.BytesIO()
        torch.save(self.storage, buf, _use_new_zipfile_serialization=self.zip_format)
        return (torch.storage._load_from_bytes, (buf.getvalue(),))


class _TensorOn:
    def __init__(self, storage, offset, size, stride) -> None:
        self.args = (storage, offset, size, stride, False, OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
@pytest.mark.parametrize("zip_format", [False, True])
def test_storage_bytes_in_both_torch_save_layouts(zip_format):
    # torch pickles tensors through their typed storage, in the pre-zip layout since 1.6; older and
    # third-party writers used the zip layout
    source = torch.arange(10, dtype=torch.float32)
    storage = _StorageBytes(source.storage(), zip_format)
    back = safe_loads(pickle.dumps(_TensorOn(storage, 2, (2, 3), (3, 1))))
    assert torch.equal(back, source[2:8].reshape(2, 3))


def test_nvidia_records_are_captured_as_data():
    G = _tiny_generator()
    with stand_in_modules():
        raw = pickle.dumps(nvidia_snapshot(G_ema=G))
    snap = safe_loads(raw)
    rec = snap["G_ema"]
    assert isinstance(rec, PersistentRecord) and rec.class_name == "Generator"
    assert "class Generator" in rec.module_src
    assert rec.init_kwargs["mapping_kwargs"] == {"num_layers": 1}
    assert type(rec.init_kwargs["mapping_kwargs"]) is dict  # EasyDict arrives as a plain dict
    assert isinstance(rec.state["_modules"]["mapping"], PersistentRecord)
    assert snap["augment_pipe"] is None


# ------------------------------------------------------------------ hostile corpus


@pytest.fixture
def sentinel(tmp_path) -> Path:
    path = tmp_path / "pwned"
    yield path
    assert not path.exists(), "a pickle managed to run code"


def _shell(sentinel: Path) -> str:
    return f"touch {sentinel}"


def _py(sentinel: Path) -> str:
    return f"open({str(sentinel)!r}, 'w').write('x')"


def _p0(text: str) -> bytes:
    return text.encode("utf-8")


def _hostile(sentinel: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (pickle bytes, the global it must be refused for)."""
    sh, py = _shell(sentinel), _py(sentinel)

    class Reduce:
        def __init__(self, fn, *args):
            self.fn, self.args = fn, args

        def __reduce__(self):
            return (self.fn, self.args)

    return {
        "os.system": (_p0(f"cos\nsystem\n(V{sh}\ntR."), "os.system"),
        "posix.system": (pickle.dumps(Reduce(os.system, sh), protocol=4), f"{os.system.__module__}.system"),
        "builtins.eval": (pickle.dumps(Reduce(eval, py), protocol=2), "builtins.eval"),
        "builtins.exec": (pickle.dumps(Reduce(exec, py), protocol=4), "builtins.exec"),
        "builtins.getattr": (
            _p0(f"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(V{sh}\ntR."),
            "builtins.getattr",
        ),
        "__builtin__.eval": (_p0(f"c__builtin__\neval\n(V{py}\ntR."), "builtins.eval"),
        "builtins.__import__": (_p0("cbuiltins\n__import__\n(Vos\ntR."), "builtins.__import__"),
        "subprocess.Popen": (
            pickle.dumps(Reduce(subprocess.Popen, ["touch", str(sentinel)]), protocol=3),
            "subprocess.Popen",
        ),
        "importlib.import_module": (_p0("cimportlib\nimport_module\n(Vos\ntR."), "importlib.import_module"),
        "posix.system (raw)": (_p0(f"cposix\nsystem\n(V{sh}\ntR."), "posix.system"),
        "nt.system": (_p0(f"cnt\nsystem\n(V{sh}\ntR."), "nt.system"),
        "torch.load": (_p0("ctorch\nload\n(V/dev/null\ntR."), "torch.load"),
        "numpy.load": (_p0("cnumpy\nload\n(V/dev/null\ntR."), "numpy.load"),
        "inst opcode": (_p0(f"(V{sh}\nios\nsystem\n."), "os.system"),
    }


@pytest.mark.parametrize("case", list(_hostile(Path("/x")).keys()))
def test_hostile_globals_are_refused(tmp_path, sentinel, case):
    data, global_name = _hostile(sentinel)[case]
    path = _write(tmp_path, data)
    expected = f"{path}: refusing to load: the pickle references {global_name}, which could run code"
    with pytest.raises(CheckpointError) as err:
        safe_load(path)
    assert str(err.value) == expected
    for reader in (read_nvidia_pickle, read_tf_pickle, load):
        with pytest.raises(CheckpointError):
            reader(path)


def test_payload_hidden_deep_inside_a_valid_snapshot(tmp_path, sentinel):
    class Evil:
        def __reduce__(self):
            return (os.system, (_shell(sentinel),))

    snap = nvidia_snapshot(G_ema=_tiny_generator())
    snap["G_ema"].meta["state"]["_modules"]["mapping"].meta["state"]["_init_kwargs"]["hook"] = Evil()
    path = dump(snap, tmp_path / "snap.pkl")
    with pytest.raises(CheckpointError, match="refusing to load: the pickle references .*system"):
        load(path)


def test_module_source_is_never_executed(tmp_path, sentinel):
    payload = f"import os\n{_py(sentinel)}\nclass Generator: pass\n"
    G = _tiny_generator()
    # a well-formed network with hostile source: the weights are data, the source stays text
    ok = dump(nvidia_snapshot(G_ema=G, module_src=payload), tmp_path / "src.pkl")
    ckpt = read_nvidia_pickle(ok)
    assert torch.equal(ckpt.tensors["G_ema.synthesis.b4.const"], G.synthesis.b4.const)
    # a record of a class gancraft does not know is refused, still without running its source
    odd = dump({"G_ema": Persistent("Exploit", {"_init_kwargs": {}}, payload)}, tmp_path / "odd.pkl")
    with pytest.raises(CheckpointError, match="G_ema is a Exploit"):
        read_nvidia_pickle(odd)
    # TF networks carry their build code too
    net = tf_generator(G, "Gs", build_module_src=payload)
    read_tf_pickle(dump(net, tmp_path / "tf.pkl"))


def _strip_stop(data: bytes) -> bytes:
    assert data.endswith(b".")
    return data[:-1]


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_state_cannot_be_forced_onto_a_tensor(tmp_path):
    # Tensor.__setstate__ would call set_() with attacker-chosen sizes: an out-of-bounds view
    storage = _StorageBytes(torch.zeros(2).storage(), False)
    body = _strip_stop(pickle.dumps(_TensorOn(storage, 0, (2,), (1,)), protocol=2))
    layout = pickle.dumps((0, (10**6,), (1,), False), protocol=2)[2:-1]
    path = _write(tmp_path, body + layout + b"b.")
    with pytest.raises(CheckpointError, match="refusing to set the state of a Tensor"):
        safe_load(path)


@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")
def test_tensor_layout_must_fit_its_storage(tmp_path):
    storage = _StorageBytes(torch.zeros(4).storage(), False)
    for size, stride, offset in (((1000,), (1,), 0), ((2, 2), (1, 3), 1), ((2,), (1,), 3)):
        path = _write(tmp_path, pickle.dumps(_TensorOn(storage, offset, size, stride)))
        with pytest.raises(CheckpointError, match="exceeds its storage"):
            safe_load(path)


def test_object_arrays_are_refused(tmp_path):
    path = _write(tmp_path, pickle.dumps(np.array([1, 2], dtype=object), protocol=3))
    with pytest.raises(CheckpointError, match="numpy dtype"):
        safe_load(path)
    path = _write(tmp_path, pickle.dumps(np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]), protocol=3), "s.pkl")
    with pytest.raises(CheckpointError):
        safe_load(path)


def test_persistent_ids_are_refused(tmp_path):
    path = _write(tmp_path, b"\x80\x02X\x03\x00\x00\x00abcQ.")
    with pytest.raises(CheckpointError, match="persistent references"):
        safe_load(path)


# ------------------------------------------------------------------ damaged files


@pytest.fixture(scope="module")
def snapshot_bytes() -> bytes:
    G = _tiny_generator()
    with stand_in_modules():
        return pickle.dumps(
            {
                "G_ema": persistent_tree(
                    G,
                    {
                        "z_dim": 8,
                        "c_dim": 0,
                        "w_dim": 8,
                        "img_resolution": 8,
                        "img_channels": 3,
                        "mapping_kwargs": {"num_layers": 1},
                        "synthesis_kwargs": {"channel_base": 64, "channel_max": 8},
                    },
                )
            },
            protocol=4,
        )


def test_valid_snapshot_bytes_load(tmp_path, snapshot_bytes):
    assert read_nvidia_pickle(_write(tmp_path, snapshot_bytes)).nets == ["G_ema"]


def test_empty_file(tmp_path):
    path = _write(tmp_path, b"")
    with pytest.raises(CheckpointError, match=f"{path}: pickle is empty or truncated"):
        safe_load(path)
    with pytest.raises(CheckpointError, match=str(path)):
        load(path)


@pytest.mark.parametrize("fraction", [0.001, 0.1, 0.5, 0.9, 0.999])
def test_truncated_files(tmp_path, snapshot_bytes, fraction):
    path = _write(tmp_path, snapshot_bytes[: int(len(snapshot_bytes) * fraction)])
    for reader in (safe_load, read_nvidia_pickle, load):
        with pytest.raises(CheckpointError, match=str(path)):
            reader(path)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_bit_flips_only_ever_raise_checkpoint_errors(tmp_path, snapshot_bytes):
    rng = random.Random(1234)
    # the structural part (opcodes, names, lengths) sits between the big storage blobs
    positions = [rng.randrange(len(snapshot_bytes)) for _ in range(150)] + list(range(0, 40))
    refused = 0
    for pos in positions:
        damaged = bytearray(snapshot_bytes)
        damaged[pos] ^= 1 << rng.randrange(8)
        path = _write(tmp_path, bytes(damaged))
        try:
            read_nvidia_pickle(path)
        except CheckpointError as exc:
            assert str(path) in str(exc)
            refused += 1
    assert refused >= 40  # every flip in the header and first opcodes is caught


def test_flipped_global_name_is_refused(tmp_path, snapshot_bytes):
    pos = snapshot_bytes.index(b"torch_utils.persistence")
    damaged = bytearray(snapshot_bytes)
    damaged[pos] ^= 0x20  # 't' -> 'T'
    path = _write(tmp_path, bytes(damaged))
    with pytest.raises(CheckpointError, match="Torch_utils.persistence._reconstruct_persistent_obj"):
        safe_load(path)


def test_not_a_pickle(tmp_path):
    path = _write(tmp_path, b"\x80\x04garbage that is not a pickle at all")
    with pytest.raises(CheckpointError, match=str(path)):
        safe_load(path)


def test_tf_network_records_are_data(tmp_path):
    G = _tiny_generator()
    rec = safe_load(dump(tf_generator(G, "Gs"), tmp_path / "tf.pkl"))
    assert isinstance(rec, TFNetworkRecord)
    assert rec.name == "Gs" and rec.build_func_name == "G_main"
    assert set(rec.components) == {"mapping", "synthesis"}
    assert all(type(v) is np.ndarray for _, v in rec.components["synthesis"].variables)


def test_builders_refuse_size_only_allocations(tmp_path):
    # bytearray(n) with a huge n would let a few bytes of file demand gigabytes of memory
    path = _write(tmp_path, b"cbuiltins\nbytearray\n(I100000000000\ntR.")
    with pytest.raises(CheckpointError, match="bytearray"):
        safe_load(path)
