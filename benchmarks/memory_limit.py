r"""A 2048×2048 restoration inside an 8 GiB address-space limit, end to end through the CLI.

``nested-inverse restore`` runs as a subprocess on a ``--side``×``--side`` observation (default the
bundled ``astronaut.png``, 512×512) at SR×4, so the restoration is ``4·side`` square (2048×2048),
with the bundled prior on its default tiles, ``--budget`` network evaluations (a full 20-evaluation
run costs about 2.7 h on one thread: 483 s per tiled 2048² evaluation, ``benchmarks/size.py``) and
one thread, under ``RLIMIT_AS`` = ``--limit-gib`` GiB set in the child (``resource.setrlimit`` in
``preexec_fn``; ``/usr/bin/time -v`` inside it reports the peak resident set). The plan's estimate
is :func:`~nested_inverse.memory.plan_memory` of the same image, method and tiled prior.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/memory_limit.py
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_GIB = 2 ** 30
_ROOT = Path(__file__).resolve().parents[1]


def observation(side: int, folder: Path) -> Path:
    """The bundled astronaut resized to ``side``×``side`` (itself at 512), as a PNG in ``folder``."""
    from PIL import Image

    with Image.open(_ROOT / "data" / "images" / "astronaut.png") as img:
        img = img.convert("RGB")
        if img.size != (side, side):
            img = img.resize((side, side), Image.BICUBIC)
        path = folder / f"observation_{side}.png"
        img.save(path)
    return path


def estimate_gib(out_side: int, method: str, limit_bytes: int) -> tuple[float, int | None]:
    """The memory plan's estimated peak (GiB) and tile batch for the CLI's run."""
    from nested_inverse.memory import plan_memory
    from nested_inverse.priors import load_prior
    from nested_inverse.priors.tiled import tiled_for

    prior = tiled_for(load_prior(None), out_side, out_side)
    plan = plan_memory(image_shape=(3, out_side, out_side), batch=1, method=method, prior=prior,
                       free=(limit_bytes, "RLIMIT_AS"))
    return plan.estimate_bytes / _GIB, plan.tile_batch


def run_limited(command: list[str], limit_bytes: int) -> tuple[int, float, float | None, str]:
    """``(exit code, wall seconds, peak RSS in MiB, output)`` of ``command`` under ``RLIMIT_AS``."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True,
                         env=env, preexec_fn=limit)
    wall = time.perf_counter() - start
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)
    peak = int(found.group(1)) / 1024 if found else None
    return out.returncode, wall, peak, out.stdout + out.stderr


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--side", type=int, default=512, help="observation side (output: 4x)")
    p.add_argument("--budget", type=int, default=2)
    p.add_argument("--method", default="ddrm")
    p.add_argument("--limit-gib", type=float, default=8.0)
    p.add_argument("--keep", default=None, help="folder for the outputs (default: a temporary one)")
    args = p.parse_args()
    limit_bytes = int(args.limit_gib * _GIB)
    out_side = 4 * args.side
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        obs = observation(args.side, folder)
        est, tile_batch = estimate_gib(out_side, args.method, limit_bytes)
        cmd = [sys.executable, "-m", "nested_inverse", "restore", str(obs), "--task", "sr4",
               "--budget", str(args.budget), "--method", args.method, "--out", str(folder / "out"),
               "--no-progress"]
        print("$ " + " ".join(cmd), file=sys.stderr, flush=True)
        rc, wall, peak, text = run_limited(cmd, limit_bytes)
        if rc != 0:
            print(text[-3000:], file=sys.stderr)
        size = "?"
        result = folder / "out" / f"{obs.stem}.png"
        if result.exists():
            from PIL import Image

            with Image.open(result) as img:
                size = f"{img.size[0]}×{img.size[1]}"
    print(f"bundled prior, {args.method}, SR×4 of a {args.side}×{args.side} observation, 1 thread, "
          f"RLIMIT_AS {args.limit_gib:g} GiB\n")
    print("| output | budget (NFE) | wall (s) | peak RSS (MiB) | plan estimate (GiB) | tiles per call | exit code |")
    print("|--------|--------------|----------|----------------|---------------------|----------------|-----------|")
    print(f"| {size} | {args.budget} | {wall:.0f} | {'?' if peak is None else f'{peak:.0f}'} | "
          f"{est:.2f} | {tile_batch} | {rc} |")


if __name__ == "__main__":
    main()
