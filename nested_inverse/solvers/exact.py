"""An exact inner sampler on a Gaussian mixture: the reference nested diffusion must reproduce."""

from __future__ import annotations

from torch import Tensor

from operators import LinearOperator
from operators.random import Generators

from ..priors.gmm import GaussianMixturePrior
from .base import InverseSolver, ddim_step, unit_interval

__all__ = ["ExactPosterior"]


class ExactPosterior(InverseSolver):
    r"""Samples ``p(x0 | x_t, y)`` exactly at every step, then takes a DDIM step with it.

    ``x̂0 ~ p(x0 | x_t, y)`` (:meth:`GaussianMixturePrior.posterior_sample`);
    ``x_s = √ᾱ_s·x̂0 + √(1−ᾱ_s−σ²)·ε̂ + σ·z`` with ``ε̂ = (x_t − √ᾱ_t x̂0)/√(1−ᾱ_t)``.

    Given x0, every DDIM step keeps ``x_s ~ N(√ᾱ_s x0, (1−ᾱ_s) I)`` (any η) and the forward
    process does not see ``y``, so each state, and the result, has its exact law given ``y``:
    the result is an exact posterior sample from any ``(x_t, t)`` with any number of steps. Each
    step counts as one evaluation (nothing calls ``prior.predict``).

    Args:
        prior: a :class:`GaussianMixturePrior`; operator, y, sigma_y: as for :class:`InverseSolver`
            (``sigma_y`` on the [0, 1] scale); eta: DDIM η ∈ [0, 1].

    Example:
        >>> import torch, operators
        >>> from nested_inverse import NestedSampler, GaussianMixturePrior
        >>> prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
        ...                              event_shape=(1, 2, 2))
        >>> op = operators.make("inpaint-half", image_shape=(1, 2, 2))
        >>> y = op(prior.sample(1, torch.Generator().manual_seed(0)))
        >>> from nested_inverse.solvers import ExactPosterior
        >>> exact = ExactPosterior(prior, op, y.expand(4, 1, 2, 2))
        >>> x0 = NestedSampler(exact, outer_steps=2, inner_steps=1).sample(
        ...     torch.Generator().manual_seed(0))
        >>> torch.allclose(op(x0), y.expand(4, 1, 2, 2))  # noiseless: every sample fits y
        True
    """

    def __init__(
        self,
        prior: GaussianMixturePrior,
        operator: LinearOperator,
        y: Tensor,
        sigma_y: float = 0.0,
        eta: float = 1.0,
    ) -> None:
        if not isinstance(prior, GaussianMixturePrior):
            raise ValueError(f"`prior` must be a GaussianMixturePrior, got {type(prior).__name__}")
        super().__init__(prior, operator, y, sigma_y)
        eta = unit_interval("eta", eta)
        self.eta = eta

    def step(self, x_t: Tensor, t: int, s: int, generator: Generators) -> tuple[Tensor, Tensor]:
        x0 = self.prior.posterior_sample(self.operator, self.y, self.sigma_y, x_t=x_t, t=t,
                                         generator=generator).to(x_t.dtype)
        a_t, a_s = self.alpha(t), self.alpha(s)
        eps = (x_t - a_t**0.5 * x0) / (1 - a_t) ** 0.5
        noise = self.noise(generator) if self.eta > 0 and s >= 0 else None
        return ddim_step(x0, eps, a_t, a_s, self.eta, noise), x0
