"""Damaged files in every reader end in a clean load or in gancraft's own one-line error.

A few dozen seeded cases per reader run here, in-process; `make fuzz` runs thousands per reader
in worker processes under a memory limit (benchmarks/fuzz_campaign.py). The hand-made cases
below are the ones the mutations found, or the ones they are least likely to hit by chance.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile

import numpy as np
import pytest
import torch

from gancraft import load, save
from gancraft.errors import CheckpointError, GancraftError
from gancraft.latent.files import load_latents
from gancraft.metrics.fid import load_stats

import fuzz_files
from conftest import make_tiny_checkpoint

CASES = 24


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("reader", fuzz_files.READERS)
def test_seeded_mutations(reader, tmp_path):
    records = list(fuzz_files.run_cases(reader, CASES, seed=22, folder=tmp_path))
    bad = [r for r in records if r["outcome"] in ("crash", "hang")]
    assert not bad, "\n\n".join(f"{r['mutation']}: {r['detail']}" for r in bad)
    # the mutations must reach the reader's checks, not only its happy path
    assert sum(r["outcome"] == "refused" for r in records) >= CASES // 4
    assert max(r["seconds"] for r in records) < fuzz_files.CASE_SECONDS


def _header_edit(path, edit) -> None:
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n :])


@pytest.mark.parametrize(
    "net, key, value, what",
    [
        ("G", "channel_base", 2**62, "cannot be built|shape"),
        ("G", "img_resolution", 2**20, "cannot be built|missing|shape"),
        ("G", "mapping_layers", 10**9, "mapping_layers"),
        ("D", "c_dim", 0, "cannot be built|shape|unexpected"),
        ("D", "img_channels", 0, "cannot be built|shape"),
        ("G", "z_dim", 1.5, "positive integer"),
        ("G", "z_dim", "x", "positive integer"),  # found by `make fuzz`: was int('x') -> ValueError
    ],
)
def test_config_declaring_a_huge_network_is_refused_before_allocating(tmp_path, net, key, value, what):
    path = tmp_path / "m.st"
    save(make_tiny_checkpoint(resolution=8, c_dim=2 if key == "c_dim" else 0), path)

    def edit(header):
        config = json.loads(header["__metadata__"]["config"])
        config[net][key] = value
        header["__metadata__"]["config"] = json.dumps(config)

    _header_edit(path, edit)
    with pytest.raises(CheckpointError, match=what):
        ck = load(path)
        ck.discriminator() if net == "D" else ck.generator()


def test_png_with_a_corrupt_chunk_is_skipped_or_refused_in_one_line(tmp_path):
    """Found by `make fuzz`: PIL reports a broken PNG chunk as SyntaxError, which escaped."""
    import zlib

    from PIL import Image

    from gancraft.errors import GancraftError
    from gancraft.media.images import read_image_folder

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "good.png")
    data = (tmp_path / "good.png").read_bytes()
    ihdr_end = 8 + 8 + 13 + 4
    n = struct.unpack(">I", data[ihdr_end : ihdr_end + 4])[0]
    assert data[ihdr_end + 4 : ihdr_end + 8] == b"IDAT"
    pixels = data[ihdr_end + 8 : ihdr_end + 8 + n]
    # the pixel data split in two, the second part under a chunk type that is not one (as a damaged
    # file can be): PIL opens the file and only meets the bad chunk while decoding
    broken = (
        data[:ihdr_end]
        + chunk(b"IDAT", pixels[: n // 2])
        + struct.pack(">I", n - n // 2)
        + b"_\x82\xc2\xd9"
        + pixels[n // 2 :]
        + b"\0\0\0\0"
        + chunk(b"IEND", b"")
    )
    (tmp_path / "bad.png").write_bytes(broken)
    folder = read_image_folder(tmp_path, resolution=8)
    assert [p.name for p, _ in folder] == ["good.png"] and folder.skipped[0][0].name == "bad.png"
    (tmp_path / "good.png").unlink()
    with pytest.raises(GancraftError, match="no readable images|could be decoded"):
        list(read_image_folder(tmp_path, resolution=8))


def _npz_with_header(tmp_path, name: str, header: str, data: bytes, **others) -> object:
    buf = io.BytesIO()
    np.savez(buf, **others)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        padded = header.ljust(117) + "\n"
        dst.writestr(f"{name}.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(padded)) + padded.encode() + data)
    path = tmp_path / "x.npz"
    path.write_bytes(out.getvalue())
    return path


def test_npy_header_declaring_terabytes(tmp_path):
    huge = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }"
    path = _npz_with_header(tmp_path, "w", huge, b"\x00" * 16, z=np.zeros((1, 2)))
    with pytest.raises(GancraftError, match="declares shape"):
        load_latents(path)
    path = _npz_with_header(tmp_path, "sigma", huge, b"\x00" * 16, mu=np.zeros(2))
    with pytest.raises(GancraftError, match="declares shape"):
        load_stats(path)


def test_npz_members_that_are_not_arrays(tmp_path):
    path = tmp_path / "x.npz"
    buf = io.BytesIO()
    np.savez(buf, w=np.zeros((1, 1, 2), np.float32))
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr("domain", b"raw bytes, not .npy")
    path.write_bytes(buf.getvalue())
    with pytest.raises(GancraftError, match="'domain' is not an .npy array"):
        load_latents(path)


def test_zip_member_with_an_unknown_compression_method(tmp_path):
    buf = io.BytesIO()
    np.savez(buf, mu=np.zeros(2), sigma=np.eye(2))
    raw = bytearray(buf.getvalue())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = raw.find(sig)
        offset = 8 if sig == b"PK\x03\x04" else 10
        raw[at + offset : at + offset + 2] = struct.pack("<H", 99)
    path = tmp_path / "s.npz"
    path.write_bytes(bytes(raw))
    with pytest.raises(GancraftError, match="cannot read statistics file"):
        load_stats(path)


def test_a_generated_checkpoint_still_loads_after_the_meta_check(tmp_path):
    path = tmp_path / "m.st"
    ck = make_tiny_checkpoint(resolution=8)
    save(ck, path)
    G = load(path).generator()
    assert torch.equal(G.synthesis.b4.const, ck.tensors["G_ema.synthesis.b4.const"])


def test_npy_header_that_is_not_a_python_literal(tmp_path):
    # numpy parses the header with Python's tokenizer: an unclosed brace is a TokenError/SyntaxError
    path = _npz_with_header(
        tmp_path, "sigma", "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2", b"", mu=np.zeros(2)
    )
    with pytest.raises(GancraftError, match="cannot read statistics file"):
        load_stats(path)


@pytest.mark.filterwarnings("ignore")
def test_damaged_storage_blob_in_a_pickle_is_one_line(tmp_path):
    import pickle

    buf = io.BytesIO()
    torch.save(torch.zeros(4).storage(), buf, _use_new_zipfile_serialization=False)
    # torch refuses the damaged class name inside the blob with several paragraphs of advice
    blob = buf.getvalue().replace(b"FloatStorage", b"F|oatStorage")

    class Blob:
        def __reduce__(self):
            return (torch.storage._load_from_bytes, (blob,))

    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Blob()}, protocol=2))
    with pytest.raises(CheckpointError) as err:
        load(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)
