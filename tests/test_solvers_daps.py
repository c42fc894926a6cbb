"""DAPS: the exact Gaussian step, its Langevin fallback, evaluation counts, and exactness on a
prior where its Gaussian approximation of ``p(x0 | x_t)`` is exact."""

import math

import pytest
import torch

import operators
from nested_inverse import NestedSampler
from nested_inverse.solvers import DAPS

from test_solvers import FlatOperator, small_gmm
from test_solvers_posterior import N, sw, unit_gaussian_problem

def dense_conditional(matrix, x0, y, r, tau):
    """Mean and covariance of ``N(x; x0, r² I)·N(y; A x, τ² I)`` from dense matrices."""
    d = matrix.shape[1]
    precision = torch.eye(d, dtype=matrix.dtype) / r**2 + matrix.T @ matrix / tau**2
    cov = torch.linalg.inv(precision)
    mean = cov @ (x0.flatten() / r**2 + matrix.T @ y.flatten() / tau**2)
    return mean, cov


@pytest.mark.parametrize("sigma_y", [0.05, 0.2])
def test_the_svd_step_samples_the_gaussian_conditional(generator, sigma_y):
    matrix = torch.randn(6, 16, generator=generator, dtype=torch.float64)
    op = operators.MatrixOperator(matrix, (1, 4, 4))
    prior = small_gmm(generator)
    x0 = torch.randn(1, 1, 4, 4, generator=generator, dtype=torch.float64)
    y = op(torch.randn(1, 1, 4, 4, generator=generator, dtype=torch.float64))
    solver = DAPS(prior, op, y.expand(20000, -1), sigma_y)
    r = 0.3
    draws = solver.conditional_sample(x0.expand(20000, -1, -1, -1), r, 0.0,
                                      torch.Generator().manual_seed(1)).flatten(1)
    mean, cov = dense_conditional(matrix, x0, y, r, 2 * sigma_y)
    # Sampling error of a mean over 20000 draws: ≤ 4·√(var/n) per component.
    assert (draws.mean(0) - mean).abs().max() < 4 * (cov.diagonal().max() / 20000) ** 0.5
    torch.testing.assert_close(torch.cov(draws.T), cov, rtol=0, atol=0.05 * r**2)
    # Negative control: the same draws are not the conditional for a different spread.
    _, other = dense_conditional(matrix, x0, y, 2 * r, 2 * sigma_y)
    assert (torch.cov(draws.T) - other).abs().max() > 0.2 * r**2


def test_langevin_without_an_svd_reaches_the_same_conditional(generator):
    """A forward-only operator takes the Langevin chain; with enough steps its draws have the
    conditional's mean (measured error 0.021 with 2000 steps, the sampling error of 500 draws;
    the start x̂0 is 0.71 off)."""
    matrix = torch.randn(6, 16, generator=generator, dtype=torch.float64) / 4
    flat = FlatOperator(matrix)
    prior = small_gmm(generator)
    x0 = torch.randn(1, 1, 4, 4, generator=generator, dtype=torch.float64)
    y = flat(torch.randn(1, 1, 4, 4, generator=generator, dtype=torch.float64))
    n, r, sigma_y = 500, 0.3, 0.1
    solver = DAPS(prior, flat, y.expand(n, -1), sigma_y, langevin_steps=2000, lr=2e-3)
    assert solver.svd is None
    draws = solver.conditional_sample(x0.expand(n, -1, -1, -1), r, 0.0,
                                      torch.Generator().manual_seed(1)).flatten(1)
    mean, cov = dense_conditional(matrix, x0, y, r, 2 * sigma_y)
    assert (draws.mean(0) - mean).abs().max() < 0.06
    assert (x0.flatten() - mean).abs().max() > 0.3  # the chain moved to get there


def test_a_nonlinear_forward_model_runs_through_autograd(generator):
    prior = small_gmm(generator)
    x = prior.sample(2, generator)

    def forward(v):
        return torch.tanh(v.flatten(1)[:, :8])

    y = forward(x)
    solver = DAPS(prior, forward, y, 0.05, langevin_steps=5, image_shape=(1, 4, 4))
    out = solver.sample(steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_ode_steps_count_evaluations_and_levels(generator):
    prior = small_gmm(generator)
    op = operators.MatrixOperator(torch.randn(6, 16, generator=generator, dtype=torch.float64),
                                  (1, 4, 4))
    y = op(prior.sample(1, generator))
    calls = []
    predict = prior.predict
    prior.predict = lambda x, t: calls.append(t) or predict(x, t)
    states = list(DAPS(prior, op, y, ode_steps=3).iterate(steps=10, generator=torch.Generator()))
    assert [s.nfe for s in states] == [3, 6, 9]  # three levels of three ODE evaluations
    assert len(calls) == 9
    assert [s.t for s in states] == [500, 2, -1]  # the last level keeps room for its ODE
    # Each level's ODE starts at the level and runs down to t = 0.
    assert calls == [999, 500, 0, 500, 250, 0, 2, 1, 0]
    # Fewer evaluations than one level's ODE: one level.
    assert len(list(DAPS(prior, op, y, ode_steps=3).iterate(steps=2))) == 1


def test_inside_the_nested_sampler_the_budget_is_spent_exactly(generator):
    prior = small_gmm(generator)
    op = operators.MatrixOperator(torch.randn(6, 16, generator=generator, dtype=torch.float64),
                                  (1, 4, 4))
    y = op(prior.sample(1, generator))
    sampler = NestedSampler(DAPS(prior, op, y, ode_steps=2), outer_steps=3, inner_steps=4)
    results = list(sampler.iterate(torch.Generator().manual_seed(0)))
    assert results[-1].nfe == sampler.total_nfe == 12
    torch.testing.assert_close(op(results[-1].image), y, rtol=0, atol=1e-9)


@pytest.mark.parametrize("sigma_y, rows", [(0.0, 4), (0.05, 8)])
def test_exact_on_a_unit_gaussian_at_any_step_count(sigma_y, rows):
    """For ``x0 ~ N(μ, I)``, ``p(x0 | x_t)`` is Gaussian with variance ``1 − ᾱ_t`` exactly, so with
    ``r = "vp"`` every step samples ``p(x0 | x_t, y)`` exactly and DAPS is exact however few its
    levels. Measured SW (floor: a second posterior sample), 4×16 noiseless | 8×16 noisy: floor
    0.054 | 0.042; DAPS at 1 step 0.051 | 0.044, at 5 steps 0.043 | 0.041; the official
    ``r = σ_t`` at 5 steps 1.053 | 0.872 (the negative control)."""
    prior, op, y, post, floor = unit_gaussian_problem(sigma_y, rows)

    def daps(steps, **params):
        out = DAPS(prior, op, y.expand(N, -1), sigma_y, **params).sample(
            steps=steps, generator=torch.Generator().manual_seed(4))
        return sw(out, post)

    assert daps(1) < floor + 0.03
    assert daps(5) < floor + 0.03
    assert daps(5, r="sigma") > floor + 0.5


def test_bad_parameters_are_named(generator):
    prior = small_gmm(generator)
    op = operators.MatrixOperator(torch.randn(6, 16, generator=generator, dtype=torch.float64),
                                  (1, 4, 4))
    y = op(prior.sample(1, generator))
    for name, value in [("ode_steps", 1.5), ("langevin_steps", 0), ("r", "edm"), ("tau", -1.0),
                        ("lr", 0.0), ("lr_min_ratio", math.nan), ("tau_floor", True)]:
        with pytest.raises(ValueError, match=name):
            DAPS(prior, op, y, **{name: value})
