"""Cost of every registered operator relative to one network evaluation.

For each operator at 3×256×256, batch 8, float32 on the CPU: the median time of forward, adjoint,
pinv and Vt+V (a round trip through spectral space), as a percentage of one forward pass of the
bundled prior's UNet (data/priors/natural-patches-64) at the same batch and size. Target: every entry
under 5 %.

    python benchmarks/operator_cost.py [--repeats 7] [--unet-repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import operators

PRIOR = Path(__file__).resolve().parents[1] / "data" / "priors" / "natural-patches-64"


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: allocations, lazy caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--unet-repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from diffusers import UNet2DModel

    shape = (3, args.size, args.size)
    x = torch.randn(args.batch, *shape, generator=torch.Generator().manual_seed(0))
    unet = UNet2DModel.from_pretrained(PRIOR, subfolder="unet", torch_dtype=torch.float32).eval()
    t = torch.full((args.batch,), 500)
    with torch.inference_mode():
        nfe = median_seconds(lambda: unet(x, t), args.unet_repeats)
    print(f"UNet forward (batch {args.batch}, {args.size}x{args.size}, "
          f"{torch.get_num_threads()} threads): {nfe:.3f} s = 100 %")
    print()
    header = f"| {'operator':<17} | {'forward':>8} | {'adjoint':>8} | {'pinv':>8} | {'Vt+V':>8} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    worst = 0.0
    for name in operators.available():
        op = operators.make(name, image_shape=shape)
        with torch.inference_mode():
            y = op(x)
            svd = op.svd()
            cols = [median_seconds(lambda: op(x), args.repeats),
                    median_seconds(lambda: op.adjoint(y), args.repeats),
                    median_seconds(lambda: op.pinv(y), args.repeats),
                    None if svd is None else
                    median_seconds(lambda: svd.V(svd.Vt(x)), args.repeats)]
        pct = [None if c is None else 100 * c / nfe for c in cols]
        worst = max([worst] + [p for p in pct if p is not None])
        cells = " | ".join("—".rjust(8) if p is None else f"{p:7.2f}%" for p in pct)
        print(f"| {name:<17} | {cells} |")
    print()
    print(f"worst: {worst:.2f} % of one network evaluation (target < 5 %)")


if __name__ == "__main__":
    main()
