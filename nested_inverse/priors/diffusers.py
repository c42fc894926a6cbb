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
    Nichol, Dhariwal (2021). Improved Denoising Diffusion Probabilistic Models (cosine schedule).
    arXiv:2102.09672.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..paths import default_prior_dir
from .protocol import Prior

__all__ = ["DiffusionPrior", "alphas_cumprod_from_schedule", "load_prior"]

_PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
_BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


# --------------------------------------------------------------------------------------------------
# Noise schedules
# --------------------------------------------------------------------------------------------------


def _betas_from_config(config: Mapping[str, Any]) -> Tensor:
    """``β_t`` (float64 ``[T]``) from a diffusers scheduler config (``beta_schedule`` and friends)."""
    trained = config.get("trained_betas")
    if trained is not None:
        return torch.as_tensor(trained, dtype=torch.float64).flatten()
    T = int(config.get("num_train_timesteps", 1000))
    start = float(config.get("beta_start", 1e-4))
    end = float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    if kind == "linear":
        return torch.linspace(start, end, T, dtype=torch.float64)
    if kind == "scaled_linear":
        # Latent-diffusion schedule: linear in √β.
        return torch.linspace(math.sqrt(start), math.sqrt(end), T, dtype=torch.float64) ** 2
    if kind == "squaredcos_cap_v2":
        # Nichol & Dhariwal: ᾱ(s) = cos²((s + 0.008)/1.008 · π/2), β_t = 1 − ᾱ((t+1)/T)/ᾱ(t/T), capped.
        s = torch.arange(T + 1, dtype=torch.float64) / T
        abar = torch.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(
        f"`beta_schedule`={kind!r} is not supported; accepted: {', '.join(_BETA_SCHEDULES)} "
        "or explicit `trained_betas`"
    )


def alphas_cumprod_from_schedule(schedule: Any) -> Tensor:
    r"""``ᾱ_t = ∏_{s≤t} (1 − β_s)`` as float64 ``[T]`` from any description of a noise schedule.

    Args:
        schedule: a diffusers scheduler config (a mapping with ``beta_schedule``, ``beta_start``,
            ``beta_end``, ``num_train_timesteps`` or ``trained_betas``), a diffusers scheduler (its
            ``.config`` is used), a mapping ``{"betas": ...}`` or ``{"alphas_cumprod": ...}``, or a
            1-d tensor / sequence taken as ``alphas_cumprod`` itself.

    >>> alphas_cumprod_from_schedule({"beta_schedule": "linear", "num_train_timesteps": 1000})[0]
    tensor(0.9999, dtype=torch.float64)
    """
    if hasattr(schedule, "config") and isinstance(getattr(schedule, "config"), Mapping):
        schedule = schedule.config
    if isinstance(schedule, Mapping):
        if "alphas_cumprod" in schedule:
            abar = torch.as_tensor(schedule["alphas_cumprod"], dtype=torch.float64).flatten()
        elif "betas" in schedule:
            betas = torch.as_tensor(schedule["betas"], dtype=torch.float64).flatten()
            abar = torch.cumprod(1 - betas, 0)
        else:
            if schedule.get("rescale_betas_zero_snr", False):
                raise ValueError(
                    "`rescale_betas_zero_snr`=True gives ᾱ_{T−1} = 0, where x̂0 is undefined for "
                    "epsilon models; not supported"
                )
            abar = torch.cumprod(1 - _betas_from_config(schedule), 0)
    elif isinstance(schedule, (Tensor, Sequence)) and not isinstance(schedule, str):
        abar = torch.as_tensor(schedule, dtype=torch.float64).detach().cpu().flatten()
    else:
        raise ValueError(
            f"`schedule` of type {type(schedule).__name__} is not understood; accepted: a diffusers "
            "scheduler or its config dict, {'betas': ...}, {'alphas_cumprod': ...}, or a 1-d tensor of "
            "alphas_cumprod"
        )
    abar = abar.detach().cpu()
    if abar.numel() < 1 or not bool(((abar > 0) & (abar <= 1)).all()):
        raise ValueError(
            f"`schedule` gives alphas_cumprod outside (0, 1] (T={abar.numel()}); expected betas in "
            "[0, 1) or alphas_cumprod in (0, 1]"
        )
    if abar.numel() > 1 and not bool((abar[1:] <= abar[:-1]).all()):
        raise ValueError("`schedule` gives alphas_cumprod that are not non-increasing in t")
    return abar


# --------------------------------------------------------------------------------------------------
# The prior
# --------------------------------------------------------------------------------------------------


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
    ) -> None:
        super().__init__()
        config: Mapping[str, Any] = {}
        if hasattr(schedule, "config") and isinstance(getattr(schedule, "config"), Mapping):
            config = schedule.config
        elif isinstance(schedule, Mapping) and not ({"betas", "alphas_cumprod"} & set(schedule)):
            config = schedule
        prediction_type = prediction_type or config.get("prediction_type", "epsilon")
        if prediction_type not in _PREDICTION_TYPES:
            raise ValueError(
                f"`prediction_type`={prediction_type!r} is not supported; accepted: "
                f"{', '.join(_PREDICTION_TYPES)}"
            )
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"`chunk_size` must be a positive integer or None, got {chunk_size!r}")
        unet_config = getattr(unet, "config", None)
        if unet_config is None or "block_out_channels" not in unet_config:
            raise ValueError(
                f"`unet` ({type(unet).__name__}) has no diffusers config with `block_out_channels`; "
                "expected a diffusers UNet2DModel"
            )
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
        outs = [self.unet(x[i : i + step], t[i : i + step]).sample for i in range(0, n, step)]
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

    # ---- loading ---------------------------------------------------------------------------------

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
        **kwargs: Any,
    ) -> "DiffusionPrior":
        r"""Load a pixel-space diffusers model from a local folder or a Hugging Face Hub repo id.

        Accepted layouts (under ``path_or_repo_id/subfolder``):

        - a DDPMPipeline folder: ``unet/config.json`` + ``unet/*.safetensors`` and
          ``scheduler/scheduler_config.json`` (as google/ddpm-celebahq-256);
        - a bare ``UNet2DModel`` folder (``config.json`` + weights) with ``scheduler_config.json``
          beside it (the flat layout of Google's DDPM repos) or an explicit ``schedule`` (a scheduler
          config dict, a diffusers scheduler, ``{"betas": ...}`` or ``alphas_cumprod``).

        A given ``schedule`` overrides the folder's scheduler. Weights are read from safetensors;
        pickled ``.bin`` checkpoints can run arbitrary code when loaded and are refused unless
        ``allow_pickle=True``. Other keyword arguments (e.g. ``variant="fp16"``) go to
        ``UNet2DModel.from_pretrained``. A repo id (``owner/name``) that is not a local folder is
        handed to diffusers, which downloads it when online.

        Args:
            torch_dtype: the dtype the network runs in (float32, float16 or bfloat16).
            device: where the network runs; default CPU.
        """
        from diffusers import UNet2DModel

        given = os.fspath(path_or_repo_id)
        root = Path(given).expanduser()
        if subfolder:
            root = root / subfolder
        if not root.exists():
            if _looks_local(given, path_or_repo_id):
                raise FileNotFoundError(
                    f"`path_or_repo_id`={given!r}{_sub(subfolder)}: no such folder; expected a "
                    "DDPMPipeline folder (unet/ + scheduler/), a bare UNet2DModel folder, or a Hub "
                    "repo id 'owner/name'"
                )
            return cls._from_hub(
                given, subfolder, torch_dtype, device, schedule, allow_pickle,
                prediction_type=prediction_type, clip_x0=clip_x0, chunk_size=chunk_size, **kwargs,
            )
        if not root.is_dir():
            raise ValueError(f"`path_or_repo_id`={given!r}{_sub(subfolder)} is a file; expected a folder")

        if (root / "unet" / "config.json").is_file():
            unet_dir, sched_dir = root / "unet", root / "scheduler"
        elif (root / "config.json").is_file():
            unet_dir = root
            # A flat folder (as Google's DDPM repos) keeps scheduler_config.json beside config.json;
            # `subfolder="unet"` of a pipeline has its scheduler in the sibling folder.
            sched_dir = root if (root / "scheduler_config.json").is_file() else root.parent / "scheduler"
        else:
            raise ValueError(
                f"`path_or_repo_id`={given!r}{_sub(subfolder)} has no UNet config: expected "
                f"{root / 'unet' / 'config.json'} (DDPMPipeline layout) or {root / 'config.json'} "
                "(a bare UNet2DModel folder)"
            )
        config = json.loads((unet_dir / "config.json").read_text())
        cls_name = config.get("_class_name", "UNet2DModel")
        if cls_name != "UNet2DModel" or "block_out_channels" not in config:
            raise ValueError(
                f"{unet_dir / 'config.json'} describes a {cls_name!r}; only pixel-space diffusers "
                "`UNet2DModel`s are supported"
            )

        variant = kwargs.get("variant")
        safetensors = sorted(unet_dir.glob("*.safetensors"))
        pickles = sorted(unet_dir.glob("*.bin"))
        if variant is not None:
            safetensors = [p for p in safetensors if f".{variant}." in p.name]
            pickles = [p for p in pickles if f".{variant}." in p.name]
        if safetensors:
            use_safetensors = True
        elif pickles:
            if not allow_pickle:
                raise ValueError(
                    f"{unet_dir} holds only a pickled checkpoint ({pickles[0].name}); loading pickles "
                    "can run arbitrary code. Pass `allow_pickle=True` if you trust the source (or "
                    "convert it to safetensors with `UNet2DModel.from_pretrained(...)."
                    "save_pretrained(...)`)"
                )
            use_safetensors = False
        else:
            raise FileNotFoundError(
                f"{unet_dir} has a config.json but no weights: expected {_WEIGHT_NAMES[0]} "
                f"(or a pickled {_WEIGHT_NAMES[1]} with `allow_pickle=True`)"
            )

        if schedule is None:
            sched_file = sched_dir / "scheduler_config.json"
            if not sched_file.is_file():
                raise ValueError(
                    f"`path_or_repo_id`={given!r}{_sub(subfolder)}: no noise schedule: expected "
                    f"{sched_file} or an explicit `schedule=` (a scheduler config dict, a diffusers "
                    "scheduler, {'betas': ...} or alphas_cumprod)"
                )
            schedule = json.loads(sched_file.read_text())

        unet = UNet2DModel.from_pretrained(
            str(unet_dir), torch_dtype=torch_dtype, use_safetensors=use_safetensors, **kwargs
        )
        prior = cls(unet, schedule, prediction_type=prediction_type, clip_x0=clip_x0, chunk_size=chunk_size)
        return prior.to(device) if device is not None else prior

    @classmethod
    def _from_hub(
        cls,
        repo_id: str,
        subfolder: str | None,
        torch_dtype: torch.dtype,
        device: str | torch.device | None,
        schedule: Any,
        allow_pickle: bool,
        **kw: Any,
    ) -> "DiffusionPrior":
        from diffusers import DDPMScheduler, UNet2DModel

        prior_kw = {k: kw.pop(k) for k in ("prediction_type", "clip_x0", "chunk_size")}
        prefix = f"{subfolder}/" if subfolder else ""
        use_safetensors = None if allow_pickle else True
        try:
            try:
                unet = UNet2DModel.from_pretrained(
                    repo_id, subfolder=prefix + "unet", torch_dtype=torch_dtype,
                    use_safetensors=use_safetensors, **kw,
                )
                sched_sub: str | None = prefix + "scheduler"
            except (OSError, EnvironmentError):
                unet = UNet2DModel.from_pretrained(
                    repo_id, subfolder=subfolder, torch_dtype=torch_dtype,
                    use_safetensors=use_safetensors, **kw,
                )
                sched_sub = None
            if schedule is None:
                try:
                    # Pipeline layout: scheduler/; flat layout: scheduler_config.json at the root.
                    schedule = DDPMScheduler.load_config(repo_id, subfolder=sched_sub or subfolder)
                except (OSError, EnvironmentError) as err:
                    raise ValueError(
                        f"Hub repo {repo_id!r} has no scheduler config; pass `schedule=` (a scheduler "
                        f"config dict, a diffusers scheduler, {{'betas': ...}} or alphas_cumprod): {err}"
                    ) from err
        except (OSError, EnvironmentError) as err:
            hint = "" if allow_pickle else " (pickled .bin weights need `allow_pickle=True`)"
            raise FileNotFoundError(
                f"`path_or_repo_id`={repo_id!r}{_sub(subfolder)} is neither a local folder nor a "
                f"loadable Hub repo{hint}: {err}"
            ) from err
        prior = cls(unet, schedule, **prior_kw)
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


def _sub(subfolder: str | None) -> str:
    return f" (subfolder={subfolder!r})" if subfolder else ""


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def _looks_local(given: str, original: Any) -> bool:
    """Whether a missing ``path_or_repo_id`` must be a local path (so the Hub is not asked)."""
    if isinstance(original, os.PathLike):
        return True
    if given.startswith((".", "/", "~", "\\")) or re.match(r"^[A-Za-z]:[\\/]", given):
        return True
    if not _REPO_ID.match(given):
        return True
    # "data/x" where "data" exists: a partially existing local path.
    return Path(given.split("/", 1)[0]).exists()


def load_prior(spec: str | os.PathLike[str] | Prior | None = None, **kwargs: Any) -> Prior:
    """The prior a caller means: None or ``"default"`` → the bundled default; a ready prior (any
    object with ``alphas_cumprod`` and ``predict``) → itself; a path or Hub repo id →
    :meth:`DiffusionPrior.from_pretrained` with ``kwargs``.

    With a ready prior, ``device`` and ``torch_dtype`` are ignored (it is used as it is); any other
    keyword is an error.

    >>> load_prior(None).num_timesteps
    1000
    """
    if spec is None or (isinstance(spec, str) and spec == "default"):
        return DiffusionPrior.default(**kwargs)
    if isinstance(spec, (str, os.PathLike)):
        return DiffusionPrior.from_pretrained(spec, **kwargs)
    if hasattr(spec, "alphas_cumprod") and callable(getattr(spec, "predict", None)):
        extra = sorted(k for k in kwargs if k not in ("device", "torch_dtype"))
        if extra:
            raise ValueError(f"loading options {extra} cannot apply to a ready prior ({type(spec).__name__})")
        return spec
    raise ValueError(
        f"`prior`={spec!r} is not understood; accepted: None or 'default' (the bundled prior), a "
        "path or Hub repo id of a diffusers model, or an object with `alphas_cumprod` and `predict`"
    )
