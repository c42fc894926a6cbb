"""The operator registry: names, descriptions, parameters, plug-ins, and its error messages."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

import operators
from operators import registry

SHAPE = (3, 24, 40)



def test_register_and_make_custom_operator():
    def factory(image_shape, generator=None, gain: float = 2.0):
        """A test factory."""
        return operators.Identity(image_shape)

    operators.register("test-custom", factory)
    try:
        assert "test-custom" in operators.available()
        assert operators.describe("test-custom") == "test-custom: A test factory (gain=2.0)"
        assert isinstance(operators.make("test-custom", image_shape=SHAPE, gain=3.0),
                          operators.Identity)
        with pytest.raises(ValueError, match="already registered"):
            operators.register("test-custom", factory)
    finally:
        registry._REGISTRY.pop("test-custom")


def test_entry_point_plugins_load_lazily(monkeypatch):
    ep = importlib.metadata.EntryPoint("test-plugin", "operators.registry:_denoise",
                                       registry.ENTRY_POINT_GROUP)
    broken = importlib.metadata.EntryPoint("test-broken", "no_such_module_xyz:factory",
                                           registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry.metadata, "entry_points",
                        lambda group: [ep, broken] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    try:
        assert "test-plugin" in operators.available()
        assert "test-plugin" not in registry._REGISTRY  # not imported until needed
        assert operators.describe("test-plugin").startswith("test-plugin: Identity (denoising")
        assert isinstance(operators.make("test-plugin", image_shape=SHAPE), operators.Identity)
        with pytest.raises(ValueError, match="'test-broken' .no_such_module_xyz:factory. failed"):
            operators.make("test-broken", image_shape=SHAPE)
    finally:
        for name in ("test-plugin", "test-broken"):
            registry._REGISTRY.pop(name, None)
            registry._PLUGINS.pop(name, None)


def test_unknown_names_and_parameters_say_what_is_accepted():
    with pytest.raises(ValueError, match=r"unknown operator 'sr3'; available: .*sr2.*sr4"):
        operators.make("sr3", image_shape=SHAPE)
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) sigmaa for operator 'blur-gauss'; "
                                         r"it accepts: sigma, size, rcond"):
        operators.make("blur-gauss", image_shape=SHAPE, sigmaa=2.0)
    with pytest.raises(ValueError, match=r"`image_shape` must be \(C, H, W\) with positive sizes"):
        operators.make("sr2", image_shape=(24, 40))


def test_every_built_in_is_described_with_its_defaults_and_builds():
    for name in operators.available():
        line = operators.describe(name)
        assert line.startswith(f"{name}: ") and line.endswith(")")
        op = operators.make(name, image_shape=SHAPE, generator=torch.Generator().manual_seed(0))
        assert isinstance(op, operators.LinearOperator)
    assert operators.describe("inpaint-box").endswith("(fraction=0.5)")


def test_register_validates_its_arguments():
    with pytest.raises(ValueError, match="`name` must be a non-empty string"):
        operators.register("", lambda image_shape, generator=None: None)
    with pytest.raises(ValueError, match="must be callable"):
        operators.register("test-not-callable", 3)


def test_a_factory_must_return_an_operator():
    operators.register("test-bad-factory", lambda image_shape, generator=None: "nope")
    try:
        with pytest.raises(ValueError, match="returned str, not a LinearOperator"):
            operators.make("test-bad-factory", image_shape=SHAPE)
    finally:
        registry._REGISTRY.pop("test-bad-factory")
