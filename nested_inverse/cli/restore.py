"""``nested-inverse restore``: restore single images, writing the result, y, the anytime steps and a
JSON sidecar."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import solvers
from ..anytime import run_to_end
from ..dataset import (Outputs, check_result, check_writable, launcher_processes, operator_images,
                       remove_empty)
from ..errors import UsageError
from ..memory import plan_memory
from ..imageio import load_image
from ..problem import Problem
from ..run_record import RunRecord
from ..sampling import SamplerConfig
from ..seeds import ImageSeeds
from ..service import prepare_image
from .. import service
from ..solvers.latent import is_latent_prior
from ..tasks import Task
from ..pictures import frames, gif_bytes, pick, strip_bytes
from .common import (add_prior_args, add_sampler_args, add_task_args, load_mask, load_prior_cached,
                     pick_device, sampler_from_args, setup_logging, task_from_args)

__all__ = ["add_parser"]

_EPILOG = """\
examples:
  nested-inverse restore photo_small.png --task sr4 --out out/          # super-resolve a photo 4x
  nested-inverse restore damaged.png --mask observed.png --out out/     # inpaint (white = observed)
  nested-inverse restore data/images/coffee.png --degrade --task sr4 --center-crop 128 --out out/

Writes, per image NAME: NAME.png (the restoration), NAME_y.png (the observation), NAME_steps.png and
NAME_steps.gif (the restoration after each outer step, labelled with network evaluations so far),
NAME.json (every parameter, seeds, evaluations, wall time; PSNR/SSIM with --degrade), and with
--degrade NAME_clean.png (the reference after cropping).
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "restore", help="restore images (super-resolution, inpainting, deblurring, …)",
        description="Restore degraded images with nested diffusion: a finished restoration after "
                    "every outer step. By default each IMAGE is the degraded observation y; with "
                    "--degrade it is a clean image that is degraded first (for experiments).",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, …)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    add_task_args(p, required=False)
    p.add_argument("--mask", metavar="MASK.png",
                   help="inpainting mask, same size as the image: white = observed, black = missing "
                        "(then --task may be omitted)")
    p.add_argument("--degrade", action="store_true",
                   help="each IMAGE is clean: synthesise y from it first (seeded), and report "
                        "PSNR/SSIM against it")
    p.add_argument("--center-crop", type=int, default=None, metavar="N",
                   help="centre-crop each input to N×N pixels first")
    p.add_argument("--max-side", type=int, default=None, metavar="N",
                   help="downscale so the restored image's longer side is at most N pixels (after "
                        "--center-crop; without --degrade the observation is shrunk to match); "
                        "default: the whole image at its own size")
    add_sampler_args(p)
    p.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                   help="wall-clock seconds per image: the run stops with its latest result; with "
                        "the auto split and no --budget, one timed evaluation sets the budget")
    add_prior_args(p)
    p.add_argument("--class", dest="class_label", type=int, default=None, metavar="N",
                   help="the class of a class-conditional pixel prior (guided-diffusion's "
                        "256x256_diffusion.pt: ImageNet 0 … 999)")
    g = p.add_argument_group("steering (latent text-to-image pipelines)")
    g.add_argument("--prompt", default=None,
                   help='text that steers the restoration, e.g. "a photo of a cat" (needs a '
                        "text-conditional pipeline as --prior)")
    g.add_argument("--negative-prompt", default=None, help="the unconditional text of guidance")
    g.add_argument("--guidance-scale", type=float, default=1.0, metavar="S",
                   help="classifier-free guidance scale with --prompt (default: 1, the "
                        "conditional model alone, one pass per evaluation)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed: IMAGE number i (0, 1, … in the order given) is restored with seed "
                        "SEED + i, as restore() seeds image i of a batch (default: 0)")
    p.add_argument("--save-intermediates", action="store_true",
                   help="also write every intermediate restoration as NAME_steps/nfeNNNN.png")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


@dataclass
class _Item:
    """One input, checked and ready to restore."""

    path: Path
    name: str
    problem: Problem  # y in both ranges ([0, 1] as written to NAME_y.png), the operator, sigma_y
    clean01: Tensor | None  # with --degrade
    seeds: ImageSeeds


def run(args: argparse.Namespace) -> int:
    setup_logging()
    if args.center_crop is not None and args.center_crop < 1:
        raise UsageError(f"`--center-crop`={args.center_crop} must be a positive number of pixels")
    if args.max_side is not None and args.max_side < 1:
        raise UsageError(f"`--max-side`={args.max_side} must be a positive number of pixels")
    mask = load_mask(args.mask) if args.mask else None
    task = task_from_args(args, mask)
    sampler = sampler_from_args(args)  # checked now; re-made below for a latent prior's default
    if args.deadline is not None and not args.deadline > 0:
        raise UsageError(f"`--deadline`={args.deadline} must be > 0 seconds")
    if not args.sigma_y >= 0:
        raise UsageError(f"`--sigma-y`={args.sigma_y} must be >= 0 (on the [0, 1] scale; 0.05 = 5 %)")
    # Everything the user gave is checked before anything is written.
    items = [_prepare(Path(p), name, i, args, task)
             for i, (p, name) in enumerate(zip(args.images, _names(args.images)))]
    # Under a launcher (accelerate launch) each process takes every world-th image.
    processes = launcher_processes()
    device = pick_device(args.device, processes.device)
    prior = _steered(load_prior_cached(args.prior, str(device), args.dtype, args.allow_pickle,
                                               args.class_label), args)
    if args.method is None:
        sampler = sampler_from_args(args, solvers.default_method(prior))
    created = check_writable(args.out)
    done = 0
    try:
        for item in items[processes.rank::processes.world]:
            _restore(item, args, task, sampler, prior, device)
            done += 1
    except BaseException:
        if done == 0:  # nothing finished: leave no empty output folder behind either
            remove_empty(created)
        raise
    return 0


def _steered(prior: Any, args: argparse.Namespace) -> Any:
    """The prior bound to ``--prompt`` (a latent pipeline's :meth:`conditioned`), or as it is."""
    steering = args.prompt is not None or args.negative_prompt is not None or args.guidance_scale != 1
    if not callable(getattr(prior, "conditioned", None)):
        if steering:
            given = "--prompt" if args.prompt is not None else (
                "--negative-prompt" if args.negative_prompt is not None else "--guidance-scale")
            raise UsageError(f"`{given}` steers a text-conditional latent pipeline, but `--prior`="
                             f"{args.prior!r} is a pixel prior; give a pipeline folder "
                             "(model_index.json, unet/, vae/, text_encoder/, tokenizer/) as --prior")
        return prior
    try:
        return prior.conditioned(prompt=args.prompt, negative_prompt=args.negative_prompt,
                                 guidance_scale=args.guidance_scale)
    except ValueError as err:
        raise UsageError(str(err)) from err


def _names(paths: list[str]) -> list[str]:
    """Output names: the file stems, numbered where two inputs share one."""
    names, seen = [], {}
    for p in paths:
        stem = Path(p).stem
        seen[stem] = seen.get(stem, 0) + 1
        names.append(stem if seen[stem] == 1 else f"{stem}_{seen[stem]}")
    return names


def _load(path: Path) -> Tensor:
    if not path.is_file():
        raise UsageError(f"`IMAGE`={str(path)!r}: no such file")
    try:
        return load_image(path, mode="RGB")
    except ValueError as err:
        raise UsageError(f"`IMAGE`={str(path)!r} is not a readable image (PNG, JPEG, TIFF, …)") from err


def _check_memory(shape: tuple[int, int, int], args: argparse.Namespace) -> None:
    """Refuse an image whose tensors alone would not fit, before its operator is built (the
    whole plan, network included, is made again when the prior is there)."""
    device = pick_device(args.device)
    if device.type == "cpu":
        plan_memory(image_shape=shape, batch=1, method=args.method or "ddrm", device=device)


#: The settings as this command's flags, for messages.
_FLAGS = {"center_crop": "--center-crop", "max_side": "--max-side", "task": "--task",
          "mask": "--mask"}


def _prepare(path: Path, name: str, index: int, args: argparse.Namespace, task: Task) -> _Item:
    """IMAGE number ``index`` of the command, checked and ready (seeds: ``--seed`` + index)."""
    prepared = prepare_image(_load(path), task, ImageSeeds(args.seed + index),
                             sigma_y=args.sigma_y, degrade=args.degrade,
                             center_crop=args.center_crop, max_side=args.max_side,
                             what=f"`IMAGE`={str(path)!r}", names=_FLAGS,
                             before_operator=lambda shape: _check_memory(shape, args))
    return _Item(path, name, prepared.problem, prepared.clean, prepared.seeds)


def _restore(item: _Item, args: argparse.Namespace, task: Task, sampler: SamplerConfig, prior: Any,
             device: torch.device) -> None:
    from tqdm.auto import tqdm

    out = Path(args.out)
    problem = item.problem.to(device)
    start = time.perf_counter()
    sampler, run = service.start(sampler, prior, problem, [item.seeds], args.deadline)
    with tqdm(total=sampler.budget, desc=item.name, unit="NFE", disable=args.no_progress,
              leave=False) as bar:
        results = run_to_end(run, callback=lambda r: bar.update(r.nfe - bar.n))
    seconds = time.perf_counter() - start
    check_result(results[-1].image, str(item.path))
    shown = [(r.nfe, service.display(prior, r.image)) for r in results]
    x01 = shown[-1][1]

    files = Outputs()
    try:
        written = {"restoration": files.image(x01[0], out / f"{item.name}.png"),
                   "observation": files.image(item.problem.y01[0].clamp(0, 1),
                                              out / f"{item.name}_y.png")}
        if item.clean01 is not None:
            written["clean"] = files.image(item.clean01[0], out / f"{item.name}_clean.png")
            extras = operator_images(item.problem.operator)
            if "mask" in extras and not args.mask:
                written["mask"] = files.image(extras["mask"][0], out / f"{item.name}_mask.png")
        picked = pick(shown)
        pictures = frames([img[0] for _, img in picked], [f"NFE {n}" for n, _ in picked])
        written["steps_strip"] = files.bytes(strip_bytes(pictures), out / f"{item.name}_steps.png")
        written["steps_gif"] = files.bytes(gif_bytes(pictures), out / f"{item.name}_steps.gif")
        if args.save_intermediates:
            for n, img in shown:
                files.image(img[0], out / f"{item.name}_steps" / f"nfe{n:04d}.png")
            written["steps_dir"] = out / f"{item.name}_steps"
        sidecar = _sidecar(item, args, task, sampler, device, shown, seconds,
                           latent=is_latent_prior(prior))
        sidecar["outputs"] = {k: Path(v).name for k, v in written.items()}
        files.json(sidecar, out / f"{item.name}.json")
    except BaseException:
        files.discard()
        raise
    print(f"{item.path} -> {out / (item.name + '.png')} ({results[-1].nfe} evaluations, {seconds:.1f} s"
          + (f", PSNR {sidecar['psnr']:.2f} dB" if sidecar.get("psnr") is not None else "") + ")")


def _sidecar(item: _Item, args: argparse.Namespace, task: Task, sampler: SamplerConfig,
             device: torch.device, shown: list[tuple[int, Tensor]], seconds: float,
             latent: bool = False) -> dict[str, Any]:
    condition = ({"prompt": args.prompt, "negative_prompt": args.negative_prompt,
                  "guidance_scale": args.guidance_scale} if latent else None)
    record = RunRecord("restore", str(item.path), task.describe(), args.mask, args.sigma_y, sampler,
                       args.deadline, args.prior, str(device), args.dtype, args.seed, item.seeds,
                       args.degrade, args.center_crop, args.max_side,
                       tuple(item.problem.y01.shape[1:]), condition)
    return record.finish(shown, seconds, item.clean01)
