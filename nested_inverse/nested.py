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
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from operators.random import Generators

from .guidance import Edit, Resample, SetInnerSteps, Stop
from .priors import Prior
from .solvers.base import Solver, ddim_step, unit_interval
from .timesteps import spaced_timesteps

__all__ = ["AnytimeResult", "AnytimeRun", "NestedSampler", "outer_timesteps", "plan_budget"]

#: the fewest inner evaluations the budget policy shrinks an inner run to before dropping outer
#: steps (one evaluation from a large τ gives only a blurry x̂0).
MIN_INNER_STEPS = 2
#: safety factor on the measured seconds per evaluation when fitting work into a deadline.
DEADLINE_MARGIN = 1.15


@dataclass
class AnytimeResult:
    """The restoration available at one moment of a nested run.

    Attributes:
        image: the restoration ``[B, C, H, W]`` in the model range [-1, 1] (``A†y`` at outer step 0).
        outer_step: outer steps done (0 for ``A†y``).
        nfe: network evaluations spent so far, per image (resamples and aborted runs included).
        elapsed_s: seconds since the run started when this result became available.
        x_t: the outer state the inner run started from ``[B, C, H, W]`` (the initial state for
            outer step 0).
        t: the timestep of ``x_t``.
    """

    image: Tensor
    outer_step: int
    nfe: int
    elapsed_s: float
    x_t: Tensor
    t: int


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


def plan_budget(
    remaining_nfe: float, remaining_outer: int, inner_steps: int
) -> tuple[int, int]:
    """``(outer steps kept, inner evaluations for the next run)`` for what is left of a budget.

    Policy: keep every remaining outer step at ``inner_steps`` while that fits; otherwise shrink
    the inner runs evenly (the next run gets ``⌊R/m⌋``; leftovers flow to later runs, so the last
    run, which sets the final quality, gets the most) down to ``MIN_INNER_STEPS``; below that drop
    outer steps, keeping ``⌊R/MIN_INNER_STEPS⌋`` of them (at least one while ``R ≥ 1``).
    ``(0, 0)`` means nothing fits.

    Example:
        >>> plan_budget(50, 5, 10), plan_budget(20, 5, 10), plan_budget(5, 5, 10)
        ((5, 10), (5, 4), (2, 2))
    """
    m, n = int(remaining_outer), int(inner_steps)
    if remaining_nfe < 1 or m < 1:
        return 0, 0
    if remaining_nfe >= m * n:  # also an unlimited (infinite) budget
        return m, n
    R = int(remaining_nfe)
    floor = min(n, MIN_INNER_STEPS)
    if R >= m * floor:
        return m, R // m
    keep = max(1, R // floor)
    return keep, R // keep


def _keep(pending: list[int], keep: int, first_fixed: bool) -> list[int]:
    """``keep`` of the pending outer timesteps, evenly chosen, always with the smallest one.

    With ``first_fixed`` the first one stays too (the outer state already sits there).
    """
    if keep >= len(pending):
        return pending
    if keep == 1:
        return pending[:1] if first_fixed else pending[-1:]
    idx = torch.linspace(0, len(pending) - 1, keep, dtype=torch.float64).round().long().tolist()
    return [pending[i] for i in dict.fromkeys(idx)]


class AnytimeRun(Iterator[AnytimeResult]):
    """The iterator :meth:`NestedSampler.iterate` returns: a generator that raises bad commands.

    ``next(run)`` gives the next result; ``run.send(command)`` applies a guidance command to the
    current result and answers with the (updated) current result. A rejected command raises
    ``ValueError``/``RuntimeError`` here while the run stays alive. ``run.latest`` is the latest
    result delivered (None before the first).
    """

    def __init__(self, gen: Generator[AnytimeResult | Exception, object, None]) -> None:
        self._gen = gen
        self._started = False
        self.latest: AnytimeResult | None = None

    def __iter__(self) -> AnytimeRun:
        return self

    def __next__(self) -> AnytimeResult:
        return self.send(None)

    def send(self, command: object) -> AnytimeResult:
        if not self._started and command is not None:
            raise RuntimeError("call next(run) for the first result before sending commands")
        if not self._started:
            item = next(self._gen)
        elif command is None:
            item = self._gen.send(None)
        else:
            try:
                item = self._gen.send(command)
            except StopIteration:
                raise RuntimeError(f"the run has ended; {command!r} must be sent before the "
                                   "next() that ends it") from None
        self._started = True
        if isinstance(item, Exception):
            raise item
        self.latest = item
        return item

    def close(self) -> None:
        self._gen.close()


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
        self, solver: Solver, outer_steps: int, inner_steps: int, outer_eta: float = 0.0
    ) -> None:
        for name in ("iterate", "initial_state", "alpha", "num_timesteps", "y_pinv", "noise"):
            if not hasattr(solver, name):
                raise ValueError(f"`solver` must be a Solver (missing `{name}`), got "
                                 f"{type(solver).__name__}")
        for name, value in (("outer_steps", outer_steps), ("inner_steps", inner_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
        outer_eta = unit_interval("outer_eta", outer_eta)
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
        from .solvers.ddim import DDIM

        return cls(DDIM(prior, shape, eta=eta, dtype=dtype, device=device), outer_steps,
                   inner_steps, outer_eta)

    @property
    def total_nfe(self) -> int:
        """``K·I``: the evaluations of a full run without interventions (an upper bound)."""
        return self.outer_steps * self.inner_steps

    def __repr__(self) -> str:
        return (f"NestedSampler({type(self.solver).__name__}, outer_steps={self.outer_steps}, "
                f"inner_steps={self.inner_steps}, outer_eta={self.outer_eta})")

    def sample(
        self,
        generator: Generators = None,
        budget_nfe: int | None = None,
        deadline_s: float | None = None,
    ) -> Tensor:
        """The final restoration ``[B, C, H, W]`` (model range); arguments as for :meth:`iterate`."""
        result = None
        for result in self.iterate(generator, budget_nfe, deadline_s):
            pass
        return result.image

    def iterate(
        self,
        generator: Generators = None,
        budget_nfe: int | None = None,
        deadline_s: float | None = None,
    ) -> AnytimeRun:
        """Run, yielding :class:`AnytimeResult`: ``A†y`` at 0 evaluations, then one per outer step.

        Breaking out of the loop keeps the latest result (also ``run.latest``). Between results,
        ``run.send(command)`` applies :class:`~nested_inverse.guidance.Edit`,
        :class:`~nested_inverse.guidance.Resample`, :class:`~nested_inverse.guidance.SetInnerSteps`
        or :class:`~nested_inverse.guidance.Stop` and answers with the current (updated) result.
        At outer step 0 an ``Edit`` only replaces the image shown (the first outer step starts
        from the initial noise, not from an x̂0) and ``Resample`` is refused.

        Budget policy (``budget_nfe``, evaluations per image, ≥ 1): before each outer step the
        remaining evaluations are re-planned with :func:`plan_budget` — shrink the remaining inner
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
        """
        if budget_nfe is not None:
            if isinstance(budget_nfe, bool) or not isinstance(budget_nfe, int) or budget_nfe < 1:
                raise ValueError(f"`budget_nfe` must be an integer >= 1 (evaluations per image), "
                                 f"got {budget_nfe!r}")
        if deadline_s is not None and not float(deadline_s) > 0:
            raise ValueError(f"`deadline_s` must be > 0 seconds, got {deadline_s!r}")
        return AnytimeRun(self._run(generator, budget_nfe, deadline_s))

    # --------------------------------------------------------------------------------- the loop
    def _run(
        self, generator: Generators, budget_nfe: int | None, deadline_s: float | None
    ) -> Generator[AnytimeResult | Exception, object, None]:
        solver = self.solver
        start = time.perf_counter()
        deadline_at = None if deadline_s is None else start + float(deadline_s)
        inner = self.inner_steps
        nfe = 0
        eval_seconds, evals_timed = 0.0, 0  # for the per-evaluation time estimate

        def seconds_per_eval() -> float | None:
            return None if evals_timed == 0 else DEADLINE_MARGIN * eval_seconds / evals_timed

        def remaining() -> int:
            left = math.inf if budget_nfe is None else budget_nfe - nfe
            per = seconds_per_eval()
            if deadline_at is not None and per is not None:
                left = min(left, math.floor((deadline_at - time.perf_counter()) / per))
            return left

        def run_inner(x: Tensor, tau: int, steps: int) -> tuple[Tensor | None, int, float]:
            """One inner run; ``(x̂0 or None when abandoned for the deadline, evaluations, s)``."""
            planned = len(spaced_timesteps(tau, steps))
            t0 = time.perf_counter()
            state, used = None, 0
            for state in solver.iterate(x_t=x, t_start=tau, steps=steps, generator=generator):
                used = state.nfe
                if deadline_at is not None and used < planned:
                    now = time.perf_counter()
                    # The measured rate, without the planning margin: a run planned with the
                    # margin is abandoned only when evaluations slow down by more than it.
                    per = (now - t0) / used
                    if now + per * (planned - used) > deadline_at:
                        return None, used, now - t0
            return state.x_t, used, time.perf_counter() - t0

        x = solver.initial_state(solver.num_timesteps - 1, generator)
        tau = solver.num_timesteps - 1
        pending = list(self.timesteps)  # outer timesteps still to run; x sits at pending[0] now
        result = AnytimeResult(solver.y_pinv.clone(), 0, 0, time.perf_counter() - start, x, tau)
        last_inner = inner
        while True:
            # Serve guidance until the caller asks for the next outer step (a plain next()).
            command = yield result
            while command is not None:
                reply: AnytimeResult | Exception = result
                if isinstance(command, Stop):
                    yield result
                    return
                if isinstance(command, Edit):
                    image = self._edited(command.image)
                    reply = image if isinstance(image, Exception) else replace(result, image=image)
                elif isinstance(command, SetInnerSteps):
                    inner = command.steps
                elif isinstance(command, Resample):
                    if result.outer_step == 0:
                        reply = RuntimeError("nothing to resample before the first outer step")
                    else:
                        keep, steps = plan_budget(remaining(), 1, last_inner)
                        if keep == 0:
                            reply = RuntimeError(f"no evaluations left for `Resample` "
                                                 f"(budget_nfe={budget_nfe}, deadline_s="
                                                 f"{deadline_s}, spent {nfe})")
                        else:
                            x0, used, secs = run_inner(result.x_t, result.t, steps)
                            nfe += used
                            eval_seconds, evals_timed = eval_seconds + secs, evals_timed + used
                            if x0 is None:
                                reply = RuntimeError("`Resample` abandoned: the deadline came "
                                                     "first; the previous result stands")
                            else:
                                result = AnytimeResult(x0, result.outer_step, nfe,
                                                       time.perf_counter() - start,
                                                       result.x_t, result.t)
                                reply = result
                else:
                    reply = ValueError(f"unknown command {command!r}; send Edit(image), "
                                       "Resample(), SetInnerSteps(n) or Stop()")
                if isinstance(reply, AnytimeResult):
                    result = reply
                command = yield reply

            if result.outer_step > 0 and not pending:
                return
            keep, steps = plan_budget(remaining(), len(pending), inner)
            if keep == 0:
                return
            pending = _keep(pending, keep, first_fixed=result.outer_step == 0)
            if result.outer_step > 0:
                x = self._outer_step(x, tau, result.image, pending[0], generator)
            tau = pending.pop(0)
            x0, used, secs = run_inner(x, tau, steps)
            nfe += used
            eval_seconds, evals_timed = eval_seconds + secs, evals_timed + used
            if x0 is None:
                # Abandoned for the deadline: one shorter last run from the same state, if it fits.
                steps = min(remaining(), steps - 1)
                if steps < 1:
                    return
                x0, used, secs = run_inner(x, tau, int(steps))
                nfe += used
                eval_seconds, evals_timed = eval_seconds + secs, evals_timed + used
                if x0 is None:
                    return
                pending = []
            last_inner = steps
            if deadline_at is not None and time.perf_counter() > deadline_at:
                return
            result = AnytimeResult(x0, result.outer_step + 1, nfe, time.perf_counter() - start,
                                   x, tau)

    def _outer_step(
        self, x: Tensor, tau: int, x0: Tensor, target: int, generator: Generators
    ) -> Tensor:
        """Outer DDIM step ``x_τ → x_target`` with the inner result as ``x̂0``."""
        a_t, a_s = self.solver.alpha(tau), self.solver.alpha(target)
        x0 = x0.to(dtype=x.dtype, device=x.device)
        eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        noise = self.solver.noise(generator) if self.outer_eta > 0 else None
        return ddim_step(x0, eps, a_t, a_s, self.outer_eta, noise)

    def _edited(self, image: Tensor) -> Tensor | Exception:
        """``image`` checked and, for noiseless problems, projected: ``x − A†(A x − y)``."""
        shape = tuple(self.solver.y_pinv.shape)
        if tuple(image.shape) != shape:
            return ValueError(f"`Edit.image` has shape {tuple(image.shape)}; the restoration has "
                              f"shape {shape} (model range [-1, 1])")
        if not torch.isfinite(image).all():
            return ValueError("`Edit.image` contains NaN or inf")
        ref = self.solver.y_pinv
        x = image.detach().to(dtype=ref.dtype, device=ref.device)
        op = getattr(self.solver, "operator", None)
        if op is not None and getattr(self.solver, "sigma_y", 0.0) == 0:
            with torch.no_grad():
                x = x - op.pinv(op(x) - self.solver.y)
        return x
