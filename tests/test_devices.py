"""GPU and Apple code paths checked on the CPU.

No test machine has a GPU, so each path is driven the way it would run there: the meta device
stands in for an accelerator (tensors with shapes and devices but no data; mixing it with CPU
tensors fails exactly where CUDA would), torch.cuda is mocked where only its bookkeeping
matters, CPU bfloat16 autocast reproduces CUDA's, and a dispatch mode makes the meta device
behave like MPS, which has no float64.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from gancraft import distributed as dist_util
from gancraft import save
from gancraft.cli.common import resolve_device
from gancraft.errors import GancraftError
from gancraft.latent.sefa import sefa
from gancraft.latent.subspace import choose_directions, expansion_table
from gancraft.metrics.fid import _as_float64
from gancraft.nets import Generator, ops
from gancraft.train.data import GeneratedData, ImageFolderData
from gancraft.train.expansion import ExpansionMethod, ExpansionTrainer, parse_task
from gancraft.train.loop import Trainer, TrainingDiverged, TrainOptions, run_training
from gancraft.train.methods import (
    DomainVectorMethod,
    EWCMethod,
    FreezeDMethod,
    RootingMethod,
    ScratchMethod,
    UnionMethod,
)

from conftest import cli_ok, make_tiny_checkpoint, tiny_configs

META = torch.device("meta")


# -- devices are resolved once, validated, and CUDA ones carry an index ------------------------


def test_resolve_device_checks_what_this_machine_has(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(GancraftError, match="has 2 CUDA device"):
        resolve_device("cuda:7")
    with pytest.raises(GancraftError, match="MPS is not available"):
        resolve_device("mps")
    with pytest.raises(GancraftError, match="expected cpu, cuda, cuda:N or mps"):
        resolve_device("meta")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("mps") == torch.device("mps")


def test_each_process_gets_an_indexed_cuda_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    one = dist_util.DistInfo()
    assert dist_util.device_for(one, torch.device("cuda")) == torch.device("cuda", 3)
    assert dist_util.device_for(one, torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert dist_util.device_for(one, torch.device("cpu")) == torch.device("cpu")
    rank1 = dist_util.DistInfo(rank=1, world=2, local_rank=1)
    assert dist_util.device_for(rank1, torch.device("cuda")) == torch.device("cuda", 1)
    with pytest.raises(GancraftError, match="every process would use that one GPU"):
        dist_util.device_for(rank1, torch.device("cuda", 0))


class _Stop(Exception):
    pass


def test_training_on_plain_cuda_selects_an_indexed_device(monkeypatch, tmp_path: Path):
    """torch.cuda.set_device refuses a device without an index: run_training must give it one."""
    chosen = []

    def set_device(device):
        chosen.append(device)
        raise _Stop  # nothing beyond this point can run without a GPU

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    g, d = tiny_configs()
    method = ScratchMethod(GeneratedData([Generator(g)], 16), g, d)
    with pytest.raises(_Stop):
        run_training(method, TrainOptions(batch=2), tmp_path / "run", device=torch.device("cuda"), progress=False)
    assert chosen == [torch.device("cuda", 0)]


# -- every method and data source puts its tensors on the training device ----------------------


def _image_folder(path: Path, n: int = 4) -> Path:
    path.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path / f"{i}.png")
    return path


def _expansion(tmp_path: Path) -> ExpansionMethod:
    parent = make_tiny_checkpoint(0)
    child = tmp_path / "child.st"
    save(make_tiny_checkpoint(1), child)
    dirs = sefa(parent.generator(), "first").directions
    table = expansion_table(["kid"], dirs, choose_directions(dirs.shape[0], 1), 20.0)
    return ExpansionMethod(parent, [parse_task(f"kid:model:{child}")], table)


METHODS = {
    "scratch-images": lambda tmp: ScratchMethod(ImageFolderData(_image_folder(tmp / "imgs"), 16), *tiny_configs()),
    "scratch-generated": lambda tmp: ScratchMethod(
        GeneratedData([make_tiny_checkpoint(1).generator()], 16), *tiny_configs()
    ),
    "root": lambda tmp: RootingMethod(make_tiny_checkpoint(0), make_tiny_checkpoint(1), ["a", "b"], "b"),
    "union": lambda tmp: UnionMethod(
        make_tiny_checkpoint(0), {"a": make_tiny_checkpoint(1), "b": make_tiny_checkpoint(2)}
    ),
    "freeze-d": lambda tmp: FreezeDMethod(make_tiny_checkpoint(0), {"a": make_tiny_checkpoint(1)}, value=2),
    "ewc": lambda tmp: EWCMethod(
        make_tiny_checkpoint(0),
        {"a": make_tiny_checkpoint(1)},
        value=1.0,
        fisher_samples=4,
        fisher_batch=2,
    ),
    "domain-vector": lambda tmp: DomainVectorMethod(
        make_tiny_checkpoint(0), {"a": make_tiny_checkpoint(1), "b": make_tiny_checkpoint(2)}
    ),
    "expand": _expansion,
}


@pytest.mark.parametrize("name", list(METHODS))
def test_training_step_keeps_every_tensor_on_the_device(name, monkeypatch, tmp_path: Path):
    """One full step (G, path length, D, R1, EMA) with the networks on the meta device: any source
    model, data batch, label or buffer left on the CPU fails as it would on a GPU."""
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda t: 0.0 if t.is_meta else item(t))  # meta has no values
    method = METHODS[name](tmp_path)
    trainer_cls = ExpansionTrainer if name == "expand" else Trainer
    trainer = trainer_cls(method, TrainOptions(batch=4), tmp_path / "run", META, dist_util.DistInfo())
    method.setup(trainer.G, trainer.D, META)
    # nonzero's size depends on values: on meta every element counts (expansion splits its batch so)
    with torch.fx.experimental._config.patch(meta_nonzero_assume_all_nonzero=True):
        trainer.train_step()
    assert trainer.step == 1
    tensors = [*trainer.G.parameters(), *trainer.D.parameters(), *trainer.G_ema.parameters(), *trainer.G.buffers()]
    assert all(t.is_meta for t in tensors)


# -- mixed precision: the training step under bfloat16 autocast ---------------------------------


def test_mapping_stays_float32_under_autocast():
    g, _ = tiny_configs()
    G = Generator(g)
    z = torch.randn([4, g.z_dim])
    before = G.mapping.w_avg.clone()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ws = G.mapping(z, None, update_w_avg=True)
        truncated = G.mapping(z, None, truncation_psi=0.5)
    assert ws.dtype == truncated.dtype == G.mapping.w_avg.dtype == torch.float32
    assert not torch.equal(G.mapping.w_avg, before)
    torch.testing.assert_close(ws, G.mapping(z, None))  # the same float32 arithmetic as without autocast


class _CpuAmpTrainer(Trainer):
    """The loop's trainer with its CUDA-only bfloat16 autocast switched on for the CPU."""

    tf32_seen: list[tuple[bool, bool]] = []
    autocast_seen: list[bool] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.amp = True

    def train_step(self):
        self.tf32_seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32))
        return super().train_step()

    def _d(self, img, labels):
        self.autocast_seen.append(torch.is_autocast_enabled("cpu"))
        return super()._d(img, labels)


def test_training_steps_under_bf16_autocast_with_tf32_off(tf32_on, tmp_path: Path):
    _CpuAmpTrainer.tf32_seen, _CpuAmpTrainer.autocast_seen = [], []
    g, d = tiny_configs()
    method = ScratchMethod(GeneratedData([make_tiny_checkpoint(1).generator()], 16), g, d)
    opts = TrainOptions(kimg=1, batch=4, snap_kimg=1, r1_interval=1, pl_interval=1)
    trainer = run_training(method, opts, tmp_path / "run", progress=False, max_steps=2, trainer_cls=_CpuAmpTrainer)
    assert trainer.step == 2 and any(_CpuAmpTrainer.autocast_seen)
    assert not torch.equal(trainer.G.mapping.w_avg, torch.zeros_like(trainer.G.mapping.w_avg))
    # NVIDIA trains in true float32 where autocast does not reach; the caller's settings come back
    assert _CpuAmpTrainer.tf32_seen == [(False, False)] * 2
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


# -- fp32 synthesis is exact: TF32 off while it runs ---------------------------------------------


def _record_convs(monkeypatch) -> list[dict]:
    calls = []
    conv = ops.modulated_conv2d

    def spy(x, *args, **kwargs):
        calls.append(
            {
                "fused": kwargs.get("fused"),
                "channels_last": x.dim() == 4
                and x.shape[1] > 1
                and x.is_contiguous(memory_format=torch.channels_last)
                and not x.is_contiguous(),
                "tf32": (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32),
            }
        )
        return conv(x, *args, **kwargs)

    monkeypatch.setattr(ops, "modulated_conv2d", spy)
    return calls


@pytest.mark.parametrize("precision, tf32_inside", [("fp32", (False, False)), ("mixed", (True, True))])
def test_fp32_synthesis_turns_tf32_off_and_restores_it(precision, tf32_inside, tf32_on, monkeypatch):
    calls = _record_convs(monkeypatch)
    g, _ = tiny_configs()
    Generator(g).eval()(torch.randn([2, g.z_dim]), precision=precision)
    assert calls and all(c["tf32"] == tf32_inside for c in calls)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


# -- fast paths follow the device type (MPS is an accelerator, not a CPU) ------------------------


def test_inference_fast_path_is_chosen_by_device_type(monkeypatch):
    calls = _record_convs(monkeypatch)
    g, _ = tiny_configs()
    G = Generator(g).eval()
    G(torch.randn([2, g.z_dim]))
    assert not any(c["fused"] for c in calls) and any(c["channels_last"] for c in calls)  # CPU: oneDNN's path
    calls.clear()
    G.to(META)(torch.randn([2, g.z_dim], device=META))
    assert all(c["fused"] for c in calls) and not any(c["channels_last"] for c in calls)  # accelerator: NVIDIA's


# -- MPS has no float64: conversions happen after the copy to the CPU ---------------------------


class _MetaAsMps(TorchDispatchMode):
    """The meta device playing Apple's MPS: a float64 result on it fails, and so does a copy to the
    CPU that converts on the way; a plain copy to the CPU gives random values (meta has none)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        src = args[0] if args else None
        if (
            func is torch.ops.aten._to_copy.default
            and src.is_meta
            and torch.device(kwargs.get("device", src.device)).type == "cpu"
        ):
            dtype = kwargs.get("dtype") or src.dtype
            assert dtype == src.dtype, f"converted to {dtype} on the device while copying to the CPU"
            if dtype.is_floating_point:
                return torch.randn(src.shape, dtype=dtype)
            return torch.zeros(src.shape, dtype=dtype)
        out = func(*args, **kwargs)
        bad = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_meta and t.dtype == torch.float64]
        assert not bad, f"{func} made a float64 tensor on the device"
        return out


def test_sefa_converts_to_float64_on_the_cpu():
    G = make_tiny_checkpoint(0).generator().to(META)
    with _MetaAsMps():
        result = sefa(G, "all")
    assert result.directions.device.type == "cpu" and torch.isfinite(result.directions).all()


def test_direction_converts_to_float64_on_the_cpu(monkeypatch, tmp_path: Path):
    ckpt = tmp_path / "g.st"
    save(make_tiny_checkpoint(0), ckpt)
    labels = tmp_path / "labels.csv"
    labels.write_text("seed,y\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    monkeypatch.setattr("gancraft.cli.direction.resolve_device", lambda name: META)
    with _MetaAsMps():
        out = cli_ok("direction", ckpt, "--seeds", "0-19", "--labels", labels, "-o", tmp_path / "d.st")
    assert out == [str(tmp_path / "d.st")]


def test_fid_statistics_convert_to_float64_on_the_cpu():
    with _MetaAsMps():
        arr = _as_float64(torch.ones([3, 5], device=META))
    assert arr.dtype == np.float64 and arr.shape == (3, 5)


# -- torchrun: a divergence seen on rank 0 stops every rank -------------------------------------


@pytest.mark.parametrize("rank", [0, 1])
def test_non_finite_weights_stop_every_rank(rank, monkeypatch, tmp_path: Path):
    """Rank 0 checks the weights and shares the verdict: no rank waits at a barrier for a rank that
    has stopped, and no rank writes a snapshot of broken weights."""
    flags = []

    def any_flag(flag, info, device):
        flags.append(flag)
        return True  # rank 0 found a NaN

    monkeypatch.setattr(dist_util, "any_flag", any_flag)
    g, d = tiny_configs()
    method = ScratchMethod(GeneratedData([Generator(g)], 16), g, d)
    info = dist_util.DistInfo(rank=rank, world=2, local_rank=rank)
    trainer = Trainer(method, TrainOptions(batch=4), tmp_path, torch.device("cpu"), info)
    if rank == 0:
        with torch.no_grad():
            trainer.G.synthesis.b16.conv1.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(TrainingDiverged, match="non-finite"):
        trainer.save_snapshot()
    assert flags == [rank == 0]
    assert not list(tmp_path.glob("snapshot-*"))
