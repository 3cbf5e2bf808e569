"""Original TensorFlow StyleGAN2 pickles (``(G, D, Gs)`` of ``dnnlib.tflib.network.Network``).

The pickle is read as data by the restricted unpickler: each Network is its static kwargs
(the architecture), its sub-networks and its variables as numpy arrays. Variables are renamed
and laid out as NVIDIA's stylegan2-ada-pytorch keys, following the correspondence its
``legacy.py`` established: convolution kernels go from ``[kh, kw, in, out]`` to
``[out, in, kh, kw]``, the up-sampling convolution's kernel is also flipped (TF runs it as a
transposed convolution), dense matrices are transposed, and the style biases gain the +1 that
TF adds at run time. Only StyleGAN2 config-e/f networks (skip generator, resnet discriminator)
have a counterpart; anything else is reported by name rather than guessed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import CheckpointError
from ..nets.config import DiscriminatorConfig, GeneratorConfig
from .core import Checkpoint
from .formats import NetworkPickle, register
from .safe_pickle import TFNetworkRecord, safe_load

Transform = Callable[[np.ndarray], np.ndarray]


def _same(v: np.ndarray) -> np.ndarray:
    return v


def _dense(v: np.ndarray) -> np.ndarray:
    return v.T


def _conv(v: np.ndarray) -> np.ndarray:
    return v.transpose(3, 2, 0, 1)


def _conv_flipped(v: np.ndarray) -> np.ndarray:
    return v[::-1, ::-1].transpose(3, 2, 0, 1)


def _style_bias(v: np.ndarray) -> np.ndarray:
    return v + np.float32(1)


def _first(v: np.ndarray) -> np.ndarray:
    return v[0]


def _noise(v: np.ndarray) -> np.ndarray:
    return v[0, 0]


# TF build kwargs that only steer training or graph construction, never the function computed
_RUNTIME_KWARGS = {
    "truncation_psi",
    "truncation_cutoff",
    "truncation_psi_val",
    "truncation_cutoff_val",
    "style_mixing_prob",
    "is_training",
    "is_validation",
    "return_dlatents",
    "randomize_noise",
    "dtype",
    "fused_modconv",
    "structure",
    "is_template_graph",
    "force_clean_graph",
    "dlatent_broadcast",
    "freeze_layers",
    "mapping_func",
    "synthesis_func",
    "conditioning",
    "components",
}


class _Kwargs:
    """TF static kwargs, consumed one by one so that leftovers can be reported."""

    def __init__(self, kwargs: dict[str, Any], where: str) -> None:
        self.kwargs, self.where, self.used = kwargs, where, set(_RUNTIME_KWARGS)

    def get(self, name: str, default: Any) -> Any:
        self.used.add(name)
        value = self.kwargs.get(name, default)
        return default if value is None else value

    def expect(self, name: str, allowed: tuple, what: str) -> None:
        value = self.get(name, allowed[0])
        if value not in allowed:
            raise CheckpointError(f"{self.where}: {name}={value!r} is not supported ({what})")

    def finish(self) -> None:
        unknown = sorted(set(self.kwargs) - self.used)
        if unknown:
            raise CheckpointError(f"{self.where}: unsupported TF network options: {', '.join(unknown)}")


def read_tf_pickle(path: str | os.PathLike) -> Checkpoint:
    """Read an original TF StyleGAN2 pickle: ``(G, D, Gs)`` or a lone ``Gs``."""
    p = Path(path)
    return tf_to_checkpoint(safe_load(p), p)


def is_tf_networks(data: Any) -> bool:
    """Whether unpickled content is TF networks (a lone Gs or a tuple of them), not NVIDIA's."""
    if isinstance(data, TFNetworkRecord):
        return True
    return isinstance(data, tuple) and len(data) > 0 and all(isinstance(x, TFNetworkRecord) for x in data)


@register
class TFPickle(NetworkPickle):
    name = "tf"

    def claims(self, data: Any) -> bool:
        return is_tf_networks(data)

    def convert(self, data: Any, path: Path) -> Checkpoint:
        return tf_to_checkpoint(data, path)


def tf_to_checkpoint(data: Any, path: Path) -> Checkpoint:
    if isinstance(data, TFNetworkRecord):
        nets = {"G_ema": data}
    elif isinstance(data, tuple) and len(data) == 3 and all(isinstance(x, TFNetworkRecord) for x in data):
        nets = {"G": data[0], "D": data[1], "G_ema": data[2]}
    else:
        raise CheckpointError(f"{path}: expected a TF StyleGAN2 pickle holding (G, D, Gs) networks")
    for name, net in nets.items():
        version = net.version
        if not isinstance(version, int) or version < 4:
            raise CheckpointError(f"{path}: {name}: TF network pickle version {version!r} is too old (need 4)")

    tensors: dict[str, torch.Tensor] = {}
    g_config = None
    for name in ("G_ema", "G"):
        if name not in nets:
            continue
        cfg, sd = _convert_generator(nets[name], f"{path}: {name}")
        if g_config is not None and cfg != g_config:
            raise CheckpointError(f"{path}: G and Gs have different architectures")
        g_config = g_config or cfg
        tensors.update({f"{name}.{k}": v for k, v in sd.items()})
    d_config = None
    if "D" in nets:
        d_config, sd = _convert_discriminator(nets["D"], f"{path}: D")
        tensors.update({f"D.{k}": v for k, v in sd.items()})
    assert g_config is not None
    return Checkpoint(tensors=tensors, g_config=g_config, d_config=d_config, source_format="tf", path=path)


def _collect(net: TFNetworkRecord, where: str, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for item in net.variables:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise CheckpointError(f"{where}: malformed variable list in network {net.name!r}")
        name, value = item
        if not isinstance(value, (np.ndarray, np.generic)):
            raise CheckpointError(f"{where}: variable {prefix}{name} is a {type(value).__name__}, not an array")
        out[prefix + name] = np.asarray(value)
    for comp_name, comp in net.components.items():
        if not isinstance(comp, TFNetworkRecord):
            raise CheckpointError(f"{where}: component {comp_name!r} is not a TF network")
        out.update(_collect(comp, where, f"{prefix}{comp_name}/"))
    return out


_Rule = tuple[str, Callable[..., Any]]
# what a rule returns for variables that exist in TF pickles but carry nothing a network needs
_IGNORED = ("", _same)

_MODCONV_FIELDS: dict[str, tuple[str, Transform]] = {
    "mod_weight": ("affine.weight", _dense),
    "mod_bias": ("affine.bias", _style_bias),
    "noise_strength": ("noise_strength", _same),
    "bias": ("bias", _same),
}


def _modconv(block: str, layer: str, field: str, flip: bool = False) -> tuple[str, Transform] | None:
    if field == "weight":
        return f"synthesis.{block}.{layer}.weight", _conv_flipped if flip else _conv
    if field not in _MODCONV_FIELDS or (layer == "torgb" and field == "noise_strength"):
        return None
    key, fn = _MODCONV_FIELDS[field]
    return f"synthesis.{block}.{layer}.{key}", fn


def _noise_key(k: str) -> tuple[str, Transform]:
    idx = int(k)
    if idx == 0:
        return "synthesis.b4.conv1.noise_const", _noise
    res = 2 ** ((idx + 5) // 2)
    return f"synthesis.b{res}.{'conv0' if idx % 2 else 'conv1'}.noise_const", _noise


_G_LAYERS = {"Conv0_up": "conv0", "Conv1": "conv1", "ToRGB": "torgb"}

_G_RULES: list[_Rule] = [
    # progressive-growing level of detail: a training-time scalar, 0 in finished networks
    (r"(?:synthesis/)?lod", lambda: _IGNORED),
    (r"dlatent_avg", lambda: ("mapping.w_avg", _same)),
    (r"mapping/LabelEmbed/(weight|bias)", lambda f: (f"mapping.embed.{f}", _dense if f == "weight" else _same)),
    (r"mapping/Dense(\d+)/(weight|bias)", lambda i, f: (f"mapping.fc{i}.{f}", _dense if f == "weight" else _same)),
    (r"synthesis/noise(\d+)", _noise_key),
    (r"synthesis/4x4/Const/const", lambda: ("synthesis.b4.const", _first)),
    (r"synthesis/4x4/Conv/(\w+)", lambda f: _modconv("b4", "conv1", f)),
    (r"synthesis/4x4/ToRGB/(\w+)", lambda f: _modconv("b4", "torgb", f)),
    (
        r"synthesis/(\d+)x\1/(Conv0_up|Conv1|ToRGB)/(\w+)",
        lambda r, layer, f: _modconv(f"b{r}", _G_LAYERS[layer], f, flip=layer == "Conv0_up"),
    ),
]

_D_LAYERS = {"FromRGB": "fromrgb", "Conv0": "conv0", "Conv1_down": "conv1", "Skip": "skip"}

_D_RULES: list[_Rule] = [
    (r"lod", lambda: _IGNORED),
    (
        r"(\d+)x\1/(FromRGB|Conv0|Conv1_down)/(weight|bias)",
        lambda r, layer, f: (f"b{r}.{_D_LAYERS[layer]}.{f}", _conv if f == "weight" else _same),
    ),
    (r"(\d+)x\1/Skip/weight", lambda r: (f"b{r}.skip.weight", _conv)),
    (r"4x4/Conv/(weight|bias)", lambda f: (f"b4.conv.{f}", _conv if f == "weight" else _same)),
    (r"4x4/Dense0/(weight|bias)", lambda f: (f"b4.fc.{f}", _dense if f == "weight" else _same)),
    (r"Output/(weight|bias)", lambda f: (f"b4.out.{f}", _dense if f == "weight" else _same)),
    (r"LabelEmbed/(weight|bias)", lambda f: (f"mapping.embed.{f}", _dense if f == "weight" else _same)),
    (r"Mapping(\d+)/(weight|bias)", lambda i, f: (f"mapping.fc{i}.{f}", _dense if f == "weight" else _same)),
]


def _translate(params: dict[str, np.ndarray], rules: list[_Rule], where: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for name, value in params.items():
        for pattern, fn in rules:
            match = re.fullmatch(pattern, name)
            if match:
                target = fn(*match.groups())
                if target is None:
                    unmapped.append(name)
                elif target is not _IGNORED:
                    key, transform = target
                    array = np.array(transform(value.astype(np.float32, copy=False)), order="C", copy=True)
                    out[key] = torch.from_numpy(array)
                break
        else:
            unmapped.append(name)
    if any(re.match(r"(?:synthesis/)?(?:ToRGB|FromRGB)_lod\d+/", n) for n in unmapped):
        raise CheckpointError(
            f"{where}: progressive-growing ('orig') TF networks (StyleGAN2 configs a-d or "
            "StyleGAN1) are not supported, only StyleGAN2 config-e/f"
        )
    if any(n.startswith("mapping/LabelConcat/") for n in unmapped):
        raise CheckpointError(
            f"{where}: conditional TF StyleGAN2 generators (LabelConcat labels) have no "
            "StyleGAN2-ADA counterpart and are not supported"
        )
    if unmapped:
        shown = ", ".join(unmapped[:8]) + (f" and {len(unmapped) - 8} more" if len(unmapped) > 8 else "")
        raise CheckpointError(f"{where}: TF variables with no StyleGAN2 counterpart: {shown}")
    return out


def _complete(converted: dict[str, torch.Tensor], module: torch.nn.Module, where: str) -> dict[str, torch.Tensor]:
    """Order as the module's state dict, add the fixed resampling filters, and check every key and shape."""
    expected = module.state_dict()
    extra = [k for k in converted if k not in expected]
    if extra:
        raise CheckpointError(
            f"{where}: TF variables for {', '.join(extra[:8])} do not fit the architecture its options describe"
        )
    missing = [k for k in expected if k not in converted and not k.endswith("resample_filter")]
    if missing:
        raise CheckpointError(
            f"{where}: the TF network lacks weights for {', '.join(missing[:8])}"
            + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        )
    out = {}
    for key, ref in expected.items():
        if key not in converted:
            out[key] = ref.detach().clone()
            continue
        value = converted[key]
        if tuple(value.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{where}: {key} has shape {tuple(value.shape)} after conversion, the "
                f"architecture expects {tuple(ref.shape)}"
            )
        out[key] = value
    return out


def _reference(build: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    # construction draws random initial weights; keep the caller's random stream untouched
    with torch.random.fork_rng(devices=[]):
        return build()


def _resample(kw: _Kwargs) -> list[int]:
    taps = kw.get("resample_kernel", [1, 3, 3, 1])
    if not isinstance(taps, (list, tuple)) or not taps:
        raise CheckpointError(f"{kw.where}: resample_kernel={taps!r} is not supported")
    return [int(t) for t in taps]


def _fmaps(kw: _Kwargs) -> dict[str, int]:
    kw.expect("fmap_decay", (1.0, 1), "only the default feature-map schedule")
    kw.expect("fmap_min", (1,), "only the default feature-map schedule")
    # TF counts feature maps from the stage (log2(res) - 1), NVIDIA from the resolution: base doubles
    return {"channel_base": int(kw.get("fmap_base", 16 << 10)) * 2, "channel_max": int(kw.get("fmap_max", 512))}


def _convert_generator(net: TFNetworkRecord, where: str) -> tuple[GeneratorConfig, dict[str, torch.Tensor]]:
    from ..nets.stylegan2 import Generator

    if net.build_func_name == "G_style":
        raise CheckpointError(f"{where}: this is a StyleGAN (version 1) network; only StyleGAN2 is supported")
    kw = _Kwargs(net.static_kwargs, where)
    kw.expect("mapping_nonlinearity", ("lrelu",), "only leaky ReLU")
    kw.expect("nonlinearity", ("lrelu",), "only leaky ReLU")
    kw.expect("normalize_latents", (True,), "StyleGAN2 always normalises z")
    beta = kw.get("w_avg_beta", kw.get("dlatent_avg_beta", 0.995))
    cfg = GeneratorConfig(
        z_dim=int(kw.get("latent_size", 512)),
        c_dim=int(kw.get("label_size", 0)),
        w_dim=int(kw.get("dlatent_size", 512)),
        img_resolution=int(kw.get("resolution", 1024)),
        img_channels=int(kw.get("num_channels", 3)),
        mapping_layers=int(kw.get("mapping_layers", 8)),
        mapping_lr_multiplier=float(kw.get("mapping_lrmul", 0.01)),
        embed_features=kw.get("label_fmaps", None),
        layer_features=kw.get("mapping_fmaps", None),
        w_avg_beta=float(beta),
        num_fp16_res=int(kw.get("num_fp16_res", 0)),
        conv_clamp=kw.get("conv_clamp", None),
        architecture=str(kw.get("architecture", "skip")),
        resample_filter=_resample(kw),
        use_noise=bool(kw.get("use_noise", True)),
        **_fmaps(kw),
    )
    kw.finish()
    try:
        cfg.validate()
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    converted = _translate(_collect(net, where), _G_RULES, where)
    return cfg, _complete(converted, _reference(lambda: Generator(cfg)), where)


def _convert_discriminator(net: TFNetworkRecord, where: str) -> tuple[DiscriminatorConfig, dict[str, torch.Tensor]]:
    from ..nets.stylegan2 import Discriminator

    kw = _Kwargs(net.static_kwargs, where)
    kw.expect("nonlinearity", ("lrelu",), "only leaky ReLU")
    group = int(kw.get("mbstd_group_size", 4))
    channels = int(kw.get("mbstd_num_features", 1))
    c_dim = int(kw.get("label_size", 0))
    fields: dict[str, Any] = dict(
        c_dim=c_dim,
        img_resolution=int(kw.get("resolution", 1024)),
        img_channels=int(kw.get("num_channels", 3)),
        architecture=str(kw.get("architecture", "resnet")),
        num_fp16_res=int(kw.get("num_fp16_res", 0)),
        conv_clamp=kw.get("conv_clamp", None),
        resample_filter=_resample(kw),
        # TF skips the minibatch-stddev layer for groups of one
        mbstd_group_size=group,
        mbstd_num_channels=channels if group > 1 else 0,
        **_fmaps(kw),
    )
    params = _collect(net, where)
    if c_dim:
        if "LabelEmbed/weight" not in params:
            raise CheckpointError(
                f"{where}: conditional TF StyleGAN2 discriminators (label projection on the "
                "output layer) have no StyleGAN2-ADA counterpart and are not supported"
            )
        fields.update(
            cmap_dim=kw.get("mapping_fmaps", None),
            mapping_layers=int(kw.get("mapping_layers", 0)),
            mapping_lr_multiplier=float(kw.get("mapping_lrmul", 0.1)),
        )
    else:
        for unused in ("mapping_fmaps", "mapping_layers", "mapping_lrmul"):
            kw.get(unused, None)
    kw.finish()
    cfg = DiscriminatorConfig(**fields)
    try:
        cfg.validate()
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    converted = _translate(params, _D_RULES, where)
    return cfg, _complete(converted, _reference(lambda: Discriminator(cfg)), where)


__all__ = ["is_tf_networks", "read_tf_pickle", "tf_to_checkpoint"]
