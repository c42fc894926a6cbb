r"""Reading a diffusers latent pipeline folder into a :class:`LatentDiffusionPrior`.

The layout (as ``stable-diffusion-v1-5`` and ``facebook/DiT-XL-2-256`` ship it)::

    model_index.json          names the parts (and, for DiT, ``id2label``)
    unet/ or transformer/     UNet2DConditionModel | UNet2DModel, or DiTTransformer2DModel
    vae/                      AutoencoderKL
    scheduler/                scheduler_config.json (ᾱ, prediction_type)
    text_encoder/, tokenizer/ CLIPTextModel, CLIPTokenizer (text-conditional UNets only)

Weights are read from safetensors; pickled ``.bin`` checkpoints can run arbitrary code when loaded
and are refused unless ``allow_pickle=True``. A Hub repo id is looked up in the local Hugging Face
cache (``local_files_only=True``, the default) or downloaded (``local_files_only=False``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .latent import LatentDiffusionPrior
from .loading import _looks_local, _use_safetensors

__all__ = ["DENOISERS", "load_latent_pipeline"]

#: the denoiser classes a pipeline's ``unet/`` or ``transformer/`` may hold (``Transformer2DModel``
#: is how DiT-XL-2's config names it; diffusers maps it to ``DiTTransformer2DModel``)
DENOISERS = ("UNet2DConditionModel", "UNet2DModel", "DiTTransformer2DModel", "Transformer2DModel")
_LAYOUT = "a diffusers latent pipeline folder: model_index.json, unet/ or transformer/, vae/, scheduler/"


def load_latent_pipeline(
    path: str | os.PathLike[str],
    torch_dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
    *,
    local_files_only: bool = True,
    allow_pickle: bool = False,
    variant: str | None = None,
    prediction_type: str | None = None,
) -> LatentDiffusionPrior:
    r"""The latent prior in the pipeline folder (or cached Hub repo) ``path``.

    Args:
        path: a local folder or a Hub repo id (``"facebook/DiT-XL-2-256"``).
        torch_dtype: the dtype the denoiser, VAE and text encoder run in. A VAE whose config asks
            for ``force_upcast`` (SD's overflows in float16) stays in float32.
        device: where they run; default CPU.
        local_files_only: never use the network (a repo id must be in the local HF cache).
        allow_pickle: also read pickled ``.bin`` weights (only for sources you trust).
        variant: a weight variant, e.g. ``"fp16"`` (``*.fp16.safetensors``).
        prediction_type: overrides the scheduler config's.

    Raises:
        FileNotFoundError: no such folder, a repo id not in the cache, or a part without weights.
        ValueError: no ``model_index.json``, a missing part (VAE, scheduler, text encoder or
            tokenizer of a text-conditional UNet), an unsupported denoiser, or only pickled weights
            without ``allow_pickle``.
    """
    import diffusers

    root = _resolve(path, local_files_only, allow_pickle, variant)
    index_file = root / "model_index.json"
    if not index_file.is_file():
        raise ValueError(f"`path`={os.fspath(path)!r} has no {index_file.name}; accepted: {_LAYOUT}")
    index = json.loads(index_file.read_text())

    part = next((p for p in ("unet", "transformer") if (root / p / "config.json").is_file()), None)
    if part is None:
        raise ValueError(f"`path`={os.fspath(path)!r} has no denoiser: expected {root / 'unet'} or "
                         f"{root / 'transformer'} with a config.json; accepted: {_LAYOUT}")
    cls_name = json.loads((root / part / "config.json").read_text()).get("_class_name")
    if cls_name not in DENOISERS:
        raise ValueError(f"{root / part / 'config.json'} describes a {cls_name!r}; accepted: "
                         f"{', '.join(DENOISERS)}")
    denoiser_cls = getattr(diffusers, cls_name)
    kwargs = {"torch_dtype": torch_dtype, "variant": variant}
    denoiser = denoiser_cls.from_pretrained(
        str(root / part), use_safetensors=_use_safetensors(root / part, variant, allow_pickle), **kwargs)

    vae_dir = _part(root, "vae", path, "the VAE (an AutoencoderKL) that maps latents to images")
    vae_config = json.loads((vae_dir / "config.json").read_text())
    vae_dtype = torch.float32 if vae_config.get("force_upcast") and torch_dtype == torch.float16 \
        else torch_dtype
    vae = diffusers.AutoencoderKL.from_pretrained(
        str(vae_dir), torch_dtype=vae_dtype, variant=variant,
        use_safetensors=_use_safetensors(vae_dir, variant, allow_pickle))

    sched_file = root / "scheduler" / "scheduler_config.json"
    if not sched_file.is_file():
        raise ValueError(f"`path`={os.fspath(path)!r} has no noise schedule: expected {sched_file}; "
                         f"accepted: {_LAYOUT}")
    schedule = json.loads(sched_file.read_text())

    text_encoder = tokenizer = None
    if denoiser.config.get("cross_attention_dim") is not None and cls_name.startswith("UNet"):
        from transformers import CLIPTextModel, CLIPTokenizer

        what = "needed by the text-conditional {cls}"
        te_dir = _part(root, "text_encoder", path, f"the text encoder (a CLIPTextModel) "
                       f"{what.format(cls=cls_name)}")
        tok_dir = root / "tokenizer"
        if not ((tok_dir / "vocab.json").is_file() or (tok_dir / "tokenizer.json").is_file()):
            raise ValueError(f"`path`={os.fspath(path)!r} has no tokenizer: expected {tok_dir} with "
                             f"vocab.json and merges.txt (a CLIPTokenizer) {what.format(cls=cls_name)}")
        text_encoder = CLIPTextModel.from_pretrained(
            str(te_dir), dtype=torch_dtype, variant=variant, local_files_only=True,
            use_safetensors=_use_safetensors(te_dir, variant, allow_pickle))
        tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir), local_files_only=True)

    prior = LatentDiffusionPrior(denoiser, vae, schedule, text_encoder=text_encoder,
                                 tokenizer=tokenizer, prediction_type=prediction_type,
                                 id2label=index.get("id2label"))
    return prior.to(device) if device is not None else prior


def _part(root: Path, name: str, path: Any, what: str) -> Path:
    folder = root / name
    if not (folder / "config.json").is_file():
        raise ValueError(f"`path`={os.fspath(path)!r} has no {name}: expected {folder / 'config.json'}"
                         f" for {what}; accepted: {_LAYOUT}")
    return folder


#: the folders of a pipeline this loader reads (a Hub snapshot fetches only these)
_PARTS = ("unet", "transformer", "vae", "scheduler", "text_encoder", "tokenizer")


def _resolve(path: str | os.PathLike[str], local_files_only: bool, allow_pickle: bool,
             variant: str | None = None) -> Path:
    """The local folder of ``path``: itself, or the cached (or downloaded) snapshot of a repo id."""
    given = os.fspath(path)
    root = Path(given).expanduser()
    if root.is_dir():
        return root
    if root.exists():
        raise ValueError(f"`path`={given!r} is a file; accepted: {_LAYOUT}")
    if _looks_local(given, path):
        raise FileNotFoundError(f"`path`={given!r}: no such folder; accepted: {_LAYOUT}, or a Hub "
                                "repo id 'owner/name'")
    from huggingface_hub import snapshot_download

    # Only the parts read here: pipeline repos also hold multi-GB single-file checkpoints at the
    # root, safety checkers and weight variants the loader never touches.
    weights = ["*.safetensors"] + (["*.bin"] if allow_pickle else [])
    if variant is not None:
        weights = [w.replace("*.", f"*.{variant}.") for w in weights]
    patterns = ["model_index.json"] + [f"{part}/{kind}" for part in _PARTS
                                       for kind in ("*.json", "*.txt", *weights)]
    ignore = None if variant is not None else ["*.fp16.*", "*.ema.*", "*non_ema*"]
    try:
        return Path(snapshot_download(given, local_files_only=local_files_only,
                                      allow_patterns=patterns, ignore_patterns=ignore))
    except Exception as err:  # noqa: BLE001 - the Hub raises many kinds; all mean "not available"
        where = "in the local Hugging Face cache (local_files_only=True)" if local_files_only \
            else "on the Hub"
        raise FileNotFoundError(f"`path`={given!r} is not a local folder and not found {where}: "
                                f"{' '.join(str(err).split())}") from err
