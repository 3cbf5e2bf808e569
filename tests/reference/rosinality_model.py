"""An independent, deliberately plain re-implementation of rosinality's stylegan2-pytorch model.

It exists only to test gancraft's rosinality adapter against something that was not derived
from gancraft's own networks. Module, parameter and buffer names are those of rosinality's
``model.py`` (so its state dicts are interchangeable with real rosinality files); the maths is
written out with naive operations instead: per-sample convolution loops, upsampling by
inserting zeros, transposed convolution expressed as a full convolution with a flipped
kernel. Speed does not matter here, only obviousness.

``channels`` may override rosinality's channel table so that tests can use tiny networks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def stock_channels(channel_multiplier: int) -> dict[int, int]:
    """rosinality's fixed table: 512 up to 32x32, then halving with resolution."""
    table = {4: 512, 8: 512, 16: 512, 32: 512}
    for res in (64, 128, 256, 512, 1024):
        table[res] = 16384 // res * channel_multiplier
    return table


def make_kernel(taps: list[int]) -> torch.Tensor:
    k = torch.tensor(taps, dtype=torch.float32)
    k2 = torch.outer(k, k)
    return k2 / k2.sum()


def insert_zeros(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Place each pixel at the top-left of a factor x factor cell of zeros."""
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, h * factor, w * factor)
    out[:, :, ::factor, ::factor] = x
    return out


def fir_filter(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """True convolution (kernel flipped) of every channel with a 2-D kernel after padding."""
    c = x.shape[1]
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = kernel.flip(0, 1)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, k, groups=c)


def lrelu_with_bias(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    shape = [1, -1] + [1] * (x.ndim - 2)
    return F.leaky_relu(x + bias.view(shape), 0.2) * SQRT2


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt((x * x).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    def __init__(
        self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activation: bool = False
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ (self.weight * self.scale).t()
        if self.activation:
            return lrelu_with_bias(y, self.bias * self.lr_mul)
        return y + self.bias * self.lr_mul


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lrelu_with_bias(x, self.bias)


class Blur(nn.Module):
    def __init__(self, taps: list[int], pad: tuple[int, int], gain: float = 1.0):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * gain)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fir_filter(x, self.kernel, self.pad)


class Upsample(nn.Module):
    def __init__(self, taps: list[int]):
        super().__init__()
        self.register_buffer("kernel", make_kernel(taps) * 4)
        extra = len(taps) - 2
        self.pad = ((extra + 1) // 2 + 1, extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fir_filter(insert_zeros(x, 2), self.kernel, self.pad)


class ModulatedConv2d(nn.Module):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        k: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        blur_kernel: list[int] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.k, self.demodulate, self.upsample = k, demodulate, upsample
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, k, k))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_ch * k * k)
        if upsample:
            # what is left of the kernel's support after the 3x3 conv has widened the image
            p = (len(blur_kernel) - 2) - (k - 1)
            self.blur = Blur(list(blur_kernel), pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.modulation(w)
        outs = []
        for b in range(x.shape[0]):
            wt = self.scale * self.weight[0] * styles[b].view(1, -1, 1, 1)
            if self.demodulate:
                wt = wt / torch.sqrt((wt * wt).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
            xb = x[b : b + 1]
            if self.upsample:
                # stride-2 transposed convolution == full convolution of the zero-stuffed input
                z = insert_zeros(xb, 2)[:, :, :-1, :-1]
                z = F.pad(z, [self.k - 1] * 4)
                outs.append(F.conv2d(z, wt.flip(2, 3)))
            else:
                outs.append(F.conv2d(xb, wt, padding=self.k // 2))
        out = torch.cat(outs)
        return self.blur(out) if self.upsample else out


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if noise is None:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3])
        return x + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    def __init__(
        self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False, blur_kernel: list[int] = (1, 3, 3, 1)
    ):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True, blur_kernel: list[int] = (1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(list(blur_kernel))
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    def __init__(
        self,
        size: int,
        style_dim: int,
        n_mlp: int,
        channel_multiplier: int = 2,
        blur_kernel: list[int] = (1, 3, 3, 1),
        lr_mlp: float = 0.01,
        channels: dict[int, int] | None = None,
    ):
        super().__init__()
        self.size, self.style_dim = size, style_dim
        self.channels = channels or stock_channels(channel_multiplier)
        ch = self.channels
        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True) for _ in range(n_mlp)]
        )
        self.input = ConstantInput(ch[4])
        self.conv1 = StyledConv(ch[4], ch[4], style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(ch[4], style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        self.convs = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 4 * 2 ** ((i + 1) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_ch = ch[4]
        for log_res in range(3, self.log_size + 1):
            out_ch = ch[2**log_res]
            self.convs.append(StyledConv(in_ch, out_ch, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, blur_kernel=blur_kernel))
            in_ch = out_ch

    @torch.no_grad()
    def mean_latent(self, n: int, seed: int = 0) -> torch.Tensor:
        z = torch.randn(n, self.style_dim, generator=torch.Generator().manual_seed(seed))
        return self.style(z).mean(0, keepdim=True)

    def forward(
        self,
        styles: list[torch.Tensor],
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        randomize_noise: bool = True,
    ) -> tuple[torch.Tensor, None]:
        w = self.style(styles[0])
        if truncation < 1:
            w = truncation_latent + truncation * (w - truncation_latent)
        if randomize_noise:
            noise = [None] * self.num_layers
        else:
            noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        batch = w.shape[0]
        out = self.conv1(self.input(batch), w, noise[0])
        skip = self.to_rgb1(out, w)
        for k, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * k](out, w, noise[2 * k + 1])
            out = self.convs[2 * k + 1](out, w, noise[2 * k + 2])
            skip = to_rgb(out, w, skip)
        return skip, None


class EqualConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, k: int, stride: int = 1, padding: int = 0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.scale = 1 / math.sqrt(in_ch * k * k)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, stride=self.stride, padding=self.padding)


class ConvLayer(nn.Sequential):
    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        k: int,
        downsample: bool = False,
        activate: bool = True,
        blur_kernel: list[int] = (1, 3, 3, 1),
    ):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (k - 1)
            layers.append(Blur(list(blur_kernel), pad=((p + 1) // 2, p // 2)))
            layers.append(EqualConv2d(in_ch, out_ch, k, stride=2))
        else:
            layers.append(EqualConv2d(in_ch, out_ch, k, padding=k // 2))
        if activate:
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, blur_kernel: list[int] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False, blur_kernel=blur_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


class Discriminator(nn.Module):
    def __init__(
        self,
        size: int,
        channel_multiplier: int = 2,
        blur_kernel: list[int] = (1, 3, 3, 1),
        channels: dict[int, int] | None = None,
    ):
        super().__init__()
        ch = channels or stock_channels(channel_multiplier)
        layers: list[nn.Module] = [ConvLayer(3, ch[size], 1)]
        res = size
        while res > 4:
            layers.append(ResBlock(ch[res], ch[res // 2], blur_kernel))
            res //= 2
        self.convs = nn.Sequential(*layers)
        self.stddev_group = 4
        self.final_conv = ConvLayer(ch[4] + 1, ch[4], 3)
        self.final_linear = nn.Sequential(EqualLinear(ch[4] * 16, ch[4], activation=True), EqualLinear(ch[4], 1))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        x = self.convs(img)
        n, c, h, w = x.shape
        group = min(n, self.stddev_group)
        # statistics across the members of each group: sample i belongs to group i % (n // group)
        grouped = x.view(group, n // group, c, h, w)
        std = torch.sqrt(grouped.var(dim=0, unbiased=False) + 1e-8).mean(dim=(1, 2, 3))
        std_map = std.view(-1, 1, 1, 1).repeat(group, 1, h, w)
        x = self.final_conv(torch.cat([x, std_map], dim=1))
        return self.final_linear(x.view(n, -1))
