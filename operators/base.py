"""The linear-operator contract every degradation follows.

A degradation is a linear map ``A: x [B, C, H, W] -> y [B, ...]``. Subclasses implement ``forward``
and, where a closed form exists, ``adjoint``, ``pinv`` and ``svd``. What a subclass leaves out is
derived: the adjoint by a vector–Jacobian product (``torch.func.vjp``), the pseudo-inverse from the
SVD when there is one and by conjugate gradients on the normal equations otherwise.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

__all__ = ["LinearOperator", "SVD", "conjugate_gradient"]


class SVD(ABC):
    r"""A singular value decomposition ``A = U diag(s) Vᵀ`` that never forms a matrix.

    Vectors in spectral space are flat, ``[B, N]`` with ``N = C·H·W``; ``Ut`` zero-pads to ``N`` so
    that spectral vectors of x and y line up component by component, and ``singulars`` is zero where
    a component is not observed. ``singulars`` may be stored in any dtype (callers cast it to their
    working dtype); the four maps follow the dtype and device of their input. Then ``A x = U(singulars · Vt(x))`` and
    ``Aᵀ y = V(singulars · Ut(y))``.

    Shapes: ``Vt: [B, C, H, W] -> [B, N]``, ``V: [B, N] -> [B, C, H, W]``,
    ``Ut: y -> [B, N]``, ``U: [B, N] -> y``, ``singulars: [B or 1, N]``.
    """

    @abstractmethod
    def Vt(self, x: Tensor) -> Tensor: ...

    @abstractmethod
    def V(self, c: Tensor) -> Tensor: ...

    @abstractmethod
    def Ut(self, y: Tensor) -> Tensor: ...

    @abstractmethod
    def U(self, c: Tensor) -> Tensor: ...

    @property
    @abstractmethod
    def singulars(self) -> Tensor: ...


def conjugate_gradient(
    apply: callable,
    b: Tensor,
    *,
    tol: float = 1e-6,
    max_iter: int = 1000,
) -> Tensor:
    r"""Solve ``M x = b`` for a symmetric positive semi-definite ``M`` given as ``apply(x)``.

    Batched over the leading dimension: each item stops when its residual satisfies
    ``‖b − M x‖ ≤ tol·‖b‖`` (or after ``max_iter`` iterations). Started at ``x = 0``, the iterates
    stay in the range of ``M``, so for a consistent singular system the result is the minimum-norm
    solution.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    dims = tuple(range(1, b.ndim))
    rr = (r * r).sum(dims, keepdim=True)
    stop = (tol * b.flatten(1).norm(dim=1)).view(-1, *([1] * (b.ndim - 1))) ** 2
    for _ in range(max_iter):
        active = rr > stop
        if not bool(active.any()):
            break
        Mp = apply(p)
        pMp = (p * Mp).sum(dims, keepdim=True)
        alpha = torch.where(active & (pMp > 0), rr / pMp.clamp_min(torch.finfo(b.dtype).tiny), 0.0)
        x = x + alpha * p
        r = r - alpha * Mp
        rr_new = (r * r).sum(dims, keepdim=True)
        beta = torch.where(active, rr_new / rr.clamp_min(torch.finfo(b.dtype).tiny), 0.0)
        p = torch.where(active, r + beta * p, p)
        rr = torch.where(active, rr_new, rr)
    return x


def _check_finite(t: object, name: str, owner: str, accepts: str) -> None:
    """``ValueError`` naming ``name`` and how many of its values are NaN or inf.

    One reduction to a scalar is ~10× cheaper than ``isfinite`` over the image; only a non-finite
    sum (NaN/inf inside, or finite values that overflow) looks closer.
    """
    if (isinstance(t, Tensor) and t.is_floating_point() and t.device.type != "meta"
            and not bool(torch.isfinite(t.sum()))):
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            raise ValueError(f"`{name}` contains {bad} NaN or inf values; {owner} accepts "
                             f"{accepts}")


def _finite_observation(pinv: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``pinv`` that first checks its ``y`` is finite (``A†`` of an inf is inf or NaN everywhere
    it reaches, silently)."""
    if getattr(pinv, "checks_finite", False):
        return pinv

    @functools.wraps(pinv)
    def checked(self: LinearOperator, y: Tensor, *args: object, **kwargs: object) -> Tensor:
        _check_finite(y, "y", f"{type(self).__name__}.pinv", "finite observations")
        return pinv(self, y, *args, **kwargs)

    checked.checks_finite = True  # type: ignore[attr-defined]
    return checked


class LinearOperator(nn.Module, ABC):
    r"""A linear degradation ``y = A x`` acting on image batches ``x: [B, C, H, W]``.

    Images are in the model range [-1, 1]; device and dtype follow the input. Subclasses must
    implement :meth:`forward`; everything else has a default:

    - :meth:`adjoint` ``Aᵀ y``: from :meth:`svd` when available, otherwise the vector–Jacobian product
      of :meth:`forward` (exact, one backward pass).
    - :meth:`pinv` ``A† y`` (minimum-norm least squares): from :meth:`svd` when available, otherwise
      conjugate gradients on the normal equations ``AᵀA x = Aᵀ y`` started at 0, which converges to
      the minimum-norm solution; the relative residual tolerance is :attr:`cg_tol` (1e-6) with at
      most :attr:`cg_max_iter` (1000) iterations.
    - :meth:`svd`: ``None`` (no decomposition known).

    Args:
        image_shape: ``(C, H, W)`` of the images the operator was built for, or ``None`` for an
            operator that accepts any size. The autograd adjoint and SVDs need it (an operator's
            behaviour depends only on its construction and its input, never on earlier calls).

    Calling the operator, ``op(x)``, checks once that ``x`` is finite (``ValueError`` naming how
    many values are NaN or inf); ``forward`` itself does not, so the solvers' inner loops and
    compositions pay for one check per call at most. :meth:`pinv` checks its ``y`` the same way,
    in every subclass that overrides it too (wrapped once, by ``__init_subclass__``).

    Example:
        >>> import torch, operators
        >>> class Crop(operators.LinearOperator):
        ...     def forward(self, x):
        ...         return x[..., 2:-2, 2:-2]
        >>> op = Crop(image_shape=(1, 8, 8))
        >>> x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
        >>> op.adjoint(op(x)).shape
        torch.Size([2, 1, 8, 8])
    """

    cg_tol: float = 1e-6
    cg_max_iter: int = 1000

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "pinv" in cls.__dict__:  # an override (a closed form) keeps the input check
            cls.pinv = _finite_observation(cls.__dict__["pinv"])

    def __init__(self, image_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        if image_shape is not None:
            image_shape = tuple(int(s) for s in image_shape)
            if len(image_shape) != 3 or min(image_shape) < 1:
                raise ValueError(
                    f"`image_shape` must be (C, H, W) with positive sizes, got {image_shape}"
                )
        self.image_shape: tuple[int, int, int] | None = image_shape

    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """``A x`` for ``x: [B, C, H, W]``."""

    def svd(self) -> SVD | None:
        """The operator's SVD, or ``None`` when no closed form is known."""
        return None

    def adjoint(self, y: Tensor) -> Tensor:
        """``Aᵀ y``: the adjoint, ``⟨A x, y⟩ = ⟨x, Aᵀ y⟩``."""
        svd = self.svd()
        if svd is not None:
            return svd.V(svd.singulars.to(y) * svd.Ut(y))
        shape = self._input_shape(y)
        x0 = torch.zeros(shape, dtype=y.dtype, device=y.device)
        _, vjp = torch.func.vjp(self.forward, x0)
        return vjp(y)[0]

    @_finite_observation
    def pinv(self, y: Tensor) -> Tensor:
        """``A† y``: the minimum-norm least-squares solution of ``A x = y``."""
        svd = self.svd()
        if svd is not None:
            s = svd.singulars.to(y)
            inv = torch.where(s > 0, 1.0 / torch.where(s > 0, s, 1.0), 0.0)
            return svd.V(inv * svd.Ut(y))
        b = self.adjoint(y)
        return conjugate_gradient(
            lambda v: self.adjoint(self.forward(v)), b, tol=self.cg_tol, max_iter=self.cg_max_iter
        )

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of ``A x`` for ``x`` of shape ``input_shape`` (``(C, H, W)`` or ``(B, C, H, W)``)."""
        shape = tuple(int(s) for s in input_shape)
        batched = len(shape) == 4
        if not batched and len(shape) != 3:
            raise ValueError(f"`input_shape` must be (C, H, W) or (B, C, H, W), got {shape}")
        probe = torch.zeros((shape[0] if batched else 1, *shape[-3:]), device="meta")
        try:
            out = self.forward(probe)
        except (NotImplementedError, RuntimeError):
            out = self.forward(torch.zeros(probe.shape))
        return tuple(out.shape) if batched else tuple(out.shape[1:])

    def _input_shape(self, y: Tensor) -> tuple[int, ...]:
        if self.image_shape is not None:
            return (y.shape[0], *self.image_shape)
        raise ValueError(
            f"{type(self).__name__} has no `image_shape`, so its autograd adjoint cannot know the "
            "input size: pass `image_shape=(C, H, W)` to the constructor or implement `adjoint`."
        )

    def __call__(self, x: Tensor) -> Tensor:
        _check_finite(x, "x", type(self).__name__, "finite images [B, C, H, W]")
        return super().__call__(x)

    def __matmul__(self, other: LinearOperator) -> LinearOperator:
        """``self @ other`` is the composition ``self ∘ other`` (:class:`operators.Compose`)."""
        if not isinstance(other, LinearOperator):
            return NotImplemented
        from .compose import Compose

        return Compose(self, other)

    def extra_repr(self) -> str:
        return "" if self.image_shape is None else f"image_shape={self.image_shape}"
