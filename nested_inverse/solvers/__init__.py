"""Inverse-problem solvers on one interface: run from noise (vanilla) or from any ``(x_t, t)``."""

from .base import Solver, SolverState, ddim_step
from .ddnm import DDNM
from .ddim import DDIM
from .ddrm import DDRM
from .dps import DPS
from .exact import ExactPosterior
from .pigdm import PiGDM

__all__ = ["DDIM", "DDNM", "DDRM", "DPS", "ExactPosterior", "PiGDM", "Solver", "SolverState",
           "ddim_step"]
