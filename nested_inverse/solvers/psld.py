r"""Latent posterior sampling: DPS through the decoder, and PSLD's gluing term (Rout et al., 2023)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from operators import LinearOperator
from operators.random import Generators

from ..priors import LatentPrior
from .base import ddim_step, unit_interval
from .latent import LatentInverseSolver

__all__ = ["PSLD", "LatentDPS"]


class LatentDPS(LatentInverseSolver):
    r"""DPS on a latent prior: an ancestral step in latent space, then a gradient step on the data
    misfit of the decoded estimate.

    ``z'_s = √ᾱ_s·ẑ0 + √(1−ᾱ_s−σ²)·ε̂ + σ·ξ`` (DDIM, η = 1: ancestral),
    ``z_s = z'_s − ζ·∇_{z_t} ‖y − A(D(ẑ0(z_t)))‖``,

    the gradient by autograd through the denoiser and the decoder ``D``, with the plain norm of each
    image's residual as in :class:`~nested_inverse.DPS` (so each image's step is its own). ``A``
    may be any differentiable callable on images in the model range. The paper's ζ = 1 is the
    default; ζ is a step length in latent space, so what works depends on the decoder's scale.
    The reported ``x0_hat`` is the latent ``ẑ0`` (the result at the last step).

    Shapes: ``y`` as ``A(x)``; states ``[B, c, h, w]`` (latents). One VJP per step (through the
    network and the decoder).

    Args:
        prior: a :class:`~nested_inverse.LatentPrior`; operator, y, sigma_y, image_shape: as for
            :class:`~.latent.LatentInverseSolver` (``sigma_y`` on the [0, 1] image scale, used
            only through ζ, as in DPS).
        zeta: ζ > 0 (default 1.0). eta: η of the DDIM step (default 1).

    References:
        Chung, Kim, Mccann, Klasky, Ye, "Diffusion Posterior Sampling for General Noisy Inverse
        Problems", ICLR 2023, arXiv 2209.14687 (the update); applied through a latent decoder as
        the latent-DPS baseline of Rout et al., 2023, arXiv 2307.00619.
    """

    vjp_per_step = 1

    def __init__(
        self,
        prior: LatentPrior,
        operator: LinearOperator | Callable[[Tensor], Tensor],
        y: Tensor,
        sigma_y: float = 0.0,
        zeta: float = 1.0,
        eta: float = 1.0,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__(prior, operator, y, sigma_y, image_shape=image_shape)
        if isinstance(zeta, bool) or not float(zeta) > 0:
            raise ValueError(f"`zeta` must be > 0, got {zeta!r}")
        self.zeta = float(zeta)
        self.eta = unit_interval("eta", eta)

    def misfit(self, x0: Tensor) -> Tensor:
        """``‖y − A(x̂0)‖`` per image ``[B]``, ``x̂0`` an image."""
        return (self.y - self.A(x0)).flatten(1).norm(dim=1)

    def loss(self, z0: Tensor) -> Tensor:
        """What the gradient step descends, per image ``[B]``: ``ζ‖y − A(D(ẑ0))‖``."""
        return self.zeta * self.misfit(self.decode(z0))

    def step(self, x_t: Tensor, t: int, s: int, generator: Generators) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            z = x_t.detach().requires_grad_(True)
            z0, eps = self.prior.predict(z, t)
            # Summing per-image losses gives each image its own gradient (images are independent).
            (grad,) = torch.autograd.grad(self.loss(z0).sum(), z)
        z0, eps = z0.detach(), eps.detach()
        noise = self.noise(generator) if self.eta > 0 and s >= 0 else None
        z_s = ddim_step(z0, eps, self.alpha(t), self.alpha(s), self.eta, noise) - grad
        return z_s, (z_s if s < 0 else z0)


class PSLD(LatentDPS):
    r"""Posterior Sampling with Latent Diffusion: latent DPS plus the "gluing" term that pulls
    ``ẑ0`` towards the encoding of its own data-consistent image.

    ``z'_s`` the ancestral step as in :class:`LatentDPS`, then

    ``z_s = z'_s − ∇_{z_t} [ ζ‖y − A D(ẑ0)‖ + γ‖ẑ0 − E(A†y + (I − A†A) D(ẑ0))‖ ]``,

    ``ẑ0 = ẑ0(z_t)``, ``D``/``E`` the decoder and encoder. Rout et al. write the gluing target
    with ``Aᵀy + (I − AᵀA)``, which is this for operators with orthonormal rows (inpainting
    masks); ``A†`` keeps it the projection onto ``{x : A x = y}`` for any linear
    ``A`` (super-resolution by averaging, say). Both terms are plain (unsquared) norms, as in
    the authors' released sampler and in DPS; here they are taken per image, so each image's step
    does not depend on its batch. Defaults: ζ = 1 and γ = 0.1, the measurement and gluing weights
    (``omega``, ``gamma``) the authors' script defaults to; they advise tuning both per task (their
    box-inpainting run uses 0.1 and 0.01). ``A`` must be a :class:`~operators.LinearOperator` (the
    gluing needs ``A†``).

    On a linear decoder with ``DᵀD = I`` (``E = D⁺ = Dᵀ``) the gluing term is
    ``γ‖Dᵀ A†(y − A D ẑ0)‖``: a pseudo-inverse-weighted misfit, not a copy of the DPS term — the
    exact yardstick (:class:`~nested_inverse.priors.LinearLatentPrior`) tells the two apart.

    Shapes and counts as :class:`LatentDPS` (one VJP per step).

    Args:
        prior, operator, y, sigma_y, zeta, eta: as for :class:`LatentDPS`.
        gamma: γ ≥ 0 (default 0.1); γ = 0 is latent DPS.

    Example:
        >>> import torch, operators
        >>> from nested_inverse import GaussianMixturePrior, NestedSampler
        >>> from nested_inverse.priors import LinearDecoder, LinearLatentPrior
        >>> from nested_inverse.solvers import PSLD
        >>> gmm = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None],
        ...                            event_shape=(1, 1, 2))
        >>> dec = LinearDecoder.orthonormal((1, 1, 2), (1, 2, 2), torch.Generator().manual_seed(0))
        >>> prior = LinearLatentPrior(gmm, dec)
        >>> op = operators.make("sr2", image_shape=(1, 2, 2))
        >>> y = op(prior.sample(1, torch.Generator().manual_seed(1)))
        >>> solver = PSLD(prior, op, y)
        >>> z0 = NestedSampler(solver, outer_steps=2, inner_steps=3).sample(
        ...     torch.Generator().manual_seed(2))
        >>> z0.shape, solver.decode(z0).shape  # the state is a latent; decode gives the image
        (torch.Size([1, 1, 1, 2]), torch.Size([1, 1, 2, 2]))

    References:
        Rout, Raoof, Daras, Caramanis, Dimakis, Shakkottai, "Solving Linear Inverse Problems
        Provably via Posterior Sampling with Latent Diffusion Models", NeurIPS 2023,
        arXiv 2307.00619.
        Chung, Kim, Mccann, Klasky, Ye, "Diffusion Posterior Sampling for General Noisy Inverse
        Problems", ICLR 2023, arXiv 2209.14687.
    """

    def __init__(
        self,
        prior: LatentPrior,
        operator: LinearOperator,
        y: Tensor,
        sigma_y: float = 0.0,
        zeta: float = 1.0,
        gamma: float = 0.1,
        eta: float = 1.0,
    ) -> None:
        if not isinstance(operator, LinearOperator):
            raise ValueError(f"`operator` must be an operators.LinearOperator for PSLD (its gluing "
                             f"term needs A†), got {type(operator).__name__}; use 'latent-dps' for "
                             "a non-linear forward model")
        super().__init__(prior, operator, y, sigma_y, zeta=zeta, eta=eta)
        if isinstance(gamma, bool) or not float(gamma) >= 0:
            raise ValueError(f"`gamma` must be >= 0, got {gamma!r}")
        self.gamma = float(gamma)

    def loss(self, z0: Tensor) -> Tensor:
        """``ζ‖y − A D(ẑ0)‖ + γ‖ẑ0 − E(A†y + (I − A†A) D(ẑ0))‖`` per image ``[B]``."""
        x0 = self.decode(z0)
        loss = self.zeta * self.misfit(x0)
        if self.gamma > 0:
            # A†y + (I − A†A) x = x − A†(A x − y): the nearest image that fits y exactly.
            glued = self.prior.encode(x0 - self.A_pinv(self.A(x0) - self.y))
            loss = loss + self.gamma * (z0 - glued).flatten(1).norm(dim=1)
        return loss
