"""DDRM: denoising diffusion restoration in the operator's spectral space (Kawar et al., 2022)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from operators import LinearOperator
from operators.random import Generators, randn

from ..priors import Prior
from .base import InverseSolver, spectral_observation, unit_interval

__all__ = ["DDRM"]


class DDRM(InverseSolver):
    r"""Denoising Diffusion Restoration Models: a variational sampler run per singular value.

    With ``A = U diag(s) Vᵀ``, work in the variance-exploding variable ``x̄_t = Vᵀx_t/√ᾱ_t`` with
    noise level ``σ_t = √((1−ᾱ_t)/ᾱ_t)`` and the observation ``ȳ_i = (Uᵀy)_i / s_i``, whose noise
    is ``σ_y/s_i``. One step ``t → s`` with ``x̄0 = Vᵀx̂0`` and ``z ~ N(0, I)`` sets, per component:

    - ``s_i = 0``:             ``x̄_s = x̄0 + √(1−η²)·σ_s·(x̄_t − x̄0)/σ_t + η·σ_s·z``
    - ``σ_s < σ_y/s_i``:       ``x̄_s = x̄0 + √(1−η²)·σ_s·(ȳ − x̄0)/(σ_y/s_i) + η·σ_s·z``
    - ``σ_s ≥ σ_y/s_i``:       ``x̄_s = (1−η_b)·x̄0 + η_b·ȳ + √(σ_s² − η_b²·σ_y²/s_i²)·z``

    and ``x_s = √ᾱ_s·V x̄_s``. From noise, ``x̄_T`` is ``ȳ_i + √(σ_T² − σ_y²/s_i²)·z`` on the
    components where that variance is positive and ``σ_T·z`` elsewhere. The reported ``x0_hat`` is
    the same update taken to ``σ_s = 0`` without noise, so the last step (``s = −1``) returns it.
    Noiseless (``σ_y = 0``) every observed component takes the third case.

    Shapes: ``y`` as ``operator(x)``; states ``[B, C, H, W]``; the SVD's ``singulars`` may be
    ``[1, N]`` or per image ``[B, N]``. Needs ``operator.svd()``.

    Args:
        prior, operator, y, sigma_y: see :class:`InverseSolver` (``sigma_y`` on the [0, 1] image scale;
            ``σ_y`` above is ``2·sigma_y``, the model range).
        eta: η ∈ [0, 1], the share of fresh noise in each step (default 0.85, the official one).
        eta_b: η_b ∈ [0, 1], how far observed components move to ``ȳ`` (default 1).
        rcond: singular values below ``rcond·max(s)`` count as unobserved. Default: 1e-2 for
            noiseless y, whose rounding and 8-bit quantisation ``ȳ`` amplifies by ``1/s_i``
            (measured, blur-gauss, 48 px, 10 steps: with rcond 1e-5 a float32 y gives 35.0 dB
            but the same y saved as 8-bit gives 5.2 dB; with 1e-2, 30.9 and 30.3 dB); 0 for noisy
            y, where ``σ_y/s_i`` already weighs each component. Never below 10× the dtype's eps.

    Example:
        >>> import torch, operators
        >>> from nested_inverse import DDRM, GaussianMixturePrior
        >>> g = torch.Generator().manual_seed(0)
        >>> prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
        ...                              event_shape=(1, 2, 2))
        >>> op = operators.MatrixOperator(torch.randn(2, 4, generator=g, dtype=torch.float64),
        ...                               (1, 2, 2))
        >>> y = op(prior.sample(1, g))
        >>> x0 = DDRM(prior, op, y).sample(steps=5, generator=g)
        >>> torch.allclose(op(x0), y)
        True

    References:
        Kawar, Elad, Ermon, Song, "Denoising Diffusion Restoration Models", NeurIPS 2022,
        arXiv 2201.11793.
    """

    def __init__(
        self,
        prior: Prior,
        operator: LinearOperator,
        y: Tensor,
        sigma_y: float = 0.0,
        eta: float = 0.85,
        eta_b: float = 1.0,
        rcond: float | None = None,
    ) -> None:
        svd = operator.svd() if hasattr(operator, "svd") else None
        if svd is None:
            raise ValueError(
                f"DDRM needs the operator's SVD, but {type(operator).__name__}.svd() returned "
                "None; use DDNM, PiGDM or DPS, which need only forward/pinv/adjoint"
            )
        super().__init__(prior, operator, y, sigma_y)
        eta = unit_interval("eta", eta)
        eta_b = unit_interval("eta_b", eta_b)
        self.eta = eta
        self.eta_b = eta_b
        self.svd = svd
        if rcond is None:
            rcond = 1e-2 if sigma_y == 0 else 0.0
        if not 0.0 <= rcond < 1.0:
            raise ValueError(f"`rcond` must lie in [0, 1), got {rcond}")
        self.rcond = float(rcond)
        # ȳ_i = (Uᵀy)_i/s_i multiplies y's rounding (and a PNG's quantisation) by 1/s_i: components
        # far below the largest singular value are left to the prior, as pinv cut-offs do.
        s_max = svd.singulars.to(dtype=y.dtype, device=y.device).amax(dim=1, keepdim=True)
        floor = s_max * max(self.rcond, torch.finfo(y.dtype).eps * 10)
        self.observed, self.y_bar, safe = spectral_observation(svd, y, floor)  # [B or 1, N]
        # Observation noise per component in the x̄ variable: σ_y/s_i (inf where unobserved).
        self.noise_bar = torch.where(self.observed, self.sigma / safe, math.inf)
        # Case 2 divides by σ_y/s_i; where that is 0 case 3 applies, so any finite divisor will do.
        self._noise_div = torch.where(self.noise_bar > 0, self.noise_bar, 1.0)
        self._b0 = self.weights(0.0)[1]

    def sigma_bar(self, t: int) -> float:
        """``σ_t = √((1−ᾱ_t)/ᾱ_t)``, the noise level of ``x̄_t``; 0 for the clean image."""
        a = self.alpha(t)
        return math.sqrt((1 - a) / a)

    def spectral_noise(self, generator: Generators) -> Tensor:
        """``z ~ N(0, I)`` in spectral space ``[B, N]``, one draw per image from its generator."""
        n = self.y_bar.shape[1]
        return randn((self.image_shape[0], n), generator, dtype=self.y.dtype, device=self.y.device)

    def initial_state(self, t_start: int, generator: Generators) -> Tensor:
        sig = self.sigma_bar(t_start)
        z = self.spectral_noise(generator)
        # Observed components start at ȳ with only the noise that y does not already carry.
        missing = (sig**2 - self.noise_bar**2).clamp_min(0.0)  # inf² → 0 via clamp of −inf
        start = self.observed & (missing > 0)
        x_bar = torch.where(start, self.y_bar + missing.sqrt() * z, sig * z)
        return math.sqrt(self.alpha(t_start)) * self.svd.V(x_bar)

    def weights(self, sig_s: float) -> tuple[Tensor, Tensor, Tensor]:
        r"""Per-component ``(a, b, c)`` of ``x̄_s = x̄0 + a·(x̄_t − x̄0)/σ_t + b·(ȳ − x̄0) + c·z``,
        the three cases above in one form (computed once per step on ``[B or 1, N]``, so the
        full-size work is a handful of multiply–adds)."""
        eta, eta_b = self.eta, self.eta_b
        d = math.sqrt(1 - eta**2) * sig_s
        noise = self.noise_bar
        case3 = self.observed & (sig_s >= noise)
        case2 = self.observed & ~case3
        zero = torch.zeros_like(noise)
        a = torch.where(self.observed, zero, d)
        b = torch.where(case3, eta_b, torch.where(case2, d / self._noise_div, zero))
        missing = (sig_s**2 - eta_b**2 * torch.where(case3, noise, zero).square()).clamp_min(0.0)
        c = torch.where(case3, missing.sqrt(), eta * sig_s)
        return a, b, c

    def step(self, x_t: Tensor, t: int, s: int, generator: Generators) -> tuple[Tensor, Tensor]:
        x0, eps = self.prior.predict(x_t, t)
        # Vᵀε̂ stands for (x̄_t − x̄0)/σ_t: equal for a consistent prediction, and finite at large σ_t.
        x0_bar, eps_bar = self.svd.Vt(x0), self.svd.Vt(eps)
        gap = self.y_bar - x0_bar
        # The reported x̂0 is the update at σ_s = 0 without noise: only case 3 moves (by η_b).
        x0_corr = self.svd.V(x0_bar + self._b0 * gap)
        if s < 0:
            return x0_corr, x0_corr
        a, b, c = self.weights(self.sigma_bar(s))
        z = self.spectral_noise(generator)
        x_bar = x0_bar + a * eps_bar + b * gap + c * z
        return math.sqrt(self.alpha(s)) * self.svd.V(x_bar), x0_corr
