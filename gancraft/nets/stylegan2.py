"""StyleGAN2 generator and discriminator (NVIDIA stylegan2-ada-pytorch numerics and names).

Module and tensor names match NVIDIA's exactly (``synthesis.b64.conv0.affine.weight``), so the
blocks are addressable by resolution and NVIDIA state dicts load without translation.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import GancraftError
from . import ops
from .config import STYLEGAN3_NOT_TRAINABLE, DiscriminatorConfig, GeneratorConfig

PRECISIONS = ("fp32", "mixed", "bf16")

# Where a domain vector d meets a conv layer (HyperDomainNet). "after-demod" is the official code's
# order (MACderRu/HyperDomainNet, gan_models/StyleGAN2/offsets_model.py ModModulatedConv2d with
# core/stylegan_patches.py 'cin_mult'): the modulated, demodulated weight is multiplied by (1 + d)
# along its input channels, so demodulation does not undo the scale and a per-layer gain survives.
# "before-demod" scales the styles by (1 + d) before demodulation, as the paper's figure draws it
# and as gancraft applied every vector written before the order was recorded.
MODULATION_ORDERS = ("after-demod", "before-demod")
DEFAULT_MODULATION = "after-demod"
LEGACY_MODULATION = "before-demod"


def check_modulation(order: str) -> str:
    if order not in MODULATION_ORDERS:
        raise ValueError(f"modulation order {order!r}: expected one of {', '.join(MODULATION_ORDERS)}")
    return order


def stored_modulation(meta: dict, where: str = "") -> str:
    """The order a stored domain vector or hyper-network was trained with (`meta`: its domain entry
    or extra["hyper"]); without a record it is the order gancraft used before recording it."""
    order = meta.get("modulation", LEGACY_MODULATION)
    if order not in MODULATION_ORDERS:
        raise GancraftError(f"{where}modulation order {order!r} is not one of {', '.join(MODULATION_ORDERS)}")
    return order


class FullyConnectedLayer(nn.Module):
    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ):
        super().__init__()
        self.activation = activation
        # equalised learning rate: weights stored at unit scale, rescaled at run time
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)


class MappingNetwork(nn.Module):
    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        num_layers: int = 8,
        embed_features: int | None = None,
        layer_features: int | None = None,
        lr_multiplier: float = 0.01,
        w_avg_beta: float | None = 0.995,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(
                self,
                f"fc{idx}",
                FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu", lr_multiplier=lr_multiplier),
            )
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_w_avg: bool = False,
        broadcast: bool = True,
    ) -> torch.Tensor:
        """float32 w, also under a caller's autocast (bf16 training): NVIDIA's mapping is always
        float32, and the running w_avg and truncation mix w with the float32 w_avg."""
        with _without_autocast(self.fc0.weight.device):
            return self._forward(z, c, truncation_psi, truncation_cutoff, update_w_avg, broadcast)

    def _forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None,
        truncation_psi: float,
        truncation_cutoff: int | None,
        update_w_avg: bool,
        broadcast: bool,
    ) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            x = ops.normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            y = ops.normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_w_avg and self.w_avg_beta is not None:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None or not broadcast:
            return x
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x = truncate(x, self.w_avg, truncation_psi, truncation_cutoff)
        return x


def _without_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:  # a device type without autocast (meta; mps before torch 2.5): nothing to undo
        return contextlib.nullcontext()


def truncate(ws: torch.Tensor, w_avg: torch.Tensor, psi: float, cutoff: int | None = None) -> torch.Tensor:
    """Pull ws toward the average w (only the first `cutoff` layers when given)."""
    if psi == 1:
        return ws
    if cutoff is None:
        return w_avg.lerp(ws, psi)
    ws = ws.clone()
    ws[:, :cutoff] = w_avg.lerp(ws[:, :cutoff], psi)
    return ws


class SynthesisLayer(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        resample_filter: list[int] | None = None,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.up, self.use_noise, self.conv_clamp = resolution, up, use_noise, conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter or [1, 3, 3, 1]))
        self.padding = kernel_size // 2
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "const",
        fused: bool = True,
        style_scale: torch.Tensor | None = None,
        gain: float = 1.0,
        consume_input: bool = False,
        modulation: str = DEFAULT_MODULATION,
    ) -> torch.Tensor:
        styles = self.affine(w)
        input_gain = None
        if style_scale is not None and modulation == "before-demod":
            styles = styles * (1 + style_scale)
        elif style_scale is not None:
            input_gain = 1 + style_scale
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = (
                torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
            )
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            resample_filter=self.resample_filter,
            fused=fused,
            bias=self.bias,
            act="lrelu",
            gain=ops.LRELU_GAIN * gain,
            clamp=clamp,
            consume_input=consume_input,
            input_gain=input_gain,
        )


class ToRGBLayer(nn.Module):
    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1, conv_clamp: float | None = None
    ):
        super().__init__()
        self.in_channels = in_channels
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        return ops.modulated_conv2d(
            x, self.weight, styles, demodulate=False, fused=fused, bias=self.bias, clamp=self.conv_clamp
        )


class SynthesisBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        is_last: bool,
        use_noise: bool = True,
        resample_filter: list[int] | None = None,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels, self.resolution, self.is_last = in_channels, resolution, is_last
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter or [1, 3, 3, 1]))
        self.num_conv = 0
        kw = dict(
            w_dim=w_dim,
            resolution=resolution,
            use_noise=use_noise,
            resample_filter=resample_filter,
            conv_clamp=conv_clamp,
        )
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=2, **kw)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **kw)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.num_torgb = 1
        self.use_fp16 = False  # set by SynthesisNetwork from num_fp16_res

    def conv_layers(self) -> list[SynthesisLayer]:
        return [self.conv1] if self.in_channels == 0 else [self.conv0, self.conv1]

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,
        noise_mode: str = "const",
        fused: bool = True,
        style_scales: list[torch.Tensor | None] | None = None,
        channels_last: bool = False,
        dtype: torch.dtype = torch.float32,
        modulation: str = DEFAULT_MODULATION,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Activations x run in `dtype` (cast on entry); the skip image img stays float32."""
        layers = self.conv_layers()
        scales = style_scales or [None] * len(layers)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = x.to(dtype)
        for i, (layer, scale) in enumerate(zip(layers, scales)):
            # the block's input has served the previous toRGB and nothing else reads it
            x = layer(
                x,
                ws[:, i],
                noise_mode=noise_mode,
                fused=fused,
                style_scale=scale,
                consume_input=True,
                modulation=modulation,
            )
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        y = self.torgb(x, ws[:, len(layers)], fused=fused).to(torch.float32)
        if img is None:
            img = y
        elif ops.can_write_inplace(img, y):
            img = img.add_(y)
        else:
            img = img + y
        return x, img


@dataclass(frozen=True)
class LayerInfo:
    """One style-modulated layer: where its w comes from and how wide its style is."""

    name: str  # e.g. "b16.conv0"
    resolution: int
    kind: str  # "const", "conv" or "torgb"
    w_index: int  # index into ws, or -1 for the const input
    in_channels: int  # style width (the affine's output size)


class SynthesisNetwork(nn.Module):
    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        channel_base: int = 32768,
        channel_max: int = 512,
        use_noise: bool = True,
        resample_filter: list[int] | None = None,
        conv_clamp: float | None = None,
        num_fp16_res: int = 0,
    ):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2**i for i in range(2, int(np.log2(img_resolution)) + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        # NVIDIA's rule: the num_fp16_res highest resolutions, but never the 4x4 block
        fp16_resolution = max(2 ** (int(np.log2(img_resolution)) + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(
                in_ch,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=(res == img_resolution),
                use_noise=use_noise,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
            )
            block.use_fp16 = res >= fp16_resolution
            self.num_ws += block.num_conv
            if block.is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def layers(self) -> list[LayerInfo]:
        """Every modulated layer in order, with its resolution and w index (as NVIDIA counts them)."""
        out = []
        w_idx = 0
        for block in self.blocks():
            names = ["conv1"] if block.in_channels == 0 else ["conv0", "conv1"]
            for i, n in enumerate(names):
                layer = getattr(block, n)
                out.append(
                    LayerInfo(f"b{block.resolution}.{n}", block.resolution, "conv", w_idx + i, layer.in_channels)
                )
            out.append(
                LayerInfo(
                    f"b{block.resolution}.torgb", block.resolution, "torgb", w_idx + len(names), block.torgb.in_channels
                )
            )
            w_idx += len(names)
        return out

    @property
    def style_dim(self) -> int:
        """Width of a domain vector: one scale per input channel of every conv layer (not toRGB)."""
        return sum(info.in_channels for info in self.layers() if info.kind == "conv")

    def check_precision(self, precision: str) -> None:
        """Refuse an unknown precision name; every one in PRECISIONS runs here."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")

    def block_dtypes(self, precision: str = "fp32") -> list[torch.dtype]:
        """The activation dtype of each block (in blocks() order) under `precision` (see forward)."""
        self.check_precision(precision)
        blocks = self.blocks()
        if precision == "fp32":
            return [torch.float32] * len(blocks)
        if precision == "mixed":
            return [torch.float16 if b.use_fp16 else torch.float32 for b in blocks]
        any_fp16 = any(b.use_fp16 for b in blocks)
        return [torch.bfloat16 if b.use_fp16 or not any_fp16 else torch.float32 for b in blocks]

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        fused: bool | None = None,
        style_scale: torch.Tensor | None = None,
        precision: str = "fp32",
        modulation: str = DEFAULT_MODULATION,
    ) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> float32 images [N, C, H, W].

        style_scale ([N, style_dim] or [style_dim]) is a domain vector, applied to the conv layers
        in the `modulation` order (MODULATION_ORDERS).

        precision picks the dtype of each block's activations (the RGB skip image is accumulated
        and returned in float32 in every mode):

        - "fp32": every block in float32, NVIDIA's reference numerics (the default); TF32 is
          turned off while it runs (ops.exact_fp32), so this holds on Ampere and newer GPUs too.
        - "mixed": NVIDIA's mixed precision: blocks at the num_fp16_res highest resolutions (never
          the 4x4 block) run in float16, the others in float32; with num_fp16_res 0 this is fp32.
          Unlike NVIDIA's code, which falls back to float32 off CUDA, this also holds on CPU.
        - "bf16": the same blocks in bfloat16; when num_fp16_res is 0, every block in bfloat16.
        """
        with ops.exact_fp32() if precision == "fp32" else contextlib.nullcontext():
            return self._forward(
                ws, noise_mode, fused, style_scale, self.block_dtypes(precision), check_modulation(modulation)
            )

    def _forward(
        self,
        ws: torch.Tensor,
        noise_mode: str,
        fused: bool | None,
        style_scale: torch.Tensor | None,
        dtypes: list[torch.dtype],
        modulation: str,
    ) -> torch.Tensor:
        auto_fused = fused is None
        if fused is None:
            # NVIDIA's inference default (grouped per-sample weights) on accelerators (CUDA, MPS);
            # on CPU one shared-weight convolution with the styles as scales is faster even for one
            # image (256 px: 0.41 vs 0.53 s), and training always shares the weight, as NVIDIA does
            fused = (not self.training) and ws.device.type != "cpu"
        # oneDNN's convolutions are 1.3-1.7x faster on NHWC activations (training at 32 px: 6-7%
        # less CPU time for G and D steps with R1, benchmarks/bench_train_vs_nvidia.py); accelerators keep NCHW
        channels_last = ws.device.type == "cpu"
        x = img = None
        w_idx = 0
        s_idx = 0
        for block, dtype in zip(self.blocks(), dtypes):
            scales = None
            if style_scale is not None:
                scales = []
                for layer in block.conv_layers():
                    scales.append(style_scale[..., s_idx : s_idx + layer.in_channels])
                    s_idx += layer.in_channels
            # NVIDIA's default fuses reduced-precision blocks only for single images
            block_fused = fused and (dtype == torch.float32 or not auto_fused or ws.shape[0] == 1)
            x, img = block(
                x,
                img,
                ws[:, w_idx : w_idx + block.num_conv + block.num_torgb],
                noise_mode=noise_mode,
                fused=block_fused,
                style_scales=scales,
                channels_last=channels_last,
                dtype=dtype,
                modulation=modulation,
            )
            w_idx += block.num_conv
        return img.contiguous()


class Generator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        if not isinstance(cfg, GeneratorConfig):  # a training method given a StyleGAN3 model's config
            raise GancraftError(STYLEGAN3_NOT_TRAINABLE)
        cfg.validate()
        self.cfg = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(
            cfg.w_dim,
            cfg.img_resolution,
            cfg.img_channels,
            cfg.channel_base,
            cfg.channel_max,
            cfg.use_noise,
            cfg.resample_filter,
            cfg.conv_clamp,
            cfg.num_fp16_res,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            cfg.z_dim,
            cfg.c_dim,
            cfg.w_dim,
            self.num_ws,
            cfg.mapping_layers,
            cfg.embed_features,
            cfg.layer_features,
            cfg.mapping_lr_multiplier,
            cfg.w_avg_beta,
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        style_scale: torch.Tensor | None = None,
        fused: bool | None = None,
        precision: str = "fp32",
        modulation: str = DEFAULT_MODULATION,
    ) -> torch.Tensor:
        """z -> float32 images; mapping always runs in float32, precision, style_scale and modulation
        apply to synthesis (SynthesisNetwork.forward)."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(
            ws, noise_mode=noise_mode, style_scale=style_scale, fused=fused, precision=precision, modulation=modulation
        )


class Conv2dLayer(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",
        down: int = 1,
        resample_filter: list[int] | None = None,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter or [1, 3, 3, 1]))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.act_gain = ops.LRELU_GAIN if activation == "lrelu" else 1.0
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.weight * self.weight_gain
        x = ops.conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, down=self.down, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class DiscriminatorBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        resolution: int,
        img_channels: int,
        resample_filter: list[int] | None = None,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter or [1, 3, 3, 1]))
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            3,
            activation="lrelu",
            down=2,
            resample_filter=resample_filter,
            conv_clamp=conv_clamp,
        )
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2, resample_filter=resample_filter)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x


class DiscriminatorEpilogue(nn.Module):
    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        resolution: int,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = None,
    ):
        super().__init__()
        self.cmap_dim = cmap_dim
        self.mbstd_group_size, self.mbstd_num_channels = mbstd_group_size, mbstd_num_channels
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        if self.mbstd_num_channels > 0:
            x = ops.minibatch_std(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        x = self.out(x)
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.c_dim, self.img_resolution = cfg.c_dim, cfg.img_resolution
        self.block_resolutions = cfg.block_resolutions
        for res in self.block_resolutions:
            in_ch = cfg.channels(res) if res < cfg.img_resolution else 0
            setattr(
                self,
                f"b{res}",
                DiscriminatorBlock(
                    in_ch,
                    cfg.channels(res),
                    cfg.channels(res // 2),
                    res,
                    cfg.img_channels,
                    cfg.resample_filter,
                    cfg.conv_clamp,
                ),
            )
        cmap_dim = cfg.resolved_cmap_dim
        if cfg.c_dim > 0:
            self.mapping = MappingNetwork(
                0,
                cfg.c_dim,
                cmap_dim,
                None,
                cfg.mapping_layers,
                lr_multiplier=cfg.mapping_lr_multiplier,
                w_avg_beta=None,
            )
        self.b4 = DiscriminatorEpilogue(
            cfg.channels(4), cmap_dim, 4, cfg.mbstd_group_size, cfg.mbstd_num_channels, cfg.conv_clamp
        )

    def blocks(self) -> list[DiscriminatorBlock]:
        """Blocks from the highest resolution down: Freeze-D freezes a prefix of this list."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        if img.device.type == "cpu":  # NHWC for oneDNN, as the generator (a no-op when it already is)
            img = img.contiguous(memory_format=torch.channels_last)
        x = None
        for block in self.blocks():
            x = block(x, img)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, cmap)
