"""The training-method registry: finetune's --method choices and help come from it, a method
registered from outside runs under `gancraft finetune`, and `build` hands each method its own
settings and the --params variant only to the method it extends."""

from __future__ import annotations

import pytest
import torch

from gancraft import load, save
from gancraft.errors import GancraftError
from gancraft.train import methods
from gancraft.train.methods import DomainVectorMethod, EWCMethod, FreezeDMethod, UnionMethod, build, parse_method

from conftest import cli_invoke, cli_ok, make_tiny_checkpoint


def _sources() -> dict:
    return {"a": make_tiny_checkpoint(1), "b": make_tiny_checkpoint(2)}


def test_finetune_method_help_and_choices_come_from_the_registry():
    text = "".join(cli_invoke("finetune", "--help").output.split())
    assert "".join(methods.help_text("finetune").split()) in text
    assert [m.name for m in methods.methods("finetune")] == ["union", "freeze-d", "ewc", "scratch"]
    assert [m.name for m in methods.methods("finetune", "--params")] == ["domain-vector"]
    # an alias names its own class only: the union subclasses inherit the attribute, not 'transfer'
    with pytest.raises(GancraftError) as err:
        parse_method("nope")
    assert (
        str(err.value)
        == "--method: unknown method 'nope' (choose from union, transfer, freeze-d=K, ewc=LAMBDA, scratch)"
    )


def test_a_method_is_registered_once():
    with methods.REGISTRY.scoped(), pytest.raises(RuntimeError, match="training method 'union' is registered twice"):
        methods.register(type("Again", (UnionMethod,), {"name": "union"}))


@pytest.fixture
def frozen_g():
    """A method from outside the package: the union fine-tune with G frozen, taking a value N."""
    with methods.REGISTRY.scoped():

        @methods.register
        class FrozenG(UnionMethod):
            name = "frozen-g"
            summary = "frozen-g=N (G frozen)"
            metavar = "N"

            def __init__(self, start, sources, value, **settings):
                super().__init__(start, sources, **settings)
                self.value = value

            @classmethod
            def parse_value(cls, spec, values):
                return values[0]

            def g_params(self, G):
                return []

        yield FrozenG


def test_a_registered_method_runs_under_finetune(frozen_g, tmp_path, monkeypatch):
    start, a = tmp_path / "start.st", tmp_path / "a.st"
    save(make_tiny_checkpoint(0), start)
    save(make_tiny_checkpoint(1), a)
    monkeypatch.chdir(tmp_path)
    common = ["--kimg", "0.008", "--batch", "4", "--quiet"]
    (written,) = cli_ok("finetune", start, "--domain", f"a={a}", "--method", "frozen-g=2", *common)
    assert written.endswith("start.frozen-g.st")
    out = load(written)
    assert out.history[-1]["params"]["method"] == "frozen-g" and out.history[-1]["params"]["value"] == 2.0
    before = load(start).tensors
    # G did not train (the conditional start copies the synthesis from START's G_ema); D did
    assert torch.equal(out.tensors["G.synthesis.b16.conv1.weight"], before["G_ema.synthesis.b16.conv1.weight"])
    assert not torch.equal(out.tensors["D.b16.conv1.weight"], before["D.b16.conv1.weight"])


def test_build_gives_each_method_its_own_settings_and_variants():
    start = make_tiny_checkpoint(0)
    ewc = build(*parse_method("ewc=1"), "all", start, _sources(), fisher_samples=8, fisher_batch=4, modulation="x")
    assert type(ewc) is EWCMethod and (ewc.fisher_samples, ewc.fisher_batch) == (8, 4) and ewc.value == (1.0,) * 3
    fd = build(*parse_method("freeze-d=2"), "all", start, _sources(), seed=5, fisher_samples=8)
    assert type(fd) is FreezeDMethod and fd.value == 2.0 and fd.seed == 5
    # transfer is union, which domain vectors extend
    dv = build(*parse_method("transfer"), "domain-vector", start, _sources(), modulation="before-demod")
    assert type(dv) is DomainVectorMethod and dv.modulation == "before-demod"
    assert dv.describe()["method"] == "domain-vector" and dv.describe()["params"] == "domain-vector"
    for spec in ("freeze-d=2", "ewc=1", "scratch"):
        with pytest.raises(GancraftError, match=f"--params domain-vector cannot be combined with --method {spec[:3]}"):
            build(*parse_method(spec), "domain-vector", start, _sources())
    with pytest.raises(GancraftError, match="--params: expected all or domain-vector, got 'some'"):
        build(UnionMethod, None, "some", start, _sources())
