"""Solvers against the exact posterior of a Gaussian mixture (issue 4).

Draws ``--n`` samples from each solver (one batch, the observation repeated) and from the exact
posterior ``p(x0 | y)``, and prints the sliced Wasserstein distance between them for every
solver × steps × operator × sigma_y, with two reference rows: the prior itself (what ignoring y
scores) and a second independent posterior sample (the floor set by sampling noise).

The mixture is the lead's yardstick: d = 16 (event (1, 4, 4)), K = 20, means ~ N(0, I), covariances
0.3²/16·RRᵀ + 0.02·I, and random Gaussian matrices A of 4×16 and 8×16.

    python benchmarks/posterior.py                     # the table in RESULTS.md
    python benchmarks/posterior.py --test-problem --rows 4     # the draw the tests use
    python benchmarks/posterior.py --n 500 --steps 5 20 --solvers DDRM PiGDM
    python benchmarks/posterior.py --n 1000 --steps 20 50 100 200 --nested   # issue 20's table

With ``--nested`` each solver also runs as the nested sampler's inner solver with the default
policy (``planning.auto_split`` and ``planning.nested_defaults``, the budget spent exactly), and
an exact inner sampler (``ExactPosterior``) nested the same way shows what the outer process
alone costs.
"""

from __future__ import annotations

import argparse
import math
import time


import torch

import operators
from nested_inverse import GaussianMixturePrior, NestedSampler
from nested_inverse.metrics import sliced_wasserstein
from nested_inverse.planning import auto_split, nested_defaults
from nested_inverse.solvers import DAPS, DDNM, DDRM, DiffPIR, ExactPosterior
from nested_inverse.solvers.dps import DPS
from nested_inverse.solvers.pigdm import PiGDM

SOLVERS = {
    "DDRM": (DDRM, {}),
    "DDRM(eta=0)": (DDRM, {"eta": 0.0}),
    "DDNM": (DDNM, {}),
    "PiGDM": (PiGDM, {}),
    "DPS(zeta=0.1)": (DPS, {"zeta": 0.1}),
    "DPS(zeta=0.3)": (DPS, {"zeta": 0.3}),
    "DiffPIR": (DiffPIR, {}),
    "DiffPIR(zeta=1)": (DiffPIR, {"zeta": 1.0}),
    "DiffPIR(lam=1)": (DiffPIR, {"lambda_": 1.0}),
    "DAPS": (DAPS, {}),
    "DAPS(r=sigma)": (DAPS, {"r": "sigma"}),
    "DAPS(ode=2)": (DAPS, {"ode_steps": 2}),
}
#: the table issue 20 asks for: every solver with its defaults.
DEFAULT_SOLVERS = ["DDRM", "DDNM", "PiGDM", "DPS(zeta=0.3)", "DiffPIR", "DAPS"]


#: registry names, for the default policy's per-method parameters.
METHODS = {DDRM: "ddrm", DDNM: "ddnm", PiGDM: "pigdm", DPS: "dps", DiffPIR: "diffpir", DAPS: "daps"}


def nested_sample(cls, params, prior, op, ys, sigma_y, budget: int,
                  renoise: str = "ddim") -> torch.Tensor:
    """The default nested run for ``budget`` evaluations with ``cls`` inside."""
    outer, inner = auto_split(budget)
    params = {**nested_defaults(METHODS.get(cls, ""), sigma_y), **params}
    solver = cls(prior, op, ys, sigma_y, **params)
    return NestedSampler(solver, outer, inner, outer_renoise=renoise).sample(torch.Generator().manual_seed(4),
                                                      budget_nfe=budget)


def yardstick_prior(seed: int = 0, d: int = 16, k: int = 20) -> GaussianMixturePrior:
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, d, generator=g, dtype=torch.float64)
    roots = torch.randn(k, d, d, generator=g, dtype=torch.float64)
    covs = 0.3**2 / d * roots @ roots.transpose(-1, -2) + 0.02 * torch.eye(d, dtype=torch.float64)
    return GaussianMixturePrior(torch.ones(k), means, covs, (1, 4, 4))


def problem(prior: GaussianMixturePrior, m: int, sigma_y: float, seed: int):
    """A random ``m × 16`` operator and one observation ``y = A x0 + 2σ_y·n`` of a prior draw."""
    g = torch.Generator().manual_seed(seed)
    op = operators.MatrixOperator(torch.randn(m, prior.dim, generator=g, dtype=torch.float64),
                                  prior.event_shape)
    x0 = prior.sample(1, g)
    y = op(x0) + 2 * sigma_y * torch.randn(1, m, generator=g, dtype=torch.float64)
    return op, y


def test_problem(prior: GaussianMixturePrior, m: int, sigma_y: float):
    """tests/test_solvers_posterior.py's draw: A and x0 continue the prior's generator (seed 0)."""
    g = torch.Generator().manual_seed(0)
    k, d = prior.means.shape
    torch.randn(k, d, generator=g, dtype=torch.float64)  # the prior's means and roots
    torch.randn(k, d, d, generator=g, dtype=torch.float64)
    op = operators.MatrixOperator(torch.randn(m, d, generator=g, dtype=torch.float64),
                                  prior.event_shape)
    y = op(prior.sample(1, g))
    return op, y + 2 * sigma_y * torch.randn(1, m, generator=g, dtype=torch.float64)


def sw(a: torch.Tensor, b: torch.Tensor) -> float:
    return sliced_wasserstein(a, b, projections=256, generator=torch.Generator().manual_seed(9))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="samples per solver")
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 20, 50])
    parser.add_argument("--solvers", nargs="+", default=DEFAULT_SOLVERS, choices=list(SOLVERS))
    parser.add_argument("--rows", type=int, nargs="+", default=[4, 8], help="rows m of A (m×16)")
    parser.add_argument("--sigma-y", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--nested", action="store_true",
                        help="also each solver nested with the default policy, and nested exact")
    parser.add_argument("--renoise", nargs="+", default=["ddim"], choices=["ddim", "fresh"],
                        help="outer re-noising of the nested rows (fresh: DAPS's decoupled one)")
    parser.add_argument("--test-problem", action="store_true",
                        help="use the tests' draw of A and x0 instead of seeds 100 + m")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    prior = yardstick_prior()
    n = args.n
    print(f"Gaussian mixture d={prior.dim}, K={prior.means.shape[0]}; n={n} samples; "
          f"sliced W2 to the exact posterior (256 projections)")
    header = f"| {'solver':<22} | {'A':>5} | {'sigma_y':>7} | " + " | ".join(
        f"{s:>3} steps" for s in args.steps) + " | time |"
    print(header)
    print("|" + "|".join("-" * (len(c) + 0) for c in header.split("|")[1:-1]) + "|")
    for m in args.rows:
        for sigma_y in args.sigma_y:
            if args.test_problem:
                op, y = test_problem(prior, m, sigma_y)
            else:
                op, y = problem(prior, m, sigma_y, seed=100 + m)
            post = prior.posterior_sample(op, y, sigma_y, generator=torch.Generator().manual_seed(1),
                                          n=n)
            post2 = prior.posterior_sample(op, y, sigma_y,
                                           generator=torch.Generator().manual_seed(2), n=n)
            ref_prior = prior.sample(n, torch.Generator().manual_seed(3))
            tag = f"| {{:<22}} | {m:>2}×16 | {sigma_y:>7} | "
            for name, value in (("prior", sw(ref_prior, post)), ("posterior", sw(post2, post))):
                print(tag.format(name) + f"{value:9.3f} | " + " | ".join(
                    " " * 9 for _ in args.steps[1:]) + " |      |")
            ys = y.expand(n, -1)
            rows = [(name, *SOLVERS[name], False) for name in args.solvers]
            if args.nested:
                for renoise in args.renoise:
                    tail = "" if renoise == "ddim" else f" ({renoise})"
                    rows += [(f"nested {name}{tail}", *SOLVERS[name], renoise)
                             for name in args.solvers]
                    rows.append((f"nested exact{tail}", ExactPosterior, {}, renoise))
            for name, cls, params, nested in rows:
                cells, start = [], time.perf_counter()
                for steps in args.steps:
                    if nested:
                        out = nested_sample(cls, params, prior, op, ys, sigma_y, steps, nested)
                    else:
                        out = cls(prior, op, ys, sigma_y, **params).sample(
                            steps=steps, generator=torch.Generator().manual_seed(4))
                    value = sw(out, post)
                    cells.append(f"{value:9.3f}" if math.isfinite(value) else f"{'nan':>9}")
                print(tag.format(name) + " | ".join(cells)
                      + f" | {time.perf_counter() - start:4.0f}s |", flush=True)


if __name__ == "__main__":
    main()
