r"""Conditioning a denoiser on a prompt or a class, with classifier-free guidance.

With the conditional prediction ``ε_c = ε(z_t, t, c)`` and the unconditional one
``ε_u = ε(z_t, t, ∅)`` (the empty or negative prompt, or the null class), guidance uses

    ``ε̂ = ε_u + s·(ε_c − ε_u)``

with guidance scale ``s`` (``s = 1``: the conditional model; ``s = 0``: the unconditional one).
The combination is applied to the raw network output (ε or v); the conversion to ``(x̂0, ε̂)`` is
affine in that output with weights that sum to one, so guiding v is the same as guiding ε.

Cost: both predictions come from one batched pass over ``2B`` latents, so a guided step is one
network evaluation (NFE, what budgets count) of ``2B`` network images; ``s = 1`` skips the
unconditional half (``B`` images).

References:
    Ho, Salimans (2022). Classifier-Free Diffusion Guidance. arXiv:2207.12598.
    Rombach et al. (2022). High-Resolution Image Synthesis with Latent Diffusion Models.
    arXiv:2112.10752.
    Peebles, Xie (2023). Scalable Diffusion Models with Transformers (DiT). arXiv:2212.09748.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .latent import LatentDiffusionPrior

__all__ = ["Condition", "GuidedLatentPrior", "class_condition", "class_ids", "guide",
           "prompt_condition"]


def guide(eps_u: Tensor, eps_c: Tensor, scale: float) -> Tensor:
    r"""Classifier-free guidance ``ε_u + s·(ε_c − ε_u)``; all tensors ``[B, c, h, w]``.

    >>> guide(torch.tensor([1.0]), torch.tensor([3.0]), 2.5)
    tensor([6.])
    """
    return eps_u + scale * (eps_c - eps_u)


@dataclass(frozen=True)
class Condition:
    """What the network is conditioned on, for a batch: ``cond`` and (for guidance) ``uncond``.

    Attributes:
        kind: ``"text"`` (embeddings ``[B or 1, L, D]`` for ``encoder_hidden_states``),
            ``"class"`` (labels ``int64 [B or 1]`` for ``class_labels``) or ``"none"``.
        cond: the conditional input (None for ``"none"``).
        uncond: the unconditional input (negative prompt / null class), None without guidance.
        guidance_scale: ``s``; 1 means no unconditional pass.
        describe: what the user asked for, for records (prompt, class, scale).
    """

    kind: str
    cond: Tensor | None
    uncond: Tensor | None
    guidance_scale: float
    describe: dict[str, Any]

    @property
    def guided(self) -> bool:
        """Whether a step runs the unconditional pass too (``s ≠ 1``)."""
        return self.uncond is not None


def _as_list(name: str, value: str | Sequence[str]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"`{name}`={value!r} must be a string or a non-empty list of strings")


def check_scale(guidance_scale: float) -> float:
    """``guidance_scale`` as a float after checking it is finite and ≥ 0."""
    if isinstance(guidance_scale, bool) or not isinstance(guidance_scale, (int, float)) \
            or not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise ValueError(f"`guidance_scale`={guidance_scale!r} must be a finite number >= 0 "
                         "(1 = no guidance, 7.5 is Stable Diffusion's usual value, 4 DiT's)")
    return float(guidance_scale)


def prompt_condition(
    prior: LatentDiffusionPrior,
    prompt: str | Sequence[str],
    negative_prompt: str | Sequence[str] | None,
    guidance_scale: float,
) -> Condition:
    r"""Text embeddings ``[B or 1, L, D]`` of ``prompt`` (and of ``negative_prompt``, default ``""``).

    As diffusers' StableDiffusionPipeline: tokens padded to ``tokenizer.model_max_length``, the
    text encoder's last hidden state. A single negative prompt serves every prompt.
    """
    scale = check_scale(guidance_scale)
    prompts = _as_list("prompt", prompt)
    cond = prior.encode_prompt(prompts)
    uncond = None
    if scale != 1.0:
        negatives = _as_list("negative_prompt", "" if negative_prompt is None else negative_prompt)
        if len(negatives) not in (1, len(prompts)):
            raise ValueError(f"`negative_prompt` has {len(negatives)} entries but `prompt` has "
                             f"{len(prompts)}; accepted: one negative prompt or one per prompt")
        uncond = prior.encode_prompt(negatives)
    elif negative_prompt is not None:
        raise ValueError(f"`negative_prompt`={negative_prompt!r} needs guidance: with "
                         "`guidance_scale`=1 no unconditional pass is made; accepted: a scale "
                         "other than 1, or no negative prompt")
    info = {"prompt": prompt, "negative_prompt": negative_prompt, "guidance_scale": scale}
    return Condition("text", cond, uncond, scale, info)


def class_ids(class_label: Any, id2label: dict[str, str], num_classes: int) -> Any:
    """``class_label`` with class names replaced by their ids; other values unchanged.

    Names are those of ``id2label`` (DiT's ``model_index.json``: each entry's comma-separated
    synonyms), matched case-insensitively, as diffusers' ``DiTPipeline.get_label_ids``.

    >>> class_ids(["Goldfish", "tench", 1], {"0": "tench, Tinca tinca", "1": "goldfish"}, 2)
    [1, 0, 1]
    """
    names = [class_label] if isinstance(class_label, str) else class_label
    if not isinstance(names, (list, tuple)) or not any(isinstance(n, str) for n in names):
        return class_label
    lookup = {syn.strip().lower(): int(i) for i, label in id2label.items()
              for syn in str(label).split(",")}
    ids = []
    for name in names:
        if isinstance(name, str) and name.strip().lower() not in lookup:
            known = ", ".join(repr(v) for v in list(id2label.values())[:3])
            raise ValueError(f"`class_label`={name!r} is not a class name of this prior; accepted: "
                             f"integers in [0, {num_classes}) or names from its id2label "
                             f"({known + ', …' if known else 'none given'})")
        ids.append(lookup[name.strip().lower()] if isinstance(name, str) else name)
    return ids[0] if isinstance(class_label, str) else ids


def class_condition(
    class_label: int | Sequence[int] | Tensor, num_classes: int, guidance_scale: float
) -> Condition:
    r"""Class labels ``int64 [B or 1]`` in ``[0, num_classes)``; the null class ``num_classes``
    (DiT's label dropout embedding) is the unconditional input."""
    scale = check_scale(guidance_scale)
    labels = torch.as_tensor(class_label).flatten()
    if labels.numel() == 0 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"`class_label`={class_label!r} must be an integer or a list of integers "
                         f"in [0, {num_classes})")
    labels = labels.to(torch.int64)
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        raise ValueError(f"`class_label`={int(labels[bad][0])} is out of range; accepted: integers "
                         f"in [0, {num_classes}) ({num_classes} is the null class guidance uses)")
    uncond = None if scale == 1.0 else torch.full_like(labels[:1], num_classes)
    info = {"class_label": labels.tolist(), "guidance_scale": scale}
    return Condition("class", labels, uncond, scale, info)


def _batch(c: Tensor, n: int) -> Tensor:
    """``c`` ``[1 or n, …]`` expanded to ``n`` rows."""
    if c.shape[0] == n:
        return c
    if c.shape[0] == 1:
        return c.expand(n, *c.shape[1:])
    raise ValueError(f"the condition has {c.shape[0]} entries but the latents have batch size {n}; "
                     "accepted: one condition for all, or one per latent")


class GuidedLatentPrior:
    r"""A :class:`LatentDiffusionPrior` bound to a :class:`Condition`: a plain
    :class:`~nested_inverse.LatentPrior` whose ``predict`` is guided.

    ``predict(z_t, t)``: one network pass; with guidance over ``[z_t; z_t]`` (``2B`` latents) with
    inputs ``[uncond; cond]``, then ``out = out_u + s·(out_c − out_u)``, converted to
    ``(ẑ0, ε̂)`` by the prior's prediction type. ``decode`` and ``encode`` are the prior's.

    Counters (reset with :meth:`reset_counts`): ``nfe``, network passes (one per ``predict``, as a
    batch runs in parallel: the unit budgets count); ``network_images``, latents the network
    evaluated (``2B`` per guided pass, ``B`` otherwise). ``images_per_latent`` is 2 or 1.

    Shapes: ``z_t: [B, c, h, w]``, ``t``: int or ``[B]``; outputs ``[B, c, h, w]``.
    """

    def __init__(self, prior: LatentDiffusionPrior, condition: Condition) -> None:
        self.prior = prior
        self.condition = condition
        self.alphas_cumprod = prior.alphas_cumprod
        self.nfe = 0
        self.network_images = 0

    @property
    def images_per_latent(self) -> int:
        """Network images per latent and pass: 2 with guidance, 1 without."""
        return 2 if self.condition.guided else 1

    def reset_counts(self) -> None:
        self.nfe = 0
        self.network_images = 0

    def __repr__(self) -> str:
        return f"GuidedLatentPrior({self.condition.describe}, prior={type(self.prior).__name__})"

    def predict(self, z_t: Tensor, t: int | Tensor) -> tuple[Tensor, Tensor]:
        prior, c = self.prior, self.condition
        tt = prior.timesteps_of(z_t, t)
        n = z_t.shape[0]
        if not c.guided:
            cond = None if c.cond is None else _batch(c.cond, n)
            out = prior.network(z_t, tt, cond)
        else:
            both = torch.cat([_batch(c.uncond, n), _batch(c.cond, n)])
            out_u, out_c = prior.network(torch.cat([z_t, z_t]), torch.cat([tt, tt]), both).chunk(2)
            out = guide(out_u, out_c, c.guidance_scale)
        self.nfe += 1
        self.network_images += n * self.images_per_latent
        return prior.convert(out, z_t, tt)

    def decode(self, z: Tensor) -> Tensor:
        return self.prior.decode(z)

    def encode(self, x: Tensor) -> Tensor:
        return self.prior.encode(x)
