"""Write NVIDIA network pickles (G, D, G_ema) that NVIDIA's own ``legacy.load_network_pkl`` loads.

A pickle that NVIDIA's code loads holds ``torch_utils.persistence`` records, and NVIDIA's
loader executes each record's ``module_src`` to find its class. NVIDIA's license forbids
redistributing their source, so these records carry none of it. Each one holds, as data, the
network's class name, its constructor arguments (``_init_args``/``_init_kwargs``, in
stylegan2-ada-pytorch's form) and its state dict; its ``module_src`` is ``LOADER_SOURCE``
below, written for gancraft, which only names NVIDIA's classes by import path. When NVIDIA's
loader runs it (with a stylegan3 or stylegan2-ada-pytorch checkout on ``sys.path``, as their
tools always have), it builds the network with that checkout's own class from the stored
arguments and copies the tensors in; the result is an instance of NVIDIA's class itself, so
saving it again with NVIDIA's tools writes an ordinary NVIDIA pickle.

gancraft's own reader never runs that source: ``nvidia_to_checkpoint`` reads these records
as data like any other.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..nets.config import DiscriminatorConfig, GeneratorConfig
from .core import Checkpoint

PERSISTENCE_VERSION = 6  # torch_utils.persistence's record format in both NVIDIA repositories
FRESH_D_SEED = 0

LOADER_SOURCE = '''\
"""Written by gancraft (not NVIDIA code). This record stores a StyleGAN2 network as data: its
constructor arguments and its tensors. Unpickling turns the object into an instance of the
class of the same name from the NVIDIA repository on sys.path (stylegan3 or
stylegan2-ada-pytorch), builds it from those arguments and loads the tensors into it."""

import importlib

import dnnlib


def _nvidia_networks():
    for name in ("training.networks_stylegan2", "training.networks"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    raise ImportError("this network pickle was written by gancraft: put a stylegan3 or "
                      "stylegan2-ada-pytorch checkout on sys.path to load it")


_networks = _nvidia_networks()
# stylegan3's Generator takes the synthesis options as keywords, stylegan2-ada-pytorch's as a dict
_SYNTHESIS_AS_KEYWORDS = _networks.__name__ == "training.networks_stylegan2"


def _build(net, cls, state):
    kwargs = {k: dnnlib.EasyDict(v) if isinstance(v, dict) else v for k, v in state["_init_kwargs"].items()}
    if _SYNTHESIS_AS_KEYWORDS and "synthesis_kwargs" in kwargs:
        kwargs.update(kwargs.pop("synthesis_kwargs"))
    # from here on the object is an instance of NVIDIA's own class, as if built by NVIDIA's code
    net.__class__ = cls
    net.__init__(*state["_init_args"], **kwargs)
    net.load_state_dict(state["state_dict"], strict=True)
    net.eval().requires_grad_(False)


class Generator(_networks.Generator):
    def __setstate__(self, state):
        _build(self, _networks.Generator, state)


class Discriminator(_networks.Discriminator):
    def __setstate__(self, state):
        _build(self, _networks.Discriminator, state)
'''


@dataclass(frozen=True)
class _Global:
    """A module-level name, written into the pickle as a reference without importing it."""

    module: str
    name: str


_RECONSTRUCT = _Global("torch_utils.persistence", "_reconstruct_persistent_obj")


@dataclass
class _Record:
    class_name: str
    init_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]

    def meta(self) -> dict[str, Any]:
        state = {"_init_args": (), "_init_kwargs": self.init_kwargs, "state_dict": self.state_dict}
        return {
            "type": "class",
            "version": PERSISTENCE_VERSION,
            "module_src": LOADER_SOURCE,
            "class_name": self.class_name,
            "state": state,
        }


class _Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """The pure-Python pickler, which lets these two types be written by hand (the C one does not)."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_global_ref(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))
        self.memoize(obj)

    def save_record(self, rec: _Record) -> None:
        self.save(_RECONSTRUCT)
        self.save((rec.meta(),))
        self.write(pickle.REDUCE)
        self.memoize(rec)

    dispatch[_Global] = save_global_ref
    dispatch[_Record] = save_record


def generator_kwargs(g: GeneratorConfig) -> dict[str, Any]:
    """Constructor arguments of NVIDIA's StyleGAN2 Generator for `g` (stylegan2-ada-pytorch's form)."""
    mapping = {
        "num_layers": g.mapping_layers,
        "embed_features": g.embed_features,
        "layer_features": g.layer_features,
        "lr_multiplier": g.mapping_lr_multiplier,
        "w_avg_beta": g.w_avg_beta,
    }
    synthesis = {
        "channel_base": g.channel_base,
        "channel_max": g.channel_max,
        "num_fp16_res": g.num_fp16_res,
        "conv_clamp": g.conv_clamp,
        "architecture": g.architecture,
        "resample_filter": list(g.resample_filter),
        "use_noise": g.use_noise,
    }
    return {
        "z_dim": g.z_dim,
        "c_dim": g.c_dim,
        "w_dim": g.w_dim,
        "img_resolution": g.img_resolution,
        "img_channels": g.img_channels,
        "mapping_kwargs": mapping,
        "synthesis_kwargs": synthesis,
    }


def discriminator_kwargs(d: DiscriminatorConfig) -> dict[str, Any]:
    """Constructor arguments of NVIDIA's StyleGAN2 Discriminator for `d`."""
    return {
        "c_dim": d.c_dim,
        "img_resolution": d.img_resolution,
        "img_channels": d.img_channels,
        "architecture": d.architecture,
        "channel_base": d.channel_base,
        "channel_max": d.channel_max,
        "num_fp16_res": d.num_fp16_res,
        "conv_clamp": d.conv_clamp,
        "cmap_dim": d.cmap_dim,
        "block_kwargs": {"resample_filter": list(d.resample_filter)},
        "mapping_kwargs": {"num_layers": d.mapping_layers, "lr_multiplier": d.mapping_lr_multiplier},
        "epilogue_kwargs": {"mbstd_group_size": d.mbstd_group_size, "mbstd_num_channels": d.mbstd_num_channels},
    }


def fresh_discriminator_config(g: GeneratorConfig) -> DiscriminatorConfig:
    """The discriminator NVIDIA's training would pair with generator `g` (same channels and clamp)."""
    return DiscriminatorConfig(
        c_dim=g.c_dim,
        img_resolution=g.img_resolution,
        img_channels=g.img_channels,
        channel_base=g.channel_base,
        channel_max=g.channel_max,
        conv_clamp=g.conv_clamp,
        resample_filter=list(g.resample_filter),
    )


def _fresh_discriminator(g: GeneratorConfig) -> tuple[DiscriminatorConfig, dict[str, torch.Tensor]]:
    from ..nets.stylegan2 import Discriminator

    cfg = fresh_discriminator_config(g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(FRESH_D_SEED)
        D = Discriminator(cfg)
    return cfg, D.state_dict()


def _tensors(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().cpu().to(torch.float32).contiguous().clone()
        if v.is_floating_point()
        else v.detach().cpu().contiguous().clone()
        for k, v in sd.items()
    }


def write_nvidia(ckpt: Checkpoint, path: str | os.PathLike, fresh_d: bool = False) -> dict[str, str]:
    """Write `ckpt` as an NVIDIA network pickle with G, D and G_ema, loadable by NVIDIA's legacy.py.

    NVIDIA's loader requires all three networks. A checkpoint with only one generator gets it as
    both G and G_ema. One without a discriminator (rosinality and StyleGAN-NADA files often have
    none) is refused unless `fresh_d`, which adds a newly initialised discriminator matching the
    generator: enough for generating and for starting fine-tuning, not for resuming training.
    gancraft's domain table, history and tensors outside the three networks are not written.

    Writes straight to `path`: callers wanting atomicity pass a temporary path
    (gancraft.checkpoint.save does). Returns where each network came from.
    """
    where = f"{ckpt.path}" if ckpt.path else "checkpoint"
    nets = ckpt.nets
    gen = ckpt.generator_net()
    if "D" in nets and ckpt.d_config is not None:
        d_cfg, d_sd, d_from = ckpt.d_config, ckpt.state_dict("D"), "D"
    elif fresh_d:
        (d_cfg, d_sd), d_from = _fresh_discriminator(ckpt.g_config), "new"
    else:
        raise CheckpointError(
            f"{where}: holds no discriminator, and NVIDIA's load_network_pkl requires one; add a newly initialised "
            "one with --fresh-d (fine for generating and fine-tuning, not for resuming training)"
        )
    # each network is built once through gancraft's own: a tensor its config does not explain stops here
    for net in nets:
        ckpt.discriminator() if net == "D" else ckpt.generator(net)
    g_kwargs = generator_kwargs(ckpt.g_config)
    sources = {"G_ema": "G_ema" if "G_ema" in nets else gen, "G": "G" if "G" in nets else gen, "D": d_from}
    data = {
        "G": _Record("Generator", g_kwargs, _tensors(ckpt.state_dict(sources["G"]))),
        "D": _Record("Discriminator", discriminator_kwargs(d_cfg), _tensors(d_sd)),
        "G_ema": _Record("Generator", g_kwargs, _tensors(ckpt.state_dict(sources["G_ema"]))),
    }
    try:
        with open(Path(path), "wb") as fh:
            _Pickler(fh, protocol=4).dump(data)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return sources


__all__ = ["write_nvidia", "generator_kwargs", "discriminator_kwargs", "fresh_discriminator_config", "LOADER_SOURCE"]
