"""Latent library: seeds, domains, latent and direction files, batched generation, interpolation, mixing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gancraft.errors import GancraftError
from gancraft.latent import domains as dom
from gancraft.latent.files import Latents, load_direction, load_directions, load_latents, parse_edit, save_latents
from gancraft.latent.generate import (
    apply_edits,
    frame_times,
    generate,
    layer_indices,
    map_latents,
    resolution_indices,
    slerp,
    style_mix,
    synthesize,
)
from gancraft.latent.seeds import parse_seeds, z_from_seeds
from gancraft.latent.sefa import save_directions

from conftest import make_tiny_checkpoint


@pytest.fixture(scope="module")
def G():
    return make_tiny_checkpoint().generator()


def _images(G, seeds, batch, **kw):
    return torch.cat([b.images for b in generate(G, seeds, batch_size=batch, **kw)])


# ---- seeds ---------------------------------------------------------------------------------------


def test_parse_seeds_ranges_lists_and_order():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("9, 1,5-6") == [9, 1, 5, 6]
    assert parse_seeds("4294967295") == [2**32 - 1]
    assert parse_seeds("1,2,1", allow_duplicates=True) == [1, 2, 1]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("1,,2", "empty item"),
        ("a", "not a non-negative integer"),
        ("-1", "not a non-negative"),
        ("5-2", "ends before"),
        ("1.5", "not a non-negative"),
        ("1,2,1", "more than once"),
        ("4294967296", "larger than"),
    ],
)
def test_parse_seeds_errors_are_clear(text, fragment):
    with pytest.raises(GancraftError, match=fragment):
        parse_seeds(text)


def test_z_from_seeds_follows_nvidia_convention():
    z = z_from_seeds([7, 123], 16)
    assert z.dtype == torch.float32 and z.shape == (2, 16)
    expected = np.random.RandomState(123).randn(16).astype(np.float32)
    assert np.array_equal(z[1].numpy(), expected)


# ---- generation determinism ----------------------------------------------------------------------


def test_same_seed_same_image_at_the_same_batch_size_whatever_the_neighbours(G):
    full = _images(G, list(range(8)), batch=4)
    tail = _images(G, [4, 5, 6, 7], batch=4)
    padded = _images(G, [5, 6, 7], batch=4)  # a short batch is padded to the batch size
    assert torch.equal(full[4:], tail)
    assert torch.equal(full[5:], padded)


def test_same_seed_across_batch_sizes_within_documented_tolerance(G):
    one = _images(G, list(range(8)), batch=1)
    eight = _images(G, list(range(8)), batch=8)
    assert (one - eight).abs().max().item() <= 2e-5
    from gancraft.media.images import to_uint8

    assert np.abs(to_uint8(one).astype(int) - to_uint8(eight).astype(int)).max() <= 1


def test_stored_ws_reproduce_pixels_exactly(G):
    batches = list(generate(G, [3, 1, 4, 1, 5], batch_size=2, psi=0.7, cutoff=2))
    ws = torch.cat([b.ws for b in batches])
    again = torch.cat([b.images for b in generate(G, ws=ws, batch_size=2)])
    assert torch.equal(torch.cat([b.images for b in batches]), again)
    assert ws.dtype == torch.float32


def test_truncation_pulls_toward_w_avg(G):
    w1 = map_latents(G, z_from_seeds([0], G.z_dim))
    w0 = map_latents(G, z_from_seeds([0], G.z_dim), psi=0.0)
    assert torch.allclose(w0[0, 0], G.mapping.w_avg, atol=1e-6)
    assert not torch.allclose(w1, w0)


# ---- directions and edits ------------------------------------------------------------------------


def _directions_file(tmp_path, G, layers=None):
    d = torch.linalg.qr(torch.randn(G.w_dim, 3, generator=torch.Generator().manual_seed(1)))[0].t()
    meta = {"names": ["pose", "smile", "age"]}
    if layers is not None:
        meta["layers"] = layers
    return save_directions(tmp_path / "dirs.st", d, meta, singular_values=torch.tensor([3.0, 2.0, 1.0])), d


def test_edit_alpha_zero_changes_nothing_and_edits_only_named_layers(G, tmp_path):
    path, d = _directions_file(tmp_path, G, layers=["b8.conv0"])
    zero = parse_edit(f"{path}:1:0")
    base = _images(G, [0, 1], batch=2)
    assert torch.equal(base, _images(G, [0, 1], batch=2, edits=[zero]))
    ws = map_latents(G, z_from_seeds([0], G.z_dim))
    moved = apply_edits(G, ws, [parse_edit(f"{path}:smile:2.5")])
    w_index = next(i.w_index for i in G.synthesis.layers() if i.name == "b8.conv0")
    changed = (moved - ws).abs().amax(dim=(0, 2)) > 0
    assert changed.nonzero().flatten().tolist() == [w_index]
    assert torch.allclose(moved[0, w_index] - ws[0, w_index], 2.5 * d[1], atol=1e-5)


def test_directions_file_validation(G, tmp_path):
    path, d = _directions_file(tmp_path, G)
    dirs = load_directions(path)
    assert dirs.names == ["pose", "smile", "age"] and dirs.singular_values.tolist() == [3.0, 2.0, 1.0]
    assert torch.allclose(load_direction(f"{path}:2").vector, d[2], atol=1e-6)
    with pytest.raises(GancraftError, match="out of range"):
        load_direction(f"{path}:3")
    with pytest.raises(GancraftError, match="no direction named 'tilt'"):
        load_direction(f"{path}:tilt")
    with pytest.raises(GancraftError, match="FILE:INDEX"):
        load_direction(str(path))
    with pytest.raises(GancraftError, match="ALPHA 'x'"):
        parse_edit(f"{path}:1:x")
    from safetensors.torch import save_file

    save_file({"directions": torch.ones(2, G.w_dim)}, str(tmp_path / "long.st"))
    with pytest.raises(GancraftError, match=r"long\.st: direction 0 has length"):
        load_directions(tmp_path / "long.st")
    save_file({"other": torch.ones(2)}, str(tmp_path / "none.st"))
    with pytest.raises(GancraftError, match="no 'directions' tensor"):
        load_directions(tmp_path / "none.st")
    (tmp_path / "junk.st").write_bytes(b"not safetensors")
    with pytest.raises(GancraftError, match="junk.st"):
        load_directions(tmp_path / "junk.st")


def test_direction_of_wrong_width_is_refused(G, tmp_path):
    save_directions(tmp_path / "wide.st", torch.eye(G.w_dim + 1)[:2], {})
    with pytest.raises(GancraftError, match="dimensions"):
        list(generate(G, [0], edits=[parse_edit(f"{tmp_path / 'wide.st'}:0:1")]))


# ---- latents files -------------------------------------------------------------------------------


def test_latents_round_trip_and_errors(tmp_path):
    lat = Latents(
        z=np.random.randn(3, 4).astype(np.float32),
        w=np.random.randn(3, 2, 4).astype(np.float32),
        seeds=np.array([5, 6, 7]),
        domains=["cat", "dog", "cat"],
        batch=2,
    )
    path = save_latents(tmp_path / "l.npz", lat)
    back = load_latents(path)
    assert np.array_equal(back.w, lat.w) and np.array_equal(back.z, lat.z)
    assert back.seeds.tolist() == [5, 6, 7] and back.domains == ["cat", "dog", "cat"] and back.batch == 2
    with pytest.raises(GancraftError, match="already exists"):
        save_latents(path, lat)
    np.savez(tmp_path / "bad.npz", z=np.zeros((2, 4)))
    with pytest.raises(GancraftError, match="bad.npz: latents file has no 'w'"):
        load_latents(tmp_path / "bad.npz")
    np.savez(tmp_path / "rows.npz", w=np.zeros((2, 2, 4)), seeds=np.arange(3))
    with pytest.raises(GancraftError, match="'seeds' has 3 rows"):
        load_latents(tmp_path / "rows.npz")
    with pytest.raises(GancraftError, match="does not exist"):
        load_latents(tmp_path / "missing.npz")


# ---- domains -------------------------------------------------------------------------------------


def test_class_domains_one_hot_all_and_errors():
    ckpt = make_tiny_checkpoint(
        c_dim=3, domains={"cat": {"kind": "class", "class": 0}, "dog": {"kind": "class", "class": 2}}
    )
    G = ckpt.generator()
    specs = dom.resolve_domains(ckpt, "all", G)
    assert [s.name for s in specs] == ["cat", "dog"]
    assert specs[1].c.tolist() == [0, 0, 1]
    assert dom.resolve_domain(ckpt, "cat+dog", G).c.tolist() == [1, 0, 1]
    mid = dom.interpolate_domains(specs[0], specs[1], 0.25)
    assert torch.allclose(mid.c, torch.tensor([0.75, 0, 0.25]))
    with pytest.raises(GancraftError, match="no such domain .*known: cat, dog"):
        dom.resolve_domain(ckpt, "fox", G)
    cat = _images(G, [0], batch=1, domain=specs[0])
    dog = _images(G, [0], batch=1, domain=specs[1])
    assert not torch.equal(cat, dog)
    with pytest.raises(GancraftError, match="choose a class"):
        _images(G, [0], batch=1)


def test_conditional_model_without_table_takes_class_indices():
    ckpt = make_tiny_checkpoint(c_dim=2)
    G = ckpt.generator()
    assert [s.name for s in dom.resolve_domains(ckpt, None, G)] == ["class0", "class1"]
    assert dom.resolve_domain(ckpt, "1", G).c.tolist() == [0, 1]
    with pytest.raises(GancraftError, match="classes 0-1"):
        dom.resolve_domain(ckpt, "2", G)


def test_plain_model_refuses_domain_names(G):
    with pytest.raises(GancraftError, match="single domain"):
        dom.resolve_domain(make_tiny_checkpoint(), "cat", G)


def test_expanded_model_subspaces():
    w_dim = 32
    q = torch.linalg.qr(torch.randn(w_dim, 2, generator=torch.Generator().manual_seed(3)))[0].t()
    table = {
        "base": {"kind": "base"},
        "sketch": {"kind": "repurposed", "direction": q[0].tolist(), "index": 30, "distance": 20.0},
        "sumo": {"kind": "repurposed", "direction": q[1].tolist(), "index": 31, "distance": 10.0},
    }
    ckpt = make_tiny_checkpoint(domains=table)
    G = ckpt.generator()
    ws = map_latents(G, z_from_seeds([0, 1], w_dim))
    w_avg = G.mapping.w_avg
    base = dom.apply_domain(ws, dom.resolve_domain(ckpt, "base", G))
    sketch = dom.apply_domain(ws, dom.resolve_domain(ckpt, "sketch", G))
    both = dom.apply_domain(ws, dom.resolve_domain(ckpt, "sketch+sumo", G))
    # base subspace: through w_avg, so the coordinates along repurposed directions are w_avg's
    assert torch.allclose(base @ q.t(), (w_avg @ q.t()).expand_as(base @ q.t()), atol=1e-4)
    assert torch.allclose(sketch - base, (20.0 * q[0]).expand_as(base), atol=1e-4)
    assert torch.allclose(both - base, (20.0 * q[0] + 10.0 * q[1]).expand_as(base), atol=1e-4)
    # components orthogonal to the repurposed span are untouched
    rest = ws - (ws @ q.t()) @ q
    assert torch.allclose(base - (base @ q.t()) @ q, rest, atol=1e-4)
    a, b = dom.resolve_domain(ckpt, "base", G), dom.resolve_domain(ckpt, "sketch", G)
    half = dom.apply_domain(ws, dom.interpolate_domains(a, b, 0.5))
    assert torch.allclose(half - base, (10.0 * q[0]).expand_as(base), atol=1e-4)


def test_vector_domain_scales_styles():
    ckpt = make_tiny_checkpoint(domains={"toon": {"kind": "vector", "tensor": "domain_vectors.toon"}})
    G = ckpt.generator()
    ckpt.tensors["domain_vectors.toon"] = torch.randn(G.synthesis.style_dim, generator=torch.Generator().manual_seed(0))
    spec = dom.resolve_domain(ckpt, "toon", G)
    ws = map_latents(G, z_from_seeds([0], G.z_dim))
    assert not torch.equal(synthesize(G, ws, spec), synthesize(G, ws))
    assert torch.equal(
        synthesize(G, ws, dom.interpolate_domains(dom.DomainSpec("plain"), spec, 0.0)),
        synthesize(G, ws, dom.DomainSpec("plain", style_scale=torch.zeros_like(spec.style_scale))),
    )
    ckpt.tensors["domain_vectors.toon"] = torch.zeros(3)
    with pytest.raises(GancraftError, match="style width"):
        dom.resolve_domain(ckpt, "toon", G)


# ---- interpolation and mixing --------------------------------------------------------------------


def test_slerp_endpoints_and_norm():
    a = torch.tensor([1.0, 0.0]) * 3
    b = torch.tensor([0.0, 1.0]) * 3
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    assert abs(mid.norm().item() - 3.0) < 1e-5 and torch.allclose(mid[0], mid[1])
    assert torch.allclose(slerp(a, a, 0.3), a)


def test_frame_times():
    times = frame_times(3, 5, loop=False)
    assert times[0] == (0, 1, 0.0) and times[-1] == (1, 2, 1.0) and len(times) == 5
    looped = frame_times(2, 4, loop=True)
    assert [(i, j) for i, j, _ in looped] == [(0, 1), (0, 1), (1, 0), (1, 0)]
    with pytest.raises(GancraftError):
        frame_times(1, 5, loop=False)


def test_style_mix_grid_takes_column_styles_at_the_mixed_layers(G):
    layers = resolution_indices(G, "4-8")
    assert layers == [0, 1, 2]
    assert layer_indices(G, "0-2,5") == [0, 1, 2, 5]
    with pytest.raises(GancraftError, match="out of range"):
        layer_indices(G, f"0-{G.num_ws}")
    imgs = style_mix(G, [1, 2], [3, 4, 5], layers, batch_size=4)
    assert imgs.shape[0] == 3 * 4
    assert (imgs[0] == -1).all()
    plain = _images(G, [1, 2, 3, 4, 5], batch=4)
    assert (imgs[1:4] - plain[2:5]).abs().max() <= 2e-5  # first row: column seeds
    assert (imgs[[4, 8]] - plain[0:2]).abs().max() <= 2e-5  # first column: row seeds
    ws = map_latents(G, z_from_seeds([2, 4], G.z_dim))
    mixed = ws[0].clone()
    mixed[layers] = ws[1][layers]
    expected = synthesize(G, mixed[None])
    assert (imgs[2 * 4 + 2] - expected[0]).abs().max() <= 2e-5
