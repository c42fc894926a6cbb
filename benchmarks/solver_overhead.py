"""Per-step cost of each solver apart from the network (issue 4's 5 % budget).

Runs every solver once with the bundled prior (one network evaluation per step, plus its backward
for ΠGDM and DPS) and once with a stand-in prior whose ``predict`` is a cheap differentiable map
(``x̂0 = x_t/√ᾱ``-like scaling), on the same operator and image size. The stand-in run is the
solver's own work per step (projections, SVD transforms, noise, the DDIM update, the VJP plumbing);
it is reported as a share of one real network evaluation (forward only), the issue's yardstick.

    python benchmarks/solver_overhead.py                       # 3×256×256, sr4 and inpaint-box
    python benchmarks/solver_overhead.py --size 64 --steps 3 --with-real
"""

from __future__ import annotations

import argparse
import math
import time


import torch

import operators
from nested_inverse import DiffusionPrior
from nested_inverse.solvers import DDNM, DDRM, DPS, PiGDM


class InstantPrior:
    """``predict`` at almost no cost, still differentiable in ``x_t`` (for ΠGDM and DPS)."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        self.alphas_cumprod = alphas_cumprod

    def predict(self, x_t: torch.Tensor, t: int):
        a = float(self.alphas_cumprod[t])
        x0 = math.sqrt(a) * x_t  # the Bayes denoiser of N(0, I) data
        eps = (x_t - math.sqrt(a) * x0) / math.sqrt(1 - a)
        return x0, eps


def timed_run(solver, steps: int, repeats: int) -> float:
    """Median seconds per step over ``repeats`` runs of ``steps`` steps."""
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        solver.sample(steps=steps, generator=torch.Generator().manual_seed(r))
        times.append((time.perf_counter() - start) / steps)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tasks", nargs="+", default=["sr4", "inpaint-box"])
    parser.add_argument("--with-real", action="store_true",
                        help="also time each solver with the real prior (slow on CPU)")
    args = parser.parse_args()

    prior = DiffusionPrior.default()
    shape = (3, args.size, args.size)
    x = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():  # warm-up, then one network evaluation
        prior.predict(x, 500)
        evals = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            prior.predict(x, 500)
            evals.append(time.perf_counter() - start)
    net = sorted(evals)[len(evals) // 2]
    instant = InstantPrior(prior.alphas_cumprod)
    print(f"image {shape}, {torch.get_num_threads()} threads; one network evaluation "
          f"(forward) {net * 1000:.0f} ms")
    print("| task | solver | sigma_y | per step, real prior | per step, instant prior "
          "| solver share of one evaluation |")
    print("|---|---|---|---|---|---|")
    for task in args.tasks:
        op = operators.make(task, image_shape=shape)
        y = op(x)
        for cls, sigma_y in ((DDRM, 0.05), (DDNM, 0.0), (DDNM, 0.05), (PiGDM, 0.05), (DPS, 0.05)):
            real = timed_run(cls(prior, op, y, sigma_y), args.steps, 1) if args.with_real else 0
            own = timed_run(cls(instant, op, y, sigma_y), args.steps, args.repeats)
            shown = f"{real * 1000:.0f} ms" if args.with_real else "–"
            print(f"| {task} | {cls.__name__} | {sigma_y} | {shown} | "
                  f"{own * 1000:.1f} ms | {own / net * 100:.2f} % |", flush=True)


if __name__ == "__main__":
    main()
