"""DiffPIR: plug-and-play restoration with a diffusion denoiser (Zhu et al., 2023)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from operators import LinearOperator
from operators.base import conjugate_gradient
from operators.random import Generators

from ..priors import Prior
from .base import InverseSolver, spectral_observation, unit_interval

__all__ = ["DiffPIR"]


class DiffPIR(InverseSolver):
    r"""Diffusion plug-and-play image restoration: a denoising step, a proximal data step, then a
    re-noising that mixes the predicted and fresh noise.

    With ``σ̄_t = √((1−ᾱ_t)/ᾱ_t)`` (the noise level of ``x_t/√ᾱ_t``) and ``σ_n = 2·σ_y`` (model
    range, floored at ``2·sigma_floor``):

    - denoise: ``x̂0 = D(x_t, t)`` (the prior's prediction);
    - data step: ``x̃0 = argmin_x ‖y − A x‖² + ρ_t‖x − x̂0‖²``, ``ρ_t = λ·σ_n²/σ̄_t²`` — per singular
      component ``(s_i²·ȳ_i + ρ_t·x̄0_i)/(s_i² + ρ_t)`` with the SVD, conjugate gradients on
      ``(AᵀA + ρ_t I) x = Aᵀy + ρ_t x̂0`` without one;
    - re-noise: ``ε̂ = (x_t − √ᾱ_t·x̃0)/√(1−ᾱ_t)``,
      ``x_s = √ᾱ_s·x̃0 + √(1−ᾱ_s)·(√(1−ζ)·ε̂ + √ζ·z)``.

    One network evaluation per step; the last step returns ``x̃0``. Settings: λ = 7 and ζ = 0.3 are
    the paper's values for super-resolution and deblurring (Sec. 4, Table 5 of arXiv 2305.08995);
    the official code floors the noise level for noiseless observations, here at
    ``sigma_floor = 1e-3`` on the [0, 1] scale. Differences from the paper: timesteps are spread
    evenly like every solver here (the paper skips from ``t_start`` with the same even spacing), and
    the data step is exact where the operator has an SVD (the paper uses FFT closed forms per
    operator, which are the same minimiser).

    Shapes: ``y`` as ``operator(x)``; states ``[B, C, H, W]``. Uses the operator through ``svd``
    when available, otherwise ``forward`` and ``adjoint``.

    Args:
        prior, operator, y, sigma_y: see :class:`InverseSolver` (``sigma_y`` on the [0, 1] scale).
        lambda_: weight λ > 0 of the prior term relative to the data term.
        zeta: share ζ ∈ [0, 1] of fresh noise in the re-noising (0: deterministic, DDIM-like).
        sigma_floor: smallest observation noise used in ``ρ_t`` ([0, 1] scale, > 0).

    Example:
        >>> import torch, operators
        >>> from nested_inverse import GaussianMixturePrior
        >>> from nested_inverse.solvers import DiffPIR
        >>> prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
        ...                              event_shape=(1, 2, 2))
        >>> op = operators.make("inpaint-half", image_shape=(1, 2, 2))
        >>> y = op(prior.sample(1, torch.Generator().manual_seed(0)))
        >>> x0 = DiffPIR(prior, op, y).sample(steps=5, generator=torch.Generator().manual_seed(1))
        >>> x0.shape
        torch.Size([1, 1, 2, 2])

    References:
        Zhu, Zhang, Liang, Cao, Wen, Timofte, Van Gool, "Denoising Diffusion Models for
        Plug-and-Play Image Restoration", CVPR Workshops 2023, arXiv 2305.08995.
    """

    def __init__(
        self,
        prior: Prior,
        operator: LinearOperator,
        y: Tensor,
        sigma_y: float = 0.0,
        lambda_: float = 7.0,
        zeta: float = 0.3,
        sigma_floor: float = 1e-3,
    ) -> None:
        if not isinstance(operator, LinearOperator):
            raise ValueError(f"`operator` must be an operators.LinearOperator for DiffPIR, got "
                             f"{type(operator).__name__}; use DPS for other forward models")
        super().__init__(prior, operator, y, sigma_y)
        if isinstance(lambda_, bool) or not float(lambda_) > 0 or not math.isfinite(float(lambda_)):
            raise ValueError(f"`lambda_` must be a finite number > 0, got {lambda_!r}")
        if isinstance(sigma_floor, bool) or not float(sigma_floor) > 0:
            raise ValueError(f"`sigma_floor` must be > 0 (on the [0, 1] scale), got {sigma_floor!r}")
        self.lambda_ = float(lambda_)
        self.zeta = unit_interval("zeta", zeta)
        self.sigma_n = 2.0 * max(self.sigma_y, float(sigma_floor))
        self.svd = operator.svd()
        if self.svd is not None:
            self._observed, self._y_bar, self._s = spectral_observation(self.svd, y)
        else:
            with torch.no_grad():
                self._aty = operator.adjoint(y)

    def rho(self, t: int) -> float:
        """``ρ_t = λ·σ_n²/σ̄_t²`` with ``σ̄_t² = (1−ᾱ_t)/ᾱ_t``."""
        a_t = self.alpha(t)
        return self.lambda_ * self.sigma_n**2 * a_t / (1 - a_t)

    def data_step(self, x0: Tensor, t: int) -> Tensor:
        """``argmin_x ‖y − A x‖² + ρ_t‖x − x̂0‖²`` ``[B, C, H, W]``."""
        rho = self.rho(t)
        if self.svd is not None:
            x0_bar = self.svd.Vt(x0)
            s2 = self._s**2
            solved = (s2 * self._y_bar + rho * x0_bar) / (s2 + rho)
            return x0 + self.svd.V(torch.where(self._observed, solved - x0_bar, 0.0))
        op = self.operator
        return conjugate_gradient(lambda v: op.adjoint(op.forward(v)) + rho * v,
                                  self._aty + rho * x0, tol=1e-8, max_iter=200)

    def step(self, x_t: Tensor, t: int, s: int, generator: Generators) -> tuple[Tensor, Tensor]:
        x0, _ = self.prior.predict(x_t, t)
        x0 = self.data_step(x0, t)
        if s < 0:
            return x0, x0
        a_t, a_s = self.alpha(t), self.alpha(s)
        eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        if self.zeta > 0:
            eps = math.sqrt(1 - self.zeta) * eps + math.sqrt(self.zeta) * self.noise(generator)
        return math.sqrt(a_s) * x0 + math.sqrt(1 - a_s) * eps, x0
