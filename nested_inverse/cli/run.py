"""``nested-inverse run``: degrade and restore a folder of clean images, with metrics; resumable,
and split across processes under ``accelerate launch``."""

from __future__ import annotations

import argparse
from typing import Any

from ..dataset import launcher_processes, run_dataset
from ..dataset.processes import share_cores
from ..errors import UsageError
from .common import (as_flags, add_prior_args, add_sampler_args, add_task_args, load_prior_cached,
                     pick_device, require_pixel_prior, sampler_from_args, setup_logging,
                     task_from_args)

__all__ = ["add_parser", "add_dataset_args"]

_EPILOG = """\
Every image under DATASET_DIR (recursively) is loaded as RGB, centre-cropped to --center-crop N when
given and then to a multiple of the task's scale factor (4 for sr4); only images of one size share a
batch. Each image is degraded and restored with its own seeds (from --seed and its relative path), so
results do not depend on batching or the number of processes. Unreadable files are logged, counted
and skipped; images already finished in OUT are skipped, so an interrupted run resumes.

OUT holds reference/, observed/, restored/ (NAME.png; NAME_s1.png … for --samples > 1), masks/ and
kernels/ when the task has them, records/ (one JSON per finished image), metrics.csv, summary.json
and run.json (the configuration; a rerun with other settings into the same OUT is refused).

Exit code: 0 when at least one image has results, 1 when none has, 2 for a usage error.

Many processes: accelerate launch -m nested_inverse run DATASET_DIR --task sr4 --out OUT
(each process then takes its share of the CPU cores, cores // processes torch threads, unless
--threads says otherwise)
"""


def add_dataset_args(p: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``degrade``."""
    p.add_argument("dataset", metavar="DATASET_DIR", help="folder of clean images (searched recursively)")
    p.add_argument("--out", required=True, metavar="OUT", help="output folder (created if missing)")
    p.add_argument("--center-crop", type=int, default=None, metavar="N",
                   help="centre-crop every image to N×N pixels first (images smaller than N fail)")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="only the first N images (in sorted path order)")
    p.add_argument("--batch-size", type=int, default=4, metavar="B",
                   help="images processed together (default: 4)")
    p.add_argument("--seed", type=int, default=0,
                   help="base seed; each image's seeds also depend on its relative path (default: 0)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "run", help="degrade and restore a dataset folder, with metrics (resumable, multi-process)",
        description="Degrade every clean image in DATASET_DIR, restore it, and score the result "
                    "(PSNR, SSIM, and LPIPS when available) into OUT/metrics.csv and a summary.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_dataset_args(p)
    add_task_args(p)
    add_sampler_args(p)
    p.add_argument("--samples", type=int, default=1, metavar="K",
                   help="restorations per image, each with its own seed (default: 1)")
    p.add_argument("--max-side", type=int, default=None, metavar="N",
                   help="downscale every image so its longer side is at most N pixels (after "
                        "--center-crop); default: each image at its own size")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads per process (default: torch's own with one process, "
                        "cores // processes with several)")
    add_prior_args(p)
    p.set_defaults(func=run)


def check_crop(args: argparse.Namespace) -> None:
    if args.center_crop is not None and args.center_crop < 1:
        raise UsageError(f"`--center-crop`={args.center_crop} must be a positive number of pixels")


def run(args: argparse.Namespace) -> int:
    setup_logging()
    check_crop(args)
    if args.max_side is not None and args.max_side < 1:
        raise UsageError(f"`--max-side`={args.max_side} must be a positive number of pixels")
    task = task_from_args(args)
    sampler = sampler_from_args(args).for_noise(args.sigma_y)  # the policy for the noise given
    processes = launcher_processes()
    share_cores(processes, args.threads)
    device = pick_device(args.device, processes.device)
    prior = require_pixel_prior(load_prior_cached(args.prior, str(device), args.dtype,
                                                  args.allow_pickle), args.prior, "run")
    settings = {**task.describe(), "sigma_y": args.sigma_y, "seed": args.seed,
                "center_crop": args.center_crop,
                **({"max_side": args.max_side} if args.max_side is not None else {}),
                "samples": args.samples, "prior": args.prior,
                "dtype": args.dtype, **sampler.describe()}
    summary = run_dataset(
        args.dataset, args.out, task, prior=prior, sampler=sampler, sigma_y=args.sigma_y,
        seed=args.seed, samples=args.samples, batch_size=args.batch_size, limit=args.limit,
        center_crop=args.center_crop, max_side=args.max_side, device=device, settings=settings,
        processes=processes, progress=not args.no_progress,
    )
    if not processes.main:
        return 0  # the main process reports for everyone
    print(as_flags(summary.format()))
    return summary.exit_code
