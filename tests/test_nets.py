"""Numerics of the StyleGAN2 implementation against straightforward reference maths."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gancraft.nets import ops
from gancraft.nets.stylegan2 import Generator, truncate

from conftest import make_tiny_checkpoint, tiny_configs


def naive_upfirdn2d(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """Direct zero-insertion + full 2-D convolution, as the reference path defines it."""
    n, c, h, w = x.shape
    if up > 1:
        z = torch.zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    px0, px1, py0, py1 = pad
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    k = (f * gain).flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down]


def test_upfirdn2d_matches_naive():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    f = ops.setup_filter([1, 3, 3, 1])
    for up, down, pad, gain in [
        (2, 1, (2, 1, 2, 1), 4.0),
        (1, 2, (1, 1, 1, 1), 1.0),
        (1, 1, (2, 2, 2, 2), 1.0),
        (1, 1, (-1, 2, 0, -1), 1.0),
    ]:
        got = ops.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=gain)
        want = naive_upfirdn2d(x, f, up, down, pad, gain)
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-6)


def test_upsample_keeps_constant_images_constant():
    x = torch.ones(1, 1, 6, 6)
    y = ops.upsample2d(x, ops.setup_filter([1, 3, 3, 1]))
    assert y.shape == (1, 1, 12, 12)
    assert torch.allclose(y[:, :, 2:-2, 2:-2], torch.ones(1, 1, 8, 8), atol=1e-6)


def test_modulated_conv_fused_equals_unfused_equals_explicit():
    torch.manual_seed(0)
    x, w, s = torch.randn(3, 4, 8, 8), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    f = ops.setup_filter([1, 3, 3, 1])
    for up in (1, 2):
        a = ops.modulated_conv2d(x, w, s, up=up, padding=1, resample_filter=f, fused=True)
        b = ops.modulated_conv2d(x, w, s, up=up, padding=1, resample_filter=f, fused=False)
        assert torch.allclose(a, b, atol=1e-5)
    # explicit per-sample weights with demodulation, no resampling
    ref = []
    for i in range(3):
        wi = w * s[i].view(1, -1, 1, 1)
        wi = wi / (wi.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        ref.append(F.conv2d(x[i : i + 1], wi, padding=1))
    assert torch.allclose(ops.modulated_conv2d(x, w, s, padding=1), torch.cat(ref), atol=1e-5)


def test_up_conv_equals_upsample_then_conv():
    """Transposed conv + FIR equals NVIDIA's generic path: zero-insert, FIR, then a true 3x3 convolution."""
    torch.manual_seed(1)
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    f = ops.setup_filter([1, 3, 3, 1])
    got = ops.conv2d_resample(x, w, f=f, up=2, padding=1)
    up = naive_upfirdn2d(x, f, up=2, pad=(3, 2, 3, 2), gain=4.0)
    want = F.conv2d(up, w.flip([2, 3]))
    assert got.shape == want.shape == (1, 3, 10, 10)
    assert torch.allclose(got, want, atol=1e-5)


def test_minibatch_std_matches_definition():
    torch.manual_seed(0)
    x = torch.randn(8, 4, 3, 3)
    y = ops.minibatch_std(x, 4)
    assert y.shape == (8, 5, 3, 3)
    g = x.reshape(4, 2, 4, 3, 3)
    sd = (g.var(dim=0, unbiased=False) + 1e-8).sqrt().mean(dim=[1, 2, 3])  # per group member index
    for i in range(8):
        assert torch.allclose(y[i, 4], sd[i % 2].expand(3, 3), atol=1e-6)


def test_generator_shapes_and_determinism():
    ck = make_tiny_checkpoint()
    G = ck.generator()
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(0))
    a, b = G(z), G(z)
    assert a.shape == (3, 3, 16, 16)
    assert torch.equal(a, b)
    # batch independence: the same z gives the same image alone or in a batch
    assert torch.allclose(G(z[1:2]), a[1:2], atol=1e-5)


def test_num_ws_and_layers_follow_nvidia_counting():
    g, _ = tiny_configs(32)
    G = Generator(g)
    assert G.num_ws == 8 == g.num_ws
    layers = G.synthesis.layers()
    assert [info.name for info in layers[:4]] == ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1"]
    assert [info.w_index for info in layers] == [0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 7]
    assert G.synthesis.style_dim == sum(info.in_channels for info in layers if info.kind == "conv")


def test_truncation_formula():
    torch.manual_seed(0)
    ws, avg = torch.randn(2, 6, 4), torch.randn(4)
    t = truncate(ws, avg, 0.7)
    assert torch.allclose(t, avg + 0.7 * (ws - avg), atol=1e-6)
    t2 = truncate(ws, avg, 0.5, cutoff=2)
    assert torch.equal(t2[:, 2:], ws[:, 2:])
    assert torch.allclose(t2[:, :2], avg + 0.5 * (ws[:, :2] - avg), atol=1e-6)


def test_style_scale_zero_is_identity_and_nonzero_changes_image():
    ck = make_tiny_checkpoint()
    G = ck.generator()
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(3))
    base = G(z)
    zero = torch.zeros(G.synthesis.style_dim)
    d = 0.5 * torch.randn(G.synthesis.style_dim, generator=torch.Generator().manual_seed(4))
    for order in ("after-demod", "before-demod"):
        assert torch.equal(G(z, style_scale=zero, modulation=order), base)
        assert (G(z, style_scale=d, modulation=order) - base).abs().max() > 1e-2
    # before demodulation a uniform scale cancels; after it (the official order) it is a layer gain
    assert (G(z, style_scale=zero + 0.5, modulation="before-demod") - base).abs().max() < 1e-4
    assert (G(z, style_scale=zero + 0.5) - base).abs().max() > 1e-2


def test_conditional_discriminator_projection():
    ck = make_tiny_checkpoint(c_dim=3)
    D = ck.discriminator()
    img = torch.randn(4, 3, 16, 16)
    c = torch.eye(3)[[0, 1, 2, 0]]
    out = D(img, c)
    assert out.shape == (4, 1)
    assert not torch.allclose(D(img, torch.eye(3)[[1, 1, 1, 1]]), out)
    assert math.isfinite(out.sum().item())
