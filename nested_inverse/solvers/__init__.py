"""Diffusion solvers on one interface: run from noise (vanilla) or from any ``(x_t, t)``.

- :class:`Solver` / :class:`InverseSolver` (``base.py``): the shared loop; each method writes
  only its ``step``.
- Inverse-problem solvers: :class:`DDRM`, :class:`DDNM` (and DDNM+), :class:`PiGDM`, :class:`DPS`;
  by name through the registry (``registry.py``): ``make("ddrm", prior, problem)``, ``available()``.
- :class:`DDIM`: the prior alone, for generation; :class:`ExactPosterior`: the exact sampler on a
  Gaussian mixture, the yardstick for nested diffusion.
"""

from .base import InverseSolver, Solver, SolverState, ddim_step
from .ddim import DDIM
from .ddnm import DDNM
from .ddrm import DDRM
from .dps import DPS
from .exact import ExactPosterior
from .pigdm import PiGDM
from .registry import available, describe, get, make, register

__all__ = ["DDIM", "DDNM", "DDRM", "DPS", "ExactPosterior", "InverseSolver", "PiGDM", "Solver",
           "SolverState", "available", "ddim_step", "describe", "get", "make", "register"]
