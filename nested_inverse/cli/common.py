"""Options shared by the subcommands and turning them into tasks, samplers, priors and devices."""

from __future__ import annotations

import argparse
import functools
import logging
import re
import sys
from typing import Any

import torch

from .. import solvers
from ..errors import UsageError
from ..sampling import SamplerConfig
from ..tasks import Task, parse_key_values, resolve_task

__all__ = [
    "FLAGS",
    "as_flags",
    "add_prior_args",
    "add_sampler_args",
    "add_task_args",
    "load_mask",
    "load_prior_cached",
    "require_pixel_prior",
    "pick_device",
    "sampler_from_args",
    "setup_logging",
    "task_from_args",
]

#: Python argument names in library errors → the flag (or positional) that sets them.
FLAGS = {
    "task": "--task", "task_args": "--task-arg", "mask": "--mask", "sigma_y": "--sigma-y",
    "method": "--method", "method_params": "--method-arg", "method_args": "--method-arg",
    "outer": "--outer", "inner": "--inner", "outer_steps": "--outer", "inner_steps": "--inner",
    "steps": "--steps", "vanilla": "--vanilla", "budget_nfe": "--budget", "deadline_s": "--deadline", "seed": "--seed", "samples": "--samples",
    "batch_size": "--batch-size", "limit": "--limit", "center_crop": "--center-crop",
    "max_side": "--max-side", "tile": "--tile", "threads": "--threads",
    "out": "--out", "root": "DATASET_DIR", "device": "--device", "torch_dtype": "--dtype",
    "path_or_repo_id": "--prior", "allow_pickle": "--allow-pickle",
    # generate
    "prompt": "--prompt", "class_label": "--class", "negative_prompt": "--negative-prompt",
    "guidance_scale": "--guidance-scale", "num_images": "--num-images", "height": "--height",
    "width": "--width",
    # train-prior
    "max_steps": "--steps", "max_time_s": "--time-budget", "resume": "--no-resume",
    "patch_size": "--patch-size", "images_dir": "IMAGES_DIR",
}


def as_flags(message: str) -> str:
    """``message`` with every `` `argument` `` the command line sets shown as its flag, and
    `` `switch=True` `` as the switch itself (`` `allow_pickle=True` `` → `` `--allow-pickle` ``).

    Example:
        >>> as_flags("`path_or_repo_id`='a/b' ... pass `allow_pickle=True` ... `other`")
        "`--prior`='a/b' ... pass `--allow-pickle` ... `other`"
    """
    def flag(m: re.Match[str]) -> str:
        name, switch = m.group(1), m.group(2)
        if switch and name in FLAGS:
            return f"`{FLAGS[name]}`"
        return f"`{FLAGS.get(name, name)}{switch or ''}`"

    return re.sub(r"`([a-z_]+)(=True)?`", flag, message)


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def add_task_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``--task``, ``--task-arg``, ``--sigma-y``."""
    g = p.add_argument_group("degradation")
    g.add_argument("--task", required=required, metavar="NAME",
                   help="the degradation: a registered operator (see `nested-inverse operators`; e.g. "
                        "sr4, inpaint-box, blur-gauss, colorize) or your own factory as "
                        "module:function, imported from PYTHONPATH")
    g.add_argument("--task-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of the operator, e.g. --task-arg sigma=2.0 (repeatable)")
    g.add_argument("--sigma-y", type=float, default=0.0, metavar="S",
                   help="observation noise std on the [0, 1] image scale (0.05 = 5%% of the range); "
                        "added when degrading and assumed when restoring (default: 0)")


def add_sampler_args(p: argparse.ArgumentParser) -> None:
    """``--method``, ``--method-arg``, ``--outer``/``--inner`` or ``--vanilla``/``--steps``."""
    g = p.add_argument_group("restoration")
    g.add_argument("--method", choices=solvers.available(), default=None,
                   help="the inner solver (default: ddrm; psld with a latent --prior)")
    g.add_argument("--method-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="a parameter of the solver, e.g. --method-arg eta=0.85 (repeatable)")
    g.add_argument("--budget", type=int, default=None, metavar="N",
                   help="network evaluations per image (default: 20)")
    g.add_argument("--split", default=None, metavar="KxI|auto",
                   help="K outer steps of I solver steps each; auto (the default) chooses them for "
                        "the budget: 4x5 at 20, 4x13 trimmed to 50 at 50, with DDRM's/PiGDM's eta=1 "
                        "for --sigma-y 0 unless --method-arg sets it")
    g.add_argument("--outer", type=int, default=None, metavar="K",
                   help="outer (nested) steps, with --inner: the same as --split KxI")
    g.add_argument("--inner", type=int, default=None, metavar="I",
                   help="solver steps inside each outer step, with --outer")
    g.add_argument("--vanilla", action="store_true",
                   help="run the solver alone from noise instead of nested, for --budget (or "
                        "--steps) evaluations")
    g.add_argument("--steps", type=int, default=None, metavar="N",
                   help="solver steps with --vanilla (default: the budget)")
    g.add_argument("--tile", type=int, default=None, metavar="N",
                   help="run the prior on overlapping N×N tiles of large images (0: never; "
                        "default: tiles of the network's training size once a side exceeds "
                        "twice it)")


def parse_split(text: str) -> tuple[int, int] | None:
    """``--split``: ``"4x5"`` → ``(4, 5)``; ``"auto"`` → None."""
    if text == "auto":
        return None
    k, sep, i = text.lower().partition("x")
    if sep and k.isdigit() and i.isdigit() and int(k) >= 1 and int(i) >= 1:
        return int(k), int(i)
    raise UsageError(f"`--split`={text!r} must be KxI with integers >= 1 (e.g. 4x5) or auto")


def add_prior_args(p: argparse.ArgumentParser) -> None:
    """``--prior``, ``--allow-pickle``, ``--device``, ``--dtype``."""
    g = p.add_argument_group("model")
    g.add_argument("--prior", default="default", metavar="PATH_OR_REPO_ID",
                   help="a diffusers pixel-space UNet (a local folder or a Hugging Face Hub repo "
                        "id), a guided-diffusion (ADM) checkpoint file .pt/.safetensors (e.g. "
                        "ffhq_10m.pt), or a latent pipeline folder (Stable Diffusion, DiT: model_index.json "
                        "with a vae) (default: the bundled natural-patches-64 prior)")
    g.add_argument("--allow-pickle", action="store_true",
                   help="also load pickled .bin weights (Google's DDPM repos ship only those); "
                        "unpickling can run arbitrary code, so only for sources you trust")
    g.add_argument("--device", default="auto",
                   help="where the network runs: auto (the launcher's device, else cuda when "
                        "available, else cpu), cpu, cuda, cuda:1, mps … (default: auto)")
    g.add_argument("--dtype", choices=sorted(_DTYPES), default="float32",
                   help="the network's dtype (default: float32; float16/bfloat16 on GPUs)")


def load_mask(path: str) -> torch.Tensor:
    """A mask image as ``[H, W]`` bool: white (> 0.5) = observed."""
    from ..imageio import load_image

    try:
        m = load_image(path, mode="L")
    except FileNotFoundError as err:
        raise UsageError(f"`--mask`={path!r}: no such file") from err
    except ValueError as err:
        raise UsageError(f"`--mask`={path!r} is not a readable image") from err
    return m[0, 0] > 0.5


def task_from_args(args: argparse.Namespace, mask: torch.Tensor | None = None) -> Task:
    """The :class:`~nested_inverse.tasks.Task` that ``--task``/``--task-arg`` (and a mask) name."""
    return resolve_task(args.task, parse_key_values(args.task_arg, "--task-arg"), mask=mask)


def sampler_from_args(args: argparse.Namespace, default_method: str = "ddrm") -> SamplerConfig:
    """The :class:`~nested_inverse.SamplerConfig` of the restoration options (``--method`` or
    ``default_method``)."""
    explicit = args.outer is not None or args.inner is not None
    if args.vanilla and (explicit or args.split is not None):
        raise UsageError("`--vanilla` runs the solver alone; drop `--split`/`--outer`/`--inner` or "
                         "`--vanilla`")
    if not args.vanilla and args.steps is not None:
        raise UsageError("`--steps` applies to `--vanilla` runs; for nested runs use `--budget` "
                         "and `--split`")
    if explicit and args.split is not None:
        raise UsageError(f"`--split`={args.split!r} and `--outer`/`--inner` say the same thing; "
                         "give one of them")
    if explicit and (args.outer is None or args.inner is None):
        raise UsageError("`--outer` and `--inner` go together (or use `--split KxI`)")
    split = parse_split(args.split) if args.split is not None else (
        (args.outer, args.inner) if explicit else None)
    outer, inner = split if split is not None else (None, None)
    return SamplerConfig(
        method=args.method or default_method,
        method_args=parse_key_values(args.method_arg, "--method-arg"),
        outer=outer, inner=inner, vanilla=args.vanilla, steps=args.steps,
        budget_nfe=args.budget, tile=args.tile,
    )


def pick_device(spec: str, launcher_device: torch.device | None = None) -> torch.device:
    """``--device``: ``auto`` → the launcher's device, else CUDA when available, else CPU."""
    if spec == "auto":
        if launcher_device is not None:
            return torch.device(launcher_device)
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as err:
        raise UsageError(f"`--device`={spec!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"`--device`={spec!r} but CUDA is not available here; use cpu or auto")
    return device


@functools.lru_cache(maxsize=2)
def load_prior_cached(spec: str, device: str, dtype: str, allow_pickle: bool = False,
                      class_label: int | None = None) -> Any:
    """:func:`~nested_inverse.load_prior`, loaded once per process (in-process callers such as tests
    call ``main`` many times); ``class_label`` for a class-conditional pixel UNet (ADM)."""
    from ..priors import load_prior

    if spec == "default":
        return load_prior(None, device=device, torch_dtype=_DTYPES[dtype])
    extra = {} if class_label is None else {"class_label": class_label}
    try:
        return load_prior(spec, device=device, torch_dtype=_DTYPES[dtype], allow_pickle=allow_pickle,
                          **extra)
    except ValueError as err:
        if "class_label" in str(err):
            raise UsageError(f"`--prior`={spec!r}: {err}") from err
        raise


def require_pixel_prior(prior: Any, spec: str, command: str) -> Any:
    """``prior``, or a refusal naming ``--prior`` where ``command`` has no latent path yet."""
    from ..solvers.latent import is_latent_prior

    if is_latent_prior(prior):
        raise UsageError(f"`--prior`={spec!r} is a latent pipeline; `{command}` runs pixel priors "
                         "only so far: restore single images with `restore --prior`, or generate "
                         "with `generate`")
    return prior


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time (tests and notebooks swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(as_flags(self.format(record)), file=sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never break the run
            self.handleError(record)


def setup_logging(level: int = logging.INFO) -> None:
    """Warnings and notes of the package go to stderr, one line each; installed once."""
    logger = logging.getLogger("nested_inverse")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("nested-inverse: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level)
