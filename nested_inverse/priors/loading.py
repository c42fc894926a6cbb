r"""Finding a diffusers UNet and its noise schedule on disk or on the Hub, and :func:`load_prior`.

:func:`load_unet` resolves ``path_or_repo_id/subfolder`` into a ``(UNet2DModel, schedule)`` pair;
:meth:`DiffusionPrior.from_pretrained <nested_inverse.DiffusionPrior.from_pretrained>` wraps the
pair. Accepted layouts:

- a DDPMPipeline folder: ``unet/config.json`` + ``unet/*.safetensors`` and
  ``scheduler/scheduler_config.json`` (as google/ddpm-celebahq-256, and the bundled prior);
- a bare ``UNet2DModel`` folder (``config.json`` + weights) with ``scheduler_config.json`` beside
  it (the flat layout of Google's DDPM repos), in a sibling ``scheduler/`` (``subfolder="unet"``
  of a pipeline), or an explicit ``schedule``;
- a Hub repo id ``owner/name`` that is not a local folder, handed to diffusers (which downloads it
  when online);
- a guided-diffusion (ADM) checkpoint file, ``.pt`` (read with ``torch.load(weights_only=True)``)
  or ``.safetensors``, mapped onto a ``UNet2DModel`` by :mod:`~nested_inverse.priors.adm`.

Weights are read from safetensors; pickled ``.bin`` checkpoints can run arbitrary code when loaded
and are refused unless ``allow_pickle=True``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import warnings
from urllib.parse import urlsplit
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..paths import default_prior_dir
from .protocol import Prior

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from diffusers import UNet2DModel

    from .diffusers import DiffusionPrior

__all__ = ["default_prior", "load_prior", "load_unet"]

WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
_SCHEDULE_HINT = "a scheduler config dict, a diffusers scheduler, {'betas': ...} or alphas_cumprod"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
#: seconds the Hub probe waits for a connection (offline, the Hub client retried for ~50 s).
HUB_PROBE_S = 3.0


def load_unet(
    path_or_repo_id: str | os.PathLike[str],
    subfolder: str | None = None,
    torch_dtype: torch.dtype = torch.float32,
    schedule: Any = None,
    allow_pickle: bool = False,
    **kwargs: Any,
) -> tuple["UNet2DModel", Any]:
    r"""The ``UNet2DModel`` under ``path_or_repo_id/subfolder`` and its noise schedule.

    A given ``schedule`` overrides the folder's scheduler config. Other keyword arguments (e.g.
    ``variant="fp16"``) go to ``UNet2DModel.from_pretrained``. The layouts are listed in this
    module's docstring.

    Returns:
        ``(unet, schedule)``: the network in ``torch_dtype`` on the CPU, and ``schedule`` or the
        folder's scheduler config (a dict), for :func:`~.schedule.alphas_cumprod_from_schedule`.

    Raises:
        FileNotFoundError: no such local folder (or unreachable Hub repo), or a config without weights.
        ValueError: no UNet config, not a ``UNet2DModel``, only pickled weights without
            ``allow_pickle``, or no schedule anywhere.

    >>> unet, schedule = load_unet(default_prior_dir())
    >>> unet.config["in_channels"], schedule["beta_schedule"]
    (3, 'linear')
    """
    from diffusers import UNet2DModel

    kwargs = _without_accelerate(kwargs)
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
        return _load_unet_from_hub(given, subfolder, torch_dtype, schedule, allow_pickle, **kwargs)
    if not root.is_dir():
        # A single file: a guided-diffusion (ADM) state dict, .pt or .safetensors.
        from .adm import load_adm_unet

        return load_adm_unet(root, torch_dtype, schedule)

    if (root / "unet" / "config.json").is_file():
        unet_dir, sched_dir = root / "unet", root / "scheduler"
    elif (root / "config.json").is_file():
        unet_dir = root
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
    use_safetensors = _use_safetensors(unet_dir, kwargs.get("variant"), allow_pickle)

    if schedule is None:
        sched_file = sched_dir / "scheduler_config.json"
        if not sched_file.is_file():
            raise ValueError(
                f"`path_or_repo_id`={given!r}{_sub(subfolder)}: no noise schedule: expected "
                f"{sched_file} or an explicit `schedule=` ({_SCHEDULE_HINT})"
            )
        schedule = json.loads(sched_file.read_text())

    unet = UNet2DModel.from_pretrained(
        str(unet_dir), torch_dtype=torch_dtype, use_safetensors=use_safetensors, **kwargs
    )
    return unet, schedule


def _without_accelerate(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``low_cpu_mem_usage=False`` when ``accelerate`` is not installed: what
    diffusers falls back to anyway, said here without its "accelerate was not found" warning on
    every first run (accelerate is an optional extra; the UNets here load in a second without)."""
    from diffusers.utils import is_accelerate_available

    if "low_cpu_mem_usage" in kwargs or is_accelerate_available():
        return kwargs
    return {**kwargs, "low_cpu_mem_usage": False}


def _use_safetensors(unet_dir: Path, variant: str | None, allow_pickle: bool) -> bool:
    """True for safetensors weights in ``unet_dir``, False for pickled ones (only with ``allow_pickle``)."""
    safetensors = sorted(unet_dir.glob("*.safetensors"))
    pickles = sorted(unet_dir.glob("*.bin"))
    if variant is not None:
        safetensors = [p for p in safetensors if f".{variant}." in p.name]
        pickles = [p for p in pickles if f".{variant}." in p.name]
    if safetensors:
        return True
    if pickles:
        if not allow_pickle:
            raise ValueError(
                f"{unet_dir} holds only a pickled checkpoint ({pickles[0].name}); loading pickles "
                "can run arbitrary code. Pass `allow_pickle=True` if you trust the source (or "
                "convert it to safetensors with `UNet2DModel.from_pretrained(...)."
                "save_pretrained(...)`)"
            )
        return False
    raise FileNotFoundError(
        f"{unet_dir} has a config.json but no weights: expected {WEIGHT_NAMES[0]} "
        f"(or a pickled {WEIGHT_NAMES[1]} with `allow_pickle=True`)"
    )


def _load_unet_from_hub(
    repo_id: str,
    subfolder: str | None,
    torch_dtype: torch.dtype,
    schedule: Any,
    allow_pickle: bool,
    **kwargs: Any,
) -> tuple["UNet2DModel", Any]:
    """A Hub repo's UNet and schedule; from the local cache alone when the Hub cannot be reached
    (``HF_HUB_OFFLINE`` or no connection), failing in seconds when it is not there."""
    # None lets diffusers fall back to .bin; True makes it refuse pickles outright.
    use_safetensors = None if allow_pickle else True
    offline = _hub_unreachable()
    if offline:  # the local cache only, in a second instead of a minute of retries
        kwargs = {**kwargs, "local_files_only": True}
    with warnings.catch_warnings():
        # diffusers still passes a retired argument; the user can do nothing about it
        warnings.filterwarnings("ignore", message="The `local_dir_use_symlinks` argument")
        return _hub_unet(repo_id, subfolder, torch_dtype, schedule, allow_pickle, offline,
                         use_safetensors, **kwargs)


def _hub_unet(
    repo_id: str, subfolder: str | None, torch_dtype: torch.dtype, schedule: Any,
    allow_pickle: bool, offline: str | None, use_safetensors: bool | None, **kwargs: Any,
) -> tuple["UNet2DModel", Any]:
    """:func:`_load_unet_from_hub` past its checks: the pipeline layout, else a bare UNet."""
    from diffusers import DDPMScheduler, UNet2DModel

    prefix = f"{subfolder}/" if subfolder else ""
    try:
        try:
            unet = UNet2DModel.from_pretrained(
                repo_id, subfolder=prefix + "unet", torch_dtype=torch_dtype,
                use_safetensors=use_safetensors, **kwargs,
            )
            sched_sub: str | None = prefix + "scheduler"
        except (OSError, EnvironmentError):
            unet = UNet2DModel.from_pretrained(
                repo_id, subfolder=subfolder, torch_dtype=torch_dtype,
                use_safetensors=use_safetensors, **kwargs,
            )
            sched_sub = None
        if schedule is None:
            try:
                schedule = DDPMScheduler.load_config(repo_id, subfolder=sched_sub or subfolder,
                                                     local_files_only=bool(offline))
            except (OSError, EnvironmentError) as err:
                raise ValueError(
                    f"Hub repo {repo_id!r} has no scheduler config; pass `schedule=` "
                    f"({_SCHEDULE_HINT}): {err}"
                ) from err
    except (OSError, EnvironmentError) as err:
        if offline:
            raise FileNotFoundError(_not_cached(repo_id, subfolder, offline)) from err
        hint = "" if allow_pickle else " (pickled .bin weights need `allow_pickle=True`)"
        raise FileNotFoundError(
            f"`path_or_repo_id`={repo_id!r}{_sub(subfolder)} is neither a local folder nor a "
            f"loadable Hub repo{hint}: {err}"
        ) from err
    return unet, schedule


def _hub_unreachable() -> str | None:
    """Why the Hub cannot be asked (``HF_HUB_OFFLINE`` set, or no connection to its endpoint
    within ``HUB_PROBE_S``), or None when it can."""
    import huggingface_hub.constants as hub

    if hub.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes",
                                                                              "on"):
        return "HF_HUB_OFFLINE is set"
    url = urlsplit(os.environ.get("HF_ENDPOINT") or hub.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    failure: list[str] = ["no answer within " f"{HUB_PROBE_S:g} s"]

    def probe() -> None:  # in a thread: a name lookup can block longer than any socket timeout
        try:
            socket.create_connection((host, port), timeout=HUB_PROBE_S).close()
            failure.clear()
        except OSError as err:
            failure[0] = err.strerror or type(err).__name__

    worker = threading.Thread(target=probe, daemon=True)
    worker.start()
    worker.join(HUB_PROBE_S + 0.5)
    return f"no connection to {host}:{port}: {failure[0]}" if failure else None


def _not_cached(repo_id: str, subfolder: str | None, why: str) -> str:
    import huggingface_hub.constants as hub

    return (f"`path_or_repo_id`={repo_id!r}{_sub(subfolder)} is not a local folder, not in the "
            f"local Hugging Face cache ({hub.HF_HUB_CACHE}), and the Hub cannot be reached "
            f"({why}): download it once where there is a network (`hf download {repo_id}`; it "
            "then loads offline from the cache) or give a local folder")


def _sub(subfolder: str | None) -> str:
    return f" (subfolder={subfolder!r})" if subfolder else ""


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


def default_prior(
    torch_dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    **kwargs: Any,
) -> "DiffusionPrior":
    """The bundled default prior ``natural-patches-64`` (no download; see its README).

    A 16.9 M-parameter texture prior for RGB images in [-1, 1], trained on 64×64 patches; fully
    convolutional, so it runs on any image size. Same as :meth:`DiffusionPrior.default`.

    >>> default_prior().in_channels
    3
    """
    from .diffusers import DiffusionPrior

    return DiffusionPrior.from_pretrained(default_prior_dir(), torch_dtype=torch_dtype, device=device,
                                          **kwargs)


def load_prior(spec: str | os.PathLike[str] | Prior | None = None, **kwargs: Any) -> Prior:
    """The prior a caller means: None or ``"default"`` → the bundled default; a ready prior (any
    object with ``alphas_cumprod`` and ``predict``) → itself; a latent pipeline folder
    (``model_index.json`` naming a ``vae``: Stable Diffusion, DiT) →
    :func:`~nested_inverse.priors.pipelines.load_latent_pipeline`; another path or Hub repo id →
    :meth:`DiffusionPrior.from_pretrained`; both with ``kwargs``.

    With a ready prior, ``device`` and ``torch_dtype`` are ignored (it is used as it is); any other
    keyword is an error.

    >>> load_prior(None).num_timesteps
    1000
    """
    from .diffusers import DiffusionPrior

    if spec is None or isinstance(spec, (str, os.PathLike)):
        _warn_half_on_cpu(kwargs.get("torch_dtype"), kwargs.get("device"))
    if spec is None or (isinstance(spec, str) and spec == "default"):
        return DiffusionPrior.default(**kwargs)
    if isinstance(spec, (str, os.PathLike)):
        if (Path(spec) / "model_index.json").is_file() and _has_vae(Path(spec)):
            from .pipelines import load_latent_pipeline

            return load_latent_pipeline(spec, **kwargs)
        return DiffusionPrior.from_pretrained(spec, **kwargs)
    if hasattr(spec, "alphas_cumprod") and callable(getattr(spec, "predict", None)):
        extra = sorted(k for k in kwargs if k not in ("device", "torch_dtype"))
        if extra:
            raise ValueError(
                f"loading options {extra} cannot apply to a ready prior ({type(spec).__name__}); "
                "accepted with a ready prior: device, torch_dtype (both ignored)"
            )
        return spec
    raise ValueError(
        f"`spec`={spec!r} (the prior) is not understood; accepted: None or 'default' (the bundled prior), a "
        "path or Hub repo id of a diffusers model, or an object with `alphas_cumprod` and `predict`"
    )


def _warn_half_on_cpu(torch_dtype: Any, device: Any) -> None:
    """Half precision is a GPU format: a CPU emulates it (one evaluation of the bundled prior at
    64 px, one thread: 0.22 s in float32, 24 s in float16, 23 s in bfloat16) and saves nothing
    that matters there."""
    if torch_dtype not in (torch.float16, torch.bfloat16):
        return
    try:
        on_cpu = torch.device(device if device is not None else "cpu").type == "cpu"
    except (RuntimeError, TypeError):  # not a device: from_pretrained names it
        return
    if on_cpu:
        log.warning("`torch_dtype` %s on the CPU runs far slower than float32 (about 100× for the "
                    "bundled prior); use float32 here, half precision on a GPU",
                    str(torch_dtype).replace("torch.", ""))


def _has_vae(folder: Path) -> bool:
    """Whether the pipeline folder's ``model_index.json`` names a VAE (a latent pipeline)."""
    try:
        return "vae" in json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return False
