"""Path-length regularisation: lengths against an explicit Jacobian, the loss and its gradients
against NVIDIA's own StyleGAN2Loss on the same networks and batch, and where the loop applies it."""

from __future__ import annotations

import inspect
import math
import sys
from pathlib import Path

import pytest
import torch

from gancraft.toy import write_dataset
from gancraft.train.data import ImageFolderData
from gancraft.train.loop import TrainOptions, run_training
from gancraft.train.methods import ScratchMethod

from conftest import NVIDIA_SRC, needs_nvidia, tiny_configs


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return write_dataset("face", 8, seed=0, resolution=16, out_dir=tmp_path_factory.mktemp("faces") / "face")


def _trainer(faces: Path, tmp_path: Path, **kw):
    g, d = tiny_configs(16, w_dim=8)
    opts = TrainOptions(kimg=0.004, batch=4, snap_kimg=1, seed=1, style_mixing=0, **kw)
    return run_training(
        ScratchMethod(ImageFolderData(faces, 16), g, d), opts, tmp_path / "run", progress=False, max_steps=0
    )


def _batch(trainer, n: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    ws = trainer.G.mapping(torch.randn([n, trainer.G.z_dim], generator=gen)).detach().requires_grad_(True)
    img = trainer.G.synthesis(ws, noise_mode="const")
    noise = torch.randn(img.shape, generator=gen)
    return ws, img, noise


def test_lengths_equal_explicit_jacobian(faces, tmp_path):
    """|J_w^T y| / sqrt(num_ws) per sample, with J from torch.autograd.functional.jacobian."""
    trainer = _trainer(faces, tmp_path)
    ws, img, noise = _batch(trainer)
    y = noise / math.sqrt(img.shape[2] * img.shape[3])
    expected = []
    for i in range(ws.shape[0]):

        def one(w, i=i):
            return trainer.G.synthesis(w[None], noise_mode="const")[0]

        jac = torch.autograd.functional.jacobian(one, ws[i].detach())  # C,H,W,num_ws,w_dim
        jty = torch.einsum("chw,chwkd->kd", y[i], jac)
        expected.append(jty.square().sum(1).mean().sqrt())
    expected = torch.stack(expected)

    trainer.pl_mean.fill_(0.3)
    loss = trainer.path_length_loss(img, ws, noise)
    mean = 0.3 + 0.01 * (expected.mean() - 0.3)
    assert torch.allclose(trainer.pl_mean, mean, rtol=1e-5)
    assert torch.allclose(loss, 2.0 * (expected - mean).square().mean(), rtol=1e-4)


def _nvidia_loss_module():
    sys.path.insert(0, NVIDIA_SRC)
    try:
        from training import loss as nv_loss  # noqa: PLC0415 (NVIDIA's code, from GANCRAFT_NVIDIA_SRC)
    finally:
        sys.path.remove(NVIDIA_SRC)
    return nv_loss


def _nvidia_greg(nv_loss, G, z: torch.Tensor, noise: torch.Tensor, pl_mean: float) -> torch.Tensor:
    """Run NVIDIA's 'Greg' phase (gain 4) on gancraft's G; NVIDIA's pl_mean after it.

    stylegan3's StyleGAN2Loss takes G (its mapping and synthesis get update_emas); the
    stylegan2-ada-pytorch one takes G_mapping and G_synthesis (mapping gets skip_w_avg_update).
    Constant synthesis noise on both sides; the penalty's noise is `noise` (randn_like is stood in).
    """

    class Mapping(torch.nn.Module):
        def forward(self, z, c, update_emas=False, skip_w_avg_update=True):
            return G.mapping(z, c, update_w_avg=update_emas or not skip_w_avg_update)

    class Synthesis(torch.nn.Module):
        def forward(self, ws, update_emas=False):
            return G.synthesis(ws, noise_mode="const")

    class Both(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mapping, self.synthesis = Mapping(), Synthesis()

    kw = dict(style_mixing_prob=0, pl_weight=2, pl_batch_shrink=2, pl_decay=0.01)
    c = torch.zeros([z.shape[0], 0])
    if "G_mapping" in inspect.signature(nv_loss.StyleGAN2Loss).parameters:
        loss = nv_loss.StyleGAN2Loss("cpu", Mapping(), Synthesis(), D=None, **kw)
        call = dict(sync=True, gain=4)
    else:
        loss = nv_loss.StyleGAN2Loss("cpu", Both(), D=None, **kw)
        call = dict(gain=4, cur_nimg=0)
    loss.pl_mean.fill_(pl_mean)
    real_randn_like = torch.randn_like
    torch.randn_like = lambda t, **k: noise.clone() if t.shape == noise.shape else real_randn_like(t, **k)
    try:
        loss.accumulate_gradients("Greg", None, None, z, c, **call)
    finally:
        torch.randn_like = real_randn_like
    return loss.pl_mean


@needs_nvidia
def test_loss_and_gradients_match_nvidia(faces, tmp_path):
    """NVIDIA's 'Greg' phase and gancraft's path-length step give the same running mean and G
    gradients from the same networks, latents and noise."""
    nv_loss = _nvidia_loss_module()
    trainer = _trainer(faces, tmp_path)
    G = trainer.G
    torch.manual_seed(0)
    with torch.no_grad():  # away from the zero-bias start, so every parameter's gradient matters
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    z = torch.randn([4, G.z_dim])
    noise = torch.randn([2, 3, 16, 16])
    for p in G.parameters():
        p.grad = None
    nv_mean = _nvidia_greg(nv_loss, G, z, noise, pl_mean=0.25)
    nv_grads = {n: p.grad.clone() for n, p in G.named_parameters() if p.grad is not None}

    for p in G.parameters():
        p.grad = None
    trainer.pl_mean.fill_(0.25)
    ws = G.mapping(z[:2])
    img = G.synthesis(ws, noise_mode="const")
    trainer.path_length_loss(img, ws, noise).mul(4).backward()
    ours = {n: p.grad for n, p in G.named_parameters() if p.grad is not None}

    assert torch.allclose(trainer.pl_mean, nv_mean, rtol=1e-6)
    # stylegan2-ada-pytorch adds `gen_img * 0` to the penalty, giving every toRGB bias a zero gradient
    nv_grads = {n: g for n, g in nv_grads.items() if n in ours or g.any()}
    assert set(ours) == set(nv_grads) and len(ours) > 10
    for n in ours:
        assert torch.allclose(ours[n], nv_grads[n], rtol=1e-4, atol=1e-7), n


def test_loop_applies_it_lazily_and_resumes_its_mean(faces, tmp_path):
    trainer = _trainer(faces, tmp_path, pl_interval=2)
    assert trainer.use_pl
    # G's Adam corrected for the lazy interval, as NVIDIA does: c = 2/3
    group = trainer.opt_g.param_groups[0]
    assert group["lr"] == pytest.approx(0.002 * 2 / 3) and group["betas"][1] == pytest.approx(0.99 ** (2 / 3))
    logged = [trainer.train_step() for _ in range(3)]
    assert ["pl_penalty" in s for s in logged] == [True, False, True]
    assert float(trainer.pl_mean) > 0
    snap = trainer.save_snapshot()
    mean = float(trainer.pl_mean)
    again = _trainer(faces, tmp_path / "b", pl_interval=2)
    again.load_snapshot(snap, snap.with_name(snap.name.replace("snapshot", "state").replace(".st", ".pt")))
    assert float(again.pl_mean) == mean


def test_off_when_weight_is_zero_or_synthesis_frozen(faces, tmp_path):
    off = _trainer(faces, tmp_path / "a", pl_weight=0)
    assert not off.use_pl and off.opt_g.param_groups[0]["lr"] == pytest.approx(0.002)
    assert all("pl_penalty" not in off.train_step() for _ in range(2))


@pytest.mark.parametrize("bad", [float("nan"), -1.0, float("inf")])
def test_bad_weight_rejected(bad):
    from gancraft.errors import GancraftError

    with pytest.raises(GancraftError, match="--pl-weight"):
        TrainOptions(pl_weight=bad).validate(1)
