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
    assert SamplerConfig(outer=5, inner=4).describe() == {
        "method": "ddrm", "method_args": {}, "outer": 5, "inner": 4, "vanilla": False,
        "steps": None}
    assert SamplerConfig(outer_eta=0.5).describe()["outer_eta"] == 0.5
    assert SamplerConfig(vanilla=True).describe()["steps"] == 20


def test_the_default_is_the_policy_for_the_budget():
    assert SamplerConfig().describe() == {
        "method": "ddrm", "method_args": {"eta": 1.0}, "outer": 4, "inner": 5, "vanilla": False,
        "steps": None, "split": "auto", "budget_nfe": 20}
    fifty = SamplerConfig(method="pigdm", budget_nfe=50)
    assert (fifty.outer, fifty.inner, fifty.budget, fifty.auto) == (4, 13, 50, True)
    # the caller's own parameters win over the policy's
    assert SamplerConfig(method_args={"eta": 0.5}).method_args == {"eta": 0.5}
    assert SamplerConfig(method="dps").method_args == SamplerConfig(method="ddnm").method_args == {}
    assert SamplerConfig(vanilla=True, budget_nfe=30).steps == 30
    again = fifty.with_budget(8)
    assert (again.outer, again.inner, again.budget_nfe, again.auto) == (2, 4, 8, True)
    fixed = SamplerConfig(outer=5, inner=4).with_budget(12)
    assert (fixed.outer, fixed.inner, fixed.budget, fixed.auto) == (5, 4, 12, False)


def test_the_policy_keeps_the_solvers_eta_for_noisy_observations():
    assert SamplerConfig(sigma_y=0.05).method_args == {}
    assert SamplerConfig(method="pigdm", sigma_y=0.01, budget_nfe=50).method_args == {}
    assert SamplerConfig(sigma_y=0.0).method_args == {"eta": 1.0}
    assert SamplerConfig(sigma_y=0.05, outer=4, inner=5).method_args == {}  # explicit: as given
    with pytest.raises(UsageError, match=r"`sigma_y`=-0.1 must be a number >= 0"):
        SamplerConfig(sigma_y=-0.1)


def test_a_policy_planned_for_other_noise_is_refused():
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
                                 event_shape=(1, 2, 2))
    noisy = Problem(torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64),
                    operators.make("inpaint-half", image_shape=(1, 2, 2)), sigma_y=0.05)
    with pytest.raises(UsageError, match=r"planned for `sigma_y`=0.0, but the problem has "
                                         r"sigma_y=0.05"):
        SamplerConfig().solver(prior, noisy)
    assert SamplerConfig(sigma_y=0.05).solver(prior, noisy).eta == 0.85
    assert SamplerConfig(outer=2, inner=2).solver(prior, noisy).eta == 0.85  # explicit: no policy


@pytest.mark.parametrize("budget, spent", [(50, [12, 12, 13, 13]), (20, [5, 5, 5, 5]),
                                           (13, [4, 4, 5])])
def test_the_policy_run_spends_exactly_the_budget(budget, spent):
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
                                 event_shape=(1, 2, 2))
    problem = Problem(torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64),
                      operators.make("inpaint-half", image_shape=(1, 2, 2)))
    nfe = [r.nfe for r in SamplerConfig(method="ddnm", budget_nfe=budget).run(
        prior, problem, torch.Generator().manual_seed(0))]
    assert [b - a for a, b in zip(nfe, nfe[1:])] == spent


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "nope"}, "`method`='nope' is not known"),
    ({"method_args": {"zeta": 1}}, "`method_params` zeta not accepted by 'ddrm'"),
    ({"outer": 0, "inner": 4}, "`outer`=0 must be an integer >= 1"),
    ({"outer": 5, "inner": 1.5}, "`inner`=1.5 must be an integer >= 1"),
    ({"outer": 5}, "`outer`=5 given without `inner`"),
    ({"budget_nfe": 0}, "`budget_nfe`=0 must be an integer >= 1"),
    ({"outer_eta": 2}, r"`outer_eta` must lie in \[0, 1\]"),
])
def test_bad_settings_are_usage_errors_naming_the_argument(kwargs, match):
    with pytest.raises(UsageError, match=match):
        SamplerConfig(**kwargs)


class _SlowStep:
    """A solver whose step costs ``seconds`` beyond its (free) network evaluation, as ΠGDM's VJP
    or a latent solver's decoder does."""

    num_timesteps = 1000
    initial_estimate = torch.zeros(1, 1, 2, 2)

    def __init__(self, seconds: float) -> None:
        self.seconds, self.steps = seconds, []

    def initial_state(self, t_start, generator):
        return torch.randn(1, 1, 2, 2, generator=generator)

    def step(self, x_t, t, s, generator):
        import time
        time.sleep(self.seconds)
        self.steps.append((t, s))
        return x_t, x_t


def test_the_deadline_probe_times_a_whole_solver_step_and_leaves_the_callers_rng():
    from nested_inverse.sampling import budget_for_deadline

    solver = _SlowStep(0.05)
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    budget = budget_for_deadline(solver, 1.0)
    # ⌊(1 − p)/(1.15·p)⌋ with p ≥ 0.05 s: at most 16; a probe of the network alone would be ~free
    assert 1 <= budget <= 16 and solver.steps == [(999, 500)]
    assert torch.equal(torch.random.get_rng_state(), before)
    with pytest.raises(UsageError, match=r"`deadline_s`=0 must be > 0 seconds"):
        budget_for_deadline(solver, 0)
