"""Diffusion solvers on one interface: run from noise (vanilla) or from any ``(x_t, t)``.

- :class:`Solver` / :class:`InverseSolver` (``base.py``): the shared loop; each method writes
  only its ``step``.
- Inverse-problem solvers: :class:`DDRM`, :class:`DDNM` (and DDNM+), :class:`PiGDM`, :class:`DPS`,
  :class:`DiffPIR`, :class:`DAPS`;
  by name through the registry (``registry.py``): ``make("ddrm", prior, problem)``, ``available()``.
- Latent solvers on a :class:`~nested_inverse.LatentPrior` (``latent.py``, ``psld.py``):
  :class:`LatentInverseSolver` (state in latent space, data in image space), :class:`LatentDPS`
  and :class:`PSLD`; registered as ``"latent-dps"`` and ``"psld"``.
- :class:`DDIM`: the prior alone, for generation; :class:`ExactPosterior`: the exact sampler on a
  Gaussian mixture, the yardstick for nested diffusion.
"""

from .base import InverseSolver, Solver, SolverState, ddim_step
from .daps import DAPS
from .ddim import DDIM
from .ddnm import DDNM
from .ddrm import DDRM
from .diffpir import DiffPIR
from .dps import DPS
from .exact import ExactPosterior
from .latent import LatentInverseSolver
from .pigdm import PiGDM
from .psld import PSLD, LatentDPS
from .registry import available, default_method, describe, get, make, register

__all__ = ["DAPS", "DDIM", "DDNM", "DDRM", "DPS", "DiffPIR", "PSLD", "ExactPosterior", "InverseSolver",
           "LatentDPS", "LatentInverseSolver", "PiGDM", "Solver", "SolverState", "available", "ddim_step",
           "default_method", "describe", "get", "make", "register"]
