"""Cost of one network evaluation of the bundled default prior (``DiffusionPrior.predict``).

Prints a table: image size × batch × dtype → median wall time of ``predict`` (no_grad) over several
repeats, per call and per image, and on CPU the median process CPU time per call (with
``--threads 1`` on a shared machine, the better estimate of the cost on an idle core). float32 always; bfloat16 on CUDA when present, and also on CPU
(where it is often slower: few CPUs have fast bf16 convolutions).

    python benchmarks/prior.py                      # 64, 128, 256 px; batch 1 and 8
    python benchmarks/prior.py --device cuda --repeats 20
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


import torch

from nested_inverse.priors.diffusers import DiffusionPrior


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_predict(
    prior: DiffusionPrior, size: int, batch: int, repeats: int, min_time_s: float
) -> tuple[list[float], list[float]]:
    """Wall times and process CPU times (s) of ``prior.predict`` on ``[batch, 3, size, size]``: one
    warm-up, then at least ``repeats`` runs, more while the total is under ``min_time_s``.

    With one torch thread on a shared CPU the CPU time is close to what the call would take on an
    idle core, while the wall time also counts the waits for other processes.
    """
    device = prior.device
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).to(device)
    wall: list[float] = []
    cpu: list[float] = []
    with torch.no_grad():
        prior.predict(x, 500)  # warm-up: allocator, kernels, cuDNN autotuning
        _sync(device)
        while len(wall) < repeats or (sum(wall) < min_time_s and len(wall) < 10 * repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            prior.predict(x, 500)
            _sync(device)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,128,256")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=5, help="at least this many timed runs (default 5)")
    parser.add_argument("--min-time", type=float, default=1.0, help="keep repeating up to this many seconds")
    parser.add_argument("--device", default=None, help="default: CUDA when available, else CPU")
    parser.add_argument("--dtypes", default=None, help="e.g. float32,bfloat16 (default: both)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtypes = [getattr(torch, d) for d in (args.dtypes or "float32,bfloat16").split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads"
    )
    print(f"default prior (natural-patches-64), one predict() call, torch {torch.__version__}, {device}: {where}")
    print(f"median of >= {args.repeats} runs after one warm-up (min/max in brackets)\n")
    cpu_col = device.type == "cpu"
    head = f"| {'size':>7} | {'batch':>5} | {'dtype':>8} | {'wall ms / call':>22} | {'wall ms / image':>15} |"
    rule = f"|{'-' * 9}|{'-' * 7}|{'-' * 10}|{'-' * 24}|{'-' * 17}|"
    if cpu_col:
        head += f" {'CPU ms / call':>13} |"
        rule += f"{'-' * 15}|"
    print(head)
    print(rule)
    for dtype in dtypes:
        prior = DiffusionPrior.default(torch_dtype=dtype, device=device)
        for size in sizes:
            for batch in batches:
                wall, cpu = time_predict(prior, size, batch, args.repeats, args.min_time)
                med = statistics.median(wall) * 1e3
                spread = f"{med:8.1f} [{min(wall) * 1e3:.0f}–{max(wall) * 1e3:.0f}]"
                row = (f"| {size:>3}×{size:<3} | {batch:>5} | {str(dtype).replace('torch.', ''):>8} | "
                       f"{spread:>22} | {med / batch:15.1f} |")
                if cpu_col:
                    row += f" {statistics.median(cpu) * 1e3:13.1f} |"
                print(row, flush=True)
        del prior


if __name__ == "__main__":
    main()
