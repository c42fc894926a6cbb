"""The protocol every prior follows: a noise schedule and a denoiser."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["CountingPrior", "LatentPrior", "Prior", "is_latent_prior", "wrapped_priors"]


@runtime_checkable
class Prior(Protocol):
    r"""What solvers and samplers ask of a diffusion prior, and nothing more.

    Under the variance-preserving forward process ``x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε``:

    - ``alphas_cumprod``: ``ᾱ_t`` for ``t = 0 … T−1``, float64, ``[T]``, decreasing.
    - ``predict(x_t, t) -> (x0_hat, eps_hat)``: ``x0_hat ≈ E[x0 | x_t]`` and
      ``eps_hat = (x_t − √ᾱ_t·x0_hat)/√(1−ᾱ_t)``, both shaped like ``x_t: [B, *event]``, with ``t``
      an int or an integer tensor ``[B]``.

    Any object with these two members is a prior: a diffusers UNet (:class:`DiffusionPrior`), an
    exact Gaussian mixture (:class:`GaussianMixturePrior`), a user's own network, a counting wrapper.
    """

    alphas_cumprod: Tensor

    def predict(self, x_t: Tensor, t: int | Tensor) -> tuple[Tensor, Tensor]: ...


@runtime_checkable
class LatentPrior(Prior, Protocol):
    r"""A prior over latents ``z`` whose images are ``x = decode(z)``.

    ``predict`` works on latents ``z_t: [B, c, h, w]`` (the ``Prior`` contract, in latent space);
    ``decode(z: [B, c, h, w]) -> x: [B, C, H, W]`` and ``encode(x) -> z`` map between latents and
    images in the model range [-1, 1]. Solvers for latent restoration (the operator acts on
    ``decode(z)``) and samplers that show images after every outer step need these two and nothing
    more: a diffusers ``AutoencoderKL`` (scaled by its ``scaling_factor``) or, as the exact yardstick,
    a fixed linear map over a Gaussian-mixture latent prior.
    """

    def decode(self, z: Tensor) -> Tensor: ...

    def encode(self, x: Tensor) -> Tensor: ...


def is_latent_prior(prior: Any) -> bool:
    """Whether ``prior`` works in a latent space (has ``decode`` and ``encode``: a
    :class:`LatentPrior`)."""
    return isinstance(prior, LatentPrior)


class CountingPrior:
    """Wraps a prior and counts its network evaluations.

    ``nfe`` counts ``predict`` calls per image (a call on a batch of B counts once, as the batch
    runs in parallel); ``images`` counts evaluated images (B per call). When the wrapped prior is a
    :class:`LatentPrior`, its ``decode`` and ``encode`` are forwarded unchanged (and not counted:
    they are decoder calls, not network evaluations of the diffusion prior), so the wrapper is a
    ``LatentPrior`` exactly when the prior is.

    Example:
        >>> import torch, operators
        >>> from nested_inverse import DDNM, CountingPrior, GaussianMixturePrior
        >>> prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
        ...                              event_shape=(1, 2, 2))
        >>> op = operators.make("inpaint-half", image_shape=(1, 2, 2))
        >>> y = op(prior.sample(1, torch.Generator().manual_seed(0)))
        >>> counted = CountingPrior(prior)
        >>> _ = DDNM(counted, op, y.expand(3, 1, 2, 2)).sample(steps=4)
        >>> counted.nfe, counted.images
        (4, 12)
    """

    def __init__(self, prior: Prior) -> None:
        self.prior = prior
        self.alphas_cumprod = prior.alphas_cumprod
        self.nfe = 0
        self.images = 0
        # Instance attributes, not methods: a wrapped pixel prior must not look latent.
        if isinstance(prior, LatentPrior):
            self.decode = prior.decode
            self.encode = prior.encode

    def predict(self, x_t: Tensor, t: int | Tensor) -> tuple[Tensor, Tensor]:
        self.nfe += 1
        self.images += x_t.shape[0]
        return self.prior.predict(x_t, t)


def wrapped_priors(prior: Any, depth: int = 8) -> Iterator[Any]:
    """``prior``, then the prior it wraps (a wrapper keeps it as ``.prior``: :class:`CountingPrior`,
    a tiled prior), and so on, at most ``depth`` deep (never a cycle)."""
    for _ in range(depth):
        if prior is None:
            return
        yield prior
        prior = getattr(prior, "prior", None)
