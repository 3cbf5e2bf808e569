"""gancraft fid: sources (folders, statistics, checkpoints), domains, KID, JSON, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gancraft import save
from gancraft.metrics import TorchScriptExtractor, load_stats
from gancraft.metrics.evaluate import compute_stats, fid, fid_domains

from conftest import cli_invoke, make_tiny_checkpoint


class _TinyFeatures(torch.nn.Module):
    """Pooled conv responses: a cheap extractor that still separates image distributions."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x * 4 - 2))
        return torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fid")


@pytest.fixture(scope="module")
def features(work) -> Path:
    torch.manual_seed(0)
    path = work / "feat.pt"
    torch.jit.script(_TinyFeatures()).save(str(path))
    return path


@pytest.fixture(scope="module")
def plain(work) -> Path:
    path = work / "plain.st"
    save(make_tiny_checkpoint(seed=1), path)
    return path


@pytest.fixture(scope="module")
def union(work) -> Path:
    path = work / "union.st"
    domains = {"cat": {"kind": "class", "class": 0}, "dog": {"kind": "class", "class": 1}}
    save(make_tiny_checkpoint(seed=2, c_dim=2, domains=domains), path)
    return path


def run(*args: str):
    return cli_invoke("fid", *args)


def sample(ckpt: Path, out: Path, seeds: str, *extra: str) -> Path:
    res = cli_invoke("sample", ckpt, "--seeds", seeds, "--batch", "8", "-o", out, *extra)
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def plain_samples(work, plain) -> Path:
    return sample(plain, work / "plain_samples", "0-23")


def table_fid(output: str, domain: str = "-") -> float:
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] == domain:
            return float(cells[1])
    raise AssertionError(f"no row {domain!r} in:\n{output}")


def test_folder_against_itself_is_zero_and_names_extractor(plain_samples, features, work):
    res = run(plain_samples, plain_samples, "--extractor", features, "--batch", "5")
    assert res.exit_code == 0, res.output
    assert table_fid(res.stdout) < 1e-6
    assert "extractor: torchscript:sha256=" in res.output and "resize: none" in res.stdout

    rng = np.random.default_rng(0)
    noise = work / "noise"
    noise.mkdir()
    from PIL import Image

    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(noise / f"{i:03d}.png")
    res = run(plain_samples, noise, "--extractor", features)
    assert res.exit_code == 0, res.output
    assert table_fid(res.stdout) > 1e-2


def test_checkpoint_against_its_saved_samples(plain, plain_samples, features):
    res = run(plain, plain_samples, "--extractor", features, "--n", "24", "--batch", "8", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    row = out["rows"][0]
    assert row["fid"] < 1e-6 and row["n_a"] == 24 and row["n_b"] == 24
    assert out["extractor"].startswith("torchscript:sha256=")
    # Other seeds are other images: the score moves off zero.
    res = run(plain, plain_samples, "--extractor", features, "--n", "24", "--batch", "8", "--seed-offset", "100")
    assert res.exit_code == 0, res.output
    assert table_fid(res.stdout) > 1e-4


def test_stats_round_trip_and_kid(plain, plain_samples, features, work):
    out = work / "ref.npz"
    res = run("stats", plain_samples, "-o", out, "--extractor", features, "--kid")
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == str(out)
    stats = load_stats(out)
    assert stats.n == 24 and stats.features.shape == (24, 16) and stats.extractor.startswith("torchscript:")
    # Refuses to overwrite without --force.
    assert run("stats", plain_samples, "-o", out, "--extractor", features).exit_code == 2

    direct = run(plain, plain_samples, "--extractor", features, "--n", "24", "--batch", "8", "--kid", "--json")
    cached = run(plain, out, "--extractor", features, "--n", "24", "--batch", "8", "--kid", "--json")
    assert direct.exit_code == 0 and cached.exit_code == 0, direct.output + cached.output
    d, c = json.loads(direct.stdout)["rows"][0], json.loads(cached.stdout)["rows"][0]
    assert c["fid"] == pytest.approx(d["fid"], abs=1e-9) and c["kid"] == pytest.approx(d["kid"], abs=1e-9)
    assert c["kid_std"] >= 0

    # Statistics against statistics need no extractor at all.
    res = run(out, out, "--extractor", "inception", "--no-download")
    assert res.exit_code == 0, res.output
    assert table_fid(res.stdout) < 1e-6

    # A file without stored features cannot give KID; the message says how to make one.
    plain_stats = work / "plain_ref.npz"
    assert run("stats", plain_samples, "-o", plain_stats, "--extractor", features).exit_code == 0
    res = run(plain, plain_stats, "--extractor", features, "--n", "24", "--kid")
    assert res.exit_code == 2 and "--kid" in res.output and "plain_ref.npz" in res.output


def test_pytorch_fid_layout_and_mismatched_extractor(plain_samples, features, work):
    src = work / "ref_layout.npz"
    assert run("stats", plain_samples, "-o", src, "--extractor", features).exit_code == 0
    own = load_stats(src)
    bare = work / "bare.npz"
    np.savez(bare, mu=own.mu, sigma=own.sigma)
    res = run(plain_samples, bare, "--extractor", features)
    assert res.exit_code == 0, res.output
    assert table_fid(res.stdout) < 1e-6

    other = work / "other.pt"
    torch.manual_seed(5)
    torch.jit.script(_TinyFeatures()).save(str(other))
    res = run(plain_samples, src, "--extractor", other)
    assert res.exit_code == 2 and "extractor" in res.output and len(res.stderr.strip().splitlines()) == 1


def test_domain_all_rows(union, features, work):
    refs = sample(union, work / "union_samples", "0-15")
    assert sorted(p.name for p in refs.iterdir()) == ["cat", "dog"]
    res = run(union, refs, "--domain", "all", "--extractor", features, "--n", "16", "--batch", "8", "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    assert [r["domain"] for r in rows] == ["cat", "dog"]
    assert all(r["fid"] < 1e-6 for r in rows)

    # Statistics per domain in a folder play the same role as the image subfolders.
    stats_dir = work / "union_stats"
    res = run("stats", union, "-o", stats_dir, "--domain", "all", "--extractor", features, "--n", "16", "--batch", "8")
    assert res.exit_code == 0, res.output
    assert res.stdout.split() == [str(stats_dir / "cat.npz"), str(stats_dir / "dog.npz")]
    # Each domain against the other's reference: the class really changes the images.
    swapped = work / "swapped"
    swapped.mkdir()
    (swapped / "cat.npz").write_bytes((stats_dir / "dog.npz").read_bytes())
    (swapped / "dog.npz").write_bytes((stats_dir / "cat.npz").read_bytes())
    res = run(union, swapped, "--domain", "all", "--extractor", features, "--n", "16", "--batch", "8")
    assert res.exit_code == 0, res.output
    assert table_fid(res.stdout, "cat") > 1e-4 and table_fid(res.stdout, "dog") > 1e-4
    assert res.stdout.splitlines()[0].split() == ["domain", "FID", "n_A", "n_B"]

    # A multi-domain model without --domain, and a missing reference, are one-line errors.
    res = run(union, refs / "cat", "--extractor", features, "--n", "16")
    assert res.exit_code == 2 and "--domain" in res.output
    res = run(union, work / "plain_samples", "--domain", "all", "--extractor", features, "--n", "16")
    assert res.exit_code == 2 and "cat" in res.output and len(res.stderr.strip().splitlines()) == 1


def test_library_api_matches_cli(plain, plain_samples, features):
    ex = TorchScriptExtractor(features, device="cpu")
    a = compute_stats(plain, ex, n=24, batch=8)
    b = compute_stats(plain_samples, ex)
    assert a.n == b.n == 24
    np.testing.assert_allclose(a.mu, b.mu, atol=1e-6)
    row = fid(plain, plain_samples, ex, n=24, batch=8)
    assert row["fid"] < 1e-6 and row["domain"] is None
    assert fid_domains(plain_samples, plain_samples, ex)[0]["fid"] < 1e-6


def test_missing_inception_weights_names_file_and_option(plain_samples, tmp_path, monkeypatch):
    # A failed download gives the same advice; test_metrics covers that path of the extractor.
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    res = run(plain_samples, plain_samples, "--no-download")
    assert res.exit_code == 2
    assert "pt_inception-2015-12-05-6726825d.pth" in res.stderr and "--weights" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    res = run(plain_samples, plain_samples, "--weights", tmp_path / "nope.pth")
    assert res.exit_code == 2 and "nope.pth" in res.output


@pytest.mark.parametrize("make_bad", ["missing", "junk_ckpt", "junk_npz", "empty_dir"])
def test_bad_sources_are_one_line_errors(make_bad, plain_samples, features, tmp_path):
    bad = {
        "missing": tmp_path / "nothing",
        "junk_ckpt": tmp_path / "junk.pt",
        "junk_npz": tmp_path / "junk.npz",
        "empty_dir": tmp_path / "empty",
    }[make_bad]
    if make_bad in ("junk_ckpt", "junk_npz"):
        bad.write_bytes(b"not a model")
    elif make_bad == "empty_dir":
        bad.mkdir()
    res = run(bad, plain_samples, "--extractor", features)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gancraft fid: error:") and bad.name in lines[0]
    assert "Traceback" not in res.output


def test_stats_refuses_statistics_source(tmp_path, features):
    src = tmp_path / "bare.npz"
    np.savez(src, mu=np.zeros(2), sigma=np.eye(2))
    res = run("stats", src, "-o", tmp_path / "again.npz", "--extractor", features)
    assert res.exit_code == 2 and "already a statistics file" in res.output


def test_ranks_split_the_seeds_and_gathered_stats_equal_one_process(plain, features, monkeypatch):
    """Two ranks' shards, gathered as torchrun would, give one process's statistics."""
    import torch.distributed as dist

    from gancraft.distributed import DistInfo

    ex = TorchScriptExtractor(features, device="cpu")
    whole = compute_stats(plain, ex, n=20, batch=8)
    shards: dict[int, object] = {}

    def fake_all_gather(parts, obj):
        shards[len(shards)] = obj
        parts[:] = [shards.get(0, obj), shards.get(1, obj)]

    monkeypatch.setattr(dist, "all_gather_object", fake_all_gather)
    compute_stats(plain, ex, n=20, batch=8, dist=DistInfo(rank=0, world=2))
    merged = compute_stats(plain, ex, n=20, batch=8, dist=DistInfo(rank=1, world=2))
    assert shards[0].n == shards[1].n == 10 and merged.n == 20
    np.testing.assert_allclose(merged.mu, whole.mu, atol=1e-6)
    np.testing.assert_allclose(merged.sigma, whole.sigma, atol=1e-6)


def test_fd_clip_path_and_missing_clip_weights(plain_samples, work, monkeypatch):
    from gancraft.metrics import ClipExtractor
    from gancraft.metrics import clip as clip_module

    tiny = dict(
        embed_dim=16,
        vision_cfg=dict(image_size=32, layers=1, width=32, patch_size=8, head_width=16),
        text_cfg=dict(context_length=8, vocab_size=64, width=16, heads=2, layers=1),
    )
    ex = ClipExtractor.random("ViT-B-32", seed=0, device="cpu", **tiny)
    row = fid(plain_samples, plain_samples, ex, batch=8)
    assert row["fid"] < 1e-6 and row["resize"].startswith("clip: bicubic") and row["n_a"] == 24

    monkeypatch.setattr(clip_module, "cached_weights", lambda *args, **kwargs: None)
    res = run(plain_samples, plain_samples, "--extractor", "clip", "--no-download")
    assert res.exit_code == 2 and "--weights" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_domain_of_a_union_model_against_a_single_domain_checkpoint(union, ckpt, features):
    """`fid union.st cat.st --domain cat`: the domain picks the union model's part; the
    single-domain checkpoint on the other side is that domain's reference, used whole."""
    opts = ("--extractor", features, "--n", "8", "--batch", "8", "--json")
    res = run(union, ckpt, "--domain", "cat", *opts)
    assert res.exit_code == 0, res.output
    row = json.loads(res.stdout)["rows"][0]
    assert row["domain"] == "cat" and row["fid"] > 0
    # two single-domain checkpoints: --domain names nothing, still a one-line error
    res = run(ckpt, ckpt, "--domain", "cat", *opts)
    assert res.exit_code == 2 and "single domain" in res.stderr


def test_two_checkpoints_take_disjoint_seeds_unless_asked(plain, plain_samples, features, work):
    """`fid x.st x.st` scores x's sampling noise (B's seeds follow A's), not an exact 0; --same-seeds
    pairs them. B's images are exactly those of seeds n .. 2n-1."""
    opts = ("--extractor", features, "--n", "12", "--batch", "8", "--json")
    res = run(plain, plain, *opts)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows"][0]["fid"] > 1e-4
    res = run(plain, plain, "--same-seeds", *opts)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["rows"][0]["fid"] < 1e-6
    # A: seeds 0-11, B: 12-23, as the saved samples of those seeds score
    halves = {name: work / f"plain_{name}" for name in ("first", "later")}
    files = sorted(plain_samples.iterdir())
    for (name, folder), part in zip(halves.items(), (files[:12], files[12:])):
        folder.mkdir(exist_ok=True)
        for p in part:
            (folder / p.name).write_bytes(p.read_bytes())
    ex = TorchScriptExtractor(features, device="cpu")
    assert fid(plain, plain, ex, n=12, batch=8)["fid"] == pytest.approx(
        fid(halves["first"], halves["later"], ex)["fid"], rel=1e-6
    )
