#!/usr/bin/env python
r"""Side by side with deepinv (issue 4): DDRM and DPS from deepinv and from nested_inverse on the
same prior network, operator, observation y and number of network evaluations.

For each held-out image (``data/images``, centre crops) and task (box inpainting, 4× box
super-resolution) the script builds one operator and one ``y`` with nested_inverse, hands the same
``y`` (mapped to deepinv's [0, 1] scale) and the same operator to deepinv, runs every solver on a
batch of seeds, and prints image, task, method, library, NFE, PSNR and wall time, and the wall time
per network evaluation relative to one bare evaluation of the network at the same batch size.

How the two sides are matched:

- Prior: the bundled ``natural-patches-64`` (``DiffusionPrior.default()``, ε-prediction, linear
  betas 1e-4…0.02, T = 1000, x̂0 clipped to [-1, 1]). deepinv gets it as a denoiser
  ``D(x, σ)`` on [0, 1] images with ``x = x0 + σ·n``; with ``x_model = 2x − 1`` that is the VP state
  ``x_t = √ᾱ_t·x_model`` at the timestep whose ``√((1−ᾱ_t)/ᾱ_t)`` is nearest to ``2σ`` (the mapping
  deepinv's own ``DiffUNet`` uses). Both sides call the same ``DiffusionPrior.predict``.
- Noise levels: deepinv's DDRM gets ``sigmas = ½√((1−ᾱ_t)/ᾱ_t)`` at exactly the timesteps our
  solvers evaluate (``spaced_timesteps(T−1, steps)``), so it starts at the schedule's largest level
  (≈ 79 on the [0, 1] scale), not at 1. deepinv's DPS runs its VP SDE (β from 0.1 to 20, the
  continuous form of the same linear betas) on times chosen so that its ᾱ(t) equals the discrete
  ᾱ at those same timesteps; with its DDPM solver and no final extra denoising that is ``steps``
  network evaluations.
- deepinv's DDRM draws its noise as ``randn / √2`` while telling the denoiser the level ``σ``. The
  row ``deepinv σ√2`` feeds deepinv's DDRM a denoiser calibrated to the noise it actually draws
  (``√((1−ᾱ_t)/ᾱ_t) = √2·σ``, with ``sigmas`` scaled by 1/√2 so the timesteps stay the same); the
  row ``deepinv`` is the plain 2σ convention.
- Network evaluations are counted by a hook on the UNet for both sides; evaluations recorded for
  backpropagation (DPS's vector–Jacobian products) are counted separately.
- DPS guidance: the two libraries scale it differently (ours: a fixed step ζ on ``‖y − A x̂0‖``
  in the model range, as in the paper; deepinv: ``weight`` on the [0, 1] residual norm, further
  scaled per step by its SDE's noise levels), so neither default means the other's. ``--tune``
  sweeps both on a crop that the benchmark crops do not overlap (coffee, centred at (H/4, W/4));
  the recorded run uses the best of each sweep (see benchmarks/RESULTS.md).
- Threads: ``torch.set_num_threads(--threads)`` (default 1) for both sides.

deepinv is an optional dependency installed only for this benchmark, in its own environment; the
package and its tests never import it. Without deepinv the script prints how to install it and
exits 0.

Usage:
    /work/venvs/deepinv/bin/python benchmarks/peers.py --dps-weight 1000 --dps-zeta inpaint=3 sr4=10
    /work/venvs/deepinv/bin/python benchmarks/peers.py --tune          # the DPS sweep
    /work/venvs/deepinv/bin/python benchmarks/peers.py --size 128 --seeds 3 --tasks inpaint --no-dps
"""

from __future__ import annotations

import argparse
import importlib
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

INSTALL = """\
deepinv is not importable here; benchmarks/peers.py compares against it and needs it installed in
its own virtual environment (never in the project's):

    python -m venv /work/venvs/deepinv
    /work/venvs/deepinv/bin/pip install torch==2.14.1 torchvision==0.29.1
    /work/venvs/deepinv/bin/pip install deepinv
    /work/venvs/deepinv/bin/pip install diffusers kornia pillow tqdm safetensors scipy
    /work/venvs/deepinv/bin/pip install --no-deps -e {repo}

then run:

    /work/venvs/deepinv/bin/python {repo}/benchmarks/peers.py
"""

#: task → registered operator.
OPERATORS = {"inpaint": "inpaint-box", "sr4": "sr4", "deblur-gauss": "blur-gauss",
             "deblur-motion": "blur-motion"}
TASKS = tuple(OPERATORS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64, help="centre-crop size in pixels (default 64)")
    p.add_argument("--images", nargs="+", default=["astronaut", "coffee", "chelsea"])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    p.add_argument("--seeds", type=int, default=2,
                   help="samples per image, run as one batch with one generator each (default 2)")
    p.add_argument("--ddrm-steps", type=int, default=20, help="network evaluations for DDRM (20)")
    p.add_argument("--dps-steps", type=int, default=50, help="network evaluations for DPS (50)")
    p.add_argument("--no-dps", action="store_true", help="skip DPS (the slow part)")
    p.add_argument("--no-ddrm", action="store_true", help="skip DDRM")
    p.add_argument("--diffpir-steps", type=int, nargs="*", default=[],
                   help="also DiffPIR from both libraries at these evaluation counts")
    p.add_argument("--dps-weight", nargs="+", default=["1.0"], metavar="[TASK=]W",
                   help="deepinv DPS `weight`, one value or per task (inpaint=1000 sr4=1000); "
                        "default 1.0, deepinv's own")
    p.add_argument("--dps-zeta", nargs="+", default=None, metavar="[TASK=]Z",
                   help="our DPS `zeta`, one value or per task; default: the solver's own")
    p.add_argument("--sigma-y", type=float, default=0.0,
                   help="observation noise std on the [0, 1] scale (default 0: noiseless)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for both sides (1)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each solver this many times, in turns, and report the median wall "
                        "time (default 1)")
    p.add_argument("--tune", action="store_true",
                   help="instead of the table, sweep the DPS guidance strengths of both libraries "
                        "on a tuning crop the benchmark crops do not overlap")
    p.add_argument("--tune-weights", nargs="+", type=float, default=[10.0, 30.0, 100.0, 300.0])
    p.add_argument("--tune-zetas", nargs="+", type=float, default=[0.3, 1.0, 3.0, 10.0])
    args = p.parse_args(argv)
    args.dps_weight = per_task(p, "--dps-weight", args.dps_weight)
    args.dps_zeta = per_task(p, "--dps-zeta", args.dps_zeta)
    return args


def per_task(parser, flag: str, values: list[str] | None) -> dict[str, float | None]:
    """``["3"]`` → the same value for every task; ``["inpaint=3", "sr4=10"]`` → per task."""
    out: dict[str, float | None] = {task: None for task in TASKS}
    for v in values or []:
        task, _, num = v.rpartition("=")
        try:
            value = float(num)
        except ValueError:
            parser.error(f"{flag}: {v!r} is not a number or TASK=number")
        if task and task not in TASKS:
            parser.error(f"{flag}: unknown task {task!r} (tasks: {', '.join(TASKS)})")
        for t in ([task] if task else TASKS):
            out[t] = value
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        import deepinv as dinv
    except ImportError:
        print(INSTALL.format(repo=REPO))
        return 0

    # The benchmark's venv may hold deepinv only: import this checkout's packages.
    sys.path.insert(0, str(REPO))
    import torch

    import operators
    from nested_inverse import DiffusionPrior, bundled_image, from_model_range, to_model_range
    from nested_inverse.timesteps import spaced_timesteps

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bench = Bench(args, dinv, torch, operators, DiffusionPrior, spaced_timesteps)
    bench.describe()
    if args.tune:
        bench.tune(bundled_image, to_model_range, from_model_range)
        return 0

    rows: list[dict] = []
    print_header()
    group = 0
    for name in args.images:
        x01 = bundled_image(name, args.size).to(torch.float32)
        for task in args.tasks:
            case = bench.case(x01, task, to_model_range, from_model_range)
            emit = Emitter(rows, name, task, case.x01, bare_time(torch, bench.prior, args.seeds, args.size))
            with torch.no_grad():
                emit("A†y", "-", from_model_range(case.op.pinv(case.y)), 0, 0, 0.0)
            ddrm_runs = [] if args.no_ddrm else [
                lambda: bench.ours_ddrm(case, from_model_range),
                lambda: bench.deepinv_ddrm(case, 2.0, "deepinv"),
                lambda: bench.deepinv_ddrm(case, math.sqrt(2.0), "deepinv σ√2")]
            diffpir_runs = [run for n in args.diffpir_steps for run in (
                lambda n=n: bench.ours_diffpir(case, n, from_model_range),
                lambda n=n: bench.deepinv_diffpir(case, n))]
            dps_runs = []
            if not args.no_dps:
                if bench.ours["DPS"] is not None:
                    dps_runs.append(lambda: bench.ours_dps(case, args.dps_zeta[task],
                                                           from_model_range))
                dps_runs.append(lambda: bench.deepinv_dps(case, args.dps_weight[task]))
            # Alternate who goes first, so that a drift in the shared machine's load does not
            # favour one side.
            if group % 2:
                ddrm_runs = ddrm_runs[1:] + ddrm_runs[:1]
                dps_runs = dps_runs[::-1]
                diffpir_runs = [r for pair in zip(diffpir_runs[1::2], diffpir_runs[::2])
                                for r in pair]
            for runs in (ddrm_runs, dps_runs, diffpir_runs):
                # --repeat: the runs take turns, and each keeps its median wall time (seeded
                # runs give the same samples every time).
                results = [[] for _ in runs]
                for _ in range(args.repeat):
                    for i, run in enumerate(runs):
                        results[i].append(run())
                for res in results:
                    *head, wall = res[0]
                    emit(*head, statistics.median(r[-1] for r in res))
            group += 1

    print()
    summarize(rows)
    return 0


class Case:
    """One image batch and task: our operator and y, deepinv's physics and the same y on [0, 1]."""

    def __init__(self, **kw) -> None:
        self.__dict__.update(kw)


class Bench:
    """The shared prior (with a counter on its network) and the four solver runs."""

    def __init__(self, args, dinv, torch, operators, DiffusionPrior, spaced_timesteps) -> None:
        self.args, self.dinv, self.torch, self.operators = args, dinv, torch, operators
        self.prior = DiffusionPrior.default()
        self.counter = NetworkCounter(torch, self.prior.unet)
        self.abar = self.prior.alphas_cumprod.to(torch.float64)
        T = self.abar.numel()
        self.levels = ((1 - self.abar) / self.abar).sqrt()  # VE noise level, model range
        self.ours = {name: find_solver(name) for name in ("DDRM", "DPS", "DDNM", "DiffPIR")}
        if self.ours["DDRM"] is not None:
            self.ddrm_cls, self.ddrm_name = self.ours["DDRM"], "DDRM"
        else:
            self.ddrm_cls, self.ddrm_name = self.ours["DDNM"], "DDNM*"
        self.ddrm_t = spaced_timesteps(T - 1, args.ddrm_steps)
        self.dps_t = spaced_timesteps(T - 1, args.dps_steps)

    def describe(self) -> None:
        a, torch, dinv = self.args, self.torch, self.dinv
        print(f"deepinv {dinv.__version__}, torch {torch.__version__}, threads "
              f"{torch.get_num_threads()}, {a.size}x{a.size} crops, {a.seeds} seeds per image (one "
              f"batch), sigma_y {a.sigma_y}, wall time: median of {a.repeat} run(s)")
        print(f"prior natural-patches-64: eps-prediction, linear betas, T={self.abar.numel()}, "
              f"clip_x0={self.prior.clip_x0}")
        print(f"DDRM: {len(self.ddrm_t)} NFE at t = {self.ddrm_t[:3]}…{self.ddrm_t[-2:]}, eta 0.85, "
              f"eta_b 1; deepinv sigmas start at {self.levels[self.ddrm_t[0]].item() / 2:.1f} "
              "(the largest VP level, [0, 1] scale)")
        if self.ddrm_name != "DDRM":
            print("nested_inverse has no DDRM yet: DDNM (eta 0.85) stands in on our side (DDNM*)")
        if not a.no_dps or a.tune:
            weight = ", ".join(f"{t} {a.dps_weight[t]:g}" for t in a.tasks)
            zeta = ", ".join(f"{t} {a.dps_zeta[t]:g}" if a.dps_zeta[t] is not None else
                             f"{t} default" for t in a.tasks)
            print(f"DPS: {len(self.dps_t)} NFE, each with one VJP; deepinv (guidance 'norm', DDPM "
                  f"solver) weight {weight}; ours (eta 1) zeta {zeta}"
                  + ("" if self.ours["DPS"] else
                     " — nested_inverse has no DPS yet: our DPS rows are skipped"))
        print("deepinv's DDRM and DPS on sr4 get a deepinv.physics.DecomposablePhysics built from our "
              "operator's exact SVD (deepinv's own Downsampling is not decomposable)")
        print()

    def case(self, x01, task, to_model_range, from_model_range) -> Case:
        torch, a = self.torch, self.args
        B, shape = a.seeds, tuple(x01.shape[1:])
        x = to_model_range(x01).expand(B, -1, -1, -1).contiguous()
        x01b = from_model_range(x)
        op = self.operators.make(OPERATORS[task], image_shape=shape)
        y = op(x)
        if a.sigma_y > 0:
            g = [torch.Generator().manual_seed(10_000 + i) for i in range(B)]
            y = self.operators.GaussianNoise(a.sigma_y)(y, g)
        # The same y on deepinv's [0, 1] scale: A x01 = (A x + A 1)/2 for a linear A.
        y01 = (y + op(torch.ones_like(x))) / 2
        physics = deepinv_physics(self.dinv, torch, op, task, shape, a.sigma_y)
        with torch.no_grad():
            gap = (physics.A(x01b) - op(x01b)).abs().max().item()
        if gap > 1e-5:
            raise RuntimeError(f"deepinv's physics and our operator disagree on {task} by {gap:.2e}")
        return Case(x=x, x01=x01b, op=op, y=y, y01=y01, physics=physics, task=task)

    def ours_ddrm(self, case, from_model_range):
        torch, a, c = self.torch, self.args, self.counter
        g = generators(torch, a.seeds, 1)
        extra = {"eta_b": 1.0} if self.ddrm_name == "DDRM" else {}
        c.reset()
        t0 = time.perf_counter()
        solver = self.ddrm_cls(self.prior, case.op, case.y, sigma_y=a.sigma_y, eta=0.85, **extra)
        out = solver.sample(steps=a.ddrm_steps, generator=g)
        wall = time.perf_counter() - t0
        return self.ddrm_name, "nested_inverse", from_model_range(out), c.calls, c.grad_calls, wall

    def deepinv_ddrm(self, case, ratio: float, label: str):
        torch, c = self.torch, self.counter
        denoiser = VPDenoiser(torch, self.prior, ratio)
        sigmas = [self.levels[t].item() / ratio for t in self.ddrm_t]
        c.reset()
        t0 = time.perf_counter()
        model = self.dinv.sampling.DDRM(denoiser, sigmas=sigmas, eta=0.85, etab=1.0)
        out = model(case.y01, case.physics, seed=1)
        wall = time.perf_counter() - t0
        return "DDRM", label, out, c.calls, c.grad_calls, wall

    def ours_diffpir(self, case, steps: int, from_model_range):
        torch, a, c = self.torch, self.args, self.counter
        g = generators(torch, a.seeds, 3)
        c.reset()
        t0 = time.perf_counter()
        solver = self.ours["DiffPIR"](self.prior, case.op, case.y, sigma_y=a.sigma_y,
                                      lambda_=DIFFPIR_LAMBDA, zeta=DIFFPIR_ZETA)
        out = solver.sample(steps=steps, generator=g)
        wall = time.perf_counter() - t0
        return "DiffPIR", "nested_inverse", from_model_range(out), c.calls, c.grad_calls, wall

    def deepinv_diffpir(self, case, steps: int):
        """deepinv's DiffPIR on the same denoiser. Its ρ_t = λ·σ²/σ̄_t² uses σ on the [0, 1]
        scale and a proximal step on [0, 1] images, ``argmin ½‖A x − y‖² + ρ_t‖x − x0‖²``; in the
        model range that is our ``‖A x − y‖² + ρ'‖x − x0‖²`` with ``ρ' = 2ρ_t``, where ours uses
        ``λ·(2σ_y)²/σ̄_t² = 4λσ²/σ̄_t²``: deepinv gets ``2λ`` so both weigh the data alike. Its
        noise level comes from ``physics.noise_model.sigma``, floored here at our
        ``sigma_floor`` (1e-3) for noiseless ``y`` (at 0 its proximal step divides by zero)."""
        torch, a, c, dinv = self.torch, self.args, self.counter, self.dinv
        denoiser = VPDenoiser(torch, self.prior, 2.0)
        physics = deepinv_physics(dinv, torch, case.op, case.task, tuple(case.x01.shape[1:]),
                                  max(a.sigma_y, 1e-3))
        c.reset()
        t0 = time.perf_counter()
        model = dinv.sampling.DiffPIR(denoiser, dinv.optim.data_fidelity.L2(), sigma=max(a.sigma_y, 1e-3),
                                      max_iter=steps, zeta=DIFFPIR_ZETA, lambda_=2 * DIFFPIR_LAMBDA)
        torch.manual_seed(3)
        out = model(case.y01, physics)
        wall = time.perf_counter() - t0
        return "DiffPIR", "deepinv λ×2", out.clamp(0, 1), c.calls, c.grad_calls, wall

    def ours_dps(self, case, zeta, from_model_range):
        torch, a, c = self.torch, self.args, self.counter
        g = generators(torch, a.seeds, 2)
        kw = {} if zeta is None else {"zeta": zeta}
        c.reset()
        t0 = time.perf_counter()
        solver = self.ours["DPS"](self.prior, case.op, case.y, sigma_y=a.sigma_y, **kw)
        out = solver.sample(steps=a.dps_steps, generator=g)
        wall = time.perf_counter() - t0
        return "DPS", "nested_inverse", from_model_range(out), c.calls, c.grad_calls, wall

    def deepinv_dps(self, case, weight):
        torch, c = self.torch, self.counter
        denoiser = VPDenoiser(torch, self.prior, 2.0)
        times = vp_times(torch, self.abar, self.dps_t)
        c.reset()
        t0 = time.perf_counter()
        model = self.dinv.sampling.DPS(denoiser, num_steps=len(times), weight=weight,
                                       rng=torch.Generator().manual_seed(2))
        out = model(case.y01, case.physics, x_init=tuple(case.x.shape), seed=2, timesteps=times)
        wall = time.perf_counter() - t0
        return "DPS", "deepinv", out.to(torch.float32), c.calls, c.grad_calls, wall

    def tune(self, bundled_image, to_model_range, from_model_range) -> None:
        """DPS guidance strengths for both libraries on a tuning crop that the benchmark crops do
        not overlap: coffee, the window centred at (H/4, W/4)."""
        from nested_inverse import images_dir, load_image

        torch, a = self.torch, self.args
        full = load_image(images_dir() / "coffee.png").to(torch.float32)
        H, W = full.shape[-2:]
        top, left = H // 4 - a.size // 2, W // 4 - a.size // 2
        x01 = full[..., top:top + a.size, left:left + a.size].contiguous()
        print(f"Tuning DPS on coffee[{top}:{top + a.size}, {left}:{left + a.size}] "
              f"({a.seeds} seeds, {len(self.dps_t)} NFE): mean PSNR dB")
        for task in a.tasks:
            case = self.case(x01, task, to_model_range, from_model_range)
            runs = [("deepinv weight", w, lambda w=w: self.deepinv_dps(case, w))
                    for w in a.tune_weights]
            if self.ours["DPS"] is not None:
                runs += [("nested_inverse zeta", z, lambda z=z: self.ours_dps(case, z, from_model_range))
                         for z in a.tune_zetas]
            for label, value, run in runs:
                _, _, out, nfe, vjp, wall = run()
                print(f"  {task:<8} {label:<20} {value:>8g}: {statistics.fmean(psnr(out, case.x01)):6.2f}"
                      f"   ({nfe} NFE, {vjp} VJP, {wall:.0f} s)", flush=True)


def print_header() -> None:
    header = (f"{'image':<10} {'task':<8} {'method':<6} {'library':<16} {'NFE':>4} {'VJP':>4} "
              f"{'PSNR dB':>14} {'wall s':>8} {'per NFE':>8}")
    print(header)
    print("-" * len(header))


# ---------------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------------


def find_solver(name: str):
    """Our solver class ``name`` if it exists yet (exported, or in ``nested_inverse.solvers``)."""
    import nested_inverse

    cls = getattr(nested_inverse, name, None)
    if cls is None:
        try:
            cls = getattr(importlib.import_module(f"nested_inverse.solvers.{name.lower()}"), name)
        except (ImportError, AttributeError):
            cls = None
    return cls


class NetworkCounter:
    """Counts calls of the UNet (one per batch: per-image NFE) and those recorded for autograd."""

    def __init__(self, torch, unet) -> None:
        self._torch = torch
        self.calls = 0
        self.grad_calls = 0
        unet.register_forward_pre_hook(self._hook)

    def _hook(self, module, inputs) -> None:
        self.calls += 1
        if self._torch.is_grad_enabled() and any(
            isinstance(a, self._torch.Tensor) and a.requires_grad for a in inputs
        ):
            self.grad_calls += 1

    def reset(self) -> None:
        self.calls = self.grad_calls = 0


def VPDenoiser(torch, prior, ratio: float):
    r"""deepinv's denoiser convention, ``D(x, σ) ≈ E[x0 | x = x0 + σ·n]`` on [0, 1] images, from our
    VP ε-prior: the timestep with ``√((1−ᾱ_t)/ᾱ_t)`` nearest (in log) to ``ratio·σ``, input
    ``x_t = √ᾱ_t·(2x − 1)``, output ``(x̂0 + 1)/2``. ``ratio = 2`` is the [0, 1] → [-1, 1] scaling
    (as deepinv's ``DiffUNet``)."""

    class _VPDenoiser(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.prior = prior
            self.abar = prior.alphas_cumprod.to(torch.float64)
            self.log_levels = (((1 - self.abar) / self.abar).sqrt()).log()

        def forward(self, x, sigma, *args, **kwargs):
            b = x.shape[0]
            s = torch.as_tensor(sigma, dtype=torch.float64).detach().cpu().flatten()
            s = s.expand(b) if s.numel() == 1 else s
            target = (ratio * s).clamp_min(1e-12).log()
            t = (self.log_levels[None, :] - target[:, None]).abs().argmin(dim=1)
            a = self.abar[t].to(x.device).view(-1, 1, 1, 1)
            x_t = (a.sqrt() * (2 * x.to(torch.float64) - 1)).to(x.dtype)
            x0, _ = self.prior.predict(x_t, t)
            return (x0 + 1) / 2

    return _VPDenoiser()


def vp_times(torch, abar, timesteps: list[int]):
    r"""Times of deepinv's VP SDE (``β(t) = 0.1 + 19.9·t``, ``ᾱ(t) = exp(−0.1·t − 9.95·t²)``) at which
    ``ᾱ(t)`` equals the discrete ``ᾱ`` at ``timesteps``, then 0 (the clean end)."""
    a = abar[timesteps]
    c = -torch.log(a)  # 9.95 t² + 0.1 t − c = 0
    t = (-0.1 + torch.sqrt(0.01 + 4 * 9.95 * c)) / (2 * 9.95)
    return torch.cat([t, torch.zeros(1, dtype=t.dtype)])


def deepinv_physics(dinv, torch, op, task: str, shape, sigma_y: float):
    """deepinv's forward model for our operator: its own ``Inpainting`` with the same mask, or a
    ``DecomposablePhysics`` from our operator's exact SVD (box 4× SR)."""
    noise = dinv.physics.GaussianNoise(sigma=sigma_y)
    if task == "inpaint":  # deepinv's own physics; the other tasks through our exact SVD
        mask = op.mask[0].expand(shape[0], -1, -1).to(torch.float32)  # [C, H, W]
        return dinv.physics.Inpainting(img_size=shape, mask=mask, noise_model=noise)
    svd = op.svd()
    return dinv.physics.DecomposablePhysics(
        U=svd.U, U_adjoint=svd.Ut, V=svd.V, V_adjoint=svd.Vt,
        mask=svd.singulars.to(torch.float32), noise_model=noise,
    )


#: DiffPIR's paper settings (λ, ζ) for SR and deblurring (arXiv 2305.08995, Sec. 4).
DIFFPIR_LAMBDA, DIFFPIR_ZETA = 7.0, 0.3


def generators(torch, n: int, offset: int):
    return [torch.Generator().manual_seed(1000 * offset + i) for i in range(n)]


def bare_time(torch, prior, batch: int, size: int, reps: int = 3) -> float:
    """Median wall time of one bare ``predict`` on a ``[batch, 3, size, size]`` input (no grad)."""
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        prior.predict(x, 500)
        for _ in range(reps):
            t0 = time.perf_counter()
            prior.predict(x, 500)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def psnr(x01, ref01) -> list[float]:
    """PSNR in dB per image, both clamped to [0, 1], data range 1."""
    mse = (x01.clamp(0, 1).double() - ref01.clamp(0, 1).double()).square().flatten(1).mean(1)
    return [10 * math.log10(1 / max(m, 1e-20)) for m in mse.tolist()]


class Emitter:
    def __init__(self, rows, image, task, ref01, t_bare) -> None:
        self.rows, self.image, self.task, self.ref01, self.t_bare = rows, image, task, ref01, t_bare

    def __call__(self, method, library, out01, nfe, vjp, wall) -> None:
        vals = psnr(out01, self.ref01)
        mean = statistics.fmean(vals)
        sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
        rel = wall / (nfe * self.t_bare) if nfe else float("nan")
        self.rows.append(dict(image=self.image, task=self.task, method=method, library=library,
                              nfe=nfe, vjp=vjp, psnr=mean, sd=sd, wall=wall, rel=rel))
        rel_s = f"{rel:.2f}x" if nfe else "-"
        wall_s = f"{wall:.1f}" if nfe else "-"
        print(f"{self.image:<10} {self.task:<8} {method:<6} {library:<16} {nfe:>4} {vjp:>4} "
              f"{mean:>7.2f} ± {sd:<4.2f} {wall_s:>8} {rel_s:>8}", flush=True)


def summarize(rows: list[dict]) -> None:
    """Mean over images per task, method and library."""
    keys = []
    for r in rows:
        k = (r["task"], r["method"], r["library"], r["nfe"])
        if k not in keys:
            keys.append(k)
    print("Mean over images (PSNR dB, wall s, wall per NFE relative to one bare evaluation):")
    print(f"{'task':<13} {'method':<7} {'library':<16} {'NFE':>4} {'PSNR dB':>8} {'wall s':>8} "
          f"{'per NFE':>8}")
    for k in keys:
        sel = [r for r in rows if (r["task"], r["method"], r["library"], r["nfe"]) == k]
        nfe = sel[0]["nfe"]
        p = statistics.fmean(r["psnr"] for r in sel)
        if nfe:
            w = statistics.fmean(r["wall"] for r in sel)
            rel = statistics.fmean(r["rel"] for r in sel)
            print(f"{k[0]:<13} {k[1]:<7} {k[2]:<16} {nfe:>4} {p:>8.2f} {w:>8.1f} {rel:>7.2f}x")
        else:
            print(f"{k[0]:<13} {k[1]:<7} {k[2]:<16} {nfe:>4} {p:>8.2f} {'-':>8} {'-':>8}")


if __name__ == "__main__":
    sys.exit(main())
