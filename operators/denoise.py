"""Denoising: the identity operator, ``y = x`` (noise comes from the noise model)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import SVD, LinearOperator

__all__ = ["Identity"]


class _IdentitySVD(SVD):
    def __init__(self, shape: tuple[int, int, int]) -> None:
        self._shape = shape

    def Vt(self, x: Tensor) -> Tensor:
        return x.flatten(1)

    def V(self, c: Tensor) -> Tensor:
        return c.view(c.shape[0], *self._shape)

    Ut = Vt
    U = V

    @property
    def singulars(self) -> Tensor:
        C, H, W = self._shape
        return torch.ones(1, C * H * W, dtype=torch.float64)


class Identity(LinearOperator):
    r"""``y = x``, ``x, y: [B, C, H, W]``; ``Aᵀ = A† = I``, all singular values 1.

    Args:
        image_shape: ``(C, H, W)``; only needed for :meth:`svd`.

    Example:
        >>> import torch, operators
        >>> operators.Identity((1, 2, 2)).pinv(torch.ones(1, 1, 2, 2)).sum().item()
        4.0
    """

    def __init__(self, image_shape: Sequence[int] | None = None) -> None:
        super().__init__(image_shape)

    def forward(self, x: Tensor) -> Tensor:
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        return y

    def pinv(self, y: Tensor) -> Tensor:
        return y

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(s) for s in input_shape)

    def svd(self) -> SVD:
        if self.image_shape is None:
            raise ValueError("Identity needs `image_shape=(C, H, W)` for its SVD")
        return _IdentitySVD(self.image_shape)
