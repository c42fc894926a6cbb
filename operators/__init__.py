"""Degradation operators: linear maps ``y = A x`` on image batches ``[B, C, H, W]`` in [-1, 1].

Every operator subclasses :class:`LinearOperator`; see its docstring for the contract. Built-ins are
listed by :func:`available` and built by :func:`make`; :func:`check` tests any operator.
Internals (dense 1-D matrices, conjugate gradients, batched noise) stay in their modules:
``operators.superres.bicubic_matrix``, ``operators.base.conjugate_gradient``,
``operators.random.randn`` …
"""

# The contract, and building blocks for your own operators.
from .base import SVD, LinearOperator
from .compose import Compose
from .matrix import MatrixOperator
from .separable import Separable

# Built-in degradations, and the masks and kernels they are made from.
from .blur import Blur, gaussian_kernel, motion_kernel, uniform_kernel
from .colorization import Colorization
from .denoise import Identity
from .inpainting import Inpainting, box_mask, freeform_mask, half_mask, random_mask
from .superres import BicubicDownsample, BoxDownsample

# Observation noise, and an operator with its noise.
from .noise import Degradation, GaussianNoise, PoissonNoise

# By name, and checked.
from .check import CheckReport, check
from .registry import available, describe, make, register

__all__ = [
    "SVD", "LinearOperator", "Compose", "MatrixOperator", "Separable",
    "Blur", "gaussian_kernel", "motion_kernel", "uniform_kernel", "Colorization", "Identity",
    "Inpainting", "box_mask", "freeform_mask", "half_mask", "random_mask", "BicubicDownsample",
    "BoxDownsample",
    "Degradation", "GaussianNoise", "PoissonNoise",
    "CheckReport", "check", "available", "describe", "make", "register",
]
