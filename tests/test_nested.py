import math
import time

import pytest
import torch

import operators
from nested_inverse import (
    DDIM,
    DDNM,
    CountingPrior,
    Edit,
    GaussianMixturePrior,
    NestedSampler,
    Resample,
    SetInnerSteps,
    Stop,
)
from nested_inverse.metrics import sliced_wasserstein
from nested_inverse.nested import outer_timesteps
from nested_inverse.planning import plan_budget
from nested_inverse.solvers import DDRM, ExactPosterior


def random_gmm(seed=0, k=5, event_shape=(1, 4, 4), scale=0.3):
    g = torch.Generator().manual_seed(seed)
    d = math.prod(event_shape)
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    means = torch.randn(k, d, generator=g, dtype=torch.float64)
    roots = scale * torch.randn(k, d, d, generator=g, dtype=torch.float64) / d**0.5
    covs = roots @ roots.transpose(-1, -2) + 0.05 * torch.eye(d, dtype=torch.float64)
    return GaussianMixturePrior(weights, means, covs, event_shape)


class StandardNormal:
    """The prior N(0, I): ``E[x0 | x_t] = √ᾱ_t·x_t`` exactly, and nearly free to evaluate."""

    def __init__(self):
        self.alphas_cumprod = random_gmm(k=1).alphas_cumprod
        self.event_shape = (1, 4, 4)

    def predict(self, x_t, t):
        a = float(self.alphas_cumprod[t])
        return math.sqrt(a) * x_t, math.sqrt(1 - a) * x_t


@pytest.fixture(scope="module")
def prior():
    return random_gmm()


@pytest.fixture(scope="module")
def fast():
    return StandardNormal()


def problem_fast(prior, name="sr2", sigma_y=0.0, batch=1):
    op = operators.make(name, image_shape=prior.event_shape)
    x = torch.randn(1, *prior.event_shape, generator=gen(1), dtype=torch.float64)
    return op, op(x).expand(batch, -1, -1, -1).contiguous()


def problem(prior, name="sr2", sigma_y=0.0, batch=1, seed=1):
    op = operators.make(name, image_shape=prior.event_shape)
    x = prior.sample(1, torch.Generator().manual_seed(seed))
    y = op(x)
    if sigma_y > 0:
        y = y + 2 * sigma_y * torch.randn(y.shape, generator=torch.Generator().manual_seed(seed),
                                          dtype=y.dtype)
    return op, y.expand(batch, *y.shape[1:]).contiguous()


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------- schedule, plan
def test_outer_timesteps_are_evenly_spread_and_never_at_one():
    assert outer_timesteps(1000, 5) == [999, 799, 599, 400, 200]
    assert outer_timesteps(1000, 1) == [999]
    ts = outer_timesteps(1000, 999)
    assert len(set(ts)) == 999 and min(ts) == 1
    for bad in (0, 1000):
        with pytest.raises(ValueError, match="outer_steps"):
            outer_timesteps(1000, bad)


def test_plan_budget_shrinks_inner_steps_then_drops_outer_steps():
    assert plan_budget(math.inf, 5, 10) == (5, 10)
    assert plan_budget(50, 5, 10) == (5, 10)
    assert plan_budget(23, 5, 10) == (5, 4)
    assert plan_budget(9, 5, 10) == (4, 2)
    assert plan_budget(1, 5, 10) == (1, 1)
    assert plan_budget(0, 5, 10) == (0, 0)
    assert plan_budget(3, 5, 1) == (3, 1)


def test_bad_arguments_are_rejected(fast):
    op, y = problem_fast(fast)
    solver = DDNM(fast, op, y)
    for kwargs, name in [(dict(outer_steps=0, inner_steps=2), "outer_steps"),
                         (dict(outer_steps=2, inner_steps=0), "inner_steps"),
                         (dict(outer_steps=2.0, inner_steps=2), "outer_steps"),
                         (dict(outer_steps=2, inner_steps=2, outer_eta=1.5), "outer_eta")]:
        with pytest.raises(ValueError, match=name):
            NestedSampler(solver, **kwargs)
    with pytest.raises(ValueError, match="solver"):
        NestedSampler(object(), 2, 2)
    sampler = NestedSampler(solver, 2, 2)
    with pytest.raises(ValueError, match="budget_nfe"):
        sampler.iterate(budget_nfe=0)
    with pytest.raises(ValueError, match="deadline_s"):
        sampler.iterate(deadline_s=-1.0)


# ------------------------------------------------------------------------------ results and nfe
def test_pinv_first_then_one_result_per_outer_step_with_exact_nfe(prior):
    counting = CountingPrior(prior)
    op, y = problem(prior, batch=2)
    solver = DDNM(counting, op, y)
    sampler = NestedSampler(solver, outer_steps=5, inner_steps=3)
    results = list(sampler.iterate(gen()))
    assert [r.outer_step for r in results] == list(range(6))
    assert [r.nfe for r in results] == [0, 3, 6, 9, 12, 15]
    assert counting.nfe == sampler.total_nfe == 15
    torch.testing.assert_close(results[0].image, solver.y_pinv)
    assert [r.t for r in results[1:]] == [999, 799, 599, 400, 200]
    assert all(r.image.shape == y.shape[:1] + prior.event_shape for r in results)
    assert all(b.elapsed_s >= a.elapsed_s for a, b in zip(results, results[1:]))
    # The last inner output is the final result, and sample() returns it.
    torch.testing.assert_close(sampler.sample(gen()), results[-1].image)


def test_outer_step_is_ddim_with_the_inner_result_as_x0(prior):
    op, y = problem(prior)
    solver = DDNM(prior, op, y)
    results = list(NestedSampler(solver, 3, 2).iterate(gen()))
    for prev, nxt in zip(results[1:], results[2:]):
        a, a2 = solver.alpha(prev.t), solver.alpha(nxt.t)
        eps = (prev.x_t - math.sqrt(a) * prev.image) / math.sqrt(1 - a)
        torch.testing.assert_close(nxt.x_t, math.sqrt(a2) * prev.image + math.sqrt(1 - a2) * eps)


def test_first_outer_step_is_the_vanilla_solver(prior):
    op, y = problem(prior)
    solver = DDNM(prior, op, y)
    first = list(NestedSampler(solver, 4, 5).iterate(gen()))[1]
    torch.testing.assert_close(first.image, solver.sample(steps=5, generator=gen()))


def test_breaking_out_keeps_the_latest_result(fast):
    counting = CountingPrior(fast)
    op, y = problem_fast(fast)
    run = NestedSampler(DDNM(counting, op, y), 5, 2).iterate(gen())
    for result in run:
        if result.outer_step == 2:
            break
    assert run.latest is result and result.nfe == 4 and counting.nfe == 4


def test_deterministic_for_a_fixed_generator(prior):
    op, y = problem(prior, batch=3)
    sampler = NestedSampler(DDNM(prior, op, y), 3, 3, outer_eta=0.5)
    a, b = sampler.sample(gen(7)), sampler.sample(gen(7))
    assert torch.equal(a, b)
    assert not torch.allclose(a, sampler.sample(gen(8)))
    # One generator per image: an image's result does not depend on the rest of its batch.
    solo = NestedSampler(DDNM(prior, op, y[:1]), 3, 3, outer_eta=0.5)
    many = sampler.sample([gen(1), gen(2), gen(3)])
    torch.testing.assert_close(solo.sample([gen(1)]), many[:1])


# ------------------------------------------------------------------------------ budget, deadline
@pytest.mark.parametrize("outer, inner", [(5, 4), (3, 7), (1, 6)])
def test_budget_is_never_exceeded_and_fully_used(fast, outer, inner):
    op, y = problem_fast(fast)
    for budget in range(1, outer * inner + 3):
        counting = CountingPrior(fast)
        results = list(NestedSampler(DDNM(counting, op, y), outer, inner)
                       .iterate(gen(), budget_nfe=budget))
        assert counting.nfe == results[-1].nfe == min(budget, outer * inner)
        assert all(r.nfe <= budget for r in results)
        assert results[-1].outer_step >= 1


def test_budget_smaller_than_planned_keeps_the_smallest_outer_timestep(fast):
    op, y = problem_fast(fast)
    results = list(NestedSampler(DDNM(fast, op, y), 5, 10).iterate(gen(), budget_nfe=7))
    assert [(r.t, r.nfe) for r in results[1:]] == [(999, 2), (599, 4), (200, 7)]


class SlowPrior:
    """A prior whose every evaluation takes at least ``seconds`` of wall time."""

    def __init__(self, prior, seconds):
        self.prior, self.seconds = prior, seconds
        self.alphas_cumprod = prior.alphas_cumprod

    def predict(self, x_t, t):
        time.sleep(self.seconds)
        return self.prior.predict(x_t, t)


def test_deadline_is_respected_and_the_schedule_adapts(fast):
    op, y = problem_fast(fast)
    deadline = 0.6
    sampler = NestedSampler(DDNM(SlowPrior(fast, 0.02), op, y), outer_steps=5, inner_steps=10)
    start = time.perf_counter()
    results = list(sampler.iterate(gen(), deadline_s=deadline))
    wall = time.perf_counter() - start
    assert all(r.elapsed_s <= deadline for r in results)
    assert results[-1].outer_step >= 1 and results[-1].nfe < 50
    assert wall <= deadline + 0.2  # at most about one evaluation past the deadline


def test_deadline_shorter_than_the_first_inner_run_gives_a_shorter_run(fast):
    op, y = problem_fast(fast)
    sampler = NestedSampler(DDNM(SlowPrior(fast, 0.05), op, y), outer_steps=3, inner_steps=20)
    results = list(sampler.iterate(gen(), deadline_s=0.5))
    assert results[-1].elapsed_s <= 0.5
    assert results[-1].outer_step == 1 and 1 < results[-1].nfe < 20


# ---------------------------------------------------------------------------------- guidance
def test_edit_is_projected_onto_the_observation_and_drives_the_next_step(prior):
    op, y = problem(prior, "inpaint-half")
    solver = DDNM(prior, op, y)
    run = NestedSampler(solver, 4, 2).iterate(gen())
    next(run)
    current = next(run)
    edit = torch.zeros_like(current.image) + 3.0
    edited = run.send(Edit(edit))
    assert edited.outer_step == current.outer_step and edited.nfe == current.nfe
    torch.testing.assert_close(op(edited.image), y)  # agrees with y where observed
    unobserved = op(torch.ones_like(edit)) == 0  # inpainting keeps the image shape
    assert bool(unobserved.any())
    torch.testing.assert_close(edited.image[unobserved], edit[unobserved])  # kept elsewhere
    following = next(run)
    a, a2 = solver.alpha(current.t), solver.alpha(following.t)
    eps = (current.x_t - math.sqrt(a) * edited.image) / math.sqrt(1 - a)
    torch.testing.assert_close(following.x_t, math.sqrt(a2) * edited.image + math.sqrt(1 - a2) * eps)


def test_edit_is_not_projected_when_the_observation_is_noisy(prior):
    op, y = problem(prior, sigma_y=0.05)
    run = NestedSampler(DDNM(prior, op, y, sigma_y=0.05), 3, 2).iterate(gen())
    next(run), next(run)
    edit = torch.full_like(run.latest.image, 0.25)
    assert torch.equal(run.send(Edit(edit)).image, edit)


def test_resample_redraws_the_last_inner_run_and_costs_its_evaluations(fast):
    counting = CountingPrior(fast)
    op, y = problem_fast(fast)
    run = NestedSampler(DDNM(counting, op, y), 3, 4).iterate(gen())
    next(run)
    first = next(run)
    again = run.send(Resample())
    assert again.outer_step == 1 and again.t == first.t and torch.equal(again.x_t, first.x_t)
    assert again.nfe == counting.nfe == 8
    assert not torch.allclose(again.image, first.image)
    rest = list(run)
    assert [r.nfe for r in rest] == [12, 16] and counting.nfe == 16


def test_resample_is_charged_to_the_budget(fast):
    op, y = problem_fast(fast)
    run = NestedSampler(DDNM(CountingPrior(fast), op, y), 3, 4).iterate(gen(), budget_nfe=12)
    next(run), next(run)
    run.send(Resample())
    assert next(run).nfe == 10 and next(run).nfe == 12  # the last run shrank to 2 steps
    with pytest.raises(RuntimeError, match="no evaluations left"):
        run.send(Resample())
    assert list(run) == []
    with pytest.raises(RuntimeError, match="ended"):
        run.send(Resample())


def test_set_inner_steps_changes_the_following_runs(fast):
    op, y = problem_fast(fast)
    run = NestedSampler(DDNM(fast, op, y), 4, 2).iterate(gen())
    next(run), next(run)
    assert run.send(SetInnerSteps(5)).nfe == 2
    assert [r.nfe for r in run] == [7, 12, 17]


def test_stop_answers_with_the_latest_result_and_ends_the_run(fast):
    counting = CountingPrior(fast)
    op, y = problem_fast(fast)
    run = NestedSampler(DDNM(counting, op, y), 5, 2).iterate(gen())
    next(run), next(run)
    latest = next(run)
    assert run.send(Stop()) is latest
    assert list(run) == [] and counting.nfe == 4


def test_bad_commands_raise_and_the_run_goes_on(fast):
    op, y = problem_fast(fast)
    run = NestedSampler(DDNM(fast, op, y), 3, 2).iterate(gen())
    with pytest.raises(RuntimeError, match="next"):
        run.send(Stop())
    next(run)
    with pytest.raises(RuntimeError, match="nothing to resample"):
        run.send(Resample())
    with pytest.raises(ValueError, match="shape"):
        run.send(Edit(torch.zeros(1, 1, 4, 5)))
    with pytest.raises(ValueError, match="NaN"):
        run.send(Edit(torch.full((1, 1, 4, 4), float("nan"))))
    with pytest.raises(ValueError, match="unknown command"):
        run.send("sharper please")
    with pytest.raises(ValueError, match="Edit.image"):
        Edit([[0.0]])
    with pytest.raises(ValueError, match="SetInnerSteps.steps"):
        SetInnerSteps(0)
    assert [r.outer_step for r in run] == [1, 2, 3]


# ----------------------------------------------------------------------------- unconditional
def test_unconditional_nested_ddim_samples_the_prior(prior):
    counting = CountingPrior(prior)
    sampler = NestedSampler.unconditional(counting, (600, *prior.event_shape), 4, 5,
                                          dtype=torch.float64)
    assert isinstance(sampler.solver, DDIM)
    results = list(sampler.iterate(gen()))
    assert torch.equal(results[0].image, torch.zeros_like(results[0].image))
    assert [r.nfe for r in results] == [0, 5, 10, 15, 20] and counting.nfe == 20
    g = gen(5)
    reference = prior.sample(600, g)
    noise_level = sliced_wasserstein(reference, prior.sample(600, g), generator=gen(9))
    distance = sliced_wasserstein(reference, results[-1].image, generator=gen(9))
    # Measured: posterior-vs-posterior 0.028, nested DDIM 0.043, a zero image 1.3.
    assert distance < 2.5 * noise_level


# --------------------------------------------------------- exactness on the Gaussian mixture
@pytest.mark.parametrize("name, sigma_y, outer, inner, outer_eta", [
    ("sr2", 0.0, 4, 2, 0.0),
    ("sr2", 0.05, 5, 1, 1.0),
    ("inpaint-half", 0.0, 2, 3, 0.0),
])
def test_nested_with_an_exact_inner_sampler_is_an_exact_posterior_sampler(
        prior, name, sigma_y, outer, inner, outer_eta):
    n = 1000
    op, y = problem(prior, name, sigma_y)
    reference = prior.posterior_sample(op, y, sigma_y, generator=gen(10), n=n)
    again = prior.posterior_sample(op, y, sigma_y, generator=gen(11), n=n)
    noise_level = sliced_wasserstein(reference, again, generator=gen(12))
    solver = ExactPosterior(prior, op, y.expand(n, *y.shape[1:]).contiguous(), sigma_y)
    nested = NestedSampler(solver, outer, inner, outer_eta).sample(gen(13))
    distance = sliced_wasserstein(reference, nested, generator=gen(12))
    to_prior = sliced_wasserstein(reference, prior.sample(n, gen(14)), generator=gen(12))
    # Measured (n = 1000): posterior vs posterior 0.017–0.029, exact nested 0.016–0.030,
    # prior 1.1–1.2; a broken outer step lands far above the 1.6× margin.
    assert distance < 1.6 * noise_level
    assert to_prior > 20 * noise_level


def test_fresh_outer_renoising_forgets_x_tau_and_stays_exact(prior):
    """DAPS's decoupled re-noising: the next outer state is ``√ᾱ_s·x̂0 + √(1−ᾱ_s)·z`` whatever
    ``x_τ`` was, and with an exact inner sampler the result is still an exact posterior sample."""
    op, y = problem(prior)
    sampler = NestedSampler(DDNM(prior, op, y), 3, 2, outer_renoise="fresh")
    x0 = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    one, two = (sampler._outer_step(torch.randn(1, 1, 4, 4, generator=gen(s), dtype=torch.float64),
                                    600, x0, 300, gen(5)) for s in (1, 2))
    torch.testing.assert_close(one, two)
    a = sampler.solver.alpha(300)
    torch.testing.assert_close(one, math.sqrt(1 - a) * torch.randn(1, 1, 4, 4, generator=gen(5),
                                                                   dtype=torch.float64))
    n = 1000
    reference = prior.posterior_sample(op, y, 0.0, generator=gen(10), n=n)
    noise_level = sliced_wasserstein(reference, prior.posterior_sample(op, y, 0.0, generator=gen(11),
                                                                       n=n), generator=gen(12))
    solver = ExactPosterior(prior, op, y.expand(n, *y.shape[1:]).contiguous())
    nested = NestedSampler(solver, 4, 2, outer_renoise="fresh").sample(gen(13))
    assert sliced_wasserstein(reference, nested, generator=gen(12)) < 1.6 * noise_level
    with pytest.raises(ValueError, match="outer_renoise"):
        NestedSampler(solver, 4, 2, outer_renoise="daps")


def test_nested_with_a_wrong_outer_step_is_caught(prior):
    """The exactness check can fail: an outer step that leaves x at τ's noise level while the
    inner sampler takes it for τ' (measured 0.09 and 0.07 against noise levels 0.025, 0.019)."""

    class Broken(NestedSampler):
        def _outer_step(self, x, tau, x0, target, generator):
            a = self.solver.alpha(tau)  # the noise level of τ, not of the target
            return math.sqrt(a) * x0 + (x - math.sqrt(a) * x0)

    n = 1000
    op, y = problem(prior)
    reference = prior.posterior_sample(op, y, 0.0, generator=gen(10), n=n)
    noise_level = sliced_wasserstein(reference, prior.posterior_sample(op, y, 0.0, generator=gen(11),
                                                                       n=n), generator=gen(12))
    solver = ExactPosterior(prior, op, y.expand(n, *y.shape[1:]).contiguous(), eta=0.0)
    broken = Broken(solver, 4, 2).sample(gen(13))
    assert sliced_wasserstein(reference, broken, generator=gen(12)) > 1.6 * noise_level


@pytest.mark.parametrize("name, cls", [("ddnm", DDNM), ("ddrm", DDRM)])
def test_nested_with_an_approximate_inner_solver_lands_near_the_posterior(prior, name, cls):
    n = 1000
    op, y = problem(prior, "inpaint-half")
    reference = prior.posterior_sample(op, y, 0.0, generator=gen(10), n=n)
    solver = cls(prior, op, y.expand(n, *y.shape[1:]).contiguous())
    nested = NestedSampler(solver, 4, 5).sample(gen(13))
    distance = sliced_wasserstein(reference, nested, generator=gen(12))
    to_prior = sliced_wasserstein(reference, prior.sample(n, gen(14)), generator=gen(12))
    # Measured with DDNM: 0.044 against 1.19 for the prior.
    assert distance < 0.15 * to_prior


@pytest.mark.parametrize("k", [1, 3, 4, 7])
def test_a_stop_check_true_after_k_evaluations_makes_exactly_k(fast, k):
    counting = CountingPrior(fast)
    op, y = problem_fast(fast)
    sampler = NestedSampler(DDNM(counting, op, y), 5, 2)
    results = list(sampler.iterate(gen(), stop=lambda: counting.nfe >= k))
    assert counting.nfe == k
    # the finished outer steps stand; an inner run cut short delivers nothing
    assert [(r.outer_step, r.nfe) for r in results] == [(i, 2 * i) for i in range(k // 2 + 1)]
    full = list(NestedSampler(DDNM(fast, op, y), 5, 2).iterate(gen()))
    torch.testing.assert_close(results[-1].image, full[k // 2].image, rtol=0, atol=0)


def test_a_stop_check_true_from_the_start_gives_only_the_first_result(fast):
    counting = CountingPrior(fast)
    op, y = problem_fast(fast)
    sampler = NestedSampler(DDNM(counting, op, y), 3, 2)
    x = sampler.sample(gen(), stop=lambda: True)
    assert counting.nfe == 0 and torch.equal(x, sampler.solver.initial_estimate)
    with pytest.raises(ValueError, match="`stop` must be a callable"):
        sampler.iterate(stop=True)


def test_a_stop_during_resample_keeps_the_previous_result(fast):
    counting = CountingPrior(fast)
    op, y = problem_fast(fast)
    after = []  # the evaluation count from which the check answers True (none: never)
    run = NestedSampler(DDNM(counting, op, y), 3, 4).iterate(
        gen(), stop=lambda: bool(after) and counting.nfe >= after[0])
    next(run)
    shown = next(run)
    after.append(counting.nfe + 1)  # true after the Resample's first evaluation
    assert run.send(Resample()) is shown and counting.nfe == 5
    assert list(run) == []
