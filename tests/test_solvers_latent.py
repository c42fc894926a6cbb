"""Latent solvers (latent DPS, PSLD) against the exact posterior of the linear latent yardstick.

The yardstick: a 2-D latent mixture (K = 5, means ~ N(0, I), covariances 0.2²·RRᵀ + 0.02·I)
under a random 4×2 decoder ``D ~ N(0, 1/4)`` onto 1×2×2 images; the exact posterior of
``y = A D z0 + 2σ_y n`` is a mixture (:meth:`LinearLatentPrior.posterior_sample`).
benchmarks/latent_posterior.py builds the same one. Thresholds are measured values (beside each)
plus a margin, with n = 2000 samples.
"""

import pytest
import torch

import operators
from nested_inverse import CountingPrior, GaussianMixturePrior, NestedSampler, Problem, solvers
from nested_inverse.metrics import sliced_wasserstein
from nested_inverse.priors import LinearDecoder, LinearLatentPrior
from nested_inverse.solvers import DDRM, PSLD, LatentDPS

F64 = torch.float64
N = 2000


def yardstick() -> tuple[LinearLatentPrior, torch.Generator]:
    g = torch.Generator().manual_seed(0)
    k = 5
    means = torch.randn(k, 2, generator=g, dtype=F64)
    roots = torch.randn(k, 2, 2, generator=g, dtype=F64)
    covs = 0.2**2 * roots @ roots.transpose(-1, -2) + 0.02 * torch.eye(2, dtype=F64)
    gmm = GaussianMixturePrior(torch.ones(k), means, covs, (1, 1, 2))
    D = torch.randn(4, 2, generator=g, dtype=F64) / 2
    return LinearLatentPrior(gmm, LinearDecoder(D, (1, 1, 2), (1, 2, 2))), g


def sw(a, b):
    return sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(9))


@pytest.fixture(scope="module")
def tasks():
    """sr2 noiseless (one observed number: a 1-D slice of the latent plane) and inpaint-half with
    σ_y = 0.05, drawn in this order from the yardstick's generator."""
    prior, g = yardstick()
    out = {}
    for task, sigma_y in (("sr2", 0.0), ("inpaint-half", 0.05)):
        op = operators.make(task, image_shape=(1, 2, 2))
        y = op(prior.sample(1, g))
        y = y + 2 * sigma_y * torch.randn(y.shape, generator=g, dtype=F64)
        post = prior.posterior_sample(op, y, sigma_y, torch.Generator().manual_seed(1), N)
        out[task] = (prior, op, y, sigma_y, post)
    return out


def gen(seed=4):
    return torch.Generator().manual_seed(seed)


def test_references(tasks):
    # Measured: prior 1.219 | 1.761; a second posterior sample 0.008 | 0.010 (the floor).
    for task, limit in (("sr2", 1.1), ("inpaint-half", 1.6)):
        prior, op, y, sigma_y, post = tasks[task]
        assert sw(prior.sample(N, gen(3)), post) > limit
        assert sw(prior.posterior_sample(op, y, sigma_y, gen(2), N), post) < 0.03


@pytest.mark.parametrize("cls", [LatentDPS, PSLD])
@pytest.mark.parametrize("task, limit", [("sr2", 0.60), ("inpaint-half", 1.10)])
def test_vanilla_and_nested_land_well_inside_the_prior(tasks, cls, task, limit):
    """20 evaluations, defaults (ζ = 1, γ = 0.1). Measured vanilla | nested 4×5:
    sr2 latent-dps 0.512 | 0.502, psld 0.518 | 0.503; inpaint-half latent-dps 0.960 | 0.959,
    psld 0.951 | 0.948 (prior: 1.219, 1.761)."""
    prior, op, y, sigma_y, post = tasks[task]
    solver = cls(prior, op, y.expand(N, -1, -1, -1), sigma_y)
    vanilla = solver.decode(solver.sample(steps=20, generator=gen()))
    nested = solver.decode(NestedSampler(solver, 4, 5).sample(gen()))
    assert sw(vanilla, post) < limit
    assert sw(nested, post) < limit


def test_psld_gets_closer_with_steps(tasks):
    prior, op, y, sigma_y, post = tasks["sr2"]
    solver = PSLD(prior, op, y.expand(N, -1, -1, -1), sigma_y)
    few, many = (sw(solver.decode(solver.sample(steps=s, generator=gen())), post) for s in (20, 50))
    assert many < few - 0.08  # measured 0.518 → 0.372


@pytest.mark.parametrize("cls", [LatentDPS, PSLD])
def test_one_outer_step_is_the_plain_solver_bit_for_bit(tasks, cls):
    prior, op, y, sigma_y, _ = tasks["inpaint-half"]
    solver = cls(prior, op, y.expand(3, -1, -1, -1), sigma_y)
    plain = solver.sample(steps=6, generator=gen())
    nested = NestedSampler(solver, outer_steps=1, inner_steps=6).sample(gen())
    assert torch.equal(plain, nested)


def test_same_seed_same_bytes_and_one_generator_per_image(tasks):
    prior, op, y, sigma_y, _ = tasks["sr2"]
    solver = PSLD(prior, op, y.expand(3, -1, -1, -1), sigma_y)
    first = NestedSampler(solver, 2, 3).sample([gen(s) for s in (0, 1, 2)])
    again = NestedSampler(solver, 2, 3).sample([gen(s) for s in (0, 1, 2)])
    assert torch.equal(first, again)
    alone = NestedSampler(PSLD(prior, op, y, sigma_y), 2, 3).sample([gen(1)])
    torch.testing.assert_close(alone[0], first[1], rtol=0, atol=1e-12)


def test_counts_are_exact(tasks):
    prior, op, y, sigma_y, _ = tasks["inpaint-half"]
    counted = CountingPrior(prior)
    solver = PSLD(counted, op, y.expand(2, -1, -1, -1), sigma_y)
    states = list(solver.iterate(steps=7, generator=gen()))
    assert [(s.nfe, s.vjp) for s in states] == [(i, i) for i in range(1, 8)]
    assert (counted.nfe, counted.images) == (7, 14)
    counted.nfe = 0
    results = list(NestedSampler(solver, 3, 4).iterate(gen()))
    assert [r.nfe for r in results] == [0, 4, 8, 12] and counted.nfe == 12
    assert results[0].image.shape == (2, 1, 1, 2)  # states are latents; decode to show them


def test_psld_is_latent_dps_plus_the_gluing_term(tasks):
    prior, op, y, sigma_y, _ = tasks["sr2"]
    ys = y.expand(3, -1, -1, -1)
    # γ = 0 is latent DPS, bit for bit; γ > 0 changes the run
    dps = LatentDPS(prior, op, ys, sigma_y, zeta=0.7).sample(steps=5, generator=gen())
    assert torch.equal(PSLD(prior, op, ys, sigma_y, zeta=0.7, gamma=0.0).sample(
        steps=5, generator=gen()), dps)
    assert not torch.allclose(PSLD(prior, op, ys, sigma_y, zeta=0.7).sample(
        steps=5, generator=gen()), dps)
    # the gluing term itself: γ‖ẑ0 − E(x − A†(A x − y))‖ with x = D ẑ0 and E = D⁺
    solver = PSLD(prior, op, ys, sigma_y, zeta=1.0, gamma=2.0)
    z0 = torch.randn(3, 1, 1, 2, generator=gen(5), dtype=F64)
    D, Dp = prior.decoder.matrix, prior.decoder.pinv
    Ap = torch.linalg.pinv(prior.image_prior()._dense(op))
    x = z0.reshape(3, 2) @ D.T
    r = y.reshape(1, -1) - x @ prior.image_prior()._dense(op).T
    glue = 2.0 * (z0.reshape(3, 2) - (x + r @ Ap.T) @ Dp.T).norm(dim=1)
    torch.testing.assert_close(solver.loss(z0), r.norm(dim=1) + glue, rtol=0, atol=1e-12)


def test_latent_dps_takes_a_nonlinear_forward_model(tasks):
    prior, *_ = tasks["sr2"]

    def f(x):
        return torch.tanh(x).flatten(1).sum(1, keepdim=True)

    y = torch.tensor([[0.5]], dtype=F64)
    z = LatentDPS(prior, f, y, image_shape=(1, 2, 2)).sample(steps=4, generator=gen())
    assert z.shape == (1, 1, 1, 2) and torch.isfinite(z).all()


def test_mismatches_are_refused_with_what_fits(tasks):
    prior, op, y, sigma_y, _ = tasks["sr2"]
    problem = Problem(torch.full((1, 1, 1, 1), 0.5, dtype=F64), op)
    with pytest.raises(ValueError, match=r"`method`='ddrm' is a pixel solver but `prior` "
                                         r"\(LinearLatentPrior\) is a latent prior.*accepted with "
                                         r"this prior: latent-dps, psld"):
        solvers.make("ddrm", prior, problem)
    pixel = prior.image_prior()
    with pytest.raises(ValueError, match=r"`method`='psld' is a latent solver but `prior` "
                                         r"\(GaussianMixturePrior\) is a pixel prior; accepted with "
                                         r"this prior: daps, ddnm, ddrm, diffpir, dps, pigdm"):
        solvers.make("psld", pixel, problem)
    with pytest.raises(ValueError, match=r"`prior` must be a LatentPrior .* got GaussianMixturePrior"):
        LatentDPS(pixel, op, y)
    assert isinstance(solvers.make("psld", CountingPrior(prior), problem, gamma=0.5), PSLD)
    assert isinstance(solvers.make("ddrm", CountingPrior(pixel), problem), DDRM)


def test_bad_arguments_name_the_argument_and_what_is_accepted(tasks):
    prior, op, y, sigma_y, _ = tasks["sr2"]
    big = operators.make("sr2", image_shape=(1, 4, 4))
    with pytest.raises(ValueError, match=r"`prior` \(LinearLatentPrior\) does not fit `operator`: "
                                         r"it cannot encode the operator's images of shape "
                                         r"\(1, 1, 4, 4\) \(`x` must have shape \[B, 1, 2, 2\]"):
        PSLD(prior, big, big(torch.zeros(1, 1, 4, 4, dtype=F64)))
    with pytest.raises(ValueError, match="`operator` must be an operators.LinearOperator for PSLD"):
        PSLD(prior, lambda x: x.flatten(1)[:, :1], y)
    with pytest.raises(ValueError, match=r"`zeta` must be > 0, got 0"):
        LatentDPS(prior, op, y, zeta=0)
    with pytest.raises(ValueError, match=r"`gamma` must be >= 0, got -1"):
        PSLD(prior, op, y, gamma=-1)
    with pytest.raises(ValueError, match=r"`eta` must lie in \[0, 1\], got 2"):
        PSLD(prior, op, y, eta=2)
    with pytest.raises(ValueError, match="`method_params` gama not accepted by 'psld'; it accepts: "
                                         "zeta, gamma, eta"):
        solvers.make("psld", prior, Problem(torch.full((1, 1, 1, 1), 0.5, dtype=F64), op), gama=1)


def test_a_decoder_whose_images_do_not_fit_the_operator_is_named(tasks):
    prior, op, y, _, _ = tasks["sr2"]

    class Wrong:  # encodes 1×2×2 images, decodes to 1×4×4 ones
        alphas_cumprod = prior.alphas_cumprod
        predict = prior.predict

        def encode(self, x):
            return torch.zeros(x.shape[0], 1, 1, 2, dtype=x.dtype)

        def decode(self, z):
            return torch.zeros(z.shape[0], 1, 4, 4, dtype=z.dtype)

    with pytest.raises(ValueError, match=r"`prior` decodes latents \(1, 1, 1, 2\) to images of "
                                         r"shape \(1, 1, 4, 4\), but `operator` acts on images of "
                                         r"shape \(1, 1, 2, 2\)"):
        LatentDPS(Wrong(), op, y)


def test_timesteps_are_explicit_and_a_state_is_a_restart_point(tasks):
    prior, op, y, sigma_y, _ = tasks["sr2"]
    solver = LatentDPS(prior, op, y.expand(2, -1, -1, -1), sigma_y)
    states = list(solver.iterate(timesteps=[999, 600, 300, 10], generator=gen()))
    assert [s.t for s in states] == [600, 300, 10, -1]
    assert all(s.x_t.shape == (2, 1, 1, 2) for s in states)
    # restarting from the state at t = 300 with the generator where that run left it gives the
    # same end, bit for bit
    g = gen()
    for state in solver.iterate(timesteps=[999, 600, 300, 10], generator=g):
        if state.t == 300:
            break
    tail = solver.sample(state.x_t, t_start=300, timesteps=[300, 10], generator=g)
    assert torch.equal(tail, states[-1].x_t)
