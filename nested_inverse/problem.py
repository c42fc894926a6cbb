r"""An inverse problem ``y = A x + σ_y·n``, built once, owning the [0, 1] ↔ model-range conversion.

Users see images in [0, 1]; priors and solvers work in the model range [-1, 1]. For a linear ``A``,
``A(2x − 1) = 2·A x − A 1``, so an observation ``y01`` of ``x01`` becomes ``y = 2·y01 − A 1`` in the
model range. ``A 1`` is not 1 in general (zero-padded blur borders, masked pixels), which is why
the conversion needs the operator and lives here, in one place, for every front end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from operators import Degradation, GaussianNoise, LinearOperator
from operators.random import Generators

from .imageio import from_model_range, to_model_range, to_tensor

__all__ = ["Problem"]


class Problem:
    r"""``y = A x + σ_y·n`` with ``x`` and ``y`` given on the [0, 1] scale.

    ``y`` (model range) ``= 2·y01 − A 1``, and zero wherever ``range_mask`` says ``y`` carries no
    information (pixels an inpainting mask hides: whatever a file holds there is not data).
    ``sigma_y`` is on the [0, 1] scale (0.05 = 5 % of the range), ``sigma = 2·sigma_y`` in the
    model range.

    Args:
        y: the observation in [0, 1]: a tensor ``[B, C', h, w]`` (or ``[C', h, w]``), a PIL image
            or a channels-last numpy array, shaped like ``operator``'s output. Tensors keep their
            dtype and device.
        operator: the linear forward operator ``A``.
        sigma_y: observation noise std on the [0, 1] scale, ``>= 0``.
        range_mask: where ``y`` is observed (bool, broadcastable to ``y``); default: the
            operator's own ``range_mask()`` when it has one, else everywhere.

    Attributes:
        y: the observation in the model range ``[B, C', h, w]``; y01: the same on [0, 1].
        image_shape: ``(B, C, H, W)`` of the images to restore.

    Example:
        >>> import torch, operators
        >>> from nested_inverse import Problem
        >>> op = operators.make("inpaint-half", image_shape=(1, 2, 2))
        >>> problem = Problem(torch.full((1, 1, 2, 2), 0.75), op)
        >>> problem.y  # 2·0.75 − 1 where observed, 0 where the mask hides the pixel
        tensor([[[[0.5000, 0.0000],
                  [0.5000, 0.0000]]]])
        >>> problem.image_shape
        (1, 1, 2, 2)
    """

    def __init__(
        self,
        y: Any,
        operator: LinearOperator,
        sigma_y: float = 0.0,
        range_mask: Tensor | None = None,
    ) -> None:
        if not isinstance(operator, LinearOperator):
            raise ValueError(f"`operator` must be an operators.LinearOperator, got "
                             f"{type(operator).__name__}")
        y01 = to_tensor(y)
        if not bool(torch.isfinite(y01).all()):
            raise ValueError(f"`y` contains {int((~torch.isfinite(y01)).sum())} NaN or inf values; "
                             "expected an observation in [0, 1]")
        _check_range(y01, sigma_y)
        operator = operator.to(y01.device)
        shape = _image_shape(operator, y01)
        ones = _unit_response(operator, shape, y01)
        with torch.no_grad():
            y_model = 2 * y01 - ones
            if range_mask is None and hasattr(operator, "range_mask"):
                range_mask = operator.range_mask()
            if range_mask is not None:
                y_model = torch.where(range_mask.to(y_model.device), y_model,
                                      torch.zeros_like(y_model))
        self._init(y_model, y01, operator, sigma_y, shape)

    @classmethod
    def degrade(
        cls,
        x: Tensor,
        operator: LinearOperator,
        sigma_y: float = 0.0,
        generator: Generators = None,
    ) -> Problem:
        r"""Synthesise an observation of the clean ``x: [B, C, H, W]`` in [0, 1]:
        ``y = A(2x − 1) + 2σ_y·n`` in the model range (noise only where ``A`` observes), with
        ``generator`` (one per image for batch-independent noise)."""
        if not isinstance(x, Tensor) or x.ndim != 4:
            raise ValueError(f"`x` must be a tensor [B, C, H, W] in [0, 1], got "
                             f"{type(x).__name__} of shape {list(getattr(x, 'shape', []))}")
        noise = GaussianNoise(sigma_y) if sigma_y > 0 else None
        with torch.no_grad():
            y_model = Degradation(operator, noise)(to_model_range(x), generator=generator)
        ones = _unit_response(operator, tuple(x.shape), x)
        problem = cls.__new__(cls)
        problem._init(y_model, (y_model + ones) / 2, operator, sigma_y, tuple(x.shape))
        return problem

    def _init(self, y: Tensor, y01: Tensor, operator: LinearOperator, sigma_y: float,
              shape: tuple[int, ...]) -> None:
        sigma_y = float(sigma_y)
        if not sigma_y >= 0 or sigma_y == float("inf"):
            raise ValueError(f"`sigma_y`={sigma_y} must be a finite number >= 0 on the [0, 1] image "
                             "scale (0.05 = 5 % of the range)")
        self.y, self.y01, self.operator, self.sigma_y = y, y01, operator, sigma_y
        self.image_shape: tuple[int, ...] = shape

    @property
    def sigma(self) -> float:
        """Observation noise std in the model range: ``2·sigma_y``."""
        return 2.0 * self.sigma_y

    def to(self, device: torch.device | str | None = None,
           dtype: torch.dtype | None = None) -> Problem:
        """The same problem with ``y`` (and the operator) on ``device`` / in ``dtype``."""
        moved = Problem.__new__(Problem)
        op = self.operator.to(device) if device is not None else self.operator
        moved._init(self.y.to(device=device, dtype=dtype), self.y01.to(device=device, dtype=dtype),
                    op, self.sigma_y, self.image_shape)
        return moved

    def from_model(self, x: Tensor) -> Tensor:
        """``(x + 1)/2`` clamped to [0, 1]: a restoration out of the model range, detached."""
        return from_model_range(x.detach()).clamp(0, 1)

    def __repr__(self) -> str:
        return (f"Problem({type(self.operator).__name__}, y={tuple(self.y.shape)}, "
                f"image_shape={self.image_shape}, sigma_y={self.sigma_y})")


def _image_shape(operator: LinearOperator, y01: Tensor) -> tuple[int, ...]:
    """``(B, C, H, W)`` of the images ``operator`` maps to ``y01``'s shape, or a clear error."""
    image_shape = getattr(operator, "image_shape", None)
    try:
        if image_shape is not None:
            shape = (y01.shape[0], *image_shape)
        else:
            with torch.no_grad():
                shape = tuple(operator.pinv(y01).shape)
        expected = tuple(operator.output_shape(shape))
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"`y` of shape {tuple(y01.shape)} does not fit `operator` "
                         f"{type(operator).__name__}: {err}; pass the degraded observation") from err
    if expected != tuple(y01.shape):
        raise ValueError(f"`y` has shape {tuple(y01.shape)} but `operator` maps images of shape "
                         f"{shape} to {expected}; pass the degraded observation")
    return shape


def _unit_response(operator: LinearOperator, shape: Sequence[int], like: Tensor) -> Tensor:
    """``A 1`` for images of ``shape``, in ``like``'s dtype and device."""
    with torch.no_grad():
        return operator(torch.ones(tuple(shape), dtype=like.dtype, device=like.device))


def _check_range(y01: Tensor, sigma_y: float) -> None:
    """Refuse a float observation that is plainly not on the [0, 1] scale.

    A float image in [0, 255] would be clamped to an all-white restoration and one in [-1, 1]
    (the model range) would lose its dark half, both without a word. Noise legitimately takes
    ``y`` outside [0, 1], so the bounds leave 0.5 + 6·σ_y either side: a noisy observation passes
    (a Gaussian draw beyond 6 σ has odds of 2·10⁻⁹, and the 0.5 comes on top), the wrong scales
    do not.
    """
    if y01.numel() == 0:
        return
    margin = 0.5 + 6 * float(sigma_y) if isinstance(sigma_y, (int, float)) else 0.5
    low, high = (float(v) for v in torch.aminmax(y01))
    if high > 1 + margin:
        raise ValueError(f"`y` has values up to {high:.4g}, but observations are images in [0, 1]; "
                         "a float image in [0, 255] needs dividing by 255 first (uint8 arrays and "
                         "tensors are scaled for you)")
    if low < -margin:
        raise ValueError(f"`y` has values down to {low:.4g}, but observations are images in [0, 1]; "
                         "an image in [-1, 1] (the model range) needs (y + 1) / 2 first")
