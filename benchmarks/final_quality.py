"""Nested vs vanilla at equal evaluations, paired per image and seed: final and anytime PSNR.

For every task, method, budget and seed, each image gets its own observation (seeded noise) and
its own generators, so a vanilla run and each nested variant see the same y and are compared pair
by pair. Prints, per variant, the mean ± std of the paired difference (nested − vanilla) of the
final PSNR and of the anytime PSNR (DESIGN.md: mean over n = 1 … N of the PSNR of the latest
result after n evaluations), the standard error of the mean difference, and the share of pairs
where nested ends at least 0.3 dB below vanilla.

Variants are ``KxI`` with optional settings after colons: ``5x4``, ``5x4:outer_eta=0.5``,
``4x5:eta=1.0`` (the inner solver's η).

Examples:
    python benchmarks/final_quality.py --tasks inpaint-box --methods ddrm --budgets 20 \\
        --variants 5x4,4x5,2x10 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import ast
import datetime
import math
import statistics
import sys
import time

import torch

import operators
import nested_inverse as ni
from nested_inverse.anytime import run_to_end
from nested_inverse.metrics import anytime_quality, psnr

#: task name → (operator registry name, sigma_y on the [0, 1] scale).
TASKS = {
    "sr4": ("sr4", 0.0),
    "sr4-noisy": ("sr4", 0.05),
    "inpaint-box": ("inpaint-box", 0.0),
    "deblur": ("blur-gauss", 0.01),
}


def parse_variant(text: str) -> tuple[int, int, dict[str, float]]:
    """``"5x4:outer_eta=0.5"`` → ``(5, 4, {"outer_eta": 0.5})``."""
    split, *settings = text.split(":")
    k, i = (int(v) for v in split.split("x"))
    params = {}
    for item in settings:
        key, _, value = item.partition("=")
        params[key] = ast.literal_eval(value)
    return k, i, params


def curve_scores(results, truth: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Final PSNR ``[B]`` and anytime PSNR ``[B]`` of one run's results (images in [0, 1])."""
    curve = [(r.nfe, psnr(((r.image + 1) / 2).clamp(0, 1), truth)) for r in results]
    return curve[-1][1], anytime_quality(curve, budget)


def paired(diffs: list[float]) -> str:
    mean = statistics.fmean(diffs)
    std = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    return f"{mean:+.2f} ± {std:.2f} (se {std / math.sqrt(len(diffs)):.2f})"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", default="heldout",
                   help="'heldout' (data/images/heldout, if present), 'bundled', or names")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--tasks", default="inpaint-box,sr4,sr4-noisy,deblur")
    p.add_argument("--methods", default="ddrm,ddnm")
    p.add_argument("--budgets", default="20")
    p.add_argument("--variants", default="5x4,4x5")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--threads", type=int, default=2)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.images == "heldout" and hasattr(ni, "heldout_image_names"):
        names, load = ni.heldout_image_names(), ni.heldout_image
    elif args.images in ("heldout", "bundled"):
        names, load = ni.bundled_image_names(), ni.bundled_image
    else:
        names, load = args.images.split(","), ni.bundled_image
    truth = torch.cat([load(n, args.size) for n in names])
    B = truth.shape[0]
    prior = ni.load_prior(None)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = [parse_variant(v) for v in args.variants.split(",")]
    start = time.perf_counter()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC · "
          f"python benchmarks/final_quality.py {' '.join(argv)}".rstrip())
    print(f"\n{B} images at {args.size} px ({', '.join(names)}), seeds {seeds}; pairs = images × "
          "seeds; differences are nested − vanilla in dB\n")
    for task in args.tasks.split(","):
        op_name, sigma_y = TASKS[task]
        op = operators.make(op_name, image_shape=(3, args.size, args.size))
        for budget in (int(b) for b in args.budgets.split(",")):
            print(f"#### {task} ({op_name}, sigma_y = {sigma_y}), budget {budget}\n")
            print("| method | run | final PSNR | anytime PSNR | Δ final (paired) | "
                  "Δ anytime (paired) | pairs ≤ −0.3 dB |")
            print("|---|---|---|---|---|---|---|")
            for method in args.methods.split(","):
                finals: dict[str, list[torch.Tensor]] = {}
                anytimes: dict[str, list[torch.Tensor]] = {}
                for seed in seeds:
                    gens = lambda purpose: [torch.Generator().manual_seed(  # noqa: E731
                        1000 * seed + 97 * i + purpose) for i in range(B)]
                    problem = ni.Problem.degrade(truth, op, sigma_y, generator=gens(1))
                    runs = {f"vanilla {budget}": ni.VanillaSampler(
                        ni.solvers.make(method, prior, problem), budget)}
                    for k, i, params in variants:
                        solver_params = {key: v for key, v in params.items() if key != "outer_eta"}
                        label = f"nested {k}x{i}" + "".join(f" {key}={v}" for key, v in params.items())
                        runs[label] = ni.NestedSampler(
                            ni.solvers.make(method, prior, problem, **solver_params), k, i,
                            outer_eta=params.get("outer_eta", 0.0))
                    for label, sampler in runs.items():
                        final, anytime = curve_scores(run_to_end(sampler.iterate(gens(2))),
                                                      truth, budget)
                        finals.setdefault(label, []).append(final)
                        anytimes.setdefault(label, []).append(anytime)
                base = f"vanilla {budget}"
                vf, va = torch.cat(finals[base]), torch.cat(anytimes[base])
                for label in finals:
                    f, a = torch.cat(finals[label]), torch.cat(anytimes[label])
                    if label == base:
                        cols = ["", "", ""]
                    else:
                        df, da = (f - vf).tolist(), (a - va).tolist()
                        worse = sum(d <= -0.3 for d in df)
                        cols = [paired(df), paired(da), f"{worse}/{len(df)}"]
                    print(f"| {method} | {label} | {float(f.mean()):.2f} | {float(a.mean()):.2f} | "
                          + " | ".join(cols) + " |", flush=True)
            print()
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
