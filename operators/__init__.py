"""Degradation operators: linear maps ``y = A x`` on image batches ``[B, C, H, W]`` in [-1, 1].

Every operator subclasses :class:`LinearOperator`; see its docstring for the contract. Built-ins are
listed by :func:`available` and built by :func:`make`; :func:`check` tests any operator.
"""

from .base import SVD, LinearOperator, conjugate_gradient
from .blur import (Blur, CircularBlur, SeparableBlur, gaussian_kernel, motion_kernel,
                   toeplitz_matrix, uniform_kernel)
from .check import CheckReport, check
from .colorization import Colorization
from .compose import Compose
from .denoise import Identity
from .inpainting import Inpainting, box_mask, freeform_mask, half_mask, random_mask
from .matrix import MatrixOperator
from .noise import Degradation, GaussianNoise, PoissonNoise
from .random import randn
from .registry import available, describe, make, register
from .separable import Separable
from .superres import BicubicDownsample, BoxDownsample, bicubic_matrix, box_matrix

__all__ = [
    "SVD", "BicubicDownsample", "Blur", "BoxDownsample", "CheckReport", "CircularBlur",
    "Colorization", "Compose", "Degradation", "GaussianNoise", "Identity", "Inpainting",
    "LinearOperator", "MatrixOperator", "PoissonNoise", "Separable", "SeparableBlur", "available",
    "bicubic_matrix", "box_mask", "box_matrix", "check", "conjugate_gradient", "describe",
    "freeform_mask", "gaussian_kernel", "half_mask", "make", "motion_kernel", "randn",
    "random_mask", "register", "toeplitz_matrix", "uniform_kernel",
]
