"""SamplerConfig: validation with Python names, what it records, and what it builds."""

from __future__ import annotations

import pytest
import torch

import operators
from nested_inverse import (GaussianMixturePrior, NestedSampler, Problem, SamplerConfig,
                            VanillaSampler)
from nested_inverse.errors import UsageError


def test_builds_nested_or_vanilla_around_the_named_solver():
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
                                 event_shape=(1, 2, 2))
    problem = Problem(torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64),
                      operators.make("inpaint-half", image_shape=(1, 2, 2)))
    nested = SamplerConfig(method="ddnm", method_args={"eta": 0.5}, outer=3, inner=2)
    sampler = nested.sampler(nested.solver(prior, problem))
    assert isinstance(sampler, NestedSampler) and sampler.total_nfe == nested.budget == 6
    assert sampler.solver.eta == 0.5
    vanilla = SamplerConfig(method="ddrm", vanilla=True, steps=7)
    assert isinstance(vanilla.sampler(vanilla.solver(prior, problem)), VanillaSampler)
    assert vanilla.budget == 7


def test_describe_keeps_the_recorded_keys():
    assert SamplerConfig().describe() == {"method": "ddrm", "method_args": {}, "outer": 5,
                                          "inner": 4, "vanilla": False, "steps": 20}
    assert SamplerConfig(outer_eta=0.5).describe()["outer_eta"] == 0.5


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "nope"}, "`method`='nope' is not known"),
    ({"method_args": {"zeta": 1}}, "`method_params` zeta not accepted by 'ddrm'"),
    ({"outer": 0}, "`outer`=0 must be an integer >= 1"),
    ({"inner": 1.5}, "`inner`=1.5 must be an integer >= 1"),
    ({"outer_eta": 2}, r"`outer_eta` must lie in \[0, 1\]"),
])
def test_bad_settings_are_usage_errors_naming_the_argument(kwargs, match):
    with pytest.raises(UsageError, match=match):
        SamplerConfig(**kwargs)
