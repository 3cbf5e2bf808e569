"""Pure-PyTorch ops with the numerics of NVIDIA's stylegan2-ada-pytorch reference path.

Speed notes (CPU, measured at 256 px, see benchmarks/bench_generator.py): FIR filters run as one
depthwise convolution over the channels of an NCHW or channels_last tensor; reshaping to
(N*C, 1, H, W) single-channel convolutions, separable or not, was 5-20x slower in oneDNN. Memory
layout is preserved throughout so a channels_last network stays channels_last.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F

LRELU_GAIN = math.sqrt(2.0)


def setup_filter(taps: list[int] | list[float]) -> torch.Tensor:
    """2-D filter normalised to sum 1, stored the way NVIDIA stores `resample_filter` buffers."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def can_write_inplace(*tensors: torch.Tensor) -> bool:
    """True when autograd will not need the inputs, so intermediate results may be overwritten."""
    return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors))


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """float32 matmuls and convolutions inside, not TF32, restoring the caller's settings after.

    cuDNN allows TF32 by default, and on Ampere and newer GPUs it moves fp32 images by ~1e-3;
    NVIDIA's training turns it off too. The flags are process-wide and change nothing on CPU.
    """
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    matmul.allow_tf32 = cudnn.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative crops), FIR filter, then keep every `down`-th pixel.

    padding is (x0, x1, y0, y1) as in NVIDIA's upfirdn2d. The filter runs as a depthwise
    convolution (true convolution, as NVIDIA's), its stride doing the decimation.
    """
    n, c, h, w = x.shape
    if up > 1:
        y = torch.empty([n, c, h * up, w * up], dtype=x.dtype, device=x.device, memory_format=_memory_format(x))
        y.zero_()
        y[:, :, ::up, ::up] = x
        x = y
    px0, px1, py0, py1 = padding
    conv_pad = (0, 0)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:
        conv_pad = (py0, px0)  # symmetric: let the convolution pad, saving a copy
    else:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
        x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    kernel = (f.to(x.dtype) * gain).flip([0, 1])
    kernel = kernel[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, kernel, stride=down, padding=conv_pad, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def bias_act(
    x: torch.Tensor, b: torch.Tensor | None, act: str = "linear", gain: float | None = None, clamp: float | None = None
) -> torch.Tensor:
    """Bias, activation (linear or leaky ReLU 0.2), gain, then optional clamp, as NVIDIA's bias_act.

    Out of place, in NVIDIA's order: the autograd path. Synthesis layers outside autograd use
    modulated_conv2d's two-pass tail instead.
    """
    if act not in ("linear", "lrelu"):
        raise ValueError(f"unknown activation {act}")
    if act == "lrelu" and gain is None:
        gain = LRELU_GAIN
    if b is not None:
        b = b.reshape([1, -1] + [1] * (x.ndim - 2)).to(x.dtype)
    if b is not None:
        x = x + b
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
    if gain is not None and gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,
    f: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    groups: int = 1,
) -> torch.Tensor:
    """Convolution fused with 2x FIR up- or down-sampling, with NVIDIA's padding conventions.

    Upsampling uses a stride-2 transposed convolution followed by the filter; downsampling
    filters first, then uses a strided convolution (1x1 kernels subsample inside the filter).
    """
    out_ch, in_per_group, kh, kw = w.shape
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    fw = f.shape[-1]
    if down > 1:
        p0 = padding + (fw - down + 1) // 2
        p1 = padding + (fw - down) // 2
        if kh == 1 and kw == 1:
            x = upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
            return F.conv2d(x, w, groups=groups)
        x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
        return F.conv2d(x, w, stride=down, groups=groups)
    # up > 1: transposed convolution wants weights as (in, out/groups) per group
    p0 = padding + (fw + up - 1) // 2 - (kw - 1)
    p1 = padding + (fw - up) // 2 - (kw - up)
    pt = max(min(-p0, -p1), 0)
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    x = F.conv_transpose2d(x, wt, stride=up, padding=pt, groups=groups)
    return upfirdn2d(x, f, padding=(p0 + pt, p1 + pt, p0 + pt, p1 + pt), gain=up * up)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    fused: bool = True,
    bias: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
    consume_input: bool = False,
    input_gain: torch.Tensor | None = None,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution, optionally followed by the layer's bias_act.

    fused=True folds styles into per-sample weights and runs one grouped convolution (NVIDIA's
    inference path); fused=False scales activations instead and shares one weight across the
    batch (NVIDIA's training path): same maths, different rounding, and faster for large batches.

    bias/act/gain/clamp apply ``bias_act`` after the noise, as NVIDIA's SynthesisLayer does.
    consume_input=True lets the unfused path scale x in place when autograd does not need it:
    at 256 px a fresh activation-sized buffer costs more in page faults than the multiply.

    input_gain ([N, in] or [in]) multiplies the modulated and demodulated per-sample weight along
    its input channels: HyperDomainNet's domain modulation as its official code applies it
    (MACderRu/HyperDomainNet, gan_models/StyleGAN2/offsets_model.py ModModulatedConv2d with the
    'cin_mult' patch), so the demodulation coefficients come from `styles` alone.

    The convolution and the tail run in x's dtype (float16/bfloat16 in mixed precision); weights,
    styles and demodulation coefficients are computed in float32 and cast, as in NVIDIA's code.
    """
    b = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if demodulate and x.dtype == torch.float16:
        # float16 tops out at 65504: bring weights and styles to at most 1 before they meet the
        # activations, as NVIDIA does; demodulation cancels the scale exactly. bfloat16 has
        # float32's exponent range and needs no guard.
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.abs().amax(dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    dcoefs = None
    if demodulate:
        # (W * s)^2 summed over (in, kh, kw) without materialising the per-sample weights
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()
    if input_gain is not None:
        # an input-channel factor of the weight is one of the styles too, so once the coefficients
        # are fixed every path below (fused, unfused, 1x1) applies it without another weight copy
        styles = styles * input_gain
    inference = can_write_inplace(x, weight, styles)
    if kh == kw == 1 and up == 1 and inference and _memory_format(x) == torch.channels_last:
        # 1x1 (toRGB): one batched matmul over NHWC pixels with per-sample weights, which
        # neither scales a copy of x nor reshapes it into groups (a copy for NHWC)
        w = weight[:, :, 0, 0].unsqueeze(0) * styles.reshape(b, 1, -1)
        if dcoefs is not None:
            w = w * dcoefs.reshape(b, -1, 1)
        h, wd = x.shape[2:]
        y = torch.bmm(x.permute(0, 2, 3, 1).reshape(b, h * wd, in_ch), w.transpose(1, 2).to(x.dtype))
        x, scale = y.reshape(b, h, wd, out_ch).permute(0, 3, 1, 2), None
    elif fused:
        w = weight.unsqueeze(0) * styles.reshape(b, 1, -1, 1, 1)
        if dcoefs is not None:
            w = w * dcoefs.reshape(b, -1, 1, 1, 1)
        x = x.reshape(1, -1, *x.shape[2:])
        w = w.reshape(-1, in_ch, kh, kw)
        x = conv2d_resample(x, w.to(x.dtype), f=resample_filter, up=up, padding=padding, groups=b)
        x, scale = x.reshape(b, -1, *x.shape[2:]), None
    else:
        s = styles.reshape(b, -1, 1, 1).to(x.dtype)
        x = x.mul_(s) if consume_input and inference else x * s
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, padding=padding)
        scale = dcoefs
    return _layer_tail(x, scale, noise, bias, act, gain, clamp)


def _layer_tail(
    x: torch.Tensor,
    scale: torch.Tensor | None,
    noise: torch.Tensor | None,
    bias: torch.Tensor | None,
    act: str,
    gain: float | None,
    clamp: float | None,
) -> torch.Tensor:
    """x * scale (per sample and channel) + noise, then bias_act."""
    if act == "lrelu" and gain is None:
        gain = LRELU_GAIN
    g = 1.0 if gain is None else float(gain)
    if not can_write_inplace(x, scale, noise, bias) or g <= 0:
        # autograd's path, in NVIDIA's order
        if scale is not None:
            x = x * scale.reshape(x.shape[0], -1, 1, 1).to(x.dtype)
        if noise is not None:
            x = x + noise.to(x.dtype)
        return bias_act(x, bias, act=act, gain=gain, clamp=clamp)
    # Outside autograd the tail is at most two passes over x: a positive gain commutes with leaky
    # ReLU, so it folds into the scale and into the additive term (noise + bias), and one addcmul
    # applies both (rounding differs from NVIDIA's five separate steps by about one ulp).
    mul = None
    if scale is not None:
        mul = scale.reshape(x.shape[0], -1, 1, 1).to(x.dtype) * g
    elif g != 1:
        mul = x.new_full([1, 1, 1, 1], g)
    b = None if bias is None else bias.to(x.dtype).reshape(1, -1, 1, 1) * g
    n = None if noise is None else noise.to(x.dtype) * g
    if n is not None and n.dim() == 4 and n.shape[0] > 1:
        # per-sample noise has no batch-free sum with the bias to precompute
        if mul is not None:
            x = x.mul_(mul)
        x = x.add_(n)
        mul = None
        n = None
    if n is not None:
        add = torch.empty([1, *x.shape[1:]], dtype=x.dtype, device=x.device, memory_format=_memory_format(x))
        if b is None:
            add.copy_(n.expand_as(add))
        else:
            torch.add(b, n, out=add)
        x = torch.addcmul(add, x, mul, out=x) if mul is not None else x.add_(add)
    else:
        if mul is not None:
            x = x.mul_(mul)
        if b is not None:
            x = x.add_(b)
    if act == "lrelu":
        x = F.leaky_relu_(x, 0.2)
    elif act != "linear":
        raise ValueError(f"unknown activation {act}")
    if clamp is not None:
        x = x.clamp_(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def minibatch_std_group(n: int, group_size: int | None) -> int:
    """How many samples `minibatch_std` groups together in a batch of n: group_size, else the
    whole batch; NVIDIA requires it to divide n, so this falls back to the largest that does."""
    g = min(group_size, n) if group_size is not None else n
    while n % g:
        g -= 1
    return g


def minibatch_std(x: torch.Tensor, group_size: int | None, num_channels: int = 1) -> torch.Tensor:
    n, c, h, w = x.shape
    g = minibatch_std_group(n, group_size)
    f = num_channels
    y = x.reshape(g, -1, f, c // f, h, w)
    y = y - y.mean(dim=0)
    y = y.square().mean(dim=0)
    y = (y + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4])
    y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)
