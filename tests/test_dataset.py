"""The dataset runner without the command line: discovery, the mixed-size policy,
batching independence, resumption, failures and the configuration pin.

Restoration here uses a tiny closed-form stand-in prior, so these tests exercise the runner's logic
in well under a second each; the bundled network is exercised end to end in test_cli.py.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nested_inverse import save_image
from nested_inverse.dataset import (SamplerConfig, UsageError, degrade_dataset, discover_images,
                                    output_names, prepare_clean, resolve_task, run_dataset)



class ShrinkPrior:
    """A cheap deterministic prior: ``x̂0 = clamp(x_t/√ᾱ_t, −1, 1)·0.8``."""

    def __init__(self) -> None:
        self.alphas_cumprod = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)

    def predict(self, x_t: torch.Tensor, t: int):
        a = float(self.alphas_cumprod[int(t)])
        x0 = (x_t / math.sqrt(a)).clamp(-1, 1) * 0.8
        eps = (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)
        return x0, eps


def _image(seed: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, 1, 1, generator=g)
    return (base + 0.3 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    save_image(_image(1, 16, 16), root / "a.png")
    save_image(_image(2, 16, 16), root / "nested" / "b.png")
    save_image(_image(3, 18, 21), root / "c.png")  # cropped to 16 × 20 for sr4
    save_image(_image(4, 16, 16), root / "d.jpg")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing")
    (root / "notes.txt").write_text("not an image, ignored")
    (root / ".hidden.png").write_bytes(b"ignored")
    return root


SAMPLER = SamplerConfig(method="ddnm", outer=2, inner=2)


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


# ---- small pieces --------------------------------------------------------------------------------


def test_discover_images_recursive_sorted_ignoring_other_files(dataset):
    assert discover_images(dataset) == ["a.png", "broken.png", "c.png", "d.jpg", "nested/b.png"]
    # An output folder inside the dataset is not part of it.
    assert discover_images(dataset, exclude=dataset / "nested") == ["a.png", "broken.png", "c.png",
                                                                    "d.jpg"]
    with pytest.raises(UsageError, match="no such folder"):
        discover_images(dataset / "missing")


def test_output_names_disambiguate_same_stem():
    assert output_names(["a.png", "a.jpg", "b/c.png"]) == {"a.png": "a.png", "a.jpg": "a.jpg",
                                                           "b/c.png": "b/c"}


def test_prepare_clean_crops_to_the_factor_and_rejects_small_images():
    x = torch.rand(1, 3, 18, 21)
    assert prepare_clean(x, 4).shape == (1, 3, 16, 20)
    assert prepare_clean(x, 4, crop=12).shape == (1, 3, 12, 12)
    with pytest.raises(UsageError, match="smaller than the task needs"):
        prepare_clean(torch.rand(1, 3, 3, 8), 4, name="tiny.png")
    with pytest.raises(UsageError, match="smaller than `center_crop` 32"):
        prepare_clean(x, 4, crop=32)


# ---- degrading -----------------------------------------------------------------------------------


def test_degrade_is_per_image_seeded_independent_of_batching(dataset, tmp_path):
    # Random per-image masks and noise: batch size must not change any image's observation.
    task = resolve_task("inpaint-random", {"drop": 0.5})
    one = degrade_dataset(dataset, tmp_path / "b1", task, sigma_y=0.05, batch_size=1, progress=False)
    many = degrade_dataset(dataset, tmp_path / "b3", task, sigma_y=0.05, batch_size=3, progress=False)
    assert one.succeeded == many.succeeded == 4 and one.failed == many.failed == 1
    for name in ("a", "c", "d", "nested/b"):
        y1 = np.load(tmp_path / "b1" / "observed" / f"{name}.npy")
        y3 = np.load(tmp_path / "b3" / "observed" / f"{name}.npy")
        np.testing.assert_allclose(y1, y3, atol=1e-6)
        assert (tmp_path / "b1" / "masks" / f"{name}.png").is_file()
    a = np.load(tmp_path / "b1" / "observed" / "a.npy")
    d = np.load(tmp_path / "b1" / "observed" / "d.npy")
    assert a.shape == (3, 16, 16) and not np.allclose(a, d)  # different images, different seeds


def test_degrade_writes_kernels_for_blur(dataset, tmp_path):
    out = tmp_path / "blur"
    degrade_dataset(dataset, out, resolve_task("blur-gauss", {"sigma": 1.0}), limit=1, progress=False)
    kernel = np.load(out / "kernels" / "a.npy")
    assert kernel.shape == (7, 7) and abs(kernel.sum() - 1) < 1e-9
    assert (out / "kernels" / "a.png").is_file() and (out / "observed" / "a.png").is_file()


# ---- restoring -----------------------------------------------------------------------------------


def test_run_scores_skips_corrupt_files_and_resumes_identically(dataset, tmp_path):
    out = tmp_path / "run"
    task = resolve_task("sr4")
    first = run_dataset(dataset, out, task, prior=ShrinkPrior(), sampler=SAMPLER, sigma_y=0.02,
                        batch_size=2, progress=False)
    assert (first.succeeded, first.processed, first.failed, first.exit_code) == (4, 4, 1, 0)
    assert first.failures[0]["image"] == "broken.png"
    rows = _rows(out)
    assert [r["image"] for r in rows] == ["a.png", "c.png", "d.jpg", "nested/b.png"]
    assert {(r["height"], r["width"]) for r in rows} == {("16", "16"), ("16", "20")}
    assert all(float(r["psnr"]) > 5 and -1 <= float(r["ssim"]) <= 1 and r["nfe"] == "4" for r in rows)
    assert set(first.metrics) >= {"psnr", "ssim"} and first.metrics["psnr"]["n"] == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 1 and summary["succeeded"] == 4
    before = (out / "metrics.csv").read_text()
    mtime = (out / "restored" / "a.png").stat().st_mtime_ns

    again = run_dataset(dataset, out, task, prior=ShrinkPrior(), sampler=SAMPLER, sigma_y=0.02,
                        batch_size=3, progress=False)
    assert (again.processed, again.skipped, again.succeeded) == (0, 4, 4)
    assert (out / "metrics.csv").read_text() == before
    assert (out / "restored" / "a.png").stat().st_mtime_ns == mtime
    assert not list(out.rglob("*.tmp")) and not (out / "parts").exists()


def test_results_do_not_depend_on_batch_size_or_limit(dataset, tmp_path):
    task = resolve_task("inpaint-box")
    kw = dict(prior=ShrinkPrior(), sampler=SAMPLER, sigma_y=0.05, progress=False, samples=2)
    run_dataset(dataset, tmp_path / "one", task, batch_size=1, **kw)
    run_dataset(dataset, tmp_path / "all", task, batch_size=4, limit=3, **kw)
    for name in ("a", "c"):
        for suffix in ("", "_s1"):
            x1 = np.asarray(_png(tmp_path / "one" / "restored" / f"{name}{suffix}.png"), dtype=int)
            x4 = np.asarray(_png(tmp_path / "all" / "restored" / f"{name}{suffix}.png"), dtype=int)
            assert np.abs(x1 - x4).max() <= 1
    s0 = _png(tmp_path / "one" / "restored" / "a.png")
    s1 = _png(tmp_path / "one" / "restored" / "a_s1.png")
    assert not np.array_equal(s0, s1)  # the two samples have their own seeds
    assert len(_rows(tmp_path / "one")) == 2 * 4


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img)


def test_run_with_no_readable_image_fails(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    (root / "x.png").write_bytes(b"garbage")
    save_image(torch.rand(1, 3, 2, 2), root / "tiny.png")  # smaller than sr4 needs
    summary = run_dataset(root, tmp_path / "out", resolve_task("sr4"), prior=ShrinkPrior(),
                          sampler=SAMPLER, progress=False)
    assert summary.exit_code == 1 and summary.failed == 2
    assert "smaller than the task needs" in {f["image"]: f["error"] for f in summary.failures}["tiny.png"]
    assert not (tmp_path / "out" / "restored").exists()


def test_resuming_with_other_settings_is_refused(dataset, tmp_path):
    out = tmp_path / "pin"
    degrade_dataset(dataset, out, resolve_task("sr4"), limit=1, progress=False)
    with pytest.raises(UsageError, match="differs in: sigma_y"):
        degrade_dataset(dataset, out, resolve_task("sr4"), sigma_y=0.1, limit=1, progress=False)


class InterruptingPrior(ShrinkPrior):
    """Stops the run (as Ctrl-C would) at its ``after``-th network evaluation."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.calls, self.after = 0, after

    def predict(self, x_t, t):
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt
        return super().predict(x_t, t)


def test_an_interrupted_run_leaves_no_partial_files_and_resumes(dataset, tmp_path):
    out, task = tmp_path / "interrupted", resolve_task("sr4")
    reference = tmp_path / "straight"
    run_dataset(dataset, reference, task, prior=ShrinkPrior(), sampler=SAMPLER, batch_size=1,
                progress=False)
    # Batches of one image, 4 evaluations each: the 10th evaluation is inside the third image.
    with pytest.raises(KeyboardInterrupt):
        run_dataset(dataset, out, task, prior=InterruptingPrior(10), sampler=SAMPLER, batch_size=1,
                    progress=False)
    assert len(list((out / "records").rglob("*.json"))) == 2
    assert len(list((out / "restored").rglob("*.png"))) == 2
    assert not list(out.rglob("*.tmp")) and not (out / "metrics.csv").exists()

    resumed = run_dataset(dataset, out, task, prior=ShrinkPrior(), sampler=SAMPLER, batch_size=1,
                          progress=False)
    assert (resumed.processed, resumed.skipped, resumed.succeeded) == (2, 2, 4)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in _rows(out)]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in _rows(reference)]


class NaNPrior(ShrinkPrior):
    def predict(self, x_t, t):
        x0, eps = super().predict(x_t, t)
        return x0 * float("nan"), eps


def test_a_diverged_restoration_is_a_failure_not_a_result(dataset, tmp_path):
    summary = run_dataset(dataset, tmp_path / "nan", resolve_task("sr4"), prior=NaNPrior(),
                          sampler=SAMPLER, limit=1, progress=False)
    assert summary.exit_code == 1
    assert "NaN or inf" in summary.failures[0]["error"]
    assert not (tmp_path / "nan" / "restored").exists()


def test_each_process_of_a_launch_takes_its_share_of_the_cores(monkeypatch):
    """Two processes of two threads each on a busy 2-core machine: 4.9 s per evaluation, against
    0.58 s with one thread each (issue 21)."""
    import torch

    from nested_inverse.dataset import processes as procs
    from nested_inverse.errors import UsageError

    set_to: list[int] = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    monkeypatch.setattr(procs, "_cores", lambda: 8)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert procs.share_cores(procs.Processes()) is None  # one process: torch's own choice
    assert procs.share_cores(procs.Processes(rank=1, world=3)) == 2  # 8 // 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")  # the processes on this machine, not all
    assert procs.share_cores(procs.Processes(rank=1, world=16)) == 1
    assert procs.share_cores(procs.Processes(rank=1, world=16), threads=3) == 3
    assert set_to == [2, 1, 3]
    with pytest.raises(UsageError, match=r"`threads`=0 must be an integer >= 1"):
        procs.share_cores(procs.Processes(), threads=0)
