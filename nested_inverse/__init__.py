"""nested-inverse: anytime image restoration with nested diffusion.

An outer diffusion process whose every step runs a whole inner inverse-problem solver (DDRM, DDNM,
ΠGDM, DPS) from the current state, so that a finished-looking restoration is available after each
outer step (Elata, Kawar, Michaeli, Elad, 2023, arXiv 2305.19066).

The public API, by concept:

- one call: :func:`restore`; :func:`generate` (anytime generation with Stable Diffusion / DiT
  latent priors, :func:`load_latent_pipeline`, :class:`LatentDiffusionPrior`);
- the problem: :class:`Problem` (observation in [0, 1], operator, noise; operators live in the
  separate ``operators`` package);
- priors: :class:`Prior`, :class:`DiffusionPrior`, :class:`GaussianMixturePrior`,
  :func:`load_prior`, :func:`train_prior`, :class:`CountingPrior`; latent ones:
  :class:`LatentPrior`, and the exact :class:`LinearLatentPrior` over a :class:`LinearDecoder`;
- solvers: :class:`DDRM`, :class:`DDNM`, :class:`PiGDM`, :class:`DPS`, :class:`DiffPIR`, :class:`DAPS`,
  :class:`DDIM`; latent:
  :class:`LatentInverseSolver`, :class:`LatentDPS`, :class:`PSLD` (and the registry
  ``nested_inverse.solvers.make/available``);
- the anytime stream: :class:`NestedSampler`, :class:`VanillaSampler`, :class:`SamplerConfig`,
  :class:`AnytimeResult`, :class:`AnytimeRun`, and the guidance commands :class:`Edit`,
  :class:`Resample`, :class:`SetInnerSteps`, :class:`Stop`;
- images: loading, saving and converting (``imageio``), bundled images, the held-out crops and
  data paths.
"""

from .anytime import AnytimeResult, AnytimeRun
from .generate import GeneratedStep, Generation, GenerationRun, generate, generation_run
from .guidance import Edit, Resample, SetInnerSteps, Stop
from .imageio import (
    bundled_image,
    bundled_image_names,
    center_crop,
    crop_to_multiple,
    from_model_range,
    from_tensor,
    heldout_image,
    heldout_image_names,
    load_image,
    save_image,
    to_model_range,
    to_tensor,
)
from .nested import NestedSampler
from .paths import data_dir, default_prior_dir, images_dir
from .priors import (
    CountingPrior,
    DiffusionPrior,
    GaussianMixturePrior,
    GuidedLatentPrior,
    LatentDiffusionPrior,
    LatentPrior,
    LinearDecoder,
    LinearLatentPrior,
    Prior,
    load_latent_pipeline,
    load_prior,
    train_prior,
)
from .problem import Problem
from .restore import restore
from .sampling import SamplerConfig
from .solvers import (
    DAPS,
    DDIM,
    DDNM,
    DDRM,
    DPS,
    DiffPIR,
    PSLD,
    InverseSolver,
    LatentDPS,
    LatentInverseSolver,
    PiGDM,
    Solver,
    SolverState,
)
from .vanilla import VanillaSampler

__version__ = "0.1.0"

__all__ = [
    # one call
    "restore", "generate",
    # generation with latent priors
    "GeneratedStep", "Generation", "GenerationRun", "GuidedLatentPrior", "LatentDiffusionPrior",
    "generation_run", "load_latent_pipeline",
    # the problem
    "Problem",
    # priors
    "CountingPrior", "DiffusionPrior", "GaussianMixturePrior", "LatentPrior", "LinearDecoder",
    "LinearLatentPrior", "Prior", "load_prior", "train_prior",
    # solvers
    "DAPS", "DDIM", "DDNM", "DDRM", "DPS", "DiffPIR", "InverseSolver", "LatentDPS", "LatentInverseSolver",
    "PSLD", "PiGDM", "Solver", "SolverState",
    # the anytime stream and guidance
    "AnytimeResult", "AnytimeRun", "Edit", "NestedSampler", "Resample", "SamplerConfig",
    "SetInnerSteps", "Stop", "VanillaSampler",
    # images and data
    "bundled_image", "bundled_image_names", "center_crop", "crop_to_multiple", "data_dir",
    "default_prior_dir", "from_model_range", "from_tensor", "heldout_image",
    "heldout_image_names", "images_dir", "load_image", "save_image", "to_model_range", "to_tensor",
]
