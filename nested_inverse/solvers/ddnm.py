"""DDNM: range–null-space decomposition (Wang, Yu, Zhang, 2023)."""

from __future__ import annotations

from torch import Tensor

from operators import LinearOperator
from operators.random import Generators

from ..prior import Prior
from .base import Solver, ddim_step

__all__ = ["DDNM"]


class DDNM(Solver):
    r"""Denoising Diffusion Null-space Model: keep the range of ``A†`` from ``y``, the rest from
    the prior, then take a DDIM step.

    ``x̂0 ← x̂0 − A†(A x̂0 − y)`` ``(= A†y + (I − A†A) x̂0)``;
    ``x_s = √ᾱ_s·x̂0 + √(1−ᾱ_s−σ²)·ε̂ + σ·z``, ``σ = η·√((1−ᾱ_s)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_s)``.

    Shapes: ``y`` as ``operator(x)``; states ``[B, C, H, W]``. Uses the operator only through
    ``forward`` and ``pinv``.

    Args:
        prior, operator, y, sigma_y: see :class:`Solver` (``sigma_y`` on the [0, 1] scale).
        eta: DDIM stochasticity η ∈ [0, 1] (default 0.85, as for DDIM inner samplers in Elata
            et al.).

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
    ) -> None:
        super().__init__(prior, operator, y, sigma_y)
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"`eta` must lie in [0, 1], got {eta}")
        self.eta = float(eta)

    def correct(self, x0: Tensor, t: int) -> Tensor:
        """The data-consistency correction of ``x̂0`` at timestep ``t``."""
        return x0 - self.operator.pinv(self.operator(x0) - self.y)

    def step(self, x_t: Tensor, t: int, s: int, generator: Generators) -> tuple[Tensor, Tensor]:
        x0, eps = self.prior.predict(x_t, t)
        x0 = self.correct(x0, t)
        a_t, a_s = self.alpha(t), self.alpha(s)
        noise = self.noise(generator) if self.eta > 0 and s >= 0 else None
        return ddim_step(x0, eps, a_t, a_s, self.eta, noise), x0
