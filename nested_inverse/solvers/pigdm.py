"""ΠGDM: pseudoinverse-guided diffusion (Song, Vahdat, Mardani, Kautz, 2023)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from operators import LinearOperator
from operators.base import conjugate_gradient
from operators.random import Generators

from ..priors import Prior
from .base import InverseSolver, ddim_step, unit_interval

__all__ = ["PiGDM"]


class PiGDM(InverseSolver):
    r"""Pseudoinverse-guided diffusion: a DDIM step plus a vector–Jacobian product that pulls the
    denoised estimate toward consistency with ``y`` through the pseudoinverse.

    ``h = r_t²·Aᵀ(r_t² AAᵀ + σ_y² I)⁻¹(y − A x̂0)``, ``r_t² = 1 − ᾱ_t``
    (``= A†(y − A x̂0)`` when ``σ_y = 0``),
    ``x_s = √ᾱ_s·x̂0 + √(1−ᾱ_s−σ²)·ε̂ + σ·z + w·√ᾱ_t·(∂x̂0/∂x_t)ᵀ h``
    (the DDIM step of :func:`ddim_step` plus the guidance; one VJP through the network).

    ``(∂x̂0/∂x_t)ᵀ Aᵀ(r_t² AAᵀ + σ_y² I)⁻¹(y − A x̂0)`` is the paper's score of its likelihood
    approximation ``p(y | x_t) ≈ N(A x̂0, r_t² AAᵀ + σ_y² I)``; the paper writes the noiseless
    guidance with ``A†`` and weights it by ``√ᾱ_t`` in its DDIM algorithm. Taking ``h`` as
    ``r_t²`` times the noisy middle factor makes the noisy form tend to the noiseless one as
    ``σ_y → 0``. The ``√ᾱ_t`` weight keeps the step bounded where ``∂x̂0/∂x_t`` of a real network
    carries its ``1/√ᾱ_t`` error amplification (large ``t``). For data ``N(μ, I)``
    (``∂x̂0/∂x_t = √ᾱ_t·I``) this converges to the exact posterior as steps grow
    (tests/test_solvers_posterior.py). ``h`` is diagonal in the SVD when the operator has one
    (``h = V·(s/(s² + σ_y²/r_t²))·Uᵀr``) and is solved by conjugate gradients otherwise. The
    reported ``x0_hat`` is ``x̂0 + w·√ᾱ_t·(∂x̂0/∂x_t)ᵀ h``, the last step's result.

    Shapes: ``y`` as ``operator(x)``; states ``[B, C, H, W]``. Reports one VJP per step.

    Args:
        prior, operator, y, sigma_y: see :class:`InverseSolver` (``sigma_y`` on the [0, 1] image scale;
            ``σ_y`` above is ``2·sigma_y``, the model range).
        eta: DDIM stochasticity η ∈ [0, 1] (default 0.85, as for the other inner solvers).
        guidance_scale: ``w``, a multiplier on the guidance (default 1).
        cg_tol, cg_max_iter: conjugate-gradient settings for noisy ``y`` without an SVD.

    Example:
        >>> import torch, operators
        >>> from nested_inverse import PiGDM, GaussianMixturePrior
        >>> prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
        ...                              event_shape=(1, 2, 2))
        >>> op = operators.make("inpaint-half", image_shape=(1, 2, 2))
        >>> y = op(prior.sample(1, torch.Generator().manual_seed(0)))
        >>> x0 = PiGDM(prior, op, y).sample(steps=20, generator=torch.Generator().manual_seed(1))
        >>> torch.allclose(op(x0), y)  # noiseless inpainting: the observed half is matched
        True

    References:
        Song, Vahdat, Mardani, Kautz, "Pseudoinverse-Guided Diffusion Models for Inverse
        Problems", ICLR 2023 (openreview.net/forum?id=9_gsMA8MRKQ).
    """

    vjp_per_step = 1

    def __init__(
        self,
        prior: Prior,
        operator: LinearOperator,
        y: Tensor,
        sigma_y: float = 0.0,
        eta: float = 0.85,
        guidance_scale: float = 1.0,
        cg_tol: float = 1e-6,
        cg_max_iter: int = 200,
    ) -> None:
        super().__init__(prior, operator, y, sigma_y)
        eta = unit_interval("eta", eta)
        if not guidance_scale >= 0:
            raise ValueError(f"`guidance_scale` must be >= 0, got {guidance_scale}")
        self.eta = eta
        self.guidance_scale = float(guidance_scale)
        self.cg_tol, self.cg_max_iter = float(cg_tol), int(cg_max_iter)
        self.svd = operator.svd()
        if self.svd is not None:
            self._s = self.svd.singulars.to(dtype=y.dtype, device=y.device)

    def pseudoinverse_residual(self, x0: Tensor, t: int) -> Tensor:
        r"""``h = Aᵀ(AAᵀ + σ_y²/r_t²·I)⁻¹(y − A x̂0)``, ``A†(y − A x̂0)`` when ``σ_y = 0``."""
        resid = self.y - self.A(x0)
        if self.sigma == 0:
            return self.A_pinv(resid)
        lam = self.sigma**2 / (1 - self.alpha(t))
        if self.svd is not None:
            s = self._s
            return self.svd.V(s / (s**2 + lam) * self.svd.Ut(resid))
        op = self.operator
        u = conjugate_gradient(lambda v: self.A(op.adjoint(v)) + lam * v, resid, tol=self.cg_tol,
                               max_iter=self.cg_max_iter)
        return op.adjoint(u)

    def step(self, x_t: Tensor, t: int, s: int, generator: Generators) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            x = x_t.detach().requires_grad_(True)
            x0, eps = self.prior.predict(x, t)
            h = self.pseudoinverse_residual(x0.detach(), t)
            # Images are independent through the network, so one VJP serves the whole batch.
            (vjp,) = torch.autograd.grad(x0, x, grad_outputs=h)
        x0, eps = x0.detach(), eps.detach()
        a_t, a_s = self.alpha(t), self.alpha(s)
        guidance = (self.guidance_scale * math.sqrt(a_t)) * vjp
        noise = self.noise(generator) if self.eta > 0 and s >= 0 else None
        x_s = ddim_step(x0, eps, a_t, a_s, self.eta, noise) + guidance
        return x_s, (x_s if s < 0 else x0 + guidance)
