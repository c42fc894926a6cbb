"""Separable operators ``y[c] = A_h · x[c] · A_wᵀ`` and their Kronecker-product SVD.

Box and bicubic downsampling and separable blurs are all of this form: one small matrix per axis.
The SVD of ``I_C ⊗ A_h ⊗ A_w`` is the Kronecker product of the two 1-D SVDs, so nothing of size
``N × N`` is ever built: the 1-D factors are ``[H, H]`` and ``[W, W]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import SVD, LinearOperator

__all__ = ["Separable"]


def _full_svd(matrix: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``matrix = U diag(s) Vᵀ`` with ``U: [m, m]``, ``V: [n, n]`` and ``s`` zero-padded to ``n``."""
    U, s, Vh = torch.linalg.svd(matrix.to(torch.float64), full_matrices=True)
    padded = torch.zeros(matrix.shape[1], dtype=torch.float64)
    padded[: s.numel()] = s
    return U, padded, Vh.T


class _KroneckerSVD(SVD):
    r"""SVD of ``I_C ⊗ A_h ⊗ A_w`` from the SVDs of ``A_h: [m, H]`` and ``A_w: [n, W]`` (``m ≤ H``,
    ``n ≤ W``).

    Spectral coefficients live on a ``[C, H, W]`` grid, ``c[k, i, j] = (V_hᵀ x[k] V_w)[i, j]`` with
    singular value ``s_h[i]·s_w[j]``; the flat ``[B, N]`` vector lists the grid in order of
    decreasing singular value (``order``), so observed components come first. ``Ut`` places
    ``U_hᵀ y U_w: [C, m, n]`` in the top-left corner of the grid, which is where ``s_h`` and ``s_w``
    are nonzero, and zero elsewhere.
    """

    def __init__(self, op: Separable) -> None:
        self._op = op

    def _unflatten(self, c: Tensor) -> Tensor:
        C, H, W = self._op.image_shape
        grid = torch.empty_like(c)
        grid[:, self._op._order.to(c.device)] = c
        return grid.view(c.shape[0], C, H, W)

    def _flatten(self, grid: Tensor) -> Tensor:
        return grid.flatten(1)[:, self._op._order.to(grid.device)]

    def Vt(self, x: Tensor) -> Tensor:
        op = self._op
        return self._flatten(op._Vh.to(x).T @ x @ op._Vw.to(x))

    def V(self, c: Tensor) -> Tensor:
        op = self._op
        return op._Vh.to(c) @ self._unflatten(c) @ op._Vw.to(c).T

    def Ut(self, y: Tensor) -> Tensor:
        op = self._op
        C, H, W = op.image_shape
        core = op._Uh.to(y).T @ y @ op._Uw.to(y)
        grid = torch.nn.functional.pad(core, (0, W - core.shape[-1], 0, H - core.shape[-2]))
        return self._flatten(grid)

    def U(self, c: Tensor) -> Tensor:
        op = self._op
        m, n = op._Uh.shape[0], op._Uw.shape[0]
        core = self._unflatten(c)[..., :m, :n]
        return op._Uh.to(c) @ core @ op._Uw.to(c).T

    @property
    def singulars(self) -> Tensor:
        return self._op._singulars


class Separable(LinearOperator):
    r"""``y[b, c] = A_h · x[b, c] · A_wᵀ`` for small matrices ``A_h: [m, H]``, ``A_w: [n, W]``.

    ``x: [B, C, H, W] -> y: [B, C, m, n]`` with ``m ≤ H`` and ``n ≤ W``. The SVD is exact: the 1-D
    SVDs are computed once in float64 and combined as a Kronecker product (see
    :class:`_KroneckerSVD`). Singular values below ``rcond·s_max`` are treated as zero in the SVD
    (``rcond`` is never smaller than ``max(H, W)·ε_float64``, the numerical rank); :meth:`pinv`
    also drops those below ``max(H, W)·ε`` of the working dtype.

    Args:
        matrix_h: ``A_h``, ``[m, H]``.
        matrix_w: ``A_w``, ``[n, W]``.
        channels: ``C``.
        rcond: relative cut-off for singular values.

    References:
        Kawar, Elad, Ermon, Song. "Denoising Diffusion Restoration Models." 2022.
        https://arxiv.org/abs/2201.11793 (Kronecker SVDs of separable degradations)

    Example:
        >>> import torch, operators
        >>> op = operators.Separable(torch.eye(4)[:2], torch.eye(6), channels=1)
        >>> op(torch.ones(1, 1, 4, 6)).shape
        torch.Size([1, 1, 2, 6])
    """

    def __init__(
        self, matrix_h: Tensor, matrix_w: Tensor, channels: int, rcond: float = 0.0
    ) -> None:
        for name, m in (("matrix_h", matrix_h), ("matrix_w", matrix_w)):
            if not isinstance(m, Tensor) or m.ndim != 2:
                raise ValueError(f"`{name}` must be a 2-D tensor, got {type(m).__name__} of shape "
                                 f"{tuple(getattr(m, 'shape', ()))}")
            if m.shape[0] > m.shape[1]:
                raise ValueError(f"`{name}` must have no more rows than columns, got {tuple(m.shape)}")
            if not torch.isfinite(m).all():
                raise ValueError(f"`{name}` contains NaN or inf")
        if rcond < 0:
            raise ValueError(f"`rcond` must be >= 0, got {rcond}")
        super().__init__((channels, matrix_h.shape[1], matrix_w.shape[1]))
        self.rcond = float(rcond)
        self.register_buffer("matrix_h", matrix_h.detach().to(torch.float64))
        self.register_buffer("matrix_w", matrix_w.detach().to(torch.float64))
        Uh, sh, Vh = _full_svd(self.matrix_h)
        Uw, sw, Vw = _full_svd(self.matrix_w)
        C, H, W = self.image_shape
        grid = (sh[:, None] * sw[None, :]).expand(C, H, W).reshape(-1)
        cut = max(self.rcond, max(H, W) * torch.finfo(torch.float64).eps) * grid.max()
        grid = torch.where(grid > cut, grid, 0.0)
        # Stable descending sort: observed components first, ties in grid order.
        order = torch.sort(grid, descending=True, stable=True).indices
        for name, t in (("_Uh", Uh), ("_Vh", Vh), ("_Uw", Uw), ("_Vw", Vw)):
            self.register_buffer(name, t, persistent=False)
        self.register_buffer("_order", order, persistent=False)
        self.register_buffer("_singulars", grid[order][None], persistent=False)

    def _check(self, x: Tensor, what: str, shape: tuple[int, int, int]) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"`{what}` must have shape [B, {shape[0]}, {shape[1]}, {shape[2]}] for "
                             f"{type(self).__name__}, got {list(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        self._check(x, "x", self.image_shape)
        return self.matrix_h.to(x) @ x @ self.matrix_w.to(x).T

    def adjoint(self, y: Tensor) -> Tensor:
        C = self.image_shape[0]
        self._check(y, "y", (C, self.matrix_h.shape[0], self.matrix_w.shape[0]))
        return self.matrix_h.to(y).T @ y @ self.matrix_w.to(y)

    def pinv(self, y: Tensor) -> Tensor:
        r"""``A† y`` from the SVD, ignoring singular values below
        ``max(rcond, max(H, W)·ε)·s_max`` with ``ε`` the machine epsilon of ``y``'s dtype (the
        default of ``torch.linalg.pinv``): in float32 a blur's tiny singular values would otherwise
        amplify rounding errors by up to 1e14."""
        C, H, W = self.image_shape
        self._check(y, "y", (C, self.matrix_h.shape[0], self.matrix_w.shape[0]))
        svd = self.svd()
        s = self._singulars.to(y)
        cut = max(self.rcond, max(H, W) * torch.finfo(y.dtype).eps) * s.max()
        inv = torch.where(s > cut, 1.0 / torch.where(s > cut, s, 1.0), 0.0)
        return svd.V(inv * svd.Ut(y))

    def svd(self) -> SVD:
        return _KroneckerSVD(self)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(s) for s in input_shape)
        if len(shape) not in (3, 4) or shape[-3:] != self.image_shape:
            raise ValueError(f"`input_shape` must be (C, H, W) or (B, C, H, W) with (C, H, W) = "
                             f"{self.image_shape}, got {shape}")
        return (*shape[:-2], self.matrix_h.shape[0], self.matrix_w.shape[0])

    def extra_repr(self) -> str:
        return (f"image_shape={self.image_shape}, output=({self.matrix_h.shape[0]}, "
                f"{self.matrix_w.shape[0]})")
