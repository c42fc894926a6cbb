"""Inpainting: keep the observed pixels, zero the rest, ``y = m ⊙ x``; and mask generators."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

from .base import SVD, LinearOperator
from .random import Generators

__all__ = ["Inpainting", "box_mask", "freeform_mask", "half_mask", "random_mask"]


class _PermutationSVD(SVD):
    r"""``A = P_mᵀ diag(s) P_m`` for the permutation ``P_m`` listing observed entries first.

    ``U = V = P_mᵀ``: both spectral vectors are the image's entries reordered, observed ones first,
    and ``s`` is 1 on the observed entries and 0 elsewhere.
    """

    def __init__(self, order: Tensor, singulars: Tensor, image_shape: tuple[int, int, int]) -> None:
        self._order, self._s, self._shape = order, singulars, image_shape

    def _index(self, like: Tensor) -> Tensor:
        return self._order.to(like.device).expand(like.shape[0], -1)

    def Vt(self, x: Tensor) -> Tensor:
        return x.flatten(1).gather(1, self._index(x))

    def V(self, c: Tensor) -> Tensor:
        out = torch.empty_like(c).scatter_(1, self._index(c), c)
        return out.view(c.shape[0], *self._shape)

    Ut = Vt
    U = V

    @property
    def singulars(self) -> Tensor:
        return self._s


class Inpainting(LinearOperator):
    r"""``y = m ⊙ x``: the image with unobserved pixels set to 0 (mid-grey in [0, 1]).

    ``y`` has the shape of ``x`` (``[B, C, H, W]``), so it can be saved as an image. ``A`` is an
    orthogonal projection: ``Aᵀ = A† = A``, and ``A† y = m ⊙ y`` is zero where nothing is observed
    (the minimum-norm solution). SVD: a permutation listing observed entries first, singular value 1
    there and 0 elsewhere; a per-image mask gives per-image singulars ``[B, N]``.

    Args:
        mask: 1 = observed, 0 = missing (bool or float with values in {0, 1}); ``[H, W]`` for one
            mask shared by all channels and images, ``[C, H, W]`` per channel, or ``[B, 1, H, W]`` /
            ``[B, C, H, W]`` per image (then inputs must have batch ``B``).
        image_shape: ``(C, H, W)``; only needed for :meth:`svd` when the mask does not fix ``C``
            (otherwise the channel count of the last input is used).

    Example:
        >>> import torch, operators
        >>> op = operators.Inpainting(torch.tensor([[1, 0], [0, 1]]))
        >>> op(torch.ones(1, 1, 2, 2)).flatten().tolist()
        [1.0, 0.0, 0.0, 1.0]
    """

    def __init__(self, mask: Tensor, image_shape: Sequence[int] | None = None) -> None:
        if not isinstance(mask, Tensor):
            mask = torch.as_tensor(mask)
        if mask.ndim not in (2, 3, 4):
            raise ValueError(f"`mask` must be [H, W], [C, H, W] or [B, C, H, W], got shape "
                             f"{list(mask.shape)}")
        mask = mask.detach()
        if not mask.dtype == torch.bool:
            if not torch.isfinite(mask).all() or not ((mask == 0) | (mask == 1)).all():
                raise ValueError("`mask` must contain only 0 (missing) and 1 (observed); got values "
                                 f"in [{mask.min().item()}, {mask.max().item()}]")
        mask = mask.to(torch.bool)
        if mask.numel() and not bool(mask.any()):
            # Legal (y is empty and the restoration is an unconditional sample) but almost always
            # an inverted mask: 1 = observed here, as the white of a mask file.
            warnings.warn("`mask` observes no pixel (all 0): y carries no information and the "
                          "result is an unconditional sample; 1 (white) = observed, 0 (black) = "
                          "missing; was the mask inverted?", UserWarning, stacklevel=2)
        while mask.ndim < 4:
            mask = mask.unsqueeze(0)
        if image_shape is not None:
            C, H, W = (int(s) for s in image_shape)
            if tuple(mask.shape[-2:]) != (H, W) or mask.shape[1] not in (1, C):
                raise ValueError(f"`mask` of shape {list(mask.shape)} does not fit `image_shape` "
                                 f"{tuple(image_shape)}: it needs spatial size ({H}, {W}) and 1 or "
                                 f"{C} channels")
        elif mask.shape[1] > 1:
            image_shape = (mask.shape[1], *mask.shape[-2:])
        super().__init__(image_shape)
        self.register_buffer("mask", mask)
        self._svd: SVD | None = None
        self._svd_for: Tensor | None = None  # the mask ``_svd`` was computed from

    def _check(self, x: Tensor, what: str) -> None:
        m = self.mask
        ok = (x.ndim == 4 and x.shape[-2:] == m.shape[-2:] and m.shape[1] in (1, x.shape[1])
              and m.shape[0] in (1, x.shape[0]))
        if not ok:
            raise ValueError(f"`{what}` of shape {list(x.shape)} does not fit the inpainting mask of "
                             f"shape {list(m.shape)} ([B or 1, C or 1, H, W])")

    def forward(self, x: Tensor) -> Tensor:
        self._check(x, "x")
        return x * self.mask.to(x)

    def adjoint(self, y: Tensor) -> Tensor:
        self._check(y, "y")
        return y * self.mask.to(y)

    def pinv(self, y: Tensor) -> Tensor:
        self._check(y, "y")
        return y * self.mask.to(y)

    def range_mask(self) -> Tensor:
        """Where ``y`` can be nonzero, ``[B or 1, C or 1, H, W]`` bool; noise is kept only there."""
        return self.mask

    def output_shape(self, input_shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(int(s) for s in input_shape)

    def svd(self) -> SVD:
        if self.image_shape is None:
            raise ValueError("Inpainting with a single-channel mask needs the channel count for its "
                             "SVD: pass `image_shape=(C, H, W)`")
        shape = self.image_shape
        # Solvers ask for the SVD every step and the sort is the costly part: it is kept, for the
        # mask tensor it was made from (moving the operator replaces the mask, and so the SVD).
        if self._svd_for is self.mask:
            return self._svd
        full = self.mask.expand(-1, shape[0], -1, -1).flatten(1)
        # Stable sort puts observed entries first, each group in raster order.
        order = torch.sort((~full).to(torch.uint8), dim=1, stable=True).indices
        singulars = torch.gather(full, 1, order).to(torch.float64)
        self._svd, self._svd_for = _PermutationSVD(order, singulars, shape), self.mask
        return self._svd

    def extra_repr(self) -> str:
        return f"mask={list(self.mask.shape)}, observed={self.mask.float().mean().item():.3f}"


# Mask generators. Each returns [B, 1, H, W] bool (1 = observed) with B = 1 for a single generator
# (or none) and B = len(generator) for per-image generators, so masks follow their own image.


def _per_image(generator: Generators, draw) -> Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        return draw(generator)[None, None]
    return torch.stack([draw(g) for g in generator])[:, None]


def _cpu(generator: torch.Generator | None) -> torch.Generator:
    # Masks are small and drawn on the CPU; no generator means a fixed seed, so make() is repeatable.
    if generator is None:
        return torch.Generator().manual_seed(0)
    if generator.device.type != "cpu":
        return torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=generator,
                                                               device=generator.device)))
    return generator


def box_mask(
    height: int, width: int, fraction: float | Sequence[float] = 0.5,
    generator: Generators = None,
) -> Tensor:
    r"""A missing box of ``fraction × (height, width)`` pixels, centred, or placed uniformly at
    random when a generator is given. Returns ``[B, 1, H, W]`` bool, 1 = observed."""
    fh, fw = (fraction, fraction) if isinstance(fraction, (int, float)) else fraction
    if not (0 < fh <= 1 and 0 < fw <= 1):
        raise ValueError(f"`fraction` must be in (0, 1] (box side over image side), got {fraction}")
    bh, bw = max(1, round(fh * height)), max(1, round(fw * width))

    def draw(g: torch.Generator | None) -> Tensor:
        if g is None:
            top, left = (height - bh) // 2, (width - bw) // 2
        else:
            g = _cpu(g)
            top = int(torch.randint(height - bh + 1, (1,), generator=g))
            left = int(torch.randint(width - bw + 1, (1,), generator=g))
        mask = torch.ones(height, width, dtype=torch.bool)
        mask[top:top + bh, left:left + bw] = False
        return mask

    return _per_image(generator, draw)


def random_mask(height: int, width: int, drop: float = 0.5, generator: Generators = None) -> Tensor:
    r"""Each pixel missing independently with probability ``drop``. ``[B, 1, H, W]`` bool."""
    if not 0 <= drop <= 1:
        raise ValueError(f"`drop` must be in [0, 1] (fraction of missing pixels), got {drop}")
    return _per_image(
        generator, lambda g: torch.rand(height, width, generator=_cpu(g)) >= drop
    )


def half_mask(height: int, width: int, side: str = "right") -> Tensor:
    r"""The ``side`` half (``"right"``, ``"left"``, ``"top"`` or ``"bottom"``) missing.
    ``[1, 1, H, W]`` bool."""
    mask = torch.ones(height, width, dtype=torch.bool)
    if side == "right":
        mask[:, width // 2:] = False
    elif side == "left":
        mask[:, : width - width // 2] = False
    elif side == "bottom":
        mask[height // 2:] = False
    elif side == "top":
        mask[: height - height // 2] = False
    else:
        raise ValueError(f"`side` must be 'right', 'left', 'top' or 'bottom', got {side!r}")
    return mask[None, None]


def freeform_mask(
    height: int, width: int, strokes: int = 5, width_fraction: float = 0.06,
    generator: Generators = None,
) -> Tensor:
    r"""Random brush strokes missing: each stroke is a polyline of 4–8 segments with random turns,
    drawn with a round brush of diameter ``width_fraction·min(H, W)``. ``[B, 1, H, W]`` bool."""
    if strokes < 0:
        raise ValueError(f"`strokes` must be >= 0, got {strokes}")
    if not 0 < width_fraction <= 1:
        raise ValueError(f"`width_fraction` must be in (0, 1], got {width_fraction}")
    side = min(height, width)
    radius = max(0.5, width_fraction * side / 2)
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]

    def draw(g: torch.Generator | None) -> Tensor:
        g = _cpu(g)
        u = lambda *s: torch.rand(s, generator=g)  # noqa: E731
        missing = torch.zeros(height, width, dtype=torch.bool)
        for _ in range(strokes):
            point = u(2) * torch.tensor([height - 1.0, width - 1.0])
            angle = float(u(1)) * 2 * math.pi
            for _ in range(4 + int(u(1) * 5)):
                angle += float(u(1) - 0.5) * math.pi * 0.8
                length = (0.1 + 0.2 * float(u(1))) * side
                end = point + length * torch.tensor([math.sin(angle), math.cos(angle)])
                end = end.clamp(torch.zeros(2), torch.tensor([height - 1.0, width - 1.0]))
                # Distance from every pixel to the segment point→end, through the projection t.
                d = end - point
                t = ((rows - point[0]) * d[0] + (cols - point[1]) * d[1]) / d.dot(d).clamp_min(1e-9)
                t = t.clamp(0, 1)
                dist2 = (rows - point[0] - t * d[0]) ** 2 + (cols - point[1] - t * d[1]) ** 2
                missing |= dist2 <= radius**2
                point = end
        return ~missing

    return _per_image(generator, draw)
