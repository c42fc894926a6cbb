"""Diffusion priors: the protocol solvers rely on, pretrained diffusers UNets, the exact Gaussian
mixture, and training the bundled default.

- :class:`Prior` (``protocol.py``): a schedule ``alphas_cumprod`` and ``predict(x_t, t) -> (x̂0, ε̂)``.
- :class:`DiffusionPrior` (``diffusers.py``): a diffusers ``UNet2DModel`` with its noise schedule.
- :class:`GaussianMixturePrior` (``gmm.py``): exact denoiser and posterior, the yardstick.
- :func:`train_prior` (``training.py``): the recipe of the bundled ``natural-patches-64`` prior.
"""

from .diffusers import DiffusionPrior, alphas_cumprod_from_schedule, load_prior
from .gmm import GaussianMixturePrior
from .protocol import CountingPrior, Prior
from .training import train_prior

__all__ = ["CountingPrior", "DiffusionPrior", "GaussianMixturePrior", "Prior",
           "alphas_cumprod_from_schedule", "load_prior", "train_prior"]
