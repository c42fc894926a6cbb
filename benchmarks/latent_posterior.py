"""Latent solvers against the exact posterior of the linear latent yardstick (issue 11).

Draws ``--n`` samples (one batch, the observation repeated) from latent DPS and PSLD, vanilla and
nested (K×I splits and the default policy ``auto_split``) at equal network evaluations, decodes
them, and prints the sliced Wasserstein distance to exact posterior samples
(:meth:`LinearLatentPrior.posterior_sample`), with two reference rows: the prior (what ignoring y
scores) and a second posterior sample (the floor set by sampling noise); and one sanity row:
the exact sampler of ``p(z0 | z_t, y)`` (:class:`~nested_inverse.solvers.ExactPosterior` on the
latent mixture with ``H = A D``) in every column, which must sit at the floor, vanilla or nested.

The yardstick is tests/test_solvers_latent.py's: a 2-D latent mixture (K = 5, means ~ N(0, I),
covariances 0.2²·RRᵀ + 0.02·I) under a random 4×2 decoder ``D ~ N(0, 1/4)`` onto 1×2×2 images;
tasks sr2 (noiseless: one observed number), inpaint-half (σ_y = 0.05) and sr2 (σ_y = 0.05), drawn
in that order (the tests use the first two).

    python benchmarks/latent_posterior.py                  # the table in RESULTS.md
    python benchmarks/latent_posterior.py --n 500 --budgets 20
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import operators
from nested_inverse import GaussianMixturePrior, NestedSampler
from nested_inverse.metrics import sliced_wasserstein
from nested_inverse.planning import auto_split
from nested_inverse.priors import LinearDecoder, LinearLatentPrior
from nested_inverse.solvers import PSLD, ExactPosterior, LatentDPS

F64 = torch.float64

SOLVERS = {
    "latent-dps": (LatentDPS, {}),
    "latent-dps(zeta=3)": (LatentDPS, {"zeta": 3.0}),
    "psld": (PSLD, {}),
    "psld(gamma=1)": (PSLD, {"gamma": 1.0}),
}

#: nested splits K×I per budget, beside vanilla and the default policy (``auto``)
SPLITS = {20: [(2, 10), (5, 4)], 50: [(5, 10), (10, 5)]}

TASKS = (("sr2", 0.0), ("inpaint-half", 0.05), ("sr2", 0.05))


def yardstick() -> tuple[LinearLatentPrior, torch.Generator]:
    g = torch.Generator().manual_seed(0)
    k = 5
    means = torch.randn(k, 2, generator=g, dtype=F64)
    roots = torch.randn(k, 2, 2, generator=g, dtype=F64)
    covs = 0.2**2 * roots @ roots.transpose(-1, -2) + 0.02 * torch.eye(2, dtype=F64)
    gmm = GaussianMixturePrior(torch.ones(k), means, covs, (1, 1, 2))
    D = torch.randn(4, 2, generator=g, dtype=F64) / 2
    return LinearLatentPrior(gmm, LinearDecoder(D, (1, 1, 2), (1, 2, 2))), g


def sw(a: torch.Tensor, b: torch.Tensor) -> float:
    return sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(9))


def columns(budgets: list[int]) -> list[tuple[str, int, tuple[int, int] | None]]:
    """``(label, budget, split)``; split None is vanilla."""
    cols = []
    for n in budgets:
        cols.append((f"{n}: vanilla", n, None))
        cols += [(f"{n}: {k}×{i}", n, (k, i)) for k, i in SPLITS.get(n, [])]
        k, i = auto_split(n)
        cols.append((f"{n}: auto {k}×{i}", n, (k, i)))
    return cols


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="samples per run")
    parser.add_argument("--budgets", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=list(SOLVERS))
    args = parser.parse_args()
    torch.set_num_threads(1)

    prior, g = yardstick()
    n = args.n
    cols = columns(args.budgets)
    print(f"Linear latent yardstick: latent d=2, K=5, decoder 4×2 onto 1×2×2 images; n={n}; "
          "sliced W2 of decoded samples to the exact posterior (256 projections); equal NFE per column\n")
    header = "| task | solver | " + " | ".join(c[0] for c in cols) + " |"
    print(header)
    print("|" + "|".join("---" for _ in header.split("|")[1:-1]) + "|")
    for task, sigma_y in TASKS:
        op = operators.make(task, image_shape=(1, 2, 2))
        y = op(prior.sample(1, g))
        y = y + 2 * sigma_y * torch.randn(y.shape, generator=g, dtype=F64)
        post = prior.posterior_sample(op, y, sigma_y, torch.Generator().manual_seed(1), n)
        label = f"{task} σ_y={sigma_y}"
        refs = {"(prior)": sw(prior.sample(n, torch.Generator().manual_seed(3)), post),
                "(2nd posterior sample)": sw(prior.posterior_sample(
                    op, y, sigma_y, torch.Generator().manual_seed(2), n), post)}
        for name, value in refs.items():
            print(f"| {label} | {name} | {value:.3f} | " + " | ".join("" for _ in cols[1:]) + " |")
        ys = y.expand(n, -1, -1, -1)
        runs = [(name, *SOLVERS[name]) for name in args.solvers]
        runs.append(("(exact inner)", None, {}))
        for name, cls, params in runs:
            if cls is None:  # exact p(z0 | z_t, y) on the latent mixture, decoded like the others
                exact = ExactPosterior(prior.latent_gmm, prior.latent_operator(op),
                                       y.reshape(1, -1).expand(n, -1), sigma_y)
                exact.decode = prior.decode  # show its latents as the latent solvers do
                solver = exact
            else:
                solver = cls(prior, op, ys, sigma_y, **params)
            cells, start = [], time.perf_counter()
            for _, budget, split in cols:
                gen = torch.Generator().manual_seed(4)
                if split is None:
                    z = solver.sample(steps=budget, generator=gen)
                else:
                    z = NestedSampler(solver, *split).sample(gen, budget_nfe=budget)
                cells.append(f"{sw(solver.decode(z), post):.3f}")
            print(f"| {label} | {name} | " + " | ".join(cells) + " |", flush=True)
        print(f"{task}: {time.perf_counter() - start:.0f}s for the last solver", file=sys.stderr)


if __name__ == "__main__":
    main()
