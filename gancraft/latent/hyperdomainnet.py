"""Domain vectors from checkpoints of the official HyperDomainNet code (MACderRu/HyperDomainNet).

What its training writes (core/utils/common.py `get_trainable_model_state`, extended by each
trainer's `ckpt_info`, saved with ``torch.save``) is a plain dict:

- ``model_type``: 'parameterization' (one domain vector, the td_single and im2im_single
  trainers), 'mapper' (a hyper-network) or 'original' (a whole fine-tuned generator);
- ``patch_key``: how the vector meets the conv weights; 'cin_mult', the paper's domain vector,
  multiplies each modulated, demodulated conv weight by (1 + v) along its input channels, which
  is gancraft's "after-demod" order (nets.stylegan2.MODULATION_ORDERS);
- ``state_dict``: one tensor ``heads.conv_<i>.params_in`` of shape [1, 1, C_in, 1, 1] per
  modulated conv layer, i counted from 0 in synthesis order (the 4x4 block's conv, then each
  resolution's upsampling conv and its second conv), which is the order of gancraft's conv
  layers (SynthesisNetwork.layers()) and so of the slices of a gancraft domain vector;
- ``sg2_params``: the rosinality generator's constructor arguments (img_size, latent_size,
  map_layers, channel_multiplier, device, checkpoint_path): plain numbers and strings;
- ``da_type``: 'td' (text-driven) or 'im2im' (one-shot from an image; its images also take the
  style image's latents at layers 7 and up, stored as ``style_latents``).

Only tensors, strings, numbers and containers: ``torch.load(weights_only=True)`` reads it, and
nothing in the file is executed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..checkpoint import Checkpoint
from ..checkpoint.rosinality import load_pt
from ..errors import GancraftError

# the official per-input-channel multiplier after demodulation: what a gancraft domain vector is
OFFICIAL_PATCH = "cin_mult"
# where 'cin_mult' meets the weights, whatever gancraft's default order becomes
OFFICIAL_ORDER = "after-demod"
_HEAD = re.compile(r"^heads\.conv_(\d+)\.params_in$")
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


@dataclass
class OfficialVector:
    """One official domain vector: per conv layer (conv_0 first) its C_in multipliers."""

    layers: list[torch.Tensor]
    img_size: int | None
    da_type: str | None


def read_official_vector(path: str | os.PathLike) -> OfficialVector:
    """Read a HyperDomainNet domain-vector checkpoint (model_type 'parameterization', patch 'cin_mult')."""
    obj = load_pt(Path(path))
    if not isinstance(obj, Mapping) or "model_type" not in obj or "state_dict" not in obj:
        raise GancraftError(
            f"{path}: not a HyperDomainNet checkpoint (expected a dict with model_type and state_dict, "
            "as its training saves under models/)"
        )
    kind = obj["model_type"]
    if kind != "parameterization":
        what = {"mapper": "a hyper-network (mapper)", "original": "a whole fine-tuned generator"}.get(kind, repr(kind))
        raise GancraftError(
            f"{path}: holds {what}; only domain-vector checkpoints (model_type 'parameterization') are read"
        )
    if obj.get("patch_key") != OFFICIAL_PATCH:
        raise GancraftError(
            f"{path}: patch_key {obj.get('patch_key')!r}; gancraft's domain vectors are the official "
            f"{OFFICIAL_PATCH!r} kind (per input channel, after demodulation) only"
        )
    if obj.get("da_type") == "im2im":
        raise GancraftError(
            f"{path}: an image-driven (im2im) vector; its images also need the style image's latents "
            "at layers 7 and up, which a gancraft domain does not carry"
        )
    return OfficialVector(_ordered_heads(obj["state_dict"], path), _img_size(obj.get("sg2_params")), obj.get("da_type"))


def _ordered_heads(state: Any, path: str | os.PathLike) -> list[torch.Tensor]:
    if not isinstance(state, Mapping):
        raise GancraftError(f"{path}: state_dict is a {type(state).__name__}, expected named tensors")
    heads: dict[int, torch.Tensor] = {}
    for key, value in state.items():
        m = _HEAD.match(key) if isinstance(key, str) else None
        if m is None:
            raise GancraftError(f"{path}: unexpected entry {key!r} (a 'cin_mult' vector has heads.conv_<i>.params_in)")
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise GancraftError(f"{path}: {key} is not a floating-point tensor")
        if value.ndim != 5 or value.shape[:2] != (1, 1) or value.shape[3:] != (1, 1):
            raise GancraftError(f"{path}: {key} has shape {tuple(value.shape)}, expected [1, 1, C_in, 1, 1]")
        if not torch.isfinite(value).all():
            raise GancraftError(f"{path}: {key} holds NaN or Inf")
        heads[int(m.group(1))] = value.reshape(-1).to(torch.float32)
    if sorted(heads) != list(range(len(heads))) or not heads:
        raise GancraftError(f"{path}: conv heads {sorted(heads)} are not conv_0 ... conv_N without gaps")
    # numeric order: the keys' text order would put conv_10 before conv_2
    return [heads[i] for i in range(len(heads))]


def _img_size(params: Any) -> int | None:
    size = params.get("img_size") if isinstance(params, Mapping) else None
    return size if isinstance(size, int) else None


def official_to_domain_vector(vector: OfficialVector, G: torch.nn.Module, where: str) -> torch.Tensor:
    """The gancraft domain vector [style_dim] of G equal to `vector`: conv_i's multipliers become
    the slice of G's i-th conv layer (in synthesis order), checked layer by layer."""
    convs = [info for info in G.synthesis.layers() if info.kind == "conv"]
    if len(vector.layers) != len(convs):
        size = f" (made for {vector.img_size} px)" if vector.img_size else ""
        raise GancraftError(
            f"{where}: {len(vector.layers)} conv layers{size}, the model has {len(convs)} ({G.img_resolution} px)"
        )
    for i, (values, info) in enumerate(zip(vector.layers, convs)):
        if values.numel() != info.in_channels:
            raise GancraftError(
                f"{where}: conv_{i} has {values.numel()} input channels, the model's {info.name} has {info.in_channels}"
            )
    return torch.cat(vector.layers)


def with_official_vectors(ckpt: Checkpoint, files: Mapping[str, str | os.PathLike]) -> Checkpoint:
    """ckpt plus one vector domain per NAME -> official domain-vector file, in the official order."""
    if ckpt.family != "stylegan2":
        raise GancraftError(f"{ckpt.path or 'checkpoint'}: domain vectors need a StyleGAN2 model, not {ckpt.family}")
    if ckpt.g_config.c_dim:
        raise GancraftError(f"{ckpt.path or 'checkpoint'}: domain vectors need an unconditional generator")
    G = ckpt.generator()
    tensors = dict(ckpt.tensors)
    domains = dict(ckpt.domains or {})
    for name, path in files.items():
        if not _NAME.match(name):
            raise GancraftError(f"--domain-vector {name}: names may use letters, digits, '-' and '_' only")
        if name in domains:
            raise GancraftError(f"--domain-vector {name}: the model already has a domain of that name")
        vec = official_to_domain_vector(read_official_vector(path), G, str(path))
        tensors[f"domain_vectors.{name}"] = vec.contiguous()
        domains[name] = {
            "kind": "vector",
            "tensor": f"domain_vectors.{name}",
            "modulation": OFFICIAL_ORDER,
            "source": "HyperDomainNet " + Path(path).name,
        }
    return Checkpoint(
        tensors=tensors,
        g_config=ckpt.g_config,
        d_config=ckpt.d_config,
        domains=domains,
        history=list(ckpt.history),
        extra=dict(ckpt.extra or {}),
        source_format=ckpt.source_format,
        path=ckpt.path,
    )
