r"""A latent diffusion model (Stable Diffusion, DiT) as a :class:`~nested_inverse.LatentPrior`.

Latents are the VAE's, scaled: ``z = s_f·(E(x) − shift)`` with ``s_f = vae.config.scaling_factor``
(0.18215 for SD 1.x and DiT), images ``x = D(z/s_f + shift)`` in the model range [-1, 1]. In latent
space the forward process is ``z_t = √ᾱ_t·z0 + √(1−ᾱ_t)·ε`` with the scheduler's own ᾱ, and the
network output converts to ``(ẑ0, ε̂)`` by its prediction type (with ``a = ᾱ_t``):

- ``epsilon``:      ``ε̂ = net``,  ``ẑ0 = (z_t − √(1−a)·ε̂)/√a``
- ``v_prediction``: ``ẑ0 = √a·z_t − √(1−a)·v``,  ``ε̂ = √(1−a)·z_t + √a·v``
- ``sample``:       ``ẑ0 = net``,  ``ε̂ = (z_t − √a·ẑ0)/√(1−a)``

Conditioning is bound to the prior, not passed to solvers: :meth:`LatentDiffusionPrior.conditioned`
returns a :class:`~nested_inverse.priors.conditional.GuidedLatentPrior`, itself a ``LatentPrior``,
so every sampler and solver works unchanged.

References:
    Rombach, Blattmann, Lorenz, Esser, Ommer (2022). High-Resolution Image Synthesis with Latent
    Diffusion Models. arXiv:2112.10752.
    Peebles, Xie (2023). Scalable Diffusion Models with Transformers. arXiv:2212.09748.
    Salimans, Ho (2022). Progressive Distillation for Fast Sampling of Diffusion Models
    (v-prediction). arXiv:2202.00512.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from .conditional import (Condition, GuidedLatentPrior, check_scale, class_condition, class_ids,
                          prompt_condition)
from .diffusers import PREDICTION_TYPES, DiffusionPrior
from .schedule import alphas_cumprod_from_schedule
from .tiled import UNTILED_UP_TO

__all__ = ["LatentDiffusionPrior", "vae_tiling", "x0_eps_from_output"]


def x0_eps_from_output(out: Tensor, z_t: Tensor, a: Tensor, prediction_type: str) -> tuple[Tensor, Tensor]:
    r"""``(ẑ0, ε̂)`` from the network output ``out`` for ``z_t = √a·z0 + √(1−a)·ε``.

    ``out``, ``z_t``: ``[B, c, h, w]``; ``a``: ``ᾱ_t`` broadcastable (``[B, 1, 1, 1]``). Computed in
    the dtype of the arguments (callers pass float64).

    >>> a = torch.tensor(0.64, dtype=torch.float64)
    >>> x0_eps_from_output(torch.tensor([1.0]).double(), torch.tensor([2.0]).double(), a, "v_prediction")
    (tensor([1.], dtype=torch.float64), tensor([2.], dtype=torch.float64))
    """
    sa, s1a = a.sqrt(), (1 - a).sqrt()
    if prediction_type == "epsilon":
        return (z_t - s1a * out) / sa, out
    if prediction_type == "v_prediction":
        return sa * z_t - s1a * out, s1a * z_t + sa * out
    if prediction_type == "sample":
        return out, (z_t - sa * out) / s1a
    raise ValueError(f"`prediction_type`={prediction_type!r} is not supported; accepted: "
                     f"{', '.join(PREDICTION_TYPES)}")


class LatentDiffusionPrior(nn.Module):
    r"""A diffusers latent denoiser, its VAE and noise schedule (and text encoder), as a prior.

    Three kinds, from the denoiser:

    - ``"text"``: a ``UNet2DConditionModel`` (Stable Diffusion) with ``text_encoder`` and
      ``tokenizer`` (``CLIPTextModel``, ``CLIPTokenizer``): condition with ``prompt``;
    - ``"class"``: a ``DiTTransformer2DModel``: condition with ``class_label`` in
      ``[0, num_classes)``; the null class ``num_classes`` is the unconditional input;
    - ``"none"``: a ``UNet2DModel`` over latents (unconditional latent diffusion).

    ``predict`` of the prior itself is the unconditional model (empty prompt, null class, no
    guidance); :meth:`conditioned` binds a prompt or class and a guidance scale. The network runs
    in its own dtype and device; the conversion runs in float64 (float32 on MPS); outputs come back
    in ``z_t``'s dtype and device. A learned-variance output (DiT: ``out_channels = 2c``) keeps its
    first ``c`` channels, the mean's prediction.

    Args:
        denoiser: the network (see the kinds above).
        vae: a diffusers ``AutoencoderKL``.
        schedule: the noise schedule (a scheduler config; see
            :func:`~nested_inverse.priors.alphas_cumprod_from_schedule`).
        text_encoder, tokenizer: for ``"text"`` denoisers.
        prediction_type: ``"epsilon"``, ``"v_prediction"`` or ``"sample"``; default: the scheduler
            config's, else ``"epsilon"``.
        id2label: class names of a class-conditional model (DiT's ``model_index.json``).

    Shapes: ``z_t: [B, c, h, w]`` (``c = vae.config.latent_channels``), images ``[B, 3, f·h, f·w]``
    with the VAE factor ``f = 2^(len(vae.config.block_out_channels) − 1)`` (8 for SD and DiT).

    Example (a tiny random pipeline, so the numbers mean nothing):

    >>> import tempfile
    >>> from nested_inverse.priors import load_latent_pipeline
    >>> from nested_inverse.priors.tiny import save_tiny_dit
    >>> folder = tempfile.TemporaryDirectory()  # removed when it is garbage-collected
    >>> prior = load_latent_pipeline(save_tiny_dit(folder.name))
    >>> prior.kind, prior.num_classes, prior.latent_shape(2, 16, 16)
    ('class', 10, (2, 4, 8, 8))
    >>> guided = prior.conditioned(class_label=3, guidance_scale=4.0)
    >>> z0, eps = guided.predict(torch.randn(2, 4, 8, 8), 500)
    >>> guided.nfe, guided.network_images, tuple(guided.decode(z0).shape)
    (1, 4, (2, 3, 16, 16))
    """

    def __init__(
        self,
        denoiser: nn.Module,
        vae: nn.Module,
        schedule: Any,
        *,
        text_encoder: nn.Module | None = None,
        tokenizer: Any = None,
        prediction_type: str | None = None,
        id2label: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        config: Mapping[str, Any] = {}
        if hasattr(schedule, "config") and isinstance(getattr(schedule, "config"), Mapping):
            config = schedule.config
        elif isinstance(schedule, Mapping):
            config = schedule
        prediction_type = prediction_type or config.get("prediction_type", "epsilon")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"`prediction_type`={prediction_type!r} is not supported; accepted: "
                             f"{', '.join(PREDICTION_TYPES)}")
        self.kind: str = _kind(denoiser)
        if self.kind == "text" and (text_encoder is None or tokenizer is None):
            missing = "text_encoder" if text_encoder is None else "tokenizer"
            raise ValueError(f"`{missing}`=None but {type(denoiser).__name__} is text-conditional; "
                             "accepted: a CLIPTextModel and a CLIPTokenizer")
        if self.kind == "text" and denoiser.config.get("addition_embed_type") is not None:
            # SDXL-style UNets also need pooled text embeddings and size conditioning
            raise ValueError(f"`denoiser` has addition_embed_type="
                             f"{denoiser.config['addition_embed_type']!r} (an SDXL-style UNet), which "
                             "is not supported; accepted: SD 1.x/2.x UNet2DConditionModels")
        vae_config = getattr(vae, "config", None)
        if vae_config is None or "scaling_factor" not in vae_config:
            raise ValueError(f"`vae` ({type(vae).__name__}) has no diffusers config with "
                             "`scaling_factor`; expected a diffusers AutoencoderKL")
        self.denoiser = denoiser.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.text_encoder = None if text_encoder is None else text_encoder.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        # A plain attribute, not a buffer: `module.to(torch.float16)` must not round ᾱ_t.
        self.alphas_cumprod: Tensor = alphas_cumprod_from_schedule(schedule)
        self.prediction_type: str = prediction_type
        self.scheduler_config: dict[str, Any] = dict(config)
        self.id2label: dict[str, str] = dict(id2label or {})
        self.scaling_factor: float = float(vae_config["scaling_factor"])
        self.shift_factor: float = float(vae_config.get("shift_factor") or 0.0)
        self.latent_channels: int = int(vae_config["latent_channels"])
        self.vae_scale_factor: int = 2 ** (len(vae_config["block_out_channels"]) - 1)
        dconf = denoiser.config
        # What latent sides the denoiser takes: DiT a multiple of its patch; SD's UNet any (it
        # forwards the up-sampling sizes, as diffusers' pipelines rely on); UNet2DModel a multiple
        # of its down-sampling.
        self.network_factor: int = (int(dconf["patch_size"]) if self.kind == "class" else 1
                                    if self.kind == "text"
                                    else 2 ** (len(dconf["block_out_channels"]) - 1))
        size = dconf["sample_size"]
        self.sample_size: int = int(size[0] if isinstance(size, (list, tuple)) else size)
        self._abar_cache: dict[tuple[torch.device, torch.dtype], Tensor] = {}
        self._unconditional: GuidedLatentPrior | None = None

    # ---- properties ------------------------------------------------------------------------------

    @property
    def num_timesteps(self) -> int:
        return int(self.alphas_cumprod.numel())

    @property
    def num_classes(self) -> int | None:
        """Classes of a class-conditional model (its null class is this number), else None."""
        return int(self.denoiser.config["num_embeds_ada_norm"]) if self.kind == "class" else None

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the denoiser runs in."""
        return next(self.denoiser.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.denoiser.parameters()).device

    @property
    def default_image_size(self) -> int:
        """The side the model was trained at: ``sample_size·f`` (512 for SD 1.5, 256 for DiT-XL-2-256)."""
        return self.sample_size * self.vae_scale_factor

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, T={self.num_timesteps}, prediction_type={self.prediction_type!r}, "
                f"scaling_factor={self.scaling_factor}, dtype={self.dtype}")

    def latent_shape(self, batch: int, height: int | None = None, width: int | None = None
                     ) -> tuple[int, int, int, int]:
        """``[B, c, H/f, W/f]`` for images ``H×W`` (default: :attr:`default_image_size`).

        ``H`` and ``W`` must be multiples of ``f·g``, ``g`` the denoiser's own factor: DiT's patch
        size, a ``UNet2DModel``'s down-sampling, 1 for SD's UNet (it takes any latent size), so
        that latents pass the network without padding (8 for SD, 16 for DiT-XL/2).
        """
        multiple = self.vae_scale_factor * self.network_factor
        why = f"the VAE factor {self.vae_scale_factor}"
        if self.network_factor > 1:
            why += (f" × the {'patch size' if self.kind == 'class' else 'UNet factor'} "
                    f"{self.network_factor}")
        sizes = []
        for name, value in (("height", height), ("width", width)):
            value = self.default_image_size if value is None else value
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % multiple:
                raise ValueError(f"`{name}`={value!r} must be a positive multiple of {multiple} "
                                 f"({why}); e.g. {self.default_image_size}")
            sizes.append(value // self.vae_scale_factor)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"`num_images`={batch!r} must be an integer >= 1")
        return batch, self.latent_channels, sizes[0], sizes[1]

    # ---- conditioning ----------------------------------------------------------------------------

    def conditioned(
        self,
        prompt: str | Sequence[str] | None = None,
        negative_prompt: str | Sequence[str] | None = None,
        class_label: int | str | Sequence[int | str] | Tensor | None = None,
        guidance_scale: float = 1.0,
    ) -> GuidedLatentPrior:
        r"""This prior bound to a prompt or class, guided by ``ε_u + s·(ε_c − ε_u)``, as a
        :class:`~nested_inverse.LatentPrior`.

        Without ``prompt`` / ``class_label`` it is the unconditional model (the empty prompt, the
        null class), and ``guidance_scale`` must be 1. One prompt or label serves the whole batch,
        or give one per image. Labels may be class names (see :meth:`class_ids`).
        """
        given = {k: v for k, v in (("prompt", prompt), ("negative_prompt", negative_prompt),
                                   ("class_label", class_label)) if v is not None}
        accepted = {"text": "`prompt` (and `negative_prompt`)",
                    "class": f"`class_label` in [0, {self.num_classes})", "none": "no condition"}
        wrong = [k for k in given if (self.kind == "text" and k == "class_label")
                 or (self.kind == "class" and k != "class_label") or self.kind == "none"]
        if wrong:
            k = wrong[0]
            raise ValueError(f"`{k}`={given[k]!r} was given but this prior is {self._kind_words()}; "
                             f"accepted: {accepted[self.kind]}")
        if prompt is None and class_label is None:
            if check_scale(guidance_scale) != 1.0:
                raise ValueError(f"`guidance_scale`={guidance_scale!r} needs a condition to guide "
                                 f"towards; accepted: {accepted[self.kind]}, or guidance_scale=1")
            if self.kind == "text":
                return GuidedLatentPrior(self, prompt_condition(self, "", None, 1.0))
            if self.kind == "class":
                null = torch.tensor([self.num_classes])
                return GuidedLatentPrior(self, Condition("class", null, None, 1.0, {"class_label": None}))
            return GuidedLatentPrior(self, Condition("none", None, None, 1.0, {}))
        if self.kind == "text":
            return GuidedLatentPrior(self, prompt_condition(self, prompt, negative_prompt, guidance_scale))
        return GuidedLatentPrior(self, class_condition(self.class_ids(class_label), self.num_classes,
                                                       guidance_scale))

    def class_ids(self, class_label: Any) -> Any:
        """``class_label`` with class names replaced by ids (see :func:`~.conditional.class_ids`)."""
        return class_ids(class_label, self.id2label, self.num_classes)

    def _kind_words(self) -> str:
        name = type(self.denoiser).__name__
        return {"text": f"text-conditional ({name})", "class": f"class-conditional ({name})",
                "none": f"unconditional ({name})"}[self.kind]

    @torch.no_grad()
    def encode_prompt(self, prompts: Sequence[str]) -> Tensor:
        """Text-encoder states ``[B, L, D]`` (the denoiser's dtype and device), as diffusers' SD
        pipeline: padded to ``model_max_length``, truncated, last hidden state."""
        tok = self.tokenizer
        ids = tok(list(prompts), padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids
        device = next(self.text_encoder.parameters()).device
        states = self.text_encoder(ids.to(device))[0]
        return states.to(device=self.device, dtype=self.dtype)

    # ---- the network and the conversion --------------------------------------------------------

    def timesteps_of(self, z_t: Tensor, t: int | Tensor) -> Tensor:
        """``t`` as int64 ``[B]`` after checking ``z_t`` and ``0 ≤ t < T``."""
        if z_t.dim() != 4 or z_t.shape[1] != self.latent_channels:
            raise ValueError(f"`z_t` must be latents [B, {self.latent_channels}, h, w], got shape "
                             f"{tuple(z_t.shape)}; images are mapped to latents by `encode`")
        # The same checks as the pixel prior: the function only reads `num_timesteps`.
        return DiffusionPrior._timesteps(self, t, z_t.shape[0])  # type: ignore[arg-type]

    def network(self, z_t: Tensor, t: Tensor, cond: Tensor | None) -> Tensor:
        r"""The raw output ``[B, c, h, w]`` for latents ``z_t``, timesteps ``int64 [B]`` and the
        conditioning input of :attr:`kind` (embeddings ``[B, L, D]``, labels ``[B]`` or None);
        ``z_t``'s device, float32 or wider."""
        dev, dtype = self.device, self.dtype
        x, t = z_t.to(device=dev, dtype=dtype), t.to(dev)
        if self.kind == "text":
            out = self.denoiser(x, t, encoder_hidden_states=cond.to(dev, dtype)).sample
        elif self.kind == "class":
            out = self.denoiser(x, timestep=t, class_labels=cond.to(dev)).sample
        else:
            out = self.denoiser(x, t).sample
        if out.shape[1] == 2 * self.latent_channels:  # learned variance (DiT): keep the mean's part
            out = out[:, : self.latent_channels]
        return out.to(device=z_t.device, dtype=torch.promote_types(z_t.dtype, torch.float32))

    def _abar(self, t: Tensor, device: torch.device) -> Tensor:
        dtype = torch.float32 if device.type == "mps" else torch.float64
        key = (device, dtype)
        if key not in self._abar_cache:
            self._abar_cache[key] = self.alphas_cumprod.to(device=device, dtype=dtype)
        return self._abar_cache[key][t.to(device)].view(-1, 1, 1, 1)

    def convert(self, out: Tensor, z_t: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(ẑ0, ε̂)`` in ``z_t``'s dtype from the raw output (see :func:`x0_eps_from_output`)."""
        a = self._abar(t, z_t.device)
        z0, eps = x0_eps_from_output(out.to(a.dtype), z_t.to(a.dtype), a, self.prediction_type)
        return z0.to(z_t.dtype), eps.to(z_t.dtype)

    def predict(self, z_t: Tensor, t: int | Tensor) -> tuple[Tensor, Tensor]:
        """The unconditional ``(ẑ0, ε̂)`` (empty prompt / null class); see :meth:`conditioned`."""
        if self._unconditional is None:
            self._unconditional = self.conditioned()
        return self._unconditional.predict(z_t, t)

    def forward(self, z_t: Tensor, t: int | Tensor) -> tuple[Tensor, Tensor]:
        return self.predict(z_t, t)

    # ---- latents ↔ images ------------------------------------------------------------------------

    def decode(self, z: Tensor) -> Tensor:
        r"""Images ``x = D(z/s_f + shift)`` ``[B, 3, f·h, f·w]`` in the model range (not clamped,
        so gradients pass), in ``z``'s device and at least float32. Differentiable in ``z``."""
        vdev, vdtype = _param(self.vae)
        with vae_tiling(self.vae, max(z.shape[-2:]) * self.vae_scale_factor):
            x = self.vae.decode((z / self.scaling_factor + self.shift_factor).to(vdev, vdtype)).sample
        return x.to(device=z.device, dtype=torch.promote_types(z.dtype, torch.float32))

    def encode(self, x: Tensor) -> Tensor:
        r"""Latents ``z = s_f·(mean E(x) − shift)`` ``[B, c, H/f, W/f]`` of images ``x`` in [-1, 1]
        (the posterior mean, deterministic), in ``x``'s device and at least float32."""
        if x.dim() != 4 or x.shape[-1] % self.vae_scale_factor or x.shape[-2] % self.vae_scale_factor:
            raise ValueError(f"`x` must be images [B, 3, H, W] with H and W multiples of the VAE "
                             f"factor {self.vae_scale_factor}, got shape {tuple(x.shape)}")
        vdev, vdtype = _param(self.vae)
        with vae_tiling(self.vae, max(x.shape[-2:])):
            mean = self.vae.encode(x.to(vdev, vdtype)).latent_dist.mean
        z = (mean - self.shift_factor) * self.scaling_factor
        return z.to(device=x.device, dtype=torch.promote_types(x.dtype, torch.float32))

    # ---- loading (the folder layout lives in pipelines.py) --------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], **kwargs: Any) -> "LatentDiffusionPrior":
        """Same as :func:`~nested_inverse.priors.load_latent_pipeline`."""
        from .pipelines import load_latent_pipeline

        return load_latent_pipeline(path, **kwargs)


@contextmanager
def vae_tiling(vae: nn.Module, side: int) -> Iterator[bool]:
    """diffusers' tiled VAE (``enable_tiling``: tiles of the VAE's ``sample_size`` pixels, blended
    over a quarter of a tile) for an image whose longer ``side`` exceeds ``UNTILED_UP_TO`` (2)
    times that size, as pixel priors tile (:func:`~nested_inverse.priors.tiled_for`): memory stays
    bounded on large images; smaller ones decode whole, unchanged (tiles shift tones slightly,
    from the decoder's per-tile group norms). Yields whether it tiles; a VAE without
    ``enable_tiling``, or one whose tiling its owner already enabled, is left as it is."""
    size = getattr(vae, "tile_sample_min_size", None)
    size = min(size) if isinstance(size, (tuple, list)) else size
    if (not size or not hasattr(vae, "enable_tiling") or getattr(vae, "use_tiling", False)
            or side <= UNTILED_UP_TO * size):
        yield False
        return
    vae.enable_tiling()
    try:
        yield True
    finally:
        vae.disable_tiling()


def _param(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(module.parameters())
    return p.device, p.dtype


def _kind(denoiser: nn.Module) -> str:
    config = getattr(denoiser, "config", None)
    if config is None:
        raise ValueError(f"`denoiser` ({type(denoiser).__name__}) has no diffusers config; expected "
                         "a UNet2DConditionModel, DiTTransformer2DModel or UNet2DModel")
    if config.get("cross_attention_dim") is not None and "block_out_channels" in config:
        return "text"
    if config.get("norm_type") == "ada_norm_zero" and config.get("num_embeds_ada_norm"):
        return "class"
    if "block_out_channels" in config:
        return "none"
    raise ValueError(f"`denoiser` ({type(denoiser).__name__}) is not supported; accepted: "
                     "UNet2DConditionModel (prompts), DiTTransformer2DModel (classes), UNet2DModel")
