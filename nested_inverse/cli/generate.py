"""``nested-inverse generate``: anytime generation with a latent pipeline (Stable Diffusion, DiT),
writing the images, the outer steps as a strip and GIF, and a JSON record."""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from .. import __version__
from ..dataset import Outputs, check_result, check_writable, remove_empty
from ..errors import UsageError
from ..pictures import frames, gif_bytes, pick, strip_bytes
from .common import _DTYPES, pick_device, setup_logging

__all__ = ["add_parser"]

_EPILOG = """\
examples:
  nested-inverse generate --prompt "a photo of a cat" --prior ./stable-diffusion-v1-5 --out out/
  nested-inverse generate --class 207 --prior facebook/DiT-XL-2-256 --outer 4 --inner 10 --out out/

Writes NAME.png (NAME_1.png … with --num-images), NAME_steps.png and NAME_steps.gif (the image after
each outer step, labelled with network evaluations so far) and NAME.json (every parameter, seed,
evaluations, network images, decoding and wall time). The prior is read with local files only.
"""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "generate", help="generate images from a prompt or class (Stable Diffusion, DiT)",
        description="Generate images with nested diffusion over a latent pipeline: a finished "
                    "image after every outer step.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_mutually_exclusive_group()
    what.add_argument("--prompt", default=None, help="the text (text-conditional pipelines)")
    what.add_argument("--class", dest="class_label", type=_class, default=None, metavar="N|NAME",
                      help="the class label (class-conditional pipelines, DiT: 0 … 999), or a name "
                           "from the pipeline's id2label, e.g. 'golden retriever'")
    p.add_argument("--prior", required=True, metavar="PATH_OR_REPO_ID",
                   help="a diffusers latent pipeline folder (model_index.json, unet/ or "
                        "transformer/, vae/, scheduler/, text_encoder/, tokenizer/) or a Hub repo id "
                        "in the local cache")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--name", default="generated", help="output file stem (default: generated)")
    p.add_argument("--outer", type=int, default=4, metavar="K", help="outer steps (default: 4)")
    p.add_argument("--inner", type=int, default=5, metavar="I",
                   help="DDIM evaluations inside each outer step (default: 5)")
    p.add_argument("--budget", type=int, default=None, metavar="N",
                   help="network evaluations per image at most (default: K·I)")
    p.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                   help="wall-clock seconds: the run stops with its latest result")
    p.add_argument("--guidance-scale", type=float, default=None, metavar="S",
                   help="classifier-free guidance scale (default: 7.5 with --prompt, 4 with "
                        "--class; 1 runs no unconditional pass)")
    p.add_argument("--negative-prompt", default=None, help="the unconditional text of guidance")
    p.add_argument("--num-images", type=int, default=1, metavar="B", help="images (default: 1)")
    p.add_argument("--height", type=int, default=None, help="pixels (default: the model's size)")
    p.add_argument("--width", type=int, default=None, help="pixels (default: the model's size)")
    p.add_argument("--eta", type=float, default=0.85, help="inner DDIM eta (default: 0.85)")
    p.add_argument("--seed", type=int, default=0,
                   help="image i uses a generator seeded seed + i (default: 0)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="also load pickled .bin weights (only for sources you trust)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps … (default: auto)")
    p.add_argument("--dtype", choices=sorted(_DTYPES), default="float32",
                   help="the networks' dtype (default: float32; float16/bfloat16 on GPUs)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _class(text: str) -> int | str:
    """``--class``: an integer label, or a class name looked up in the pipeline's id2label."""
    return int(text) if text.lstrip("-").isdigit() else text


def _planned(prior: Any, args: argparse.Namespace) -> int:
    """The evaluations the nested DDIM run makes (the progress total): ``--budget`` and
    ``--outer × --inner`` are upper bounds, inner runs from small τ make fewer."""
    from ..nested import outer_timesteps
    from ..planning import planned_nfe
    from ..timesteps import spaced_timesteps

    try:
        taus = outer_timesteps(int(prior.alphas_cumprod.shape[0]), args.outer)
    except ValueError as err:
        raise UsageError(str(err)) from err
    return planned_nfe(taus, args.inner, args.budget or math.inf,
                       lambda tau, steps: len(spaced_timesteps(tau, steps)))


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..generate import generate
    from ..priors.pipelines import load_latent_pipeline

    setup_logging()
    for flag, value in (("--outer", args.outer), ("--inner", args.inner),
                        ("--num-images", args.num_images)):
        if value < 1:
            raise UsageError(f"`{flag}`={value} must be an integer >= 1")
    if args.deadline is not None and not args.deadline > 0:
        raise UsageError(f"`--deadline`={args.deadline} must be > 0 seconds")
    device = pick_device(args.device)
    try:
        prior = load_latent_pipeline(args.prior, torch_dtype=_DTYPES[args.dtype], device=device,
                                     allow_pickle=args.allow_pickle)
    except (ValueError, FileNotFoundError) as err:  # the loader names its argument `path`
        raise UsageError(str(err).replace("`path`", "`--prior`")) from err
    created = check_writable(args.out)
    out = Path(args.out)
    start = time.perf_counter()
    try:
        with tqdm(total=_planned(prior, args), desc=args.name, unit="NFE",
                  disable=args.no_progress, leave=False) as bar:
            result = generate(
                prior, args.prompt, class_label=args.class_label,
                negative_prompt=args.negative_prompt, guidance_scale=args.guidance_scale,
                outer_steps=args.outer, inner_steps=args.inner, num_images=args.num_images,
                height=args.height, width=args.width, eta=args.eta, seed=args.seed,
                budget_nfe=args.budget, deadline_s=args.deadline,
                callback=lambda s: bar.update(s.nfe - bar.n))
        check_result(result.images * 2 - 1, args.name)
        _write(result, args, out, device, time.perf_counter() - start)
    except BaseException:
        remove_empty(created)
        raise
    return 0


def _write(result: Any, args: argparse.Namespace, out: Path, device: Any, seconds: float) -> None:
    files = Outputs()
    B = result.images.shape[0]
    names = [args.name] if B == 1 else [f"{args.name}_{i}" for i in range(B)]
    try:
        written = {f"image{'' if B == 1 else '_' + str(i)}": files.image(result.images[i].cpu(),
                                                                          out / f"{n}.png")
                   for i, n in enumerate(names)}
        picked = pick(result.steps)
        pictures = frames([s.image[0].cpu() for s in picked], [f"NFE {s.nfe}" for s in picked])
        written["steps_strip"] = files.bytes(strip_bytes(pictures), out / f"{args.name}_steps.png")
        written["steps_gif"] = files.bytes(gif_bytes(pictures), out / f"{args.name}_steps.gif")
        record = {
            "command": "generate", "version": __version__, "prior": args.prior,
            **result.condition, "negative_prompt": args.negative_prompt,
            **result.sampler, "budget_nfe": args.budget, "deadline_s": args.deadline,
            "num_images": B, "image_shape": list(result.images.shape[1:]), "seed": args.seed,
            "seeds": [args.seed + i for i in range(B)], "device": str(device), "dtype": args.dtype,
            "nfe": result.nfe, "network_images": result.network_images,
            "decode_s": round(result.decode_s, 4), "wall_time_s": round(seconds, 3),
            "intermediates": [{"outer_step": s.outer_step, "nfe": s.nfe,
                               "network_images": s.network_images,
                               "elapsed_s": round(s.result.elapsed_s, 4),
                               "decode_s": round(s.decode_s, 4)} for s in result.steps],
            "outputs": {k: Path(v).name for k, v in written.items()},
        }
        files.json(json.loads(json.dumps(record, default=str)), out / f"{args.name}.json")
    except BaseException:
        files.discard()
        raise
    print(f"{args.prior} -> {out / (names[0] + '.png')} ({result.nfe} evaluations, "
          f"{result.network_images} network images, {seconds:.1f} s, decoding {result.decode_s:.2f} s)")
