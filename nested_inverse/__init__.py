"""nested-inverse: anytime image restoration with nested diffusion.

An outer diffusion process whose every step runs a whole inner inverse-problem solver (DDRM, DDNM,
ΠGDM, DPS) from the current state, so that a finished-looking restoration is available after each
outer step (Elata, Kawar, Michaeli, Elad, 2023, arXiv 2305.19066).
"""

from .paths import data_dir, default_prior_dir, images_dir
from .priors import CountingPrior, GaussianMixturePrior, Prior
from .solvers import DDNM, Solver, SolverState

__version__ = "0.1.0"

__all__ = ["DDNM", "CountingPrior", "GaussianMixturePrior", "Solver", "SolverState", "Prior", "data_dir", "default_prior_dir", "images_dir"]

# Priors and image I/O (issue 3).
from .priors import DiffusionPrior, load_prior, train_prior  # noqa: E402
from .imageio import (  # noqa: E402
    bundled_image,
    bundled_image_names,
    center_crop,
    crop_to_multiple,
    from_model_range,
    from_tensor,
    load_image,
    save_image,
    to_model_range,
    to_tensor,
)

__all__ += [
    "DiffusionPrior",
    "load_prior",
    "train_prior",
    "bundled_image",
    "bundled_image_names",
    "center_crop",
    "crop_to_multiple",
    "from_model_range",
    "from_tensor",
    "load_image",
    "save_image",
    "to_model_range",
    "to_tensor",
]

# Nested sampler, guidance, one-call restore (issue 5).
from .guidance import Edit, Resample, SetInnerSteps, Stop  # noqa: E402
from .nested import AnytimeResult, AnytimeRun, NestedSampler  # noqa: E402
from .restore import restore  # noqa: E402
from .solvers import DDIM  # noqa: E402

__all__ += [
    "AnytimeResult",
    "AnytimeRun",
    "DDIM",
    "Edit",
    "NestedSampler",
    "Resample",
    "SetInnerSteps",
    "Stop",
    "restore",
]

# Inverse-problem solvers (issue 4).
from .solvers import DDRM, DPS, PiGDM  # noqa: E402

__all__ += ["DDRM", "DPS", "PiGDM"]
