"""gancraft average: exact maths of the streaming merge, refusals, and the CLI."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from gancraft import Checkpoint, load, save
from gancraft.errors import GancraftError
from gancraft.io_util import file_digest
from gancraft.merge import average, average_checkpoints, slerp

from conftest import cli_invoke, make_tiny_checkpoint

# the streaming engine, whose chunk size the tests shrink
stream_module = importlib.import_module("gancraft.merge.stream")


def bits(t: torch.Tensor) -> torch.Tensor:
    """Raw bit patterns, so -0.0 vs 0.0 and NaN payloads count as differences."""
    return t.contiguous().view(torch.int32) if t.dtype == torch.float32 else t


def assert_bitwise(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(bits(a[k]), bits(b[k])), k


def perturbed(seed: int) -> Checkpoint:
    """A child of model 0 (same noise images and filters), as rooting/fine-tuning produces."""
    parent = make_tiny_checkpoint(0)
    gen = torch.Generator().manual_seed(seed)
    tensors = {
        k: (v if k.endswith(("noise_const", "resample_filter")) else v + 0.1 * torch.randn(v.shape, generator=gen))
        for k, v in parent.tensors.items()
    }
    return Checkpoint(tensors=tensors, g_config=parent.g_config, d_config=parent.d_config)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, ckpt in (("a", make_tiny_checkpoint(0)), ("b", make_tiny_checkpoint(1)), ("c", make_tiny_checkpoint(2))):
        out[name] = tmp_path / f"{name}.st"
        save(ckpt, out[name])
    return out


def test_weights_one_zero_reproduce_each_input_bit_for_bit(files, tmp_path):
    a, b = load(files["a"]), load(files["b"])
    a.tensors["G_ema.synthesis.b8.conv0.bias"][0] = -0.0  # a sign of zero survives only an exact copy
    save(a, tmp_path / "a0.st")
    average([tmp_path / "a0.st", files["b"]], tmp_path / "o1.st", weights=[1, 0])
    average([tmp_path / "a0.st", files["b"]], tmp_path / "o2.st", weights=[0, 5])
    assert_bitwise(load(tmp_path / "o1.st").tensors, a.tensors)
    assert_bitwise(load(tmp_path / "o2.st").tensors, b.tensors)


def test_average_of_identical_models_is_identity(files, tmp_path):
    average([files["a"]] * 3, tmp_path / "o.st")
    assert_bitwise(load(tmp_path / "o.st").tensors, load(files["a"]).tensors)


def test_weighted_mean_formula_and_buffers_from_heaviest_input(files, tmp_path):
    average([files["a"], files["b"], files["c"]], tmp_path / "o.st", weights=[2, 1, 5])
    out, ins = load(tmp_path / "o.st"), [load(files[n]) for n in "abc"]
    w = [2 / 8, 1 / 8, 5 / 8]
    for k, v in out.tensors.items():
        if k.endswith(("noise_const", "resample_filter")):
            assert torch.equal(v, ins[2].tensors[k]), k
        else:
            want = sum(wi * x.tensors[k].double() for wi, x in zip(w, ins))
            torch.testing.assert_close(v.double(), want, rtol=1e-6, atol=1e-6)


def test_mean_of_two_is_the_exact_half_sum_across_chunk_edges(files, tmp_path, monkeypatch):
    # tiny chunks, so every tensor of the tiny model is streamed in several pieces
    monkeypatch.setattr(stream_module, "CHUNK", 64)
    average([files["a"], files["b"]], tmp_path / "o.st")
    out, a, b = load(tmp_path / "o.st"), load(files["a"]), load(files["b"])
    assert max(v.numel() for v in out.tensors.values()) > 10 * 64
    for k, v in out.tensors.items():
        # halving is exact in binary, so the float64 mean rounds once, to the nearest float32
        want = (
            a.tensors[k]
            if k.endswith(("noise_const", "resample_filter"))
            else ((a.tensors[k].double() + b.tensors[k].double()) / 2).float()
        )
        assert torch.equal(bits(v), bits(want)), k


@pytest.mark.parametrize(
    "kwargs",
    [dict(weights=[0.1, 0.7, 0.2]), dict(weights=[1.0, -0.35], base=True), dict(weights=[3, 1], method="slerp")],
)
def test_streamed_file_equals_the_whole_tensor_merge(files, tmp_path, monkeypatch, kwargs):
    monkeypatch.setattr(stream_module, "CHUNK", 64)
    names = "abc" if "base" not in kwargs and kwargs.get("method") != "slerp" else "ab"
    kw = dict(kwargs)
    if kw.pop("base", False):
        kw["base"] = files["c"]
    average([files[n] for n in names], tmp_path / "o.st", **kw)
    if "base" in kw:
        kw["base"] = load(files["c"])
    in_memory = average_checkpoints([load(files[n]) for n in names], **kw)
    assert_bitwise(load(tmp_path / "o.st").tensors, in_memory.tensors)


def test_slerp_endpoints_exact_and_midpoint_on_the_great_circle(files, tmp_path):
    average([files["a"], files["b"]], tmp_path / "s0.st", method="slerp", weights=[1, 0])
    average([files["a"], files["b"]], tmp_path / "s1.st", method="slerp", weights=[0, 2])
    assert_bitwise(load(tmp_path / "s0.st").tensors, load(files["a"]).tensors)
    assert_bitwise(load(tmp_path / "s1.st").tensors, load(files["b"]).tensors)

    gen = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(500, generator=gen, dtype=torch.float64), dim=0)
    b = torch.nn.functional.normalize(torch.randn(500, generator=gen, dtype=torch.float64), dim=0)
    omega = math.acos(float(a @ b))
    for t in (0.25, 0.5, 0.9):
        m = slerp(a, b, t)
        assert float(m.norm()) == pytest.approx(1.0, abs=1e-12)  # stays on the sphere, unlike lerp
        assert math.acos(float(m @ a)) == pytest.approx(t * omega, abs=1e-9)
        assert math.acos(float(m @ b)) == pytest.approx((1 - t) * omega, abs=1e-9)


def test_slerp_file_uses_t_from_weights(files, tmp_path):
    average([files["a"], files["b"]], tmp_path / "s.st", method="slerp", weights=[3, 1])
    out, a, b = load(tmp_path / "s.st"), load(files["a"]), load(files["b"])
    k = "G_ema.synthesis.b16.conv1.weight"
    torch.testing.assert_close(out.tensors[k], slerp(a.tensors[k], b.tensors[k], 0.25))


def test_task_arithmetic_against_parent(tmp_path):
    parent, c1, c2 = make_tiny_checkpoint(0), perturbed(1), perturbed(2)
    for name, ck in (("p", parent), ("c1", c1), ("c2", c2)):
        save(ck, tmp_path / f"{name}.st")
    average([tmp_path / "c1.st", tmp_path / "c2.st"], tmp_path / "t.st", base=tmp_path / "p.st", weights=[1.0, 0.5])
    out = load(tmp_path / "t.st")
    for k, v in out.tensors.items():
        p = parent.tensors[k].double()
        want = p + 1.0 * (c1.tensors[k].double() - p) + 0.5 * (c2.tensors[k].double() - p)
        torch.testing.assert_close(v.double(), want, rtol=1e-6, atol=1e-6)
    # default weights 1/N: the same as the plain mean of the children
    plain = average_checkpoints([c1, c2])
    arith = average_checkpoints([c1, c2], base=parent)
    for k in plain.tensors:
        torch.testing.assert_close(arith.tensors[k], plain.tensors[k], rtol=1e-6, atol=1e-6)
    # weight 1 on one child reproduces it exactly
    assert_bitwise(average_checkpoints([c1], weights=[1.0], base=parent).tensors, c1.tensors)


def test_nets_selection_and_history(files, tmp_path):
    average([files["a"], files["b"]], tmp_path / "g.st", nets=["G_ema"])
    out = load(tmp_path / "g.st")
    assert out.nets == ["G_ema"] and out.d_config is None
    entry = out.history[-1]
    assert entry["command"] == "average" and entry["params"]["nets"] == ["G_ema"]
    assert [i["blake3"] for i in entry["inputs"]] == [file_digest(files["a"]), file_digest(files["b"])]
    no_d = make_tiny_checkpoint(3, with_d=False)
    save(no_d, tmp_path / "nod.st")
    with pytest.raises(GancraftError, match=r"nod\.st has no D network"):
        average([files["a"], tmp_path / "nod.st"], tmp_path / "x.st", nets=["G_ema", "D"])
    average([files["a"], tmp_path / "nod.st"], tmp_path / "y.st")  # default: networks all inputs have
    assert load(tmp_path / "y.st").nets == ["G_ema", "G"]


def test_streamed_file_is_standard_safetensors(files, tmp_path):
    out = average([files["a"], files["b"]], tmp_path / "o.st")
    with safe_open(str(out), framework="pt") as fh:
        meta = fh.metadata()
        keys = list(fh.keys())
    assert meta["format"] == "gancraft" and len(keys) == len(load(files["a"]).tensors)
    with open(out, "rb") as fh:
        assert int.from_bytes(fh.read(8), "little") % 8 == 0


def test_incompatible_inputs_refused_before_writing(files, tmp_path):
    big = make_tiny_checkpoint(0, resolution=32)
    save(big, tmp_path / "big.st")
    with pytest.raises(GancraftError, match=r"big\.st: generator architecture differs.*img_resolution"):
        average([files["a"], tmp_path / "big.st"], tmp_path / "o.st")
    odd = load(files["b"])
    odd.tensors["G_ema.synthesis.b8.conv1.bias"] = torch.zeros(7)
    save(odd, tmp_path / "odd.st")
    with pytest.raises(GancraftError) as exc:
        average([files["a"], tmp_path / "odd.st"], tmp_path / "o.st")
    msg = str(exc.value)
    assert "G_ema.synthesis.b8.conv1.bias" in msg and "[7]" in msg and "[32]" in msg
    assert not (tmp_path / "o.st").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_recomputed_w_avg_is_the_mean_mapping_output(files, tmp_path):
    average([files["a"], files["b"]], tmp_path / "o.st", w_avg="recompute", nets=["G_ema"])
    out = load(tmp_path / "o.st")
    G = out.generator()
    with torch.no_grad():
        w = G.mapping(torch.randn(20000, G.z_dim, generator=torch.Generator().manual_seed(123)), broadcast=False)
    stored = out.tensors["G_ema.mapping.w_avg"]
    torch.testing.assert_close(stored, w.mean(0), rtol=0, atol=0.08)
    w_avg = "G_ema.mapping.w_avg"
    mean_of_inputs = (load(files["a"]).tensors[w_avg] + load(files["b"]).tensors[w_avg]) / 2
    assert (stored - mean_of_inputs).abs().max() > 0.3  # the fixtures' w_avg are random, not the true means


def test_bad_weights_refused(files, tmp_path):
    for kw, pattern in (
        (dict(weights=[1]), "got 1 weights for 2 models"),
        (dict(weights=[1, -1]), "sum to zero"),
        (dict(method="slerp", weights=[1, 1, 1]), "got 3 weights|exactly two"),
        (dict(method="nope"), "unknown method"),
    ):
        with pytest.raises(GancraftError, match=pattern):
            average([files["a"], files["b"]], tmp_path / "o.st", **kw)


def test_cli_average(files, tmp_path):
    out = tmp_path / "o.st"
    r = cli_invoke("average", files["a"], files["b"], "--weights", "1,0", "-o", out)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == str(out)
    assert_bitwise(load(out).tensors, load(files["a"]).tensors)
    r = cli_invoke("average", files["a"], files["b"], "-o", out)
    assert r.exit_code == 2 and "already exists" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli_invoke("average", files["a"], files["b"], "--weights", "1,x", "-o", out, "--force")
    assert r.exit_code == 2 and "--weights" in r.stderr
    r = cli_invoke("average", files["a"], "-o", tmp_path / "one.st")
    assert r.exit_code == 2 and "at least two" in r.stderr


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_files_stream_to_the_in_memory_result(tmp_path, dtype, monkeypatch):
    # bfloat16 has no numpy type, so its chunks are read through a byte view: both paths checked
    monkeypatch.setattr(stream_module, "CHUNK", 64)
    paths = []
    for seed in (0, 1):
        ckpt = make_tiny_checkpoint(seed)
        ckpt.tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in ckpt.tensors.items()}
        paths.append(tmp_path / f"{seed}.st")
        save(ckpt, paths[-1])
    average(paths, tmp_path / "out.st", weights=[0.3, 0.7])
    streamed = load(tmp_path / "out.st").tensors
    in_memory = average_checkpoints([load(p) for p in paths], weights=[0.3, 0.7]).tensors
    assert {v.dtype for k, v in streamed.items() if v.is_floating_point()} == {dtype}
    for k, want in in_memory.items():
        got = streamed[k]
        if want.is_floating_point():
            got, want = got.view(torch.int16), want.view(torch.int16)
        assert torch.equal(got, want), k
