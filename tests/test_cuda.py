"""The same paths as test_devices.py on a real GPU: skipped where CUDA is absent (run by
benchmarks/gpu_checks.sh on a GPU machine)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_devices import METHODS

from gancraft.latent.sefa import sefa
from gancraft.nets import Generator, GeneratorConfig
from gancraft.train.expansion import ExpansionTrainer
from gancraft.train.loop import Trainer, TrainOptions, run_training

from conftest import make_tiny_checkpoint

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = torch.device("cuda")


@pytest.mark.parametrize("batch", [1, 8])
def test_fp32_images_on_cuda_match_the_cpu(batch, tf32_on):
    cfg = GeneratorConfig(img_resolution=64, channel_base=4096, channel_max=128, z_dim=64, w_dim=64)
    torch.manual_seed(0)
    G = Generator(cfg).eval()
    z = torch.randn([batch, cfg.z_dim])
    with torch.no_grad():
        ref = G(z, truncation_psi=0.7)
        img = G.to(CUDA)(z.to(CUDA), truncation_psi=0.7).cpu()
    assert (img - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize("precision", ["mixed", "bf16"])
def test_reduced_precision_runs_on_cuda(precision):
    cfg = GeneratorConfig(img_resolution=64, channel_base=4096, channel_max=128, z_dim=64, w_dim=64, num_fp16_res=2)
    torch.manual_seed(0)
    G = Generator(cfg).eval()
    z = torch.randn([4, cfg.z_dim])
    with torch.no_grad():
        ref = G(z)
        img = G.to(CUDA)(z.to(CUDA), precision=precision).cpu()
    assert img.dtype == torch.float32 and (img - ref).abs().max().item() < 0.05 * ref.abs().max().item()


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_on_cuda_with_bf16_autocast(name, tmp_path: Path):
    method = METHODS[name](tmp_path)
    trainer_cls = ExpansionTrainer if name == "expand" else Trainer
    opts = TrainOptions(kimg=1, batch=4, snap_kimg=1, r1_interval=2, pl_interval=2)
    trainer = run_training(
        method, opts, tmp_path / "run", device="cuda", progress=False, max_steps=3, trainer_cls=trainer_cls
    )
    assert trainer.step == 3 and trainer.amp and trainer.device == torch.device("cuda", torch.cuda.current_device())
    assert not trainer.checkpoint().non_finite()


def test_sefa_on_cuda_matches_the_cpu():
    G = make_tiny_checkpoint(0).generator()
    ref = sefa(G, "all")
    got = sefa(G.to(CUDA), "all")
    torch.testing.assert_close(got.singular_values, ref.singular_values)
