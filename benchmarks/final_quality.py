"""Nested vs vanilla at equal evaluations, paired per image and seed: final and anytime PSNR.

For every task, method, budget and seed, each image gets its own observation (seeded noise) and
its own generators, so a vanilla run and each nested variant see the same y and are compared pair
by pair. Prints, per variant, the mean ± std of the paired difference (nested − vanilla) of the
final PSNR, of the anytime PSNR (DESIGN.md: mean over n = 1 … N of the PSNR of the latest
result after n evaluations) and of the paper's comparison (Elata et al. plot quality against NFE
at the evaluations where the nested run delivers a result: here the mean over outer steps k of
PSNR(nested result k) − PSNR(vanilla x̂0 after as many evaluations)), the standard error of the
mean difference, and the share of pairs where nested ends at least 0.3 dB below vanilla.

Variants are ``KxI`` with optional settings after colons: ``5x4``, ``5x4:outer_eta=0.5``,
``4x5:eta=1.0`` (the inner solver's η).

``auto`` is the library's own split for the budget (:func:`nested_inverse.planning.auto_split`)
with the parameters it implies for the method (:func:`nested_inverse.planning.nested_defaults`);
``auto:eta=0.85`` overrides one of them. Every nested run gets the budget as ``budget_nfe``.

``--judge gmm`` runs the same variants on a Gaussian mixture instead of photos: the exact posterior
is known, so each run is scored by the sliced 2-Wasserstein distance (SW₂) of its samples to exact
posterior samples, at the end and averaged over the run (the anytime SW₂), over several
observations; lower is better and ``posterior vs posterior`` is the noise floor.

Examples:
    python benchmarks/final_quality.py --tasks inpaint-box --methods ddrm --budgets 20 \\
        --variants 5x4,4x5,2x10 --seeds 0,1,2
    python benchmarks/final_quality.py --judge gmm --methods ddrm,ddnm --budgets 20,50 \\
        --variants 5x4,4x5:eta=1.0,auto
"""

from __future__ import annotations

import argparse
import ast
import datetime
import functools
import math
import statistics
import sys
import time

import torch

import operators
import nested_inverse as ni
from nested_inverse.anytime import run_to_end
from nested_inverse.metrics import anytime_quality, psnr, sliced_wasserstein

from anytime import mixture  # benchmarks/anytime.py: the mixture both scripts judge by

#: task name → (operator registry name, sigma_y on the [0, 1] scale).
TASKS = {
    "sr4": ("sr4", 0.0),
    "sr4-noisy": ("sr4", 0.05),
    "inpaint-box": ("inpaint-box", 0.0),
    "deblur": ("blur-gauss", 0.01),
}


def parse_variant(text: str) -> tuple[str, dict[str, float]]:
    """``"5x4:outer_eta=0.5"`` → ``("5x4", {"outer_eta": 0.5})``; the split may be ``auto``."""
    split, *settings = text.split(":")
    params = {}
    for item in settings:
        key, _, value = item.partition("=")
        params[key] = ast.literal_eval(value)
    return split, params


def resolve(split: str, params: dict, method: str, budget: int,
            sigma_y: float = 0.0) -> tuple[int, int, dict, str]:
    """``(K, I, sampler and solver parameters, label)`` of a variant at ``budget``."""
    if split == "auto":
        k, i = ni.planning.auto_split(budget)
        params = {**ni.planning.nested_defaults(method, sigma_y), **params}
        label = f"auto {k}x{i}"
    else:
        k, i = (int(v) for v in split.split("x"))
        label = f"nested {split}"
    return k, i, params, label + "".join(f" {key}={v}" for key, v in params.items())


def nested(solver_of, k: int, i: int, params: dict) -> ni.NestedSampler:
    """The nested sampler of a variant: ``outer_eta`` goes to the sampler, the rest to the solver."""
    solver = solver_of(**{key: v for key, v in params.items() if key != "outer_eta"})
    return ni.NestedSampler(solver, k, i, outer_eta=params.get("outer_eta", 0.0))


def psnr_curve(results, truth: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
    """``(nfe, PSNR [B])`` of every result of one run (images in [0, 1])."""
    return [(r.nfe, psnr(((r.image + 1) / 2).clamp(0, 1), truth)) for r in results]


def at_outer_steps(curve, vanilla) -> torch.Tensor:
    """The paper's comparison: mean over outer steps k of PSNR(result k) − PSNR(vanilla x̂0 at the
    same evaluations), ``[B]``; A†y (0 evaluations) is left out."""
    vanilla_at = dict(vanilla)
    return torch.stack([q - vanilla_at[n] for n, q in curve if n > 0]).mean(0)


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
    p.add_argument("--judge", choices=("photos", "gmm"), default="photos",
                   help="score photos by PSNR, or a Gaussian mixture by SW₂ to its exact posterior")
    p.add_argument("--observations", type=int, default=4,
                   help="with --judge gmm: observations per operator")
    p.add_argument("--samples", type=int, default=1000, help="with --judge gmm: samples per run")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.judge == "gmm":
        return gmm_study(args, argv)

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
                  "Δ anytime (paired) | Δ at outer steps (paired) | pairs ≤ −0.3 dB |")
            print("|---|---|---|---|---|---|---|---|")
            for method in args.methods.split(","):
                curves: dict[str, list] = {}
                for seed in seeds:
                    gens = lambda purpose: [torch.Generator().manual_seed(  # noqa: E731
                        1000 * seed + 97 * i + purpose) for i in range(B)]
                    problem = ni.Problem.degrade(truth, op, sigma_y, generator=gens(1))
                    runs = {f"vanilla {budget}": ni.VanillaSampler(
                        ni.solvers.make(method, prior, problem), budget)}
                    for split, params in variants:
                        k, i, params, label = resolve(split, params, method, budget, sigma_y)
                        runs[label] = nested(functools.partial(ni.solvers.make, method, prior,
                                                               problem), k, i, params)
                    for label, sampler in runs.items():
                        curves.setdefault(label, []).append(psnr_curve(run_to_end(
                            sampler.iterate(gens(2), budget_nfe=budget)), truth))
                base = f"vanilla {budget}"

                def scores(label):
                    final = torch.cat([c[-1][1] for c in curves[label]])
                    anytime = torch.cat([anytime_quality(c, budget) for c in curves[label]])
                    return final, anytime

                vf, va = scores(base)
                for label in curves:
                    f, a = scores(label)
                    if label == base:
                        cols = ["", "", "", ""]
                    else:
                        df, da = (f - vf).tolist(), (a - va).tolist()
                        dk = torch.cat([at_outer_steps(c, v) for c, v
                                        in zip(curves[label], curves[base])]).tolist()
                        worse = sum(d <= -0.3 for d in df)
                        cols = [paired(df), paired(da), paired(dk), f"{worse}/{len(df)}"]
                    print(f"| {method} | {label} | {float(f.mean()):.2f} | {float(a.mean()):.2f} | "
                          + " | ".join(cols) + " |", flush=True)
            print()
    print(f"total wall time {time.perf_counter() - start:.0f} s")


# ----------------------------------------------------------------------------- the exact judge
#: operator registry name and sigma_y of the mixture problems (4×4 single-channel events).
GMM_TASKS = {"sr2": ("sr2", 0.0), "inpaint-half": ("inpaint-half", 0.0),
             "sr2-noisy": ("sr2", 0.05)}


def gmm_study(args, argv) -> None:
    """Every variant against the exact posterior: mean final and anytime SW₂ over observations."""
    prior, n = mixture(), args.samples
    shape = prior.event_shape
    variants = [parse_variant(v) for v in args.variants.split(",")]
    start = time.perf_counter()
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC · "
          f"python benchmarks/final_quality.py {' '.join(argv)}".rstrip())
    print(f"\nGaussian mixture (5 components, 1×4×4): SW₂ of {n} samples to {n} exact posterior "
          f"samples, mean over {args.observations} observations (x0 drawn from the prior); lower "
          "is better; paired Δ = variant − vanilla\n")
    tasks = [t for t in args.tasks.split(",") if t in GMM_TASKS] or list(GMM_TASKS)
    for task in tasks:
        op_name, sigma_y = GMM_TASKS[task]
        op = operators.make(op_name, image_shape=shape)
        problems = []
        for j in range(args.observations):
            x = prior.sample(1, torch.Generator().manual_seed(100 + j))
            y = op(x) + 2 * sigma_y * torch.randn(op(x).shape, dtype=torch.float64,
                                                  generator=torch.Generator().manual_seed(200 + j))
            ref = prior.posterior_sample(op, y, sigma_y, n=n,
                                         generator=torch.Generator().manual_seed(300 + j))
            floor = prior.posterior_sample(op, y, sigma_y, n=n,
                                           generator=torch.Generator().manual_seed(400 + j))
            problems.append((y.expand(n, *y.shape[1:]).contiguous(), ref, floor))

        def sw(ref, z):
            return sliced_wasserstein(ref, z, generator=torch.Generator().manual_seed(5))

        noise = statistics.fmean(sw(ref, floor) for _, ref, floor in problems)
        for budget in (int(b) for b in args.budgets.split(",")):
            print(f"#### {task} ({op_name}, sigma_y = {sigma_y}), budget {budget}; posterior vs "
                  f"posterior {noise:.3f}\n")
            print("| method | run | final SW₂ | anytime SW₂ | Δ final | Δ anytime |")
            print("|---|---|---|---|---|---|")
            for method in args.methods.split(","):
                scores: dict[str, list[tuple[float, float]]] = {}
                for j, (yb, ref, _) in enumerate(problems):
                    def solver_of(**params):
                        return ni.solvers.get(method)(prior, op, yb, sigma_y, **params)
                    runs = {f"vanilla {budget}": ni.VanillaSampler(solver_of(), budget)}
                    for split, params in variants:
                        k, i, params, label = resolve(split, params, method, budget, sigma_y)
                        runs[label] = nested(solver_of, k, i, params)
                    for label, sampler in runs.items():
                        gens = [torch.Generator().manual_seed(7 + 1000 * j + b) for b in range(n)]
                        curve = [(r.nfe, sw(ref, r.image))
                                 for r in run_to_end(sampler.iterate(gens, budget_nfe=budget))]
                        scores.setdefault(label, []).append(
                            (curve[-1][1], anytime_quality(curve, budget)))
                base = scores[f"vanilla {budget}"]
                for label, values in scores.items():
                    final = statistics.fmean(v[0] for v in values)
                    anytime = statistics.fmean(v[1] for v in values)
                    cols = ["", ""] if label.startswith("vanilla") else [
                        f"{final - statistics.fmean(v[0] for v in base):+.3f}",
                        f"{anytime - statistics.fmean(v[1] for v in base):+.3f}"]
                    print(f"| {method} | {label} | {final:.3f} | {anytime:.3f} | "
                          + " | ".join(cols) + " |", flush=True)
            print()
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
