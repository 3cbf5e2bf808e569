"""Shared tiny models: small enough that every test runs in well under a second on 2 cores."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from click.testing import CliRunner, Result

from gancraft import Checkpoint, save
from gancraft.cli.main import cli
from gancraft.nets import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig

import nvidia_pairs

# Tiny models gain nothing from a second thread, and on a busy 2-core machine two threads per
# process cost up to 4x in spin-waiting; subprocesses started by tests inherit this too.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def cli_invoke(*args, input: bytes | str | None = None) -> Result:
    """Run `gancraft ARGS...` in-process (arguments turned into strings), `input` on its stdin."""
    return CliRunner().invoke(cli, list(map(str, args)), input=input)


def cli_ok(*args) -> list[str]:
    """Run a command that must succeed; the words it printed on stdout (the paths it wrote)."""
    result = cli_invoke(*args)
    assert result.exit_code == 0, result.output
    return result.stdout.split()


def cli_fails(*args) -> str:
    """Run a command that must fail as a user mistake: exit code 2 and one line naming the command."""
    result = cli_invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gancraft {args[0]}: error: "), result.stderr
    return lines[0]


NVIDIA_SRC = os.environ.get("GANCRAFT_NVIDIA_SRC")


needs_nvidia = pytest.mark.skipif(
    not NVIDIA_SRC or nvidia_pairs.nvidia_networks_module(NVIDIA_SRC) is None,
    reason="NVIDIA reference code not present: set GANCRAFT_NVIDIA_SRC to a stylegan2-ada-pytorch or stylegan3 "
    "checkout (see benchmarks/nvidia_reference/README.md)",
)

# a rosinality/stylegan2-pytorch checkout; without one, tests use tests/reference/rosinality_model.py
ROSINALITY_SRC = os.environ.get("GANCRAFT_ROSINALITY_SRC")


@functools.cache
def load_rosinality_model() -> ModuleType:
    """model.py of the rosinality checkout in GANCRAFT_ROSINALITY_SRC.

    Its op/ package compiles CUDA kernels when imported; without CUDA that build is replaced by
    a placeholder, since on CPU tensors rosinality's ops take their plain PyTorch paths.
    """
    import torch.utils.cpp_extension as cpp_extension

    sys.path.insert(0, str(Path(ROSINALITY_SRC).resolve()))
    build = cpp_extension.load
    if not torch.cuda.is_available():
        cpp_extension.load = lambda *args, **kwargs: None
    try:
        return importlib.import_module("model")
    finally:
        cpp_extension.load = build
        sys.path.pop(0)


# torch hub's folder as the user has it: where `make weights` (gancraft weights) put the real
# networks. tests/test_real_weights.py reads them from here; every other test sees an empty hub.
REAL_HUB_DIR = torch.hub.get_dir()


@pytest.fixture(autouse=True, scope="session")
def _empty_torch_hub(tmp_path_factory):
    """Point torch hub at an empty folder, so that tests behave the same whether or not real
    networks are in the user's cache (commands fall back to other metrics without them).

    torch.hub.get_dir() reads TORCH_HOME on every call; subprocesses inherit it.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch-home")))
        yield


@pytest.fixture(autouse=True, scope="session")
def _private_hash_cache(tmp_path_factory):
    """Point file_digest's cache at a temporary folder, so tests never touch ~/.cache.

    Session-scoped so it is in place before any module fixture runs; subprocesses inherit it.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GANCRAFT_CACHE_DIR", str(tmp_path_factory.mktemp("gancraft-cache")))
        yield


def tiny_configs(resolution: int = 16, c_dim: int = 0, w_dim: int = 32) -> tuple[GeneratorConfig, DiscriminatorConfig]:
    g = GeneratorConfig(
        z_dim=w_dim,
        w_dim=w_dim,
        c_dim=c_dim,
        img_resolution=resolution,
        channel_base=16 * resolution,
        channel_max=32,
        mapping_layers=2,
    )
    d = DiscriminatorConfig(
        c_dim=c_dim, img_resolution=resolution, channel_base=16 * resolution, channel_max=32, mapping_layers=2
    )
    return g, d


def make_tiny_checkpoint(
    seed: int = 0, resolution: int = 16, c_dim: int = 0, with_d: bool = True, domains: dict | None = None
) -> Checkpoint:
    """Random tiny StyleGAN2 with non-trivial noise strengths and w_avg, so no term is silently zero."""
    torch.manual_seed(seed)
    g_cfg, d_cfg = tiny_configs(resolution, c_dim)
    G = Generator(g_cfg)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
        G.mapping.w_avg.normal_()
    D = Discriminator(d_cfg) if with_d else None
    return Checkpoint.from_modules(G_ema=G, G=G, D=D, domains=domains or {})


@pytest.fixture
def tiny_ckpt() -> Checkpoint:
    return make_tiny_checkpoint()


@pytest.fixture
def tiny_ckpt_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.st"
    save(make_tiny_checkpoint(), path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny unconditional checkpoint file shared by a test module."""
    path = tmp_path_factory.mktemp("ck") / "tiny.st"
    save(make_tiny_checkpoint(), path)
    return path


@pytest.fixture(scope="module")
def union(tmp_path_factory) -> Path:
    """A tiny two-domain (cat, dog) class-conditional checkpoint file shared by a test module."""
    path = tmp_path_factory.mktemp("ck") / "union.st"
    save(
        make_tiny_checkpoint(
            c_dim=2, domains={"cat": {"kind": "class", "class": 0}, "dog": {"kind": "class", "class": 1}}
        ),
        path,
    )
    return path


@pytest.fixture
def tf32_on():
    """TF32 switched on for matmul and cuDNN (cuDNN's default, as a user's process may have it),
    which gancraft's exact fp32 must override by itself; restored afterwards."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = True
    yield
    matmul.allow_tf32, cudnn.allow_tf32 = saved
