"""Degradation operators: linear maps ``y = A x`` on image batches ``[B, C, H, W]`` in [-1, 1].

Every operator subclasses :class:`LinearOperator`; see its docstring for the contract.
"""

from .base import SVD, LinearOperator, conjugate_gradient
from .matrix import MatrixOperator
from .random import randn

__all__ = ["SVD", "LinearOperator", "MatrixOperator", "conjugate_gradient", "randn"]
