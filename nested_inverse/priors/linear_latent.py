r"""An exact latent prior: a Gaussian mixture over latents seen through a fixed linear decoder.

``z0 ~ Σ_k w_k N(μ_k, Σ_k)`` in latent space and ``x = D z`` in image space. Every law a latent
restoration touches is then a Gaussian mixture in closed form — the image prior, the latent
posterior of ``y = A D z0 + 2σ_y·n``, and its push-forward to images — so latent solvers (latent
DPS, PSLD) and nested diffusion over them can be judged against the exact posterior, as the pixel
solvers are against :class:`~nested_inverse.GaussianMixturePrior`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

import operators
from operators import LinearOperator
from operators.random import Generators

from .gmm import GaussianMixturePrior

__all__ = ["LinearDecoder", "LinearLatentPrior"]


class LinearDecoder:
    r"""``decode(z) = D·vec(z)``, ``encode(x) = D⁺·vec(x)``: a fixed linear map latents → images.

    ``D: [n, d]`` with ``n = prod(image_shape)``, ``d = prod(latent_shape)``; ``D⁺`` is its
    Moore–Penrose pseudo-inverse, so ``encode(decode(z)) = z`` when ``D`` has full column rank and
    ``encode`` is the least-squares latent of any image. Both maps are differentiable (autograd
    goes through them, as latent DPS needs) and follow the input's dtype and device; the matrices
    are kept in float64.

    Args:
        matrix: ``D`` ``[n, d]``.
        latent_shape: ``(c, h, w)`` of one latent; image_shape: ``(C, H, W)`` of one image.

    Example:
        >>> import torch
        >>> from nested_inverse.priors import LinearDecoder
        >>> dec = LinearDecoder.orthonormal((1, 1, 2), (1, 2, 2), torch.Generator().manual_seed(0))
        >>> z = torch.tensor([[[[0.5, -1.0]]]], dtype=torch.float64)
        >>> dec.decode(z).shape, torch.allclose(dec.encode(dec.decode(z)), z)
        (torch.Size([1, 1, 2, 2]), True)
    """

    def __init__(self, matrix: Tensor, latent_shape: Sequence[int], image_shape: Sequence[int]):
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.image_shape = tuple(int(s) for s in image_shape)
        n, d = math.prod(self.image_shape), math.prod(self.latent_shape)
        if not isinstance(matrix, Tensor) or tuple(matrix.shape) != (n, d):
            raise ValueError(
                f"`matrix` must be a tensor [n, d] = [{n}, {d}] for image_shape {self.image_shape} "
                f"and latent_shape {self.latent_shape}, got "
                f"{tuple(getattr(matrix, 'shape', ())) or type(matrix).__name__}")
        if not bool(torch.isfinite(matrix).all()):
            raise ValueError("`matrix` contains NaN or inf")
        self.matrix = matrix.detach().to(torch.float64)
        self.pinv = torch.linalg.pinv(self.matrix)

    @classmethod
    def orthonormal(cls, latent_shape: Sequence[int], image_shape: Sequence[int],
                    generator: torch.Generator | None = None) -> LinearDecoder:
        """A random ``D`` with orthonormal columns (``DᵀD = I``; needs ``n ≥ d``), by QR."""
        n, d = math.prod(image_shape), math.prod(latent_shape)
        if n < d:
            raise ValueError(f"orthonormal columns need image size n >= latent size d, got "
                             f"n={n} (image_shape {tuple(image_shape)}), d={d}")
        q, r = torch.linalg.qr(torch.randn(n, d, generator=generator, dtype=torch.float64))
        return cls(q * torch.sign(torch.diagonal(r)), latent_shape, image_shape)

    @property
    def full_row_rank(self) -> bool:
        """Whether ``D Dᵀ`` is invertible (``n ≤ d`` and ``D`` onto), so ``D Σ Dᵀ`` is too."""
        n, d = self.matrix.shape
        return n <= d and int(torch.linalg.matrix_rank(self.matrix)) == n

    def decode(self, z: Tensor) -> Tensor:
        """``x = D z``: ``[B, *latent_shape] → [B, *image_shape]``."""
        return _apply(self.matrix, z, self.latent_shape, self.image_shape, "z")

    def encode(self, x: Tensor) -> Tensor:
        """``z = D⁺ x``: ``[B, *image_shape] → [B, *latent_shape]``."""
        return _apply(self.pinv, x, self.image_shape, self.latent_shape, "x")


def _apply(matrix: Tensor, v: Tensor, shape_in: tuple[int, ...], shape_out: tuple[int, ...],
           name: str) -> Tensor:
    if not isinstance(v, Tensor) or tuple(v.shape[1:]) != shape_in:
        raise ValueError(f"`{name}` must have shape [B, {', '.join(map(str, shape_in))}], got "
                         f"{tuple(getattr(v, 'shape', ())) or type(v).__name__}")
    m = matrix.to(dtype=v.dtype, device=v.device)
    return (v.reshape(v.shape[0], -1) @ m.T).reshape(v.shape[0], *shape_out)


class LinearLatentPrior:
    r"""A :class:`~nested_inverse.LatentPrior`: a Gaussian mixture over latents, a linear decoder.

    ``z0 ~ Σ_k w_k N(μ_k, Σ_k)``, ``x0 = D z0``. ``predict(z_t, t)`` is the latent mixture's exact
    denoiser; ``decode``/``encode`` are the decoder's. In image space:

    - :meth:`image_prior`: ``x0 ~ Σ_k w_k N(D μ_k, D Σ_k Dᵀ + j·I)``, the induced prior (``j`` a
      tiny jitter where ``D Σ_k Dᵀ`` is singular, see there);
    - :meth:`posterior`: ``p(z0 | y)`` for ``y = A D z0 + 2σ_y·n`` — a linear-Gaussian observation
      of ``z0`` with matrix ``H = A D``, so again a mixture (closed form, per component mean
      ``μ + K(y − Hμ)``, covariance ``Σ − K H Σ``);
    - :meth:`image_posterior`: that posterior pushed through ``D``, the exact ``p(x0 | y)``.

    Args:
        latent_gmm: the latent prior; its ``event_shape`` must be ``decoder.latent_shape``.
        decoder: a :class:`LinearDecoder`.

    Example:
        >>> import torch, operators
        >>> from nested_inverse.priors import GaussianMixturePrior, LinearDecoder, LinearLatentPrior
        >>> from nested_inverse.priors import LatentPrior
        >>> gmm = GaussianMixturePrior(torch.ones(2), torch.tensor([[1.0, 0.0], [-1.0, 0.0]]),
        ...                            0.1 * torch.eye(2).repeat(2, 1, 1), event_shape=(1, 1, 2))
        >>> dec = LinearDecoder.orthonormal((1, 1, 2), (1, 2, 2), torch.Generator().manual_seed(0))
        >>> prior = LinearLatentPrior(gmm, dec)
        >>> isinstance(prior, LatentPrior), prior.image_prior().event_shape
        (True, (1, 2, 2))
        >>> op = operators.make("sr2", image_shape=(1, 2, 2))
        >>> y = op(prior.decode(gmm.sample(1, torch.Generator().manual_seed(1))))
        >>> prior.posterior(op, y).means.shape  # [K, d]: one Gaussian per latent component
        torch.Size([2, 2])
    """

    def __init__(self, latent_gmm: GaussianMixturePrior, decoder: LinearDecoder) -> None:
        if not isinstance(latent_gmm, GaussianMixturePrior):
            raise ValueError(f"`latent_gmm` must be a GaussianMixturePrior, got "
                             f"{type(latent_gmm).__name__}")
        if not isinstance(decoder, LinearDecoder):
            raise ValueError(f"`decoder` must be a LinearDecoder, got {type(decoder).__name__}")
        if tuple(latent_gmm.event_shape) != decoder.latent_shape:
            raise ValueError(f"`decoder` takes latents of shape {decoder.latent_shape} but "
                             f"`latent_gmm` has event_shape {tuple(latent_gmm.event_shape)}; they "
                             "must agree")
        self.latent_gmm = latent_gmm
        self.decoder = decoder
        self.alphas_cumprod = latent_gmm.alphas_cumprod
        self.latent_shape = decoder.latent_shape
        self.image_shape = decoder.image_shape

    def predict(self, z_t: Tensor, t: int | Tensor) -> tuple[Tensor, Tensor]:
        """The latent mixture's exact ``(E[z0 | z_t], ε̂)``, shaped like ``z_t``."""
        return self.latent_gmm.predict(z_t, t)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder.decode(z)

    def encode(self, x: Tensor) -> Tensor:
        return self.decoder.encode(x)

    def sample(self, n: int, generator: Generators = None) -> Tensor:
        """``n`` prior images ``decode(z0)``, ``[n, *image_shape]``, float64."""
        return self.decode(self.latent_gmm.sample(n, generator))

    # --------------------------------------------------------------------------- image space
    def image_prior(self, jitter: float | None = None) -> GaussianMixturePrior:
        r"""The induced image prior ``Σ_k w_k N(D μ_k, D Σ_k Dᵀ + j·I)`` on ``image_shape``.

        ``D Σ_k Dᵀ`` has rank at most ``d``; when ``D`` is not of full row rank (the usual case,
        ``n > d``) it is singular and the mixture's Cholesky-based denoiser and likelihoods need
        ``j > 0``. ``jitter=None`` picks ``j = 0`` for a full-row-rank ``D`` and otherwise
        ``j = 1e-10·max_k tr(D Σ_k Dᵀ)/n``, far below the smallest noise level of the schedule
        (``1 − ᾱ_0 = 1e-4``), so the denoiser is that of ``D z`` to about ``j/(1 − ᾱ_0)``
        relative error.
        """
        D = self.decoder.matrix
        covs = D @ self.latent_gmm.covs @ D.T
        n = D.shape[0]
        if jitter is None:
            jitter = 0.0 if self.decoder.full_row_rank else (
                1e-10 * float(covs.diagonal(dim1=-2, dim2=-1).sum(-1).max()) / n)
        if not jitter >= 0:
            raise ValueError(f"`jitter` must be >= 0, got {jitter}")
        covs = covs + jitter * torch.eye(n, dtype=torch.float64)
        return GaussianMixturePrior(self.latent_gmm.weights, self.latent_gmm.means @ D.T, covs,
                                    self.image_shape, self.alphas_cumprod)

    # ----------------------------------------------------------------------------- posteriors
    def latent_operator(self, op: LinearOperator) -> operators.MatrixOperator:
        """``H = A D`` as a :class:`~operators.MatrixOperator` on latents: ``z ↦ vec(A D z)``."""
        D = self.decoder.matrix
        basis = D.T.reshape(D.shape[1], *self.image_shape)  # column j of D as an image
        with torch.no_grad():
            H = op(basis.to(dtype=torch.float64)).reshape(D.shape[1], -1).T
        return operators.MatrixOperator(H.contiguous(), self.latent_shape)

    def posterior(self, op: LinearOperator, y: Tensor, sigma_y: float = 0.0) -> GaussianMixturePrior:
        r"""The exact latent posterior ``p(z0 | y)`` for ``y = A D z0 + 2σ_y·n`` (batch 1), a mixture.

        ``sigma_y`` on the [0, 1] image scale (``2σ_y`` in the model range), as everywhere.
        """
        H = self.latent_operator(op)
        return self.latent_gmm.posterior(H, y.reshape(y.shape[0], -1), sigma_y)

    def image_posterior(self, op: LinearOperator, y: Tensor,
                        sigma_y: float = 0.0) -> GaussianMixturePrior:
        r"""``p(x0 | y)`` as :meth:`posterior` pushed through ``D``: means ``D μ'_k``, covariances
        ``D Σ'_k Dᵀ`` (singular for ``n > d``: sample it, do not evaluate densities)."""
        post = self.posterior(op, y, sigma_y)
        D = self.decoder.matrix
        return GaussianMixturePrior(post.weights, post.means @ D.T, D @ post.covs @ D.T,
                                    self.image_shape, self.alphas_cumprod)

    def posterior_sample(self, op: LinearOperator, y: Tensor, sigma_y: float = 0.0,
                         generator: Generators = None, n: int = 1) -> Tensor:
        """``n`` exact posterior images ``decode(z0)``, ``z0 ~ p(z0 | y)``: ``[n, *image_shape]``."""
        H = self.latent_operator(op)
        z0 = self.latent_gmm.posterior_sample(H, y.reshape(y.shape[0], -1), sigma_y,
                                              generator=generator, n=n)
        return self.decode(z0)
