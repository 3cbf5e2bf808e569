"""Where a domain vector meets a conv layer: after demodulation (HyperDomainNet's official code) or
before it (the paper's figure), and the order stored with every vector so it is read back the same way."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gancraft import load, save
from gancraft.errors import GancraftError
from gancraft.latent import domains as dom
from gancraft.latent.generate import Frame, map_latents, render_frames, synthesize
from gancraft.latent.seeds import z_from_seeds
from gancraft.nets import ops
from gancraft.nets.stylegan2 import MODULATION_ORDERS
from gancraft.train import text_domain as td

from conftest import cli_invoke, make_tiny_checkpoint

ORDERS = MODULATION_ORDERS


def explicit_weight(w: torch.Tensor, s: torch.Tensor, d: torch.Tensor, order: str) -> torch.Tensor:
    """The official construction, written out: per-sample weight W * s [N, out, in, kh, kw], demodulated
    over (in, kh, kw), times (1 + d) along the input channels (or d folded into s before, for before-demod)."""
    if order == "before-demod":
        s = s * (1 + d)
    wb = w.unsqueeze(0) * s[:, None, :, None, None]
    wb = wb / (wb.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).sqrt()
    if order == "after-demod":
        wb = wb * (1 + d)[:, None, :, None, None]
    return wb


def explicit_conv(
    x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, d: torch.Tensor, order: str, padding: int = 1
) -> torch.Tensor:
    """explicit_weight, then one grouped convolution over the batch."""
    b, in_ch = s.shape
    wb = explicit_weight(w, s, d, order)
    y = F.conv2d(x.reshape(1, b * in_ch, *x.shape[2:]), wb.reshape(-1, in_ch, *w.shape[2:]), padding=padding, groups=b)
    return y.reshape(b, -1, *y.shape[2:])


def _inputs(k: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(3, 6, 8, 8, generator=g), torch.randn(5, 6, k, k, generator=g)
    s, d = torch.randn(3, 6, generator=g), 0.5 * torch.randn(3, 6, generator=g)
    return x, w, s, d


def _conv(x, w, s, d, order, **kw):
    """ops.modulated_conv2d with d applied the way SynthesisLayer applies it for `order`."""
    if order == "before-demod":
        return ops.modulated_conv2d(x, w, s * (1 + d), **kw)
    return ops.modulated_conv2d(x, w, s, input_gain=1 + d, **kw)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv_matches_the_explicit_construction(order, fused):
    x, w, s, d = _inputs()
    ref = explicit_conv(x, w, s, d, order)
    assert torch.allclose(_conv(x, w, s, d, order, padding=1, fused=fused), ref, atol=1e-5)
    with torch.no_grad():  # the inference path may scale x in place
        assert torch.allclose(
            _conv(x.clone(), w, s, d, order, padding=1, fused=fused, consume_input=True), ref, atol=1e-5
        )


@pytest.mark.parametrize("order", ORDERS)
def test_one_by_one_batched_matmul_path_applies_the_order(order):
    x, w, s, d = _inputs(k=1)
    x = x.contiguous(memory_format=torch.channels_last)
    ref = explicit_conv(x, w, s, d, order, padding=0)
    with torch.no_grad():  # channels_last, 1x1, no autograd: the bmm path
        got = _conv(x, w, s, d, order)
    assert torch.allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("fused", [True, False])
def test_upsampling_conv_applies_the_order(order, fused):
    x, w, s, d = _inputs()
    f = ops.setup_filter([1, 3, 3, 1])
    got = _conv(x, w, s, d, order, up=2, padding=1, resample_filter=f, fused=fused)
    # each sample's explicit weight through the resampling convolution (tested on its own in test_nets)
    wb = explicit_weight(w, s, d, order)
    ref = [ops.conv2d_resample(x[i : i + 1], wb[i], f=f, up=2, padding=1) for i in range(3)]
    assert torch.allclose(got, torch.cat(ref), atol=1e-5)


@pytest.mark.parametrize("fused", [True, False])
def test_float16_path_applies_the_gain_after_its_guard(fused):
    x, w, s, d = _inputs()
    s = s * 50  # large styles: float16 first brings weights and styles to at most 1; the gain acts after
    ref = explicit_conv(x, w, s, d, "after-demod")
    got = ops.modulated_conv2d(x.half(), w, s, padding=1, fused=fused, input_gain=1 + d)
    assert got.dtype == torch.float16
    assert torch.allclose(got.float(), ref, atol=2e-2 * ref.abs().max().item())


def test_the_two_orders_differ_and_only_after_demod_keeps_a_layer_gain():
    x, w, s, d = _inputs()
    after, before = explicit_conv(x, w, s, d, "after-demod"), explicit_conv(x, w, s, d, "before-demod")
    assert (after - before).abs().max() > 0.1
    assert (_conv(x, w, s, d, "after-demod", padding=1) - before).abs().max() > 0.1
    # a uniform d is a gain of the whole layer after demodulation and nothing before it
    uniform = torch.full_like(d, 0.5)
    plain = ops.modulated_conv2d(x, w, s, padding=1)
    assert torch.allclose(_conv(x, w, s, uniform, "after-demod", padding=1), 1.5 * plain, atol=1e-5)
    assert torch.allclose(_conv(x, w, s, uniform, "before-demod", padding=1), plain, atol=1e-5)


@pytest.mark.parametrize("order", ORDERS)
def test_synthesis_layer_applies_the_order_it_is_given(order):
    G = make_tiny_checkpoint().generator()
    layer = G.synthesis.b8.conv1
    g = torch.Generator().manual_seed(1)
    x, wlat = torch.randn(2, layer.in_channels, 8, 8, generator=g), torch.randn(2, G.w_dim, generator=g)
    d = 0.3 * torch.randn(2, layer.in_channels, generator=g)
    got = layer(x, wlat, noise_mode="none", style_scale=d, modulation=order)
    ref = explicit_conv(x, layer.weight, layer.affine(wlat), d, order)
    ref = F.leaky_relu(ref + layer.bias.view(1, -1, 1, 1), 0.2) * 2**0.5
    assert torch.allclose(got, ref, atol=1e-5)


def test_generator_takes_the_order_and_refuses_unknown_ones():
    G = make_tiny_checkpoint().generator()
    ws = map_latents(G, z_from_seeds([0, 1], G.z_dim))
    d = 0.3 * torch.randn(G.synthesis.style_dim, generator=torch.Generator().manual_seed(2))
    imgs = {o: G.synthesis(ws, style_scale=d, modulation=o) for o in ORDERS}
    assert (imgs["after-demod"] - imgs["before-demod"]).abs().max() > 1e-2
    assert torch.equal(G.synthesis(ws, style_scale=d), imgs["after-demod"])  # the official order by default
    with pytest.raises(ValueError, match="modulation order"):
        G.synthesis(ws, style_scale=d, modulation="after")


# ---- the order stored with the vectors ---------------------------------------------------------


def _vector_ckpt(entry_extra: dict):
    ckpt = make_tiny_checkpoint(domains={"toon": {"kind": "vector", "tensor": "domain_vectors.toon", **entry_extra}})
    G = ckpt.generator()
    ckpt.tensors["domain_vectors.toon"] = 0.4 * torch.randn(
        G.synthesis.style_dim, generator=torch.Generator().manual_seed(0)
    )
    return ckpt, G


@pytest.mark.parametrize(
    "stored,expected",
    [
        ({}, "before-demod"),
        ({"modulation": "before-demod"}, "before-demod"),
        ({"modulation": "after-demod"}, "after-demod"),
    ],
)
def test_vector_domains_render_in_their_stored_order(stored, expected):
    ckpt, G = _vector_ckpt(stored)
    spec = dom.resolve_domain(ckpt, "toon", G)
    assert spec.modulation == expected
    ws = map_latents(G, z_from_seeds([0, 1], G.z_dim))
    vec = ckpt.tensors["domain_vectors.toon"]
    with torch.no_grad():
        want = {o: G.synthesis(ws, style_scale=vec, modulation=o) for o in ORDERS}
    got = synthesize(G, ws, spec)
    assert torch.equal(got, want[expected])
    assert not torch.allclose(got, want[next(o for o in ORDERS if o != expected)], atol=1e-3)


def test_unknown_stored_order_is_refused():
    ckpt, G = _vector_ckpt({"modulation": "sideways"})
    with pytest.raises(GancraftError, match="domain 'toon'.*'sideways'"):
        dom.resolve_domain(ckpt, "toon", G)


def test_text_vector_order_survives_a_save_and_load(tmp_path):
    parent = make_tiny_checkpoint()
    G = parent.generator()
    results = {}
    for name, order in (("a", "after-demod"), ("b", "before-demod")):
        settings = td.TextVectorSettings(modulation=order).validate()
        results[name] = td.TextVectorResult(
            torch.full([G.synthesis.style_dim], 0.1), f"prompt {name}", settings, ["clip"]
        )
    save(td.vector_checkpoint(parent, results), tmp_path / "v.st")
    back = load(tmp_path / "v.st")
    assert back.domains["a"]["modulation"] == "after-demod" and back.domains["b"]["modulation"] == "before-demod"
    assert [dom.resolve_domain(back, n, G).modulation for n in "ab"] == ["after-demod", "before-demod"]
    with pytest.raises(GancraftError, match="--modulation-order 'x'"):
        td.TextVectorSettings(modulation="x").validate()


def test_domains_of_different_orders_do_not_mix():
    a = dom.DomainSpec("a", style_scale=torch.zeros(4), modulation="after-demod")
    b = dom.DomainSpec("b", style_scale=torch.zeros(4), modulation="before-demod")
    plain = dom.DomainSpec("plain")
    assert dom.interpolate_domains(plain, b, 0.5).modulation == "before-demod"
    assert dom.interpolate_domains(a, a, 0.5).modulation == "after-demod"
    with pytest.raises(GancraftError, match="different modulation orders"):
        dom.interpolate_domains(a, b, 0.5)
    ckpt = make_tiny_checkpoint(
        domains={
            "a": {"kind": "vector", "tensor": "domain_vectors.a"},
            "b": {"kind": "vector", "tensor": "domain_vectors.b", "modulation": "after-demod"},
            "c": {"kind": "vector", "tensor": "domain_vectors.c"},
        }
    )
    G = ckpt.generator()
    for n in "abc":
        ckpt.tensors[f"domain_vectors.{n}"] = torch.zeros(G.synthesis.style_dim)
    assert dom.resolve_domain(ckpt, "a+c", G).modulation == "before-demod"
    with pytest.raises(GancraftError, match="different modulation orders"):
        dom.resolve_domain(ckpt, "a+b", G)


def test_video_frames_keep_their_order_and_refuse_a_mix():
    G = make_tiny_checkpoint().generator()
    ws = map_latents(G, z_from_seeds([0, 1], G.z_dim)).cpu()
    d = 0.4 * torch.randn(2, G.synthesis.style_dim, generator=torch.Generator().manual_seed(3))
    for order in ORDERS:
        frames = list(render_frames(G, [Frame(ws=ws, style_scale=d, modulation=order)], batch_size=2))
        with torch.no_grad():
            assert torch.equal(frames[0], G.synthesis(ws, style_scale=d, modulation=order))
    mixed = [Frame(ws=ws, style_scale=d, modulation=o) for o in ORDERS]
    with pytest.raises(GancraftError, match="different modulation orders"):
        list(render_frames(G, mixed))


# ---- training commands record the order --------------------------------------------------------


@pytest.mark.parametrize("order", ORDERS)
def test_adversarial_domain_vector_finetune_records_and_trains_in_its_order(tiny_ckpt_path, tmp_path, order):
    out = tmp_path / "dv.st"
    r = cli_invoke(
        "finetune",
        tiny_ckpt_path,
        "--domain",
        f"toon={tiny_ckpt_path}",
        "--params",
        "domain-vector",
        "--modulation-order",
        order,
        "--kimg",
        "0.008",
        "--batch",
        "4",
        "-o",
        out,
        "--quiet",
        "--run-dir",
        tmp_path / "run",
    )
    assert r.exit_code == 0, r.output
    ckpt = load(out)
    assert ckpt.domains["toon"]["modulation"] == order
    assert ckpt.history[-1]["params"]["modulation"] == order


def test_adversarial_training_renders_in_the_methods_order(tiny_ckpt_path, monkeypatch, tmp_path):
    from gancraft.train.loop import TrainOptions, run_training
    from gancraft.train.methods import DomainVectorMethod

    seen = []
    orig = type(load(tiny_ckpt_path).generator().synthesis).forward

    def spy(self, ws, *a, **k):
        if k.get("style_scale") is not None:
            seen.append(k.get("modulation"))
        return orig(self, ws, *a, **k)

    monkeypatch.setattr(type(load(tiny_ckpt_path).generator().synthesis), "forward", spy)
    start = load(tiny_ckpt_path)
    method = DomainVectorMethod(start, {"toon": load(tiny_ckpt_path)}, modulation="before-demod")
    assert method.domains()["toon"]["modulation"] == "before-demod"
    run_training(method, TrainOptions(batch=4, kimg=0.008, snap_kimg=1.0), tmp_path / "run", progress=False)
    assert seen and set(seen) == {"before-demod"}
    with pytest.raises(GancraftError, match="--modulation-order 'sideways'"):
        DomainVectorMethod(start, {"toon": start}, modulation="sideways")


def test_modulation_order_needs_domain_vectors(tiny_ckpt_path, tmp_path):
    r = cli_invoke(
        "finetune",
        tiny_ckpt_path,
        "--domain",
        f"toon={tiny_ckpt_path}",
        "--modulation-order",
        "before-demod",
        "-o",
        tmp_path / "x.st",
    )
    assert r.exit_code != 0 and "--modulation-order applies to domain vectors" in r.output
