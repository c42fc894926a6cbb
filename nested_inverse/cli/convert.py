"""``nested-inverse convert CHECKPOINT OUT_DIR``: a guided-diffusion (ADM) checkpoint as a diffusers folder.

Example (the DPS authors' FFHQ model)::

    nested-inverse convert ffhq_10m.pt ./ffhq-256
    nested-inverse restore face.png --prior ./ffhq-256 --task sr4
"""

from __future__ import annotations

import argparse
from typing import Any

_EPILOG = __doc__.split("Example (the DPS authors' FFHQ model)::", 1)[1]


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "convert", help="write a guided-diffusion (ADM) .pt/.safetensors checkpoint as a diffusers folder",
        description="Read a guided-diffusion / ADM state dict (ffhq_10m.pt, 256x256_diffusion_uncond.pt, "
                    "...; torch.load(weights_only=True)), map it onto diffusers' UNet2DModel and write "
                    "OUT_DIR/unet (safetensors, the noise outputs only) and OUT_DIR/scheduler (linear "
                    "betas 1e-4 to 0.02, 1000 steps). --prior OUT_DIR loads it without the original file.",
        epilog="example:" + _EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="the .pt / .pth / .safetensors file")
    p.add_argument("out_dir", metavar="OUT_DIR", help="a new (or empty) folder to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..priors.adm import convert_adm

    out = convert_adm(args.checkpoint, args.out_dir)
    print(f"wrote {out} (unet/ + scheduler/); restore with: nested-inverse restore IMG --prior {out}")
    return 0
