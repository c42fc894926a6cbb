"""Colorization: RGB to gray, ``y = Σ_c w_c x_c``, one 3 → 1 map per pixel."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .base import SVD, LinearOperator

__all__ = ["Colorization"]


class _PixelSVD(SVD):
    r"""Per pixel ``wᵀ = 1 · ‖w‖ · v₁ᵀ`` with ``v₁ = w/‖w‖`` completed to an orthonormal basis
    ``[v₁, v₂, v₃]`` of colour space. The flat vector is ``[all v₁ coefficients (observed, singular
    ‖w‖), all v₂, all v₃ (singular 0)]``, each block in raster order."""

    def __init__(self, op: Colorization) -> None:
        self._op = op

    def Vt(self, x: Tensor) -> Tensor:
        return torch.einsum("kc,bchw->bkhw", self._op._basis.to(x).T, x).flatten(1)

    def V(self, c: Tensor) -> Tensor:
        C, H, W = self._op.image_shape
        return torch.einsum("ck,bkhw->bchw", self._op._basis.to(c), c.view(-1, C, H, W))

    def Ut(self, y: Tensor) -> Tensor:
        flat = y.flatten(1)
        return torch.nn.functional.pad(flat, (0, flat.shape[1] * (self._op.image_shape[0] - 1)))

    def U(self, c: Tensor) -> Tensor:
        H, W = self._op.image_shape[1:]
        return c[:, : H * W].reshape(-1, 1, H, W)

    @property
    def singulars(self) -> Tensor:
        return self._op._singulars


class Colorization(LinearOperator):
    r"""``y[b, 0] = Σ_c w_c · x[b, c]``: colour to gray; ``x: [B, C, H, W] -> y: [B, 1, H, W]``.

    Default weights are the channel mean, ``w = (⅓, ⅓, ⅓)``, so a gray image in [-1, 1] stays in
    [-1, 1]. ``A Aᵀ = ‖w‖² I``: ``Aᵀ y = w ⊗ y`` and ``A† y = w ⊗ y / ‖w‖²`` (for the mean, the gray
    value copied into every channel). SVD per pixel: one singular value ``‖w‖`` (``1/√3`` for the
    mean) on ``H·W`` components, zero on the other ``(C − 1)·H·W``.

    Args:
        image_shape: ``(C, H, W)``, ``C = len(weights)`` (3 by default).
        weights: ``w``, one per input channel; not all zero.

    Example:
        >>> import torch, operators
        >>> op = operators.Colorization((3, 2, 2))
        >>> op(torch.tensor([0.0, 0.3, 0.6]).view(1, 3, 1, 1).expand(1, 3, 2, 2))[0, 0, 0, 0].item()
        0.30000001192092896
    """

    def __init__(self, image_shape: Sequence[int] = (3, 256, 256),
                 weights: Sequence[float] | Tensor | None = None) -> None:
        super().__init__(image_shape)
        C = self.image_shape[0]
        w = torch.full((C,), 1.0 / C, dtype=torch.float64) if weights is None else (
            torch.as_tensor(weights, dtype=torch.float64).flatten())
        if w.numel() != C:
            raise ValueError(f"colorization needs one weight per channel: `image_shape` has {C} "
                             f"channels but `weights` has {w.numel()}")
        if C < 2:
            raise ValueError(f"colorization maps C >= 2 channels to gray; `image_shape` "
                             f"{self.image_shape} has 1 channel (use 'denoise' for gray images)")
        if not torch.isfinite(w).all() or not (w != 0).any():
            raise ValueError(f"`weights` must be finite and not all zero, got {w.tolist()}")
        self.register_buffer("weights", w)
        # Orthonormal basis of colour space whose first vector is w/‖w‖ (complete QR of w).
        basis, _ = torch.linalg.qr(w[:, None], mode="complete")
        basis[:, 0] = w / w.norm()  # fix QR's sign
        H, W = self.image_shape[1:]
        singulars = torch.zeros(1, C * H * W, dtype=torch.float64)
        singulars[:, : H * W] = w.norm()
        self.register_buffer("_basis", basis, persistent=False)
        self.register_buffer("_singulars", singulars, persistent=False)

    def _check(self, x: Tensor, what: str, channels: int) -> None:
        H, W = self.image_shape[1:]
        if x.ndim != 4 or tuple(x.shape[1:]) != (channels, H, W):
            raise ValueError(f"`{what}` must have shape [B, {channels}, {H}, {W}] for colorization, "
                             f"got {list(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        self._check(x, "x", self.image_shape[0])
        return torch.einsum("c,bchw->bhw", self.weights.to(x), x)[:, None]

    def adjoint(self, y: Tensor) -> Tensor:
        self._check(y, "y", 1)
        return self.weights.to(y).view(1, -1, 1, 1) * y

    def pinv(self, y: Tensor) -> Tensor:
        return self.adjoint(y) / self.weights.to(y).square().sum()

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        shape = tuple(int(s) for s in input_shape)
        return (*shape[:-3], 1, *shape[-2:])

    def svd(self) -> SVD:
        return _PixelSVD(self)
