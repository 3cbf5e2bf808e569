"""SVM directions: a planted direction is recovered; conditional editing; CSV, classifier and CLIP labels."""

from __future__ import annotations

import json
import re
import warnings

import numpy as np
import pytest
import torch
from safetensors import safe_open

from gancraft.errors import GancraftError
from gancraft.latent import svm
from gancraft.latent.direction import learn_direction
from gancraft.latent.files import load_direction
from gancraft.latent.seeds import z_from_seeds
from gancraft.latent.sefa import save_directions

from conftest import cli_invoke, cli_ok

HIDDEN = np.random.default_rng(1).normal(size=32)
HIDDEN /= np.linalg.norm(HIDDEN)


@pytest.fixture(scope="module")
def w_samples():
    from conftest import make_tiny_checkpoint

    G = make_tiny_checkpoint().generator()
    with torch.no_grad():
        ws = G.mapping(z_from_seeds(range(800), G.z_dim))
    return ws.numpy()


def _cos(a, b) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_planted_direction_recovered_from_binary_labels(w_samples):
    w = w_samples[:, 0]
    s = w @ HIDDEN
    b = svm.train_boundary(w, (s > np.median(s)).astype(float))
    assert b.binary_labels and b.n_positive == b.n_negative == 400
    assert _cos(b.direction, HIDDEN) > 0.95
    assert b.val_accuracy > 0.9


def test_planted_direction_recovered_from_scores_and_points_to_high_scores(w_samples):
    w = w_samples[:, 0]
    b = svm.train_boundary(w, -(w @ HIDDEN), fraction=0.5)
    assert not b.binary_labels
    assert _cos(b.direction, -HIDDEN) > 0.95


def test_fraction_keeps_only_extremes():
    scores = np.arange(100.0)
    pos, neg, binary = svm.split_extremes(scores, 0.1)
    assert sorted(pos) == list(range(90, 100)) and sorted(neg) == list(range(10)) and not binary


def test_orthogonal_projection():
    rng = np.random.default_rng(0)
    d, o1, o2 = rng.normal(size=(3, 16))
    p = svm.project_out(d, np.stack([o1, o2]))
    assert abs(np.linalg.norm(p) - 1) < 1e-9
    assert abs(p @ o1) < 1e-9 and abs(p @ o2) < 1e-9
    with pytest.raises(GancraftError):
        svm.project_out(o1 + o2, np.stack([o1, o2]))


def _write_latents(tmp_path, w_samples, labels=True, name="lat"):
    path = tmp_path / f"{name}.npz"
    n = w_samples.shape[0]
    np.savez(
        path, w=w_samples, z=np.zeros((n, 32), np.float32), seeds=np.arange(n), domain=np.array(["a", "b"] * (n // 2))
    )
    if labels:
        s = w_samples[:, 0] @ HIDDEN
        rows = [f"{i},{int(v > np.median(s))}" for i, v in enumerate(s)]
        # shuffled rows: matching must go by seed, not by order
        order = np.random.default_rng(0).permutation(n)
        (tmp_path / f"{name}.csv").write_text("seed,glasses\n" + "\n".join(rows[i] for i in order) + "\n")
    return path


def test_cli_csv_beside_latents(tmp_path, w_samples):
    lat = _write_latents(tmp_path, w_samples)
    out = tmp_path / "glasses.st"
    r = cli_invoke("direction", "--latents", lat, "-o", out)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out)
    assert "held-out accuracy" in r.stderr
    with safe_open(str(out), "np") as f:
        d, meta = f.get_tensor("directions"), f.metadata()
    assert d.shape == (1, 32) and d.dtype == np.float32
    assert _cos(d[0], HIDDEN) > 0.95
    assert json.loads(meta["kind"]) == "svm" and json.loads(meta["names"]) == ["glasses"]
    assert json.loads(meta["val_accuracy"]) > 0.9

    # conditional editing, and labels from one domain only
    other = tmp_path / "other.st"
    save_directions(other, torch.from_numpy(np.stack([HIDDEN, np.eye(32)[0]])).float(), {"kind": "test"})
    out2 = tmp_path / "cond.st"
    r = cli_invoke(
        "direction",
        "--latents",
        lat,
        "--domain",
        "a",
        "--labels",
        tmp_path / "lat.csv",
        "--orthogonal-to",
        f"{other}:1",
        "-o",
        out2,
    )
    assert r.exit_code == 0, r.output
    with safe_open(str(out2), "np") as f:
        d2 = f.get_tensor("directions")[0]
    assert abs(d2[0]) < 1e-6 and _cos(d2, HIDDEN) > 0.9
    pos, neg = (int(x) for x in re.search(r"(\d+) positive / (\d+) negative", r.stderr).groups())
    assert pos + neg == 400  # domain "a" is every other latent


def test_cli_classifier_labels_give_an_editing_direction(tmp_path, tiny_ckpt_path, tiny_ckpt):
    class RedMean(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, 0].mean(dim=(1, 2))

    clf = tmp_path / "red.pt"
    with warnings.catch_warnings():  # torch deprecates TorchScript; users still have such files
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.trace(RedMean(), torch.zeros(1, 3, 16, 16)).save(str(clf))
    out = tmp_path / "red.st"
    r = cli_invoke("direction", tiny_ckpt_path, "--seeds", "0-199", "--classifier", clf, "-o", out, "--batch", "50")
    assert r.exit_code == 0, r.output
    with safe_open(str(out), "pt") as f:
        d = f.get_tensor("directions")[0]
    G = tiny_ckpt.generator()
    with torch.no_grad():
        ws = G.mapping(z_from_seeds(range(1000, 1016), G.z_dim))
        up = G.synthesis(ws + 3 * d)[:, 0].mean(dim=(1, 2))
        down = G.synthesis(ws - 3 * d)[:, 0].mean(dim=(1, 2))
    assert (up > down).float().mean() >= 0.9


def test_clip_labels_through_the_library(tiny_ckpt):
    from test_perceptual_clip import tiny_clip

    clip = tiny_clip()
    G = tiny_ckpt.generator()
    with torch.no_grad():
        ws = G.mapping(z_from_seeds(range(96), G.z_dim))
    scorer = svm.clip_scorer(clip, "a red square", "a blue circle")
    scores = svm.score_latents(G, ws, scorer, batch_size=48, progress=False)
    assert scores.shape == (96,) and np.unique(scores).size == 96
    b = svm.train_boundary(ws[:, 0].numpy(), scores, fraction=0.5)
    d = torch.from_numpy(b.direction).float()
    with torch.no_grad():
        up = scorer(G.synthesis(ws[:32] + 2 * d))
        down = scorer(G.synthesis(ws[:32] - 2 * d))
    assert (up > down).float().mean() > 0.7


def _error(args) -> str:
    r = cli_invoke("direction", *args)
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gancraft direction: error:"), r.stderr
    return lines[0]


def test_cli_bad_inputs(tmp_path, w_samples, tiny_ckpt_path, monkeypatch):
    out = str(tmp_path / "o.st")
    lat = _write_latents(tmp_path, w_samples[:40], labels=False)
    assert "no labels" in _error(["--latents", str(lat), "-o", out])
    assert "either --latents" in _error(["-o", out])
    assert "CKPT" in _error(["--seeds", "0-9", "--classifier", "x.pt", "-o", out])
    (tmp_path / "flat.csv").write_text("seed,y\n" + "".join(f"{i},1\n" for i in range(40)))
    assert "all equal" in _error(["--latents", str(lat), "--labels", str(tmp_path / "flat.csv"), "-o", out])
    (tmp_path / "short.csv").write_text("seed,y\n0,1\n1,0\n")
    assert "seed 2" in _error(["--latents", str(lat), "--labels", str(tmp_path / "short.csv"), "-o", out])
    (tmp_path / "bad.csv").write_text("seed,y\n" + "".join(f"{i},{'x' if i == 3 else i}\n" for i in range(40)))
    assert "line 5" in _error(["--latents", str(lat), "--labels", str(tmp_path / "bad.csv"), "-o", out])
    (tmp_path / "lat.csv").write_text("seed,y\n" + "".join(f"{i},{i % 2}\n" for i in range(40)))
    assert "nope.st" in _error(["--latents", str(lat), "--orthogonal-to", "nope.st:0", "-o", out])
    assert "b" in _error(["--latents", str(lat), "--domain", "c", "-o", out])
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "junk.npz" in _error(
        ["--latents", str(tmp_path / "junk.npz"), "--labels", str(tmp_path / "lat.csv"), "-o", out]
    )
    monkeypatch.setattr("gancraft.metrics.clip.cached_weights", lambda *a, **k: None)
    assert "--clip-weights" in _error([str(tiny_ckpt_path), "--seeds", "0-9", "--clip", "a", "b", "-o", out])
    assert not (tmp_path / "o.st").exists()


def test_library_writes_what_the_command_writes(tmp_path, w_samples):
    lat = _write_latents(tmp_path, w_samples)
    other = tmp_path / "other.st"
    save_directions(other, torch.from_numpy(np.stack([HIDDEN, np.eye(32)[0]])).float(), {"kind": "test"})
    cli = tmp_path / "cli.st"
    cli_ok("direction", "--latents", lat, "--domain", "a", "--orthogonal-to", f"{other}:1", "--seed", "3", "-o", cli)
    found = learn_direction(
        tmp_path / "api.st",
        latents=lat,
        labels=str(tmp_path / "lat.csv"),
        domain="a",
        orthogonal_to=[load_direction(f"{other}:1")],
        seed=3,
    )
    assert found.path == tmp_path / "api.st" and found.boundary.n_positive + found.boundary.n_negative == 400
    with safe_open(str(cli), "np") as f, safe_open(str(found.path), "np") as g:
        assert np.array_equal(f.get_tensor("directions"), g.get_tensor("directions"))
        assert f.metadata() == g.metadata()


def test_library_errors_name_the_value_and_the_command_adds_the_option(tmp_path, w_samples):
    lat = _write_latents(tmp_path, w_samples)
    short = tmp_path / "short.st"
    save_directions(short, torch.eye(3)[:1], {"kind": "test"})
    with pytest.raises(GancraftError) as caught:
        learn_direction(
            tmp_path / "x.st", latents=lat, labels=tmp_path / "lat.csv", orthogonal_to=[load_direction(f"{short}:0")]
        )
    assert caught.value.field == "orthogonal_to" and "--" not in str(caught.value)
    line = _error(["--latents", str(lat), "--orthogonal-to", f"{short}:0", "-o", str(tmp_path / "x.st")])
    assert line.endswith("error: --orthogonal-to: directions must have 32 dimensions like the latents"), line
    assert not (tmp_path / "x.st").exists()
