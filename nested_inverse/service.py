r"""The service under every front door: image → problem → stream → what is shown and recorded.

``restore()``, ``nested-inverse restore`` and ``run``, and the page each do three things around the
core, and do them here so that they agree to the byte:

1. :func:`prepare_image`: a loaded image, a task and an image's seeds
   (:class:`~nested_inverse.seeds.ImageSeeds`) → the :class:`~nested_inverse.Problem`, the clean
   image when it was degraded here, the task with its mask cut like the image. The steps are
   the mixed-size policy: centre crop, downscale to ``max_side``, crop to the task's factor; then
   the operator (seeded ``operator``) and, for a clean image, the observation (seeded ``noise``).
2. :func:`start`: a :class:`~nested_inverse.SamplerConfig`, the prior, the problem and the images'
   seeds → the anytime stream. The deadline rule lives here: with the default split and no budget,
   one timed evaluation turns the deadline into a budget (:func:`budget_for_deadline`).
3. :func:`display`: a result of the stream (an image in the model range, or a latent) → the image
   in [0, 1] that is shown and written.

Every door passes images as ``[1, 3, H, W]`` float tensors in [0, 1] (``imageio.load_image``
reads files so), converts grey observations with :func:`luma`, and seeds by the one rule of
:mod:`nested_inverse.seeds`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .anytime import AnytimeRun
from .dataset.files import downscale, prepare_clean
from .errors import UsageError
from .imageio import center_crop as crop_center
from .problem import Problem
from .priors.tiled import TiledPrior, native_tile, tiled_for
from .sampling import SamplerConfig, budget_for_deadline
from .seeds import ImageSeeds
from .solvers.latent import is_latent_prior
from .tasks import Task

__all__ = ["GRADIENT_COST", "Prepared", "display", "estimate_seconds", "luma", "prepare_image",
           "seconds_per_pixel", "start"]

#: How the front doors name the settings in messages (the page and Python: as here).
NAMES = {"center_crop": "center_crop", "max_side": "max_side", "task": "task", "mask": "mask"}


@dataclass
class Prepared:
    """One image, ready to restore.

    Attributes:
        problem: ``y`` (in [0, 1] and the model range), the operator and ``sigma_y``, on the CPU.
        clean: the clean image ``[1, 3, H, W]`` in [0, 1] when it was degraded here, else None.
        task: the task, its mask (if any) cut and scaled like the image.
        seeds: the image's seeds.
    """

    problem: Problem
    clean: Tensor | None
    task: Task
    seeds: ImageSeeds


def luma(x: Tensor) -> Tensor:
    r"""ITU-R BT.601 luma ``Y = 0.299 R + 0.587 G + 0.114 B``: ``[B, 3, H, W] → [B, 1, H, W]``,
    how a colour file becomes a grey observation (``colorize``)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def prepare_image(
    image: Tensor,
    task: Task,
    seeds: ImageSeeds,
    *,
    sigma_y: float = 0.0,
    degrade: bool = False,
    center_crop: int | None = None,
    max_side: int | None = None,
    what: str = "`image`",
    names: Mapping[str, str] = NAMES,
    before_operator: Callable[[tuple[int, int, int]], None] | None = None,
) -> Prepared:
    r"""The problem for ``image`` (``[1, 3, H, W]`` in [0, 1]) under ``task``.

    With ``degrade`` the image is clean: cropped (``center_crop``, then to a multiple of the
    task's factor), downscaled to ``max_side``, and observed as ``y = A x + σ_y n``. Otherwise it is
    the observation ``y`` (grey for a grey-observing task): cropped and downscaled so the
    restoration (``factor`` × ``y``) keeps within ``max_side``.

    ``what`` names the image in messages and ``names`` the settings (the command line passes its
    flags); ``before_operator(image_shape)`` runs before the operator is built (the command
    line's early memory check). Every mistake raises :class:`UsageError`.
    """
    factor, in_channels, obs_channels = task.geometry()
    task = _fit_mask(task, tuple(image.shape[-2:]), center_crop, what, names)
    if degrade:
        x01 = prepare_clean(image, factor, center_crop, what, max_side)
        task = _shrink_mask(task, tuple(x01.shape[-2:]))
        shape = (in_channels, *x01.shape[-2:])
        if before_operator is not None:
            before_operator(shape)
        op = _make(task, shape, seeds.generator("operator"), what, names)
        problem = Problem.degrade(x01, op, sigma_y, generator=[seeds.generator("noise")])
        return Prepared(problem, x01, task, seeds)
    if factor == 0:
        raise UsageError(f"`{names['task']}`={task.name!r}: the restored image's size cannot be "
                         "inferred from an observation for this operator; degrade a clean image "
                         "instead")
    y01 = image if obs_channels == 3 else luma(image)
    if center_crop is not None:
        h, w = y01.shape[-2:]
        if center_crop > min(h, w):
            raise UsageError(f"{what} is {w}×{h} pixels, smaller than `{names['center_crop']}` "
                             f"{center_crop}")
        y01 = crop_center(y01, center_crop).contiguous()
    if max_side is not None:  # the restoration (factor × y) within max_side
        y01 = downscale(y01, max(1, max_side // factor))
        task = _shrink_mask(task, tuple(y01.shape[-2:]))
    shape = (in_channels, y01.shape[-2] * factor, y01.shape[-1] * factor)
    if before_operator is not None:
        before_operator(shape)
    op = _make(task, shape, None, what, names)
    expected = tuple(op.output_shape(shape))
    if expected != tuple(y01.shape[1:]):
        raise UsageError(f"{what} of shape {tuple(y01.shape[1:])} is not an observation of "
                         f"`{names['task']}`={task.name!r} (that gives {expected} for {shape} "
                         "images)")
    return Prepared(Problem(y01, op, sigma_y), None, task, seeds)


def start(config: SamplerConfig, prior: Any, problem: Problem,
          seeds: Sequence[ImageSeeds] | None, deadline_s: float | None = None,
          ) -> tuple[SamplerConfig, AnytimeRun]:
    """The anytime stream of ``config`` on ``problem`` (one seed per image of its batch; None for
    fresh randomness), and the configuration it runs: with a deadline, the default split and no
    budget, the budget one timed evaluation says fits (:func:`budget_for_deadline`)."""
    if seeds is not None and len(seeds) != problem.image_shape[0]:
        raise ValueError(f"`seeds` has {len(seeds)} entries for a batch of "
                         f"{problem.image_shape[0]} images; give one per image")
    config = config.for_problem(problem)  # the default policy for the problem's noise
    if deadline_s is not None and config.auto and config.budget_default:
        config = config.with_budget(budget_for_deadline(config.solver(prior, problem), deadline_s))
    generators = None if seeds is None else [s.generator("sample") for s in seeds]
    return config, config.run(prior, problem, generators, deadline_s=deadline_s)


def display(prior: Any, x: Tensor) -> Tensor:
    """A result of the stream as the image shown: ``(x + 1)/2`` clamped to [0, 1], on the CPU in
    float32; a latent prior's results (latents) are decoded first."""
    with torch.no_grad():
        if is_latent_prior(prior):
            x = prior.decode(x)
        return ((x.detach().float().cpu() + 1) / 2).clamp(0, 1)


def _fit_mask(task: Task, size: tuple[int, int], crop: int | None, what: str,
              names: Mapping[str, str]) -> Task:
    """The task with its mask cropped like the image; the mask must have the image's size."""
    if task.mask is None:
        return task
    H, W = size
    if tuple(task.mask.shape) != (H, W):
        raise UsageError(f"`{names['mask']}` is {task.mask.shape[1]}×{task.mask.shape[0]} pixels "
                         f"but {what} is {W}×{H}; give a mask of the image's size")
    if crop is not None and crop > min(H, W):
        raise UsageError(f"`{names['mask']}` is {W}×{H} pixels, smaller than "
                         f"`{names['center_crop']}` {crop}")
    m = task.mask if crop is None else crop_center(task.mask, crop)
    return dataclasses.replace(task, mask=m.contiguous())


def _shrink_mask(task: Task, size: tuple[int, int]) -> Task:
    """The task with its mask resized (nearest) to an image shrunk by ``max_side``."""
    if task.mask is None or tuple(task.mask.shape) == size:
        return task
    mask = torch.nn.functional.interpolate(task.mask[None, None].float(), size=size,
                                           mode="nearest")
    return dataclasses.replace(task, mask=mask[0, 0].to(torch.bool).contiguous())


def _make(task: Task, shape: Sequence[int], generator: Any, what: str,
          names: Mapping[str, str]) -> Any:
    try:
        return task.make(tuple(int(s) for s in shape), generator=generator)
    except (ValueError, RuntimeError) as err:
        raise UsageError(f"{what}: `{names['task']}`={task.name!r} cannot apply to a "
                         f"{shape[2]}×{shape[1]} image: {' '.join(str(err).split())}") from err


#: Cost of a solver step relative to one network evaluation, for the solvers whose step also
#: backpropagates through the network (measured: 0.31 s vs 0.165 s for DDRM per step, bundled
#: prior, 64 px, one thread, 2026-12-04); the others measured within 6 % of 1.
GRADIENT_COST = {"pigdm": 1.9, "dps": 1.9}

#: Seconds per pixel of one network evaluation, measured once per prior (by ``id``).
_RATES: dict[int, float] = {}


def seconds_per_pixel(prior: Any) -> float | None:
    """Seconds one evaluation of ``prior`` costs per image pixel, timed once (the faster of two
    evaluations at its training size, batch 1) and remembered; None when the prior has no
    training size (a latent pipeline: its cost is not set by the image's pixels alone)."""
    side = native_tile(prior)
    if side is None or is_latent_prior(prior):
        return None
    key = id(prior)
    if key not in _RATES:
        x = torch.zeros(1, 3, side, side, dtype=getattr(prior, "dtype", torch.float32),
                        device=getattr(prior, "device", "cpu"))
        t = len(prior.alphas_cumprod) // 2
        best = float("inf")
        for _ in range(2):  # the first call also pays for one-time set-up
            start = time.perf_counter()
            with torch.no_grad():
                float(prior.predict(x, t)[0].flatten()[0])
            best = min(best, time.perf_counter() - start)
        _RATES[key] = best / (side * side)
    return _RATES[key]


def estimate_seconds(prior: Any, height: int, width: int, config: SamplerConfig) -> float | None:
    r"""About how long ``config`` takes on an ``height × width`` image:
    ``budget · rate · pixels evaluated · g``, with the rate of :func:`seconds_per_pixel`, the
    pixels of every tile when the image is tiled (:func:`~nested_inverse.priors.tiled_for`), and
    ``g`` the solver's :data:`GRADIENT_COST` (1 for solvers that do not backpropagate).
    None when the prior's rate is unknown. Cost per pixel is within 15 % of constant from 512 px
    up (benchmarks/RESULTS.md, "Whole photos"); below that fixed costs make this an
    overestimate for the smallest images."""

    rate = seconds_per_pixel(prior)
    if rate is None:
        return None
    run_prior = tiled_for(prior, height, width, config.tile)
    if isinstance(run_prior, TiledPrior):
        pixels = run_prior.num_tiles(height, width) * run_prior.tile ** 2
    else:
        pixels = height * width
    return config.budget * rate * pixels * GRADIENT_COST.get(config.method, 1.0)
