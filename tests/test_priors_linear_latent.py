"""The exact latent yardstick: a Gaussian mixture over latents under a linear decoder.

Exact identities, each checked to float64 round-off (or to the documented jitter):
the induced image prior's denoiser is the decoded latent denoiser when ``D`` is orthonormal, and
the latent posterior pushed through ``D`` is the image prior's posterior.
"""

import pytest
import torch

import operators
from nested_inverse import CountingPrior, GaussianMixturePrior, LatentPrior
from nested_inverse.priors import LinearDecoder, LinearLatentPrior

F64 = torch.float64


def latent_gmm(seed: int = 0, k: int = 5) -> GaussianMixturePrior:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, 2, generator=g, dtype=F64)
    roots = torch.randn(k, 2, 2, generator=g, dtype=F64)
    covs = 0.2**2 * roots @ roots.transpose(-1, -2) + 0.02 * torch.eye(2, dtype=F64)
    return GaussianMixturePrior(torch.ones(k), means, covs, (1, 1, 2))


def test_decoder_maps_and_round_trips():
    dec = LinearDecoder(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [0.0, 0.0]]),
                        (1, 1, 2), (1, 2, 2))
    z = torch.tensor([[[[1.0, -1.0]]]], dtype=F64)
    assert dec.decode(z).flatten().tolist() == [1.0, -2.0, 0.0, 0.0]
    torch.testing.assert_close(dec.encode(dec.decode(z)), z, rtol=0, atol=1e-14)
    # dtype follows the input, the matrices stay float64
    assert dec.decode(z.float()).dtype == torch.float32 and dec.matrix.dtype == F64
    assert not dec.full_row_rank


def test_orthonormal_decoder_has_orthonormal_columns():
    dec = LinearDecoder.orthonormal((1, 1, 2), (1, 2, 2), torch.Generator().manual_seed(0))
    torch.testing.assert_close(dec.matrix.T @ dec.matrix, torch.eye(2, dtype=F64), rtol=0, atol=1e-14)


@pytest.mark.parametrize("image_shape, atol", [((1, 1, 2), 1e-14), ((1, 2, 2), 1e-6)])
def test_image_denoiser_is_the_decoded_latent_denoiser(image_shape, atol):
    """With DᵀD = I, x_t = √ᾱ D z0 + √(1−ᾱ) ε, and the part of x_t outside range(D) is pure noise,
    so E[x0 | x_t] = D E[z0 | Dᵀx_t]. Square D: exact (measured 3e-16); 4×2 D: the image prior
    carries the documented jitter j ≈ 1e-10, error ≈ j/(1−ᾱ_t) (measured 4e-8 at t = 0)."""
    g = torch.Generator().manual_seed(1)
    prior = LinearLatentPrior(latent_gmm(), LinearDecoder.orthonormal((1, 1, 2), image_shape, g))
    image_prior = prior.image_prior()
    x_t = torch.randn(6, *image_shape, generator=g, dtype=F64)
    for t in (0, 10, 500, 999):
        x0, eps = image_prior.predict(x_t, t)
        z0, _ = prior.predict(prior.encode(x_t), t)
        torch.testing.assert_close(x0, prior.decode(z0), rtol=0, atol=atol)
        a = float(prior.alphas_cumprod[t])
        torch.testing.assert_close(eps, (x_t - a**0.5 * x0) / (1 - a) ** 0.5, rtol=0, atol=1e-9)


def test_image_prior_jitter_only_where_the_image_covariance_is_singular():
    g = torch.Generator().manual_seed(2)
    square = LinearLatentPrior(latent_gmm(), LinearDecoder(torch.randn(2, 2, generator=g,
                                                                      dtype=F64), (1, 1, 2), (1, 1, 2)))
    D = square.decoder.matrix
    # no jitter: equal up to the mixture's own symmetrisation (round-off)
    torch.testing.assert_close(square.image_prior().covs, D @ square.latent_gmm.covs @ D.T,
                               rtol=0, atol=1e-15)
    tall = LinearLatentPrior(latent_gmm(), LinearDecoder.orthonormal((1, 1, 2), (1, 2, 2), g))
    extra = tall.image_prior().covs - tall.decoder.matrix @ tall.latent_gmm.covs @ tall.decoder.matrix.T
    jitter = float(extra[0, 0, 0])
    assert 0 < jitter < 1e-9
    torch.testing.assert_close(extra, jitter * torch.eye(4, dtype=F64).expand(5, 4, 4),
                               rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="`jitter` must be >= 0"):
        tall.image_prior(jitter=-1.0)


@pytest.mark.parametrize("task, sigma_y, atol", [("sr2", 0.0, 1e-8), ("sr2", 0.05, 1e-9),
                                                 ("inpaint-half", 0.05, 1e-9)])
def test_latent_posterior_pushed_through_d_is_the_image_posterior(task, sigma_y, atol):
    """y = A D z0 + 2σ_y n is a linear-Gaussian observation of z0 (H = A D), so p(z0 | y) is a
    mixture and D maps it onto p(x0 | y) of the induced image prior. Measured (noiseless sr2 is
    the worst: the jitter meets a rank-1 A): weights 6e-11, means 1e-9, covariances 2e-11."""
    g = torch.Generator().manual_seed(3)
    prior = LinearLatentPrior(latent_gmm(), LinearDecoder(torch.randn(4, 2, generator=g, dtype=F64) / 2,
                                                          (1, 1, 2), (1, 2, 2)))
    op = operators.make(task, image_shape=(1, 2, 2))
    y = op(prior.sample(1, g))
    y = y + 2 * sigma_y * torch.randn(y.shape, generator=g, dtype=F64)
    pushed = prior.image_posterior(op, y, sigma_y)
    direct = prior.image_prior().posterior(op, y, sigma_y)
    for name in ("weights", "means", "covs"):
        torch.testing.assert_close(getattr(pushed, name), getattr(direct, name), rtol=0, atol=atol)
    # and the latent posterior is itself exact: it agrees with conditioning on H z0 directly
    H = prior.latent_operator(op)
    torch.testing.assert_close(H(torch.eye(2, dtype=F64).view(2, 1, 1, 2)).T,
                               op(prior.decoder.matrix.T.reshape(2, 1, 2, 2)).reshape(2, -1).T)
    samples = prior.posterior_sample(op, y, sigma_y, torch.Generator().manual_seed(4), n=3)
    assert samples.shape == (3, 1, 2, 2)
    if sigma_y == 0:  # noiseless: every exact posterior sample fits y
        torch.testing.assert_close(op(samples), y.expand(3, -1, -1, -1), rtol=0, atol=1e-8)


def test_it_is_a_latent_prior_and_counting_forwards_the_decoder():
    prior = LinearLatentPrior(latent_gmm(), LinearDecoder.orthonormal((1, 1, 2), (1, 2, 2)))
    assert isinstance(prior, LatentPrior)
    counted = CountingPrior(prior)
    assert isinstance(counted, LatentPrior)
    z = torch.ones(2, 1, 1, 2, dtype=F64)
    assert torch.equal(counted.decode(z), prior.decode(z))
    assert torch.equal(counted.encode(prior.decode(z)), prior.encode(prior.decode(z)))
    counted.predict(z, 5)
    assert (counted.nfe, counted.images) == (1, 2)  # decoder calls are not network evaluations
    assert not isinstance(CountingPrior(latent_gmm()), LatentPrior)  # a pixel prior stays pixel


def test_bad_shapes_are_reported():
    with pytest.raises(ValueError, match=r"`matrix` must be a tensor \[n, d\] = \[4, 2\].*got \(4, 3\)"):
        LinearDecoder(torch.zeros(4, 3), (1, 1, 2), (1, 2, 2))
    dec = LinearDecoder.orthonormal((1, 1, 2), (1, 2, 2))
    with pytest.raises(ValueError, match=r"`z` must have shape \[B, 1, 1, 2\], got \(1, 1, 2, 2\)"):
        dec.decode(torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="orthonormal columns need"):
        LinearDecoder.orthonormal((1, 2, 2), (1, 1, 2))
    with pytest.raises(ValueError, match=r"`decoder` takes latents of shape \(1, 2, 1\)"):
        LinearLatentPrior(latent_gmm(), LinearDecoder.orthonormal((1, 2, 1), (1, 2, 2)))
    with pytest.raises(ValueError, match="`latent_gmm` must be a GaussianMixturePrior"):
        LinearLatentPrior("gmm", dec)
