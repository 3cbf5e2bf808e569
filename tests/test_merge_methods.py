"""Merge methods of `average` (registry, TIES, DARE) and per-resolution weights.

The reference maths is restated here in numpy, element by element, from the papers and
mergekit's definitions; the hand-computed examples pin the definitions themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gancraft import Checkpoint, load, save
from gancraft.errors import GancraftError
from gancraft.merge import average, average_checkpoints, methods
from gancraft.merge.methods.dare import keep_mask
from gancraft.merge.methods.taskvec import rescale
from gancraft.merge.methods.ties import trim
from gancraft.merge.res_weights import parse_weights_by_res, weights_at

from conftest import cli_invoke, make_tiny_checkpoint

BUFFERS = ("noise_const", "resample_filter")


def child(parent: Checkpoint, seed: int, noise: bool = False) -> Checkpoint:
    """A fine-tuned copy of `parent`; with `noise`, its noise images differ too (they must not be mixed)."""
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for k, v in parent.tensors.items():
        frozen = k.endswith(BUFFERS) and not (noise and k.endswith("noise_const"))
        tensors[k] = v if frozen else v + 0.1 * torch.randn(v.shape, generator=gen)
    return Checkpoint(tensors=tensors, g_config=parent.g_config, d_config=parent.d_config)


@pytest.fixture
def family(tmp_path: Path) -> dict[str, Path]:
    parent = make_tiny_checkpoint(0)
    out = {}
    for name, ck in (
        ("p", parent),
        ("c1", child(parent, 1, noise=True)),
        ("c2", child(parent, 2)),
        ("c3", child(parent, 3)),
    ):
        out[name] = tmp_path / f"{name}.st"
        save(ck, out[name])
    return out


# ---------------------------------------------------------------------------------------------
# reference maths (numpy, float64)


def ref_trim(tau: np.ndarray, density: float) -> np.ndarray:
    flat = tau.reshape(-1)
    k = max(1, int(density * flat.size))
    keep = np.zeros(flat.size, bool)
    keep[np.argsort(-np.abs(flat), kind="stable")[:k]] = True
    return np.where(keep, flat, 0.0).reshape(tau.shape)


def ref_consensus(weighted: list[np.ndarray], weights: list[float], normalize: bool) -> np.ndarray:
    out = np.zeros_like(weighted[0])
    for idx in np.ndindex(out.shape):
        vals = [v[idx] for v in weighted]
        sign = 1.0 if sum(vals) >= 0 else -1.0
        agree = [i for i, v in enumerate(vals) if np.sign(v) == sign]
        num = sum(vals[i] for i in agree)
        den = sum(weights[i] for i in agree)
        out[idx] = num / den if normalize and den != 0 else num
    return out


def ref_ties(
    base: np.ndarray, models: list[np.ndarray], weights: list[float], density: float, lam: float = 1.0
) -> np.ndarray:
    weighted = [w * ref_trim(x - base, density) for w, x in zip(weights, models)]
    return base + lam * ref_consensus(weighted, weights, normalize=True)


def ref_dare(
    base: np.ndarray,
    models: list[np.ndarray],
    weights: list[float],
    masks: list[np.ndarray],
    density: float,
    ties: bool,
    lam: float = 1.0,
    rule: str = "l1",
) -> np.ndarray:
    def rescaled(tau: np.ndarray, m: np.ndarray) -> np.ndarray:
        kept = np.where(m, tau, 0.0)
        if rule == "density":
            return kept / density
        before, after = np.abs(tau).sum(), np.abs(kept).sum()
        # mergekit: the L1 norm before the drop, unless either norm is (near) zero
        return kept if min(before, after) < 1e-7 else kept * (before / after)

    pruned = [rescaled(x - base, m) for x, m in zip(models, masks)]
    weighted = [w * t for w, t in zip(weights, pruned)]
    mixed = ref_consensus(weighted, weights, normalize=False) if ties else sum(weighted)
    return base + lam * mixed


def arrays(paths: list[Path]) -> list[dict[str, np.ndarray]]:
    return [{k: v.double().numpy() for k, v in load(p).tensors.items()} for p in paths]


# ---------------------------------------------------------------------------------------------
# hand-computed examples

TAU1 = [3.0, -1.0, 0.5, 2.0, -4.0]
TAU2 = [-2.0, 1.0, 0.25, 3.0, 1.0]


def test_trim_keeps_the_top_k_magnitudes_by_hand():
    # k = floor(0.6 * 5) = 3; |TAU2| has a tie at 1 (elements 1 and 4): the earlier one stays
    assert trim(torch.tensor(TAU1, dtype=torch.float64), 0.6).tolist() == [3, 0, 0, 2, -4]
    assert trim(torch.tensor(TAU2, dtype=torch.float64), 0.6).tolist() == [-2, 1, 0, 3, 0]
    # many equal magnitudes: exactly the first k in element order, whatever the sort's internals
    many = torch.tensor([1.0, -1.0] * 50_000, dtype=torch.float64)
    assert torch.equal(trim(many, 0.01) != 0, torch.arange(100_000) < 1000)
    # a tensor smaller than 1/density keeps its largest element instead of vanishing
    assert trim(torch.tensor([0.5, -2.0], dtype=torch.float64), 0.2).tolist() == [0, -2]


def test_ties_by_hand():
    # trimmed (density 0.6): [3, 0, 0, 2, -4] and [-2, 1, 0, 3, 0]
    # weights 2, 1: weighted [6, 0, 0, 4, -8] and [-2, 1, 0, 3, 0]; sums [4, 1, 0, 7, -8]
    # elected signs + + + + -; agreeing: model 1 at 0, 3, 4; model 2 at 1, 3
    # disjoint mean: [6/2, 1/1, 0 (no one agrees: divisor 1), (4+3)/(2+1), -8/2], plus the parent 1
    base = torch.ones(5)
    m1, m2 = base + torch.tensor(TAU1), base + torch.tensor(TAU2)
    p = Checkpoint(tensors={"G_ema.mapping.fc0.weight": base}, g_config=make_tiny_checkpoint(0).g_config)
    ks = [Checkpoint(tensors={"G_ema.mapping.fc0.weight": m}, g_config=p.g_config) for m in (m1, m2)]
    from gancraft.merge.average import average_recipes
    from gancraft.merge.stream import evaluate, open_sources

    sources = open_sources([p, *ks])
    for weights, lam, want in (
        ([2, 1], 1.0, [3, 1, 0, 7 / 3, -4]),
        ([1, 1], 1.0, [3, 1, 0, 2.5, -4]),
        ([2, 1], 0.5, [1.5, 0.5, 0, 7 / 6, -2]),
    ):
        r = average_recipes(["G_ema.mapping.fc0.weight"], 3, weights, "ties", True, {"density": 0.6, "lambda": lam})
        out = evaluate(r["G_ema.mapping.fc0.weight"], "G_ema.mapping.fc0.weight", sources)
        torch.testing.assert_close(out, 1 + torch.tensor(want, dtype=torch.float32), rtol=0, atol=1e-6)


def test_ties_sign_tie_elects_plus():
    # weighted task vectors +1 and -1 sum to exactly 0: mergekit elects +, so only the first counts
    from gancraft.merge.methods.taskvec import merge_task_vectors

    base = torch.zeros(2)
    xs = [base, torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.0])]
    out = merge_task_vectors(xs, [1.0, 1.0], lambda i, d: d, consensus=True, normalize=True, scale=1.0, key="k")
    assert out.tolist() == [1.0, 2.0]


def test_rescale_rules_by_hand():
    tau = torch.tensor(TAU1, dtype=torch.float64)
    kept = torch.tensor([True, False, False, True, True])
    assert rescale(tau, kept, "none", 0.5).tolist() == [3, 0, 0, 2, -4]
    assert rescale(tau, kept, "density", 0.5).tolist() == [6, 0, 0, 4, -8]  # 1 / (1 - p), p = 0.5
    # l1: |tau|_1 = 10.5, |kept|_1 = 9, so x 7/6
    torch.testing.assert_close(
        rescale(tau, kept, "l1", 0.5), torch.tensor([3.5, 0, 0, 7 / 3, -14 / 3], dtype=torch.float64)
    )


def test_dare_linear_by_hand():
    # one model, weight 1, density 0.5: every element is either dropped (the parent's value) or
    # the parent plus twice its task vector, and the drop is the mask keep_mask names
    parent = make_tiny_checkpoint(0)
    kid = child(parent, 1)
    out = average_checkpoints(
        [kid], weights=[1.0], base=parent, method="dare-linear", params={"density": 0.5, "rescale": "density"}
    )
    key = "G_ema.synthesis.b16.conv1.weight"
    p, c, o = (x.tensors[key].double() for x in (parent, kid, out))
    mask = keep_mask(p.shape, 0.5, 0, key, 0)
    assert 0.3 < mask.double().mean() < 0.7
    torch.testing.assert_close(o, torch.where(mask, p + 2 * (c - p), p), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# whole checkpoints against the reference


def test_ties_file_equals_the_reference(family, tmp_path):
    weights, density, lam = [1.0, 0.5, 2.0], 0.3, 0.8
    average(
        [family["c1"], family["c2"], family["c3"]],
        tmp_path / "t.st",
        base=family["p"],
        method="ties",
        weights=weights,
        params={"density": density, "lambda": lam},
    )
    out = load(tmp_path / "t.st")
    p, c1, c2, c3 = arrays([family[n] for n in ("p", "c1", "c2", "c3")])
    for k, v in out.tensors.items():
        if k.endswith(BUFFERS):
            assert np.array_equal(v.numpy(), p[k].astype(np.float32)), k  # the parent's, never mixed
        else:
            want = ref_ties(p[k], [c1[k], c2[k], c3[k]], weights, density, lam)
            np.testing.assert_allclose(v.double().numpy(), want, rtol=1e-6, atol=1e-6, err_msg=k)
    entry = out.history[-1]["params"]
    assert entry["method"] == "ties" and entry["density"] == density and entry["lambda"] == lam


@pytest.mark.parametrize("method,rule", [("dare-linear", None), ("dare-ties", None), ("dare-ties", "density")])
def test_dare_file_equals_the_reference(family, tmp_path, method, rule):
    weights, density, seed = [0.7, 0.4], 0.4, 17
    params = {"density": density, "seed": seed} | ({"rescale": rule} if rule else {})
    average(
        [family["c1"], family["c2"]], tmp_path / "d.st", base=family["p"], method=method, weights=weights, params=params
    )
    out = load(tmp_path / "d.st")
    p, c1, c2 = arrays([family[n] for n in ("p", "c1", "c2")])
    for k, v in out.tensors.items():
        if k.endswith(BUFFERS):
            assert np.array_equal(v.numpy(), p[k].astype(np.float32)), k
            continue
        masks = [keep_mask(p[k].shape, density, seed, k, i).numpy() for i in range(2)]
        want = ref_dare(p[k], [c1[k], c2[k]], weights, masks, density, ties=method == "dare-ties", rule=rule or "l1")
        np.testing.assert_allclose(v.double().numpy(), want, rtol=1e-6, atol=1e-6, err_msg=k)


def test_dare_drop_is_seeded_per_tensor_and_model():
    a = keep_mask((400, 250), 0.3, 5, "G.x", 0)
    assert torch.equal(a, keep_mask((400, 250), 0.3, 5, "G.x", 0))
    assert abs(a.double().mean().item() - 0.3) < 0.01  # drop probability p = 1 - density
    for other in (
        keep_mask((400, 250), 0.3, 6, "G.x", 0),
        keep_mask((400, 250), 0.3, 5, "G.y", 0),
        keep_mask((400, 250), 0.3, 5, "G.x", 1),
    ):
        assert (a != other).double().mean() > 0.3


def test_dare_ignores_merge_order_and_global_rng(family):
    p, c1, c2 = (load(family[n]) for n in ("p", "c1", "c2"))
    torch.manual_seed(0)
    whole = average_checkpoints([c1, c2], base=p, method="dare-ties", params={"density": 0.5})
    torch.manual_seed(1)
    g_only = average_checkpoints([c1, c2], base=p, method="dare-ties", params={"density": 0.5}, nets=["G_ema"])
    for k, v in g_only.tensors.items():
        assert torch.equal(v, whole.tensors[k]), k
    reseeded = average_checkpoints([c1, c2], base=p, method="dare-ties", params={"density": 0.5, "seed": 1})
    k = "G_ema.synthesis.b16.conv1.weight"
    assert not torch.equal(reseeded.tensors[k], whole.tensors[k])


@pytest.mark.parametrize("method", ["ties", "dare-linear"])
def test_streamed_file_equals_the_in_memory_merge(family, tmp_path, method):
    params = {"density": 0.5}
    average([family["c1"], family["c2"]], tmp_path / "o.st", base=family["p"], method=method, params=params)
    mem = average_checkpoints(
        [load(family["c1"]), load(family["c2"])], base=load(family["p"]), method=method, params=params
    )
    out = load(tmp_path / "o.st").tensors
    assert set(out) == set(mem.tensors)
    for k, v in mem.tensors.items():
        assert torch.equal(out[k].view(torch.int32), v.view(torch.int32)), k


def test_density_one_dare_linear_is_task_arithmetic(family):
    p, c1, c2 = (load(family[n]) for n in ("p", "c1", "c2"))
    dare = average_checkpoints([c1, c2], base=p, weights=[1.0, 0.5], method="dare-linear", params={"density": 1})
    arith = average_checkpoints([c1, c2], base=p, weights=[1.0, 0.5])
    for k, v in arith.tensors.items():
        torch.testing.assert_close(dare.tensors[k], v, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# the registry and its refusals


def test_cli_choices_and_help_come_from_the_registry():
    assert methods.names() == ("mean", "slerp", "ties", "dare-linear", "dare-ties")
    r = cli_invoke("average", "--help")
    assert r.exit_code == 0
    # click wraps lines at spaces and after hyphens: compare without whitespace
    text = "".join(r.output.split())
    assert "[mean|slerp|ties|dare-linear|dare-ties]" in text
    for m in methods.methods():
        assert "".join(f"{m.name}: {m.summary}".split()) in text


def test_method_options_refused_where_they_do_not_apply(family, tmp_path):
    a, b, p = family["c1"], family["c2"], family["p"]
    for kw, pattern in (
        (
            dict(params={"density": 0.5}),
            r"--density: --method mean does not take it "
            r"\(only ties, dare-linear, dare-ties do\)",
        ),
        (dict(method="ties", params={"density": 0.5}), "--method ties needs --base"),
        (dict(method="ties", base=p), "--method ties needs --density"),
        (dict(method="ties", base=p, params={"density": 0.5, "seed": 3}), "--seed: --method ties does not take it"),
        (dict(method="dare-ties", base=p, params={"density": 1.5}), "--density: must be above 0"),
        (dict(method="ties", base=p, params={"density": 0.5, "rescale": "l3"}), "--rescale"),
    ):
        with pytest.raises(GancraftError, match=pattern):
            average([a, b], tmp_path / "o.st", **kw)
    assert not (tmp_path / "o.st").exists()


def test_cli_ties_and_dare(family, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = cli_invoke("average", "--base", family["p"], family["c1"], family["c2"], "--method", "ties", "--density", "0.3")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "c1+c2.ties.st"
    want = average_checkpoints(
        [load(family["c1"]), load(family["c2"])], base=load(family["p"]), method="ties", params={"density": 0.3}
    )
    for k, v in load(tmp_path / "c1+c2.ties.st").tensors.items():
        assert torch.equal(v, want.tensors[k]), k
    r = cli_invoke(
        "average",
        "--base",
        family["p"],
        family["c1"],
        "--method",
        "dare-linear",
        "--density",
        "0.5",
        "--seed",
        "3",
        "--rescale",
        "l1",
        "--lambda",
        "0.5",
        "-o",
        "d.st",
    )
    assert r.exit_code == 0, r.output
    recorded = load(tmp_path / "d.st").history[-1]["params"]
    assert {k: recorded[k] for k in ("density", "seed", "rescale", "lambda")} == {
        "density": 0.5,
        "seed": 3,
        "rescale": "l1",
        "lambda": 0.5,
    }
    r = cli_invoke("average", family["c1"], family["c2"], "--density", "0.5", "-o", "x.st")
    assert r.exit_code == 2 and "--density" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------
# per-resolution weights


def test_weights_by_res_worked_example_from_help():
    table = parse_weights_by_res("4:1,0;64:0,1")
    assert table == {4: (1.0, 0.0), 64: (0.0, 1.0)}
    got = {r: weights_at(table, r) for r in (4, 8, 16, 32, 64, 128)}
    assert got == {4: (1, 0), 8: (0.75, 0.25), 16: (0.5, 0.5), 32: (0.25, 0.75), 64: (0, 1), 128: (0, 1)}
    step = parse_weights_by_res(" 32:0,1 ; 16:1,0 ")  # a hard switch, listed in any order
    assert [weights_at(step, r) for r in (4, 16, 32, 256)] == [(1, 0), (1, 0), (0, 1), (0, 1)]
    three = parse_weights_by_res("4:0,0;16:1,2;256:3,10")
    assert weights_at(three, 8) == (0.5, 1.0) and weights_at(three, 64) == (2.0, 6.0)


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("4:1,0;6:0,1", "power of two"),
        ("4:1,0;4:0,1", "given twice"),
        ("4:1,0;8:1", "same number"),
        ("4=1,0", "RES:W1"),
        ("", "no RES"),
        ("4:1,nan", "finite"),
        ("2:1,0", "power of two >= 4"),
    ],
)
def test_weights_by_res_syntax_refused(text, pattern):
    with pytest.raises(GancraftError, match=pattern):
        parse_weights_by_res(text)


def test_weights_by_res_merge(family, tmp_path):
    a, b = family["c1"], family["c2"]
    average([a, b], tmp_path / "r.st", weights_by_res={4: (1, 0), 16: (0, 1)}, weights=[3, 1])
    out, (ta, tb) = load(tmp_path / "r.st").tensors, [load(x).tensors for x in (a, b)]
    seen = set()
    for k, v in out.items():
        if ".synthesis.b4." in k:
            want = ta[k]  # weights 1, 0: a bit-exact copy, noise images included
        elif ".synthesis.b16." in k:
            want = tb[k]
        elif ".synthesis.b8." in k:
            # halfway in log2 between 4 and 16; the noise image comes from the first of two equal weights
            want = ta[k] if k.endswith(BUFFERS) else ((ta[k].double() + tb[k].double()) / 2).float()
        else:
            # everything outside the synthesis blocks takes --weights 3, 1
            want = ta[k] if k.endswith(BUFFERS) else (0.75 * ta[k].double() + 0.25 * tb[k].double()).float()
        seen.add(k.split(".")[2] if ".synthesis." in k else k.split(".")[1])
        assert torch.equal(v.view(torch.int32), want.contiguous().view(torch.int32)), k
    assert {"b4", "b8", "b16", "mapping"} <= seen
    assert not torch.equal(ta["G_ema.synthesis.b8.conv1.noise_const"], tb["G_ema.synthesis.b8.conv1.noise_const"])
    assert load(tmp_path / "r.st").history[-1]["params"]["weights_by_res"] == {"4": [1, 0], "16": [0, 1]}


def test_weights_by_res_with_ties_and_refusals(family, tmp_path):
    p, c1, c2 = (load(family[n]) for n in ("p", "c1", "c2"))
    mixed = average_checkpoints(
        [c1, c2], base=p, method="ties", params={"density": 0.4}, weights_by_res={4: (1, 0), 16: (0, 1)}
    )
    only1 = average_checkpoints([c1, c2], base=p, method="ties", params={"density": 0.4}, weights=[1, 0])
    only2 = average_checkpoints([c1, c2], base=p, method="ties", params={"density": 0.4}, weights=[0, 1])
    k4, k16 = "G_ema.synthesis.b4.conv1.weight", "G_ema.synthesis.b16.conv1.weight"
    assert torch.equal(mixed.tensors[k4], only1.tensors[k4]) and torch.equal(mixed.tensors[k16], only2.tensors[k16])
    with pytest.raises(GancraftError, match="no resolution 64"):
        average_checkpoints([c1, c2], weights_by_res={4: (1, 0), 64: (0, 1)})
    with pytest.raises(GancraftError, match="got 3 weights at 4 for 2 models"):
        average_checkpoints([c1, c2], weights_by_res={4: (1, 0, 0)})
    with pytest.raises(GancraftError, match=r"--weights-by-res \(at 8\): the weights sum to zero"):
        average_checkpoints([c1, c2], weights_by_res={4: (1, 0), 16: (-1, 0)})


def test_cli_weights_by_res(family, tmp_path):
    out = tmp_path / "r.st"
    r = cli_invoke("average", family["c1"], family["c2"], "--weights-by-res", "4:1,0;16:0,1", "-o", out)
    assert r.exit_code == 0, r.output
    want = average_checkpoints([load(family["c1"]), load(family["c2"])], weights_by_res={4: (1, 0), 16: (0, 1)})
    for k, v in load(out).tensors.items():
        assert torch.equal(v, want.tensors[k]), k
    r = cli_invoke("average", family["c1"], family["c2"], "--weights-by-res", "4:1", "-o", tmp_path / "x.st")
    assert r.exit_code == 2 and "--weights-by-res: got 1 weights at 4 for 2 models" in r.stderr.splitlines()[-1]
    r = cli_invoke("average", family["c1"], family["c2"], "--weights-by-res", "4:1;x", "-o", tmp_path / "x.st")
    assert r.exit_code == 2 and r.stderr.strip().splitlines() == [
        "gancraft average: error: --weights-by-res: 'x' is not RES:W1,W2,... with RES a power of two >= 4 "
        "(e.g. '4:1,0;64:0,1')"
    ]
