r"""Nested diffusion: an outer DDIM whose denoiser is a whole inner solver, giving anytime results.

Outer timesteps ``τ_k = round((T−1)·(1 − k/K))``, ``k = 0 … K−1`` (999, 799, 599, 400, 200 for
``T = 1000, K = 5``). At ``τ_k`` the inner solver runs from the outer state ``x_τk`` down to the
clean image with ``I`` evaluations spread over ``[τ_k, 1]``; its output ``x̂0_k`` is

1. the restoration shown after outer step ``k``, and
2. the ``x̂0`` of one outer DDIM step to ``τ_{k+1}``:
   ``ε̂ = (x_τk − √ᾱ_τk·x̂0_k)/√(1−ᾱ_τk)``,
   ``x_τ{k+1} = √ᾱ'·x̂0_k + √(1−ᾱ'−σ²)·ε̂ + σ·z`` (σ from the outer η).

The last inner output is the final result; a full run costs ``K·I`` evaluations. If the inner
solver samples ``p(x0 | x_τ, y)`` exactly, the pair ``(x̂0_k, x_τ{k+1})`` has the exact joint law
for every outer η, so the final result is an exact posterior sample.

References:
    Elata, Kawar, Michaeli, Elad, "Nested Diffusion Processes for Anytime Image Generation",
    2023, arXiv 2305.19066.
    Song, Meng, Ermon, "Denoising Diffusion Implicit Models", ICLR 2021, arXiv 2010.02502.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

import torch
from torch import Tensor

from operators.random import Generators

from .anytime import AnytimeResult, AnytimeRun, StopCheck, StopOnly, run_to_end
from .planning import Allowance, keep_evenly, plan_budget
from .priors import Prior
from .solvers.base import Solver, ddim_step, unit_interval
from .solvers.ddim import DDIM

__all__ = ["NestedSampler", "outer_timesteps"]


def outer_timesteps(num_timesteps: int, outer_steps: int) -> list[int]:
    """``τ_k = round((T−1)·(1 − k/K))`` for ``k = 0 … K−1``, largest first, all distinct.

    No outer step sits at τ = 0 or 1: the last one is at ``(T−1)/K``, so every inner run still has
    noise left to remove.

    Example:
        >>> outer_timesteps(1000, 5)
        [999, 799, 599, 400, 200]
    """
    T, K = int(num_timesteps), int(outer_steps)
    if not 1 <= K <= T - 1:
        raise ValueError(f"`outer_steps` must lie in [1, {T - 1}] for a schedule of {T} "
                         f"timesteps, got {outer_steps}")
    return [int(math.floor((T - 1) * (1 - k / K) + 0.5)) for k in range(K)]


#: how an outer step re-noises the inner result (:class:`NestedSampler`'s ``outer_renoise``).
RENOISE = ("ddim", "fresh")


class NestedSampler:
    r"""Nested diffusion around any inner solver: a finished-looking result after every outer step.

    See the module docstring for the construction. Shapes follow the solver: images
    ``[B, C, H, W]`` in the model range [-1, 1].

    Args:
        solver: an inner solver (:class:`~nested_inverse.solvers.Solver`: DDRM, DDNM, ΠGDM, DPS,
            :class:`~nested_inverse.solvers.DDIM` for generation, or an exact posterior sampler).
        outer_steps: K ≥ 1 outer timesteps (at most T − 1).
        inner_steps: I ≥ 1 inner evaluations per outer step.
        outer_eta: η of the outer DDIM step, in [0, 1] (0 as in Elata et al.).
        outer_renoise: ``"ddim"`` (the outer DDIM step, keeping ``ε̂`` of ``x_τ``) or
            ``"fresh"``: DAPS's decoupled re-noising ``x_s = √ᾱ_s·x̂0 + √(1−ᾱ_s)·z``, the next
            outer state drawn from ``q(x_s | x̂0)`` and independent of ``x_τ`` given ``x̂0``
            (Zhang et al., 2025, arXiv 2407.01521); ``outer_eta`` is then unused.

    Budget and deadline (see :meth:`iterate`) never make it exceed what it was given.

    Example:
        >>> import torch, operators
        >>> from nested_inverse import GaussianMixturePrior, DDNM, NestedSampler
        >>> prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
        ...                              event_shape=(1, 2, 2))
        >>> op = operators.make("inpaint-half", image_shape=(1, 2, 2))
        >>> y = op(torch.ones(1, 1, 2, 2, dtype=torch.float64))
        >>> sampler = NestedSampler(DDNM(prior, op, y), outer_steps=3, inner_steps=2)
        >>> [(r.outer_step, r.nfe) for r in sampler.iterate(torch.Generator().manual_seed(0))]
        [(0, 0), (1, 2), (2, 4), (3, 6)]

    References:
        Elata, Kawar, Michaeli, Elad, "Nested Diffusion Processes for Anytime Image Generation",
        2023, arXiv 2305.19066.
    """

    def __init__(
        self, solver: Solver, outer_steps: int, inner_steps: int, outer_eta: float = 0.0,
        outer_renoise: str = "ddim",
    ) -> None:
        if not isinstance(solver, Solver):
            raise ValueError(f"`solver` must be a Solver, got {type(solver).__name__}")
        for name, value in (("outer_steps", outer_steps), ("inner_steps", inner_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
        outer_eta = unit_interval("outer_eta", outer_eta)
        if outer_renoise not in RENOISE:
            raise ValueError(f"`outer_renoise` must be one of {RENOISE}, got {outer_renoise!r}")
        self.outer_renoise = outer_renoise
        self.solver = solver
        self.outer_steps = outer_steps
        self.inner_steps = inner_steps
        self.outer_eta = outer_eta
        self.timesteps = outer_timesteps(solver.num_timesteps, outer_steps)

    @classmethod
    def unconditional(
        cls,
        prior: Prior,
        shape: Sequence[int],
        outer_steps: int,
        inner_steps: int,
        eta: float = 0.85,
        outer_eta: float = 0.0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> NestedSampler:
        """Nested DDIM generation from the prior alone (the seed paper's own use).

        ``shape`` is ``[B, C, H, W]``; ``eta`` is the inner DDIM η (0.85 as in Elata et al.).
        """
        return cls(DDIM(prior, shape, eta=eta, dtype=dtype, device=device), outer_steps,
                   inner_steps, outer_eta)

    @property
    def total_nfe(self) -> int:
        """``K·I``: the evaluations of a full run without interventions (an upper bound)."""
        return self.outer_steps * self.inner_steps

    def __repr__(self) -> str:
        renoise = "" if self.outer_renoise == "ddim" else f", outer_renoise={self.outer_renoise!r}"
        return (f"NestedSampler({type(self.solver).__name__}, outer_steps={self.outer_steps}, "
                f"inner_steps={self.inner_steps}, outer_eta={self.outer_eta}{renoise})")

    def sample(
        self,
        generator: Generators = None,
        budget_nfe: int | None = None,
        deadline_s: float | None = None,
        stop: StopCheck | None = None,
    ) -> Tensor:
        """The final restoration ``[B, C, H, W]`` (model range); arguments as for :meth:`iterate`."""
        return run_to_end(self.iterate(generator, budget_nfe, deadline_s, stop))[-1].image

    def iterate(
        self,
        generator: Generators = None,
        budget_nfe: int | None = None,
        deadline_s: float | None = None,
        stop: StopCheck | None = None,
    ) -> AnytimeRun:
        """Run, yielding :class:`AnytimeResult`: ``A†y`` at 0 evaluations, then one per outer step.

        Breaking out of the loop keeps the latest result (also ``run.latest``). Between results,
        ``run.send(command)`` applies :class:`~nested_inverse.guidance.Edit`,
        :class:`~nested_inverse.guidance.Resample`, :class:`~nested_inverse.guidance.SetInnerSteps`
        or :class:`~nested_inverse.guidance.Stop` and answers with the current (updated) result.
        At outer step 0 an ``Edit`` only replaces the image shown (the first outer step starts
        from the initial noise, not from an x̂0) and ``Resample`` is refused.

        Budget policy (``budget_nfe``, evaluations per image, ≥ 1): before each outer step the
        remaining evaluations are re-planned with :func:`~nested_inverse.planning.plan_budget` — shrink the remaining inner
        runs evenly, down to ``MIN_INNER_STEPS``, then drop outer steps (evenly, always keeping the
        smallest outer timestep). The total never exceeds the budget; a budget below one inner run
        gives one shorter run (vanilla from noise when below ``MIN_INNER_STEPS`` per step).
        ``Resample`` runs are charged to the budget and refused (``RuntimeError``) when nothing is
        left.

        Deadline policy (``deadline_s``, wall-clock seconds from the first ``next``, the caller's
        own time between results included): seconds per evaluation are measured as the run goes
        (×``DEADLINE_MARGIN``); before each outer step the evaluations that fit the time left
        cap the budget above. Inside an inner run the clock is checked after every evaluation;
        when finishing it at the rate measured so far would overshoot (the first run has no
        estimate beforehand), the run is
        abandoned and, if at least one evaluation still fits, a shorter final inner run is made
        from the same outer state. No result is ever delivered after the deadline; the run ends at
        most one evaluation after it.

        Stop check (``stop``, e.g. ``threading.Event().is_set``): asked before every network
        evaluation; once true, the inner run in progress is abandoned and the run ends, the latest
        delivered result standing, as after :class:`~nested_inverse.guidance.Stop` (a run stopped
        after ``k`` evaluations has made exactly ``k``).
        """
        session = _Session(self, generator, Allowance(budget_nfe, deadline_s), stop)
        return AnytimeRun(self._outer_loop(session), session)

    def _outer_loop(self, run: _Session) -> Iterator[AnytimeResult]:
        """The outer diffusion (Elata et al.): at each τ_k an inner run gives x̂0_k, shown, then
        one outer DDIM step to τ_{k+1}. Commands act on ``run`` between the yields."""
        solver, generator = self.solver, run.generator
        run.allowance.start()
        tau = solver.num_timesteps - 1
        x = solver.initial_state(tau, generator)
        pending = list(self.timesteps)  # outer timesteps still to run; x sits at pending[0]
        yield AnytimeResult(solver.initial_estimate.clone(), 0, 0, run.allowance.elapsed_s, x, tau)
        while pending:
            shown = run.latest  # after any Edit or Resample sent since it was delivered
            keep, steps = plan_budget(run.allowance.remaining(), len(pending), run.inner_steps)
            if keep == 0:
                return
            pending = keep_evenly(pending, keep, first_fixed=shown.outer_step == 0)
            if shown.outer_step > 0:
                x = self._outer_step(x, tau, shown.image, pending[0], generator)
            tau = pending.pop(0)
            x0 = run.inner(x, tau, steps)
            if x0 is None and not run.stopped:
                # abandoned for the deadline: one shorter, last run from the same state
                steps = int(min(run.allowance.remaining(), steps - 1))
                x0 = run.inner(x, tau, steps) if steps >= 1 else None
                pending = []
            if x0 is None or run.allowance.expired():
                return
            run.last_inner = steps
            yield AnytimeResult(x0, shown.outer_step + 1, run.allowance.nfe,
                                run.allowance.elapsed_s, x, tau)

    def _outer_step(
        self, x: Tensor, tau: int, x0: Tensor, target: int, generator: Generators
    ) -> Tensor:
        """Outer step ``x_τ → x_target`` with the inner result as ``x̂0`` (DDIM, or fresh noise)."""
        a_t, a_s = self.solver.alpha(tau), self.solver.alpha(target)
        x0 = x0.to(dtype=x.dtype, device=x.device)
        if self.outer_renoise == "fresh":
            return math.sqrt(a_s) * x0 + math.sqrt(1 - a_s) * self.solver.noise(generator)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        noise = self.solver.noise(generator) if self.outer_eta > 0 else None
        return ddim_step(x0, eps, a_t, a_s, self.outer_eta, noise)


class _Session(StopOnly):
    """One nested run as the guidance commands see it: the latest result, the inner steps to
    use, the ledger, and the inner runs (also for ``Resample``)."""

    def __init__(self, sampler: NestedSampler, generator: Generators, allowance: Allowance,
                 stop: StopCheck | None = None) -> None:
        super().__init__(stop)
        self.sampler = sampler
        self.generator = generator
        self.allowance = allowance
        self.inner_steps = sampler.inner_steps
        self.last_inner = sampler.inner_steps

    def inner(self, x: Tensor, tau: int, steps: int) -> Tensor | None:
        """One inner run from ``(x, τ)``: its x̂0, or None when abandoned for the deadline or a
        stop (checked before each evaluation after the first: the first was asked for by the
        caller's ``next`` or command, which looked at the stop check itself)."""
        solver = self.sampler.solver
        timesteps = solver.timesteps(tau, steps)
        total = sum(solver.evaluations(t) for t in timesteps)
        started = time.perf_counter()
        state, used = None, 0
        try:
            for state in solver.iterate(x_t=x, timesteps=timesteps, generator=self.generator):
                used = state.nfe
                if state.t >= 0 and (self.stopped or self.allowance.overshoots(started, used,
                                                                                 total)):
                    return None
            return state.x_t
        finally:
            self.allowance.charge(used, time.perf_counter() - started)

    def edit(self, image: Tensor) -> AnytimeResult:
        ref = self.sampler.solver.initial_estimate
        if tuple(image.shape) != tuple(ref.shape):
            raise ValueError(f"`Edit.image` has shape {tuple(image.shape)}; the restoration has "
                             f"shape {tuple(ref.shape)} (model range [-1, 1])")
        if not torch.isfinite(image).all():
            raise ValueError("`Edit.image` contains NaN or inf")
        x = self.sampler.solver.project(image.detach().to(dtype=ref.dtype, device=ref.device))
        self.latest = replace(self.latest, image=x)
        return self.latest

    def resample(self) -> AnytimeResult:
        shown = self.latest
        if shown.outer_step == 0:
            raise RuntimeError("nothing to resample before the first outer step")
        keep, steps = plan_budget(self.allowance.remaining(), 1, self.last_inner)
        if keep == 0:
            a = self.allowance
            raise RuntimeError(f"no evaluations left for `Resample` (budget_nfe={a.budget_nfe}, "
                               f"deadline_s={a.deadline_s}, spent {a.nfe})")
        x0 = self.inner(shown.x_t, shown.t, steps)
        if x0 is None and self.stopped:  # the previous result stands; the run ends at `next`
            return shown
        if x0 is None:
            raise RuntimeError("`Resample` abandoned: the deadline came first; the previous result "
                               "stands")
        self.latest = AnytimeResult(x0, shown.outer_step, self.allowance.nfe,
                                    self.allowance.elapsed_s, shown.x_t, shown.t)
        return self.latest

    def set_inner_steps(self, steps: int) -> AnytimeResult:
        self.inner_steps = steps
        return self.latest
