"""rosinality stylegan2-pytorch ``.pt`` checkpoints: read them, and export gancraft models to them.

rosinality's networks compute the same functions as NVIDIA's under other names, so a file
translates tensor by tensor: every pair below is the same numbers in a different shape
(rosinality keeps a leading batch axis on conv weights and the const input, a (1,3,1,1) toRGB
bias, (1,) noise strengths and (1,1,H,W) noise maps). The two places where the maths is
arranged differently carry over without changing a number:

* rosinality multiplies the conv weight by 1/sqrt(fan_in) before modulating; NVIDIA leaves
  the weight alone. For demodulated convs the factor cancels (up to where the 1e-8 of the
  demodulation lands, far below float32 noise of an image); for toRGB NVIDIA multiplies the
  styles by the same 1/sqrt(in_channels), which is the identical product.
* rosinality's upsampling blur kernels are stored already multiplied by factor**2 = 4,
  NVIDIA's ``resample_filter`` is normalised to sum 1 and the gain is applied at run time.

What the file does not say is rebuilt from shapes: resolution from the number of toRGB
layers (generator) or residual blocks (discriminator), style_dim and n_mlp from the mapping,
channels per resolution from the weights, fitted to NVIDIA's
``min(channel_base // res, channel_max)`` (channel_multiplier 2 is channel_base 32768, 1 is
16384, channel_max 512) and checked against every shape. rosinality's ``lr_mlp`` is not
stored; every published model uses the default 0.01, which is assumed.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError, first_line
from ..nets.config import DiscriminatorConfig, GeneratorConfig
from .clamp import DEFAULT_SAMPLES, DEFAULT_SEED, ClampReport, measure_clamp
from .core import Checkpoint
from .formats import CheckpointFormat, register

BLUR_TAPS = [1, 3, 3, 1]
RECOMMENDED_LR_MLP = 0.01
# how many z to average when a file has no latent_avg; a fixed seed keeps reads reproducible
W_AVG_SAMPLES = 10_000
W_AVG_SEED = 0
# what rosinality's train.py stores beside the networks: training state, not model
TRAINING_KEYS = ("g_optim", "d_optim", "args", "ada_aug_p")
# generator networks in the file -> gancraft names; a file may hold either or both
G_NETS = (("g_ema", "G_ema"), ("g", "G"))
# the w average of G (non-EMA) has no place in rosinality's format; gancraft stores it here so
# its own exports round-trip exactly (rosinality's scripts look keys up by name and ignore it)
G_LATENT_AVG = "g_latent_avg"
# torch.save's pre-zip ("legacy") format starts with a pickled magic number
_TORCH_LEGACY_MAGIC = bytes.fromhex("80028a0a6cfc9c46f9206aa85019")


@dataclass(frozen=True)
class _Pair:
    """One tensor under both names, with the shape each side stores it in."""

    ros: str
    ros_shape: tuple[int, ...]
    nv: str
    nv_shape: tuple[int, ...]
    noise: bool = False  # absent on the NVIDIA side when use_noise is off


@dataclass
class _Layout:
    pairs: list[_Pair]
    ros_buffers: dict[str, torch.Tensor]  # only rosinality stores these (blur kernels)
    nv_buffers: dict[str, torch.Tensor]  # only NVIDIA stores these (resample filters)


def _kernel(gain: float = 1.0) -> torch.Tensor:
    k = torch.tensor(BLUR_TAPS, dtype=torch.float32)
    k = torch.outer(k, k)
    return k / k.sum() * gain


def _modconv(pairs: list[_Pair], ros: str, nv: str, in_ch: int, out_ch: int, k: int, style_dim: int) -> None:
    pairs += [
        _Pair(f"{ros}.conv.weight", (1, out_ch, in_ch, k, k), f"{nv}.weight", (out_ch, in_ch, k, k)),
        _Pair(f"{ros}.conv.modulation.weight", (in_ch, style_dim), f"{nv}.affine.weight", (in_ch, style_dim)),
        _Pair(f"{ros}.conv.modulation.bias", (in_ch,), f"{nv}.affine.bias", (in_ch,)),
    ]


def _styled_conv(
    lay: _Layout, ros: str, nv: str, noise: str, in_ch: int, out_ch: int, res: int, style_dim: int
) -> None:
    _modconv(lay.pairs, ros, nv, in_ch, out_ch, 3, style_dim)
    lay.pairs += [
        _Pair(f"{ros}.noise.weight", (1,), f"{nv}.noise_strength", (), noise=True),
        _Pair(f"{ros}.activate.bias", (out_ch,), f"{nv}.bias", (out_ch,)),
        _Pair(f"noises.{noise}", (1, 1, res, res), f"{nv}.noise_const", (res, res), noise=True),
    ]
    lay.nv_buffers[f"{nv}.resample_filter"] = _kernel()


def _to_rgb(lay: _Layout, ros: str, nv: str, in_ch: int, style_dim: int) -> None:
    _modconv(lay.pairs, ros, nv, in_ch, 3, 1, style_dim)
    lay.pairs.append(_Pair(f"{ros}.bias", (1, 3, 1, 1), f"{nv}.bias", (3,)))


def _g_layout(size: int, style_dim: int, n_mlp: int, ch: Mapping[int, int]) -> _Layout:
    lay = _Layout([], {}, {})
    for i in range(n_mlp):
        lay.pairs += [
            _Pair(f"style.{i + 1}.weight", (style_dim, style_dim), f"mapping.fc{i}.weight", (style_dim, style_dim)),
            _Pair(f"style.{i + 1}.bias", (style_dim,), f"mapping.fc{i}.bias", (style_dim,)),
        ]
    lay.pairs.append(_Pair("input.input", (1, ch[4], 4, 4), "synthesis.b4.const", (ch[4], 4, 4)))
    lay.nv_buffers["synthesis.b4.resample_filter"] = _kernel()
    _styled_conv(lay, "conv1", "synthesis.b4.conv1", "noise_0", ch[4], ch[4], 4, style_dim)
    _to_rgb(lay, "to_rgb1", "synthesis.b4.torgb", ch[4], style_dim)
    res = 8
    k = 0
    while res <= size:
        blk = f"synthesis.b{res}"
        _styled_conv(lay, f"convs.{2 * k}", f"{blk}.conv0", f"noise_{2 * k + 1}", ch[res // 2], ch[res], res, style_dim)
        _styled_conv(lay, f"convs.{2 * k + 1}", f"{blk}.conv1", f"noise_{2 * k + 2}", ch[res], ch[res], res, style_dim)
        _to_rgb(lay, f"to_rgbs.{k}", f"{blk}.torgb", ch[res], style_dim)
        # rosinality folds the upsampling gain (factor**2) into the stored kernels
        lay.ros_buffers[f"convs.{2 * k}.conv.blur.kernel"] = _kernel(4.0)
        lay.ros_buffers[f"to_rgbs.{k}.upsample.kernel"] = _kernel(4.0)
        lay.nv_buffers[f"{blk}.resample_filter"] = _kernel()
        res *= 2
        k += 1
    return lay


def _conv_layer(lay: _Layout, ros_w: str, ros_b: str | None, nv: str, in_ch: int, out_ch: int, k: int) -> None:
    lay.pairs.append(_Pair(ros_w, (out_ch, in_ch, k, k), f"{nv}.weight", (out_ch, in_ch, k, k)))
    if ros_b is not None:
        lay.pairs.append(_Pair(ros_b, (out_ch,), f"{nv}.bias", (out_ch,)))
    lay.nv_buffers[f"{nv}.resample_filter"] = _kernel()


def _d_layout(size: int, ch: Mapping[int, int]) -> _Layout:
    lay = _Layout([], {}, {})
    _conv_layer(lay, "convs.0.0.weight", "convs.0.1.bias", f"b{size}.fromrgb", 3, ch[size], 1)
    res = size
    idx = 1
    while res > 4:
        c_in, c_out = ch[res], ch[res // 2]
        _conv_layer(lay, f"convs.{idx}.conv1.0.weight", f"convs.{idx}.conv1.1.bias", f"b{res}.conv0", c_in, c_in, 3)
        _conv_layer(lay, f"convs.{idx}.conv2.1.weight", f"convs.{idx}.conv2.2.bias", f"b{res}.conv1", c_in, c_out, 3)
        _conv_layer(lay, f"convs.{idx}.skip.1.weight", None, f"b{res}.skip", c_in, c_out, 1)
        lay.ros_buffers[f"convs.{idx}.conv2.0.kernel"] = _kernel()
        lay.ros_buffers[f"convs.{idx}.skip.0.kernel"] = _kernel()
        lay.nv_buffers[f"b{res}.resample_filter"] = _kernel()
        res //= 2
        idx += 1
    c4 = ch[4]
    _conv_layer(lay, "final_conv.0.weight", "final_conv.1.bias", "b4.conv", c4 + 1, c4, 3)
    lay.pairs += [
        _Pair("final_linear.0.weight", (c4, c4 * 16), "b4.fc.weight", (c4, c4 * 16)),
        _Pair("final_linear.0.bias", (c4,), "b4.fc.bias", (c4,)),
        _Pair("final_linear.1.weight", (1, c4), "b4.out.weight", (1, c4)),
        _Pair("final_linear.1.bias", (1,), "b4.out.bias", (1,)),
    ]
    return lay


# ---------------------------------------------------------------------------------------------
# channel tables


def _fit_channels(ch: Mapping[int, int], where: str) -> tuple[int, int]:
    """(channel_base, channel_max) with min(channel_base // res, channel_max) == ch[res] for all res.

    Stock multipliers (32768, 16384) are preferred where they fit, so a stock model reads back
    with the numbers a user expects; otherwise the smallest base that fits.
    """
    cmax = max(ch.values())
    lo, hi = 1, None
    for res, c in ch.items():
        if c < cmax:
            lo = max(lo, c * res)
            hi = c * res + res - 1 if hi is None else min(hi, c * res + res - 1)
        else:
            lo = max(lo, cmax * res)

    def fits(base: int) -> bool:
        return all(min(base // res, cmax) == c for res, c in ch.items())

    for base in ([32768, 16384] if cmax == 512 else []) + [lo]:
        if (hi is None or base <= hi) and base >= lo and fits(base):
            return base, cmax
    table = ", ".join(f"{r}: {c}" for r, c in sorted(ch.items()))
    raise CheckpointError(
        f"{where}: channels per resolution ({table}) do not follow min(channel_base / resolution, channel_max), "
        "so gancraft's StyleGAN2 networks cannot hold them"
    )


def stock_channel_multiplier(channels: Mapping[int, int]) -> int | None:
    """The channel_multiplier for which rosinality's built-in channel table gives `channels`, or None.

    rosinality uses 512 channels up to 32x32 and 16384 * multiplier / res above. Models that
    stop at 32x32 fit every multiplier; 2 (rosinality's default) is reported for them.
    """
    for cm in (2, 1, 4, 8):
        if all(c == (512 if res <= 32 else 16384 * cm // res) for res, c in channels.items()):
            return cm
    return None


# ---------------------------------------------------------------------------------------------
# reading


def read_rosinality(path: str | os.PathLike, obj: Any = None) -> Checkpoint:
    """Read a rosinality stylegan2-pytorch checkpoint (``g_ema``, ``g``, ``d``, ``latent_avg``).

    `obj` is the already-unpickled content when the caller has it; otherwise the file is read
    with ``torch.load(weights_only=True)``, which rebuilds tensors and plain containers only
    (plus the argparse.Namespace that rosinality's train.py stores as ``args``).

    ``latent_avg`` becomes G_ema's ``mapping.w_avg``. A generator without a stored average gets
    the mean of its mapping over 10,000 fixed-seed z, and ``extra['w_avg_estimated']`` is True
    (``extra['w_avg_estimated_for']`` lists which nets). Optimiser state and train.py's other
    entries are dropped; unknown top-level entries are listed in ``extra['ignored_keys']``.
    Unknown or missing tensors in a network, and shapes that no StyleGAN2 configuration
    explains, raise CheckpointError.
    """
    p = Path(path)
    if obj is None:
        obj = load_pt(p)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{p}: not a rosinality checkpoint (holds a {type(obj).__name__}, expected a dict with g_ema / g / d)"
        )
    if not any(k in obj for k in ("g_ema", "g", "d")):
        keys = ", ".join(map(str, list(obj)[:8])) or "nothing"
        raise CheckpointError(f"{p}: not a rosinality checkpoint (no g_ema, g or d entry; has {keys})")

    tensors: dict[str, torch.Tensor] = {}
    g_cfg: GeneratorConfig | None = None
    for key, net in G_NETS:
        if key not in obj:
            continue
        sd = _state_dict(obj[key], f"{p}: {key}")
        cfg, lay = _infer_generator(sd, f"{p}: {key}")
        if g_cfg is not None and cfg != g_cfg:
            raise CheckpointError(
                f"{p}: g and g_ema have different architectures ({_describe(cfg)} vs {_describe(g_cfg)})"
            )
        g_cfg = cfg
        tensors.update({f"{net}.{k}": v for k, v in _to_nvidia(sd, lay, f"{p}: {key}").items()})
    if g_cfg is None:
        raise CheckpointError(f"{p}: holds only a discriminator (d); gancraft needs a generator (g_ema or g)")

    d_cfg = None
    if "d" in obj:
        sd = _state_dict(obj["d"], f"{p}: d")
        d_cfg, lay = _infer_discriminator(sd, f"{p}: d")
        tensors.update({f"D.{k}": v for k, v in _to_nvidia(sd, lay, f"{p}: d").items()})

    estimated = []
    for key, net, avg_key in (("g_ema", "G_ema", "latent_avg"), ("g", "G", G_LATENT_AVG)):
        if key not in obj:
            continue
        if avg_key in obj:
            tensors[f"{net}.mapping.w_avg"] = _latent_avg(obj[avg_key], g_cfg.w_dim, f"{p}: {avg_key}")
        else:
            tensors[f"{net}.mapping.w_avg"] = estimate_w_avg(tensors, net, g_cfg)
            estimated.append(net)

    known = {"g_ema", "g", "d", "latent_avg", G_LATENT_AVG, *TRAINING_KEYS}
    extra: dict[str, Any] = {"w_avg_estimated": bool(estimated)}
    if estimated:
        extra["w_avg_estimated_for"] = estimated
    ignored = sorted(str(k) for k in obj if k not in known)
    if ignored:
        extra["ignored_keys"] = ignored
    return Checkpoint(tensors=tensors, g_config=g_cfg, d_config=d_cfg, extra=extra, source_format="rosinality", path=p)


def load_pt(p: Path) -> Any:
    """A .pt file's content through ``torch.load(weights_only=True)``: tensors and plain data only,
    every failure (missing, refused import, corrupt) as one CheckpointError line."""
    try:
        # train.py pickles its argparse.Namespace; rebuilding one only sets attributes
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise CheckpointError(f"{p}: is a directory, expected a .pt file") from None
    except PermissionError:
        raise CheckpointError(f"{p}: permission denied") from None
    except Exception as exc:  # torch raises many types for bad files; all mean "cannot use it"
        text = str(exc)
        blocked = re.search(r"GLOBAL ([\w.]+)", text)
        if blocked:
            raise CheckpointError(
                f"{p}: refused: the file asks to import {blocked.group(1)}, and loading it could run code from the "
                "file; gancraft reads only tensors and plain data from .pt files"
            ) from None
        if "Weights only load failed" in text:
            raise CheckpointError(
                f"{p}: cannot read: its pickled data is malformed or holds objects other than tensors and plain data"
            ) from None
        first = first_line(exc)[:200]
        raise CheckpointError(f"{p}: cannot read as a PyTorch .pt file (corrupt or truncated?): {first}") from None


def _state_dict(value: Any, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(value, Mapping):
        raise CheckpointError(f"{where} is a {type(value).__name__}, expected a state dict of tensors")
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{where}: entry {k!r} is not a named tensor")
        if not v.is_floating_point():
            raise CheckpointError(f"{where}.{k} has dtype {v.dtype}, expected floating point")
        out[k] = v
    return out


def _indices(sd: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def _shape(sd: Mapping[str, torch.Tensor], key: str, ndim: int, where: str) -> tuple[int, ...]:
    if key not in sd:
        raise CheckpointError(f"{where}: missing tensor {key}; not a rosinality StyleGAN2 network")
    shape = tuple(sd[key].shape)
    if len(shape) != ndim:
        raise CheckpointError(f"{where}.{key} has shape {shape}, expected {ndim} dimensions")
    return shape


def _infer_generator(sd: Mapping[str, torch.Tensor], where: str) -> tuple[GeneratorConfig, _Layout]:
    mlp = _indices(sd, r"style\.(\d+)\.weight$")
    if not mlp or mlp != list(range(1, len(mlp) + 1)):
        raise CheckpointError(f"{where}: no mapping network (style.1 … style.N); not a rosinality generator")
    style_dim = _shape(sd, "style.1.weight", 2, where)[1]
    n_up = len(_indices(sd, r"to_rgbs\.(\d+)\."))
    size = 4 * 2**n_up
    ch = {4: _shape(sd, "input.input", 4, where)[1]}
    for k in range(n_up):
        ch[8 * 2**k] = _shape(sd, f"to_rgbs.{k}.conv.weight", 5, where)[2]
    base, cmax = _fit_channels(ch, where)
    cfg = GeneratorConfig(
        z_dim=style_dim,
        w_dim=style_dim,
        img_resolution=size,
        img_channels=3,
        mapping_layers=len(mlp),
        mapping_lr_multiplier=RECOMMENDED_LR_MLP,
        channel_base=base,
        channel_max=cmax,
    )
    return cfg, _g_layout(size, style_dim, len(mlp), ch)


def _infer_discriminator(sd: Mapping[str, torch.Tensor], where: str) -> tuple[DiscriminatorConfig, _Layout]:
    blocks = _indices(sd, r"convs\.(\d+)\.")
    if not blocks or blocks != list(range(len(blocks))):
        raise CheckpointError(f"{where}: no convs.0 … convs.N layers; not a rosinality discriminator")
    size = 4 * 2 ** (len(blocks) - 1)
    if size < 8:
        raise CheckpointError(f"{where}: discriminator has no residual blocks; not a rosinality discriminator")
    ch = {size: _shape(sd, "convs.0.0.weight", 4, where)[0]}
    res = size
    for idx in range(1, len(blocks)):
        ch[res // 2] = _shape(sd, f"convs.{idx}.conv2.1.weight", 4, where)[0]
        res //= 2
    base, cmax = _fit_channels(ch, where)
    cfg = DiscriminatorConfig(c_dim=0, img_resolution=size, img_channels=3, channel_base=base, channel_max=cmax)
    return cfg, _d_layout(size, ch)


def _to_nvidia(sd: Mapping[str, torch.Tensor], lay: _Layout, where: str) -> dict[str, torch.Tensor]:
    expected = {pr.ros for pr in lay.pairs} | set(lay.ros_buffers)
    unknown = sorted(k for k in sd if k not in expected)
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise CheckpointError(
            f"{where}: unknown tensor {unknown[0]}{more}; not a stock rosinality StyleGAN2 "
            "network (modified architectures and conditional models are not supported)"
        )
    missing = sorted(k for k in expected if k not in sd)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise CheckpointError(f"{where}: missing tensor {missing[0]}{more}")
    out = {}
    for pr in lay.pairs:
        t = sd[pr.ros]
        if tuple(t.shape) != pr.ros_shape:
            raise CheckpointError(
                f"{where}.{pr.ros} has shape {tuple(t.shape)}, but the architecture inferred "
                f"from the other tensors needs {pr.ros_shape}"
            )
        out[pr.nv] = t.detach().to(torch.float32).reshape(pr.nv_shape).contiguous().clone()
    for k, want in lay.ros_buffers.items():
        got = sd[k]
        if tuple(got.shape) != tuple(want.shape) or not torch.allclose(got.float(), want, rtol=1e-5, atol=1e-7):
            raise CheckpointError(
                f"{where}.{k} is not the [1, 3, 3, 1] blur kernel rosinality uses by default; "
                "models trained with another blur_kernel are not supported"
            )
    out.update({k: v.clone() for k, v in lay.nv_buffers.items()})
    return out


def _latent_avg(value: Any, w_dim: int, where: str) -> torch.Tensor:
    # convert_weight.py stores shape (w_dim,), mean_latent() gives (1, w_dim): accept both
    if not isinstance(value, torch.Tensor) or not value.is_floating_point() or value.numel() != w_dim:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise CheckpointError(f"{where} is {shape}, expected a float tensor of {w_dim} values (the average w)")
    return value.detach().to(torch.float32).reshape(w_dim).contiguous().clone()


@torch.no_grad()
def estimate_w_avg(
    tensors: Mapping[str, torch.Tensor],
    net: str,
    cfg: GeneratorConfig,
    samples: int = W_AVG_SAMPLES,
    seed: int = W_AVG_SEED,
) -> torch.Tensor:
    """Mean of the mapping network's output over `samples` fixed-seed z (the truncation centre)."""
    z = torch.randn(samples, cfg.z_dim, generator=torch.Generator().manual_seed(seed))
    x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
    lr = cfg.mapping_lr_multiplier
    for i in range(cfg.mapping_layers):
        w = tensors[f"{net}.mapping.fc{i}.weight"]
        b = tensors[f"{net}.mapping.fc{i}.bias"]
        x = torch.nn.functional.linear(x, w * (lr / w.shape[1] ** 0.5), b * lr)
        x = torch.nn.functional.leaky_relu(x, 0.2) * 2**0.5
    return x.mean(dim=0)


def _describe(cfg: GeneratorConfig) -> str:
    return (
        f"{cfg.img_resolution}px, style_dim {cfg.w_dim}, {cfg.mapping_layers} mapping layers, "
        f"channel_base {cfg.channel_base}, channel_max {cfg.channel_max}"
    )


# ---------------------------------------------------------------------------------------------
# writing


def write_rosinality(
    ckpt: Checkpoint,
    path: str | os.PathLike,
    allow_custom_channels: bool = False,
    clamp: ClampReport | None = None,
    allow_clamp: bool = False,
) -> dict[str, dict[str, int]]:
    """Write `ckpt` as a rosinality ``.pt`` that rosinality's model.py loads with strict load_state_dict.

    The file holds ``g_ema`` (and ``g``, ``d`` when present), ``latent_avg`` (G_ema's
    ``mapping.w_avg``), every buffer rosinality registers (blur and upsample kernels, the noise
    maps), and, when G is present, ``g_latent_avg`` so gancraft reads G's average back exactly.
    A checkpoint with G but no G_ema gets G's weights as ``g_ema`` too, since rosinality's
    scripts all sample from ``g_ema``.
    A model without noise inputs is written with zero noise strengths, which is the same model.

    Refused, because rosinality's code would compute something else or cannot be built so:
    conditional networks (c_dim > 0); img_channels other than 3; z_dim != w_dim or mapping
    layer widths other than w_dim (rosinality has one style_dim); mapping_lr_multiplier other
    than 0.01 (rosinality's lr_mlp is a constructor argument no file records, and every script
    uses 0.01); resample filters other than [1, 3, 3, 1]; discriminator minibatch-std settings
    other than group 4, 1 channel; and channel layouts that no rosinality channel_multiplier
    produces, unless `allow_custom_channels` (for forks that take a custom channel table).

    rosinality never clamps activations, so a model with ``conv_clamp`` (every
    stylegan2-ada-pytorch model) is exported only when its clamps never engage: `clamp` is the
    measurement (``check_rosinality_export``; measured here with its defaults when None), and
    `allow_clamp` exports even when they do.

    Writes straight to `path` with torch.save: callers wanting atomicity pass a temporary path
    (gancraft.checkpoint.save does). Returns the constructor arguments rosinality needs:
    {"generator": {size, style_dim, n_mlp, channel_multiplier}, "discriminator": {size,
    channel_multiplier}} (channel_multiplier 0 when the layout is custom).
    """
    where = _where(ckpt)
    g = ckpt.g_config
    nets = ckpt.nets
    lay, d_lay, result = _plan_export(ckpt, allow_custom_channels)
    # measured last: it runs the networks, and every cheaper refusal should come first
    _refuse_engaged_clamp(clamp if clamp is not None else measure_clamp(ckpt), allow_clamp, where)

    obj: dict[str, Any] = {}
    for key, net in G_NETS:
        if net in nets:
            obj[key] = _to_rosinality(ckpt.state_dict(net), lay, g.use_noise, f"{where}: {net}")
    obj["latent_avg"] = _w_avg(ckpt, "G_ema" if "G_ema" in nets else "G", g.w_dim, where)
    if "G" in nets:
        obj[G_LATENT_AVG] = _w_avg(ckpt, "G", g.w_dim, where)
    if "G_ema" not in nets:
        obj["g_ema"] = obj["g"]
    if d_lay is not None:
        obj["d"] = _to_rosinality(ckpt.state_dict("D"), d_lay, True, f"{where}: D")

    try:
        torch.save(obj, Path(path))
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return result


def check_rosinality_export(
    ckpt: Checkpoint,
    allow_custom_channels: bool = False,
    samples: int = DEFAULT_SAMPLES,
    seed: int = DEFAULT_SEED,
    allow_clamp: bool = False,
    device: str | torch.device = "cpu",
) -> ClampReport | None:
    """Refuse what ``write_rosinality`` would refuse, measuring last whether conv_clamp engages.

    Returns the clamp measurement (``measure_clamp``; pass it on as ``write_rosinality(clamp=...)``),
    or None for a model without clamps.
    """
    _plan_export(ckpt, allow_custom_channels)
    report = measure_clamp(ckpt, samples=samples, seed=seed, device=device)
    _refuse_engaged_clamp(report, allow_clamp, _where(ckpt))
    return report


@register
class Rosinality(CheckpointFormat):
    name = "rosinality"
    container = "torch"
    suffix = ".pt"
    summary = "a .pt that loads in rosinality's stylegan2-pytorch"
    options = ("allow_custom_channels", "clamp_samples", "allow_clamp")

    def detect(self, head: bytes) -> bool:
        return head.startswith(b"PK\x03\x04") or head.startswith(_TORCH_LEGACY_MAGIC)

    def read(self, path: Path) -> Checkpoint:
        return read_rosinality(path)

    def prepare(
        self,
        ckpt: Checkpoint,
        device: str | torch.device = "cpu",
        allow_custom_channels: bool = False,
        clamp_samples: int | None = None,
        allow_clamp: bool = False,
    ) -> tuple[dict[str, Any], str | None]:
        clamp = check_rosinality_export(
            ckpt,
            allow_custom_channels,
            samples=clamp_samples or DEFAULT_SAMPLES,
            allow_clamp=allow_clamp,
            device=device,
        )
        options = {"allow_custom_channels": allow_custom_channels, "clamp": clamp, "allow_clamp": allow_clamp}
        return options, None if clamp is None else clamp.describe()

    def write(self, ckpt: Checkpoint, path: Path, **options: Any) -> dict[str, dict[str, int]]:
        return write_rosinality(ckpt, path, **options)


def _where(ckpt: Checkpoint) -> str:
    return f"{ckpt.path}" if ckpt.path else "checkpoint"


def _plan_export(ckpt: Checkpoint, allow_custom_channels: bool) -> tuple[_Layout, _Layout | None, dict]:
    """The generator and discriminator layouts and rosinality's constructor arguments, or the refusal."""
    where = _where(ckpt)
    g = ckpt.g_config
    _check_generator_exportable(g, where)
    g_ch = {res: g.channels(res) for res in g.block_resolutions}
    g_cm = _multiplier_or_refuse(g_ch, "generator", where, allow_custom_channels)
    lay = _g_layout(g.img_resolution, g.w_dim, g.mapping_layers, g_ch)

    nets = ckpt.nets
    if "G_ema" not in nets and "G" not in nets:
        raise CheckpointError(f"{where}: holds no generator; a rosinality file needs g_ema or g")
    result = {
        "generator": {
            "size": g.img_resolution,
            "style_dim": g.w_dim,
            "n_mlp": g.mapping_layers,
            "channel_multiplier": g_cm,
        }
    }
    d_lay = None
    if "D" in nets and ckpt.d_config is not None:
        d = ckpt.d_config
        _check_discriminator_exportable(d, where)
        d_ch = {res: d.channels(res) for res in [*d.block_resolutions, 4]}
        d_cm = _multiplier_or_refuse(d_ch, "discriminator", where, allow_custom_channels)
        d_lay = _d_layout(d.img_resolution, d_ch)
        result["discriminator"] = {"size": d.img_resolution, "channel_multiplier": d_cm}
    return lay, d_lay, result


def _refuse_engaged_clamp(report: ClampReport | None, allow_clamp: bool, where: str) -> None:
    if report is not None and report.engaged and not allow_clamp:
        raise CheckpointError(
            f"{where}: cannot export to rosinality format: {report.describe()}; rosinality never clamps, so its "
            "images would differ (convert anyway with --allow-clamp)"
        )


def _check_generator_exportable(g: GeneratorConfig, where: str) -> None:
    problems = []
    if g.c_dim > 0:
        problems.append(f"it is conditional (c_dim={g.c_dim}); rosinality's generator takes no class labels")
    if g.img_channels != 3:
        problems.append(f"it makes {g.img_channels}-channel images; rosinality's toRGB layers output 3")
    if g.z_dim != g.w_dim:
        problems.append(f"z_dim {g.z_dim} differs from w_dim {g.w_dim}; rosinality has a single style_dim")
    if g.layer_features is not None and g.layer_features != g.w_dim:
        problems.append(
            f"layer_features={g.layer_features} differs from w_dim {g.w_dim}; rosinality's mapping is style_dim wide"
        )
    if abs(g.mapping_lr_multiplier - RECOMMENDED_LR_MLP) > 1e-12:
        problems.append(
            f"mapping_lr_multiplier is {g.mapping_lr_multiplier}; rosinality's files assume lr_mlp "
            f"{RECOMMENDED_LR_MLP}, so its code would compute a different mapping"
        )
    if list(g.resample_filter) != BLUR_TAPS:
        problems.append(f"resample_filter {g.resample_filter} is not [1, 3, 3, 1]")
    if problems:
        raise CheckpointError(f"{where}: cannot export the generator to rosinality format: {problems[0]}")


def _check_discriminator_exportable(d: DiscriminatorConfig, where: str) -> None:
    problems = []
    if d.c_dim > 0:
        problems.append(f"it is conditional (c_dim={d.c_dim}); rosinality's discriminator takes no labels")
    if d.img_channels != 3:
        problems.append(f"it reads {d.img_channels}-channel images, rosinality's reads 3")
    if d.mbstd_group_size != 4 or d.mbstd_num_channels != 1:
        problems.append(
            f"minibatch-std group {d.mbstd_group_size} with {d.mbstd_num_channels} channel(s); "
            "rosinality hard-codes group 4 with 1 channel"
        )
    if list(d.resample_filter) != BLUR_TAPS:
        problems.append(f"resample_filter {d.resample_filter} is not [1, 3, 3, 1]")
    if problems:
        raise CheckpointError(
            f"{where}: cannot export the discriminator to rosinality format: {problems[0]} "
            "(export without it: drop D first)"
        )


def _multiplier_or_refuse(ch: Mapping[int, int], what: str, where: str, allow_custom: bool) -> int:
    cm = stock_channel_multiplier(ch)
    if cm is not None:
        return cm
    if allow_custom:
        return 0
    table = ", ".join(f"{r}: {c}" for r, c in sorted(ch.items()))
    raise CheckpointError(
        f"{where}: cannot export the {what} to rosinality format: its channels per resolution ({table}) match no "
        "rosinality channel_multiplier (512 up to 32px, then 16384 * multiplier / resolution)"
    )


def _to_rosinality(
    sd: Mapping[str, torch.Tensor], lay: _Layout, use_noise: bool, where: str
) -> dict[str, torch.Tensor]:
    covered = {pr.nv for pr in lay.pairs} | set(lay.nv_buffers) | {"mapping.w_avg"}
    stray = sorted(k for k in sd if k not in covered)
    if stray:
        raise CheckpointError(
            f"{where}: tensor {stray[0]} has no counterpart in rosinality's networks "
            "(does the checkpoint's config match its tensors?)"
        )
    out = {}
    for pr in lay.pairs:
        if pr.noise and not use_noise:
            out[pr.ros] = torch.zeros(pr.ros_shape)
            continue
        if pr.nv not in sd:
            raise CheckpointError(f"{where}: missing tensor {pr.nv}")
        t = sd[pr.nv]
        if tuple(t.shape) != pr.nv_shape:
            raise CheckpointError(f"{where}.{pr.nv} has shape {tuple(t.shape)}, its config needs {pr.nv_shape}")
        out[pr.ros] = t.detach().to(torch.float32).reshape(pr.ros_shape).contiguous().clone()
    out.update({k: v.clone() for k, v in lay.ros_buffers.items()})
    return out


def _w_avg(ckpt: Checkpoint, net: str, w_dim: int, where: str) -> torch.Tensor:
    key = f"{net}.mapping.w_avg"
    if key not in ckpt.tensors:
        raise CheckpointError(f"{where}: {net} has no mapping.w_avg; rosinality's latent_avg cannot be written")
    return _latent_avg(ckpt.tensors[key], w_dim, f"{where}: {key}")


__all__ = [
    "read_rosinality",
    "write_rosinality",
    "check_rosinality_export",
    "estimate_w_avg",
    "stock_channel_multiplier",
]
