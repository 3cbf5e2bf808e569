"""Inference-only rewrites of a feature network that keep its outputs to float rounding.

Inception spends nearly all its CPU time in convolutions, each followed by an eval-mode
BatchNorm: a full extra pass over every activation. Folded into the convolution's weights and
bias, that pass disappears; NHWC (channels_last) activations let oneDNN pick its faster
convolution kernels. `benchmarks/bench_fid.py` measures both against pytorch-fid's own loop.
"""

from __future__ import annotations

import torch
from torch import nn


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution computing bn(conv(x)) for an eval-mode BatchNorm (running statistics)."""
    scale = bn.weight.detach() * (bn.running_var + bn.eps).rsqrt()
    bias = bn.bias.detach() - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias.detach() * scale
    folded = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    with torch.no_grad():
        folded.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        folded.bias.copy_(bias)
    return folded


def fold_conv_bn_pairs(model: nn.Module) -> int:
    """Fold every `BasicConv2d`-style unit (a module whose forward is conv -> bn -> activation,
    as torchvision's and pytorch-fid's Inception blocks) in place; returns how many were folded."""
    from torchvision.models.inception import BasicConv2d

    count = 0
    for module in model.modules():
        if isinstance(module, BasicConv2d) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = fold_batchnorm(module.conv, module.bn)
            module.bn = nn.Identity()
            count += 1
    return count


def prepare_for_cpu_inference(model: nn.Module) -> nn.Module:
    """BatchNorms folded and NHWC weights, for a model in eval mode on the CPU; feed it NHWC input."""
    model.eval()
    fold_conv_bn_pairs(model)
    return model.to(memory_format=torch.channels_last)
