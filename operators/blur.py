"""Blur degradations ``y = k * x`` (2-D convolution, same size as ``x``) and blur kernels.

Two boundaries, chosen by the kernel:

- separable (rank-1) kernels, ``k = k_h k_wᵀ``: **zero** boundary. Each axis is a ``[H, H]``
  (``[W, W]``) Toeplitz matrix, so the SVD is exact and costs two small matrix products
  (:class:`operators.Separable`).
- any other kernel (motion blur, a user's kernel): **circular** boundary, applied by FFT. The SVD is
  the real Fourier basis with singular values ``|k̂|``; the pseudo-inverse divides by ``k̂`` where
  ``|k̂| > rcond·max|k̂|`` and is zero elsewhere.

The kernels are written here rather than taken from kornia (no longer a dependency, issue 10):
``kornia.filters.get_gaussian_kernel1d`` equals :func:`gaussian_kernel` to the last bit in float64
(measured for σ = 0.7, 1, 3), but importing kornia costs about 1.9 s, ten times this package;
``get_motion_kernel2d`` draws a straight line, not the random camera-shake trajectory of
:func:`motion_kernel`; and resizing for super-resolution needs the exact 1-D matrices whose SVD the
solvers use, which a resize function does not expose. Conjugate gradients stay batched torch
(``operators.base``), which scipy's CPU/numpy solvers are not, so scipy is not a dependency either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import SVD, LinearOperator
from .separable import Separable

__all__ = [
    "Blur", "CircularBlur", "SeparableBlur", "gaussian_kernel", "motion_kernel", "toeplitz_matrix",
    "uniform_kernel",
]


def _check_kernel(kernel: Tensor) -> Tensor:
    if not isinstance(kernel, Tensor):
        kernel = torch.as_tensor(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"`kernel` must be a 2-D tensor [kh, kw], got shape {list(kernel.shape)}")
    if kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
        raise ValueError(f"`kernel` must have odd sizes so that it has a centre pixel, got "
                         f"{list(kernel.shape)}; pad it with a row/column of zeros")
    if not torch.isfinite(kernel).all():
        raise ValueError("`kernel` contains NaN or inf")
    return kernel.detach().to(torch.float64)


def _odd_size(size: int | None, default: int) -> int:
    size = default if size is None else size
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"`size` must be a positive odd integer, got {size!r}")
    return size


def gaussian_kernel(sigma: float, size: int | None = None) -> Tensor:
    r"""1-D Gaussian ``g[t] ∝ exp(−t²/2σ²)``, ``t = −r … r``, summing to 1; float64 ``[size]``.
    Default size ``2·⌈3σ⌉ + 1``."""
    if not sigma > 0:
        raise ValueError(f"`sigma` must be > 0 (pixels), got {sigma}")
    size = _odd_size(size, 2 * math.ceil(3 * sigma) + 1)
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()


def uniform_kernel(size: int = 9) -> Tensor:
    """1-D box ``[size]`` of ``1/size``, float64."""
    size = _odd_size(size, 9)
    return torch.full((size,), 1.0 / size, dtype=torch.float64)


def toeplitz_matrix(kernel: Tensor, size: int) -> Tensor:
    r"""``T[i, j] = k[i − j + r]`` (``r`` the centre): "same"-size 1-D convolution with zero
    boundary, ``[size, size]`` float64."""
    k = kernel.to(torch.float64)
    r = k.numel() // 2
    i = torch.arange(size)
    offset = i[:, None] - i[None, :] + r
    inside = (offset >= 0) & (offset < k.numel())
    return torch.where(inside, k[offset.clamp(0, k.numel() - 1)], 0.0)


def motion_kernel(
    size: int = 61, intensity: float = 0.5, generator: torch.Generator | None = None
) -> Tensor:
    r"""A random camera-shake kernel ``[size, size]`` float64, summing to 1.

    A point moves with inertia: its velocity is perturbed each step by Gaussian kicks of scale
    ``intensity``, occasionally jerked in a new direction (probability ``0.05·intensity``), and
    pulled weakly back to the start; the path is centred, scaled to span
    ``(0.4 + 0.5·intensity)`` of the kernel width and splatted bilinearly onto the grid. Same
    generator state, same kernel. The same idea (random camera trajectories of tunable intensity)
    as the kernels of DPS and DiffPIR, but not their generator: kernels differ for equal seeds.

    References:
        Boracchi, Foi. "Modeling the Performance of Image Restoration From Motion Blur." IEEE Trans.
        Image Processing 21(8), 2012.
        Chung et al. "Diffusion Posterior Sampling for General Noisy Inverse Problems." 2023.
        https://arxiv.org/abs/2209.14687
    """
    size = _odd_size(size, 61)
    if not 0 <= intensity <= 1:
        raise ValueError(f"`intensity` must be in [0, 1], got {intensity}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    steps = 1000
    kicks = torch.randn(steps, 2, generator=generator, dtype=torch.float64)
    jerks = torch.rand(steps, generator=generator, dtype=torch.float64) < 0.05 * intensity
    angle = 2 * math.pi * torch.rand(1, generator=generator, dtype=torch.float64)
    velocity = torch.cat([torch.cos(angle), torch.sin(angle)])
    position = torch.zeros(2, dtype=torch.float64)
    path = torch.empty(steps, 2, dtype=torch.float64)
    for n in range(steps):
        if jerks[n]:
            velocity = velocity.norm() * kicks[n] / kicks[n].norm().clamp_min(1e-12)
        velocity = velocity + 0.3 * intensity * kicks[n] - 0.002 * position
        velocity = velocity / velocity.norm().clamp_min(1e-12)  # constant speed: even exposure
        position = position + velocity
        path[n] = position
    path = path - path.mean(0)
    radius = (size - 1) / 2 * (0.4 + 0.5 * intensity)
    path = path * (radius / path.abs().max().clamp_min(1e-12)) + (size - 1) / 2
    # Bilinear splat of every path sample.
    base = path.floor().clamp(0, size - 2)
    frac = path - base
    kernel = torch.zeros(size * size, dtype=torch.float64)
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        w = (frac[:, 0] if dy else 1 - frac[:, 0]) * (frac[:, 1] if dx else 1 - frac[:, 1])
        idx = (base[:, 0].long() + dy) * size + base[:, 1].long() + dx
        kernel.index_add_(0, idx, w.clamp_min(0))
    kernel = kernel.view(size, size)
    return kernel / kernel.sum()


class SeparableBlur(Separable):
    r"""``y[b, c] = T_h · x[b, c] · T_wᵀ`` for a separable kernel ``k = k_h k_wᵀ``, zero boundary.

    ``x, y: [B, C, H, W]``; ``T`` is :func:`toeplitz_matrix` of the 1-D factor ("same" size, zeros
    outside the image). Exact Kronecker SVD (see :class:`operators.Separable`).
    """

    boundary = "zero"

    def __init__(self, kernel_h: Tensor, kernel_w: Tensor, image_shape: Sequence[int],
                 rcond: float = 0.0) -> None:
        C, H, W = (int(s) for s in image_shape)
        super().__init__(toeplitz_matrix(kernel_h, H), toeplitz_matrix(kernel_w, W), channels=C,
                         rcond=rcond)
        self.register_buffer("kernel", torch.outer(kernel_h.to(torch.float64),
                                                   kernel_w.to(torch.float64)))


class _FourierSVD(SVD):
    r"""SVD of a circular convolution in the real orthonormal Fourier basis.

    ``Vᵀ`` maps an image to the real and imaginary parts of its orthonormal 2-D DFT (each frequency
    with a distinct conjugate partner gives √2·Re and √2·Im, a self-conjugate one only Re), which
    preserves the norm; ``U`` is the same after the phase of ``k̂``, and the singular values are
    ``|k̂|`` (twice for a pair), sorted in decreasing order.
    """

    def __init__(self, op: CircularBlur) -> None:
        self._op = op

    def _spectrum_to_flat(self, Z: Tensor) -> Tensor:
        op = self._op
        rows, cols, part = op._rows.to(Z.device), op._cols.to(Z.device), op._part.to(Z.device)
        picked = Z[:, :, rows, cols]
        flat = torch.where(part.bool(), picked.imag, picked.real) * op._weight.to(Z.real)
        return flat.flatten(1)[:, op._order.to(Z.device)]

    def _flat_to_spectrum(self, c: Tensor) -> Tensor:
        op = self._op
        C, H, W = op.image_shape
        grid = torch.empty_like(c)
        grid[:, op._order.to(c.device)] = c
        grid = grid.view(c.shape[0], C, -1) / op._weight.to(c)
        dtype = torch.complex128 if c.dtype == torch.float64 else torch.complex64
        Z = torch.zeros(c.shape[0], C, H, W // 2 + 1, dtype=dtype, device=c.device)
        part = op._part.to(c.device).bool()
        rows, cols = op._rows.to(c.device), op._cols.to(c.device)
        Z.real[:, :, rows[~part], cols[~part]] = grid[..., ~part]
        Z.imag[:, :, rows[part], cols[part]] = grid[..., part]
        # Conjugate partners stored in the half spectrum (column 0 and the Nyquist column).
        Z[:, :, op._mirror_dst_r.to(c.device), op._mirror_dst_c.to(c.device)] = Z[
            :, :, op._mirror_src_r.to(c.device), op._mirror_src_c.to(c.device)].conj()
        return Z

    def Vt(self, x: Tensor) -> Tensor:
        return self._spectrum_to_flat(torch.fft.rfft2(x, norm="ortho"))

    def V(self, c: Tensor) -> Tensor:
        H, W = self._op.image_shape[1:]
        return torch.fft.irfft2(self._flat_to_spectrum(c), s=(H, W), norm="ortho")

    def Ut(self, y: Tensor) -> Tensor:
        phase = self._op._phase.to(y.device)
        phase = phase.to(torch.complex128 if y.dtype == torch.float64 else torch.complex64)
        return self._spectrum_to_flat(torch.fft.rfft2(y, norm="ortho") * phase.conj())

    def U(self, c: Tensor) -> Tensor:
        H, W = self._op.image_shape[1:]
        Z = self._flat_to_spectrum(c)
        return torch.fft.irfft2(Z * self._op._phase.to(Z), s=(H, W), norm="ortho")

    @property
    def singulars(self) -> Tensor:
        return self._op._singulars


class CircularBlur(LinearOperator):
    r"""``y = k ⊛ x``: 2-D circular convolution by FFT, ``y = F⁻¹(k̂ · F x)``; ``x, y: [B, C, H, W]``.

    Boundary: circular (periodic), so ``A`` is diagonalised by the DFT: ``Aᵀ y = F⁻¹(conj(k̂)·F y)``
    and ``A† y = F⁻¹(F y / k̂)`` on frequencies with ``|k̂| > rcond·max|k̂|``, zero elsewhere
    (``rcond`` at least ``max(H, W)·ε`` of the working dtype, the default of ``torch.linalg.pinv``;
    float64 for the SVD). The kernel's centre pixel sits at offset 0; a
    kernel larger than the image wraps around. The SVD uses the real Fourier basis
    (:class:`_FourierSVD`).
    """

    boundary = "circular"

    def __init__(self, kernel: Tensor, image_shape: Sequence[int], rcond: float = 0.0) -> None:
        super().__init__(image_shape)
        kernel = _check_kernel(kernel)
        if rcond < 0:
            raise ValueError(f"`rcond` must be >= 0, got {rcond}")
        self.rcond = float(rcond)
        C, H, W = self.image_shape
        kh, kw = kernel.shape
        rows = (torch.arange(kh) - kh // 2) % H
        cols = (torch.arange(kw) - kw // 2) % W
        padded = torch.zeros(H, W, dtype=torch.float64)
        padded.index_put_((rows[:, None].expand(kh, kw), cols[None, :].expand(kh, kw)), kernel,
                          accumulate=True)
        transfer = torch.fft.rfft2(padded)
        self.register_buffer("kernel", kernel)
        self.register_buffer("_transfer", transfer, persistent=False)
        self._build_svd(transfer, self._observed(torch.float64))

    def _observed(self, dtype: torch.dtype) -> Tensor:
        """Frequencies with ``|k̂| > max(rcond, max(H, W)·ε_dtype)·max|k̂|``."""
        magnitude = self._transfer.abs()
        eps = torch.finfo(dtype).eps
        return magnitude > max(self.rcond, max(self.image_shape[1:]) * eps) * magnitude.max()

    def _build_svd(self, transfer: Tensor, observed: Tensor) -> None:
        # Independent real coordinates of a real image's half spectrum [H, W//2 + 1]: in the columns
        # that are their own conjugate (0 and, for even W, W/2) only rows 0 … H/2 are free; entries
        # whose conjugate is themselves carry only a real part.
        C, H, W = self.image_shape
        Wr = W // 2 + 1
        r = torch.arange(H)[:, None].expand(H, Wr)
        c = torch.arange(Wr)[None, :].expand(H, Wr)
        self_col = (c == 0) | ((W % 2 == 0) & (c == W // 2))
        self_conj = self_col & ((r == 0) | ((H % 2 == 0) & (r == H // 2)))
        free = ~self_col | (r <= H // 2)
        rows, cols, part, weight = [], [], [], []
        for is_imag in (0, 1):
            keep = free & ~(self_conj if is_imag else torch.zeros_like(self_conj))
            rows.append(r[keep])
            cols.append(c[keep])
            part.append(torch.full((int(keep.sum()),), is_imag))
            weight.append(torch.where(self_conj[keep], torch.tensor(1.0, dtype=torch.float64),
                                      torch.tensor(2.0, dtype=torch.float64).sqrt()))
        rows, cols, part, weight = (torch.cat(t) for t in (rows, cols, part, weight))
        assert rows.numel() == H * W, "real Fourier basis must have H·W coordinates"
        mirror = self_col & ~self_conj & (r > H // 2)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)
        self.register_buffer("_part", part, persistent=False)
        self.register_buffer("_weight", weight, persistent=False)
        self.register_buffer("_mirror_dst_r", r[mirror], persistent=False)
        self.register_buffer("_mirror_dst_c", c[mirror], persistent=False)
        self.register_buffer("_mirror_src_r", (H - r[mirror]) % H, persistent=False)
        self.register_buffer("_mirror_src_c", c[mirror], persistent=False)
        magnitude = torch.where(observed, transfer.abs(), 0.0)
        grid = magnitude[rows, cols].expand(C, -1).reshape(-1)
        order = torch.sort(grid, descending=True, stable=True).indices
        phase = torch.where(observed, transfer / torch.where(observed, transfer.abs(), 1.0), 1.0)
        self.register_buffer("_phase", phase, persistent=False)
        self.register_buffer("_order", order, persistent=False)
        self.register_buffer("_singulars", grid[order][None], persistent=False)

    def _check(self, x: Tensor, what: str) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.image_shape:
            C, H, W = self.image_shape
            raise ValueError(f"`{what}` must have shape [B, {C}, {H}, {W}] for CircularBlur, got "
                             f"{list(x.shape)}")

    def _filter(self, x: Tensor, transfer: Tensor) -> Tensor:
        X = torch.fft.rfft2(x)
        return torch.fft.irfft2(X * transfer.to(X), s=x.shape[-2:])

    def forward(self, x: Tensor) -> Tensor:
        self._check(x, "x")
        return self._filter(x, self._transfer)

    def adjoint(self, y: Tensor) -> Tensor:
        self._check(y, "y")
        return self._filter(y, self._transfer.conj())

    def pinv(self, y: Tensor) -> Tensor:
        self._check(y, "y")
        # The cut-off follows y's dtype (as in torch.linalg.pinv): float32 rounding errors must not
        # be divided by |k̂| near 1e-14.
        observed = self._observed(y.dtype)
        inverse = torch.where(observed, 1.0 / torch.where(observed, self._transfer, 1.0), 0.0)
        return self._filter(y, inverse)

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(s) for s in input_shape)

    def svd(self) -> SVD:
        return _FourierSVD(self)

    def extra_repr(self) -> str:
        return f"kernel={list(self.kernel.shape)}, image_shape={self.image_shape}, boundary=circular"


class Blur(LinearOperator):
    r"""``y = k * x``, "same"-size 2-D convolution by any odd-sized kernel; ``x, y: [B, C, H, W]``.

    A rank-1 kernel (detected by the SVD of the ``[kh, kw]`` kernel, ``s₂ ≤ 1e-10·s₁``) is split
    into ``k_h k_wᵀ`` and applied with a **zero** boundary (:class:`SeparableBlur`); any other kernel
    with a **circular** boundary by FFT (:class:`CircularBlur`). Both have an exact SVD; the chosen
    boundary is :attr:`boundary`. Pass ``boundary="circular"`` to force the FFT path.

    Args:
        kernel: ``[kh, kw]`` with odd ``kh``, ``kw``.
        image_shape: ``(C, H, W)``, or ``None`` to accept any size (the per-size matrices or
            transfer functions are then built on first use).
        rcond: singular values below ``rcond·s_max`` count as zero in the SVD and the pseudo-inverse.
        boundary: ``None`` (by kernel rank), ``"zero"`` (separable kernels only) or ``"circular"``.

    Example:
        >>> import torch, operators
        >>> op = operators.Blur(torch.ones(3, 3) / 9)
        >>> y = op(torch.ones(1, 1, 8, 8, dtype=torch.float64))  # corner sees 4 of 9 taps
        >>> op.boundary, round(y[0, 0, 0, 0].item() * 9, 6)
        ('zero', 4.0)
    """

    def __init__(self, kernel: Tensor, image_shape: Sequence[int] | None = None,
                 rcond: float = 0.0, boundary: str | None = None) -> None:
        super().__init__(image_shape)
        kernel = _check_kernel(kernel)
        if boundary not in (None, "zero", "circular"):
            raise ValueError(f"`boundary` must be None, 'zero' or 'circular', got {boundary!r}")
        if rcond < 0:
            raise ValueError(f"`rcond` must be >= 0, got {rcond}")
        U, s, Vh = torch.linalg.svd(kernel)
        separable = bool(s.numel() < 2 or s[1] <= 1e-10 * s[0])
        if boundary == "zero" and not separable:
            raise ValueError("`boundary='zero'` needs a separable (rank-1) kernel; this kernel has "
                             f"singular values {s[:3].tolist()}…; use boundary='circular'")
        self.boundary: str = "zero" if separable and boundary != "circular" else "circular"
        self.rcond = float(rcond)
        self.register_buffer("kernel", kernel)
        root = s[0].sqrt()
        self._factors = (U[:, 0] * root, Vh[0] * root)
        # One implementation per image size (the Toeplitz matrices and the transfer function depend
        # on it); built on first use when no image_shape is given.
        self._impls: dict[tuple[int, ...], LinearOperator] = {}
        if self.image_shape is not None:
            self.impl = self._impl(self.image_shape)

    def _impl(self, shape: Sequence[int]) -> LinearOperator:
        shape = tuple(int(v) for v in shape)
        if self.image_shape is not None and shape != self.image_shape:
            C, H, W = self.image_shape
            raise ValueError(f"input of shape [B, {', '.join(map(str, shape))}] does not fit this "
                             f"Blur, built for [B, {C}, {H}, {W}]")
        if shape not in self._impls:
            self._impls[shape] = (SeparableBlur(*self._factors, shape, self.rcond)
                                  if self.boundary == "zero" else
                                  CircularBlur(self.kernel, shape, self.rcond))
        return self._impls[shape]

    def _for(self, t: Tensor, what: str) -> LinearOperator:
        if t.ndim != 4:
            raise ValueError(f"`{what}` must be [B, C, H, W], got shape {list(t.shape)}")
        return self._impl(t.shape[1:])

    def forward(self, x: Tensor) -> Tensor:
        return self._for(x, "x").forward(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return self._for(y, "y").adjoint(y)

    def pinv(self, y: Tensor) -> Tensor:
        return self._for(y, "y").pinv(y)

    def svd(self) -> SVD:
        if self.image_shape is None:
            raise ValueError("Blur without `image_shape` has no SVD (it depends on the image "
                             "size): pass `image_shape=(C, H, W)`")
        return self._impl(self.image_shape).svd()

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(v) for v in input_shape)

    def extra_repr(self) -> str:
        return f"kernel={list(self.kernel.shape)}, boundary={self.boundary}"

