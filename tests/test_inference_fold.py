"""Feature networks rewritten for CPU inference (BatchNorms folded, NHWC) give the same features."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from gancraft.metrics.inference import fold_batchnorm, prepare_for_cpu_inference


@pytest.mark.parametrize("bias, groups, stride", [(False, 1, 1), (True, 2, 2)])
def test_folded_convolution_equals_conv_then_batchnorm(bias, groups, stride):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=stride, padding=1, groups=groups, bias=bias)
    bn = nn.BatchNorm2d(6, eps=1e-3)
    with torch.no_grad():  # running statistics and affine terms far from their identity defaults
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 3.0)
        bn.weight.normal_()
        bn.bias.normal_()
    bn.eval()
    x = torch.randn(2, 4, 9, 9)
    torch.testing.assert_close(fold_batchnorm(conv, bn)(x), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_inception_features_unchanged():
    """pytorch-fid's Inception with random weights and random BatchNorm statistics, before and after."""
    from gancraft.metrics.features import _build_pytorch_fid_inception

    torch.manual_seed(1)
    model = _build_pytorch_fid_inception(None).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    fast = prepare_for_cpu_inference(copy.deepcopy(model))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    x = torch.rand(2, 3, 80, 80) * 2 - 1
    with torch.inference_mode():
        ref = model(x)[0]
        got = fast(x.contiguous(memory_format=torch.channels_last))[0]
    assert ref.abs().max() > 1e-3  # features of a usable scale, not all zero
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
