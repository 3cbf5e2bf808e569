"""SeFA: the basis against an independent eigendecomposition, layer choices, dormant directions, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from gancraft import Checkpoint, load, save
from gancraft.errors import GancraftError
from gancraft.latent import sefa as S
from gancraft.latent.files import load_direction, load_directions
from gancraft.latent.seeds import z_from_seeds
from gancraft.metrics.perceptual import pixel_distance

from conftest import cli_invoke, cli_ok, make_tiny_checkpoint, tiny_configs


def _affine_rows(G, keep) -> np.ndarray:
    """Independent of sefa.py: read the state dict by NVIDIA names."""
    sd = G.state_dict()
    keys = [k for k in sd if k.startswith("synthesis.") and k.endswith(".affine.weight") and keep(k)]
    return np.concatenate([sd[k].double().numpy() for k in keys])


def _rosinality_rule(key: str) -> bool:
    return ".torgb." not in key or key.startswith("synthesis.b4.")


def _assert_same_basis(directions: torch.Tensor, sv: torch.Tensor, M: np.ndarray) -> None:
    evals, evecs = np.linalg.eigh(M.T @ M)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    d = directions.double().numpy()
    np.testing.assert_allclose(d @ d.T, np.eye(d.shape[0]), atol=1e-5)
    np.testing.assert_allclose(sv.double().numpy(), np.sqrt(np.clip(evals, 0, None)), rtol=1e-4, atol=1e-4)
    # eigenvectors are defined up to sign; random weights give distinct eigenvalues
    np.testing.assert_allclose(np.abs(np.sum(d * evecs.T, axis=1)), 1.0, atol=1e-4)


def test_default_basis_matches_independent_eigendecomposition(tiny_ckpt):
    G = tiny_ckpt.generator()
    result = S.sefa(G)
    assert result.layers == ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1"]
    assert result.directions.shape == (G.w_dim, G.w_dim)
    assert torch.all(result.singular_values[:-1] >= result.singular_values[1:])
    _assert_same_basis(result.directions, result.singular_values, _affine_rows(G, _rosinality_rule))


def test_genforce_normalisation_matches_independent_computation(tiny_ckpt):
    G = tiny_ckpt.generator()
    result = S.sefa(G, "0,1", normalize=True)
    assert result.layers == ["b4.conv1", "b8.conv0"]
    M = _affine_rows(G, lambda k: k.startswith(("synthesis.b4.conv1.", "synthesis.b8.conv0.")))
    M = M / np.linalg.norm(M, axis=1, keepdims=True)
    _assert_same_basis(result.directions, result.singular_values, M)
    assert not torch.allclose(result.directions.abs(), S.sefa(G, "0,1").directions.abs(), atol=1e-3)


@pytest.mark.parametrize(
    "spec, names",
    [
        ("first", ["b4.conv1"]),
        ("8-16", ["b8.conv0", "b8.conv1", "b16.conv0", "b16.conv1"]),
        ("4-8", ["b4.conv1", "b4.torgb", "b8.conv0", "b8.conv1"]),
        ("b16.torgb,0", ["b4.conv1", "b16.torgb"]),
    ],
)
def test_layer_specs(tiny_ckpt, spec, names):
    assert [i.name for i in S.select_layers(tiny_ckpt.generator(), spec)] == names


@pytest.mark.parametrize("spec", ["3-8", "16-8", "9", "b5.conv0", "", "0,,1"])
def test_bad_layer_specs(tiny_ckpt, spec):
    with pytest.raises(GancraftError):
        S.select_layers(tiny_ckpt.generator(), spec)


def test_short_matrix_gets_null_space_completed():
    M = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    d, sv = S.factorize_matrix(M)
    assert d.shape == (8, 8)
    np.testing.assert_allclose((d @ d.T).numpy(), np.eye(8), atol=1e-5)
    assert torch.all(sv[5:] == 0) and torch.all(sv[:5] > 0)
    assert torch.allclose(M.float() @ d[5:].T, torch.zeros(5, 3), atol=1e-5)


def _planted_dormant(seed: int = 0):
    """A generator whose every modulation ignores w along u: u must come out last and unmeasurable."""
    ckpt = make_tiny_checkpoint(seed)
    G = ckpt.generator()
    u = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(7))
    u = u / u.norm()
    with torch.no_grad():
        for info in G.synthesis.layers():
            a = S._affine(G, info.name)
            a.weight -= (a.weight @ u).unsqueeze(1) * u.unsqueeze(0)
    return ckpt, G, u


def test_planted_dormant_direction_is_last_and_changes_nothing():
    _, G, u = _planted_dormant()
    result = S.sefa(G)
    assert abs(float(result.directions[-1] @ u)) > 0.999
    assert result.singular_values[-1] < 1e-4 * result.singular_values[0]
    z = z_from_seeds([0, 1], G.z_dim)
    ws = G.mapping(z)
    dirs = result.directions[[0, -1]]
    means, stds = S.measure_directions(G, dirs, ws, 5.0, pixel_distance, progress=False)
    assert means[0] > 0.01
    assert means[1] < 1e-5
    assert S.dormant_mask(means).tolist() == [False, True]


def test_measure_is_a_real_traversal(tiny_ckpt):
    G = tiny_ckpt.generator()
    d = S.sefa(G).directions[:1]
    ws = G.mapping(z_from_seeds([3], G.z_dim))
    means, _ = S.measure_directions(G, d, ws, 2.0, pixel_distance, progress=False)
    base = G.synthesis(ws)
    plus, minus = G.synthesis(ws + 2.0 * d[0]), G.synthesis(ws - 2.0 * d[0])
    expected = (pixel_distance(base, plus) + pixel_distance(base, minus)).item() / 2
    assert means[0] == pytest.approx(expected, rel=1e-5)


def _narrow_checkpoint() -> Checkpoint:
    """w_dim 8: eight directions keep the CLI's full --measure sweep quick."""
    torch.manual_seed(0)
    from gancraft.nets import Generator

    return Checkpoint.from_modules(G_ema=Generator(tiny_configs(16, 0, w_dim=8)[0]))


def test_cli_writes_directions_measure_and_sheet(tmp_path):
    ckpt_path = tmp_path / "m.st"
    save(_narrow_checkpoint(), ckpt_path)
    out = tmp_path / "m.sefa.st"
    sheet = tmp_path / "sheet.png"
    r = cli_invoke(
        "sefa",
        ckpt_path,
        "-o",
        out,
        "--measure",
        "2",
        "--sheet",
        sheet,
        "--indices",
        "0,7",
        "--steps",
        "3",
        "--distance",
        "3",
    )
    assert r.exit_code == 0, r.output
    csv_path, png_path = tmp_path / "m.sefa.measure.csv", tmp_path / "m.sefa.measure.png"
    assert r.stdout.split() == [str(out), str(csv_path), str(png_path), str(sheet)]
    assert "pixel" in r.stderr and "LPIPS unavailable" in r.stderr
    with safe_open(str(out), "pt") as f:
        d, sv, meta = f.get_tensor("directions"), f.get_tensor("singular_values"), f.metadata()
    assert json.loads(meta["kind"]) == "sefa"
    assert json.loads(meta["factorized_layers"])[:2] == ["b4.conv1", "b4.torgb"]
    assert "layers" not in meta  # rosinality's default edits the whole w
    loaded = load_directions(out)
    assert loaded.layers is None and loaded.names[7] == "sefa007"
    assert torch.equal(load_direction(f"{out}:3").vector, d[3])
    assert json.loads(meta["source"])["path"] == str(ckpt_path)
    G = _narrow_checkpoint().generator()
    ref = S.sefa(G)
    assert torch.allclose(d, ref.directions) and torch.allclose(sv, ref.singular_values)
    rows = list(csv.DictReader(open(csv_path)))
    assert len(rows) == G.w_dim
    # the CSV's numbers come from traversals of the same samples
    ws = G.mapping(z_from_seeds([0, 1], G.z_dim))
    means, _ = S.measure_directions(G, ref.directions[[0, 7]], ws, 3.0, pixel_distance, progress=False)
    assert float(rows[0]["mean_pixel-l1"]) == pytest.approx(means[0], rel=1e-4)
    assert float(rows[7]["mean_pixel-l1"]) == pytest.approx(means[1], rel=1e-4)
    from PIL import Image

    assert Image.open(sheet).size == (3 * 16 + 2 * 2, 2 * 16 + 2)
    assert Image.open(png_path).size[0] > 100


def test_library_writes_what_the_command_writes(tmp_path):
    ckpt_path = tmp_path / "m.st"
    save(_narrow_checkpoint(), ckpt_path)
    args = ["--measure", "2", "--sheet", tmp_path / "cli.png", "--indices", "0,7", "--steps", "3", "--distance", "3"]
    cli = cli_ok("sefa", ckpt_path, "-o", tmp_path / "cli.st", *args, "--seeds", "4,5", "--layers", "4-8")
    api = S.write_sefa(
        load(ckpt_path),
        tmp_path / "api.st",
        measure=2,
        sheet=tmp_path / "api.png",
        indices=[0, 7],
        steps=3,
        distance=3.0,
        seeds=[4, 5],
        layers="4-8",
    )
    assert [p.name for p in api] == ["api.st", "api.measure.csv", "api.measure.png", "api.png"]
    with safe_open(cli[0], "np") as f, safe_open(str(api[0]), "np") as g:
        assert all(np.array_equal(f.get_tensor(k), g.get_tensor(k)) for k in ("directions", "singular_values"))
        assert f.metadata() == g.metadata()
    assert open(cli[1]).read() == api[1].read_text()
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(cli[3])), np.asarray(Image.open(api[3])))


def test_library_errors_name_the_value_and_the_command_adds_the_option(tmp_path, tiny_ckpt_path):
    cases = (
        (dict(dormant_fraction=1.0), "dormant_fraction"),
        (dict(measure=3, seeds=[1]), "seeds"),
        (dict(layers="b9"), "layers"),
        (dict(sheet=tmp_path / "s.png", steps=1), "steps"),
    )
    for kw, field in cases:
        with pytest.raises(GancraftError) as caught:
            S.write_sefa(load(tiny_ckpt_path), tmp_path / "x.st", **kw)
        assert caught.value.field == field and "--" not in str(caught.value)
    line = _one_line_error(
        cli_invoke("sefa", tiny_ckpt_path, "-o", tmp_path / "x.st", "--measure", "3", "--seeds", "1")
    )
    assert line.endswith("error: --seeds: gives 1 seeds, 3 are to be measured"), line
    line = _one_line_error(cli_invoke("sefa", tiny_ckpt_path, "-o", tmp_path / "x.st", "--layers", "b9"))
    assert "error: --layers: unknown layer 'b9'; expected all (" in line, line
    assert not (tmp_path / "x.st").exists()


def _one_line_error(r) -> str:
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gancraft sefa: error:"), r.stderr
    return lines[0]


def test_cli_bad_inputs(tmp_path, tiny_ckpt_path):
    out = str(tmp_path / "o.st")
    assert "b9" in _one_line_error(cli_invoke("sefa", tiny_ckpt_path, "-o", out, "--layers", "b9"))
    _one_line_error(cli_invoke("sefa", tmp_path / "missing.st", "-o", out))
    assert "--indices" in _one_line_error(
        cli_invoke("sefa", tiny_ckpt_path, "-o", out, "--sheet", tmp_path / "s.png", "--indices", "40")
    )
    (tmp_path / "exists.st").write_bytes(b"x")
    assert "--force" in _one_line_error(cli_invoke("sefa", tiny_ckpt_path, "-o", tmp_path / "exists.st"))
    assert not (tmp_path / "o.st").exists()


def test_cli_class_conditional_needs_domain_and_writes_nothing(tmp_path):
    path = tmp_path / "cond.st"
    save(
        make_tiny_checkpoint(c_dim=2, domains={"a": {"kind": "class", "class": 0}, "b": {"kind": "class", "class": 1}}),
        path,
    )
    out = tmp_path / "c.st"
    line = _one_line_error(cli_invoke("sefa", path, "-o", out, "--measure", "1"))
    assert "--domain" in line
    assert list(tmp_path.iterdir()) == [path]
    r = cli_invoke(
        "sefa", path, "-o", out, "--sheet", tmp_path / "s.png", "--domain", "b", "--top-k", "2", "--steps", "2"
    )
    assert r.exit_code == 0, r.output


def test_layer_subset_edits_only_its_layers(tmp_path, tiny_ckpt):
    G = tiny_ckpt.generator()
    result = S.sefa(G, "16-16")
    out = S.save_directions(tmp_path / "fine.st", result.directions, S.sefa_metadata(result, None, None))
    assert load_directions(out).layers == ["b16.conv0", "b16.conv1"]
    from gancraft.latent.generate import edit_layer_mask

    mask = edit_layer_mask(G, result.edit_layers)
    ws = G.mapping(z_from_seeds([0], G.z_dim))
    grid = S.traversal_sheet(G, result.directions, [0], ws, 3.0, steps=2, layer_mask=mask)
    moved = ws + 3.0 * result.directions[0] * mask.view(1, -1, 1)
    assert torch.equal(moved[:, ~mask], ws[:, ~mask])
    from gancraft.media.images import to_uint8

    assert np.array_equal(grid[:, 18:], to_uint8(G.synthesis(moved))[0])
    assert S.sefa(G, "all").edit_layers is None and S.sefa(G, "first").edit_layers is None
