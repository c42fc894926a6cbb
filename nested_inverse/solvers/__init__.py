"""Inverse-problem solvers on one interface: run from noise (vanilla) or from any ``(x_t, t)``."""

from .base import Solver, SolverState, ddim_step
from .ddnm import DDNM

__all__ = ["DDNM", "Solver", "SolverState", "ddim_step"]
