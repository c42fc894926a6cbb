
import pytest
import torch

import operators
from nested_inverse import GaussianMixturePrior


def random_gmm(generator, k=5, d=4, event_shape=(1, 2, 2), scale=0.3):
    weights = torch.rand(k, generator=generator, dtype=torch.float64) + 0.2
    means = torch.randn(k, d, generator=generator, dtype=torch.float64)
    roots = scale * torch.randn(k, d, d, generator=generator, dtype=torch.float64)
    covs = roots @ roots.transpose(-1, -2) + 0.05 * torch.eye(d, dtype=torch.float64)
    return GaussianMixturePrior(weights, means, covs, event_shape)


def test_samples_have_the_mixture_mean_and_covariance(generator):
    prior = random_gmm(generator)
    x = prior.sample(200_000, generator).view(-1, 4)
    mean = (prior.weights[:, None] * prior.means).sum(0)
    second = (prior.weights[:, None, None]
              * (prior.covs + prior.means[:, :, None] * prior.means[:, None, :])).sum(0)
    cov = second - mean[:, None] * mean[None, :]
    torch.testing.assert_close(x.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(x.T), cov, atol=0.03, rtol=0)


def test_denoiser_matches_monte_carlo(generator):
    """E[x0 | x_t] by self-normalised importance sampling from the prior."""
    prior = random_gmm(generator)
    t = 300
    a = prior.alphas_cumprod[t]
    x0_true = prior.sample(3, generator)
    x_t = a.sqrt() * x0_true + (1 - a).sqrt() * torch.randn(x0_true.shape, generator=generator,
                                                            dtype=torch.float64)
    x0_hat, eps_hat = prior.predict(x_t, t)
    draws = prior.sample(400_000, generator).view(-1, 4)
    for i in range(3):
        logw = -0.5 * ((x_t[i].view(1, 4) - a.sqrt() * draws) ** 2).sum(1) / (1 - a)
        w = torch.softmax(logw, 0)
        torch.testing.assert_close(x0_hat[i].view(4), (w[:, None] * draws).sum(0), atol=0.02,
                                   rtol=0)
    torch.testing.assert_close(a.sqrt() * x0_hat + (1 - a).sqrt() * eps_hat, x_t)


def test_denoiser_per_item_timesteps_match_scalar(generator):
    prior = random_gmm(generator)
    x_t = torch.randn(2, 1, 2, 2, generator=generator, dtype=torch.float64)
    both, _ = prior.predict(x_t, torch.tensor([10, 700]))
    torch.testing.assert_close(both[:1], prior.predict(x_t[:1], 10)[0])
    torch.testing.assert_close(both[1:], prior.predict(x_t[1:], 700)[0])


def test_posterior_matches_brute_force_bayes_on_a_grid(generator):
    prior = random_gmm(generator, k=3, d=2, event_shape=(1, 1, 2), scale=0.5)
    op = operators.MatrixOperator(torch.tensor([[1.0, 0.5]], dtype=torch.float64), (1, 1, 2))
    sigma_y = 0.1
    y = torch.tensor([[0.3]], dtype=torch.float64)
    post = prior.posterior(op, y, sigma_y)
    g = torch.linspace(-5, 5, 801, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).view(-1, 2)
    loglik = -0.5 * ((y - grid @ op.matrix.T) ** 2).sum(1) / (2 * sigma_y) ** 2
    logp = prior.log_prob(grid.view(-1, 1, 1, 2)) + loglik
    brute = torch.softmax(logp, 0)
    exact = post.log_prob(grid.view(-1, 1, 1, 2)).exp() * (g[1] - g[0]) ** 2
    assert (brute - exact).abs().sum() < 1e-3
    torch.testing.assert_close((brute[:, None] * grid).sum(0),
                               (post.weights[:, None] * post.means).sum(0), atol=1e-4, rtol=0)


def test_noiseless_rank_deficient_posterior_agrees_with_observation(generator):
    prior = random_gmm(generator)
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    op = operators.MatrixOperator(torch.diag(mask.flatten()), (1, 2, 2))  # y keeps 4 entries
    x = prior.sample(1, generator)
    y = op(x)
    samples = prior.posterior_sample(op, y, 0.0, generator=generator, n=500)
    # Exact up to the conditioning of the Cholesky solves (errors of ~1e-8 measured).
    torch.testing.assert_close(op(samples), y.expand(500, -1), atol=1e-6, rtol=0)
    assert samples[:, 0, 0, 1].std() > 0.01  # the missing entry still varies


def test_posterior_given_x_t_and_y_is_consistent_with_bayes(generator):
    """p(x0 | x_t, y) ∝ p(x0 | y) N(x_t; √ᾱ x0, 1−ᾱ): its mean, by importance weighting."""
    prior = random_gmm(generator)
    op = operators.MatrixOperator(torch.randn(2, 4, generator=generator, dtype=torch.float64),
                                  (1, 2, 2))
    x = prior.sample(1, generator)
    y = op(x) + 0.1 * torch.randn(1, 2, generator=generator, dtype=torch.float64)
    t = 400
    a = prior.alphas_cumprod[t]
    x_t = a.sqrt() * x + (1 - a).sqrt() * torch.randn(x.shape, generator=generator,
                                                       dtype=torch.float64)
    draws = prior.posterior_sample(op, y, 0.05, generator=generator, n=300_000).view(-1, 4)
    logw = -0.5 * ((x_t.view(1, 4) - a.sqrt() * draws) ** 2).sum(1) / (1 - a)
    reference = (torch.softmax(logw, 0)[:, None] * draws).sum(0)
    exact = prior.posterior_sample(op, y, 0.05, x_t=x_t.expand(20_000, -1, -1, -1), t=t,
                                   generator=generator).view(-1, 4).mean(0)
    torch.testing.assert_close(exact, reference, atol=0.02, rtol=0)


def test_bad_input_is_named(generator):
    with pytest.raises(ValueError, match="means"):
        GaussianMixturePrior(torch.ones(2), torch.zeros(3, 4), torch.eye(4).repeat(2, 1, 1), (1, 2, 2))
    prior = random_gmm(generator)
    with pytest.raises(ValueError, match="timestep"):
        prior.predict(torch.zeros(1, 1, 2, 2, dtype=torch.float64), 1000)
    with pytest.raises(ValueError, match="sigma_y"):
        prior.posterior(operators.MatrixOperator(torch.eye(4, dtype=torch.float64), (1, 2, 2)),
                        torch.zeros(1, 4, dtype=torch.float64), -0.1)
