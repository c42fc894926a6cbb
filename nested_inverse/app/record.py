"""The downloads of a finished run: the restoration, the observation, the strip of steps, and the JSON
record with the keys of ``nested-inverse restore``'s ``NAME.json`` (plus what guidance was given)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .. import __version__
from ..anytime import AnytimeResult
from ..cli.anim import frames, pick, strip_bytes
from ..imageio import atomic_write, save_image
from ..metrics import image_quality
from .job import GENERATE, Job

__all__ = ["write_outputs"]


def write_outputs(job: Job, results: list[AnytimeResult], guidance: list[dict[str, Any]],
                  stopped: bool, seconds: float, prior_name: str, dtype: str,
                  folder: Path) -> dict[str, Path]:
    """Write ``NAME.png``, ``NAME_y.png`` (not for generation), ``NAME_steps.png`` and ``NAME.json``
    into ``folder``; returns them by role (``restoration``, ``observation``, ``steps_strip``,
    ``record``).

    ``results`` is the trajectory shown (the last is the final result, model range);
    ``guidance`` the commands applied, each ``{"command": …, "nfe": …}``.
    """
    name = Path(job.source.name).stem or "image"
    shown = [(r.nfe, _from_model(r.image)) for r in results]
    x01 = shown[-1][1]
    written = {"restoration": save_image(x01[0], folder / f"{name}.png")}
    if job.problem is not None:
        written["observation"] = save_image(job.problem.y01[0].clamp(0, 1).cpu(),
                                            folder / f"{name}_y.png")
    picked = pick(shown)
    pictures = frames([img[0] for _, img in picked], [f"NFE {n}" for n, _ in picked])
    written["steps_strip"] = atomic_write(folder / f"{name}_steps.png", strip_bytes(pictures))
    record = _record(job, shown, seconds, prior_name, dtype, x01)
    record.update({"guidance": guidance, "stopped": stopped,
                   "outputs": {k: v.name for k, v in written.items()}})
    written["record"] = atomic_write(folder / f"{name}.json",
                                     json.dumps(record, indent=2, default=str).encode())
    return written


def _from_model(x: Tensor) -> Tensor:
    return ((x.detach().float().cpu() + 1) / 2).clamp(0, 1)


def _record(job: Job, shown: list[tuple[int, Tensor]], seconds: float, prior_name: str,
            dtype: str, x01: Tensor) -> dict[str, Any]:
    """The command line's record (``cli/restore.py``), key for key, filled from the page's run."""
    s, problem = job.settings, job.problem
    task = job.task.describe() if job.task is not None else {"task": GENERATE, "task_args": {}}
    mask = job.source.mask_name if s.task != GENERATE else None
    record: dict[str, Any] = {
        "command": "serve", "version": __version__, "input": job.source.name,
        **task, "mask": mask, "sigma_y": s.sigma_y,
        **s.config().describe(), "deadline_s": s.deadline_s, "prior": prior_name, "device": str(job.device),
        "dtype": dtype, "seed": s.seed, "seeds": job.seeds.describe(), "degrade": not s.degraded,
        "center_crop": s.center_crop, "max_side": None, "image_shape": list(x01.shape[1:]),
        "observation_shape": list(problem.y01.shape[1:]) if problem is not None else None,
        "nfe": int(shown[-1][0]), "wall_time_s": round(seconds, 3),
        "intermediates": [{"nfe": int(n)} for n, _ in shown],
    }
    if job.condition is not None:  # a latent pipeline: what steered it (as `restore --prompt`)
        record.update(job.condition)
    if job.clean is not None:
        clean = job.clean.cpu().to(torch.float32)
        record.update({k: v[0] for k, v in image_quality(x01, clean).items()})
        for entry, (_, img) in zip(record["intermediates"], shown):
            quality = image_quality(img, clean)
            entry.update({"psnr": quality["psnr"][0], "ssim": quality["ssim"][0]})
    return json.loads(json.dumps(record, default=str))
