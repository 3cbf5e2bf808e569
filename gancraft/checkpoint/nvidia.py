"""NVIDIA stylegan2-ada-pytorch and stylegan3 network pickles, read as data (their embedded source is never run).

Each network in such a pickle is a ``torch_utils.persistence`` record: a class name, the
module's pickled ``__dict__`` (``_parameters``, ``_buffers``, ``_modules`` of child records,
``_init_args``/``_init_kwargs``) and the source of the defining module. The state dict keys
NVIDIA's code would produce are the record tree flattened, and the architecture is the
constructor arguments, so neither needs the source. Pickles that gancraft writes
(nvidia_export) hold the constructor arguments and a flat ``state_dict`` instead of a tree.
"""

from __future__ import annotations

import os
import pickletools
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..nets.config import DiscriminatorConfig, GeneratorConfig
from ..nets.stylegan3 import StyleGAN3Config
from .core import Checkpoint
from .formats import NetworkPickle, read_network_pickle, register
from .nvidia_export import write_nvidia
from .safe_pickle import PersistentRecord, safe_load
from .tf import is_tf_networks

_PERSISTENCE_GLOBAL = "torch_utils.persistence _reconstruct_persistent_obj"
_TF_GLOBAL = "dnnlib.tflib.network Network"
# StyleGAN3 generators start from a Fourier-feature input layer instead of a learned constant
_STYLEGAN3_MARKERS = ("class SynthesisInput", "SynthesisInput(")

_G_POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")
_D_POSITIONAL = (
    "c_dim",
    "img_resolution",
    "img_channels",
    "architecture",
    "channel_base",
    "channel_max",
    "num_fp16_res",
    "conv_clamp",
    "cmap_dim",
    "block_kwargs",
    "mapping_kwargs",
    "epilogue_kwargs",
)
# constructor options that change speed or training only, never the function a network computes
_G_INERT = {"fp16_channels_last", "fused_modconv_default", "channels_last"}
_D_INERT = {"fp16_channels_last", "freeze_layers", "channels_last"}


def sniff_pickle(path: str | os.PathLike) -> str:
    """Say which kind of network pickle ``path`` is: 'nvidia', 'stylegan3' or 'tf'.

    Only the opcode stream is scanned (nothing is built), so this is cheap even for large files.
    Raises ``CheckpointError`` for corrupt pickles and for pickles of anything else.
    """
    p = Path(path)
    globals_seen: set[str] = set()
    stylegan3 = False
    recent: list[str] = []
    try:
        with open(p, "rb") as fh:
            for op, arg, _pos in pickletools.genops(fh):
                if op.name == "GLOBAL":
                    globals_seen.add(str(arg))
                elif op.name == "STACK_GLOBAL" and len(recent) >= 2:
                    globals_seen.add(f"{recent[-2]} {recent[-1]}")
                elif isinstance(arg, str):
                    recent = recent[-1:] + [arg]
                    if any(m in arg for m in _STYLEGAN3_MARKERS) or arg.startswith("synthesis.input."):
                        stylegan3 = True
                if op.name == "STOP":
                    break
    except OSError as exc:
        raise CheckpointError(f"{p}: cannot read ({exc.strerror})") from None
    except Exception as exc:  # pickletools reports damage as ValueError and friends
        raise CheckpointError(f"{p}: corrupt or truncated pickle ({exc})") from None
    if _TF_GLOBAL in globals_seen:
        return "tf"
    if _PERSISTENCE_GLOBAL in globals_seen:
        return "stylegan3" if stylegan3 else "nvidia"
    raise CheckpointError(
        f"{p}: this pickle is not a StyleGAN network pickle (no NVIDIA persistence records or TF networks in it)"
    )


def read_nvidia_pickle(path: str | os.PathLike) -> Checkpoint:
    """Read an NVIDIA stylegan2-ada-pytorch pickle (G, G_ema, D; any subset with a generator)."""
    p = Path(path)
    return nvidia_to_checkpoint(safe_load(p), p)


def read_pickle(path: str | os.PathLike) -> Checkpoint:
    """Read an NVIDIA or TF StyleGAN2 pickle, whichever it is, loading the file once."""
    return read_network_pickle(Path(path))


@register
class NvidiaPickle(NetworkPickle):
    name = "nvidia"
    suffix = ".pkl"
    summary = (
        "a network pickle (G, D, G_ema) that NVIDIA's stylegan2-ada-pytorch and stylegan3 tools load with "
        "their checkout on the path"
    )
    options = ("fresh_d",)

    def claims(self, data: Any) -> bool:
        # everything but TF networks: for content that is no network, this reader says what is missing
        return not is_tf_networks(data)

    def convert(self, data: Any, path: Path) -> Checkpoint:
        return nvidia_to_checkpoint(data, path)

    def write(self, ckpt: Checkpoint, path: Path, **options: Any) -> dict[str, str]:
        return write_nvidia(ckpt, path, **options)


def nvidia_to_checkpoint(data: Any, path: Path) -> Checkpoint:
    """Turn an unpickled NVIDIA snapshot (dict of persistence records) into a Checkpoint."""
    if is_tf_networks(data):
        raise CheckpointError(f"{path}: this is a TensorFlow StyleGAN2 pickle, not an NVIDIA PyTorch one")
    if isinstance(data, PersistentRecord):
        data = {"G_ema": data}
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of networks (G, G_ema, D), found {type(data).__name__}")
    nets = {k: data[k] for k in ("G_ema", "G", "D") if data.get(k) is not None}
    if not nets:
        raise CheckpointError(f"{path}: no G, G_ema or D network in this pickle (keys: {_keys(data)})")
    for name, rec in nets.items():
        if not isinstance(rec, PersistentRecord):
            raise CheckpointError(f"{path}: {name} is a {type(rec).__name__}, not an NVIDIA persistent network")
    if "G_ema" not in nets and "G" not in nets:
        raise CheckpointError(f"{path}: this pickle holds a discriminator but no generator")

    tensors: dict[str, torch.Tensor] = {}
    g_config: GeneratorConfig | StyleGAN3Config | None = None
    for name in ("G_ema", "G"):
        if name not in nets:
            continue
        _expect_class(nets[name], "Generator", name, path)
        if _is_stylegan3(nets[name]):
            _expect_stylegan3_tree(nets[name], name, path)
            cfg = stylegan3_config(nets[name], f"{path}: {name}")
        else:
            cfg = generator_config(nets[name], f"{path}: {name}")
        if g_config is not None and cfg != g_config:
            raise CheckpointError(f"{path}: G and G_ema have different architectures")
        g_config = g_config or cfg
        _flatten_into(nets[name], name, tensors, path)
    d_config = None
    if "D" in nets:
        _expect_class(nets["D"], "Discriminator", "D", path)
        d_config = discriminator_config(nets["D"], f"{path}: D")
        _flatten_into(nets["D"], "D", tensors, path)
    assert g_config is not None
    return Checkpoint(tensors=tensors, g_config=g_config, d_config=d_config, source_format="nvidia", path=path)


def _keys(d: dict) -> str:
    return ", ".join(map(str, list(d)[:10])) or "none"


def _expect_class(rec: PersistentRecord, cls: str, net: str, path: Path) -> None:
    if rec.class_name != cls:
        raise CheckpointError(f"{path}: {net} is a {rec.class_name}, expected a StyleGAN2 {cls}")


def _is_stylegan3(rec: PersistentRecord) -> bool:
    if any(m in rec.module_src for m in _STYLEGAN3_MARKERS):
        return True
    synthesis = rec.state.get("_modules", {}).get("synthesis") if isinstance(rec.state.get("_modules"), dict) else None
    if isinstance(synthesis, PersistentRecord):
        children = synthesis.state.get("_modules", {})
        return isinstance(children, dict) and "input" in children
    return False


# the classes of training/networks_stylegan3.py a StyleGAN3 generator is made of, by attribute
_STYLEGAN3_CHILDREN = {
    "mapping": "MappingNetwork",
    "synthesis": "SynthesisNetwork",
    "input": "SynthesisInput",
    "affine": "FullyConnectedLayer",
    "embed": "FullyConnectedLayer",
}


def _expect_stylegan3_tree(rec: PersistentRecord, net: str, path: Path) -> None:
    """Each module of the generator must be the stylegan3 class its place calls for, so that the
    tensors mean what gancraft's StyleGAN3 network makes of them."""
    children = rec.state.get("_modules") or {}
    for key, child in children.items() if isinstance(children, dict) else ():
        if not isinstance(child, PersistentRecord):
            continue
        want = _STYLEGAN3_CHILDREN.get(key)
        if want is None:
            want = "FullyConnectedLayer" if key.startswith("fc") else "SynthesisLayer" if key.startswith("L") else None
        if child.class_name != want:
            raise CheckpointError(
                f"{path}: {net}.{key} is a {child.class_name}, which a StyleGAN3 generator "
                f"(training.networks_stylegan3) does not have there"
            )
        _expect_stylegan3_tree(child, f"{net}.{key}", path)


def _flatten_into(rec: PersistentRecord, prefix: str, out: dict[str, torch.Tensor], path: Path) -> None:
    """Parameters and persistent buffers in the order ``Module.state_dict`` lists them."""
    state = rec.state
    if "state_dict" in state:
        _copy_state_dict(state["state_dict"], prefix, out, path)
        return
    params = state.get("_parameters") or {}
    buffers = state.get("_buffers") or {}
    non_persistent = state.get("_non_persistent_buffers_set") or set()
    children = state.get("_modules") or {}
    if not all(isinstance(x, dict) for x in (params, buffers, children)):
        raise CheckpointError(f"{path}: {prefix} ({rec.class_name}) is not a pickled torch module")
    named = [(k, v) for k, v in params.items()]
    named += [(k, v) for k, v in buffers.items() if k not in non_persistent]
    for key, value in named:
        if value is None:
            continue
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: {prefix}.{key} is a {type(value).__name__}, expected a tensor")
        out[f"{prefix}.{key}"] = value.detach()
    for key, child in children.items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise CheckpointError(f"{path}: {prefix}.{key} is not an NVIDIA persistent module")
        _flatten_into(child, f"{prefix}.{key}", out, path)


def _copy_state_dict(sd: Any, prefix: str, out: dict[str, torch.Tensor], path: Path) -> None:
    # records written by gancraft's NVIDIA export hold the whole state dict instead of a module tree
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: {prefix} has a state_dict that is a {type(sd).__name__}, expected a dict")
    for key, value in sd.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: {prefix}.{key} is not a named tensor")
        out[f"{prefix}.{key}"] = value.detach()


def _arguments(rec: PersistentRecord, positional: tuple[str, ...], where: str) -> dict[str, Any]:
    args, kwargs = rec.init_args, rec.init_kwargs
    if len(args) > len(positional):
        raise CheckpointError(
            f"{where}: {len(args)} positional constructor arguments, expected at most {len(positional)}"
        )
    merged = dict(zip(positional, args))
    merged.update(kwargs)
    return merged


def _sub(kw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = kw.pop(key, None) or {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{where}: {key} is a {type(value).__name__}, expected a dict")
    return dict(value)


def _require(kw: dict[str, Any], names: tuple[str, ...], where: str) -> None:
    missing = [n for n in names if n not in kw]
    if missing:
        raise CheckpointError(f"{where}: constructor arguments lack {', '.join(missing)}")


def _check_same(value: Any, expected: Any, option: str, where: str) -> None:
    if value is not None and value != expected:
        raise CheckpointError(f"{where}: {option}={value!r} is not supported (only {expected!r})")


def _leftovers(kw: dict[str, Any], inert: set[str], where: str) -> None:
    unknown = sorted(set(kw) - inert)
    if unknown:
        raise CheckpointError(f"{where}: unsupported constructor options: {', '.join(unknown)}")


def _filter_list(value: Any, where: str) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, float)) for v in value):
        raise CheckpointError(f"{where}: resample_filter {value!r} is not a list of numbers")
    return [int(v) if float(v).is_integer() else v for v in value]


def generator_config(rec: PersistentRecord, where: str) -> GeneratorConfig:
    """The GeneratorConfig equivalent to NVIDIA's ``Generator(*init_args, **init_kwargs)``."""
    kw = _arguments(rec, _G_POSITIONAL, where)
    _require(kw, ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"), where)
    mapping = _sub(kw, "mapping_kwargs", where)
    synthesis = _sub(kw, "synthesis_kwargs", where)
    # the stylegan3 repository's StyleGAN2 generator takes the synthesis options as plain kwargs
    base = {k: kw.pop(k) for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")}
    synthesis.update(kw)
    cfg: dict[str, Any] = {k: int(v) for k, v in base.items()}

    for src, dst in (
        ("num_layers", "mapping_layers"),
        ("lr_multiplier", "mapping_lr_multiplier"),
        ("embed_features", "embed_features"),
        ("layer_features", "layer_features"),
        ("w_avg_beta", "w_avg_beta"),
    ):
        if src in mapping:
            cfg[dst] = mapping.pop(src)
    _check_same(mapping.pop("activation", None), "lrelu", "mapping activation", where)
    _leftovers(mapping, set(), f"{where} mapping")

    for key in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture", "use_noise"):
        if key in synthesis:
            cfg[key] = synthesis.pop(key)
    if "resample_filter" in synthesis:
        cfg["resample_filter"] = _filter_list(synthesis.pop("resample_filter"), where)
    _check_same(synthesis.pop("activation", None), "lrelu", "synthesis activation", where)
    _check_same(synthesis.pop("kernel_size", None), 3, "kernel_size", where)
    _leftovers(synthesis, _G_INERT, f"{where} synthesis")
    if cfg.get("w_avg_beta") is None:
        cfg.pop("w_avg_beta", None)
    return _build_config(GeneratorConfig, cfg, "generator", where)


_SG3_MAPPING = {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier", "w_avg_beta": "w_avg_beta"}
_SG3_SYNTHESIS = (
    "channel_base",
    "channel_max",
    "num_layers",
    "num_critical",
    "first_cutoff",
    "first_stopband",
    "last_stopband_rel",
    "margin_size",
    "output_scale",
    "num_fp16_res",
    "conv_kernel",
    "filter_size",
    "lrelu_upsampling",
    "use_radial_filters",
    "conv_clamp",
    "magnitude_ema_beta",
)


def stylegan3_config(rec: PersistentRecord, where: str) -> StyleGAN3Config:
    """The StyleGAN3Config equivalent to stylegan3's ``Generator(*init_args, **init_kwargs)``."""
    kw = _arguments(rec, _G_POSITIONAL[:6], where)
    _require(kw, ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"), where)
    mapping = _sub(kw, "mapping_kwargs", where)
    cfg: dict[str, Any] = {k: int(kw.pop(k)) for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")}
    for src, dst in _SG3_MAPPING.items():
        if src in mapping:
            cfg[dst] = mapping.pop(src)
    _leftovers(mapping, set(), f"{where} mapping")
    for key in _SG3_SYNTHESIS:
        if key in kw:
            value = kw.pop(key)
            # numpy scalars from a training script's arithmetic would not survive JSON metadata
            cfg[key] = value.item() if hasattr(value, "item") else value
    _leftovers(kw, set(), f"{where} synthesis")
    return _build_config(StyleGAN3Config, cfg, "StyleGAN3 generator", where)


def _build_config(cls: type, cfg: dict[str, Any], what: str, where: str) -> Any:
    try:
        return cls(**cfg).validate()
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: invalid {what} configuration ({exc})") from None


def discriminator_config(rec: PersistentRecord, where: str) -> DiscriminatorConfig:
    """The DiscriminatorConfig equivalent to NVIDIA's ``Discriminator(*init_args, **init_kwargs)``."""
    kw = _arguments(rec, _D_POSITIONAL, where)
    _require(kw, ("c_dim", "img_resolution", "img_channels"), where)
    block = _sub(kw, "block_kwargs", where)
    mapping = _sub(kw, "mapping_kwargs", where)
    epilogue = _sub(kw, "epilogue_kwargs", where)
    cfg: dict[str, Any] = {}
    for key in (
        "c_dim",
        "img_resolution",
        "img_channels",
        "architecture",
        "channel_base",
        "channel_max",
        "num_fp16_res",
        "conv_clamp",
        "cmap_dim",
    ):
        if key in kw:
            cfg[key] = kw.pop(key)
    _leftovers(kw, _D_INERT, where)

    if "resample_filter" in block:
        cfg["resample_filter"] = _filter_list(block.pop("resample_filter"), where)
    _check_same(block.pop("activation", None), "lrelu", "block activation", where)
    _check_same(block.pop("architecture", None), cfg.get("architecture", "resnet"), "block architecture", where)
    _leftovers(block, _D_INERT, f"{where} block")

    if "num_layers" in mapping:
        cfg["mapping_layers"] = mapping.pop("num_layers")
    if "lr_multiplier" in mapping:
        cfg["mapping_lr_multiplier"] = mapping.pop("lr_multiplier")
    _check_same(mapping.pop("activation", None), "lrelu", "mapping activation", where)
    probe = DiscriminatorConfig(
        **{k: v for k, v in cfg.items() if k in ("c_dim", "channel_base", "channel_max", "img_resolution", "cmap_dim")}
    )
    cmap = probe.resolved_cmap_dim
    for key in ("embed_features", "layer_features"):
        # gancraft's conditional D uses cmap_dim for both, which is NVIDIA's default
        _check_same(mapping.pop(key, None), cmap, f"mapping {key}", where)
    _leftovers(mapping, set(), f"{where} mapping")

    if "mbstd_group_size" in epilogue:
        cfg["mbstd_group_size"] = epilogue.pop("mbstd_group_size")
    if "mbstd_num_channels" in epilogue:
        cfg["mbstd_num_channels"] = epilogue.pop("mbstd_num_channels")
    _check_same(epilogue.pop("activation", None), "lrelu", "epilogue activation", where)
    _check_same(epilogue.pop("architecture", None), cfg.get("architecture", "resnet"), "epilogue architecture", where)
    _leftovers(epilogue, set(), f"{where} epilogue")
    return _build_config(DiscriminatorConfig, cfg, "discriminator", where)


__all__ = [
    "sniff_pickle",
    "read_nvidia_pickle",
    "read_pickle",
    "nvidia_to_checkpoint",
    "generator_config",
    "stylegan3_config",
    "discriminator_config",
]
