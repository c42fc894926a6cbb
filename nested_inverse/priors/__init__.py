"""Diffusion priors: the protocol solvers rely on, noise schedules, pretrained diffusers UNets, the
exact Gaussian mixture, and training the bundled default.

- :class:`Prior` (``protocol.py``): a schedule ``alphas_cumprod`` and ``predict(x_t, t) -> (x̂0, ε̂)``.
- :func:`alphas_cumprod_from_schedule`, :func:`linear_alphas_cumprod` (``schedule.py``):
  ``ᾱ_t = ∏_{s≤t} (1 − β_s)`` from diffusers scheduler configs and the linear DDPM schedule.
- :class:`DiffusionPrior` (``diffusers.py``): a diffusers ``UNet2DModel`` with its noise schedule.
- :func:`load_prior` (``loading.py``): folder layouts, safetensors vs pickles, the Hub, the default.
- :class:`LatentDiffusionPrior` (``latent.py``): Stable Diffusion / DiT latents with their VAE, a
  :class:`LatentPrior`; :meth:`~LatentDiffusionPrior.conditioned` binds a prompt or class with
  classifier-free guidance (``conditional.py``); :func:`load_latent_pipeline` (``pipelines.py``)
  reads a pipeline folder; ``tiny.py`` writes tiny random ones for tests (test scaffolding:
  imported by its module path, not exported here).
- :class:`TiledPrior` (``tiled.py``): any pixel prior on overlapping, cross-faded tiles, so an
  image of any size costs one tile batch of network memory.
- :class:`GaussianMixturePrior` (``gmm.py``): exact denoiser and posterior, the yardstick.
- :class:`LatentPrior` (``protocol.py``): a prior over latents with ``decode``/``encode``;
  :class:`LinearLatentPrior` and :class:`LinearDecoder` (``linear_latent.py``): a Gaussian mixture
  over latents under a fixed linear decoder, the exact yardstick of latent restoration.
- :func:`train_prior` (``training.py``, data in ``patches.py``): the recipe of the bundled
  ``natural-patches-64`` prior.
"""

from .conditional import Condition, GuidedLatentPrior, guide
from .diffusers import DiffusionPrior
from .gmm import GaussianMixturePrior
from .latent import LatentDiffusionPrior
from .linear_latent import LinearDecoder, LinearLatentPrior
from .loading import load_prior
from .pipelines import load_latent_pipeline
from .protocol import CountingPrior, LatentPrior, Prior, is_latent_prior
from .schedule import alphas_cumprod_from_schedule, linear_alphas_cumprod
from .tiled import TiledPrior
from .training import train_prior

__all__ = ["Condition", "CountingPrior", "DiffusionPrior", "GaussianMixturePrior", "GuidedLatentPrior",
           "LatentDiffusionPrior", "LatentPrior", "LinearDecoder", "LinearLatentPrior", "Prior",
           "TiledPrior", "alphas_cumprod_from_schedule", "guide", "is_latent_prior", "linear_alphas_cumprod", "load_latent_pipeline",
           "load_prior", "train_prior"]
