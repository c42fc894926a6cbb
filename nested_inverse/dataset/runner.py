r"""Restore (or only degrade) a folder of clean images: seeded, batched, resumable, shardable.

The runner behind ``nested-inverse run`` and ``nested-inverse degrade``, usable without the command
line::

    task = resolve_task("sr4")
    summary = run_dataset("photos/", "out/", task, prior=load_prior(None),
                          sampler=SamplerConfig(method="ddnm", outer=5, inner=4))

It stands on the anytime stream like every front end: per batch a :class:`~nested_inverse.Problem`
(:meth:`~nested_inverse.Problem.degrade`), the solver and sampler that the
:class:`~nested_inverse.SamplerConfig` names, and the stream run to its end.

Guarantees:

- **Per-image seeds** (the rule of :mod:`nested_inverse.seeds`). Image ``k`` of the sorted file
  list gets the seed ``seed + k`` and from it generators for a random operator (masks, kernels),
  the observation noise and each restoration sample. Results therefore do not depend on the batch
  an image lands in, the batch size, the number of processes, ``limit`` or on earlier failures,
  and image ``k`` comes out exactly as ``nested-inverse restore --degrade --seed <seed + k>``
  restores it alone (its record notes that seed as ``seeds.image``).
- **Mixed sizes.** Every image is loaded as RGB, centre-cropped to ``center_crop`` when given,
  downscaled so its longer side is at most ``max_side`` when given, then centre-cropped to a multiple of the task's scale factor (4 for ``sr4``, 1 otherwise); only
  images of the same resulting size share a batch. Images smaller than the task needs are reported
  as failures.
- **Atomic, resumable outputs.** Every file is written to a temporary name and renamed into place;
  an image's record (``records/<name>.json``) is written last and marks it done, so a second run
  skips finished images and rebuilds the same ``metrics.csv``. ``run.json`` pins the configuration:
  resuming into a folder made with other settings is refused.
- **Failures do not stop the run.** Unreadable or corrupt files and images too small for the task
  are logged and counted; the run succeeds when at least one image did.
- **Many processes.** Under a launcher (``WORLD_SIZE`` > 1, e.g. ``accelerate launch``) process
  ``rank`` takes the images whose index in the sorted file list is ``rank`` modulo the world size;
  after a barrier the main process merges the per-image records and per-process summaries into one
  ``metrics.csv`` and ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


import torch
from torch import Tensor

from ..anytime import run_to_end
from ..errors import UsageError
from ..imageio import atomic_write
from ..metrics import image_quality
from ..problem import Problem
from ..sampling import SamplerConfig
from ..seeds import ImageSeeds
from ..tasks import Task
from .files import (IMAGE_SUFFIXES, Outputs, check_writable, discover_images, kernel_png, load_clean,
                    npy_bytes, operator_images, output_names, remove_empty)
from .processes import Processes
from .records import Summary, metrics_csv, pin_settings

__all__ = ["check_result", "degrade_dataset", "run_dataset"]

log = logging.getLogger("nested_inverse.dataset")

def check_result(x: Tensor, what: str) -> None:
    """Refuse a restoration with NaN or inf (``ValueError``); warn when it left the model range
    [-1, 1] by far, the sign of a solver that diverged (results are clamped when saved)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"the restoration of {what} contains NaN or inf values: the solver diverged "
                         "(try another `method`, more steps, or `sigma_y` > 0)")
    peak = float(x.detach().abs().max())
    if peak > 3:
        log.warning("the restoration of %s reaches |x| = %.3g in the model range [-1, 1]: the solver "
                    "probably diverged (ill-conditioned operator? try `task_args` rcond=1e-3 or "
                    "another `method`)", what, peak)


def run_dataset(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    task: Task,
    *,
    prior: Any = None,
    sampler: SamplerConfig | None = None,
    sigma_y: float = 0.0,
    seed: int = 0,
    samples: int = 1,
    batch_size: int = 4,
    limit: int | None = None,
    center_crop: int | None = None,
    max_side: int | None = None,
    device: str | torch.device | None = None,
    settings: Mapping[str, Any] | None = None,
    processes: Processes | None = None,
    progress: bool = True,
) -> Summary:
    """Degrade every image under ``root`` and restore it with ``prior`` and ``sampler``.

    With ``prior=None`` the images are only degraded (``nested-inverse degrade``). See the module
    docstring for seeding, the mixed-size policy, resumption and multi-process runs.

    Layout of ``out``: ``reference/`` (the cropped clean images), ``observed/`` (y), ``masks/`` and
    ``kernels/`` when the operator has them, ``restored/`` (``<name>.png``, further samples
    ``<name>_s1.png`` …), ``records/<name>.json`` (per image: seeds, metrics; marks it done),
    ``metrics.csv``, ``summary.json`` and ``run.json`` (the configuration).

    Args:
        sigma_y: observation noise std on the [0, 1] image scale (0.05 = 5 % of the range).
        samples: restorations per image (each with its own seed).
        batch_size: images restored together (same size only).
        limit: only the first ``limit`` images of the sorted file list.
        center_crop: centre-crop every image to ``center_crop × center_crop`` first.
        max_side: then downscale it (area average) so its longer side is at most ``max_side``.
        settings: the configuration recorded in ``run.json`` (what makes results comparable);
            defaults to the arguments above.
    """
    restoring = prior is not None
    if restoring and sampler is None:
        sampler = SamplerConfig()
    for name, value, low in (("samples", samples, 1), ("batch_size", batch_size, 1),
                             ("limit", limit if limit is not None else 1, 1),
                             ("max_side", max_side if max_side is not None else 1, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"`{name}`={value!r} must be an integer >= {low}")
    if not (sigma_y >= 0 and math.isfinite(sigma_y)):
        raise UsageError(f"`sigma_y`={sigma_y!r} must be a number >= 0 on the [0, 1] scale (0.05 = 5 %)")
    if sampler is not None:
        sampler = sampler.for_noise(sigma_y)  # the default policy for the dataset's noise
    processes = processes or Processes()
    start = time.perf_counter()
    rels = discover_images(root, exclude=out)[:limit]
    if not rels:
        raise UsageError(f"`root`={str(root)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    factor, _, _ = task.geometry()
    if settings is None:
        settings = {**task.describe(), "sigma_y": sigma_y, "seed": seed, "center_crop": center_crop,
                    **({"max_side": max_side} if max_side is not None else {}),
                    **({"samples": samples, **sampler.describe()} if restoring else {})}
    settings = {"mode": "run" if restoring else "degrade", **settings}

    out = Path(out)
    check_writable(out)
    pin_settings(out, settings)
    names = output_names(rels)
    device = torch.device(device) if device is not None else (processes.device or torch.device("cpu"))

    mine = [i for i in range(len(rels)) if i % processes.world == processes.rank]
    todo = [i for i in mine if not (out / "records" / f"{names[rels[i]]}.json").is_file()]
    failures: list[dict[str, str]] = []

    def fail(rel: str, err: BaseException) -> None:
        message = " ".join(str(err).split()) or type(err).__name__
        log.warning("skipped %s: %s", rel, message)
        log.debug("traceback for %s", rel, exc_info=err)
        failures.append({"image": rel, "error": message})

    # Plan: read every image once, so corrupt files fail here and same-size images batch together.
    shapes: dict[int, tuple[int, ...]] = {}
    for i in todo:
        try:
            shapes[i] = tuple(load_clean(Path(root) / rels[i], factor, center_crop, rels[i],
                                         max_side).shape)
        except (UsageError, ValueError, OSError) as err:
            fail(rels[i], err)
    order = sorted(shapes, key=lambda i: (shapes[i], i))
    batches = [b for _, group in _groupby(order, shapes) for b in _chunks(group, batch_size)]

    bar = _progress(len(shapes), progress and processes.main,
                    f"rank {processes.rank}/{processes.world}" if processes.world > 1 else "images")
    processed = 0
    job = _Job(Path(root), out, task, prior, sampler, sigma_y, seed, samples, factor, center_crop,
               device, names, max_side)
    for batch in batches:
        for items in _retry_singly(batch, [rels[i] for i in batch], job, fail):
            processed += items
            bar.update(items)
    bar.close()
    seconds = time.perf_counter() - start

    # One part file per process; the main process merges them after everyone is done.
    parts = out / "parts"
    part = parts / f"rank{processes.rank}-of-{processes.world}.json"
    atomic_write(part, json.dumps({"failures": failures, "processed": processed,
                                   "seconds": seconds}).encode())
    processes.barrier()
    if not processes.main:
        return Summary(len(rels), processed, processed, 0, failures, {}, None, seconds,
                       processed / max(seconds, 1e-9), str(out))
    merged_failures, merged_processed, merged_seconds = [], 0, 0.0
    for r in range(processes.world):
        p = parts / f"rank{r}-of-{processes.world}.json"
        data = json.loads(p.read_text())
        merged_failures += data["failures"]
        merged_processed += data["processed"]
        merged_seconds = max(merged_seconds, data["seconds"])
        p.unlink()
    remove_empty([parts])
    records = [json.loads(p.read_text()) for rel in rels
               if (p := out / "records" / f"{names[rel]}.json").is_file()]
    rows = [row for rec in records for row in rec.get("rows", [])]
    if restoring:
        atomic_write(out / "metrics.csv", metrics_csv(rows).encode())
    stats = {}
    for name in ("psnr", "ssim", "lpips"):
        values = [r[name] for r in rows if r.get(name) is not None]
        if values:
            stats[name] = {"mean": statistics.fmean(values),
                           "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                           "n": len(values)}
    nfes = [r["nfe"] for r in rows if r.get("nfe") is not None]
    merged_failures.sort(key=lambda f: f["image"])
    summary = Summary(
        images=len(rels), succeeded=len(records), processed=merged_processed,
        skipped=len(records) - merged_processed, failures=merged_failures, metrics=stats,
        nfe=statistics.fmean(nfes) if nfes else None, seconds=merged_seconds,
        images_per_s=merged_processed / max(merged_seconds, 1e-9), out=str(out),
    )
    atomic_write(out / "summary.json", (json.dumps(summary.to_dict(), indent=2) + "\n").encode())
    return summary


def degrade_dataset(root: str | os.PathLike[str], out: str | os.PathLike[str], task: Task,
                    **kwargs: Any) -> Summary:
    """Only synthesise observations: ``observed/`` (y as PNG and exact ``.npy`` on the [0, 1]
    scale), ``masks/``, ``kernels/``, ``reference/``; arguments as for :func:`run_dataset`."""
    return run_dataset(root, out, task, prior=None, **kwargs)


def _groupby(order: list[int], shapes: Mapping[int, tuple[int, ...]]
             ) -> Iterator[tuple[tuple, list[int]]]:
    group: list[int] = []
    for i in order:
        if group and shapes[group[0]] != shapes[i]:
            yield shapes[group[0]], group
            group = []
        group.append(i)
    if group:
        yield shapes[group[0]], group


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for k in range(0, len(items), size):
        yield items[k:k + size]


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="img", file=sys.stderr)


def _retry_singly(batch: list[int], rels: list[str], job: "_Job",
                  fail: Callable[[str, BaseException], None]) -> Iterator[int]:
    """Run a batch; if it fails as a whole, run its images one by one so only bad ones fail.
    Yields the number of images finished after each piece."""
    try:
        job(batch, rels)
        yield len(batch)
        return
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as err:  # noqa: BLE001 - one bad image must not stop a dataset run
        if len(batch) == 1:
            fail(rels[0], err)
            yield 0
            return
        log.debug("batch of %d failed (%s); retrying one by one", len(batch), err)
    for i, rel in zip(batch, rels):
        yield from _retry_singly([i], [rel], job, fail)


@dataclass
class _Job:
    """Degrade, restore and write one batch of same-size images."""

    root: Path
    out: Path
    task: Task
    prior: Any
    sampler: SamplerConfig | None
    sigma_y: float
    seed: int
    samples: int
    factor: int
    crop: int | None
    device: torch.device
    names: Mapping[str, str]
    max_side: int | None = None

    def __call__(self, indices: list[int], rels: list[str]) -> None:
        t0 = time.perf_counter()
        x01 = torch.cat([load_clean(self.root / rel, self.factor, self.crop, rel, self.max_side)
                         for rel in rels])
        B, shape = x01.shape[0], tuple(x01.shape[1:])

        seeds = [ImageSeeds(self.seed + i) for i in indices]  # the rule of nested_inverse.seeds

        def gens(purpose: str, k: int = 0) -> list[torch.Generator]:
            return [s.generator(purpose, k) for s in seeds]

        # A list of generators gives per-image random masks; one generator is what a factory that
        # draws one operator for the batch (e.g. blur-motion) accepts, so a batch of one passes one.
        op_gens = gens("operator")
        op = self.task.make(shape, generator=op_gens if B > 1 else op_gens[0]).to(self.device)
        problem = Problem.degrade(x01.to(self.device), op, self.sigma_y, generator=gens("noise"))
        finals, nfes = [], []
        if self.prior is not None:
            for k in range(self.samples):
                final = run_to_end(self.sampler.run(self.prior, problem, gens("sample", k)))[-1]
                check_result(final.image, ", ".join(rels))
                finals.append(problem.from_model(final.image).cpu())
                nfes.append(final.nfe)
        scores = [image_quality(f, x01) for f in finals]
        seconds = (time.perf_counter() - t0) / B
        extras = operator_images(op)
        y01 = problem.y01.detach().cpu()  # A x in [0, 1] (+ noise)
        for b, (i, rel) in enumerate(zip(indices, rels)):
            self._write(b, i, rel, x01, y01, extras, finals, nfes, scores, seconds)

    def _write(self, b: int, index: int, rel: str, x01: Tensor, y01: Tensor, extras: dict,
               finals: list[Tensor], nfes: list[int], scores: list[dict], seconds: float) -> None:
        name, out = self.names[rel], self.out
        files = Outputs()
        try:
            files.image(x01[b], out / "reference" / f"{name}.png")
            files.image(y01[b].clamp(0, 1), out / "observed" / f"{name}.png")
            if self.prior is None:
                files.bytes(npy_bytes(y01[b]), out / "observed" / f"{name}.npy")
            if "mask" in extras:
                m = extras["mask"]
                files.image(m[b if m.shape[0] > 1 else 0], out / "masks" / f"{name}.png")
            if "kernel" in extras:
                files.bytes(npy_bytes(extras["kernel"]), out / "kernels" / f"{name}.npy")
                files.image(kernel_png(extras["kernel"]), out / "kernels" / f"{name}.png")
            rows = []
            for k, final in enumerate(finals):
                suffix = "" if k == 0 else f"_s{k}"
                files.image(final[b], out / "restored" / f"{name}{suffix}.png")
                rows.append({"image": rel, "sample": k, "height": int(x01.shape[-2]),
                             "width": int(x01.shape[-1]), "nfe": nfes[k], "seconds": seconds,
                             **{m: scores[k][m][b] for m in ("psnr", "ssim", "lpips")}})
            record = {"image": rel, "index": index, "shape": list(x01.shape[1:]),
                      "observation_shape": list(y01.shape[1:]),
                      "seeds": ImageSeeds(self.seed + index).describe(len(finals)),
                      "rows": rows}
            files.json(record, out / "records" / f"{name}.json")  # last: marks the image done
        except BaseException:
            files.discard()
            raise
