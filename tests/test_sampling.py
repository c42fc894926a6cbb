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
    # The policy's solver parameters come with the problem's noise (sigma_y is the Problem's).
    assert SamplerConfig().for_noise(0.0).describe() == {
        "method": "ddrm", "method_args": {"eta": 1.0}, "outer": 4, "inner": 5, "vanilla": False,
        "steps": None, "split": "auto", "budget_nfe": 20}
    assert SamplerConfig().method_args == {} and SamplerConfig().sigma_y is None
    fifty = SamplerConfig(method="pigdm", budget_nfe=50)
    assert (fifty.outer, fifty.inner, fifty.budget, fifty.auto) == (4, 13, 50, True)
    # the caller's own parameters win over the policy's
    assert SamplerConfig(method_args={"eta": 0.5}).for_noise(0.0).method_args == {"eta": 0.5}
    assert (SamplerConfig(method="dps").for_noise(0.0).method_args
            == SamplerConfig(method="ddnm").for_noise(0.0).method_args == {})
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
        SamplerConfig(sigma_y=0.0).solver(prior, noisy)
    assert SamplerConfig(sigma_y=0.05).solver(prior, noisy).eta == 0.85
    # Left unset, the policy is applied where the configuration meets the problem.
    assert SamplerConfig().solver(prior, noisy).eta == 0.85
    noiseless = Problem(noisy.y01, noisy.operator, sigma_y=0.0)
    assert SamplerConfig().solver(prior, noiseless).eta == 1.0
    assert SamplerConfig().for_problem(noisy).describe()["method_args"] == {}  # solver's own η
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


@pytest.fixture
def said(caplog, monkeypatch):
    """The package's warnings, also after a command-line test in the same worker set up its own
    handler without propagation."""
    import logging

    monkeypatch.setattr(logging.getLogger("nested_inverse"), "propagate", True)
    caplog.set_level(logging.WARNING, logger="nested_inverse")
    return caplog


def _gmm_problem():
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
                                 event_shape=(1, 2, 2))
    problem = Problem(torch.full((1, 1, 2, 2), 0.5, dtype=torch.float64),
                      operators.make("inpaint-half", image_shape=(1, 2, 2)))
    return prior, problem


@pytest.mark.parametrize("kwargs", [
    {"budget_nfe": 20}, {"budget_nfe": 13}, {"outer": 3, "inner": 4},
    {"outer": 3, "inner": 2, "budget_nfe": 5},  # the known gap: spends 4
    {"outer": 4, "inner": 999, "budget_nfe": 3000},  # short late runs: leftovers flow on
    {"outer": 2, "inner": 100_000}, {"budget_nfe": 100_000_000},
    {"vanilla": True, "steps": 7}, {"vanilla": True, "steps": 99_999},
    {"method": "daps", "method_args": {"ode_steps": 3}, "outer": 2, "inner": 10},
])
def test_the_planned_total_is_what_the_run_spends(kwargs):
    # the progress bars of restore() and the shell show `budget` as their total
    prior, problem = _gmm_problem()
    config = SamplerConfig(**{"method": "ddnm", **kwargs})
    spent = [r.nfe for r in config.run(prior, problem, torch.Generator().manual_seed(0))][-1]
    assert config.budget == spent


@pytest.mark.parametrize("kwargs, message", [
    ({"vanilla": True, "steps": 99_999},
     "`steps`=99999 is more than the 1000-step schedule allows: a run from t=999 makes at most "
     "999 evaluations; running 999"),
    ({"outer": 2, "inner": 100_000},
     "`inner`=100000 is more than the 1000-step schedule allows: an inner run from t=999 makes "
     "at most 999 evaluations"),
    ({"budget_nfe": 100_000_000},
     "`budget_nfe`=100000000 is more than 4 outer steps can spend on the 1000-step schedule "
     "(inner runs from t=999 down to t=250): at most 2498 evaluations; running 2498"),
])
def test_requests_beyond_the_schedule_are_capped_with_a_message_once(kwargs, message, said):
    import time

    prior, problem = _gmm_problem()
    config = SamplerConfig(method="ddnm", **kwargs)
    start = time.perf_counter()
    config.solver(prior, problem)
    assert time.perf_counter() - start < 2.0  # no 25-million-entry list (measured 0.01 s)
    assert [r.getMessage() for r in said.records] == [message]
    config.solver(prior, problem)  # the next image of a dataset run: not said again
    assert len(said.records) == 1


def test_a_request_the_schedule_holds_says_nothing(said):
    prior, problem = _gmm_problem()
    for config in (SamplerConfig(budget_nfe=50), SamplerConfig(outer=4, inner=999),
                   SamplerConfig(vanilla=True, steps=999)):
        config.solver(prior, problem)
    assert said.records == []


def test_too_many_outer_steps_for_the_schedule_name_outer():
    prior, problem = _gmm_problem()
    with pytest.raises(UsageError, match=r"`outer`=1000 must lie in \[1, 999\] for a schedule of "
                                         r"1000 timesteps"):
        SamplerConfig(outer=1000, inner=2).solver(prior, problem)


def test_the_shell_shows_the_cap_with_its_flag(capsys):
    from nested_inverse.cli.common import setup_logging

    setup_logging()  # as every command does
    prior, problem = _gmm_problem()
    SamplerConfig(vanilla=True, steps=5000).solver(prior, problem)
    assert "`--steps`=5000 is more than the 1000-step schedule" in capsys.readouterr().err
