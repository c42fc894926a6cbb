"""Observation noise models and the degradation ``y = noise(A x)``.

Noise levels are on the [0, 1] image scale (0.05 = 5 % of the range); inside the library images
live in [-1, 1], so a Gaussian ``sigma`` becomes a standard deviation of ``2·sigma`` there.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import LinearOperator
from .random import Generators, randn

__all__ = ["Degradation", "GaussianNoise", "PoissonNoise"]


class GaussianNoise(nn.Module):
    r"""``y ← y + 2σ·ε``, ``ε ~ N(0, I)``: additive white Gaussian noise.

    ``sigma`` is on the [0, 1] image scale (0.05 = 5 % of the range); on the library's [-1, 1]
    scale the standard deviation is ``2·sigma`` (:attr:`sigma_model`). Noise is drawn with
    :func:`operators.random.randn`: one generator for the batch, or one per image so that an image's noise
    does not depend on its batch.

    Example:
        >>> import torch, operators
        >>> noise = operators.GaussianNoise(0.05)
        >>> y = noise(torch.zeros(1, 1, 100, 100), torch.Generator().manual_seed(0))
        >>> round(y.std().item(), 1)
        0.1
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        if not (isinstance(sigma, (int, float)) and 0 <= sigma < float("inf")):
            raise ValueError(f"`sigma` must be a finite number >= 0 on the [0, 1] image scale "
                             f"(0.05 = 5 %), got {sigma!r}")
        self.sigma = float(sigma)

    @property
    def sigma_model(self) -> float:
        """Standard deviation on the [-1, 1] scale, ``2·sigma``."""
        return 2.0 * self.sigma

    def forward(self, y: Tensor, generator: Generators = None) -> Tensor:
        if self.sigma == 0:
            return y
        return y + self.sigma_model * randn(y.shape, generator, dtype=y.dtype, device=y.device)

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class PoissonNoise(nn.Module):
    r"""``y₀₁ = Poisson(λ · x₀₁) / λ`` on the [0, 1] scale, ``x₀₁ = (y + 1)/2``; returned in [-1, 1].

    ``rate`` ``λ`` is the photon count of a white pixel: the variance on the [0, 1] scale is
    ``x₀₁/λ``, so larger rates mean less noise. Negative intensities (possible after e.g. bicubic
    overshoot) are clamped to 0 before sampling. ``generator``: one ``torch.Generator`` or one per
    image.

    Example:
        >>> import torch, operators
        >>> noise = operators.PoissonNoise(100.0)
        >>> y = noise(torch.zeros(1, 1, 4, 4, dtype=torch.float64), torch.Generator().manual_seed(0))
        >>> counts = (y + 1) / 2 * 100  # photon counts around 50
        >>> bool(torch.allclose(counts, counts.round()))
        True
    """

    def __init__(self, rate: float) -> None:
        super().__init__()
        if not (isinstance(rate, (int, float)) and 0 < rate < float("inf")):
            raise ValueError(f"`rate` must be a finite number > 0 (photons per white pixel), "
                             f"got {rate!r}")
        self.rate = float(rate)

    def forward(self, y: Tensor, generator: Generators = None) -> Tensor:
        lam = ((y + 1) / 2).clamp_min(0) * self.rate
        if generator is None or isinstance(generator, torch.Generator):
            device = generator.device if generator is not None else lam.device
            counts = torch.poisson(lam.to(device), generator=generator).to(lam.device)
        else:
            generator = list(generator)
            if len(generator) != y.shape[0]:
                raise ValueError(f"`generator` is a list of {len(generator)} generators but the batch "
                                 f"has {y.shape[0]} items; pass one per item, one, or None")
            counts = torch.cat([torch.poisson(lam[i:i + 1].to(g.device), generator=g).to(lam.device)
                                for i, g in enumerate(generator)])
        return counts / self.rate * 2 - 1

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class Degradation(nn.Module):
    r"""``y = noise(A x)``: an operator and an optional noise model, ``x: [B, C, H, W]`` in [-1, 1].

    Inputs are checked once here for NaN/inf (not in every ``forward`` of the operator, which
    solvers call many times per step). When the operator marks where its output can be nonzero
    (``range_mask()``, e.g. inpainting in masked-image form), noise is kept only there, so ``y`` stays
    exactly 0 where nothing is observed.

    Args:
        operator: ``A``.
        noise: a noise model such as :class:`GaussianNoise` or :class:`PoissonNoise`, or ``None``.

    Example:
        >>> import torch, operators
        >>> degrade = operators.Degradation(operators.make("sr4", image_shape=(3, 16, 16)),
        ...                                 operators.GaussianNoise(0.05))
        >>> degrade(torch.zeros(2, 3, 16, 16), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 4, 4])
    """

    def __init__(self, operator: LinearOperator, noise: nn.Module | None = None) -> None:
        super().__init__()
        if not isinstance(operator, LinearOperator):
            raise ValueError(f"`operator` must be an operators.LinearOperator, got "
                             f"{type(operator).__name__}")
        self.operator = operator
        self.noise = noise

    @property
    def sigma_y(self) -> float:
        """Gaussian noise level on the [0, 1] scale (0 without Gaussian noise)."""
        return self.noise.sigma if isinstance(self.noise, GaussianNoise) else 0.0

    def forward(self, x: Tensor, generator: Generators = None) -> Tensor:
        if not isinstance(x, Tensor) or x.ndim != 4:
            raise ValueError(f"`x` must be a tensor [B, C, H, W], got "
                             f"{type(x).__name__} of shape {list(getattr(x, 'shape', []))}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"`x` contains {int((~torch.isfinite(x)).sum())} NaN or inf values")
        y = self.operator(x)
        if self.noise is None:
            return y
        noisy = self.noise(y, generator)
        range_mask = getattr(self.operator, "range_mask", None)
        mask = range_mask() if range_mask is not None else None
        return noisy if mask is None else torch.where(mask.to(noisy.device), noisy, y)
