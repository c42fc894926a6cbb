r"""Train a pixel-space DDPM prior on random patches of a folder of images.

The loss is the DDPM "simple" objective with epsilon prediction: for x0 a random patch in [-1, 1],
``t ~ U{0 … T−1}``, ``ε ~ N(0, I)`` and ``x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε``,

    L = E ‖ε − ε_θ(x_t, t)‖²,

with the linear schedule ``β_t`` from ``beta_start`` to ``beta_end`` (1e-4 … 0.02, T = 1000). The
network is a diffusers ``UNet2DModel`` of ``DownBlock2D``/``UpBlock2D`` blocks (as the bundled
default prior); an exponential moving average (EMA) of its weights is what gets exported.

The output folder has the DDPMPipeline layout that :meth:`DiffusionPrior.from_pretrained` loads
(``model_index.json``, ``unet/`` with the EMA weights in safetensors, ``scheduler/``), a
``README.md`` with the recipe, and ``checkpoint/state.pt`` (model, EMA, optimizer, step, RNG) from
which a later call resumes.

References:
    Ho, Jain, Abbeel (2020). Denoising Diffusion Probabilistic Models. arXiv:2006.11239.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .patches import PatchSampler, load_training_images
from .schedule import linear_alphas_cumprod

if TYPE_CHECKING:
    from diffusers import DDPMScheduler, UNet2DModel

__all__ = ["train_prior"]

_CHECKPOINT = Path("checkpoint") / "state.pt"
# Hyperparameters that fix the network and the data; a checkpoint made with others cannot resume.
_ARCH_KEYS = ("patch_size", "channels", "block_out_channels", "layers_per_block", "norm_num_groups",
              "num_train_timesteps", "beta_start", "beta_end")


def _groups(channels: Sequence[int]) -> int:
    """The largest GroupNorm group count of 32, 16, … 1 that divides every width."""
    for g in (32, 16, 8, 4, 2, 1):
        if all(c % g == 0 for c in channels):
            return g
    return 1


def train_prior(
    images_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    patch_size: int = 64,
    block_out_channels: Sequence[int] = (64, 128, 128, 256),
    layers_per_block: int = 2,
    lr: float = 3e-4,
    batch_size: int = 256,
    ema_decay: float = 0.9995,
    max_steps: int | None = None,
    max_time_s: float | None = None,
    checkpoint_every: int = 500,
    resume: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    mixed_precision: str = "auto",
    grad_clip: float | None = 1.0,
    num_train_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    scales: Sequence[float] = (1.0, 0.75, 0.5, 0.35),
    channel_permute: bool = False,
    grayscale_prob: float = 0.0,
    channels: int | None = None,
    norm_num_groups: int | None = None,
    weight_decay: float = 0.01,
    init_from: str | os.PathLike[str] | None = None,
    save_dtype: torch.dtype = torch.float32,
    progress: bool = True,
) -> Path:
    r"""Train a DDPM prior (``min E‖ε − ε_θ(√ᾱ_t·x0 + √(1−ᾱ_t)·ε, t)‖²``) on patches of ``images_dir``.

    Every step draws ``batch_size`` random ``patch_size``² patches (see ``scales``, flips, 90°
    rotations, ``channel_permute``, ``grayscale_prob``) from the images found recursively under
    ``images_dir`` (unreadable files are skipped with a warning), takes one AdamW step (gradient
    norm clipped to ``grad_clip``) and updates the EMA weights with decay
    ``min(ema_decay, (1 + step)/(10 + step))`` (the warm-up keeps short runs from exporting the
    random initialisation).

    Training stops after ``max_steps`` steps in all (counting resumed ones) or ``max_time_s`` seconds
    of this call, whichever comes first; one of them is required. Every ``checkpoint_every`` steps,
    at the end and on Ctrl-C it saves ``out/checkpoint/state.pt`` and exports the loadable folder,
    so an interrupted run leaves a usable prior. With ``resume`` (default) a later call with the
    same ``out`` continues from the checkpoint.

    The bundled default prior's recipe is ``patch_size=64, block_out_channels=(64, 128, 128, 256),
    layers_per_block=2, lr=3e-4, batch_size=256, ema_decay=0.9995, grad_clip=1.0,
    channel_permute=True, grayscale_prob>0`` (bf16 on a GPU) for 2,326 steps, then
    ``init_from=<that folder>, lr=2e-4`` for 1,107 more (see its README).

    Args:
        images_dir: folder of training images (any Pillow format, searched recursively).
        out: output folder (created).
        scales: crop scales; a crop of side ``round(patch_size/scale)`` is resized to
            ``patch_size`` (scales < 1 show the network zoomed-out texture). Crops that do not fit
            an image are not drawn from it.
        channels: 1 or 3; default 3 if any image has colour, else 1.
        norm_num_groups: GroupNorm groups; default the largest of 32, 16, … dividing every width.
        init_from: a prior folder (DDPMPipeline layout) whose UNet initialises the network; its
            architecture replaces ``block_out_channels``/``layers_per_block``/``channels``.
        device: default CUDA when available, else CPU.
        mixed_precision: ``"auto"`` (bf16 on CUDA, none on CPU), ``"no"``, ``"bf16"`` or ``"fp16"``.
        save_dtype: dtype of the exported weights (float16 halves the size, as the bundled prior).
        progress: show a tqdm bar with the smoothed loss.

    Returns:
        ``out``, loadable with ``DiffusionPrior.from_pretrained(out)``.
    """
    from diffusers import DDPMScheduler, UNet2DModel
    from tqdm.auto import tqdm

    # ---- check the arguments ----------------------------------------------------------------------
    folder = Path(images_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"`images_dir`={str(images_dir)!r}: no such folder")
    out = Path(out)
    if max_steps is None and max_time_s is None:
        raise ValueError("give a budget: `max_steps` and/or `max_time_s` (both None now)")
    if max_steps is not None and int(max_steps) < 0:
        raise ValueError(f"`max_steps`={max_steps} must be ≥ 0")
    if max_time_s is not None and not max_time_s > 0:
        raise ValueError(f"`max_time_s`={max_time_s} must be > 0")
    for name, value in (("patch_size", patch_size), ("batch_size", batch_size),
                        ("layers_per_block", layers_per_block), ("checkpoint_every", checkpoint_every),
                        ("num_train_timesteps", num_train_timesteps)):
        if int(value) < 1:
            raise ValueError(f"`{name}`={value} must be a positive integer")
    block_out_channels = tuple(int(c) for c in block_out_channels)
    if not block_out_channels or min(block_out_channels) < 1:
        raise ValueError(f"`block_out_channels`={block_out_channels} must be positive widths")
    factor = 2 ** (len(block_out_channels) - 1)
    if patch_size % factor:
        raise ValueError(
            f"`patch_size`={patch_size} must be a multiple of the UNet's downsampling factor {factor} "
            f"(2^(len(block_out_channels) − 1) for block_out_channels={block_out_channels})"
        )
    if not 0 <= ema_decay < 1:
        raise ValueError(f"`ema_decay`={ema_decay} must be in [0, 1)")
    if not scales or any(not 0 < s <= 1 for s in scales):
        raise ValueError(f"`scales`={tuple(scales)} must be in (0, 1]")
    if not 0 <= grayscale_prob <= 1:
        raise ValueError(f"`grayscale_prob`={grayscale_prob} must be in [0, 1]")
    if not 0 < beta_start < beta_end < 1:
        raise ValueError(f"need 0 < `beta_start`={beta_start} < `beta_end`={beta_end} < 1")
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    mp = mixed_precision
    if mp == "auto":
        mp = "bf16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
    if mp not in ("no", "bf16", "fp16"):
        raise ValueError(f"`mixed_precision`={mixed_precision!r}; accepted: 'auto', 'no', 'bf16', 'fp16'")

    # ---- data and network -------------------------------------------------------------------------
    images, used, colour = load_training_images(folder, patch_size)
    init_unet = None
    if init_from is not None:
        from .diffusers import DiffusionPrior

        init_unet = DiffusionPrior.from_pretrained(init_from).unet
        cfg = init_unet.config
        block_out_channels = tuple(cfg["block_out_channels"])
        layers_per_block = int(cfg["layers_per_block"])
        channels = int(cfg["in_channels"])
        norm_num_groups = int(cfg["norm_num_groups"])
    channels = channels if channels is not None else (3 if colour else 1)
    if channels not in (1, 3):
        raise ValueError(f"`channels`={channels}; accepted: 1 or 3")
    norm_num_groups = norm_num_groups or _groups(block_out_channels)
    recipe: dict[str, Any] = dict(
        patch_size=int(patch_size), channels=channels, block_out_channels=list(block_out_channels),
        layers_per_block=int(layers_per_block), norm_num_groups=int(norm_num_groups),
        num_train_timesteps=int(num_train_timesteps), beta_start=beta_start, beta_end=beta_end,
        lr=lr, batch_size=int(batch_size), ema_decay=ema_decay, grad_clip=grad_clip,
        weight_decay=weight_decay, scales=list(scales), channel_permute=channel_permute,
        grayscale_prob=grayscale_prob, seed=seed, mixed_precision=mp,
        init_from=None if init_from is None else str(init_from),
    )
    sampler = PatchSampler(images, patch_size, channels, scales, channel_permute, grayscale_prob)
    n = len(block_out_channels)
    model = UNet2DModel(
        sample_size=patch_size, in_channels=channels, out_channels=channels,
        block_out_channels=block_out_channels, layers_per_block=layers_per_block,
        norm_num_groups=norm_num_groups, down_block_types=("DownBlock2D",) * n,
        up_block_types=("UpBlock2D",) * n,
    )
    if init_unet is not None:
        model.load_state_dict(init_unet.state_dict())
    model.to(dev).train()
    ema = {k: v.detach().clone().float() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = DDPMScheduler(
        num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
        beta_schedule="linear", prediction_type="epsilon", clip_sample=True,
    )
    abar = linear_alphas_cumprod(num_train_timesteps, beta_start, beta_end).float().to(dev)
    g = torch.Generator().manual_seed(seed)
    scaler = torch.amp.GradScaler(dev.type, enabled=(mp == "fp16"))
    step, trained_s, smooth = 0, 0.0, None

    # ---- resume -----------------------------------------------------------------------------------
    ckpt_path = out / _CHECKPOINT
    if resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        old = state["recipe"]
        clash = [k for k in _ARCH_KEYS if old.get(k) != recipe[k]]
        if clash:
            raise ValueError(
                f"the checkpoint in {ckpt_path} was made with other settings "
                f"({', '.join(f'{k}={old.get(k)} vs {recipe[k]}' for k in clash)}); pass the same "
                "settings, another `out`, or start over without resuming (`resume`)"
            )
        model.load_state_dict(state["model"])
        ema = state["ema"]
        opt.load_state_dict(state["optimizer"])
        for group in opt.param_groups:  # a resumed run may change the learning rate
            group["lr"] = lr
        scaler.load_state_dict(state["scaler"]) if state.get("scaler") else None
        g.set_state(state["rng"])
        step, trained_s, smooth = int(state["step"]), float(state["trained_s"]), state.get("loss")
    ema = {k: v.to(dev) for k, v in ema.items()}

    def save() -> None:
        _save_checkpoint(ckpt_path, model, ema, opt, scaler, g, step, trained_s, smooth, recipe)
        _export(out, model, ema, scheduler, save_dtype, recipe, step, trained_s, smooth, used, folder, dev)

    # ---- train ------------------------------------------------------------------------------------
    start = time.perf_counter()
    last_step_s = 0.0
    target = max_steps if max_steps is not None else None
    bar = tqdm(total=target, initial=step, disable=not progress, desc="train-prior", unit="step",
               dynamic_ncols=True)
    try:
        while target is None or step < target:
            elapsed = time.perf_counter() - start
            if max_time_s is not None and elapsed + last_step_s > max_time_s:
                break
            t0 = time.perf_counter()
            x0 = (sampler(batch_size, g) * 2 - 1).to(dev, non_blocking=True)
            t = torch.randint(num_train_timesteps, (batch_size,), generator=g).to(dev)
            noise = torch.randn(x0.shape, generator=g).to(dev)
            a = abar[t].view(-1, 1, 1, 1)
            x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
            with torch.autocast(dev.type, dtype=torch.bfloat16 if mp == "bf16" else torch.float16,
                                enabled=mp != "no"):
                pred = model(x_t, t).sample
            loss = F.mse_loss(pred.float(), noise)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(opt)
            scaler.update()
            step += 1
            decay = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    if v.is_floating_point():
                        ema[k].lerp_(v.float(), 1 - decay)
                    else:
                        ema[k].copy_(v)
            value = float(loss.detach())
            smooth = value if smooth is None else 0.98 * smooth + 0.02 * value
            last_step_s = time.perf_counter() - t0
            trained_s += last_step_s
            bar.update(1)
            bar.set_postfix(loss=f"{smooth:.4f}")
            if step % checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        bar.close()
        save()
        raise
    bar.close()
    save()
    return out


def _atomic_torch_save(obj: Any, path: Path) -> None:
    # Through a temporary file and os.replace, so a crash mid-write never leaves a torn checkpoint.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _save_checkpoint(path: Path, model: "UNet2DModel", ema: dict[str, Tensor], opt: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler, g: torch.Generator, step: int, trained_s: float,
                     smooth: float | None, recipe: dict[str, Any]) -> None:
    """Write ``state.pt`` atomically: model, EMA, optimizer, scaler, RNG, step, time, loss, recipe."""
    _atomic_torch_save(
        {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "ema": {k: v.detach().cpu() for k, v in ema.items()},
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": g.get_state(),
            "step": step,
            "trained_s": trained_s,
            "loss": smooth,
            "recipe": recipe,
        },
        path,
    )


def _export(out: Path, model: "UNet2DModel", ema: dict[str, Tensor], scheduler: "DDPMScheduler",
            save_dtype: torch.dtype, recipe: dict[str, Any], step: int, trained_s: float,
            smooth: float | None, used: list[Path], folder: Path, dev: torch.device) -> None:
    """Write the DDPMPipeline folder with the EMA weights, and the README."""
    from diffusers import UNet2DModel

    export = UNet2DModel.from_config(model.config)
    export.load_state_dict({k: v.detach().cpu() for k, v in ema.items()})
    # nn.Module.to, not ModelMixin.to: the latter warns about fp32-only modules this UNet lacks.
    torch.nn.Module.to(export, save_dtype).save_pretrained(out / "unet", safe_serialization=True)
    scheduler.save_pretrained(out / "scheduler")
    import diffusers

    index = {"_class_name": "DDPMPipeline", "_diffusers_version": diffusers.__version__,
             "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    params = sum(p.numel() for p in model.parameters())
    names = ", ".join(str(p.relative_to(folder)) for p in used[:20]) + (" …" if len(used) > 20 else "")
    loss = "n/a" if smooth is None else f"{smooth:.4f}"
    recipe_lines = "\n".join(f"- `{k}`: {v}" for k, v in recipe.items())
    (out / "README.md").write_text(
        f"# A DDPM prior trained with `nested-inverse train-prior`\n\n"
        f"A diffusers `DDPMPipeline` folder: load it with "
        f"`nested_inverse.DiffusionPrior.from_pretrained(\"{out}\")`.\n\n"
        f"- Network: `UNet2DModel` ({params / 1e6:.2f} M parameters), DownBlock2D/UpBlock2D, "
        f"{recipe['channels']} channel(s), EMA weights stored as {str(save_dtype).replace('torch.', '')}.\n"
        f"- Noise schedule: DDPM linear betas {recipe['beta_start']} … {recipe['beta_end']}, "
        f"{recipe['num_train_timesteps']} steps, epsilon prediction, `clip_sample=True`.\n"
        f"- Training: {step} steps in {trained_s:.0f} s on {dev}"
        f"{' (' + torch.cuda.get_device_name(dev) + ')' if dev.type == 'cuda' else ''}; "
        f"smoothed epsilon-MSE at the end {loss}; written {_dt.datetime.now():%Y-%m-%d %H:%M}.\n"
        f"- Data: random {recipe['patch_size']}×{recipe['patch_size']} patches of {len(used)} images "
        f"from `{folder}`: {names}.\n\n"
        f"## Recipe\n\n{recipe_lines}\n\n"
        f"Resume or extend with the same command and a larger `--steps` (the checkpoint is in "
        f"`checkpoint/state.pt`; delete it to ship the folder without the optimizer state).\n"
    )
    del export
