r"""Inverse problems solved in a latent space: the state is a latent ``z_t``, the data live in images.

A latent solver runs the same loop as the pixel solvers (:class:`~.base.Solver`), on latents
``z_t: [B, c, h, w]`` of a :class:`~nested_inverse.LatentPrior`; the observation is still
``y = A x0 + 2σ_y·n`` on images in the model range [-1, 1], with ``x0 = decode(z0)``. Its states
(``SolverState.x_t`` and ``x0_hat``) are latents, so :class:`~nested_inverse.NestedSampler` nests
it unchanged (outer DDIM steps in latent space) and front ends decode what they show.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from operators import LinearOperator

from ..priors import LatentPrior, Prior
from ..priors.protocol import is_latent_prior  # noqa: F401  (its old home, still imported from here)
from .base import InverseSolver

__all__ = ["LatentInverseSolver"]


class LatentInverseSolver(InverseSolver):
    r"""A solver for ``y = A·decode(z0) + 2σ_y·n`` whose state is the latent ``z_t``.

    Before the first evaluation the estimate is ``encode(A†y)`` (``encode`` of mid-grey for a
    non-linear ``operator``), a latent ``[B, c, h, w]``: it sets the shape, dtype and device of
    the states, as ``A†y`` does for a pixel solver. :meth:`decode` maps states to images;
    :meth:`project` makes an edited latent consistent with noiseless linear data through the
    image space. Everything a sampler reports from such a solver is a latent, nested results
    (``AnytimeResult.image``) and guidance ``Edit`` images included; ``restore()`` decodes.

    Args:
        prior: a :class:`~nested_inverse.LatentPrior` (``predict`` on latents, ``decode``,
            ``encode``); a pixel prior is refused.
        operator, y, sigma_y, image_shape: as for :class:`~.base.InverseSolver` — on images
            (``sigma_y`` on the [0, 1] image scale, ``2·sigma_y`` in the model range).

    Raises:
        ValueError: for a pixel prior, or when ``decode`` does not give images of the shape the
            operator takes.
    """

    def __init__(
        self,
        prior: LatentPrior,
        operator: LinearOperator | Callable[[Tensor], Tensor],
        y: Tensor,
        sigma_y: float = 0.0,
        *,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        if not is_latent_prior(prior):
            raise ValueError(
                f"`prior` must be a LatentPrior (with `decode` and `encode`) for the latent solver "
                f"{type(self).__name__}, got {type(prior).__name__}; use a pixel solver (ddrm, "
                "ddnm, pigdm, dps) with a pixel prior")
        super().__init__(prior, operator, y, sigma_y, image_shape=image_shape)
        self.pixel_estimate = self.initial_estimate  # A†y (or mid-grey), an image
        shape = tuple(self.pixel_estimate.shape)
        try:
            with torch.no_grad():
                latent = prior.encode(self.pixel_estimate)
                decoded = prior.decode(latent)
        except (ValueError, RuntimeError) as err:  # say which two things disagree
            raise ValueError(
                f"`prior` ({type(prior).__name__}) does not fit `operator`: it cannot encode the "
                f"operator's images of shape {shape} ({err}); accepted: a prior whose decoder "
                "gives the images the operator takes") from err
        if tuple(decoded.shape) != shape:
            raise ValueError(
                f"`prior` decodes latents {tuple(latent.shape)} to images of shape "
                f"{tuple(decoded.shape)}, but `operator` acts on images of shape "
                f"{tuple(self.pixel_estimate.shape)}; accepted: a decoder whose images fit the "
                "operator")
        self.initial_estimate = latent.to(dtype=y.dtype, device=y.device)

    def decode(self, z: Tensor) -> Tensor:
        """Images ``[B, C, H, W]`` in the model range from latents ``z``."""
        return self.prior.decode(z)

    def project(self, z: Tensor) -> Tensor:
        """``encode(x − A†(A x − y))`` with ``x = decode(z)`` for noiseless linear problems; ``z``
        itself otherwise."""
        if self.sigma_y > 0 or not isinstance(self.operator, LinearOperator):
            return z
        with torch.no_grad():
            return self.prior.encode(super().project(self.decode(z))).to(z.dtype)
