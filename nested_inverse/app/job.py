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
from ..errors import UsageError
from ..vanilla import VanillaSampler
from ..nested import NestedSampler
from ..priors import Prior
from ..problem import Problem
from ..sampling import SamplerConfig
from ..generate import default_guidance, generation_sampler
from ..solvers.latent import is_latent_prior
from ..seeds import ImageSeeds
from ..service import prepare_image
from ..tasks import Task, resolve_task
from .inputs import Source

__all__ = ["DEFAULT_MAX_SIDE", "GENERATE", "INPAINT_MASK", "Job", "Settings", "prepare"]

#: The page's default for the longer side of a restoration: the whole upload, downscaled to this
#: (the bundled prior covers it with 20 tiles: about a minute for 20 evaluations on two CPU
#: cores; the page shows its estimate for the settings).
DEFAULT_MAX_SIDE = 256

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
        max_side: downscale so the restoration's longer side is at most N pixels (None: the
            image at its own size), as ``restore --max-side``.
        compare_vanilla: also run the solver alone for K·I steps and show its x̂0 at equal NFE.
        prompt, negative_prompt: the text that steers a text-conditional latent pipeline (Stable
            Diffusion): what ``generate`` draws, or what a restoration is pulled towards.
        class_label: the class of a class-conditional latent pipeline (DiT): an id in
            ``[0, num_classes)`` or a name from its ``id2label``.
        guidance_scale: classifier-free guidance ``s``; None: 7.5 with a prompt and 4 with a class
            for ``generate`` (diffusers' defaults), 1 for restorations (as ``restore --prompt``).
        These four need a latent pipeline as the served prior (checked by :func:`prepare`).
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
    center_crop: int | None = None
    max_side: int | None = DEFAULT_MAX_SIDE
    compare_vanilla: bool = False
    method_args: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None
    negative_prompt: str | None = None
    class_label: int | str | None = None
    guidance_scale: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.sigma_y, (int, float)) and math.isfinite(self.sigma_y)
                and self.sigma_y >= 0):
            raise UsageError(f"`sigma_y`={self.sigma_y!r} must be a number >= 0 on the [0, 1] "
                             "scale (0.05 = 5 % of the range)")
        if self.method not in solvers.available():
            raise UsageError(f"`method`={self.method!r} is not a solver; one of: "
                             f"{', '.join(solvers.available())}")
        for name in ("seed", "budget_nfe", "center_crop", "max_side"):
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
        for name in ("prompt", "negative_prompt"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise UsageError(f"`{name}`={value!r} must be text (or empty for none)")
        c = self.class_label
        if c is not None and (isinstance(c, bool) or not isinstance(c, (int, str))
                              or (isinstance(c, int) and c < 0)):
            raise UsageError(f"`class_label`={c!r} must be a class id >= 0 or a class name "
                             "(or empty for none)")
        g = self.guidance_scale
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float))
                              or not math.isfinite(g) or g < 0):
            raise UsageError(f"`guidance_scale`={g!r} must be a finite number >= 0 (1 = no "
                             "guidance, 7.5 is Stable Diffusion's usual value, 4 DiT's), or empty "
                             "for the default")
        self.config()  # outer, inner and the method's parameters

    @property
    def steering(self) -> dict[str, Any]:
        """The conditioning fields that were given (prompt, negative_prompt, class_label,
        guidance_scale)."""
        return {k: v for k, v in (("prompt", self.prompt), ("negative_prompt", self.negative_prompt),
                                  ("class_label", self.class_label),
                                  ("guidance_scale", self.guidance_scale)) if v is not None}

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
        seeds: the image's seeds (:mod:`nested_inverse.seeds`: ``seed`` is image 0's).
        device: where the prior runs (and the problem lives).
        prior: with a latent pipeline, the prior bound to the settings' prompt or class
            (a :class:`~nested_inverse.priors.conditional.GuidedLatentPrior`) that the run
            samples; None for a pixel prior (the served one is used as it is).
        condition: with a latent pipeline, what the record notes of it (``prompt``,
            ``negative_prompt``, ``class_label``, ``guidance_scale``), else None.
    """

    settings: Settings
    source: Source
    task: Task | None
    problem: Problem | None
    clean: Tensor | None
    image_shape: tuple[int, ...]
    seeds: ImageSeeds
    device: torch.device = torch.device("cpu")
    prior: Any = None
    condition: dict[str, Any] | None = None

    @property
    def latent(self) -> bool:
        """The run samples latents (a latent pipeline is served): results are decoded to show."""
        return self.prior is not None

    def generator(self, index: int = 0) -> list[torch.Generator]:
        """The sampling generators of sample ``index`` (0: the run; 1, 2 …: extra samples for the
        uncertainty map), one per image as the command line makes them."""
        return [self.seeds.generator("sample", index)]

    def sampler(self, prior: Prior, vanilla: bool = False) -> NestedSampler | VanillaSampler:
        """The nested sampler of the run (or the vanilla one beside it) around ``prior``."""
        s = self.settings
        if self.problem is None and self.latent:
            base = _base(self.prior)
            if hasattr(base, "latent_shape"):
                shape = base.latent_shape(1, self.image_shape[-2], self.image_shape[-1])
            else:  # another LatentPrior: the latents its encoder gives for such an image
                with torch.no_grad():
                    shape = tuple(base.encode(torch.zeros(self.image_shape,
                                                          device=self.device)).shape)
        elif self.problem is None:
            shape = self.image_shape
        if self.problem is None:  # generation: nested DDIM, or DDIM alone at equal evaluations
            split = s.config()
            return generation_sampler(prior, shape, split.outer, split.inner, vanilla=vanilla,
                                      steps=split.budget, device=self.device)
        config = s.config(vanilla)
        return config.sampler(config.solver(prior, self.problem))


def prepare(settings: Settings, source: Source | None, device: torch.device | str = "cpu",
            prior: Any = None) -> Job:
    """The :class:`Job` for ``settings`` on ``source`` (None only for generation) with the served
    ``prior`` (None: not checked against it, as a pixel prior); every mistake raises
    :class:`UsageError` before any evaluation."""
    job = _prepare(settings, source, torch.device(device))
    if prior is None or not is_latent_prior(prior):
        given = settings.steering
        if given:
            k = next(iter(given))
            raise UsageError(f"`{k}`={given[k]!r} steers a latent pipeline (Stable Diffusion: "
                             "prompt; DiT: class), but the served prior is a pixel prior; leave "
                             f"it empty, or serve a pipeline folder (nested-inverse serve --prior "
                             "./stable-diffusion-v1-5)")
        if settings.task != GENERATE and settings.method in solvers.available(latent=True):
            raise UsageError(f"`method`={settings.method!r} is a latent solver, but the served prior "
                             f"is a pixel prior; one of: {', '.join(solvers.available(latent=False))}")
        return job
    if settings.task != GENERATE and settings.method not in solvers.available(latent=True):
        raise UsageError(f"`method`={settings.method!r} is a pixel solver, but the served prior is "
                         f"a latent pipeline; one of: {', '.join(solvers.available(latent=True))}")
    guided = _conditioned(prior, settings)
    _check_latent_size(_base(guided), job.image_shape, settings)
    condition = {"prompt": settings.prompt, "negative_prompt": settings.negative_prompt,
                 "class_label": settings.class_label,
                 "guidance_scale": getattr(getattr(guided, "condition", None), "guidance_scale",
                                           settings.guidance_scale)}
    return dataclasses.replace(job, prior=guided, condition=condition)


def _base(prior: Any) -> Any:
    """The :class:`LatentDiffusionPrior` under a guided one (or ``prior`` itself)."""
    return getattr(prior, "prior", prior) if not hasattr(prior, "conditioned") else prior


def _conditioned(prior: Any, s: Settings) -> Any:
    """The served latent prior bound to the settings' prompt or class and guidance scale."""
    if not callable(getattr(prior, "conditioned", None)):  # a latent prior without conditioning
        if s.steering:
            k = next(iter(s.steering))
            raise UsageError(f"`{k}`={s.steering[k]!r} was given but the served latent prior "
                             f"({type(prior).__name__}) takes no condition; leave it empty")
        return prior
    scale = s.guidance_scale
    if scale is None:  # restorations default to no guidance (as `restore --prompt`)
        conditioned = s.prompt is not None or s.class_label is not None
        scale = default_guidance(prior.kind, conditioned and s.task == GENERATE)
    label = s.class_label
    if isinstance(label, str) and label.strip().isdigit():
        label = int(label)
    try:
        return prior.conditioned(prompt=s.prompt, negative_prompt=s.negative_prompt,
                                 class_label=label, guidance_scale=scale)
    except (ValueError, IndexError) as err:
        raise UsageError(" ".join(str(err).split())) from err


def _check_latent_size(prior: Any, shape: tuple[int, ...], s: Settings) -> None:
    """Refuse images whose sides the pipeline cannot map to latents (the VAE factor, times DiT's
    patch size), naming the field that sets the size."""
    vae = int(getattr(prior, "vae_scale_factor", 1))
    net = int(getattr(prior, "network_factor", 1))
    f = vae * net
    H, W = shape[-2:]
    if not (H % f or W % f):
        return
    why = f"its VAE factor {vae}"
    if net > 1:
        why += f" × its {'patch size' if getattr(prior, 'kind', '') == 'class' else 'network factor'}"
        why += f" {net}"
    field_ = "center_crop" if s.center_crop is not None or s.task == GENERATE else "image"
    raise UsageError(f"`{field_}`: the image is {W}×{H} pixels, but the served latent pipeline "
                     f"needs sides that are multiples of {f} ({why}); e.g. a centre crop of "
                     f"{max(f, (min(H, W) // f) * f)}")


def _prepare(s: Settings, source: Source | None, device: torch.device) -> Job:
    seeds = ImageSeeds(s.seed)  # the page restores one image: index 0 of the seeding rule
    if s.task == GENERATE:
        size = s.center_crop or 64
        name = source.name if source is not None else "generated.png"
        return Job(s, source or Source(name, torch.zeros(1, 3, size, size)), None, None, None,
                   (1, 3, size, size), seeds, device)
    if source is None:
        raise UsageError("`image`: no image given; upload one or pick an example")
    if s.task == INPAINT_MASK and source.mask is None:
        raise UsageError("`task`='inpaint-mask' needs a mask: paint the region to fill on the image "
                         "or upload a mask file (white = observed)")
    task = resolve_task(None, mask=source.mask) if s.task == INPAINT_MASK else resolve_task(s.task)
    if s.degraded and task.geometry()[0] == 0:
        raise UsageError(f"`task`={task.name!r}: the restored image's size cannot be inferred from an "
                         "observation; untick 'already degraded' and give the clean image")
    prepared = prepare_image(source.image, task, seeds, sigma_y=s.sigma_y, degrade=not s.degraded,
                             center_crop=s.center_crop, max_side=s.max_side,
                             what=f"`image` {source.name!r}")
    problem = prepared.problem
    return Job(s, source, prepared.task, problem.to(device), prepared.clean,
               (1, *problem.image_shape[1:]), seeds, device)
