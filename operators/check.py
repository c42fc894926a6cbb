"""``check(op, image_shape)``: numerical checks of the operator contract, for any operator."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .base import LinearOperator
from .random import Generators, randn

__all__ = ["CheckReport", "check"]

# Tolerances by dtype: (adjoint, pinv, svd). The pinv tolerance allows for the conjugate-gradient
# fallback, which stops at a relative residual of 1e-6 on the normal equations.
TOLERANCES = {
    torch.float64: (1e-8, 1e-4, 1e-8),
    torch.float32: (1e-4, 1e-3, 1e-4),
}


@dataclass
class CheckReport:
    r"""Relative errors of one operator on random inputs (``None`` = not applicable: no SVD).

    - ``adjoint``: ``|⟨A x, y⟩ − ⟨x, Aᵀ y⟩| / (‖x‖ ‖y‖)``
    - ``pinv``: ``‖A(A† A x) − A x‖ / ‖A x‖``
    - ``svd_reconstruction``: ``‖U(s · Vᵀx) − A x‖ / ‖A x‖``
    - ``svd_inverse``: ``‖V(Vᵀx) − x‖ / ‖x‖``
    - ``svd_norm``: ``|‖Vᵀx‖ − ‖x‖| / ‖x‖``

    :attr:`ok` compares them with :attr:`tolerances` ``(adjoint, pinv, svd)``: by default
    (1e-8, 1e-4, 1e-8) in float64 and (1e-4, 1e-3, 1e-4) in float32.
    """

    name: str
    dtype: torch.dtype
    adjoint: float
    pinv: float
    svd_reconstruction: float | None = None
    svd_inverse: float | None = None
    svd_norm: float | None = None
    tolerances: tuple[float, float, float] = field(default=TOLERANCES[torch.float64])

    def _rows(self) -> list[tuple[str, float | None, float]]:
        ta, tp, ts = self.tolerances
        return [("adjoint", self.adjoint, ta), ("pinv", self.pinv, tp),
                ("svd reconstruction", self.svd_reconstruction, ts),
                ("svd V(Vt x) = x", self.svd_inverse, ts), ("svd norm", self.svd_norm, ts)]

    @property
    def ok(self) -> bool:
        """Every applicable error is finite and within its tolerance."""
        return all(v is None or (math.isfinite(v) and v <= t) for _, v, t in self._rows())

    def __str__(self) -> str:
        lines = [f"{self.name} ({str(self.dtype).removeprefix('torch.')}): "
                 f"{'ok' if self.ok else 'FAILED'}",
                 f"  {'check':<20} {'error':>10} {'tolerance':>10}"]
        for label, value, tol in self._rows():
            shown = "—" if value is None else f"{value:.2e}"
            flag = "" if value is None or value <= tol else "  <-- too large"
            lines.append(f"  {label:<20} {shown:>10} {tol:>10.0e}{flag}")
        return "\n".join(lines)


def _rel(num: torch.Tensor, den: torch.Tensor) -> float:
    den = float(den)
    return float(num) / den if den > 0 else float(num)


def check(
    op: LinearOperator,
    image_shape: Sequence[int],
    batch: int = 2,
    dtype: torch.dtype = torch.float64,
    generator: Generators = None,
    tolerances: tuple[float, float, float] | None = None,
) -> CheckReport:
    """Check adjointness, the pseudo-inverse and (if any) the SVD of ``op`` on random inputs.

    Works for any :class:`operators.LinearOperator`, including a user's forward-only one (its
    adjoint then comes from autograd and its pseudo-inverse from conjugate gradients).

    Args:
        op: the operator.
        image_shape: ``(C, H, W)`` of its inputs.
        batch: images per check.
        dtype: working dtype (float64 checks the mathematics, float32 the everyday precision).
        generator: seeds ``x`` and ``y`` (a fixed seed when ``None``).
        tolerances: ``(adjoint, pinv, svd)``; defaults by dtype, see :class:`CheckReport`.

    Example:
        >>> import operators
        >>> operators.check(operators.make("sr4", image_shape=(3, 16, 24)), (3, 16, 24)).ok
        True
    """
    if not isinstance(op, LinearOperator):
        raise ValueError(f"`op` must be an operators.LinearOperator, got {type(op).__name__}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    shape = (batch, *(int(s) for s in image_shape))
    x = randn(shape, generator, dtype=dtype)
    with torch.no_grad():
        Ax = op(x)
    y = randn(Ax.shape, generator, dtype=dtype)
    Aty = op.adjoint(y)
    with torch.no_grad():
        adjoint = _rel(((Ax * y).sum() - (x * Aty).sum()).abs(), x.norm() * y.norm())
        pinv = _rel((op(op.pinv(Ax)) - Ax).norm(), Ax.norm())
        svd = op.svd()
        errors: dict[str, float] = {}
        if svd is not None:
            c = svd.Vt(x)
            s = svd.singulars.to(c)
            errors = {
                "svd_reconstruction": _rel((svd.U(s * c) - Ax).norm(), Ax.norm()),
                "svd_inverse": _rel((svd.V(c) - x).norm(), x.norm()),
                "svd_norm": _rel((c.norm() - x.norm()).abs(), x.norm()),
            }
    if tolerances is None:
        tolerances = TOLERANCES.get(dtype, TOLERANCES[torch.float32])
    name = type(op).__name__
    return CheckReport(name, dtype, adjoint, pinv, tolerances=tuple(tolerances), **errors)
