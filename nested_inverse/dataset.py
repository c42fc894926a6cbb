r"""Restore (or only degrade) a folder of clean images: seeded, batched, resumable, shardable.

The runner behind ``nested-inverse run`` and ``nested-inverse degrade``, usable without the command
line::

    task = resolve_task("sr4")
    summary = run_dataset("photos/", "out/", task, prior=load_prior(None),
                          sampler=SamplerConfig(method="ddnm", outer=5, inner=4))

Guarantees:

- **Per-image seeds.** Image ``rel`` (its path relative to the dataset root) gets generators seeded
  from ``sha256(seed, rel, purpose)``: one for a random operator (masks, kernels), one for the
  observation noise, one per restoration sample. Results therefore do not depend on the batch an
  image lands in, the batch size, the number of processes, ``--limit`` or on earlier failures.
- **Mixed sizes.** Every image is loaded as RGB, centre-cropped to ``--center-crop N`` when given,
  then centre-cropped to a multiple of the task's scale factor (4 for ``sr4``, 1 otherwise); only
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

import csv
import importlib
import importlib.util
import io
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from operators import Degradation, GaussianNoise, LinearOperator

from .restore import METHODS as _RESTORE_METHODS
from .tasks import (
    Task,
    UsageError,
    check_params,
    image_generator,
    image_seed,
    parse_key_values,
    resolve_task,
)
from .imageio import (
    atomic_write,
    center_crop,
    crop_to_multiple,
    from_model_range,
    load_image,
    save_image,
    to_model_range,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "METHODS",
    "SamplerConfig",
    "Summary",
    "Task",
    "UsageError",
    "degrade_dataset",
    "discover_images",
    "image_generator",
    "image_seed",
    "check_result",
    "make_solver",
    "unit_ones",
    "parse_key_values",
    "prepare_clean",
    "restore_batch",
    "resolve_task",
    "run_dataset",
]

log = logging.getLogger(__name__)

#: File suffixes taken as images when scanning a dataset folder (other files are ignored).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")

#: ``--method`` names (the solvers of :func:`nested_inverse.restore`).
METHODS = tuple(_RESTORE_METHODS)


# --------------------------------------------------------------------------------------------------
# Solvers and the nested sampler
# --------------------------------------------------------------------------------------------------


@dataclass
class SamplerConfig:
    """How to restore: the solver and the step budget.

    Nested (default): ``outer`` outer steps, each running the solver for ``inner`` steps, so
    ``outer·inner`` network evaluations and one restoration after every outer step. Vanilla:
    the solver alone for ``steps`` evaluations.
    """

    method: str = "ddrm"
    method_args: dict[str, Any] = field(default_factory=dict)
    outer: int = 5
    inner: int = 4
    vanilla: bool = False
    steps: int = 20

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UsageError(f"`--method`={self.method!r} is not known; one of: {', '.join(METHODS)}")
        for name in ("outer", "inner", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"`--{name}`={value!r} must be an integer >= 1")

    def solver_class(self) -> type:
        """The solver class ``method`` selects; :class:`UsageError` when it is not installed or does
        not take ``method_args``, so that a run fails before it writes anything."""
        from .restore import METHODS as table

        module, name = table[self.method]
        try:
            cls = getattr(importlib.import_module(f"{__package__}.solvers.{module}"), name)
        except (ImportError, AttributeError) as err:
            have = [m for m, (mod, _) in table.items() if importlib.util.find_spec(
                f"{__package__}.solvers.{mod}") is not None]
            raise UsageError(f"`--method`={self.method!r} is not available in this installation; "
                             f"available: {', '.join(have)}") from err
        check_params(self.method, cls.__init__, self.method_args,
                      skip=("self", "prior", "operator", "y", "sigma_y"), what="--method-arg")
        return cls

    @property
    def budget(self) -> int:
        """Network evaluations per image (at most; fewer when a timestep interval is short)."""
        return self.steps if self.vanilla else self.outer * self.inner


def make_solver(config: SamplerConfig, prior: Any, operator: LinearOperator, y: Tensor,
                sigma_y: float) -> Any:
    """The solver ``config.method`` names, built from ``(prior, operator, y, sigma_y)`` with
    ``config.method_args`` (``y`` in the model range, ``sigma_y`` on the [0, 1] scale)."""
    from .restore import make_solver as _make

    try:
        return _make(config.method, prior, operator, y, sigma_y, **config.method_args)
    except TypeError as err:
        raise UsageError(f"`--method-arg` {', '.join(sorted(config.method_args))} not accepted by "
                         f"{config.method}: {err}") from err


def unit_ones(operator: LinearOperator, image_shape: Sequence[int], like: Tensor) -> Tensor:
    """``A 1`` for images ``[B, C, H, W]``: the offset between observations in [0, 1] and in the
    model range, since ``A(2x − 1) = 2·A x − A 1`` (``A 1`` is not 1 at zero-padded blur borders or
    where an inpainting mask is 0)."""
    with torch.no_grad():
        return operator(torch.ones(tuple(image_shape), dtype=like.dtype, device=like.device))


def restore_batch(
    solver: Any,
    config: SamplerConfig,
    generator: Any = None,
    callback: Callable[[int], None] | None = None,
) -> tuple[Tensor, list[tuple[int, Tensor]]]:
    """Run ``solver`` nested (or vanilla) on its batch.

    Returns ``(x0, intermediates)``: the final restoration ``[B, C, H, W]`` in [-1, 1] and the
    restorations available along the way as ``(evaluations so far, image)`` pairs: ``A†y`` at 0,
    then the result after each outer step (for vanilla runs the solver's x̂0 after each step).
    ``callback(nfe)`` is called after each reported result.
    """
    intermediates: list[tuple[int, Tensor]] = []
    if config.vanilla:
        intermediates.append((0, solver.y_pinv))  # what is shown before the first evaluation
        state = None
        for state in solver.iterate(steps=config.steps, generator=generator):
            intermediates.append((state.nfe, state.x0_hat if state.t >= 0 else state.x_t))
            if callback:
                callback(state.nfe)
        return state.x_t, intermediates
    from .nested import NestedSampler

    sampler = NestedSampler(solver, outer_steps=config.outer, inner_steps=config.inner)
    result = None
    for result in sampler.iterate(generator=generator):
        intermediates.append((int(result.nfe), result.image))
        if callback:
            callback(int(result.nfe))
    return result.image, intermediates


def check_result(x: Tensor, what: str) -> None:
    """Refuse a restoration with NaN or inf (``ValueError``); warn when it left the model range
    [-1, 1] by far, the sign of a solver that diverged (results are clamped when saved)."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"the restoration of {what} contains NaN or inf values: the solver diverged "
                         "(try another --method, more steps, or --sigma-y > 0)")
    peak = float(x.detach().abs().max())
    if peak > 3:
        log.warning("the restoration of %s reaches |x| = %.3g in the model range [-1, 1]: the solver "
                    "probably diverged (ill-conditioned operator? try --task-arg rcond=1e-3 or "
                    "another --method)", what, peak)


# --------------------------------------------------------------------------------------------------
# Images: discovery, mixed-size policy, atomic writes
# --------------------------------------------------------------------------------------------------


def discover_images(root: str | os.PathLike[str],
                    exclude: str | os.PathLike[str] | None = None) -> list[str]:
    """Paths (relative to ``root``, ``/``-separated, sorted) of the image files under ``root``,
    recursively. Hidden files and folders, files without an image suffix and the folder
    ``exclude`` (an output folder inside the dataset) are ignored."""
    base = Path(root)
    skip = Path(exclude).resolve() if exclude is not None else None
    if not base.exists():
        raise UsageError(f"`DATASET_DIR`={str(root)!r}: no such folder")
    if not base.is_dir():
        raise UsageError(f"`DATASET_DIR`={str(root)!r} is a file; expected a folder of images")
    found = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (skip is None or (Path(dirpath) / d).resolve() != skip))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((Path(dirpath) / name).relative_to(base).as_posix())
    return sorted(found)


def output_names(rels: Sequence[str]) -> dict[str, str]:
    """Output name (no suffix) per input: ``a/b.png`` → ``a/b``; ``a/b.jpg`` beside it → ``a/b.jpg``."""
    stems = [rel.rsplit(".", 1)[0] for rel in rels]
    taken = {s for s in stems if stems.count(s) > 1}
    return {rel: rel if stem in taken else stem for rel, stem in zip(rels, stems)}


def prepare_clean(x: Tensor, factor: int, crop: int | None = None, name: str = "image") -> Tensor:
    """The mixed-size policy: centre-crop ``x: [1, C, H, W]`` to ``crop × crop`` when given, then to a
    multiple of the task's ``factor``. Raises :class:`UsageError` naming ``name`` when too small."""
    H, W = x.shape[-2:]
    if crop is not None:
        if crop > H or crop > W:
            raise UsageError(f"{name}: image is {W}×{H} pixels, smaller than `--center-crop` {crop}")
        x = center_crop(x, crop)
    factor = max(int(factor), 1)
    if x.shape[-1] < factor or x.shape[-2] < factor:
        raise UsageError(f"{name}: image is {x.shape[-1]}×{x.shape[-2]} pixels, smaller than the task "
                         f"needs (at least {factor}×{factor})")
    return crop_to_multiple(x, factor).contiguous()


class Outputs:
    """Files written for one item, removed again if the item fails before it is finished.

    Every write is atomic: a temporary file beside the target, then ``os.replace``.
    """

    def __init__(self) -> None:
        self.written: list[Path] = []

    def image(self, x01: Tensor, path: Path) -> Path:
        self.written.append(save_image(x01, path))
        return path

    def bytes(self, data: bytes, path: Path) -> Path:
        self.written.append(atomic_write(path, data))
        return path

    def json(self, obj: Any, path: Path) -> Path:
        return self.bytes((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), path)

    def discard(self) -> None:
        for p in self.written:
            p.unlink(missing_ok=True)
        self.written.clear()


def check_writable(out: str | os.PathLike[str]) -> list[Path]:
    """Create ``out`` (and missing parents) and check a file can be written there.

    Returns the folders it created, so that a caller that fails later can remove them again.
    Raises :class:`UsageError` naming ``--out`` otherwise.
    """
    path = Path(out)
    created = []
    for parent in reversed([path, *path.parents]):
        if not parent.exists():
            created.append(parent)
    try:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path} is a file")
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        remove_empty(created)
        reason = err.strerror or str(err)
        raise UsageError(f"`--out`={str(out)!r} cannot be written: {reason}") from err
    return created


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (deepest first) that are empty."""
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass


def operator_images(op: LinearOperator) -> dict[str, Any]:
    """What describes a synthesised operator besides ``y``: ``mask`` ``[B or 1, 1, H, W]`` in {0, 1}
    and ``kernel`` ``[kh, kw]`` (float64) when the operator has them."""
    found: dict[str, Any] = {}
    mask = getattr(op, "mask", None)
    if isinstance(mask, Tensor) and mask.ndim == 4:
        found["mask"] = mask[:, :1].to(torch.float32)
    kernel = getattr(op, "kernel", None)
    if isinstance(kernel, Tensor) and kernel.ndim == 2:
        found["kernel"] = kernel.detach().to(torch.float64).cpu()
    return found


def kernel_png(kernel: Tensor) -> Tensor:
    """A blur kernel scaled to [0, 1] (its maximum white) for viewing, ``[1, 1, kh, kw]``."""
    k = kernel.to(torch.float32)
    return (k / k.max().clamp_min(1e-12))[None, None]


def npy_bytes(array: Tensor) -> bytes:
    """``array`` as the bytes of a ``.npy`` file (exact values, readable with ``numpy.load``)."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array.detach().cpu().numpy())
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------
# Quality
# --------------------------------------------------------------------------------------------------


def quality(x01: Tensor, ref01: Tensor) -> dict[str, float | None]:
    """PSNR (dB), SSIM and LPIPS (None when unavailable) per image pair, ``[B, C, H, W]`` in [0, 1].

    Returns lists of floats, one per batch item, under ``psnr``, ``ssim``, ``lpips``.
    """
    from . import metrics

    x = x01.detach().to(torch.float64).clamp(0, 1).cpu()
    ref = ref01.detach().to(torch.float64).clamp(0, 1).cpu()
    out: dict[str, Any] = {}
    lpips_ok = getattr(metrics, "lpips_available", lambda: False)()
    for name in ("psnr", "ssim", "lpips"):
        fn = getattr(metrics, name, None)
        if fn is None or (name == "lpips" and not lpips_ok):
            out[name] = [None] * x.shape[0]
            continue
        try:
            value = fn(x, ref)
        except (ImportError, RuntimeError, OSError, ValueError) as err:
            if name != "lpips":
                raise
            log.debug("LPIPS unavailable: %s", err)
            out[name] = [None] * x.shape[0]
            continue
        value = torch.as_tensor(value, dtype=torch.float64).flatten()
        if value.numel() == 1 and x.shape[0] > 1:  # a metric that averages the batch
            value = torch.stack([torch.as_tensor(fn(x[i:i + 1], ref[i:i + 1]), dtype=torch.float64)
                                 .flatten()[0] for i in range(x.shape[0])])
        out[name] = [float(v) for v in value]
    return out


# --------------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------------


@dataclass
class Processes:
    """This process's place among the processes of a launch (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None
    device: torch.device | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0


def launcher_processes() -> Processes:
    """Rank, world size and a barrier from Hugging Face Accelerate when started by a launcher
    (``WORLD_SIZE`` > 1); a single process otherwise. Accelerate is imported only in the first case,
    so it stays an optional dependency."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return Processes()
    try:
        from accelerate import PartialState
    except ImportError as err:
        raise UsageError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} says this is one of several processes, "
                         "but accelerate is not installed; pip install 'nested-inverse[distributed]'") from err
    state = PartialState()
    return Processes(state.process_index, state.num_processes, state.wait_for_everyone, state.device)


# --------------------------------------------------------------------------------------------------
# The runner
# --------------------------------------------------------------------------------------------------

METRIC_COLUMNS = ("image", "sample", "height", "width", "psnr", "ssim", "lpips", "nfe", "seconds")


@dataclass
class Summary:
    """What a dataset run did.

    Attributes:
        images: images in the dataset (after ``limit``).
        succeeded: images with finished results (in this run or an earlier one).
        processed: images finished by this run.
        skipped: images already finished by an earlier run.
        failures: ``{"image": rel, "error": message}`` for each image that failed in this run.
        metrics: per metric, ``{"mean", "std", "n"}`` over all rows of ``metrics.csv``.
        nfe: mean network evaluations per restoration (None when only degrading).
        seconds: wall time of this run; ``images_per_s`` = processed / seconds.
    """

    images: int
    succeeded: int
    processed: int
    skipped: int
    failures: list[dict[str, str]]
    metrics: dict[str, dict[str, float]]
    nfe: float | None
    seconds: float
    images_per_s: float
    out: str = ""

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def exit_code(self) -> int:
        """0 when at least one image has results, 1 when none has."""
        return 0 if self.succeeded > 0 else 1

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["failed"] = self.failed
        return d

    def format(self) -> str:
        """A few lines for the terminal."""
        lines = [f"{self.succeeded}/{self.images} images done ({self.processed} now, {self.skipped} "
                 f"earlier), {self.failed} failed; {self.images_per_s:.3g} images/s; results in {self.out}"]
        for name, s in self.metrics.items():
            lines.append(f"  {name.upper():6s} {s['mean']:.4f} ± {s['std']:.4f}  (n={int(s['n'])})")
        if self.nfe is not None:
            lines.append(f"  evaluations per restoration: {self.nfe:g}")
        for f in self.failures[:10]:
            lines.append(f"  failed: {f['image']}: {f['error']}")
        if self.failed > 10:
            lines.append(f"  … and {self.failed - 10} more (see summary.json)")
        return "\n".join(lines)


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
        settings: the configuration recorded in ``run.json`` (what makes results comparable);
            defaults to the arguments above.
    """
    restoring = prior is not None
    if restoring and sampler is None:
        sampler = SamplerConfig()
    if restoring:
        sampler.solver_class()
    for name, value, low in (("--samples", samples, 1), ("--batch-size", batch_size, 1),
                             ("--limit", limit if limit is not None else 1, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UsageError(f"`{name}`={value!r} must be an integer >= {low}")
    if not (sigma_y >= 0 and math.isfinite(sigma_y)):
        raise UsageError(f"`--sigma-y`={sigma_y!r} must be a number >= 0 on the [0, 1] scale (0.05 = 5 %)")
    processes = processes or Processes()
    start = time.perf_counter()
    rels = discover_images(root, exclude=out)[:limit]
    if not rels:
        raise UsageError(f"`DATASET_DIR`={str(root)!r} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    factor, _, _ = task.geometry()
    if settings is None:
        settings = {**task.describe(), "sigma_y": sigma_y, "seed": seed, "center_crop": center_crop,
                    **({"samples": samples, **asdict(sampler)} if restoring else {})}
    settings = {"mode": "run" if restoring else "degrade", **settings}

    out = Path(out)
    check_writable(out)
    _pin_settings(out, settings)
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
            shapes[i] = tuple(_load_clean(Path(root) / rels[i], factor, center_crop, rels[i]).shape)
        except (UsageError, ValueError, OSError) as err:
            fail(rels[i], err)
    order = sorted(shapes, key=lambda i: (shapes[i], i))
    batches = [b for _, group in _groupby(order, shapes) for b in _chunks(group, batch_size)]

    bar = _progress(len(shapes), progress and processes.main,
                    f"rank {processes.rank}/{processes.world}" if processes.world > 1 else "images")
    processed = 0
    job = _Job(Path(root), out, task, prior, sampler, sigma_y, seed, samples, factor, center_crop,
               device, names)
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
        atomic_write(out / "metrics.csv", _csv(rows).encode())
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


def _pin_settings(out: Path, settings: Mapping[str, Any]) -> None:
    """Record the configuration in ``run.json``, or refuse to mix results of another one."""
    path = out / "run.json"
    settings = json.loads(json.dumps(settings, sort_keys=True, default=str))
    if path.is_file():
        try:
            earlier = json.loads(path.read_text())
        except ValueError:
            earlier = None
        if earlier != settings:
            keys = sorted(k for k in set(settings) | set(earlier or {})
                          if (earlier or {}).get(k) != settings.get(k))
            raise UsageError(f"`--out`={str(out)!r} holds results of another configuration (differs in: "
                             f"{', '.join(keys)}); use a new output folder or delete it")
        return
    atomic_write(path, (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())


def _load_clean(path: Path, factor: int, crop: int | None, rel: str) -> Tensor:
    try:
        x = load_image(path, mode="RGB")
    except ValueError as err:
        cause = " ".join(str(err.__cause__ or "").replace(str(path), "").split()).strip(" '\"")
        raise UsageError(f"not a readable image file{f' ({cause})' if cause else ''}") from err
    return prepare_clean(x, factor, crop, rel)


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


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(METRIC_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else
                         (f"{row[c]:.6f}" if isinstance(row[c], float) else row[c])
                         for c in METRIC_COLUMNS])
    return buf.getvalue()


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

    def __call__(self, indices: list[int], rels: list[str]) -> None:
        t0 = time.perf_counter()
        x01 = torch.cat([_load_clean(self.root / rel, self.factor, self.crop, rel) for rel in rels])
        x = to_model_range(x01).to(self.device)
        B, shape = x.shape[0], tuple(x.shape[1:])

        def gens(purpose: str, k: int = 0) -> list[torch.Generator]:
            return [image_generator(self.seed, rel, purpose, k) for rel in rels]

        # A list of generators gives per-image random masks; one generator is what a factory that
        # draws one operator for the batch (e.g. blur-motion) accepts, so a batch of one passes one.
        op_gens = gens("operator")
        try:
            op = self.task.make(shape, generator=op_gens if B > 1 else op_gens[0])
        except UsageError as err:
            raise ValueError(str(err)) from err
        op = op.to(self.device)
        noise = GaussianNoise(self.sigma_y) if self.sigma_y > 0 else None
        with torch.no_grad():
            y = Degradation(op, noise)(x, generator=gens("noise"))
        finals, nfes = [], []
        if self.prior is not None:
            for k in range(self.samples):
                solver = make_solver(self.sampler, self.prior, op, y, self.sigma_y)
                final, steps = restore_batch(solver, self.sampler, gens("sample", k))
                check_result(final, ", ".join(rels))
                finals.append(from_model_range(final.detach()).clamp(0, 1).cpu())
                nfes.append(steps[-1][0] if steps else 0)
        scores = [quality(f, x01) for f in finals]
        seconds = (time.perf_counter() - t0) / B
        extras = operator_images(op)
        y01 = ((y.detach() + unit_ones(op, x.shape, x)) / 2).cpu()  # A x in [0, 1] (+ noise)
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
                      "seeds": {"operator": image_seed(self.seed, rel, "operator"),
                                "noise": image_seed(self.seed, rel, "noise"),
                                "samples": [image_seed(self.seed, rel, "sample", k)
                                            for k in range(len(finals))]},
                      "rows": rows}
            files.json(record, out / "records" / f"{name}.json")  # last: marks the image done
        except BaseException:
            files.discard()
            raise
