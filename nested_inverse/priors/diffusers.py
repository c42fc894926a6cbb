r"""A pretrained pixel-space diffusers UNet as a :class:`~nested_inverse.Prior`.

Under the variance-preserving forward process ``x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε`` a network trained
for one of the three diffusers prediction types is turned into the pair ``(x̂0, ε̂)`` that every
solver asks for (with ``a = ᾱ_t``):

- ``epsilon``:      ``ε̂ = net``,  ``x̂0 = (x_t − √(1−a)·ε̂)/√a``
- ``v_prediction``: ``x̂0 = √a·x_t − √(1−a)·v``,  ``ε̂ = √(1−a)·x_t + √a·v``
- ``sample``:       ``x̂0 = net``,  ``ε̂ = (x_t − √a·x̂0)/√(1−a)``

References:
    Ho, Jain, Abbeel (2020). Denoising Diffusion Probabilistic Models. arXiv:2006.11239.
    Salimans, Ho (2022). Progressive Distillation for Fast Sampling of Diffusion Models (v-prediction).
    arXiv:2202.00512.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..paths import default_prior_dir
from .schedule import alphas_cumprod_from_schedule

__all__ = ["PREDICTION_TYPES", "DiffusionPrior"]

#: the diffusers ``prediction_type`` values :class:`DiffusionPrior` converts
PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


class DiffusionPrior(nn.Module):
    r"""A diffusers ``UNet2DModel`` and its noise schedule, as a prior ``predict(x_t, t) -> (x̂0, ε̂)``.

    With ``a = ᾱ_t`` and ``x_t = √a·x0 + √(1−a)·ε`` (images in the model range [-1, 1]):

    - ``epsilon``:      ``x̂0 = (x_t − √(1−a)·ε̂)/√a``
    - ``v_prediction``: ``x̂0 = √a·x_t − √(1−a)·v``,  ``ε̂ = √(1−a)·x_t + √a·v``
    - ``sample``:       ``ε̂ = (x_t − √a·x̂0)/√(1−a)``

    With ``clip_x0`` the estimate is clamped to ``[−r, r]`` (``r = clip_sample_range``, usually 1)
    and ``ε̂`` is recomputed from the clamped ``x̂0`` so that ``x_t = √a·x̂0 + √(1−a)·ε̂`` still
    holds exactly.

    The network runs in its own dtype (float16 / bfloat16 when loaded so) on its own device; the
    conversion runs in float64 (float32 on MPS) and the outputs come back in ``x_t``'s dtype and
    device. Inputs whose height or width is not a multiple of the UNet's downsampling factor
    ``2^(len(block_out_channels) − 1)`` are reflect-padded and cropped back. Everything is
    differentiable with respect to ``x_t`` (ΠGDM and DPS backpropagate through it); the network's
    own parameters are frozen.

    Args:
        unet: a diffusers ``UNet2DModel`` (or any module called as ``unet(x, t).sample`` with a
            ``config`` holding ``in_channels`` and ``block_out_channels``).
        schedule: the noise schedule; see :func:`alphas_cumprod_from_schedule`.
        prediction_type: ``"epsilon"``, ``"v_prediction"`` or ``"sample"``; default: the scheduler
            config's ``prediction_type``, else ``"epsilon"``.
        clip_x0: clamp ``x̂0``; default: the scheduler config's ``clip_sample`` (diffusers' default
            True), False when ``schedule`` is not a scheduler config.
        chunk_size: run the network on at most this many images at a time (memory), None for all.
        class_label: the class of a class-conditional UNet (``num_class_embeds`` set, as
            guided-diffusion's ``256x256_diffusion.pt``), in ``[0, num_class_embeds)``; required
            there, refused for an unconditional UNet.

    Shapes: ``x_t: [B, C, H, W]``, ``t: int | [B] | 0-d`` integer, outputs ``[B, C, H, W]``.

    Example (a tiny random UNet, so the numbers mean nothing):

    >>> from diffusers import UNet2DModel
    >>> unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8),
    ...     layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D",) * 2,
    ...     up_block_types=("UpBlock2D",) * 2)
    >>> prior = DiffusionPrior(unet, {"beta_schedule": "linear", "clip_sample": False})
    >>> x0, eps = prior.predict(torch.randn(2, 1, 7, 9), 500)
    >>> x0.shape, eps.shape
    (torch.Size([2, 1, 7, 9]), torch.Size([2, 1, 7, 9]))
    """

    def __init__(
        self,
        unet: nn.Module,
        schedule: Any,
        *,
        prediction_type: str | None = None,
        clip_x0: bool | None = None,
        chunk_size: int | None = None,
        class_label: int | None = None,
    ) -> None:
        super().__init__()
        config: Mapping[str, Any] = {}
        if hasattr(schedule, "config") and isinstance(getattr(schedule, "config"), Mapping):
            config = schedule.config
        elif isinstance(schedule, Mapping) and not ({"betas", "alphas_cumprod"} & set(schedule)):
            config = schedule
        prediction_type = prediction_type or config.get("prediction_type", "epsilon")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"`prediction_type`={prediction_type!r} is not supported; accepted: "
                f"{', '.join(PREDICTION_TYPES)}"
            )
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"`chunk_size` must be a positive integer or None, got {chunk_size!r}")
        unet_config = getattr(unet, "config", None)
        if unet_config is None or "block_out_channels" not in unet_config:
            raise ValueError(
                f"`unet` ({type(unet).__name__}) has no diffusers config with `block_out_channels`; "
                "expected a diffusers UNet2DModel"
            )
        classes = unet_config.get("num_class_embeds")
        if classes and class_label is None:
            raise ValueError(f"this UNet is class-conditional ({classes} classes): pass `class_label` "
                             f"(an integer in [0, {classes}); `--class N` on the command line)")
        if class_label is not None and not classes:
            raise ValueError(f"`class_label`={class_label!r} given, but this UNet is unconditional "
                             "(no class embedding); leave it out")
        if class_label is not None and not (isinstance(class_label, int) and 0 <= class_label < classes):
            raise ValueError(f"`class_label`={class_label!r} is out of range; accepted: integers in "
                             f"[0, {classes})")
        self.class_label: int | None = class_label
        self.unet = unet.eval().requires_grad_(False)
        # Kept as a plain attribute, not a buffer: `module.to(torch.float16)` must not round ᾱ_t.
        self.alphas_cumprod: Tensor = alphas_cumprod_from_schedule(schedule)
        self.prediction_type: str = prediction_type
        self.clip_x0: bool = bool(config.get("clip_sample", bool(config)) if clip_x0 is None else clip_x0)
        self.clip_range: float = float(config.get("clip_sample_range", 1.0))
        self.chunk_size: int | None = None if chunk_size is None else int(chunk_size)
        self.in_channels: int = int(unet_config["in_channels"])
        self.downsample_factor: int = 2 ** (len(unet_config["block_out_channels"]) - 1)
        self.scheduler_config: dict[str, Any] = dict(config)
        self._abar_cache: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    # ---- properties ------------------------------------------------------------------------------

    @property
    def num_timesteps(self) -> int:
        """``T``, the number of training timesteps (valid ``t`` are ``0 … T−1``)."""
        return int(self.alphas_cumprod.numel())

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the network runs in."""
        return next(self.unet.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """The device the network lives on."""
        return next(self.unet.parameters()).device

    def extra_repr(self) -> str:
        return (
            f"T={self.num_timesteps}, prediction_type={self.prediction_type!r}, "
            f"clip_x0={self.clip_x0}, dtype={self.dtype}, chunk_size={self.chunk_size}"
        )

    # ---- the protocol ----------------------------------------------------------------------------

    def _timesteps(self, t: int | Tensor, batch: int) -> Tensor:
        """``t`` as an int64 CPU tensor ``[B]``, checked to lie in ``[0, T)``."""
        if isinstance(t, Tensor):
            if t.is_floating_point() or t.is_complex():
                if not bool((t == t.round()).all()):
                    raise ValueError(f"`t` must be integer timesteps, got {t.tolist()}")
            tt = t.detach().to("cpu", torch.int64).flatten()
            if tt.numel() == 1:
                tt = tt.expand(batch)
            elif tt.numel() != batch:
                raise ValueError(
                    f"`t` has {tt.numel()} entries but `x_t` has batch size {batch}; pass an int, "
                    "a 0-d tensor or a tensor [B]"
                )
        elif isinstance(t, (int,)) or (hasattr(t, "__index__") and not isinstance(t, bool)):
            tt = torch.full((batch,), int(t), dtype=torch.int64)
        else:
            raise ValueError(f"`t` must be an int or an integer tensor [B], got {type(t).__name__}")
        T = self.num_timesteps
        bad = (tt < 0) | (tt >= T)
        if bool(bad.any()):
            raise ValueError(f"`t`={tt[bad][0].item()} is outside the valid range [0, {T})")
        return tt

    def _abar(self, t: Tensor, device: torch.device) -> Tensor:
        # float64 where the device has it; MPS has no float64.
        dtype = torch.float32 if device.type == "mps" else torch.float64
        key = (device, dtype)
        if key not in self._abar_cache:
            self._abar_cache[key] = self.alphas_cumprod.to(device=device, dtype=dtype)
        return self._abar_cache[key][t.to(device)].view(-1, 1, 1, 1)

    def _pad(self, x: Tensor) -> tuple[Tensor, tuple[int, int, int, int]]:
        f = self.downsample_factor
        H, W = x.shape[-2:]
        ph, pw = (-H) % f, (-W) % f
        if ph == 0 and pw == 0:
            return x, (0, 0, 0, 0)
        pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)  # left, right, top, bottom
        # Reflect needs each pad smaller than the side it mirrors; tiny images fall back to replicate.
        mode = "reflect" if max(pad[:2]) < W and max(pad[2:]) < H else "replicate"
        return F.pad(x, pad, mode=mode), pad

    def network(self, x_t: Tensor, t: Tensor) -> Tensor:
        r"""The raw network output for ``x_t: [B, C, H, W]`` and ``t: int64 [B]``, float32 or wider.

        Pads to the downsampling factor, casts to the network's dtype and device, splits into
        chunks of ``chunk_size`` and crops back; the result is in ``x_t``'s device and at least
        float32.
        """
        dev, net_dtype = self.device, self.dtype
        x, pad = self._pad(x_t.to(device=dev, dtype=net_dtype))
        t = t.to(dev)
        n = x.shape[0]
        step = self.chunk_size or n
        labels = None if self.class_label is None else torch.full((n,), self.class_label, device=dev)
        outs = [self.unet(x[i : i + step], t[i : i + step],
                          class_labels=None if labels is None else labels[i : i + step]).sample
                for i in range(0, n, step)]
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        H, W = out.shape[-2:]
        out = out[..., pad[2] : H - pad[3], pad[0] : W - pad[1]]
        return out.to(device=x_t.device, dtype=torch.promote_types(x_t.dtype, torch.float32))

    def predict(self, x_t: Tensor, t: int | Tensor) -> tuple[Tensor, Tensor]:
        r"""``(x̂0, ε̂)`` for ``x_t: [B, C, H, W]`` at timestep ``t`` (int, 0-d or ``[B]``, in ``[0, T)``).

        ``x_t = √ᾱ_t·x̂0 + √(1−ᾱ_t)·ε̂`` holds exactly (up to rounding) for every prediction type,
        also after clipping. Outputs have ``x_t``'s dtype and device.
        """
        if x_t.dim() != 4:
            raise ValueError(f"`x_t` must be [B, C, H, W], got shape {tuple(x_t.shape)}")
        if x_t.shape[1] != self.in_channels:
            raise ValueError(
                f"`x_t` has {x_t.shape[1]} channels but the model expects {self.in_channels} "
                f"(in_channels of the UNet); convert the image (e.g. grayscale ↔ RGB) first"
            )
        tt = self._timesteps(t, x_t.shape[0])
        out = self.network(x_t, tt)
        a = self._abar(tt, x_t.device)
        x = x_t.to(a.dtype)
        out = out.to(a.dtype)
        sa, s1a = a.sqrt(), (1 - a).sqrt()
        if self.prediction_type == "epsilon":
            eps = out
            x0 = (x - s1a * eps) / sa
        elif self.prediction_type == "v_prediction":
            x0 = sa * x - s1a * out
            eps = s1a * x + sa * out
        else:
            x0 = out
            eps = (x - sa * x0) / s1a
        if self.clip_x0:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
            eps = (x - sa * x0) / s1a
        return x0.to(x_t.dtype), eps.to(x_t.dtype)

    def forward(self, x_t: Tensor, t: int | Tensor) -> tuple[Tensor, Tensor]:
        """Same as :meth:`predict`."""
        return self.predict(x_t, t)

    # ---- loading (the folder layouts live in loading.py) -----------------------------------------

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike[str],
        subfolder: str | None = None,
        torch_dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
        schedule: Any = None,
        allow_pickle: bool = False,
        *,
        prediction_type: str | None = None,
        clip_x0: bool | None = None,
        chunk_size: int | None = None,
        class_label: int | None = None,
        **kwargs: Any,
    ) -> "DiffusionPrior":
        r"""Load a pixel-space diffusers model from a local folder or a Hugging Face Hub repo id.

        Accepted layouts (under ``path_or_repo_id/subfolder``; see
        :func:`~nested_inverse.priors.loading.load_unet`): a DDPMPipeline folder (``unet/`` +
        ``scheduler/``), a bare ``UNet2DModel`` folder with ``scheduler_config.json`` beside it
        (Google's flat layout) or an explicit ``schedule``, a Hub repo id, or a guided-diffusion
        (ADM) checkpoint file ``.pt`` / ``.safetensors`` (:mod:`~nested_inverse.priors.adm`).

        A given ``schedule`` overrides the folder's scheduler. Weights are read from safetensors;
        pickled ``.bin`` checkpoints can run arbitrary code when loaded and are refused unless
        ``allow_pickle=True``. Other keyword arguments (e.g. ``variant="fp16"``) go to
        ``UNet2DModel.from_pretrained``.

        Args:
            torch_dtype: the dtype the network runs in (float32, float16 or bfloat16).
            device: where the network runs; default CPU.
            prediction_type, clip_x0, chunk_size, class_label: as for :class:`DiffusionPrior`.

        >>> from nested_inverse.paths import default_prior_dir
        >>> DiffusionPrior.from_pretrained(default_prior_dir(), chunk_size=4).chunk_size
        4
        """
        from .loading import load_unet

        unet, schedule = load_unet(
            path_or_repo_id, subfolder, torch_dtype, schedule, allow_pickle, **kwargs
        )
        prior = cls(unet, schedule, prediction_type=prediction_type, clip_x0=clip_x0, chunk_size=chunk_size,
                    class_label=class_label)
        return prior.to(device) if device is not None else prior

    @classmethod
    def default(
        cls,
        torch_dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
        **kwargs: Any,
    ) -> "DiffusionPrior":
        """The bundled default prior ``natural-patches-64`` (no download; see its README).

        A 16.9 M-parameter texture prior for RGB images in [-1, 1], trained on 64×64 patches; fully
        convolutional, so it runs on any image size.
        """
        return cls.from_pretrained(default_prior_dir(), torch_dtype=torch_dtype, device=device, **kwargs)
