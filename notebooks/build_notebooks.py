"""Write the tutorial notebooks (without outputs) from the cells below.

    python notebooks/build_notebooks.py

Edit the cells here, rerun, and commit the ``.ipynb`` files. ``tests/test_notebooks.py`` executes
every notebook with ``NESTED_INVERSE_SMALL=1`` (tiny crops, few steps); run one yourself at full
size with ``jupyter nbconvert --to notebook --execute notebooks/01_quickstart.ipynb``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SMALL = '''\
import os

# The test suite sets NESTED_INVERSE_SMALL=1 to run this notebook on tiny crops with few steps.
SMALL = os.environ.get("NESTED_INVERSE_SMALL", "0") == "1"
'''

SHOW = '''\
import matplotlib.pyplot as plt


def as_numpy(img):
    """[1, C, H, W] or [C, H, W] in [0, 1] -> an H×W×C array for imshow."""
    img = img.detach().cpu().float()
    img = img[0] if img.ndim == 4 else img
    return img.clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy()


def show_grid(rows, titles=None, row_labels=None, size=1.8):
    """rows: lists of images in [0, 1] (None leaves a cell empty); titles: per cell or per column."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(size * n_cols, size * n_rows + 0.3),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            img = row[j] if j < len(row) else None
            if img is not None:
                ax.imshow(as_numpy(img), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            if titles is not None:
                t = titles[i][j] if isinstance(titles[i], (list, tuple)) else titles[j]
                if t and img is not None:
                    ax.set_title(t, fontsize=8)
        if row_labels is not None:
            axes[i][0].set_ylabel(row_labels[i], fontsize=9)
    fig.tight_layout()
    plt.show()
'''


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))


# --------------------------------------------------------------------------------------------------
# 01 quick start
# --------------------------------------------------------------------------------------------------

QUICKSTART = [
    md("""
# Quick start: anytime restoration with nested diffusion

A diffusion solver such as DDRM needs all of its steps before its result looks finished: stopped
early, its running estimate x̂0 is blurry. **Nested diffusion** (Elata, Kawar, Michaeli, Elad, 2023,
[arXiv 2305.19066](https://arxiv.org/abs/2305.19066)) wraps the solver in an *outer* diffusion
whose every step runs a whole, short *inner* solver. After each outer step a finished-looking
restoration is ready, for the same total number of network evaluations (NFE).

This notebook degrades a bundled photo three ways (4× super-resolution, box inpainting, Gaussian blur
with noise), restores it with nested DDRM, and puts the restoration available after each outer step
beside vanilla DDRM's x̂0 at the same evaluation count.
"""),
    code(SMALL + '''
SIZE = 32 if SMALL else 128          # crop side in pixels (a multiple of 4)
BUDGET = 9 if SMALL else 20          # network evaluations per restoration
'''),
    code('''
import torch

import operators
import nested_inverse as ni
from nested_inverse.metrics import psnr
''' + "\n" + SHOW),
    md("""
## An image and three degradations

`bundled_image` returns a held-out photo (never seen by the bundled prior in training) as a
`[1, 3, H, W]` tensor in [0, 1]. Operators come from the registry: `operators.available()` lists
them, `operators.make(name, image_shape=(C, H, W), **params)` builds one. Applied to an image in
[0, 1] an operator gives the observation `y` on the same scale; `sigma_y` is the observation noise
on that [0, 1] scale (0.05 = 5 % of the range).
"""),
    code('''
x = ni.bundled_image("coffee", size=SIZE)
shape = tuple(x.shape[1:])
print(operators.available())

g = torch.Generator().manual_seed(0)
tasks = {
    "SR ×4": (operators.make("sr4", image_shape=shape), 0.0),
    "box inpainting": (operators.make("inpaint-box", image_shape=shape), 0.0),
    "blur + 5 % noise": (operators.make("blur-gauss", image_shape=shape, sigma=1.5), 0.05),
}
observations = {}
for name, (op, sigma_y) in tasks.items():
    y = op(x)
    observations[name] = y + sigma_y * torch.randn(y.shape, generator=g)

show_grid([[x] + list(observations.values())], ["clean"] + list(observations))
'''),
    md("""
## Restore: nested DDRM against vanilla DDRM

`ni.restore(y, operator, sigma_y, method, outer_steps, inner_steps, prior, seed,
return_intermediates)` takes and returns images in [0, 1]. Given only a budget (`budget_nfe`), it
chooses the split itself (`outer_steps="auto"`): 4 outer steps of about a quarter of the budget each
(fewer for budgets under 16), with DDRM's inner runs fully stochastic (η = 1) for noiseless
observations, the policy that ended within 0.3 dB of vanilla or above on held-out photos
(benchmarks/RESULTS.md, "Final quality: the default policy"); `outer_steps=K, inner_steps=I` sets it by hand. With `return_intermediates=True` it also
returns one `AnytimeResult` per outer step (`A†y` first, at 0 evaluations); each carries `.image`
and `.nfe`, the network evaluations spent so far. With `vanilla=True` it runs the solver alone for
`steps` evaluations and the intermediates are its x̂0 after every step. Loading the prior once and
passing it in saves reloading it for every call.
"""),
    code('''
prior = ni.DiffusionPrior.default()       # the bundled 16.9 M-parameter texture prior
runs = {}
for name, (op, sigma_y) in tasks.items():
    y = observations[name]
    nested, steps = ni.restore(y, op, sigma_y, method="ddrm", budget_nfe=BUDGET, prior=prior,
                               seed=0, return_intermediates=True, progress=False)
    _, vsteps = ni.restore(y, op, sigma_y, method="ddrm", vanilla=True, steps=BUDGET,
                           prior=prior, seed=0, return_intermediates=True, progress=False)
    runs[name] = steps, {r.nfe: r.image for r in vsteps}
    print(f"{name:18s} nested {psnr(nested, x).item():5.2f} dB after {steps[-1].nfe} NFE; "
          f"vanilla {psnr(vsteps[-1].image, x).item():5.2f} dB after {vsteps[-1].nfe} NFE")
'''),
    md("""
## The anytime sequence

Top row of each pair: nested DDRM's restoration after each outer step. Bottom row: vanilla DDRM's
x̂0 at the same number of evaluations. Both start from `A†y` (0 NFE) and end with a full run of the
same budget.
"""),
    code('''
for name, (steps, vanilla) in runs.items():
    nfes = [r.nfe for r in steps]
    rows = [[r.image for r in steps], [vanilla[n] for n in nfes]]
    titles = [[f"nested, {n} NFE" if n else "A†y" for n in nfes],
              [f"vanilla x̂0, {n} NFE" if n else "A†y" for n in nfes]]
    print(name)
    show_grid(rows, titles)
'''),
    md("""
## Quality against evaluations

PSNR of the latest result available after each evaluation count. The nested curve is flat between
outer steps (nothing new arrives until an inner run finishes) but each of its points is a complete
restoration; vanilla's x̂0 only catches up at the end. `ni.metrics.anytime_quality` averages such a
curve over the budget: the expected quality of a run stopped at a random moment.
"""),
    code('''
from nested_inverse.metrics import anytime_quality

fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3), squeeze=False)
for ax, (name, (steps, vanilla)) in zip(axes[0], runs.items()):
    nested_curve = [(r.nfe, psnr(r.image, x).item()) for r in steps]
    vanilla_curve = [(n, psnr(img, x).item()) for n, img in sorted(vanilla.items())]
    for label, curve in (("nested", nested_curve), ("vanilla x̂0", vanilla_curve)):
        q = anytime_quality(curve, BUDGET)
        ax.step(*zip(*curve), where="post", marker="o", ms=3, label=f"{label} (anytime {q:.1f} dB)")
    ax.set(title=name, xlabel="network evaluations", ylabel="PSNR (dB)")
    ax.legend(fontsize=7)
fig.tight_layout()
plt.show()
'''),
    md("""
## Next

- `02_custom_operator.ipynb`: your own forward operator, checked and restored.
- `03_human_guidance.ipynb`: steer a run between outer steps.
- `04_exact_posterior.ipynb`: nested diffusion against an exact posterior.
- The same restoration from the shell: `nested-inverse restore data/images/coffee.png --degrade
  --task sr4 --center-crop 128 --out out/quickstart`.
"""),
]

# --------------------------------------------------------------------------------------------------
# 02 custom operator
# --------------------------------------------------------------------------------------------------

CUSTOM = [
    md("""
# Your own forward operator

Any linear degradation can be restored once it is an `operators.LinearOperator` with a `forward`.
The rest has defaults: the adjoint `Aᵀ` comes from autograd (a vector–Jacobian product) and the
pseudo-inverse `A†` from conjugate gradients on the normal equations. `operators.check` tests any
operator numerically before you trust it with a restoration.

Here: 2× downsampling followed by losing a random half of the low-resolution pixels (a sensor with
dead pixels), written in a few lines, then restored with nested DDNM and nested DPS.
"""),
    code(SMALL + '''
SIZE = 32 if SMALL else 128
OUTER, INNER = (3, 3) if SMALL else (5, 4)
DPS_OUTER, DPS_INNER = (3, 4) if SMALL else (5, 10)   # DPS needs many more steps
'''),
    code('''
import torch
import torch.nn.functional as F

import operators
import nested_inverse as ni
from nested_inverse.metrics import psnr
''' + "\n" + SHOW),
    md("""
## A forward-only operator

Images inside the library are `[B, C, H, W]`; `forward` must be linear and follow the input's dtype
and device. Passing `image_shape=(C, H, W)` lets the autograd adjoint know the input size.
"""),
    code('''
class DeadPixelDownsample(operators.LinearOperator):
    """2×2 average pooling, then a fixed random fraction `drop` of the low-resolution pixels lost."""

    def __init__(self, image_shape, drop=0.5, seed=0):
        super().__init__(image_shape)
        _, H, W = image_shape
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("keep", torch.rand(1, 1, H // 2, W // 2, generator=g) >= drop)

    def forward(self, x):
        return F.avg_pool2d(x, 2) * self.keep.to(x)


shape = (3, SIZE, SIZE)
op = DeadPixelDownsample(shape)
print(operators.check(op, shape))
'''),
    md("""
`check` reports the adjoint error `|⟨Ax, y⟩ − ⟨x, Aᵀy⟩|`, the pseudo-inverse error
`‖A A† A x − A x‖` (both relative) and, for operators with an SVD, its errors. A hand-written adjoint
with a mistake — here the missing ¼ of average pooling — is caught at once:
"""),
    code('''
class WrongAdjoint(DeadPixelDownsample):
    def adjoint(self, y):
        return F.interpolate(y * self.keep.to(y), scale_factor=2, mode="nearest")  # forgot / 4


report = operators.check(WrongAdjoint(shape), shape)
print(report)
assert not report.ok
'''),
    md("""
The same operator also comes from built-in parts: `A₂ @ A₁` composes operators (`operators.Compose`).
"""),
    code('''
composed = operators.Inpainting(op.keep[0, 0]) @ operators.BoxDownsample(2, shape)
x = ni.bundled_image("chelsea", size=SIZE)
print("same as the hand-written one:", torch.allclose(composed(x), op(x)))
print(operators.check(composed, shape).ok)
'''),
    md("""
To use it by name (and from the command line), register a factory
`f(image_shape, generator=None, **params)`; the CLI also imports one directly with
`--task my_module:make_op`.
"""),
    code('''
def dead_pixel_sr2(image_shape, generator=None, drop=0.5):
    """2x downsampling with a fraction `drop` of the low-resolution pixels lost."""
    return DeadPixelDownsample(image_shape, drop)


operators.register("dead-pixel-sr2", dead_pixel_sr2, overwrite=True)
print(operators.describe("dead-pixel-sr2"))
op = operators.make("dead-pixel-sr2", image_shape=shape, drop=0.5)
'''),
    md("""
## Restore with nested DDNM and nested DPS

DDNM needs only `forward` and `pinv` (here by conjugate gradients); DPS needs only `forward` and
gradients through the network, so it also accepts nonlinear differentiable operators, but needs
more steps. DDRM needs an SVD, which this operator does not have.

Solver parameters pass through `restore`: DPS's step size `zeta` defaults to 1, which at a few dozen
evaluations barely pulls the sample towards `y` (a flat, blurry image); `zeta=5` works here
(measured on a 64-pixel crop with 5 × 10 steps: 16.8 dB with `zeta=1`, 27.8 dB with `zeta=5`).
"""),
    code('''
prior = ni.DiffusionPrior.default()
y = op(x)
results = {}
runs = {"ddnm": (OUTER, INNER, {}), "dps": (DPS_OUTER, DPS_INNER, {"zeta": 5.0})}
for method, (K, I, params) in runs.items():
    out, steps = ni.restore(y, op, method=method, outer_steps=K, inner_steps=I, prior=prior,
                            seed=0, return_intermediates=True, progress=False, **params)
    results[method] = steps
    print(f"nested {method}: {psnr(out, x).item():.2f} dB after {steps[-1].nfe} evaluations")

y_big = F.interpolate(y, scale_factor=2, mode="nearest")   # y drawn at the image's size
rows = [[x, y_big] + [r.image for r in results["ddnm"][1:]],
        [None, None] + [r.image for r in results["dps"][1:]]]
titles = [["clean", "y (dead pixels black)"] + [f"nested {m}, {r.nfe} NFE" for r in steps[1:]]
          for m, steps in results.items()]
show_grid(rows, titles)
'''),
]

# --------------------------------------------------------------------------------------------------
# 03 human guidance
# --------------------------------------------------------------------------------------------------

GUIDANCE = [
    md("""
# Human guidance during a run

Because a nested run has a finished restoration after every outer step, a person (or a program) can
look at it and steer the rest of the run. `NestedSampler.iterate()` returns a run: `next(run)` takes
the next outer step; between steps `run.send(command)` applies

- `Resample()`: redo the last inner run from the same outer state with fresh noise (drop an
  unwanted trajectory);
- `SetInnerSteps(n)`: spend `n` evaluations per outer step from now on;
- `Edit(image)`: replace the current restoration with an edited one (projected back to agree with
  `y` where the problem is noiseless); the next outer step builds on it;
- `Stop()`: end the run, keeping the latest result.

`send` answers with the current (updated) `AnytimeResult`. Here: box inpainting with nested DDNM.
"""),
    code(SMALL + """
SIZE = 32 if SMALL else 128
OUTER, INNER = (6, 3) if SMALL else (6, 5)
"""),
    code("""
import torch

import operators
import nested_inverse as ni
from nested_inverse import DDNM, Edit, NestedSampler, Resample, SetInnerSteps, Stop
""" + "\n" + SHOW),
    md("""
The lower-level API works in the model range [-1, 1] (`ni.to_model_range` / `ni.from_model_range`
convert): the solver gets `y = A x` of the image in [-1, 1].
"""),
    code("""
prior = ni.DiffusionPrior.default()
x = ni.to_model_range(ni.bundled_image("astronaut", size=SIZE))
op = operators.make("inpaint-box", image_shape=tuple(x.shape[1:]), fraction=0.5)
y = op(x)

sampler = NestedSampler(DDNM(prior, op, y), outer_steps=OUTER, inner_steps=INNER)
print(sampler, "- outer timesteps", sampler.timesteps)
run = sampler.iterate(generator=torch.Generator().manual_seed(0))

shown = []                      # (title, image in [0, 1]) after each event


def keep(label, result):
    shown.append((f"{label}\\n{result.nfe} NFE, step {result.outer_step}",
                  ni.from_model_range(result.image)))
    return result


keep("A†y", next(run))          # the pseudo-inverse, before any evaluation
keep("outer step", next(run))
"""),
    md("""
## Resample an unwanted trajectory

Say we do not like what the first inner run put into the hole: `Resample()` redoes it from the same
outer state with fresh noise. It costs another inner run's evaluations.
"""),
    code("""
first = shown[-1][1]
resampled = keep("resampled", run.send(Resample()))
print("changed pixels:", int((first != ni.from_model_range(resampled.image)).any(1).sum()))
"""),
    md("""
## Change the inner budget

Give each remaining outer step twice the evaluations, and take two more outer steps.
"""),
    code("""
run.send(SetInnerSteps(2 * INNER))
before = run.latest.nfe
after = keep(f"{2 * INNER} inner steps", next(run))
print("this outer step cost", after.nfe - before, "evaluations")
keep("outer step", next(run))
keep("outer step", next(run))
"""),
    md("""
## Edit the current restoration

Paint a bright square into the hole (a stand-in for a user's brush stroke). The edit is projected
onto `{x : A x = y}` (observed pixels snap back to the observation) and becomes the x̂0 of the next
outer step, which refines it rather than discarding it. Edits stick best late in a run: the next
outer state is `√ᾱ·x̂0 + √(1−ᾱ)·ε̂`, so early on (ᾱ near 0) little of an edit survives.
"""),
    code("""
edited = run.latest.image.clone()
c, r = SIZE // 2, SIZE // 8
edited[:, :, c - r:c + r, c - r:c + r] = torch.tensor([1.0, 0.9, -0.6]).view(1, 3, 1, 1)
keep("edited", run.send(Edit(edited)))
keep("after the edit", next(run))
"""),
    md("""
## Stop early

Good enough: `Stop()` ends the run before its last outer step and answers with the latest
restoration; the loop is over.
"""),
    code("""
final = keep("stopped", run.send(Stop()))
assert next(run, None) is None          # nothing comes after Stop
print(f"stopped after outer step {final.outer_step} of {OUTER}, {final.nfe} evaluations")

pictures = [("clean", ni.from_model_range(x))] + shown
half = (len(pictures) + 1) // 2
rows = [pictures[:half], pictures[half:]]
show_grid([[img for _, img in row] for row in rows], [[t for t, _ in row] for row in rows], size=2.2)
"""),
    md("""
## The same in a loop

Most programs simply iterate, deciding after each result; `break` keeps the latest result
(`run.latest`). `iterate(budget_nfe=..., deadline_s=...)` also fits the run into a budget of
evaluations or seconds, re-planning the remaining steps so it never exceeds either.
"""),
    code("""
run = sampler.iterate(generator=torch.Generator().manual_seed(1), budget_nfe=OUTER * INNER // 2)
for result in run:
    print(f"outer step {result.outer_step}: {result.nfe} evaluations, {result.elapsed_s:.1f} s")
    if result.outer_step == 1:
        run.send(Resample())      # e.g. a quick check rejected the first proposal
    if result.outer_step == 3:
        break                     # good enough
print("kept: outer step", run.latest.outer_step)
"""),
]

# --------------------------------------------------------------------------------------------------
# 04 exact posterior
# --------------------------------------------------------------------------------------------------

EXACT = [
    md("""
# Against the exact posterior: a Gaussian-mixture prior

With a Gaussian-mixture prior everything is known in closed form: the denoiser `E[x0 | x_t]`, the
posterior `p(x0 | y)` of any linear-Gaussian observation, and even `p(x0 | x_t, y)`. So solvers can
be compared with the truth, not with a single reference image.

Nested diffusion is exact when its inner sampler is: if the inner run draws from `p(x0 | x_τ, y)`,
every outer step keeps the right distribution (`ExactPosterior` is such an inner sampler). With a
real solver inside, how close does it get, and how does that compare with the solver alone at the
same number of evaluations?
"""),
    code(SMALL + '''
N_SAMPLES = 200 if SMALL else 1000       # samples per solver and budget
BUDGETS = [4, 8, 16] if SMALL else [4, 8, 16, 32, 64]
INNER = 2 if SMALL else 4                # nested: K = budget / INNER outer steps
'''),
    code('''
import matplotlib.pyplot as plt
import torch

import operators
from nested_inverse import DDNM, DDRM, DPS, GaussianMixturePrior, NestedSampler, PiGDM
from nested_inverse.metrics import sliced_wasserstein
from nested_inverse.solvers import ExactPosterior
'''),
    md("""
## The prior and the problem

A mixture of three Gaussians on tiny 1×2×2 "images" (d = 4), and an inpainting operator that loses
the right column: the two missing pixels are what the posterior is about, so its 2-D projection onto
them shows everything.
"""),
    code('''
torch.manual_seed(0)
d, event = 4, (1, 2, 2)
# Pixels 0 and 2 (the left column) are observed, 1 and 3 are missing. The first two components
# agree on the observed column and differ on the missing one: the posterior is bimodal.
means = torch.tensor([[0.5, 0.6, -0.3, 0.5], [0.45, -0.5, -0.25, -0.4], [-0.6, 0.0, 0.6, 0.0]])
covs = torch.stack([0.04 * torch.eye(d) + 0.05 * torch.outer(v, v)
                    for v in torch.randn(3, d, dtype=torch.float64)])
prior = GaussianMixturePrior(torch.tensor([0.4, 0.3, 0.3]), means, covs, event_shape=event)

op = operators.make("inpaint-half", image_shape=event, side="right")
x_true = means[:1].reshape(1, *event).to(torch.float64)   # a typical image of the first component
y = op(x_true)                                    # noiseless: sigma_y = 0
posterior = prior.posterior(op, y)                # the exact p(x0 | y), another mixture
exact = posterior.sample(4 * N_SAMPLES, torch.Generator().manual_seed(1))
missing = (~op.range_mask().expand(1, *event)).flatten()   # the two unknown coordinates


def project(samples):
    return samples.reshape(samples.shape[0], -1)[:, missing].numpy()
'''),
    md("""
## Samples of each solver, nested and alone

Every solver is built from `(prior, operator, y, sigma_y)`; a batch of `N_SAMPLES` copies of `y`
gives that many independent samples in one run. `solver.sample(steps=N)` is the vanilla run;
`NestedSampler(solver, K, I).sample()` the nested one with the same `K·I = N` evaluations.
"""),
    code('''
SOLVERS = {"DDRM": DDRM, "DDNM": DDNM, "ΠGDM": PiGDM, "DPS": DPS, "exact inner": ExactPosterior}
y_batch = y.expand(N_SAMPLES, *y.shape[1:]).to(torch.float64)


def draw(name, budget, nested, seed=0):
    solver = SOLVERS[name](prior, op, y_batch)
    g = torch.Generator().manual_seed(seed)
    if nested:
        return NestedSampler(solver, budget // INNER, INNER).sample(g)
    return solver.sample(steps=budget, generator=g)


budget = BUDGETS[-1]
fig, axes = plt.subplots(2, len(SOLVERS), figsize=(2.6 * len(SOLVERS), 5.2), sharex=True,
                         sharey=True)
ref = project(exact[:N_SAMPLES])
for j, name in enumerate(SOLVERS):
    for i, nested in enumerate((False, True)):
        ax = axes[i][j]
        ax.scatter(ref[:, 0], ref[:, 1], s=2, c="lightgray", label="exact posterior")
        got = project(draw(name, budget, nested))
        ax.scatter(got[:, 0], got[:, 1], s=2, c="C1" if nested else "C0", label=name)
        ax.set_title(f"{'nested' if nested else 'vanilla'} {name}, {budget} NFE", fontsize=8)
axes[0][0].legend(fontsize=6, markerscale=3)
fig.tight_layout()
plt.show()
'''),
    md("""
## Sliced Wasserstein distance against evaluations

`sliced_wasserstein(a, b)` compares two sample sets through random 1-D projections. The dashed line
is the distance between two independent exact sample sets of the same size: the floor that sampling
noise alone gives. The nested sampler with the exact inner sampler must sit on it at every budget.

With an approximate inner solver nothing guarantees that: each inner run is short (I evaluations
from the outer state), and its errors feed the next outer step. Whether nested comes out closer to
the posterior than the solver alone at the same budget depends on the solver and on I; this notebook
shows it for one small problem, and `benchmarks/RESULTS.md` records measured numbers.
"""),
    code('''
g = torch.Generator().manual_seed(0)
floor = sliced_wasserstein(exact[:N_SAMPLES], exact[N_SAMPLES:], generator=g)
distances = {}
for name in SOLVERS:
    for nested in (False, True):
        distances[name, nested] = [
            sliced_wasserstein(draw(name, n, nested), exact, generator=torch.Generator().manual_seed(0))
            for n in BUDGETS]

fig, axes = plt.subplots(1, len(SOLVERS), figsize=(2.8 * len(SOLVERS), 2.8), sharey=True)
for ax, name in zip(axes, SOLVERS):
    ax.plot(BUDGETS, distances[name, False], "o-", label="vanilla")
    ax.plot(BUDGETS, distances[name, True], "s-", label=f"nested (I = {INNER})")
    ax.axhline(floor, ls="--", c="gray", label="exact vs exact")
    ax.set(xscale="log", yscale="log", title=name, xlabel="evaluations")
    ax.set_xticks(BUDGETS, [str(n) for n in BUDGETS])
    ax.xaxis.set_minor_locator(plt.NullLocator())
axes[0].set_ylabel("sliced Wasserstein to p(x0 | y)")
axes[0].legend(fontsize=7)
fig.tight_layout()
plt.show()
for (name, nested), values in distances.items():
    print(f"{'nested' if nested else 'vanilla':8s} {name:12s}", " ".join(f"{v:.3f}" for v in values))
'''),
    code('''
# Nested diffusion with an exact inner sampler stays exact (up to sampling noise).
assert max(distances["exact inner", True]) < 3 * floor + 0.02
'''),
]


NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_custom_operator.ipynb": CUSTOM,
    "03_human_guidance.ipynb": GUIDANCE,
    "04_exact_posterior.ipynb": EXACT,
}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        for i, cell in enumerate(cells):  # stable ids: rebuilding changes only what was edited
            cell["id"] = f"cell-{i:02d}"
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        })
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
