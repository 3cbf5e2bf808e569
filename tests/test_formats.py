"""The checkpoint-format registry: detection order, dispatch of network pickles, and a format added
from outside the package reaching load, save and convert's refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from gancraft import load, save
from gancraft.checkpoint import formats
from gancraft.checkpoint.core import Checkpoint
from gancraft.checkpoint.formats import CheckpointFormat, get_writer, register
from gancraft.checkpoint.io import WRITE_FORMATS, detect_format
from gancraft.checkpoint.rosinality import write_rosinality
from gancraft.errors import CheckpointError

from conftest import cli_fails, cli_invoke, cli_ok, make_tiny_checkpoint

MAGIC = b"TOYCKPT\n"


class Toy(CheckpointFormat):
    """A format of one JSON line after a magic: enough to see the registry route to it."""

    name = "toy"
    container = "toy"
    suffix = ".toy"
    summary = "a toy"
    options = ("fresh_d",)

    def detect(self, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def read(self, path: Path) -> Checkpoint:
        seed = json.loads(path.read_bytes()[len(MAGIC) :])["seed"]
        return make_tiny_checkpoint(seed=seed)

    def write(self, ckpt: Checkpoint, path: Path, **options: Any) -> None:
        path.write_bytes(MAGIC + json.dumps({"seed": 3, **options}).encode())


@pytest.fixture
def toy():
    with formats.REGISTRY.scoped():
        register(Toy)
        yield formats.REGISTRY["toy"]


def test_writers_in_registration_order():
    assert WRITE_FORMATS == ("native", "rosinality", "nvidia")
    assert [f.suffix for f in formats.writers()] == [".st", ".pt", ".pkl"]
    assert {f.name for f in formats.formats()} == {"native", "rosinality", "nvidia", "tf"}


def test_a_registered_format_is_detected_read_and_written(toy, tmp_path):
    path = save(make_tiny_checkpoint(), tmp_path / "m.toy", to="toy", fresh_d=True)
    assert json.loads(path.read_bytes()[len(MAGIC) :]) == {"seed": 3, "fresh_d": True}
    assert detect_format(path) == "toy"
    ckpt = load(path)
    assert ckpt.path == path
    expected = make_tiny_checkpoint(seed=3).tensors
    assert all(torch.equal(ckpt.tensors[k], v) for k, v in expected.items())


def test_registering_a_name_twice_is_refused(toy):
    with pytest.raises(RuntimeError, match="'toy' is registered twice"):
        register(Toy)


def test_unknown_writer_lists_the_registered_ones(tmp_path):
    with pytest.raises(CheckpointError, match=r"unknown output format 'tf' \(choose native, rosinality, nvidia\)"):
        save(make_tiny_checkpoint(), tmp_path / "x.pkl", to="tf")
    with pytest.raises(CheckpointError, match="unknown output format"):
        get_writer("nope")


def test_pre_zip_torch_file_is_rosinality_not_a_network_pickle(tmp_path):
    # torch's legacy format is itself a pickle: the rosinality reader must be tried first
    zipped = tmp_path / "new.pt"
    write_rosinality(make_tiny_checkpoint(), zipped, allow_custom_channels=True)
    legacy = tmp_path / "old.pt"
    torch.save(torch.load(zipped, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    assert detect_format(legacy) == "torch"
    ckpt = load(legacy)
    assert ckpt.source_format == "rosinality"
    assert torch.equal(ckpt.tensors["G_ema.mapping.w_avg"], load(zipped).tensors["G_ema.mapping.w_avg"])


def test_convert_refuses_an_option_of_another_writer(tmp_path):
    src = save(make_tiny_checkpoint(), tmp_path / "m.st")
    line = cli_fails("convert", src, "--to", "native", "--fresh-d", "-o", tmp_path / "x.st")
    assert "--fresh-d applies to --to nvidia only, not --to native" in line
    line = cli_fails("convert", src, "--to", "nvidia", "--allow-clamp", "-o", tmp_path / "x.pkl")
    assert "--allow-clamp applies to --to rosinality only, not --to nvidia" in line


def test_convert_help_lists_every_writer():
    # click wraps at spaces and hyphens, so compare without whitespace
    help_text = "".join(cli_invoke("convert", "--help").output.split())
    for fmt in formats.writers():
        assert "".join(f"{fmt.name}: {fmt.summary}".split()) in help_text
        assert f"{fmt.suffix}({fmt.name})" in help_text


def test_convert_names_the_output_with_the_writers_suffix(tmp_path, monkeypatch):
    src = save(make_tiny_checkpoint(), tmp_path / "m.st")
    monkeypatch.chdir(tmp_path)
    out = cli_ok("convert", src, "--to", "rosinality", "--allow-custom-channels")
    assert out == ["m.pt"] and load(tmp_path / "m.pt").source_format == "rosinality"
