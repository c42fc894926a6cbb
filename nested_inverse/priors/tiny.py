r"""Tiny random latent-diffusion pipelines, written to disk in diffusers' folder layout.

For tests, doctests and benchmarks that must run offline in seconds: a Stable-Diffusion-shaped
text-to-image pipeline (``UNet2DConditionModel`` + ``AutoencoderKL`` + ``CLIPTextModel`` +
``CLIPTokenizer``) and a DiT-shaped class-conditional one (``DiTTransformer2DModel`` +
``AutoencoderKL``), with random weights. The numbers they produce mean nothing; their shapes,
configs and code paths are the real ones, so :func:`~nested_inverse.priors.load_latent_pipeline`
reads them exactly as it reads ``stable-diffusion-v1-5`` or ``facebook/DiT-XL-2-256``.

Sizes: latents ``[B, 4, 8, 8]`` for 16×16 images (VAE factor 2), prompts of at most 16 tokens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

__all__ = ["TINY_NUM_CLASSES", "save_tiny_dit", "save_tiny_sd", "save_tiny_tokenizer"]

#: classes of the tiny DiT (its null class, for guidance, is this number)
TINY_NUM_CLASSES = 10

_SCHEDULER = {
    "_class_name": "DDIMScheduler", "num_train_timesteps": 1000, "beta_start": 0.00085,
    "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
    "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon",
}


def _vae(seed: int):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    # Two blocks: one 2× down-sampling, the factor a pipeline's image size must divide by.
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=4, sample_size=16, scaling_factor=0.18215,
    ).eval()


def save_tiny_tokenizer(folder: str | os.PathLike[str]) -> Path:
    """A CLIP byte-level BPE tokenizer over single characters (no merges), saved to ``folder``."""
    from transformers import CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)
    tok.save_pretrained(folder)
    return folder


def save_tiny_sd(folder: str | os.PathLike[str], prediction_type: str = "epsilon",
                 seed: int = 0) -> Path:
    """A random text-to-image pipeline in Stable Diffusion's layout under ``folder``.

    ``unet/`` (``UNet2DConditionModel``, block_out_channels (8, 16), cross-attention 16),
    ``vae/``, ``text_encoder/`` (``CLIPTextModel``, hidden 16), ``tokenizer/``, ``scheduler/``
    (``scaled_linear`` ᾱ of SD 1.x with ``prediction_type``) and ``model_index.json``.
    """
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = save_tiny_tokenizer(folder / "tokenizer")
    vocab_size = len(json.loads((tok / "vocab.json").read_text()))
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
        layers_per_block=1, norm_num_groups=4, cross_attention_dim=16, attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    ).eval()
    unet.save_pretrained(folder / "unet")
    _vae(seed + 1).save_pretrained(folder / "vae")
    torch.manual_seed(seed + 2)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
        pad_token_id=1,
    )).eval()
    text.save_pretrained(folder / "text_encoder")
    _scheduler(folder, prediction_type)
    _model_index(folder, "StableDiffusionPipeline", {
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    })
    return folder


def save_tiny_dit(folder: str | os.PathLike[str], prediction_type: str = "epsilon",
                  seed: int = 0, learn_sigma: bool = True) -> Path:
    """A random class-conditional pipeline in DiT's layout under ``folder``.

    ``transformer/`` (``DiTTransformer2DModel``, 1 layer, patch 2, :data:`TINY_NUM_CLASSES`
    classes, with learned σ channels as DiT-XL-2 unless ``learn_sigma=False``), ``vae/``,
    ``scheduler/`` and ``model_index.json`` with ``id2label``.
    """
    from diffusers import DiTTransformer2DModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    dit = DiTTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4,
        out_channels=8 if learn_sigma else 4, num_layers=1, sample_size=8, patch_size=2,
        num_embeds_ada_norm=TINY_NUM_CLASSES,
    ).eval()
    # DiT zero-initialises its output layers; random ones make the test outputs depend on inputs.
    with torch.no_grad():
        for p in dit.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.05)
    dit.save_pretrained(folder / "transformer")
    _vae(seed + 1).save_pretrained(folder / "vae")
    _scheduler(folder, prediction_type, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)
    _model_index(folder, "DiTPipeline", {
        "transformer": ["diffusers", "DiTTransformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDIMScheduler"],
    }, id2label={str(i): f"class{i}" for i in range(TINY_NUM_CLASSES)})
    return folder


def _scheduler(folder: Path, prediction_type: str, **overrides: object) -> None:
    (folder / "scheduler").mkdir(exist_ok=True)
    config = {**_SCHEDULER, **overrides, "prediction_type": prediction_type}
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(config, indent=2))


def _model_index(folder: Path, cls: str, parts: dict, **extra: object) -> None:
    import diffusers

    index = {"_class_name": cls, "_diffusers_version": diffusers.__version__, **parts, **extra}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
