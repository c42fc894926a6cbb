"""nested-inverse: anytime image restoration with nested diffusion.

An outer diffusion process whose every step runs a whole inner inverse-problem solver (DDRM, DDNM,
ΠGDM, DPS) from the current state, so that a finished-looking restoration is available after each
outer step (Elata, Kawar, Michaeli, Elad, 2023, arXiv 2305.19066).
"""

from .paths import data_dir, default_prior_dir, images_dir
from .gmm import GaussianMixturePrior
from .prior import CountingPrior, Prior

__version__ = "0.1.0"

__all__ = ["CountingPrior", "GaussianMixturePrior", "Prior", "data_dir", "default_prior_dir", "images_dir"]
