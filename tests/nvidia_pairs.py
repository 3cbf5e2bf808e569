"""gancraft's generator paired with NVIDIA's own (stylegan2-ada-pytorch or stylegan3 checkout) on the
same weights: the reference tests and benchmarks/bench_vs_nvidia.py both compare through these.

NVIDIA's code is not part of gancraft: the checkout's folder is put on sys.path when asked for
(see benchmarks/nvidia_reference/README.md).
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

import torch

from gancraft.nets import Generator, GeneratorConfig
from gancraft.nets.ops import exact_fp32

TOLERANCE = 1e-4
MIXED_REL_TOLERANCE = 5e-3


# the StyleGAN2 networks module in each NVIDIA repository
NVIDIA_NETWORK_MODULES = {"stylegan3": "training.networks_stylegan2", "stylegan2-ada-pytorch": "training.networks"}


def nvidia_networks_module(src: str | Path) -> str | None:
    """The import path of the StyleGAN2 networks in an NVIDIA checkout, or None when it is neither kind."""
    for module in NVIDIA_NETWORK_MODULES.values():
        if (Path(src).expanduser() / (module.replace(".", "/") + ".py")).is_file():
            return module
    return None


def load_nvidia(src: str | Path) -> dict[str, Any]:
    """Import NVIDIA's generator modules from a checkout folder (added to sys.path)."""
    src = Path(src).expanduser().resolve()
    module = nvidia_networks_module(src)
    if module is None:
        raise SystemExit(
            f"--nvidia-src {src}: neither training/networks_stylegan2.py (stylegan3) nor "
            "training/networks.py (stylegan2-ada-pytorch) there "
            "(see benchmarks/nvidia_reference/README.md)"
        )
    if str(src) not in sys.path:
        sys.path.insert(0, str(src))
    return {
        "networks": importlib.import_module(module),
        "upfirdn2d": importlib.import_module("torch_utils.ops.upfirdn2d"),
        "bias_act": importlib.import_module("torch_utils.ops.bias_act"),
    }


def nvidia_forward_with_fp16_off_cuda(networks: Any) -> Callable:
    """NVIDIA's SynthesisBlock.forward with its "float16 only on CUDA" condition removed and nothing
    else changed, so that its float16 blocks can be compared with gancraft's on a CPU.

    stylegan3's code has that condition; stylegan2-ada-pytorch's runs float16 on any device, so
    its forward is returned unchanged."""
    cls = networks.SynthesisBlock
    if networks.__name__ == NVIDIA_NETWORK_MODULES["stylegan2-ada-pytorch"]:
        return cls.forward
    source = textwrap.dedent(inspect.getsource(cls.forward))
    patched, count = re.subn(r"ws\.device\.type\s*!=\s*['\"]cuda['\"]", "False", source)
    if count != 1:
        raise SystemExit("NVIDIA's SynthesisBlock.forward no longer has the CUDA-only float16 check")
    namespace: dict[str, Any] = {}
    exec(compile(patched, inspect.getsourcefile(cls.forward), "exec"), vars(networks), namespace)
    return namespace["forward"]


def plugins_built(nv: dict[str, Any]) -> bool:
    return nv["upfirdn2d"]._plugin is not None or nv["bias_act"]._plugin is not None


def build_nvidia(nv: dict[str, Any], cfg: GeneratorConfig) -> torch.nn.Module:
    """NVIDIA's Generator for a gancraft config (both repositories' constructor styles)."""
    mapping = dict(
        num_layers=cfg.mapping_layers,
        embed_features=cfg.embed_features,
        layer_features=cfg.layer_features,
        lr_multiplier=cfg.mapping_lr_multiplier,
        w_avg_beta=cfg.w_avg_beta,
    )
    synthesis = dict(
        channel_base=cfg.channel_base,
        channel_max=cfg.channel_max,
        num_fp16_res=cfg.num_fp16_res,
        conv_clamp=cfg.conv_clamp,
        architecture=cfg.architecture,
        resample_filter=list(cfg.resample_filter),
        use_noise=cfg.use_noise,
    )
    cls = nv["networks"].Generator
    args = (cfg.z_dim, cfg.c_dim, cfg.w_dim, cfg.img_resolution, cfg.img_channels)
    # the persistence decorator's __init__ takes (*args, **kwargs): read the decorated class's own
    params = inspect.signature(_undecorated(cls).__init__).parameters
    if "synthesis_kwargs" in params and params["synthesis_kwargs"].kind != inspect.Parameter.VAR_KEYWORD:
        return cls(*args, mapping_kwargs=mapping, synthesis_kwargs=synthesis)  # stylegan2-ada-pytorch
    return cls(*args, mapping_kwargs=mapping, **synthesis)  # stylegan3 repository


def _undecorated(cls: type) -> type:
    """The class that torch_utils.persistence.persistent_class wrapped (its only base), or cls itself."""
    return cls.__bases__[0] if hasattr(cls, "_orig_class_name") else cls


def randomize_(G: torch.nn.Module, seed: int) -> None:
    """Give every tensor a random value, so that no zero-initialised part (biases, noise strengths,
    w_avg) goes untested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(G.named_parameters()) + list(G.named_buffers()):
            if name.endswith("resample_filter"):
                continue
            r = torch.randn(t.shape, generator=gen)
            if name.endswith("noise_strength"):
                r = 0.3 * r
            elif name.endswith("affine.bias"):
                r = 1 + 0.2 * r
            elif name.endswith(".bias") or name.endswith("w_avg"):
                r = 0.5 * r
            t.copy_(r)


def make_pair(
    nv: dict[str, Any], cfg: GeneratorConfig, seed: int = 0, device: str = "cpu"
) -> tuple[torch.nn.Module, Generator]:
    """NVIDIA's and gancraft's generators holding the same random weights, both in eval mode."""
    ref = build_nvidia(nv, cfg)
    randomize_(ref, seed)
    ours = Generator(cfg)
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref.eval().requires_grad_(False).to(device), ours.eval().requires_grad_(False).to(device)


def nvidia_numerics(precision: str) -> contextlib.AbstractContextManager:
    """True float32 for NVIDIA's code in the fp32 comparison: its code leaves TF32 as torch sets it
    (cuDNN: on), which moves images by ~1e-3 on Ampere and newer GPUs."""
    return exact_fp32() if precision == "fp32" else contextlib.nullcontext()


def max_abs_diff(
    ref: torch.nn.Module,
    ours: Generator,
    z: torch.Tensor,
    c: torch.Tensor | None,
    psi: float = 1.0,
    cutoff: int | None = None,
    noise_mode: str = "const",
    precision: str = "fp32",
) -> dict[str, float]:
    """Largest |NVIDIA - gancraft| over w (mapping) and the images, with the image scale for context.

    gancraft runs as users run it (no global flags set here), so its fp32 check covers TF32 too."""
    with torch.no_grad():
        with nvidia_numerics(precision):
            w_ref = ref.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
            img_ref = ref.synthesis(w_ref, noise_mode=noise_mode)
        w_ours = ours.mapping(z, c, truncation_psi=psi, truncation_cutoff=cutoff)
        img_ours = ours.synthesis(w_ours, noise_mode=noise_mode, precision=precision)
    return {
        "w": (w_ref - w_ours).abs().max().item(),
        "image": (img_ref - img_ours).abs().max().item(),
        "image_absmax": img_ref.abs().max().item(),
    }
