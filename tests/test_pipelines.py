"""Shell pipelines: '-' for standard input/output, default output names, and clean failures in a pipe."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gancraft import load, save
from gancraft.latent.files import load_directions, load_latents
from gancraft.merge.blend import default_switch

from conftest import cli_fails, cli_invoke, cli_ok, make_tiny_checkpoint

GANCRAFT = f"{shlex.quote(sys.executable)} -m gancraft"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pipe")
    for i, name in enumerate("abc"):
        save(make_tiny_checkpoint(seed=i), folder / f"{name}.st")
    return folder


def shell(script: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GANCRAFT_HASH_CACHE": "off"}
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", script], cwd=cwd, input=stdin, capture_output=True, env=env, timeout=600
    )


def pixels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_average_blend_sample_pipeline_equals_the_same_steps_through_files(models, tmp_path):
    r = shell(
        f"{GANCRAFT} average a.st b.st -o - | {GANCRAFT} blend-layers --low - --high c.st -o - "
        f"| {GANCRAFT} sample - --seeds 0-3 -o {tmp_path}/piped",
        models,
    )
    assert r.returncode == 0, r.stderr.decode()
    # stdout carries only the paths of the last command: the checkpoints went down the pipes
    assert r.stdout.decode().split() == [str(tmp_path / "piped" / f"seed000{i}.png") for i in range(4)]
    cli_ok("average", models / "a.st", models / "b.st", "-o", tmp_path / "ab.st")
    cli_ok("blend-layers", "--low", tmp_path / "ab.st", "--high", models / "c.st", "-o", tmp_path / "abc.st")
    cli_ok("sample", tmp_path / "abc.st", "--seeds", "0-3", "-o", tmp_path / "files")
    piped, files = pixels(tmp_path / "piped"), pixels(tmp_path / "files")
    assert len(piped) == 4 and piped.keys() == files.keys()
    assert all(np.array_equal(piped[k], files[k]) for k in piped)


def test_sefa_to_render_and_latents_through_pipes(models, tmp_path):
    r = shell(
        f"{GANCRAFT} sefa a.st -o - | {GANCRAFT} render a.st --direction -:0 --frames 3 -o {tmp_path}/walk "
        f"&& {GANCRAFT} sample a.st --seeds 0-2 --latents - > {tmp_path}/z.npz",
        models,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert sorted(p.name for p in (tmp_path / "walk").iterdir()) == [f"frame0000{i}.png" for i in range(3)]
    # the direction that went through the pipe is the one a file gets
    cli_ok("sefa", models / "a.st", "-o", tmp_path / "dirs.st")
    cli_ok(
        "render", models / "a.st", "--direction", f"{tmp_path / 'dirs.st'}:0", "--frames", "3", "-o", tmp_path / "walk2"
    )
    assert pixels(tmp_path / "walk").keys() == pixels(tmp_path / "walk2").keys()
    assert all(
        np.array_equal(a, b) for a, b in zip(pixels(tmp_path / "walk").values(), pixels(tmp_path / "walk2").values())
    )
    z = load_latents(tmp_path / "z.npz")
    assert z.seeds.tolist() == [0, 1, 2] and z.w.shape[0] == 3


def test_fid_in_a_loop_with_json_read_by_a_script(models, tmp_path):
    torch.manual_seed(0)
    feats = tmp_path / "feat.pt"
    torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(1))).save(str(feats))
    opts = f"--extractor {feats} -n 8 --batch 8"
    script = (
        f"{GANCRAFT} fid stats a.st {opts} -o - > ref.npz && "
        f"for m in a.st b.st; do {GANCRAFT} fid $m ref.npz {opts} --json; done "
        f"| {shlex.quote(sys.executable)} -c 'import json,sys; dec=json.JSONDecoder(); s=sys.stdin.read(); i=0\n"
        'while i < len(s.strip()):\n    o, j = dec.raw_decode(s, i); print(o["a"], o["rows"][0]["fid"]); '
        "i = j + 1'"
    )
    r = shell(script, models)
    assert r.returncode == 0, r.stderr.decode()
    scores = {name: float(v) for name, v in (line.split() for line in r.stdout.decode().splitlines())}
    assert set(scores) == {"a.st", "b.st"}
    # the statistics of a.st itself score (numerically) zero; another model does not
    assert abs(scores["a.st"]) < 1e-6 < scores["b.st"]
    os.remove(models / "ref.npz")


def test_failed_upstream_leaves_no_output_downstream(models, tmp_path):
    out = tmp_path / "out.st"
    r = shell(f"(head -c 3000 a.st; exit 3) | {GANCRAFT} blend-layers --low - --high c.st -o {out}", models)
    assert r.returncode != 0
    lines = r.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gancraft blend-layers: error: -: "), lines
    r = shell(f"false | {GANCRAFT} average - b.st -o {out}", models)
    assert r.returncode != 0 and "standard input is empty" in r.stderr.decode()
    assert list(tmp_path.iterdir()) == []


def run_stdin(data: bytes, *args) -> object:
    return cli_invoke(*args, input=data)


def test_stdin_stdout_in_process(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = (models / "a.st").read_bytes()
    r = run_stdin(raw, "average", "-", models / "b.st", "-o", "-")
    assert r.exit_code == 0, r.stderr
    # the bytes on stdout are the whole checkpoint; no file was left in the current folder
    (tmp_path / "got.st").write_bytes(r.stdout_bytes)
    got = load(tmp_path / "got.st")
    assert [p.name for p in tmp_path.iterdir()] == ["got.st"]
    expected = cli_ok("average", models / "a.st", models / "b.st", "-o", tmp_path / "ref.st")
    ref = load(expected[0])
    assert all(torch.equal(got.tensors[k], ref.tensors[k]) for k in ref.tensors)
    # provenance names the pipe and records the digest of what came through it
    import blake3

    entry = got.history[-1]["inputs"][0]
    assert entry == {"path": "-", "blake3": blake3.blake3(raw).hexdigest()}
    # a checkpoint, directions or latents can each come from stdin; the format is found from the bytes
    cli_ok("sample", models / "a.st", "--seeds", "0,1", "--latents", tmp_path / "z.npz")
    r = run_stdin(
        (tmp_path / "z.npz").read_bytes(), "sample", models / "a.st", "--from-latents", "-", "-o", tmp_path / "again"
    )
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["seed0000.png", "seed0001.png"]


def test_stdin_mistakes_are_one_line(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = (models / "a.st").read_bytes()
    for data, words in (
        (b"", "standard input is empty"),
        (raw[: len(raw) // 2], "-: "),
        (b"not a checkpoint at all", "-: "),
    ):
        r = run_stdin(data, "blend-layers", "--low", "-", "--high", models / "b.st", "-o", "x.st")
        assert r.exit_code == 2, r.output
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gancraft blend-layers: error: ") and words in lines[0]
        assert "gancraft-stdio" not in lines[0]  # the temporary file is called '-'
    r = run_stdin(raw, "average", "-", "-", "-o", "x.st")
    assert r.exit_code == 2 and "given twice" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_stdout_refused_on_a_terminal(models, tmp_path, monkeypatch):
    from gancraft.cli import paths

    real = paths.binary_stream

    class Tty:
        def __init__(self, stream):
            self.stream = stream

        def isatty(self):
            return True

        def __getattr__(self, name):
            return getattr(self.stream, name)

    monkeypatch.setattr(paths, "binary_stream", lambda name: Tty(real(name)) if name == "stdout" else real(name))
    monkeypatch.chdir(tmp_path)
    assert "terminal" in cli_fails("average", models / "a.st", models / "b.st", "-o", "-")
    assert list(tmp_path.iterdir()) == []


def test_a_file_named_dash_is_dot_slash_dash(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_ok("average", models / "a.st", models / "b.st", "-o", "./-") == ["-"]
    assert (tmp_path / "-").is_file()
    r = cli_invoke("inspect", "./-", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["file"] == "-"


def test_default_output_names(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b, c = (models / f"{n}.st" for n in "abc")
    assert cli_ok("blend-layers", "--low", a, "--high", c) == ["a+c.blend.st"]
    blended = load(tmp_path / "a+c.blend.st")
    assert blended.history[-1]["params"]["switch"] == default_switch(blended.g_config.block_resolutions) == 8
    # never overwritten without --force, as with an explicit -o
    assert "already exists" in cli_fails("blend-layers", "--low", a, "--high", c)
    assert cli_ok("blend-layers", "--low", a, "--high", c, "--force") == ["a+c.blend.st"]
    assert cli_ok("average", a, b, c) == ["a+b+c.avg.st"]
    assert cli_ok("average", a, b, "--method", "slerp") == ["a+b.slerp.st"]
    assert cli_ok("convert", a) == ["a.st"]
    assert cli_ok("sefa", a) == ["a.sefa.st"]
    assert load_directions(tmp_path / "a.sefa.st").directions.shape[0] > 0
    assert cli_ok("sample", a, "--seeds", "0") == [str(Path("a-samples") / "seed0000.png")]


def test_default_switch_scales_with_resolution():
    res = lambda top: [2**i for i in range(2, top.bit_length())]  # noqa: E731
    assert [default_switch(res(r)) for r in (1024, 512, 256, 32)] == [32, 32, 16, 8]


def test_cubic_path_hits_keyframes_and_turns_smoothly():
    from gancraft.latent.generate import cubic_path, frame_times, lerp

    torch.manual_seed(0)
    keys = torch.randn(4, 8, dtype=torch.float64)
    for loop in (False, True):
        frames = 4 * 50 if loop else 3 * 50 + 1  # a frame on every keyframe
        path = cubic_path(keys, frames, loop)
        assert torch.allclose(path[::50], keys, atol=1e-9)
        linear = torch.stack([lerp(keys[i], keys[j], t) for i, j, t in frame_times(4, frames, loop)])
        # the wrap from the last frame back to the first counts too when looping
        ext = lambda p: torch.cat([p, p[:2]]) if loop else p  # noqa: E731
        bend = lambda p: (ext(p)[2:] - 2 * ext(p)[1:-1] + ext(p)[:-2]).norm(dim=1).max()  # noqa: E731
        # a piecewise-linear path turns all at once at a keyframe; the spline spreads the turn out
        assert bend(path) < 0.1 * bend(linear)


def test_render_several_models_into_a_folder(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = models / "a.st", models / "b.st"
    assert cli_ok("render", a, b, "--seeds", "0-2", "--loop", "--frames", "3", "-o", "videos/") == [
        str(Path("videos") / "a.mp4"),
        str(Path("videos") / "b.mp4"),
    ]
    # one model at a time into the same folder, as xargs -n 1 runs it
    assert cli_ok("render", "--seeds", "0-2", "--frames", "3", "-o", "one/", a) == [str(Path("one") / "a.mp4")]
    assert "video each" in cli_fails("render", a, b, "-o", "x.mp4")
    assert "already exists" in cli_fails("render", a, b, "--frames", "3", "-o", "videos/")
    assert "linear" in cli_fails("render", a, "--space", "z", "-o", "z.mp4")
    assert cli_ok("render", a, "--path", "linear", "--frames", "3", "-o", "frames") == ["frames"]


def test_pipeline_recipe(models, tmp_path):
    script = ROOT / "recipes" / "pipeline.sh"
    r = subprocess.run(
        ["bash", str(script), "a.st", "b.st", "c.st", str(tmp_path / "out")],
        cwd=models,
        capture_output=True,
        env={**os.environ, "GANCRAFT": GANCRAFT, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr.decode()
    out = tmp_path / "out"
    assert r.stdout.decode().split() == [
        str(out / "walk.gif"),
        *(str(out / "samples" / f"seed000{i}.png") for i in range(4)),
    ]
    assert sorted(p.name for p in out.iterdir()) == ["blend.st", "samples", "walk.gif"]
    history = load(out / "blend.st").history
    assert [h["command"] for h in history[-2:]] == ["average", "blend-layers"]
    assert history[-1]["inputs"][0]["path"] == "-"


def test_sample_several_models_one_folder_each(models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = models / "a.st", models / "b.st"
    got = cli_ok("sample", a, b, "--seeds", "0,1", "-o", "out")
    assert got == [str(Path("out") / m / f"seed000{i}.png") for m in "ab" for i in range(2)]
    # each folder holds what that model alone gives
    cli_ok("sample", b, "--seeds", "0,1", "-o", "alone")
    assert all(
        np.array_equal(x, y)
        for x, y in zip(pixels(tmp_path / "out" / "b").values(), pixels(tmp_path / "alone").values())
    )
    assert cli_ok("sample", a, b, "--seeds", "0") == [str(Path(f"{m}-samples") / "seed0000.png") for m in "ab"]
    assert "one CKPT" in cli_fails("sample", a, b, "--grid", "g.png")
