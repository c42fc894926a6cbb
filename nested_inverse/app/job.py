"""What one run on the page restores and how: the page's settings turned into a problem and samplers.

The steps are those of ``nested-inverse restore`` (centre crop, crop to the task's factor, the
operator and noise seeded from the input's file name, one sampling generator), so the same image
and settings give the same restoration on the page as on the command line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .. import solvers
from ..dataset import prepare_clean
from ..errors import UsageError
from ..imageio import center_crop
from ..anytime import VanillaSampler
from ..nested import NestedSampler
from ..priors import Prior
from ..problem import Problem
from ..sampling import SamplerConfig
from ..solvers import DDIM
from ..tasks import Task, image_generator, image_seed, resolve_task
from .inputs import Source

__all__ = ["GENERATE", "INPAINT_MASK", "Job", "Settings", "prepare"]

#: Task name for unconditional nested generation (no observation).
GENERATE = "generate"
#: Task name for inpainting with the mask painted or uploaded on the page.
INPAINT_MASK = "inpaint-mask"


@dataclass
class Settings:
    """The page's choices for one run.

    Attributes:
        task: a registered operator (``operators.available()``: ``sr4``, ``blur-gauss``,
            ``colorize`` …), ``"inpaint-mask"`` (the painted or uploaded mask) or ``"generate"``.
        sigma_y: observation noise std on the [0, 1] scale (0.05 = 5 % of the range): added when
            degrading and assumed when restoring.
        degraded: the image is already the observation ``y`` (else it is clean and degraded first).
        method: the inner solver (``solvers.available()``).
        outer, inner: K outer steps of I inner evaluations; both None (the page's empty fields)
            for the default split of the budget (:func:`~nested_inverse.planning.auto_split`).
        seed: seeds the per-image generators (as ``restore --seed``).
        budget_nfe, deadline_s: optional caps (see :meth:`NestedSampler.iterate`).
        center_crop: centre-crop the input to N×N first (None: the whole image); for ``generate``
            the size of the generated image.
        compare_vanilla: also run the solver alone for K·I steps and show its x̂0 at equal NFE.
    """

    task: str = "sr4"
    sigma_y: float = 0.0
    degraded: bool = False
    method: str = "ddrm"
    outer: int | None = None
    inner: int | None = None
    seed: int = 0
    budget_nfe: int | None = None
    deadline_s: float | None = None
    center_crop: int | None = 64
    compare_vanilla: bool = False
    method_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma_y, (int, float)) and math.isfinite(self.sigma_y)
                and self.sigma_y >= 0):
            raise UsageError(f"`sigma_y`={self.sigma_y!r} must be a number >= 0 on the [0, 1] "
                             "scale (0.05 = 5 % of the range)")
        if self.method not in solvers.available():
            raise UsageError(f"`method`={self.method!r} is not a solver; one of: "
                             f"{', '.join(solvers.available())}")
        for name in ("seed", "budget_nfe", "center_crop"):
            value = getattr(self, name)
            low = 0 if name == "seed" else 1
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < low):
                raise UsageError(f"`{name}`={value!r} must be an integer >= {low}"
                                 + ("" if name == "seed" else " (or empty for none)"))
        if self.deadline_s is not None and not (math.isfinite(self.deadline_s)
                                                and self.deadline_s > 0):
            raise UsageError(f"`deadline_s`={self.deadline_s!r} must be a number of seconds > 0 "
                             "(or empty for none)")
        self.config()  # outer, inner and the method's parameters

    def config(self, vanilla: bool = False) -> SamplerConfig:
        """The sampler: nested K×I (the default policy's when unset), or (``vanilla``) the
        solver alone for as many evaluations as the nested run spends."""
        nested = SamplerConfig(method=self.method, method_args=dict(self.method_args),
                               outer=self.outer, inner=self.inner, budget_nfe=self.budget_nfe)
        if not vanilla:
            return nested
        return SamplerConfig(method=self.method, method_args=dict(self.method_args),
                             vanilla=True, steps=nested.budget)


@dataclass
class Job:
    """One run, ready to start.

    Attributes:
        settings, source: what was asked.
        task: the degradation (None for generation).
        problem: the observation and operator, on the prior's device (None for generation).
        clean: the clean image ``[1, 3, H, W]`` in [0, 1] when the page degraded it (for PSNR).
        image_shape: ``(1, 3, H, W)`` of the result.
        seeds: the per-image seeds (``operator``, ``noise``, ``sample``), as in the CLI's record.
        device: where the prior runs (and the problem lives).
    """

    settings: Settings
    source: Source
    task: Task | None
    problem: Problem | None
    clean: Tensor | None
    image_shape: tuple[int, ...]
    seeds: dict[str, int]
    device: torch.device = torch.device("cpu")

    def generator(self, index: int = 0) -> list[torch.Generator]:
        """The sampling generators of sample ``index`` (0: the run; 1, 2 …: extra samples for the
        uncertainty map), one per image as the command line makes them."""
        return [image_generator(self.settings.seed, self.source.name, "sample", index)]

    def sampler(self, prior: Prior, vanilla: bool = False) -> NestedSampler | VanillaSampler:
        """The nested sampler of the run (or the vanilla one beside it) around ``prior``."""
        s = self.settings
        if self.problem is None:
            ddim = DDIM(prior, self.image_shape, device=self.device)
            split = s.config()
            if vanilla:
                return VanillaSampler(ddim, split.budget)
            return NestedSampler(ddim, split.outer, split.inner)
        config = s.config(vanilla)
        return config.sampler(config.solver(prior, self.problem))


def prepare(settings: Settings, source: Source | None, device: torch.device | str = "cpu") -> Job:
    """The :class:`Job` for ``settings`` on ``source`` (None only for generation); every mistake
    raises :class:`UsageError` before any evaluation."""
    s, device = settings, torch.device(device)
    if s.task == GENERATE:
        size = s.center_crop or 64
        name = source.name if source is not None else "generated.png"
        seeds = {"sample": image_seed(s.seed, name, "sample", 0)}
        return Job(s, source or Source(name, torch.zeros(1, 3, size, size)), None, None, None,
                   (1, 3, size, size), seeds, device)
    if source is None:
        raise UsageError("`image`: no image given; upload one or pick an example")
    if s.task == INPAINT_MASK and source.mask is None:
        raise UsageError("`task`='inpaint-mask' needs a mask: paint the region to fill on the image "
                         "or upload a mask file (white = observed)")
    task = resolve_task(None, mask=source.mask) if s.task == INPAINT_MASK else resolve_task(s.task)
    factor, in_channels, obs_channels = task.geometry()
    rel = source.name
    seeds = {"operator": image_seed(s.seed, rel, "operator"),
             "noise": image_seed(s.seed, rel, "noise"),
             "sample": image_seed(s.seed, rel, "sample", 0)}
    task = _cropped_mask(task, s.center_crop)
    if not s.degraded:
        x01 = prepare_clean(source.image, factor, s.center_crop, f"`image` {rel!r}")
        op = _make(task, x01.shape[1:], image_generator(s.seed, rel, "operator"))
        problem = Problem.degrade(x01, op, s.sigma_y,
                                  generator=[image_generator(s.seed, rel, "noise")])
        return Job(s, source, task, problem.to(device), x01, tuple(x01.shape), seeds, device)
    if factor == 0:
        raise UsageError(f"`task`={task.name!r}: the restored image's size cannot be inferred from an "
                         "observation; untick 'already degraded' and give the clean image")
    y01 = source.image if obs_channels == 3 else _luma(source.image)
    y01 = prepare_clean(y01, 1, s.center_crop, f"`image` {rel!r}")  # the crop alone
    shape = (in_channels, y01.shape[-2] * factor, y01.shape[-1] * factor)
    op = _make(task, shape, None)
    expected = tuple(op.output_shape(shape))
    if expected != tuple(y01.shape[1:]):
        raise UsageError(f"`image` {rel!r} of shape {tuple(y01.shape[1:])} is not an observation of "
                         f"`task`={task.name!r} (that gives {expected} for {shape} images)")
    problem = Problem(y01, op, s.sigma_y)
    return Job(s, source, task, problem.to(device), None, (1, *shape), seeds, device)


def _luma(x: Tensor) -> Tensor:
    """ITU-R 601 luma ``[B, 1, H, W]`` of ``x: [B, 3, H, W]``, as ``load_image(mode="L")`` reads a
    file for the command line's grey observations."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _cropped_mask(task: Task, crop: int | None) -> Task:
    if task.mask is None or crop is None:
        return task
    H, W = task.mask.shape
    if crop > min(H, W):
        raise UsageError(f"`mask` is {W}×{H} pixels, smaller than `center_crop` {crop}")
    return dataclasses.replace(task, mask=center_crop(task.mask, crop).contiguous())


def _make(task: Task, shape: Any, generator: Any) -> Any:
    try:
        return task.make(tuple(int(v) for v in shape), generator=generator)
    except (ValueError, RuntimeError) as err:
        raise UsageError(f"`task`={task.name!r} cannot apply to a {shape[2]}×{shape[1]} image: "
                         f"{' '.join(str(err).split())}") from err
