"""``nested-inverse degrade``: only synthesise observations (y, masks, kernels) for a folder."""

from __future__ import annotations

import argparse
from typing import Any

from ..dataset import degrade_dataset, launcher_processes
from .common import as_flags, add_task_args, pick_device, setup_logging, task_from_args
from .run import add_dataset_args, check_crop

__all__ = ["add_parser"]

_EPILOG = """\
OUT holds observed/NAME.png (y on the [0, 1] scale, 8-bit) and observed/NAME.npy (y exactly, float32,
[C, h, w], noise unclipped), reference/NAME.png (the clean image after cropping), masks/NAME.png for
inpainting (white = observed), kernels/NAME.npy and .png for blurs, records/NAME.json (the seeds) and
summary.json. Seeds, cropping and resumption are those of `nested-inverse run` with the same
options, so `run` degrades each image exactly as this command does.
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "degrade", help="synthesise degraded observations (y, masks, kernels) for a dataset folder",
        description="Degrade every clean image in DATASET_DIR with the task's operator and noise.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_args(p)
    add_task_args(p)
    p.add_argument("--device", default="cpu", help="where to apply the operator (default: cpu)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    setup_logging()
    check_crop(args)
    task = task_from_args(args)
    processes = launcher_processes()
    summary = degrade_dataset(
        args.dataset, args.out, task, sigma_y=args.sigma_y, seed=args.seed,
        batch_size=args.batch_size, limit=args.limit, center_crop=args.center_crop,
        device=pick_device(args.device, processes.device), processes=processes,
        progress=not args.no_progress,
    )
    if not processes.main:
        return 0
    print(as_flags(summary.format()))
    return summary.exit_code
