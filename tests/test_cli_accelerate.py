"""``accelerate launch --cpu --num_processes 2 -m nested_inverse run``: the slow test of the CLI.

Two CPU processes split the dataset (index modulo 2), the main one merges; the result must match a
single-process run with the same seeds. About 30–60 s (two interpreters load torch and the prior).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nested_inverse import bundled_image, save_image
from nested_inverse.cli import main

pytestmark = pytest.mark.slow

ARGS = ["--task", "sr4", "--sigma-y", "0.01", "--outer", "2", "--inner", "2", "--method", "ddnm",
        "--batch-size", "1", "--no-progress"]


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_two_cpu_processes_match_one(tmp_path):
    pytest.importorskip("accelerate")
    launcher = shutil.which("accelerate")
    if launcher is None:
        pytest.skip("the `accelerate` launcher is not on PATH")
    root = tmp_path / "dataset"
    for i, name in enumerate(("coffee", "astronaut", "chelsea")):
        save_image(bundled_image(name, 24 + 8 * i), root / ("sub" if i == 1 else "") / f"{name}.png")
    (root / "broken.png").write_bytes(b"not a png")

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(
        [launcher, "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "nested_inverse", "run",
         str(root), "--out", str(tmp_path / "two"), *ARGS],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("images done") == 1  # only the main process reports
    assert "3/4 images done (3 now, 0 earlier), 1 failed" in proc.stdout

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["run", str(root), "--out", str(tmp_path / "one"), *ARGS]) == 0
    finally:
        torch.set_num_threads(before)

    two, one = _rows(tmp_path / "two"), _rows(tmp_path / "one")
    assert [r["image"] for r in two] == [r["image"] for r in one] == [
        "chelsea.png", "coffee.png", "sub/astronaut.png"]
    # Same seeds, batch size and thread count: the same bits (other batch sizes or thread counts
    # change only floating-point rounding).
    for a, b in zip(two, one):
        assert (a["psnr"], a["ssim"], a["nfe"]) == (b["psnr"], b["ssim"], b["nfe"])
        name = a["image"].rsplit(".", 1)[0]
        x2 = np.asarray(Image.open(tmp_path / "two" / "restored" / f"{name}.png"))
        x1 = np.asarray(Image.open(tmp_path / "one" / "restored" / f"{name}.png"))
        assert np.array_equal(x2, x1)
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["failed"] == 1 and summary["processed"] == 3
    assert not (tmp_path / "two" / "parts").exists()
