"""Adaptive discriminator augmentation: the pipeline's operations, p's control, where the loop
augments, exact resume, the CLI, and NVIDIA's AugmentPipe (golden images always; the live
comparison with GANCRAFT_NVIDIA_SRC)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from reference import make_ada_golden as golden
from safetensors.torch import load_file

from gancraft import load
from gancraft.toy import write_dataset
from gancraft.train import ada
from gancraft.train.data import ImageFolderData
from gancraft.train.loop import TrainOptions, run_training
from gancraft.train.methods import ScratchMethod

from conftest import NVIDIA_SRC, cli_fails, cli_invoke, needs_nvidia, tiny_configs

REF = Path(__file__).resolve().parent / "reference"


@pytest.fixture
def force_uniform(monkeypatch):
    """Every uniform draw of the pipeline returns u (so every gate below p = 1 is open)."""

    def force(u: float) -> None:
        monkeypatch.setattr(ada, "_uniform", lambda shape, device: torch.full(shape, u, device=device))

    return force


def _images(n: int = 2, channels: int = 3, size: int = 16) -> torch.Tensor:
    return torch.randn([n, channels, size, size], generator=torch.Generator().manual_seed(0))


def _forced_warp(x: torch.Tensor, op: str) -> torch.Tensor:
    return ada.warp(x, ada.sample_geometry(x.shape[0], (op,), 1.0, tuple(x.shape[2:]), x.device))


# -- the pipeline ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline", sorted(ada.PIPELINES))
def test_p_zero_leaves_images_bit_identical(pipeline):
    x = _images()
    torch.manual_seed(0)
    assert torch.equal(ada.AugmentPipe(pipeline)(x, 0.0), x)
    torch.manual_seed(0)
    assert not torch.equal(ada.AugmentPipe(pipeline)(x, 0.5), x)


def test_identity_warp_reproduces_the_image():
    """Pad, 2x up, sample, 2x down through the identity gives the image back to rounding: the
    wavelet pair reconstructs exactly, and output pixels sample the 2x grid on its own points."""
    x = _images()
    y = ada.warp(x, torch.eye(3).expand(2, 3, 3))
    torch.testing.assert_close(y, x, rtol=0, atol=2e-5)


def test_forced_integer_translation_shifts_pixels_with_reflection(force_uniform):
    x = _images()
    force_uniform(0.75)  # t = (2 * 0.75 - 1) * 0.125 of 16 px = +1 px right and down
    want = F.pad(x, [1, 0, 1, 0], mode="reflect")[:, :, :16, :16]
    torch.testing.assert_close(_forced_warp(x, "xint"), want, rtol=0, atol=2e-5)
    force_uniform(0.25)  # -1 px
    want = F.pad(x, [0, 1, 0, 1], mode="reflect")[:, :, 1:, 1:]
    torch.testing.assert_close(_forced_warp(x, "xint"), want, rtol=0, atol=2e-5)


@pytest.mark.parametrize(
    ("op", "u", "matrix", "exact"),
    [
        ("xflip", 0.75, [[-1, 0, 0], [0, 1, 0], [0, 0, 1]], lambda x: x.flip(3)),
        ("rotate90", 0.3, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], lambda x: torch.rot90(x, 1, dims=(2, 3))),
    ],
)
def test_forced_flip_and_quarter_turn(force_uniform, op, u, matrix, exact):
    """The forced draw gives exactly the mirror / quarter-turn matrix, and the images NVIDIA's
    AugmentPipe gives for it (golden). Like NVIDIA's, they are not pixel-exact mirrors: the
    asymmetric sym6 filter, mirrored by the warp, no longer inverts the downsampling filter (a
    smooth ramp moves by ~0.1 px); they stay close to the exact blit on smooth images."""
    force_uniform(u)
    m = ada.sample_geometry(2, (op,), 1.0, (16, 16), torch.device("cpu"))
    torch.testing.assert_close(m, torch.tensor(matrix, dtype=torch.float32).expand(2, 3, 3), rtol=0, atol=1e-6)
    ref = load_file(str(REF / "ada_golden.safetensors"))
    torch.testing.assert_close(_forced_warp(golden.images(3), op), ref[op], rtol=0, atol=2e-5)
    ramp = torch.linspace(-1, 1, 16)[None, None, :, None] * torch.linspace(0.5, 1, 16)[None, None, None, :]
    ramp = ramp.expand(2, 3, 16, 16)
    assert (_forced_warp(ramp, op) - exact(ramp)).abs().max() < 0.03


def test_the_two_rotations_share_p(force_uniform):
    """Each of the two rotations happens with 1 - sqrt(1 - p), so that at least one does with p."""
    p = 0.5
    p_rot = 1 - math.sqrt(1 - p)
    force_uniform((p_rot + p) / 2)  # between the two: no rotation
    m = ada.sample_geometry(2, ("rotate",), p, (16, 16), torch.device("cpu"))
    torch.testing.assert_close(m, torch.eye(3).expand(2, 3, 3))
    force_uniform(0.25)  # below both: two rotations by (2 * 0.25 - 1) * pi, a half turn in all
    m = ada.sample_geometry(2, ("rotate",), p, (16, 16), torch.device("cpu"))
    torch.testing.assert_close(m, torch.diag(torch.tensor([-1.0, -1.0, 1.0])).expand(2, 3, 3), rtol=0, atol=1e-6)


def test_golden_images_match_nvidias_augment_pipe():
    """Whole pipelines at a fixed seed: the same random draws, in NVIDIA's order and distributions."""
    ref = load_file(str(REF / "ada_golden.safetensors"))
    for name in golden.PIPELINE_CASES:
        torch.testing.assert_close(golden.pipeline_output(name), ref[name], rtol=0, atol=2e-5, msg=name)


def test_brightness_adds_a_constant(monkeypatch):
    monkeypatch.setattr(ada, "_normal", lambda shape, device: torch.full(shape, 1.5, device=device))
    x = _images()
    m = ada.sample_colour(2, ("brightness",), 1.0, 3, x.device)
    torch.testing.assert_close(ada.recolour(x, m), x + 1.5 * ada.BRIGHTNESS_STD)


def test_luma_flip_is_an_involution_that_negates_luma(force_uniform):
    force_uniform(0.75)
    x = _images()
    m = ada.sample_colour(2, ("lumaflip",), 1.0, 3, x.device)
    y = ada.recolour(x, m)
    torch.testing.assert_close(y.mean(dim=1), -x.mean(dim=1), rtol=0, atol=1e-6)
    torch.testing.assert_close(y - y.mean(dim=1, keepdim=True), x - x.mean(dim=1, keepdim=True), rtol=0, atol=1e-6)
    torch.testing.assert_close(ada.recolour(y, m), x, rtol=0, atol=1e-6)


def test_hue_rotation_turns_about_grey():
    x = _images()
    full = ada.hue_rotation(torch.tensor([2 * math.pi, 0.0]))
    torch.testing.assert_close(ada.recolour(x, full), x, rtol=0, atol=1e-5)
    # a third of a turn about (1, 1, 1) moves red to green, green to blue, blue to red
    third = ada.hue_rotation(torch.tensor([2 * math.pi / 3] * 2))
    torch.testing.assert_close(ada.recolour(x, third), x[:, [2, 0, 1]], rtol=0, atol=1e-5)


def test_saturation_one_is_the_identity(monkeypatch):
    monkeypatch.setattr(ada, "_normal", lambda shape, device: torch.zeros(shape, device=device))
    x = _images()
    m = ada.sample_colour(2, ("saturation",), 1.0, 3, x.device)
    torch.testing.assert_close(m, torch.eye(4).expand(2, 4, 4), rtol=0, atol=0)
    torch.testing.assert_close(ada.recolour(x, m), x, rtol=0, atol=1e-6)


def test_augmented_images_are_differentiable_in_float32_and_under_autocast():
    pipe = ada.AugmentPipe()
    x = _images().requires_grad_(True)
    torch.manual_seed(1)
    y = pipe(x, 0.9)
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()
    # autocast does not reach inside: the same float32 images, and gradients (backward outside
    # autocast, as the loop runs it)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z = pipe(x, 0.9)
    (grad_amp,) = torch.autograd.grad(z.square().sum(), x)
    assert z.dtype == torch.float32
    torch.testing.assert_close(z, y)
    torch.testing.assert_close(grad_amp, grad)
    torch.manual_seed(1)
    assert pipe(x.detach().bfloat16(), 0.9).dtype == torch.bfloat16


def test_adjust_p_moves_by_batch_times_interval_over_500_kimg():
    step = 32 * 4 / 500_000
    assert ada.adjust_p(0.1, 0.8, 0.6, batch=32) == pytest.approx(0.1 + step, abs=1e-15)
    assert ada.adjust_p(0.1, 0.4, 0.6, batch=32) == pytest.approx(0.1 - step, abs=1e-15)
    assert ada.adjust_p(0.1, 0.6, 0.6, batch=32) == 0.1
    assert ada.adjust_p(step / 2, 0.0, 0.6, batch=32) == 0.0
    assert ada.adjust_p(0.0, -1.0, 0.6, batch=64, interval=8, kimg=100) == 0.0
    assert ada.adjust_p(0.5, 1.0, 0.6, batch=64, interval=8, kimg=100) == pytest.approx(0.5 + 64 * 8 / 100_000)


@needs_nvidia
@pytest.mark.parametrize("pipeline", sorted(ada.PIPELINES))
@pytest.mark.parametrize("p", [0.2, 0.8])
def test_matches_nvidias_augment_pipe(pipeline, p):
    sys.path.insert(0, NVIDIA_SRC)
    try:
        from training.augment import AugmentPipe  # noqa: PLC0415 (NVIDIA's code, from GANCRAFT_NVIDIA_SRC)
    finally:
        sys.path.remove(NVIDIA_SRC)
    theirs = AugmentPipe(**{op: 1 for op in ada.PIPELINES[pipeline]})
    theirs.p.fill_(p)
    for channels in (3, 1):
        x = _images(8, channels, 32)
        torch.manual_seed(3)
        want = theirs(x)
        torch.manual_seed(3)
        torch.testing.assert_close(ada.AugmentPipe(pipeline)(x, p), want, rtol=0, atol=5e-5)


# -- the loop -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return write_dataset("face", 16, seed=0, resolution=16, out_dir=tmp_path_factory.mktemp("faces") / "face")


def _method(faces: Path) -> ScratchMethod:
    g, d = tiny_configs(16)
    return ScratchMethod(ImageFolderData(faces, 16), g, d)


def _opts(steps: int, snap_steps: int, **kw) -> TrainOptions:
    return TrainOptions(kimg=steps * 4 / 1000, batch=4, snap_kimg=snap_steps * 4 / 1000, seed=3, **kw)


class _Recorder:
    """The trainer's pipeline, keeping what each call got and gave."""

    def __init__(self, pipe: ada.AugmentPipe):
        self.pipe, self.calls = pipe, []

    def __call__(self, images: torch.Tensor, p: float) -> torch.Tensor:
        out = self.pipe(images, p)
        grad = None
        if images.requires_grad:  # before the loop's backward frees the graph
            (grad,) = torch.autograd.grad(out.sum(), images, retain_graph=True)
        self.calls.append((images, out.detach(), grad))
        return out


def test_every_discriminator_phase_augments_and_r1_differentiates_the_plain_reals(faces, tmp_path):
    opts = _opts(1, 1, aug="fixed", aug_p=1.0, r1_interval=1, gamma=1.0, pl_weight=0)
    trainer = run_training(_method(faces), opts, tmp_path / "run", progress=False, max_steps=0)
    trainer.augment = _Recorder(trainer.augment)
    stats = trainer.train_step()
    calls = trainer.augment.calls
    assert len(calls) in (3, 4)  # G main, D main (fakes and reals in one pass or two), R1
    g_in, _, g_grad = calls[0]
    assert g_in.grad_fn is not None and g_grad.abs().sum() > 0  # G's images, on G's graph
    r1_in, r1_out, r1_grad = calls[-1]
    real, _ = trainer.method.data.batch(4, opts.seed, 0, 0, 1, torch.device("cpu"))
    assert r1_in.is_leaf and r1_in.requires_grad and torch.equal(r1_in, real)
    assert not torch.allclose(r1_out, real, atol=1e-3)  # D saw augmented reals
    assert r1_grad.abs().sum() > 0  # R1's gradient runs through the augmentation to the plain reals
    assert stats["augment"] == 1.0 and "r1" in stats


def test_ada_moves_p_from_the_signs_of_real_logits_in_both_phases(faces, tmp_path):
    """Every 4 steps, from the reals of D main and of R1 since the last move (as NVIDIA counts)."""
    opts = _opts(8, 8, aug="ada", aug_p=0.3, ada_target=0.5, r1_interval=2, pl_weight=0)
    trainer = run_training(_method(faces), opts, tmp_path / "run", progress=False, max_steps=0)
    seen = []
    observe = trainer._observe_reals
    trainer._observe_reals = lambda logits: (seen.append(logits.sign().sum().item()), observe(logits))
    p = 0.3
    for step in range(1, 9):
        trainer.train_step()
        if step % 4 == 0:
            assert len(seen) == 4 + 2  # four D main batches, two R1 batches
            p = max(0.0, p + math.copysign(4 * 4 / 500_000, sum(seen) / (6 * 4) - 0.5))
            seen.clear()
            assert trainer.ada_signs.tolist() == [0.0, 0.0]
        assert trainer.aug_p == pytest.approx(p, abs=1e-12)


def test_resume_with_ada_continues_p_and_matches_the_uninterrupted_run(faces, tmp_path):
    # target low: p rises at steps 4 and 8; snapshots at 3 and 6 fall between two moves
    kw = dict(r1_interval=2, aug="ada", aug_p=0.2, ada_target=0.01)
    full = run_training(_method(faces), _opts(9, 3, **kw), tmp_path / "a", progress=False)
    cut = run_training(_method(faces), _opts(9, 3, **kw), tmp_path / "b", progress=False, max_steps=6)
    assert cut.ada_signs[1] > 0  # signs of steps 4 and 5 wait for the move at step 8
    reloaded = run_training(_method(faces), TrainOptions(), tmp_path / "b", progress=False, resume=True, max_steps=6)
    assert reloaded.aug_p == cut.aug_p != 0.2
    assert torch.equal(reloaded.ada_signs, cut.ada_signs)
    resumed = run_training(_method(faces), TrainOptions(), tmp_path / "b", progress=False, resume=True)
    assert resumed.step == full.step == 9 and resumed.aug_p == full.aug_p == pytest.approx(0.2 + 2 * 16 / 500_000)
    a, b = full.checkpoint().tensors, resumed.checkpoint().tensors
    for k in a:
        assert torch.equal(a[k], b[k]), k
    logs = [[json.loads(line) for line in (tmp_path / r / "log.jsonl").read_text().splitlines()] for r in "ab"]
    assert [e["augment"] for e in logs[0]] == [e["augment"] for e in logs[1]]
    assert [e["step"] for e in logs[1]] == list(range(1, 10))


# -- the command line -----------------------------------------------------------------------------


def test_cli_records_aug_and_refuses_what_does_not_fit(faces, tmp_path):
    base = ["train", faces, "--resolution", "16", "--config", "tiny", "--kimg", "0.004", "--batch", "2", "--quiet"]
    out = tmp_path / "m.st"
    res = cli_invoke(*base, "-o", out, "--aug", "fixed", "--p", "0.5")
    assert res.exit_code == 0, res.output
    run = tmp_path / "m-run"
    options = json.loads((run / "run.json").read_text())["options"]
    assert (options["aug"], options["aug_p"], options["augpipe"]) == ("fixed", 0.5, "bgc")
    assert load(out).history[-1]["params"]["options"]["aug"] == "fixed"
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["augment"] == 0.5

    bad = tmp_path / "bad.st"
    for args, words in [
        (["--aug", "fixed", "--p", "0.5", "--diffaug", "color"], "--diffaug and --aug fixed"),
        (["--aug", "ada", "--diffaug", "color"], "--diffaug and --aug ada"),
        (["--p", "0.5"], "--p sets the probability of --aug fixed"),
        (["--aug", "ada", "--p", "0.5"], "--p sets the probability of --aug fixed"),
        (["--aug", "fixed"], "--aug fixed needs --p"),
        (["--aug", "fixed", "--p", "-0.1"], "--p '-0.1': must be at least 0 and at most 1"),
        (["--aug", "fixed", "--p", "1.5"], "--p '1.5'"),
        (["--aug", "ada", "--target", "1"], "--target '1': must be above 0 and below 1"),
        (["--aug", "ada", "--target", "0"], "--target '0'"),
        (["--target", "0.5"], "--target belongs to --aug ada"),
        (["--augpipe", "bg"], "--augpipe needs --aug ada or --aug fixed"),
    ]:
        assert words in cli_fails(*base, "-o", bad, *args), args
    assert not (tmp_path / "bad-run").exists()

    # a resumed run keeps its augmentation, as it keeps --diffaug
    line = cli_fails(*base, "-o", out, "--force", "--resume", run, "--aug", "ada")
    assert "aug: fixed in the run, ada now" in line
    line = cli_fails(*base, "-o", out, "--force", "--resume", run, "--aug", "fixed", "--p", "0.6")
    assert "aug_p: 0.5 in the run, 0.6 now" in line
    res = cli_invoke(*base, "--kimg", "0.008", "-o", out, "--force", "--resume", run, "--aug", "fixed", "--p", "0.5")
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["augment"] for line in (run / "log.jsonl").read_text().splitlines()] == [0.5] * 4
