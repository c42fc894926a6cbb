"""``restore()`` with a latent prior: image and operator in image space, latents inside, every
result decoded to [0, 1]; the default method and policy; refusals that name what fits."""

import pytest
import torch

import operators
from nested_inverse import GaussianMixturePrior, NestedSampler, Problem, restore, solvers
from nested_inverse.priors import LinearDecoder, LinearLatentPrior
from nested_inverse.seeds import ImageSeeds
from nested_inverse.sampling import budget_for_deadline
from nested_inverse.solvers import PSLD


@pytest.fixture(scope="module")
def prior():
    """A 2-D latent mixture under an orthonormal 4×2 decoder onto 1×2×2 images in about [-1, 1]."""
    g = torch.Generator().manual_seed(0)
    gmm = GaussianMixturePrior(torch.ones(3), 0.4 * torch.randn(3, 2, generator=g),
                               0.02 * torch.eye(2).repeat(3, 1, 1), (1, 1, 2))
    return LinearLatentPrior(gmm, LinearDecoder.orthonormal((1, 1, 2), (1, 2, 2), g))


def observation(prior, task="sr2"):
    x = ((prior.sample(1, torch.Generator().manual_seed(1)) + 1) / 2).clamp(0, 1).float()
    op = operators.make(task, image_shape=(1, 2, 2))
    return x, op, op(x)


def test_default_is_psld_with_the_default_split_and_every_step_decoded(prior):
    x, op, y = observation(prior)
    out, results = restore(y, op, prior=prior, seed=0, return_intermediates=True, progress=False)
    assert out.shape == x.shape and out.dtype == y.dtype
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    # budget 20 → auto_split 4 × 5; A†y (through the decoder) first, then one image per outer step
    assert [(r.outer_step, r.nfe) for r in results] == [(0, 0), (1, 5), (2, 10), (3, 15), (4, 20)]
    assert all(r.image.shape == x.shape for r in results)
    assert torch.equal(results[-1].image, out)
    # the same run by hand: PSLD nested 4 × 5 in latent space, decoded and mapped to [0, 1]
    problem = Problem(y, op)
    solver = PSLD(prior, op, problem.y, problem.sigma_y)
    z = NestedSampler(solver, 4, 5).sample([ImageSeeds(0).generator("sample")], budget_nfe=20)
    assert torch.equal(out, ((prior.decode(z) + 1) / 2).clamp(0, 1))
    again = restore(y, op, prior=prior, seed=0, progress=False)
    assert torch.equal(out, again)


def test_latent_dps_vanilla_and_an_explicit_split(prior):
    x, op, y = observation(prior, "inpaint-half")
    out, results = restore(y, op, 0.05, method="latent-dps", vanilla=True, steps=6, prior=prior,
                           seed=0, return_intermediates=True, progress=False)
    assert out.shape == x.shape and [r.nfe for r in results] == list(range(7))
    out = restore(y, op, 0.05, method="psld", outer_steps=2, inner_steps=3, prior=prior, seed=0,
                  progress=False, gamma=0.5)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_pixel_solvers_are_refused_on_a_latent_prior_and_the_reverse(prior):
    _, op, y = observation(prior)
    with pytest.raises(ValueError, match=r"`method`='ddrm' is a pixel solver .* accepted with this "
                                         r"prior: latent-dps, psld"):
        restore(y, op, method="ddrm", prior=prior, progress=False)
    with pytest.raises(ValueError, match=r"`method`='psld' is a latent solver .* accepted with this "
                                         r"prior: daps, ddnm, ddrm, diffpir, dps, pigdm"):
        restore(y, op, method="psld", prior=prior.image_prior(), progress=False)


def test_a_deadline_alone_probes_the_latent_and_keeps_to_it(prior):
    x, op, y = observation(prior)
    # the probe evaluates the prior on a latent (a pixel-shaped probe would be refused)
    assert budget_for_deadline(solvers.make("psld", prior, Problem(y, op)), 1.0) >= 1
    out, results = restore(y, op, prior=prior, seed=0, deadline_s=1.0, return_intermediates=True,
                           progress=False)
    assert out.shape == x.shape and results[-1].elapsed_s <= 1.0
