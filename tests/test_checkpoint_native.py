"""Native safetensors checkpoints: exact round trips, metadata, inspect/convert, and hostile files."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from gancraft import load, save
from gancraft.checkpoint.io import detect_format
from gancraft.errors import CheckpointError, GancraftError

from conftest import cli_invoke, make_tiny_checkpoint


def test_round_trip_is_exact(tmp_path):
    ck = make_tiny_checkpoint(c_dim=3, domains={"a": {"kind": "class", "class": 0}})
    p = save(ck, tmp_path / "m.st")
    back = load(p)
    assert set(back.tensors) == set(ck.tensors)
    for k, v in ck.tensors.items():
        assert torch.equal(back.tensors[k], v), k
    assert back.g_config == ck.g_config and back.d_config == ck.d_config
    assert back.domains == ck.domains
    z = torch.randn(2, ck.g_config.z_dim)
    c = torch.eye(3)[:2]
    assert torch.equal(back.generator()(z, c), ck.generator()(z, c))


def test_history_records_inputs_with_their_blake3_digest(tmp_path, tiny_ckpt_path):
    out = tmp_path / "conv.st"
    r = cli_invoke("convert", tiny_ckpt_path, "-o", out)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out)
    hist = load(out).history
    assert hist[-1]["command"] == "convert"
    import blake3

    assert hist[-1]["inputs"][0]["blake3"] == blake3.blake3(tiny_ckpt_path.read_bytes()).hexdigest()
    # inspect names the digest; files from before the switch record sha256 and show it
    shown = cli_invoke("inspect", out).stdout
    assert f"{tiny_ckpt_path.name} (blake3 {hist[-1]['inputs'][0]['blake3'][:12]})" in shown
    old = load(out)
    old.history[-1]["inputs"] = [{"path": "old.st", "sha256": "ab" * 32}]
    save(old, tmp_path / "old.st")
    assert "old.st (sha256 abababababab)" in cli_invoke("inspect", tmp_path / "old.st").stdout


def test_inspect_json_and_layers(tiny_ckpt_path):
    r = cli_invoke("inspect", tiny_ckpt_path, "--json", "--layers")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["resolution"] == 16 and info["format"] == "native"
    assert info["networks"]["G_ema"]["parameters"] == info["networks"]["G"]["parameters"]
    G = load(tiny_ckpt_path).generator()
    n_params = sum(p.numel() for p in G.parameters())
    assert info["networks"]["G_ema"]["parameters"] == n_params
    assert info["domain_vector_dim"] == G.synthesis.style_dim
    res = {layer["name"]: layer["resolution"] for layer in info["layers"]}
    assert res["G_ema.synthesis.b8.conv0.weight"] == 8 and res["G_ema.mapping.fc0.weight"] is None


def test_inspect_warns_on_nan(tmp_path):
    ck = make_tiny_checkpoint()
    ck.tensors["G_ema.synthesis.b8.conv0.weight"][0, 0, 0, 0] = float("nan")
    p = save(ck, tmp_path / "nan.st")
    r = cli_invoke("inspect", p)
    assert r.exit_code == 0
    assert "NaN or Inf" in r.stderr


def test_convert_never_overwrites(tmp_path, tiny_ckpt_path):
    out = tmp_path / "o.st"
    out.write_bytes(b"old")
    r = cli_invoke("convert", tiny_ckpt_path, "-o", out)
    assert r.exit_code == 2 and "already exists" in r.stderr and "--force" in r.stderr
    assert out.read_bytes() == b"old"
    assert cli_invoke("convert", tiny_ckpt_path, "-o", out, "--force").exit_code == 0
    assert load(out).g_config.img_resolution == 16
    r = cli_invoke("convert", tiny_ckpt_path, "-o", tiny_ckpt_path, "--force")
    assert r.exit_code == 2 and "input" in r.stderr
    assert not list(tmp_path.glob(".*.tmp"))


def _corrupt_cases(tmp_path: Path, good: Path) -> dict[str, Path]:
    data = good.read_bytes()
    cases = {}
    cases["empty"] = tmp_path / "empty.st"
    cases["empty"].write_bytes(b"")
    cases["truncated"] = tmp_path / "trunc.st"
    cases["truncated"].write_bytes(data[: len(data) // 2])
    cases["garbage"] = tmp_path / "garbage.bin"
    cases["garbage"].write_bytes(b"\x13\x37 this is not a model" * 10)
    header = json.dumps({"x": {"dtype": "F32", "shape": [1 << 20, 1 << 20], "data_offsets": [0, 16]}}).encode()
    cases["absurd_shape"] = tmp_path / "absurd.st"
    cases["absurd_shape"].write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1 << 40]}}).encode()
    cases["offset_past_end"] = tmp_path / "offset.st"
    cases["offset_past_end"].write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    cases["huge_header"] = tmp_path / "hdr.st"
    cases["huge_header"].write_bytes(struct.pack("<Q", 1 << 39) + b"{" + b"\0" * 64)
    flipped = bytearray(data)
    flipped[10] ^= 0xFF  # inside the JSON header
    cases["bitflip_header"] = tmp_path / "flip.st"
    cases["bitflip_header"].write_bytes(bytes(flipped))
    return cases


def test_corrupt_files_fail_cleanly(tmp_path, tiny_ckpt_path):
    for name, path in _corrupt_cases(tmp_path, tiny_ckpt_path).items():
        with pytest.raises(CheckpointError) as exc:
            load(path)
        assert str(path) in str(exc.value), name
        r = cli_invoke("inspect", path)
        assert r.exit_code == 2, (name, r.output)
        assert len(r.stderr.strip().splitlines()) == 1, (name, r.stderr)
        assert "Traceback" not in r.output


def test_plain_safetensors_without_config_is_refused(tmp_path):
    p = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(p))
    with pytest.raises(CheckpointError, match="not a gancraft checkpoint"):
        load(p)


def test_missing_and_directory_inputs(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        detect_format(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        detect_format(tmp_path)
    r = cli_invoke("convert", tmp_path, "-o", tmp_path / "x.st")
    assert r.exit_code == 2 and "is a directory" in r.stderr


def test_architecture_mismatch_is_reported(tmp_path):
    ck = make_tiny_checkpoint()
    ck.tensors["G_ema.synthesis.b8.conv0.weight"] = torch.zeros(3, 3, 3, 3)
    p = save(ck, tmp_path / "bad.st")
    with pytest.raises(GancraftError, match=r"G_ema.synthesis.b8.conv0.weight.*\(3, 3, 3, 3\)"):
        load(p).generator()


def test_unwritable_output_folder(tmp_path, tiny_ckpt_path):
    r = cli_invoke("convert", tiny_ckpt_path, "-o", tmp_path / "missing" / "o.st")
    assert r.exit_code == 2 and "does not exist" in r.stderr
