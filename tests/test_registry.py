"""The one Registry class behind merge methods, training methods, checkpoint formats and feature
extractors: one name once, registration order kept, scoped registrations undone, and each
module's `register` decorator reaching the registry its lookups read."""

from __future__ import annotations

from typing import Mapping

import pytest

from gancraft.checkpoint import formats
from gancraft.errors import GancraftError
from gancraft.merge import methods as merge_methods
from gancraft.merge.stream import Linear
from gancraft.metrics import extractors
from gancraft.registry import Registry
from gancraft.train import methods as training_methods


class _A:
    name = "a"


class _B:
    name = "b"


def test_members_keep_registration_order_and_one_instance_each():
    reg = Registry("widget")
    assert reg.add(_B) is _B and reg.add(_A) is _A
    assert reg.names() == ("b", "a")
    assert isinstance(reg["a"], _A) and reg.get("a") is reg.get("a")
    assert reg.get("c") is None


def test_class_registries_keep_the_class():
    reg = Registry("widget", instances=False)
    reg.add(_A)
    assert reg["a"] is _A and reg.values() == (_A,)


def test_a_name_registered_twice_is_refused_and_the_first_kept():
    reg = Registry("widget")
    reg.add(_A)
    first = reg["a"]
    with pytest.raises(RuntimeError, match="^widget 'a' is registered twice$"):
        reg.add(type("Other", (), {"name": "a"}))
    assert reg["a"] is first


def test_scoped_undoes_what_was_registered_inside_only():
    reg = Registry("widget")
    reg.add(_A)
    before = reg["a"]
    with reg.scoped() as same:
        assert same is reg
        reg.add(_B)
        assert reg.names() == ("a", "b")
    assert reg.names() == ("a",) and reg["a"] is before
    with pytest.raises(ValueError), reg.scoped():
        reg.add(_B)
        raise ValueError
    assert reg.names() == ("a",)


class _Half(merge_methods.MergeMethod):
    name = "half"
    summary = "half of the first model"

    def mix(self, weights: tuple[float, ...], has_base: bool, params: Mapping[str, object], what: str):
        return Linear((0.5,) + (0.0,) * (len(weights) - 1)), 0


def test_each_modules_register_reaches_its_lookups_inside_scoped():
    """The decorators are bound to the registry objects when the modules load (`register =
    REGISTRY.add`): a scoped registration must reach the module's lookups, and leave no trace."""
    with merge_methods.REGISTRY.scoped():
        merge_methods.register(_Half)
        assert merge_methods.get("half").summary == "half of the first model"
        assert merge_methods.names()[-1] == "half"
    assert "half" not in merge_methods.names()

    with training_methods.REGISTRY.scoped():

        @training_methods.register
        class Probe(training_methods.UnionMethod):
            name = "probe"
            summary = "probe"

        assert training_methods.parse_method("probe") == (Probe, None)
    with pytest.raises(GancraftError, match="unknown method 'probe'"):
        training_methods.parse_method("probe")

    for module in (formats, extractors, merge_methods, training_methods):
        assert module.register.__self__ is module.REGISTRY


def test_the_four_registries_list_their_members():
    assert merge_methods.REGISTRY.names() == ("mean", "slerp", "ties", "dare-linear", "dare-ties")
    assert formats.REGISTRY.names() == ("native", "rosinality", "tf", "nvidia")
    assert extractors.REGISTRY.names() == ("inception", "clip", "torchscript")
    assert training_methods.REGISTRY.names() == ("union", "freeze-d", "ewc", "scratch", "domain-vector", "root")
