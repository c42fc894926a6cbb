"""DDIM from the prior alone: the inner solver for unconditional (nested) generation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from operators.random import Generators

from ..priors import Prior
from .base import Solver, ddim_step, unit_interval

__all__ = ["DDIM"]


class DDIM(Solver):
    r"""Unconditional DDIM sampling: no operator, no observation.

    ``(x̂0, ε̂) = prior.predict(x_t, t)``;
    ``x_s = √ᾱ_s·x̂0 + √(1−ᾱ_s−σ²)·ε̂ + σ·z``, ``σ = η·√((1−ᾱ_s)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_s)``.

    A :class:`Solver` without an observation, so :class:`~nested_inverse.NestedSampler` drives it
    like any other; the estimate shown before any evaluation is the zero image, mid-grey in the
    model range.

    Args:
        prior: anything with ``alphas_cumprod`` and ``predict``.
        shape: ``[B, C, H, W]`` (or ``[B, *event_shape]``) of the samples.
        eta: DDIM η ∈ [0, 1] (0.85 by default, the inner η of Elata et al.).
        dtype, device: of the samples.

    Example:
        >>> import torch
        >>> from nested_inverse import DDIM, GaussianMixturePrior, NestedSampler
        >>> prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
        ...                              event_shape=(1, 2, 2))
        >>> DDIM(prior, (5, 1, 2, 2), dtype=torch.float64).sample(steps=3).shape
        torch.Size([5, 1, 2, 2])
        >>> nested = NestedSampler.unconditional(prior, (5, 1, 2, 2), outer_steps=2, inner_steps=3,
        ...                                      dtype=torch.float64)
        >>> nested.sample(torch.Generator().manual_seed(0)).shape
        torch.Size([5, 1, 2, 2])

    References:
        Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, arXiv 2010.02502.
    """

    def __init__(
        self,
        prior: Prior,
        shape: Sequence[int],
        eta: float = 0.85,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        shape = tuple(int(s) for s in shape)
        if len(shape) < 2 or min(shape) < 1:
            raise ValueError(f"`shape` must be [B, C, H, W] with positive sizes, got {shape}")
        self.eta = unit_interval("eta", eta)
        super().__init__(prior, torch.zeros(shape, dtype=dtype, device=device))

    def step(self, x_t: Tensor, t: int, s: int, generator: Generators) -> tuple[Tensor, Tensor]:
        x0, eps = self.prior.predict(x_t, t)
        noise = self.noise(generator) if self.eta > 0 and s >= 0 else None
        return ddim_step(x0, eps, self.alpha(t), self.alpha(s), self.eta, noise), x0
