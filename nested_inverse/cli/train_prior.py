"""``nested-inverse train-prior IMAGES_DIR --out DIR``: train a DDPM prior on a folder of images.

Example (the bundled default's recipe on a GPU, stopping after 2,326 steps or an hour)::

    nested-inverse train-prior my_images/ --out my-prior --steps 2326 --time-budget 3600
"""

from __future__ import annotations

import argparse

import torch

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return values


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train-prior",
        help="train a pixel-space DDPM prior on random patches of a folder of images",
        description=(
            "Train a diffusers UNet2DModel (DDPM, linear betas, epsilon prediction) on random patches "
            "of the images under IMAGES_DIR (recursive), with EMA weights, periodic checkpoints and "
            "resume. Writes a folder that `--prior DIR` and DiffusionPrior.from_pretrained load. "
            "Defaults are the bundled prior's recipe; give --steps and/or --time-budget."
        ),
    )
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of training images (searched recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (DDPMPipeline layout)")
    p.add_argument("--patch-size", type=int, default=64, help="training patch side (default 64)")
    p.add_argument("--channels", type=_ints, default=(64, 128, 128, 256), metavar="C1,C2,...",
                   help="UNet block widths (default 64,128,128,256)")
    p.add_argument("--layers-per-block", type=int, default=2, help="ResNet layers per block (default 2)")
    p.add_argument("--image-channels", type=int, choices=(1, 3), default=None,
                   help="1 (grayscale) or 3 (RGB); default 3 if any image has colour")
    p.add_argument("--lr", type=float, default=3e-4, help="AdamW learning rate (default 3e-4)")
    p.add_argument("--batch-size", type=int, default=256, help="patches per step (default 256)")
    p.add_argument("--ema", type=float, default=0.9995, help="EMA decay of the exported weights (default 0.9995)")
    p.add_argument("--steps", type=int, default=None, help="total steps (resumed ones included)")
    p.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="stop after this many seconds of this run")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="start over even if DIR holds a checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="e.g. cuda, cuda:1, cpu (default: CUDA when available)")
    p.add_argument("--mixed-precision", choices=("auto", "no", "bf16", "fp16"), default="auto",
                   help="autocast dtype (default auto: bf16 on CUDA, none on CPU)")
    p.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip, 0 for none (default 1)")
    p.add_argument("--scales", type=_floats, default=(1.0, 0.75, 0.5, 0.35), metavar="S1,S2,...",
                   help="crop scales: a crop of side patch/scale is resized to the patch (default 1,0.75,0.5,0.35)")
    p.add_argument("--channel-permute", action="store_true", help="randomly permute RGB channels")
    p.add_argument("--grayscale-prob", type=float, default=0.0, help="probability of a grayscale patch")
    p.add_argument("--init-from", default=None, metavar="DIR", help="start from this prior's weights (fine-tune)")
    p.add_argument("--save-dtype", choices=tuple(_DTYPES), default="float32",
                   help="dtype of the exported weights (default float32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
    return p


def _run(args: argparse.Namespace) -> int:
    from ..priors import train_prior

    out = train_prior(
        args.images_dir,
        args.out,
        patch_size=args.patch_size,
        block_out_channels=args.channels,
        layers_per_block=args.layers_per_block,
        channels=args.image_channels,
        lr=args.lr,
        batch_size=args.batch_size,
        ema_decay=args.ema,
        max_steps=args.steps,
        max_time_s=args.time_budget,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        seed=args.seed,
        device=args.device,
        mixed_precision=args.mixed_precision,
        grad_clip=args.grad_clip or None,
        scales=args.scales,
        channel_permute=args.channel_permute,
        grayscale_prob=args.grayscale_prob,
        init_from=args.init_from,
        save_dtype=_DTYPES[args.save_dtype],
        progress=not args.quiet,
    )
    print(f"wrote {out}")
    return 0
