"""What a dataset run leaves behind besides images: the configuration pin, ``metrics.csv`` and the
summary."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..imageio import atomic_write

__all__ = ["METRIC_COLUMNS", "Summary", "metrics_csv", "pin_settings"]

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


def pin_settings(out: Path, settings: Mapping[str, Any]) -> None:
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
            raise UsageError(f"`out`={str(out)!r} holds results of another configuration (differs in: "
                             f"{', '.join(keys)}); use a new output folder or delete it")
        return
    atomic_write(path, (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode())


def metrics_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """``metrics.csv``: one row per restoration, the columns of ``METRIC_COLUMNS``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(METRIC_COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else
                         (f"{row[c]:.6f}" if isinstance(row[c], float) else row[c])
                         for c in METRIC_COLUMNS])
    return buf.getvalue()
