"""Inverse-problem solvers on one interface: run from noise (vanilla) or from any ``(x_t, t)``."""

from .base import Solver, SolverState, ddim_step
from .ddnm import DDNM
from .ddim import DDIM
from .ddrm import DDRM
from .exact import ExactPosterior

__all__ = ["DDIM", "DDNM", "DDRM", "ExactPosterior", "Solver", "SolverState", "ddim_step"]
