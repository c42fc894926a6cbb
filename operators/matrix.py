"""Dense matrices as operators, for small problems (the Gaussian-mixture yardstick)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import SVD, LinearOperator

__all__ = ["MatrixOperator"]


class _DenseSVD(SVD):
    def __init__(self, U: Tensor, s: Tensor, Vh: Tensor, image_shape: tuple[int, ...]) -> None:
        self._U, self._s, self._Vh, self._shape = U, s, Vh, image_shape
        self.n = Vh.shape[1]

    def _as(self, m: Tensor, like: Tensor) -> Tensor:
        return m.to(device=like.device, dtype=like.dtype)

    def Vt(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self._as(self._Vh, x).T

    def V(self, c: Tensor) -> Tensor:
        return (c @ self._as(self._Vh, c)).view(c.shape[0], *self._shape)

    def Ut(self, y: Tensor) -> Tensor:
        c = y @ self._as(self._U, y)
        return torch.nn.functional.pad(c, (0, self.n - c.shape[1]))

    def U(self, c: Tensor) -> Tensor:
        m = self._U.shape[0]
        return c[:, :m] @ self._as(self._U, c).T

    @property
    def singulars(self) -> Tensor:
        return self._s


class MatrixOperator(LinearOperator):
    r"""``y = M · vec(x)`` for a dense matrix ``M: [m, N]``, ``N = C·H·W``; ``y: [B, m]``.

    The SVD is exact (``torch.linalg.svd`` in float64, computed once). Meant for small problems
    such as the Gaussian-mixture yardstick, where ``N`` is a few dozen.

    Args:
        matrix: ``[m, N]``.
        image_shape: ``(C, H, W)`` with ``C·H·W = N``.

    Example:
        >>> import torch, operators
        >>> op = operators.MatrixOperator(torch.randn(3, 16, dtype=torch.float64), (1, 4, 4))
        >>> op(torch.zeros(2, 1, 4, 4, dtype=torch.float64)).shape
        torch.Size([2, 3])
    """

    def __init__(self, matrix: Tensor, image_shape: Sequence[int]) -> None:
        super().__init__(image_shape)
        if not isinstance(matrix, Tensor) or matrix.ndim != 2:
            raise ValueError(f"`matrix` must be a 2-D tensor [m, N], got {type(matrix).__name__} "
                             f"of shape {tuple(getattr(matrix, 'shape', ()))}")
        n = self.image_shape[0] * self.image_shape[1] * self.image_shape[2]
        if matrix.shape[1] != n:
            raise ValueError(
                f"`matrix` has {matrix.shape[1]} columns but `image_shape` {self.image_shape} has "
                f"{n} elements; they must agree"
            )
        if not torch.isfinite(matrix).all():
            raise ValueError("`matrix` contains NaN or inf")
        self.register_buffer("matrix", matrix.detach().to(torch.float64))
        m = matrix.shape[0]
        U, s, Vh = torch.linalg.svd(self.matrix, full_matrices=True)
        tol = s.max().clamp_min(1e-300) * max(m, n) * torch.finfo(torch.float64).eps
        s = torch.where(s > tol, s, 0.0)
        singulars = torch.zeros(1, n, dtype=torch.float64)
        singulars[0, : s.numel()] = s
        self.register_buffer("_U", U)
        self.register_buffer("_Vh", Vh)
        self.register_buffer("_singulars", singulars)

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.matrix.to(x).T

    def adjoint(self, y: Tensor) -> Tensor:
        return (y @ self.matrix.to(y)).view(y.shape[0], *self.image_shape)

    def svd(self) -> SVD:
        return _DenseSVD(self._U, self._singulars, self._Vh, self.image_shape)
