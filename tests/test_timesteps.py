"""Timestep schedules: ``spaced_timesteps`` (inner runs), ``outer_timesteps`` and ``plan_budget``.

Exact values of single cases for the latter two live in ``test_nested.py``; here are the
properties over grids of arguments.
"""

from __future__ import annotations

import math

import pytest

from nested_inverse.nested import outer_timesteps
from nested_inverse.planning import MIN_INNER_STEPS, plan_budget
from nested_inverse.timesteps import spaced_timesteps

GRID = [(t_start, steps, t_end) for t_start in (0, 1, 2, 3, 7, 10, 99, 500, 999)
        for steps in (1, 2, 3, 4, 5, 10, 20, 1000, 2000) for t_end in (0, 1, 5)]


# ------------------------------------------------------------------------------ spaced_timesteps
@pytest.mark.parametrize("t_start, steps, t_end", GRID)
def test_spaced_timesteps_properties(t_start, steps, t_end):
    ts = spaced_timesteps(t_start, steps, t_end)
    assert all(isinstance(t, int) for t in ts)
    assert ts[0] == t_start  # largest first
    assert ts[-1] == (min(t_end, t_start) if steps > 1 else t_start)
    assert all(a > b for a, b in zip(ts, ts[1:]))  # strictly decreasing, so no duplicates
    size = abs(t_start - min(t_end, t_start)) + 1  # integers in the interval
    assert len(ts) == min(steps, size)


def test_spaced_timesteps_exact_values():
    # linspace(t_start, t_end, steps), rounded half to even, duplicates dropped:
    assert spaced_timesteps(999, 4) == [999, 666, 334, 1]  # 999, 666.33, 333.67, 1
    assert spaced_timesteps(999, 1) == [999]
    assert spaced_timesteps(999, 2) == [999, 1]
    assert spaced_timesteps(10, 4) == [10, 7, 4, 1]
    assert spaced_timesteps(10, 4, t_end=0) == [10, 7, 3, 0]  # 6.67 → 7, 3.33 → 3
    assert spaced_timesteps(9, 3) == [9, 5, 1]
    assert spaced_timesteps(4, 3) == [4, 2, 1]  # 4, 2.5 → 2 (half to even), 1
    assert spaced_timesteps(3, 10) == [3, 2, 1]  # fewer integers than steps
    assert spaced_timesteps(0, 5) == [0]
    assert spaced_timesteps(5, 3, t_end=5) == [5]
    assert spaced_timesteps(2, 3, t_end=7) == [2]  # t_start < t_end: only t_start


def test_spaced_timesteps_deduplicates_but_keeps_the_order():
    # 5 evenly spaced values over [3, 1] round to 3, 2, 2, 2, 1 (2.5 and 1.5 to even 2)
    assert spaced_timesteps(3, 5) == [3, 2, 1]
    assert spaced_timesteps(2, 100) == [2, 1]


@pytest.mark.parametrize("t_start, t_end", [(999, 1), (10, 0), (3, 1), (1, 1)])
def test_spaced_timesteps_beyond_the_interval_is_the_interval_without_a_big_grid(t_start, t_end):
    import time

    import torch

    size = t_start - t_end + 1
    for steps in (size, size + 1, 2 * size + 1, 7 * size):  # the uncapped grid, built here
        grid = torch.linspace(t_start, t_end, steps, dtype=torch.float64).round().long().tolist()
        assert spaced_timesteps(t_start, steps, t_end) == list(dict.fromkeys(grid))
    start = time.perf_counter()
    # 10**9 entries would take minutes and 8 GB; capped, it is the interval (measured 0.1 ms)
    assert spaced_timesteps(t_start, 10**9, t_end) == list(range(t_start, t_end - 1, -1))
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("steps", [0, -1])
def test_spaced_timesteps_rejects_fewer_than_one_step(steps):
    with pytest.raises(ValueError, match="`steps`"):
        spaced_timesteps(10, steps)


def test_spaced_timesteps_rejects_a_negative_start():
    with pytest.raises(ValueError, match="`t_start`"):
        spaced_timesteps(-1, 3)


# ------------------------------------------------------------------------------ outer_timesteps
@pytest.mark.parametrize("T", [2, 3, 10, 1000])
def test_outer_timesteps_properties(T):
    for K in range(1, T):
        ts = outer_timesteps(T, K)
        assert len(ts) == K and len(set(ts)) == K  # distinct
        assert ts[0] == T - 1  # starts at the last timestep of the schedule
        assert all(a > b for a, b in zip(ts, ts[1:]))  # largest first
        assert min(ts) >= 1  # never at 0: every inner run has noise left to remove
        for k, t in enumerate(ts):  # τ_k = round((T−1)·(1 − k/K))
            assert abs(t - (T - 1) * (1 - k / K)) <= 0.5 + 1e-9, (T, K, k, t)


# ---------------------------------------------------------------------------------- plan_budget
REMAINING = list(range(0, 61)) + [100, 1000, math.inf]
OUTER = [0, 1, 2, 3, 5, 8]
INNER = [1, 2, 3, 4, 10]


def test_plan_budget_never_exceeds_the_budget_and_follows_the_policy():
    for R in REMAINING:
        for m in OUTER:
            for n in INNER:
                keep, steps = plan_budget(R, m, n)
                case = (R, m, n, keep, steps)
                assert keep * steps <= R, case
                if R < 1 or m < 1:
                    assert (keep, steps) == (0, 0), case
                    continue
                assert 1 <= keep <= m and steps >= 1, case
                floor = min(n, MIN_INNER_STEPS)
                if R >= m * n:  # everything fits: the plan as asked
                    assert (keep, steps) == (m, n), case
                elif R >= m * floor:  # shrink the inner runs evenly, keep every outer step
                    assert (keep, steps) == (m, R // m) and steps <= n, case
                else:  # drop outer steps, keeping as many as MIN_INNER_STEPS allows
                    assert keep == max(1, R // floor), case
                    assert steps == R // keep, case  # may exceed n: the budget concentrates


def _replanned(R, m, n):
    """The inner runs the sampler makes: plan, run the next inner run, re-plan what is left."""
    left, pending, runs = R, m, []
    while True:
        keep, steps = plan_budget(left, pending, n)
        if keep == 0:
            return runs
        runs.append(steps)
        left, pending = left - steps, keep - 1


def test_plan_budget_replanned_each_step_uses_the_budget_and_gives_the_last_run_the_most():
    for R in range(1, 61):
        for m in OUTER[1:]:
            for n in INNER:
                runs = _replanned(R, m, n)
                case = (R, m, n, runs)
                assert sum(runs) <= R and len(runs) <= m, case
                assert runs == sorted(runs), case  # leftovers flow to later runs
                if n != MIN_INNER_STEPS:  # see the known gap below
                    assert sum(runs) == min(R, m * n), case  # nothing that fits is left unused


@pytest.mark.xfail(strict=True, reason="known gap: with inner_steps == MIN_INNER_STEPS and an odd "
                   "budget below outer*inner, the re-plan caps the last run at inner_steps and one "
                   "evaluation is never spent (NestedSampler(3x2) with budget_nfe=5 spends 4)")
@pytest.mark.parametrize("R, m", [(5, 3), (7, 5), (15, 8)])
def test_plan_budget_uses_an_odd_budget_at_the_minimum_inner_steps(R, m):
    assert sum(_replanned(R, m, MIN_INNER_STEPS)) == R
