"""DDNM and DDNM+: range–null-space decomposition (Wang, Yu, Zhang, 2023)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from operators import LinearOperator
from operators.random import Generators

from ..priors import Prior
from .base import InverseSolver, ddim_step, spectral_observation, unit_interval

__all__ = ["DDNM"]


class DDNM(InverseSolver):
    r"""Denoising Diffusion Null-space Model: keep the range of ``A†`` from ``y``, the rest from
    the prior, then take a DDIM step.

    ``x̂0 ← x̂0 − A†(A x̂0 − y)`` ``(= A†y + (I − A†A) x̂0)``;
    ``x_s = √ᾱ_s·x̂0 + √(1−ᾱ_s−σ²)·ε̂ + σ·z``, ``σ = η·√((1−ᾱ_s)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_s)``.

    **DDNM+** (noisy ``y``, Sec. 3.3 of the paper): the correction carries ``y``'s noise,
    ``σ_y/s_i`` on singular component ``i``, into ``x_s`` with weight ``√ᾱ_s``. Where that exceeds
    the noise ``x_s`` should hold, ``b = √(1−ᾱ_s)``, the correction is scaled down and the DDIM
    noise terms (``√(1−ᾱ_s−σ²)·ε̂ + σ·z``) are scaled so the total variance stays ``b²``:

    ``c_i = √ᾱ_s·σ_y/s_i``, ``λ_i = min(1, b/c_i)``, ``γ_i = √(b² − λ_i² c_i²)/b``,
    ``x̂0 ← x̂0 − V·diag(λ)·Vᵀ A†(A x̂0 − y)``, noise terms ← ``V·diag(γ)·Vᵀ(noise terms)``.

    With the SVD this is per singular value; without one, a scalar version with ``A†`` assumes
    unit singular values (exact for masks) and rescales the noise in the range of ``Aᵀ`` through
    ``A†A``. At the last step (``ᾱ_s = 1``, ``b = 0``) the
    correction of noisy components vanishes, as in DDRM. DDNM+ is used when ``sigma_y > 0``
    unless ``plus=False``; with ``sigma_y = 0`` it is plain DDNM (``λ = γ = 1``).

    Shapes: ``y`` as ``operator(x)``; states ``[B, C, H, W]``. Uses the operator through
    ``forward`` and ``pinv`` (and ``svd`` for DDNM+ when available).

    Args:
        prior, operator, y, sigma_y: see :class:`InverseSolver` (``sigma_y`` on the [0, 1] scale).
        eta: DDIM stochasticity η ∈ [0, 1] (default 0.85, as for DDIM inner samplers in Elata
            et al.).
        plus: use DDNM+ for noisy ``y``; default (None): when ``sigma_y > 0``.

    Example:
        >>> import torch, operators
        >>> from nested_inverse import DDNM, GaussianMixturePrior
        >>> prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
        ...                              event_shape=(1, 2, 2))
        >>> op = operators.make("inpaint-half", image_shape=(1, 2, 2))
        >>> y = op(prior.sample(1, torch.Generator().manual_seed(0)))
        >>> x0 = DDNM(prior, op, y).sample(steps=5, generator=torch.Generator().manual_seed(1))
        >>> torch.allclose(op(x0), y)  # the observed half is kept exactly
        True

    References:
        Wang, Yu, Zhang, "Zero-Shot Image Restoration Using Denoising Diffusion Null-Space
        Model", ICLR 2023, arXiv 2212.00490.
    """

    def __init__(
        self,
        prior: Prior,
        operator: LinearOperator,
        y: Tensor,
        sigma_y: float = 0.0,
        eta: float = 0.85,
        plus: bool | None = None,
    ) -> None:
        super().__init__(prior, operator, y, sigma_y)
        eta = unit_interval("eta", eta)
        self.eta = eta
        self.plus = (self.sigma > 0) if plus is None else bool(plus) and self.sigma > 0
        self.svd = operator.svd() if self.plus else None
        if self.svd is not None:
            self._observed, self._y_bar, safe = spectral_observation(self.svd, y)
            self._noise_bar = torch.where(self._observed, self.sigma / safe, 0.0)  # σ_y/s_i

    def correct(self, x0: Tensor, t: int) -> Tensor:
        """The data-consistency correction of ``x̂0`` at timestep ``t`` (plain DDNM)."""
        return x0 - self.A_pinv(self.A(x0) - self.y)

    def step(self, x_t: Tensor, t: int, s: int, generator: Generators) -> tuple[Tensor, Tensor]:
        x0, eps = self.prior.predict(x_t, t)
        a_t, a_s = self.alpha(t), self.alpha(s)
        noise = self.noise(generator) if self.eta > 0 and s >= 0 else None
        if not self.plus:
            x0 = self.correct(x0, t)
            return ddim_step(x0, eps, a_t, a_s, self.eta, noise), x0
        # DDNM+: the DDIM step's noise part alone, to be rescaled against y's noise.
        x0, rest = self._plus(x0, ddim_step(torch.zeros_like(x0), eps, a_t, a_s, self.eta, noise), a_s)
        return math.sqrt(a_s) * x0 + rest, x0

    def _plus(self, x0: Tensor, rest: Tensor, a_s: float) -> tuple[Tensor, Tensor]:
        """DDNM+'s scaled correction of ``x̂0`` and scaled noise terms ``rest``."""
        b = math.sqrt(1 - a_s)
        if self.svd is None:  # scalar version: y's noise through A† taken as σ_y everywhere
            c = math.sqrt(a_s) * self.sigma
            lam = 1.0 if c <= b else b / c
            gamma = math.sqrt(max(b**2 - (lam * c) ** 2, 0.0)) / b if b > 0 else 0.0
            x0 = x0 - lam * self.A_pinv(self.A(x0) - self.y)
            if gamma < 1:  # rescale the noise in the range of Aᵀ only: rest − (1−γ)·A†A·rest
                rest = rest - (1 - gamma) * self.A_pinv(self.A(rest))
            return x0, rest
        c = math.sqrt(a_s) * self._noise_bar
        lam = torch.where(c <= b, 1.0, b / c.clamp_min(torch.finfo(c.dtype).tiny))
        lam = torch.where(self._observed, lam, 0.0)
        gamma = torch.ones_like(c) if b == 0 else (b**2 - (lam * c) ** 2).clamp_min(0).sqrt() / b
        gamma = torch.where(self._observed, gamma, 1.0)
        x0_bar = self.svd.Vt(x0)
        x0 = self.svd.V(x0_bar + lam * (self._y_bar - x0_bar))
        if b > 0:
            rest = self.svd.V(gamma * self.svd.Vt(rest))
        return x0, rest
