"""The downloads of a finished run: the restoration, the observation, the strip of steps, and the JSON
record with the keys of ``nested-inverse restore``'s ``NAME.json`` (plus what guidance was given)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import Tensor

from ..anytime import AnytimeResult
from ..pictures import frames, pick, strip_bytes
from ..imageio import atomic_write, save_image
from ..run_record import RunRecord
from ..service import display
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
    shown = [(r.nfe, display(None, r.image)) for r in results]  # already decoded by the session
    x01 = shown[-1][1]
    written = {"restoration": save_image(x01[0], folder / f"{name}.png")}
    if job.problem is not None:
        written["observation"] = save_image(job.problem.y01[0].clamp(0, 1).cpu(),
                                            folder / f"{name}_y.png")
    picked = pick(shown)
    pictures = frames([img[0] for _, img in picked], [f"NFE {n}" for n, _ in picked])
    written["steps_strip"] = atomic_write(folder / f"{name}_steps.png", strip_bytes(pictures))
    record = _record(job, shown, seconds, prior_name, dtype)
    record.update({"guidance": guidance, "stopped": stopped,
                   "outputs": {k: v.name for k, v in written.items()}})
    written["record"] = atomic_write(folder / f"{name}.json",
                                     json.dumps(record, indent=2, default=str).encode())
    return written


def _record(job: Job, shown: list[tuple[int, Tensor]], seconds: float, prior_name: str,
            dtype: str) -> dict[str, Any]:
    """The command line's record (:class:`~nested_inverse.run_record.RunRecord`), filled from the
    page's run."""
    s, problem = job.settings, job.problem
    task = job.task.describe() if job.task is not None else {"task": GENERATE, "task_args": {}}
    mask = job.source.mask_name if s.task != GENERATE else None
    config = s.config() if problem is None else s.config().for_problem(problem)
    record = RunRecord("serve", job.source.name, task, mask, s.sigma_y, config, s.deadline_s,
                       prior_name, str(job.device), dtype, s.seed, job.seeds, not s.degraded,
                       s.center_crop, s.max_side if job.task is not None else None,
                       tuple(problem.y01.shape[1:]) if problem is not None else None,
                       job.condition)
    return record.finish(shown, seconds, job.clean)
