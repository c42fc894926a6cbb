r"""Cost of one network evaluation by image size: seconds and peak memory, tiled and whole.

For each side S in ``--sizes`` one ``predict`` of the bundled prior on a ``[1, 3, S, S]`` image at
t = 500, in a fresh subprocess per measurement so peaks do not mix: ``whole`` runs the UNet on the
whole image (skipped above ``--whole-up-to``), ``tiled`` through
:class:`~nested_inverse.priors.TiledPrior` (64-pixel tiles, overlap 16, ``--tile-batch`` tiles per
call). Peak memory is the process's peak resident set during the evaluation above what it held
before, in the first evaluation (Linux: ``VmHWM`` reset through ``/proc/self/clear_refs``);
seconds are the median of ``--repeats`` evaluations after it. The last column divides the time by the pixels relative to the
largest size, so cost ∝ pixels shows as 1.00 down the column.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/size.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(size: int, tiled: bool, tile_batch: int, repeats: int) -> dict:
    """One configuration, in this process: seconds per evaluation and peak memory above the base."""
    from nested_inverse.priors import TiledPrior, load_prior

    prior = load_prior(None)
    model = TiledPrior(prior, tile=64, overlap=16, tile_batch=tile_batch, progress=False) if tiled else prior
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set to the current one
        base = _status_kib("VmRSS")
        model.predict(x, 500)  # the first evaluation: its peak is the memory it needs
        peak = _status_kib("VmHWM")
        for _ in range(repeats):  # timed after it (allocator pools and kernels warmed up)
            start = time.perf_counter()
            model.predict(x, 500)
            times.append(time.perf_counter() - start)
    tiles = model.num_tiles(size, size) if tiled else 1
    return {"size": size, "mode": "tiled" if tiled else "whole", "tiles": tiles,
            "seconds": statistics.median(times), "peak_mib": (peak - base) / 1024}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="64,128,256,512,1024,2048")
    p.add_argument("--whole-up-to", type=int, default=1024, help="largest side run untiled")
    p.add_argument("--tile-batch", type=int, default=16)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # "SIZE,MODE" in a subprocess
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        size, mode = args.one.split(",")
        print(json.dumps(measure(int(size), mode == "tiled", args.tile_batch, args.repeats)))
        return
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        for mode in ("whole", "tiled"):
            if mode == "whole" and size > args.whole_up_to:
                continue
            cmd = [sys.executable, __file__, "--one", f"{size},{mode}", "--threads", str(args.threads),
                   "--tile-batch", str(args.tile_batch), "--repeats", str(args.repeats)]
            out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            if out.returncode != 0:
                print(f"{size} {mode}: failed: {out.stderr.strip().splitlines()[-1:]}", flush=True)
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr, flush=True)
    largest = {m: max((r for r in rows if r["mode"] == m), key=lambda r: r["size"]) for m in ("whole", "tiled")
               if any(r["mode"] == m for r in rows)}
    print(f"bundled prior, one evaluation, batch 1, float32, CPU, {args.threads} thread(s), "
          f"tile 64 / overlap 16 / {args.tile_batch} tiles per call\n")
    print("| side (px) | mode  | tiles | s / evaluation | peak memory (MiB) | s per pixel ÷ largest's |")
    print("|-----------|-------|-------|----------------|-------------------|-------------------------|")
    for r in rows:
        ref = largest[r["mode"]]
        per_px = (r["seconds"] / r["size"] ** 2) / (ref["seconds"] / ref["size"] ** 2)
        print(f"| {r['size']:9d} | {r['mode']:5s} | {r['tiles']:5d} | {r['seconds']:14.3f} | "
              f"{r['peak_mib']:17.0f} | {per_px:23.2f} |")


if __name__ == "__main__":
    main()
