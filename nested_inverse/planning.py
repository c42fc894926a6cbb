"""How much work fits: network-evaluation budgets, wall-clock deadlines, and how to spend them.

:class:`Allowance` is the ledger of one run (evaluations and seconds spent, what is left);
:func:`plan_budget` decides how the remaining evaluations are spread over the remaining outer
steps of a nested run; :func:`keep_evenly` picks which outer timesteps survive a cut;
:func:`planned_nfe` replays that policy to say how many evaluations a run will make.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import torch

__all__ = ["AUTO_MIN_INNER", "AUTO_OUTER_STEPS", "DEADLINE_MARGIN", "MIN_INNER_STEPS", "Allowance", "auto_split",
           "keep_evenly", "nested_defaults", "plan_budget", "planned_nfe"]

#: the fewest inner evaluations the budget policy shrinks an inner run to before dropping outer
#: steps (one evaluation from a large τ gives only a blurry x̂0).
MIN_INNER_STEPS = 2
#: safety factor on the measured seconds per evaluation when fitting work into a deadline.
DEADLINE_MARGIN = 1.15


#: outer steps of the default split (issue 13's measurements, benchmarks/RESULTS.md).
AUTO_OUTER_STEPS = 4
#: the fewest inner evaluations per outer step the default split plans (2-step inner runs from a
#: large τ lose 1–2 dB at the end: 4×2 at 8 evaluations, 10×2 at 20).
AUTO_MIN_INNER = 4


def auto_split(budget_nfe: int) -> tuple[int, int]:
    """``(K, I)`` of the default nested run for a budget: ``AUTO_OUTER_STEPS`` outer steps of
    ``⌈N/K⌉`` inner evaluations, fewer outer steps while that would be below ``AUTO_MIN_INNER``
    (one run of ``N``, the solver alone, below ``2·AUTO_MIN_INNER``).

    With ``budget_nfe=N`` the run spends exactly ``N``: :func:`plan_budget` trims the first runs
    by one evaluation each where ``K·I > N``, so the last run, which sets the final quality, keeps
    the most.

    Example:
        >>> auto_split(20), auto_split(50), auto_split(8), auto_split(6)
        ((4, 5), (4, 13), (2, 4), (1, 6))
    """
    if isinstance(budget_nfe, bool) or not isinstance(budget_nfe, int) or budget_nfe < 1:
        raise ValueError(f"`budget_nfe` must be an integer >= 1 (evaluations per image), "
                         f"got {budget_nfe!r}")
    k = max(1, min(AUTO_OUTER_STEPS, budget_nfe // AUTO_MIN_INNER))
    return k, -(-budget_nfe // k)


def nested_defaults(method: str, sigma_y: float = 0.0) -> dict[str, float]:
    """Solver parameters the default nested run uses for ``method`` on a problem with observation
    noise ``sigma_y`` unless the caller sets them.

    DDRM and ΠGDM inner runs on noiseless observations are fully stochastic (η = 1): an inner run
    starts from an outer state that already carries the earlier outer steps' errors, and fresh
    noise lets it move away from them, where the near-deterministic η = 0.85 of a single run
    carries them on (box inpainting ends 1.4–3.2 dB below vanilla with it). With noisy
    observations (``sigma_y > 0``) the solver keeps its own η: fully stochastic inner runs fit the
    observation noise in their last fine steps (noisy SR×4 at 50 evaluations: −1.04 dB with η = 1,
    deblurring at 20: −0.35 dB). DDNM's inner runs got no closer with η = 1, so DDNM keeps its own
    η (benchmarks/RESULTS.md, "Final quality: the default policy").

    Example:
        >>> nested_defaults("ddrm"), nested_defaults("ddrm", sigma_y=0.05), nested_defaults("ddnm")
        ({'eta': 1.0}, {}, {})
    """
    return {"eta": 1.0} if method in ("ddrm", "pigdm") and sigma_y == 0 else {}


def plan_budget(remaining_nfe: float, remaining_outer: int, inner_steps: int) -> tuple[int, int]:
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


def keep_evenly(pending: list[int], keep: int, first_fixed: bool) -> list[int]:
    """``keep`` of the pending outer timesteps, evenly chosen, always with the smallest one.

    With ``first_fixed`` the first one stays too (the outer state already sits there).

    Example:
        >>> keep_evenly([999, 799, 599, 400, 200], 2, first_fixed=False)
        [999, 200]
        >>> keep_evenly([999, 799, 599, 400, 200], 1, first_fixed=False)
        [200]
    """
    if keep >= len(pending):
        return pending
    if keep == 1:
        return pending[:1] if first_fixed else pending[-1:]
    idx = torch.linspace(0, len(pending) - 1, keep, dtype=torch.float64).round().long().tolist()
    return [pending[i] for i in dict.fromkeys(idx)]


def planned_nfe(
    outer: Sequence[int], inner_steps: int, budget_nfe: float, run_nfe: Callable[[int, int], int]
) -> int:
    """Evaluations a nested run over the outer timesteps ``outer`` makes without a deadline.

    The budget policy of :meth:`~nested_inverse.NestedSampler.iterate` replayed: before each outer
    step :func:`plan_budget` on what is left, :func:`keep_evenly` on the pending timesteps, then an
    inner run from ``τ`` of ``steps`` evaluations that really spends ``run_nfe(τ, steps)``
    (fewer when ``[τ, 1]`` holds fewer timesteps; the rest flows to later runs). This is the true
    total of a progress bar: ``K·I`` and ``budget_nfe`` are only upper bounds.

    Example:
        >>> run = lambda tau, steps: min(tau, steps)  # one evaluation per integer of [τ, 1]
        >>> planned_nfe([999, 749, 500, 250], 100_000, math.inf, run)  # 999 + 749 + 500 + 250
        2498
        >>> planned_nfe([999, 749, 500, 250], 5, 20, run)
        20
    """
    pending, spent, first = list(outer), 0, True
    while pending:
        keep, steps = plan_budget(budget_nfe - spent, len(pending), inner_steps)
        if keep == 0:
            break
        # the first outer state sits at pending[0] already, as in the sampler's loop
        pending, first = keep_evenly(pending, keep, first_fixed=first), False
        spent += run_nfe(pending.pop(0), steps)
    return spent


class Allowance:
    """The evaluations and seconds one run may spend, and what it has spent.

    Args:
        budget_nfe: network evaluations per image, an integer ``>= 1``, or None for no limit.
        deadline_s: wall-clock seconds from :meth:`start`, ``> 0``, or None for no limit.

    Seconds per evaluation are measured as the run goes; :meth:`remaining` caps the evaluations
    left by what fits before the deadline at that rate × ``DEADLINE_MARGIN``.
    """

    def __init__(self, budget_nfe: int | None = None, deadline_s: float | None = None) -> None:
        if budget_nfe is not None:
            if isinstance(budget_nfe, bool) or not isinstance(budget_nfe, int) or budget_nfe < 1:
                raise ValueError(f"`budget_nfe` must be an integer >= 1 (evaluations per image), "
                                 f"got {budget_nfe!r}")
        if deadline_s is not None and not float(deadline_s) > 0:
            raise ValueError(f"`deadline_s` must be > 0 seconds, got {deadline_s!r}")
        self.budget_nfe = budget_nfe
        self.deadline_s = None if deadline_s is None else float(deadline_s)
        self.nfe = 0
        self._seconds = 0.0  # spent inside evaluations, for the rate
        self._started: float | None = None

    def start(self) -> None:
        """Start the clock (the first time only)."""
        if self._started is None:
            self._started = time.perf_counter()

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self._started is None else time.perf_counter() - self._started

    @property
    def deadline_at(self) -> float | None:
        """The deadline on the ``time.perf_counter`` clock."""
        if self.deadline_s is None:
            return None
        self.start()
        return self._started + self.deadline_s

    def charge(self, nfe: int, seconds: float) -> None:
        """Record ``nfe`` evaluations that took ``seconds``."""
        self.nfe += nfe
        self._seconds += seconds

    def seconds_per_eval(self) -> float | None:
        """Measured seconds per evaluation × ``DEADLINE_MARGIN``; None before any evaluation."""
        return None if self.nfe == 0 else DEADLINE_MARGIN * self._seconds / self.nfe

    def remaining(self) -> float:
        """Evaluations still allowed (``inf`` without limits)."""
        left = math.inf if self.budget_nfe is None else self.budget_nfe - self.nfe
        per, at = self.seconds_per_eval(), self.deadline_at
        if at is not None and per is not None:
            left = min(left, math.floor((at - time.perf_counter()) / per))
        return left

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        at = self.deadline_at
        return at is not None and time.perf_counter() > at

    def overshoots(self, started: float, used: int, planned: int) -> bool:
        """Whether a run started at ``started`` that has done ``used`` of ``planned`` evaluations
        would finish after the deadline at its own measured rate (without the margin: a run
        planned with the margin is abandoned only when evaluations slow down by more than it)."""
        at = self.deadline_at
        if at is None or used >= planned:
            return False
        now = time.perf_counter()
        return now + (now - started) / used * (planned - used) > at
