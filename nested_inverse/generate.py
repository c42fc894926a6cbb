r"""Anytime generation with a latent diffusion model: nested DDIM in latent space, an image after
every outer step.

The nested sampler (Elata et al.) runs over latents ``z`` of a conditional latent prior: at outer
timestep ``τ_k`` an inner DDIM run of ``I`` guided evaluations from ``z_τk`` gives ``ẑ0_k``, which
is decoded, ``x_k = D(ẑ0_k)``, and shown, and serves as the ``x̂0`` of the outer DDIM step to
``τ_{k+1}``. Each evaluation is guided, ``ε̂ = ε_u + s·(ε_c − ε_u)`` (one batched pass of ``2B``
latents = one NFE). Decoding happens outside the evaluation count and is timed apart
(``decode_s``): it is what an anytime result costs beyond the sampler.

References:
    Elata, Kawar, Michaeli, Elad, "Nested Diffusion Processes for Anytime Image Generation",
    2023, arXiv 2305.19066.
    Ho, Salimans (2022). Classifier-Free Diffusion Guidance. arXiv:2207.12598.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from operators.random import Generators

from .anytime import AnytimeResult, AnytimeRun
from .guidance import Edit
from .nested import NestedSampler
from .priors.conditional import GuidedLatentPrior
from .priors.latent import LatentDiffusionPrior
from .seeds import check_seed, image_seeds
from .service import display
from .solvers import DDIM
from .vanilla import VanillaSampler

__all__ = ["DEFAULT_GUIDANCE", "GENERATION_ETA", "GeneratedStep", "Generation", "GenerationRun",
           "default_guidance", "generate", "generation_run", "generation_sampler"]

#: guidance scales used when a condition is given without one (diffusers' pipeline defaults)
DEFAULT_GUIDANCE = {"text": 7.5, "class": 4.0}

#: The inner DDIM η of nested generation (Elata et al., 2023, as DDIM's own default).
GENERATION_ETA = 0.85


def default_guidance(kind: str | None, conditioned: bool) -> float:
    """The guidance scale when none is given: :data:`DEFAULT_GUIDANCE` for a conditioned
    generation by a ``text`` or ``class`` pipeline, 1 (no guidance) otherwise."""
    return DEFAULT_GUIDANCE.get(kind or "", 1.0) if conditioned else 1.0


def generation_sampler(prior: Any, shape: Sequence[int], outer_steps: int, inner_steps: int, *,
                       vanilla: bool = False, steps: int | None = None,
                       eta: float = GENERATION_ETA, outer_eta: float = 0.0,
                       device: str | torch.device | None = None) -> NestedSampler | VanillaSampler:
    """Nested DDIM generation of ``shape`` (``[B, C, H, W]``, latents for a latent prior):
    ``outer_steps × inner_steps``, or (``vanilla``) DDIM alone for ``steps`` evaluations
    (default ``K·I``), the comparison at equal cost."""
    if vanilla:
        return VanillaSampler(DDIM(prior, shape, eta=eta, device=device),
                              steps if steps is not None else outer_steps * inner_steps)
    return NestedSampler.unconditional(prior, shape, outer_steps, inner_steps, eta=eta,
                                       outer_eta=outer_eta, device=device)


@dataclass
class GeneratedStep:
    """One anytime result of a generation.

    Attributes:
        image: the decoded images ``[B, 3, H, W]`` in [0, 1] (mid-grey before any evaluation).
        result: the latent-space result (``result.image`` is ``ẑ0`` ``[B, c, h, w]``; ``nfe``,
            ``outer_step``, ``elapsed_s`` as in every anytime stream).
        network_images: latents the network evaluated so far (``2·B·nfe`` with guidance).
        decode_s: seconds spent decoding this result (not part of ``result.elapsed_s`` budgets).
    """

    image: Tensor
    result: AnytimeResult
    network_images: int
    decode_s: float

    @property
    def nfe(self) -> int:
        return self.result.nfe

    @property
    def outer_step(self) -> int:
        return self.result.outer_step


class LatentStream:
    """A latent run's anytime stream seen in image space: each result goes through
    :meth:`_decoded`, and an ``Edit`` whose image is image-sized (``image_shape``, model range
    [-1, 1]) is encoded to latents before it reaches the run (a latent-sized one is passed as it
    is). Subclasses say what a decoded result is."""

    def __init__(self, run: AnytimeRun, prior: Any, image_shape: Sequence[int]) -> None:
        self.run, self.prior, self.image_shape = run, prior, tuple(image_shape)

    def __iter__(self) -> LatentStream:
        return self

    def __next__(self) -> Any:
        return self._decoded(next(self.run))

    def send(self, command: object) -> Any:
        if isinstance(command, Edit) and tuple(command.image.shape) == self.image_shape:
            with torch.no_grad():
                command = Edit(self.prior.encode(command.image))
        return self._decoded(self.run.send(command))

    def close(self) -> None:
        self.run.close()

    def _decoded(self, result: AnytimeResult) -> Any:
        raise NotImplementedError


class GenerationRun(LatentStream, Iterator[GeneratedStep]):
    """The anytime stream of a generation: :class:`GeneratedStep` after every outer step.

    ``send(command)`` passes guidance commands (:class:`~nested_inverse.Resample`,
    :class:`~nested_inverse.Stop`, :class:`~nested_inverse.SetInnerSteps`, :class:`~nested_inverse.Edit`)
    to the nested run. An ``Edit`` whose image is image-sized (``[B, 3, H, W]``, model range
    [-1, 1]) is encoded to latents first; a latent-sized one is used as it is.
    """

    def __init__(self, run: AnytimeRun, prior: GuidedLatentPrior, image_shape: Sequence[int],
                 sampler: NestedSampler | None = None) -> None:
        super().__init__(run, prior, image_shape)
        self.sampler = sampler
        self.decode_s = 0.0
        self.latest: GeneratedStep | None = None
        self._images0 = prior.network_images

    def _decoded(self, result: AnytimeResult) -> GeneratedStep:
        if self.latest is not None and self.latest.result is result:
            return self.latest
        if result.outer_step == 0 and result.nfe == 0:  # nothing estimated yet: nothing to decode
            image, seconds = torch.full(self.image_shape, 0.5, device=result.image.device), 0.0
        else:
            started = time.perf_counter()
            with torch.no_grad():
                image = display(self.prior, result.image).to(result.image.device)
            seconds = time.perf_counter() - started
        self.decode_s += seconds
        self.latest = GeneratedStep(image, result, self.prior.network_images - self._images0, seconds)
        return self.latest


@dataclass
class Generation:
    """A finished generation: the final images and every anytime step.

    Attributes:
        images: ``[B, 3, H, W]`` in [0, 1], the last step's.
        steps: every :class:`GeneratedStep`, the mid-grey start first.
        nfe: network evaluations per image (one guided pass counts once).
        network_images: latents the network evaluated (``2·B·nfe`` with guidance).
        decode_s: seconds spent decoding all steps.
        seconds: wall-clock seconds of the whole run, decoding included.
        condition: what the run was conditioned on (prompt / class, guidance scale).
        sampler: the nested sampler's settings.
    """

    images: Tensor
    steps: list[GeneratedStep]
    nfe: int
    network_images: int
    decode_s: float
    seconds: float
    condition: dict[str, Any] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)


def _bind(prior: Any, prompt: Any, negative_prompt: Any, class_label: Any,
          guidance_scale: float | None, torch_dtype: torch.dtype, device: Any
          ) -> tuple[GuidedLatentPrior, LatentDiffusionPrior]:
    if isinstance(prior, (str, os.PathLike)):
        from .priors.pipelines import load_latent_pipeline

        prior = load_latent_pipeline(prior, torch_dtype=torch_dtype, device=device)
    if isinstance(prior, GuidedLatentPrior):
        given = [k for k, v in (("prompt", prompt), ("negative_prompt", negative_prompt),
                                ("class_label", class_label), ("guidance_scale", guidance_scale))
                 if v is not None]
        if given:
            raise ValueError(f"`{given[0]}` was given but `prior` is already conditioned "
                             f"({prior.condition.describe}); accepted: an unconditioned "
                             "LatentDiffusionPrior with the condition, or no condition")
        return prior, prior.prior
    if not isinstance(prior, LatentDiffusionPrior):
        raise ValueError(f"`prior` must be a LatentDiffusionPrior, a GuidedLatentPrior or a pipeline "
                         f"folder, got {type(prior).__name__}")
    if guidance_scale is None:
        guidance_scale = default_guidance(prior.kind, prompt is not None or class_label is not None)
    return prior.conditioned(prompt=prompt, negative_prompt=negative_prompt,
                             class_label=class_label, guidance_scale=guidance_scale), prior


def _refuse_removed(removed: dict[str, Any], where: str) -> None:
    """A clear error for keyword arguments ``where`` does not take (``dtype``: its old second
    spelling of the dtype, next to ``torch_dtype``)."""
    if "dtype" in removed:
        raise TypeError(f"{where}() takes no `dtype`: pass `torch_dtype` (the dtype a pipeline "
                        "folder is loaded in, as diffusers); the latents are sampled in float32")
    if removed:
        raise TypeError(f"{where}() got an unexpected keyword argument {next(iter(removed))!r}")


def generation_run(
    prior: LatentDiffusionPrior | GuidedLatentPrior | str | os.PathLike[str],
    prompt: str | Sequence[str] | None = None,
    *,
    class_label: int | str | Sequence[int | str] | None = None,
    negative_prompt: str | Sequence[str] | None = None,
    guidance_scale: float | None = None,
    outer_steps: int = 4,
    inner_steps: int = 5,
    num_images: int = 1,
    height: int | None = None,
    width: int | None = None,
    eta: float = GENERATION_ETA,
    outer_eta: float = 0.0,
    seed: int = 0,
    generator: Generators = None,
    budget_nfe: int | None = None,
    deadline_s: float | None = None,
    torch_dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    **removed: Any,
) -> GenerationRun:
    """The anytime stream of :func:`generate` (same arguments), for front ends that show each
    step and send guidance commands between them."""
    _refuse_removed(removed, "generation_run")
    guided, base = _bind(prior, prompt, negative_prompt, class_label, guidance_scale, torch_dtype,
                         device)
    shape = base.latent_shape(num_images, height, width)
    f = base.vae_scale_factor
    image_shape = (shape[0], 3, shape[2] * f, shape[3] * f)
    for name, cond in (("prompt", prompt), ("class_label", class_label)):
        n = 1 if cond is None or isinstance(cond, (str, int)) else len(cond)
        if n not in (1, num_images):
            raise ValueError(f"`{name}` has {n} entries but `num_images`={num_images}; accepted: one "
                             "for all images or one per image")
    if generator is None:  # image i: seed + i (nested_inverse.seeds), as the page seeds image 0
        generator = [s.generator("sample") for s in image_seeds(check_seed(seed), num_images)]
    sampler = generation_sampler(guided, shape, outer_steps, inner_steps, eta=eta,
                                 outer_eta=outer_eta, device=base.device)
    return GenerationRun(sampler.iterate(generator, budget_nfe, deadline_s), guided, image_shape,
                         sampler)


def generate(
    prior: LatentDiffusionPrior | GuidedLatentPrior | str | os.PathLike[str],
    prompt: str | Sequence[str] | None = None,
    *,
    class_label: int | str | Sequence[int | str] | None = None,
    negative_prompt: str | Sequence[str] | None = None,
    guidance_scale: float | None = None,
    outer_steps: int = 4,
    inner_steps: int = 5,
    num_images: int = 1,
    height: int | None = None,
    width: int | None = None,
    eta: float = GENERATION_ETA,
    outer_eta: float = 0.0,
    seed: int = 0,
    generator: Generators = None,
    budget_nfe: int | None = None,
    deadline_s: float | None = None,
    torch_dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    callback: Callable[[GeneratedStep], None] | None = None,
    **removed: Any,
) -> Generation:
    r"""Generate images with nested diffusion over a latent prior; a decoded image after every
    outer step.

    Args:
        prior: a :class:`~nested_inverse.priors.LatentDiffusionPrior`, an already conditioned
            :class:`~nested_inverse.priors.GuidedLatentPrior`, or a pipeline folder.
        prompt: the text (text-conditional priors); a list gives one per image.
        class_label: the class in ``[0, num_classes)`` or its name in ``id2label``
            (class-conditional priors, DiT); a list gives one per image.
        negative_prompt: the unconditional text of guidance (default ``""``).
        guidance_scale: ``s`` of ``ε_u + s·(ε_c − ε_u)``; default 7.5 with a prompt, 4 with a class
            (diffusers' defaults), 1 without a condition. ``s = 1`` runs no unconditional pass.
        outer_steps, inner_steps: ``K`` outer steps of ``I`` inner DDIM evaluations (``K·I`` NFE).
        num_images, height, width: ``B`` images of ``H×W`` pixels (default: the model's size;
            multiples of the VAE factor, times DiT's patch size: 8 for SD, 16 for DiT-XL/2).
        eta, outer_eta: inner and outer DDIM η (:data:`GENERATION_ETA` = 0.85 and 0, as Elata
            et al.).
        seed, generator: one ``torch.Generator`` per image, image ``i`` seeded ``seed + i`` by
            the rule of :mod:`nested_inverse.seeds` (as the page and ``restore``), unless given.
        budget_nfe, deadline_s: the nested sampler's budget and deadline policies.
        torch_dtype, device: for loading a folder given as ``prior`` (as diffusers'
            ``torch_dtype``); the sampler's latents are float32 whatever the network's dtype.
        callback: called with each :class:`GeneratedStep` as it arrives.

    Returns:
        :class:`Generation` with the final images ``[B, 3, H, W]`` in [0, 1].

    Example (a tiny random pipeline, so the pictures are noise):

    >>> import tempfile
    >>> import nested_inverse as ni
    >>> from nested_inverse.priors.tiny import save_tiny_dit
    >>> folder = tempfile.TemporaryDirectory()
    >>> prior = ni.load_latent_pipeline(save_tiny_dit(folder.name))
    >>> out = ni.generate(prior, class_label=3, outer_steps=2, inner_steps=3, height=16, width=16)
    >>> out.images.shape, out.nfe, out.network_images, [s.nfe for s in out.steps]
    (torch.Size([1, 3, 16, 16]), 6, 12, [0, 3, 6])
    """
    _refuse_removed(removed, "generate")
    started = time.perf_counter()
    run = generation_run(
        prior, prompt, class_label=class_label, negative_prompt=negative_prompt,
        guidance_scale=guidance_scale, outer_steps=outer_steps, inner_steps=inner_steps,
        num_images=num_images, height=height, width=width, eta=eta, outer_eta=outer_eta, seed=seed,
        generator=generator, budget_nfe=budget_nfe, deadline_s=deadline_s,
        torch_dtype=torch_dtype, device=device)
    steps = []
    for step in run:
        steps.append(step)
        if callback is not None:
            callback(step)
    last = steps[-1]
    k = run.sampler
    sampler = {} if k is None else {"outer_steps": k.outer_steps, "inner_steps": k.inner_steps,
                                    "outer_eta": k.outer_eta, "eta": k.solver.eta,
                                    "outer_timesteps": list(k.timesteps)}
    return Generation(last.image, steps, last.nfe, last.network_images, run.decode_s,
                      time.perf_counter() - started, dict(run.prior.condition.describe), sampler)
