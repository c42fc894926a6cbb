"""Super-resolution degradations: box averaging and bicubic downsampling by an integer factor."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .separable import Separable

__all__ = ["BicubicDownsample", "BoxDownsample", "bicubic_matrix", "box_matrix"]


def _check_factor(factor: int, size: int, axis: str) -> None:
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"`factor` must be a positive integer, got {factor!r}")
    if size % factor:
        raise ValueError(
            f"image {axis} {size} is not divisible by the super-resolution `factor` {factor}; "
            f"crop or pad the image to a multiple of {factor}"
        )


def box_matrix(size: int, factor: int) -> Tensor:
    r"""``[size/f, size]`` float64 matrix averaging each run of ``f`` samples: ``I ⊗ 1ᵀ/f``."""
    _check_factor(factor, size, "size")
    return torch.kron(torch.eye(size // factor, dtype=torch.float64),
                      torch.full((1, factor), 1.0 / factor, dtype=torch.float64))


def _keys(t: Tensor, a: float = -0.5) -> Tensor:
    """Keys' cubic convolution kernel (Keys, 1981), support ``|t| < 2``."""
    t = t.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def bicubic_matrix(size: int, factor: int, a: float = -0.5) -> Tensor:
    r"""``[size/f, size]`` float64 matrix of antialiased bicubic downsampling by ``f``.

    Output sample ``i`` sits at input coordinate ``u = (i + ½)·f − ½`` (pixel centres aligned, as in
    MATLAB ``imresize`` and PIL); its weights are ``k((j − u)/f)`` for Keys' kernel ``k`` with
    parameter ``a``, stretched by ``f`` to antialias, normalised to sum to 1. Boundary: symmetric
    (half-sample) reflection, ``j = −1 ↦ 0``, ``j = size ↦ size − 1``, folded into the matrix.
    """
    _check_factor(factor, size, "size")
    m = size // factor
    matrix = torch.zeros(m, size, dtype=torch.float64)
    for i in range(m):
        u = (i + 0.5) * factor - 0.5
        taps = torch.arange(math.floor(u - 2 * factor), math.ceil(u + 2 * factor) + 1)
        weights = _keys((taps.to(torch.float64) - u) / factor, a)
        weights = weights / weights.sum()
        # Reflect repeatedly so that even a tiny image with a large factor folds in range.
        period = 2 * size
        j = taps % period
        j = torch.where(j >= size, period - 1 - j, j)
        matrix[i].index_add_(0, j, weights)
    return matrix


class BoxDownsample(Separable):
    r"""``y[b, c, i, j] = mean of x[b, c]`` over the ``f × f`` block ``(i, j)``: box averaging.

    ``x: [B, C, H, W] -> y: [B, C, H/f, W/f]``; ``H`` and ``W`` must be divisible by ``f``.
    ``A Aᵀ = I / f²``, so ``Aᵀ y`` is nearest-neighbour upsampling divided by ``f²`` and
    ``A† y = f² Aᵀ y`` is nearest-neighbour upsampling. Singular values: ``1/f`` on ``H·W·C/f²``
    components, zero elsewhere (exact Kronecker SVD, see :class:`operators.Separable`).

    Args:
        factor: ``f``.
        image_shape: ``(C, H, W)``.

    Example:
        >>> import torch, operators
        >>> op = operators.BoxDownsample(4, (3, 8, 16))
        >>> op(torch.ones(2, 3, 8, 16)).shape
        torch.Size([2, 3, 2, 4])
    """

    def __init__(self, factor: int, image_shape: Sequence[int]) -> None:
        C, H, W = (int(s) for s in image_shape)
        _check_factor(factor, H, "height")
        _check_factor(factor, W, "width")
        super().__init__(box_matrix(H, factor), box_matrix(W, factor), channels=C)
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        self._check(x, "x", self.image_shape)
        return F.avg_pool2d(x, self.factor)

    def adjoint(self, y: Tensor) -> Tensor:
        f = self.factor
        C, H, W = self.image_shape
        self._check(y, "y", (C, H // f, W // f))
        return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1) / (f * f)

    def pinv(self, y: Tensor) -> Tensor:
        f = self.factor
        return self.adjoint(y) * (f * f)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, image_shape={self.image_shape}"


class BicubicDownsample(Separable):
    r"""``y[b, c] = D_h · x[b, c] · D_wᵀ``: antialiased bicubic downsampling by ``f``.

    ``x: [B, C, H, W] -> y: [B, C, H/f, W/f]``. ``D`` is :func:`bicubic_matrix` (Keys' kernel,
    ``a = −0.5``, stretched by ``f``, symmetric-reflection boundary). The SVD is the exact
    Kronecker product of the two 1-D SVDs.

    Args:
        factor: ``f``.
        image_shape: ``(C, H, W)``.
        a: Keys' kernel parameter.

    References:
        Keys. "Cubic convolution interpolation for digital image processing." IEEE Trans. ASSP
        29(6), 1981.

    Example:
        >>> import torch, operators
        >>> op = operators.BicubicDownsample(2, (1, 8, 8))
        >>> ones = torch.ones(1, 1, 8, 8, dtype=torch.float64)
        >>> torch.allclose(op(ones), ones[..., :4, :4])  # rows of the matrix sum to 1
        True
    """

    def __init__(self, factor: int, image_shape: Sequence[int], a: float = -0.5) -> None:
        C, H, W = (int(s) for s in image_shape)
        _check_factor(factor, H, "height")
        _check_factor(factor, W, "width")
        super().__init__(bicubic_matrix(H, factor, a), bicubic_matrix(W, factor, a), channels=C)
        self.factor = factor
        self.a = a

    def extra_repr(self) -> str:
        return f"factor={self.factor}, a={self.a}, image_shape={self.image_shape}"
