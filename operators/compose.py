"""Composition of operators, ``A = A₂ ∘ A₁``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .base import LinearOperator

__all__ = ["Compose"]


class Compose(LinearOperator):
    r"""``A x = A₂(A₁ x)``; ``Aᵀ y = A₁ᵀ(A₂ᵀ y)``; ``A†`` by conjugate gradients (no SVD in general).

    Shapes are those of the parts: ``x`` is what ``A₁`` takes, ``y`` what ``A₂`` returns. ``A₂ @ A₁``
    builds the same. For a projection (inpainting) after another operator, noise added by
    :class:`operators.Degradation` is kept only where ``A₂`` observes.

    Args:
        outer: ``A₂``, applied last.
        inner: ``A₁``, applied first.

    Example:
        >>> import torch, operators
        >>> sr = operators.BoxDownsample(2, (1, 4, 4))
        >>> mask = operators.Inpainting(torch.tensor([[1, 0], [1, 1]]))
        >>> (mask @ sr)(torch.ones(1, 1, 4, 4)).flatten().tolist()
        [1.0, 0.0, 1.0, 1.0]
    """

    def __init__(self, outer: LinearOperator, inner: LinearOperator) -> None:
        for name, op in (("outer", outer), ("inner", inner)):
            if not isinstance(op, LinearOperator):
                raise ValueError(f"`{name}` must be an operators.LinearOperator, got "
                                 f"{type(op).__name__}")
        super().__init__(inner.image_shape)
        self.outer = outer
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.outer.forward(self.inner.forward(x))  # checked once, by the caller

    def adjoint(self, y: Tensor) -> Tensor:
        return self.inner.adjoint(self.outer.adjoint(y))

    def range_mask(self) -> Tensor | None:
        mask = getattr(self.outer, "range_mask", None)
        return mask() if mask is not None else None

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        return self.outer.output_shape(self.inner.output_shape(input_shape))
