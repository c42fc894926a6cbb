"""Diffusion priors: the protocol solvers rely on, noise schedules, pretrained diffusers UNets, the
exact Gaussian mixture, and training the bundled default.

- :class:`Prior` (``protocol.py``): a schedule ``alphas_cumprod`` and ``predict(x_t, t) -> (x̂0, ε̂)``.
- :func:`alphas_cumprod_from_schedule`, :func:`linear_alphas_cumprod` (``schedule.py``):
  ``ᾱ_t = ∏_{s≤t} (1 − β_s)`` from diffusers scheduler configs and the linear DDPM schedule.
- :class:`DiffusionPrior` (``diffusers.py``): a diffusers ``UNet2DModel`` with its noise schedule.
- :func:`load_prior` (``loading.py``): folder layouts, safetensors vs pickles, the Hub, the default.
- :class:`GaussianMixturePrior` (``gmm.py``): exact denoiser and posterior, the yardstick.
- :class:`LatentPrior` (``protocol.py``): a prior over latents with ``decode``/``encode``;
  :class:`LinearLatentPrior` and :class:`LinearDecoder` (``linear_latent.py``): a Gaussian mixture
  over latents under a fixed linear decoder, the exact yardstick of latent restoration.
- :func:`train_prior` (``training.py``, data in ``patches.py``): the recipe of the bundled
  ``natural-patches-64`` prior.
"""

from .diffusers import DiffusionPrior
from .gmm import GaussianMixturePrior
from .linear_latent import LinearDecoder, LinearLatentPrior
from .loading import load_prior
from .protocol import CountingPrior, LatentPrior, Prior
from .schedule import alphas_cumprod_from_schedule, linear_alphas_cumprod
from .training import train_prior

__all__ = ["CountingPrior", "DiffusionPrior", "GaussianMixturePrior", "LatentPrior",
           "LinearDecoder", "LinearLatentPrior", "Prior",
           "alphas_cumprod_from_schedule", "linear_alphas_cumprod", "load_prior", "train_prior"]
