"""Nested vs vanilla at equal network evaluations: anytime quality, final quality, overhead.

Prints Markdown tables (paste into benchmarks/RESULTS.md with the command) and writes PNG plots of
PSNR of the latest available result against evaluations, and, on the Gaussian mixture, sliced
Wasserstein distance to the exact posterior against evaluations.

What counts as "available": ``A†y`` before the first evaluation; for a vanilla run of N steps the
current x̂0 after each evaluation (the final sample after the last); for nested K×I the result of
each finished outer step. Quality at p % of the budget is that of the latest result available
after ⌊p·N⌋ evaluations; anytime quality is its mean over n = 1 … N (DESIGN.md).

Examples:
    python benchmarks/anytime.py --gmm-only
    python benchmarks/anytime.py --size 64 --tasks sr4,inpaint-box --methods ddrm,ddnm \\
        --budgets 20 --splits 20:5x4,4x5 --plot benchmarks/anytime_b20.png
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time
from dataclasses import dataclass, field


import torch
import torch.nn.functional as F

import operators
import nested_inverse as ni
from nested_inverse.metrics import anytime_quality, psnr, sliced_wasserstein, ssim

#: task name → (operator registry name, sigma_y on the [0, 1] scale).
TASKS = {
    "sr4": ("sr4", 0.0),
    "sr4-noisy": ("sr4", 0.05),
    "inpaint-box": ("inpaint-box", 0.0),
    "deblur": ("blur-gauss", 0.01),
}


class TimedPrior:
    """Wraps a prior; accumulates seconds spent inside ``predict`` (the bare network time)."""

    def __init__(self, prior):
        self.prior, self.alphas_cumprod = prior, prior.alphas_cumprod
        self.seconds, self.nfe = 0.0, 0

    def predict(self, x_t, t):
        start = time.perf_counter()
        out = self.prior.predict(x_t, t)
        self.seconds += time.perf_counter() - start
        self.nfe += 1
        return out

    def __getattr__(self, name):  # dtype, device, … of the wrapped prior
        return getattr(self.prior, name)


@dataclass
class Run:
    """One run's available results: ``curve`` of (nfe, image [B, C, H, W] in [0, 1])."""

    label: str
    budget: int
    curve: list = field(default_factory=list)
    wall: float = 0.0
    net: float = 0.0


def generators(seed: int, n: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def to01(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


def stream_run(sampler, prior: TimedPrior, label: str, seed: int, batch: int,
               transform=to01) -> Run:
    """Every result of ``sampler``'s anytime stream (vanilla or nested), with wall and net time."""
    run = Run(label, sampler.total_nfe)
    prior.seconds = 0.0
    start = time.perf_counter()
    for result in sampler.iterate(generators(seed, batch)):
        run.curve.append((result.nfe, transform(result.image)))
    run.wall, run.net = time.perf_counter() - start, prior.seconds
    return run


def vanilla_run(solver, prior: TimedPrior, steps: int, seed: int, batch: int,
                transform=to01) -> Run:
    return stream_run(ni.VanillaSampler(solver, steps), prior, f"vanilla {steps}", seed, batch,
                      transform)


def nested_run(solver, prior: TimedPrior, outer: int, inner: int, seed: int, batch: int,
               transform=to01) -> Run:
    return stream_run(ni.NestedSampler(solver, outer, inner), prior, f"nested {outer}x{inner}",
                      seed, batch, transform)


def make_solver(method: str, prior, op, y, sigma_y):
    """The registered solver ``method`` on a model-range ``y`` made here (not through Problem, so
    the noise draw stays the one RESULTS.md was measured with)."""
    return ni.solvers.get(method)(prior, op, y, sigma_y)


def latest(curve, n):
    return [img for k, img in curve if k <= n][-1]


def summarise(run: Run, truth: torch.Tensor) -> dict:
    N = run.budget
    ps = [(k, psnr(img, truth)) for k, img in run.curve]
    row = {"label": run.label}
    for p in (25, 50, 75, 100):
        img = latest(run.curve, math.floor(p / 100 * N))
        row[f"psnr{p}"] = float(psnr(img, truth).mean())
        row[f"ssim{p}"] = float(ssim(img, truth).mean())
    row["anytime"] = float(anytime_quality(ps, N).mean())
    row["anytime_ssim"] = float(anytime_quality([(k, ssim(img, truth)) for k, img in run.curve],
                                                N).mean())
    row["wall"], row["overhead"] = run.wall, run.wall / max(run.net, 1e-9) - 1
    return row


def psnr_steps(run: Run, truth: torch.Tensor) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for n in range(run.budget + 1):
        xs.append(n)
        ys.append(float(psnr(latest(run.curve, n), truth).mean()))
    return xs, ys


def parse_splits(text: str, budgets: list[int]) -> dict[int, list[tuple[int, int]]]:
    """``"20:5x4,4x5;50:5x10"`` → {20: [(5, 4), (4, 5)], 50: [(5, 10)]}; defaults otherwise."""
    out = {b: [(5, b // 5)] for b in budgets}
    for part in filter(None, text.split(";")):
        budget, splits = part.split(":")
        pairs = [tuple(int(v) for v in s.split("x")) for s in splits.split(",")]
        for k, i in pairs:
            if k * i != int(budget):
                raise SystemExit(f"--splits: {k}x{i} does not use the budget {budget}")
        out[int(budget)] = pairs
    return out


def images_benchmark(args) -> None:
    torch.manual_seed(args.seed)
    truth = torch.cat([ni.bundled_image(name, args.size) for name in args.images])
    batch = truth.shape[0]
    prior = TimedPrior(ni.load_prior(args.prior))
    budgets = [int(b) for b in args.budgets.split(",")]
    splits = parse_splits(args.splits, budgets)
    plot_rows, curves_out = [], {}
    print(f"\n### Images: {', '.join(args.images)} at {args.size} px (batch {batch}), "
          f"seed {args.seed}\n")
    for task in args.tasks:
        op_name, sigma_y = TASKS[task]
        op = operators.make(op_name, image_shape=(3, args.size, args.size))
        xm = 2 * truth - 1
        with torch.no_grad():
            clean = op(xm)
        noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(args.seed + 99))
        y = clean + 2 * sigma_y * noise
        base = {"A†y": to01(op.pinv(y))}
        if op_name.startswith("sr"):
            factor = args.size // y.shape[-1]
            up = F.interpolate(y, scale_factor=factor, mode="bicubic", align_corners=False)
            base["bicubic"] = to01(up)
        base_txt = ", ".join(f"{k} {float(psnr(v, truth).mean()):.2f} dB / "
                             f"{float(ssim(v, truth).mean()):.3f}" for k, v in base.items())
        print(f"#### {task} ({op_name}, sigma_y = {sigma_y}); baselines: {base_txt}\n")
        print("| method | budget | run | first result: nfe → PSNR (vanilla: its x̂0 there) | "
              "PSNR@25% | PSNR@50% | PSNR@75% | final PSNR | final SSIM | anytime PSNR | "
              "anytime SSIM | wall s | overhead |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for method in args.methods:
            try:
                solver = make_solver(method, prior, op, y, sigma_y)
            except ValueError as err:
                print(f"| {method} | – | not available: {err} | | | | | | | | | | |")
                continue
            for budget in budgets:
                if method == "dps" and args.dps_budget and budget != args.dps_budget:
                    continue
                runs = [vanilla_run(solver, prior, budget, args.seed, batch)]
                runs += [nested_run(solver, prior, k, i, args.seed, batch)
                         for k, i in splits[budget]]
                firsts = sorted({i for _, i in splits[budget]})
                for run in runs:
                    r = summarise(run, truth)
                    at = [run.curve[1][0]] if run.label.startswith("nested") else firsts
                    first = ", ".join(f"{n} → {float(psnr(latest(run.curve, n), truth).mean()):.2f}"
                                      for n in at)
                    curves_out[f"{task}/{method}/{budget}/{run.label}"] = psnr_steps(run, truth)[1]
                    print(f"| {method} | {budget} | {r['label']} | {first} | "
                          f"{r['psnr25']:.2f} | {r['psnr50']:.2f} | {r['psnr75']:.2f} | "
                          f"{r['psnr100']:.2f} | {r['ssim100']:.3f} | {r['anytime']:.2f} | "
                          f"{r['anytime_ssim']:.3f} | {r['wall']:.1f} | "
                          f"{100 * r['overhead']:.1f} % |", flush=True)
                plot_rows.append((task, method, budget, runs))
                if args.posterior_samples > 1 and budget == budgets[0]:
                    posterior_mean(args, method, prior, op, y, sigma_y, truth, budget,
                                   splits[budget][0])
        print()
    if args.plot and plot_rows:
        plot_images(plot_rows, truth, args.plot)
    if args.json:
        import json

        with open(args.json, "w") as f:
            json.dump({"psnr_of_latest_result_after_n_evaluations": curves_out}, f, indent=0)
        print(f"wrote {args.json}")


def posterior_mean(args, method, prior, op, y, sigma_y, truth, budget, split) -> None:
    """PSNR of the mean of S samples per image, vanilla and nested (batch of images × S)."""
    S, B = args.posterior_samples, truth.shape[0]
    ys = y.repeat_interleave(S, 0)
    solver = make_solver(method, prior, op, ys, sigma_y)
    gens = generators(args.seed + 1000, B * S)
    vanilla = to01(solver.sample(steps=budget, generator=gens))
    nested = to01(ni.NestedSampler(solver, *split).sample(generators(args.seed + 1000, B * S)))
    for label, out in (("vanilla", vanilla), (f"nested {split[0]}x{split[1]}", nested)):
        single = float(psnr(out[::S], truth).mean())
        mean = float(psnr(out.view(B, S, *out.shape[1:]).mean(1), truth).mean())
        print(f"|  | posterior mean of {S} ({label}, {budget} nfe each) | | | | | | "
              f"{mean:.2f} (one sample {single:.2f}) | | | | | |", flush=True)


def plot_images(rows, truth, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r[0] for r in rows))
    methods = list(dict.fromkeys(r[1] for r in rows))
    fig, axes = plt.subplots(len(tasks), len(methods), figsize=(4.2 * len(methods),
                                                              3.0 * len(tasks)), squeeze=False)
    for task, method, budget, runs in rows:
        ax = axes[tasks.index(task)][methods.index(method)]
        for run in runs:
            xs, ys = psnr_steps(run, truth)
            ax.step(xs, ys, where="post", label=f"{run.label}", linewidth=1.3,
                    linestyle="--" if run.label.startswith("vanilla") else "-")
        ax.set_title(f"{task} · {method}", fontsize=9)
        ax.set_xlabel("network evaluations")
        ax.set_ylabel("PSNR of latest result (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


# ----------------------------------------------------------------------------- Gaussian mixture
def mixture() -> ni.GaussianMixturePrior:
    """The benchmarks' 5-component mixture over 1×4×4 events (16 dims), from seed 0."""
    g = torch.Generator().manual_seed(0)
    k, shape = 5, (1, 4, 4)
    d = math.prod(shape)
    weights = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    means = torch.randn(k, d, generator=g, dtype=torch.float64)
    roots = 0.3 * torch.randn(k, d, d, generator=g, dtype=torch.float64) / d**0.5
    covs = roots @ roots.transpose(-1, -2) + 0.05 * torch.eye(d, dtype=torch.float64)
    return ni.GaussianMixturePrior(weights, means, covs, shape)


def gmm_benchmark(args) -> None:
    prior = mixture()
    shape = prior.event_shape
    n, N = args.gmm_samples, 20
    print(f"\n### Gaussian mixture (5 components, 4×4, 16 dims): SW₂ to {n} exact posterior "
          f"samples, budget {N}\n")
    curves = {}
    for op_name, sigma_y in (("sr2", 0.0), ("inpaint-half", 0.0), ("sr2", 0.05)):
        op = operators.make(op_name, image_shape=shape)
        x = prior.sample(1, torch.Generator().manual_seed(1))
        y = op(x) + 2 * sigma_y * torch.randn(op(x).shape, generator=torch.Generator()
                                              .manual_seed(2), dtype=torch.float64)
        ref = prior.posterior_sample(op, y, sigma_y, generator=torch.Generator().manual_seed(3),
                                     n=n)
        again = prior.posterior_sample(op, y, sigma_y, generator=torch.Generator().manual_seed(4),
                                       n=n)

        def sw(z):
            return sliced_wasserstein(ref, z, generator=torch.Generator().manual_seed(5))

        yb = y.expand(n, *y.shape[1:]).contiguous()
        print(f"#### {op_name}, sigma_y = {sigma_y}: posterior vs posterior {sw(again):.4f}, "
              f"prior {sw(prior.sample(n, torch.Generator().manual_seed(6))):.4f}\n")
        print("| inner | run | SW after 5 | after 10 | after 15 | after 20 (final) | "
              "mean SW over n = 1…20 |")
        print("|---|---|---|---|---|---|---|")
        for method in ("exact", "ddnm", "ddrm"):
            if method == "exact":
                solver = ni.solvers.ExactPosterior(prior, op, yb, sigma_y)
            else:
                try:
                    solver = make_solver(method, prior, op, yb, sigma_y)
                except ValueError:
                    continue
            def raw(z):
                return z

            runs = [vanilla_run(solver, TimedPrior(prior), N, 7, n, raw)]
            runs += [nested_run(solver, TimedPrior(prior), kk, ii, 7, n, raw)
                     for kk, ii in ((5, 4), (4, 5), (10, 2))]
            for run in runs:
                values = [(kk, sw(img)) for kk, img in run.curve]
                at = {p: [v for kk, v in values if kk <= p][-1] for p in (5, 10, 15, 20)}
                mean = anytime_quality(values, N)
                print(f"| {method} | {run.label} | {at[5]:.3f} | {at[10]:.3f} | {at[15]:.3f} | "
                      f"{at[20]:.3f} | {mean:.3f} |", flush=True)
                curves[(op_name, sigma_y, method, run.label)] = values
        print()
    if args.gmm_plot:
        plot_gmm(curves, args.gmm_plot)


def plot_gmm(curves, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys(k[:2] for k in curves))
    methods = list(dict.fromkeys(k[2] for k in curves))
    fig, axes = plt.subplots(len(problems), len(methods), figsize=(4 * len(methods),
                                                                 2.8 * len(problems)),
                             squeeze=False)
    for (op_name, sigma_y, method, label), values in curves.items():
        ax = axes[problems.index((op_name, sigma_y))][methods.index(method)]
        xs = list(range(21))
        ys = [[v for kk, v in values if kk <= n][-1] for n in xs]
        ax.step(xs, ys, where="post", label=label,
                linestyle="--" if label.startswith("vanilla") else "-")
        ax.set_yscale("log")
        ax.set_title(f"{op_name} σ_y={sigma_y} · {method}", fontsize=9)
        ax.set_xlabel("network evaluations")
        ax.set_ylabel("SW₂ to exact posterior")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--images", default="astronaut,chelsea,coffee")
    p.add_argument("--tasks", default="sr4,sr4-noisy,inpaint-box,deblur",
                   help=f"comma-separated, from {', '.join(TASKS)}")
    p.add_argument("--methods", default="ddrm,ddnm,pigdm,dps")
    p.add_argument("--budgets", default="20,50")
    p.add_argument("--splits", default="20:5x4,4x5;50:5x10,10x5",
                   help="K×I splits per budget, e.g. '20:5x4,4x5;50:5x10'")
    p.add_argument("--dps-budget", type=int, default=0,
                   help="run DPS only at this budget (0: at every budget)")
    p.add_argument("--posterior-samples", type=int, default=0,
                   help="also report the PSNR of the mean of this many samples (first budget)")
    p.add_argument("--prior", default=None, help="prior path or id (default: bundled)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1 is fastest on a shared, loaded CPU)")
    p.add_argument("--plot", default="", help="PNG of PSNR against evaluations")
    p.add_argument("--json", default="", help="write the PSNR curves (latest result after n "
                   "evaluations, mean over images) as JSON")
    p.add_argument("--gmm", action="store_true", help="also run the Gaussian-mixture part")
    p.add_argument("--gmm-only", action="store_true", help="run only the Gaussian-mixture part")
    p.add_argument("--gmm-samples", type=int, default=1000)
    p.add_argument("--gmm-plot", default="", help="PNG of SW against evaluations")
    args = p.parse_args(argv)
    args.images = [s for s in args.images.split(",") if s]
    args.tasks = [s for s in args.tasks.split(",") if s]
    args.methods = [s for s in args.methods.split(",") if s]
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        p.error(f"unknown tasks {unknown}; choose from {', '.join(TASKS)}")
    torch.set_num_threads(args.threads)
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC · "
          f"python {' '.join(sys.argv)} · torch {torch.__version__}, {args.threads} thread(s)")
    start = time.perf_counter()
    if not args.gmm_only:
        images_benchmark(args)
    if args.gmm or args.gmm_only:
        gmm_benchmark(args)
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
