"""Budgets and deadlines: the ledger of a run and how evaluations are spread."""

from __future__ import annotations

import math
import time

import pytest

from nested_inverse.planning import (AUTO_MIN_INNER, AUTO_OUTER_STEPS, DEADLINE_MARGIN, MIN_INNER_STEPS, Allowance,
                                    auto_split, keep_evenly)


def test_allowance_counts_down_the_budget():
    a = Allowance(budget_nfe=10)
    assert a.remaining() == 10
    a.charge(4, 0.4)
    assert a.remaining() == 6 and a.nfe == 4
    assert Allowance().remaining() == math.inf


def test_deadline_caps_what_remains_at_the_measured_rate_with_the_margin():
    a = Allowance(deadline_s=100.0)
    a.start()
    assert a.remaining() == math.inf  # no rate measured yet
    a.charge(2, 2.0)  # 1 s per evaluation
    assert a.seconds_per_eval() == pytest.approx(DEADLINE_MARGIN)
    assert a.remaining() == math.floor((100.0 - a.elapsed_s) / DEADLINE_MARGIN)
    assert not a.expired()


def test_expired_and_overshoots():
    a = Allowance(deadline_s=0.01)
    a.start()
    time.sleep(0.02)
    assert a.expired()
    assert a.overshoots(time.perf_counter() - 0.001, used=1, planned=5)
    assert not a.overshoots(time.perf_counter(), used=5, planned=5)  # finished runs never overshoot
    assert not Allowance().overshoots(0.0, 1, 5)


def test_keep_evenly_always_keeps_the_smallest_timestep():
    pending = [999, 799, 599, 400, 200]
    for keep in range(1, 6):
        kept = keep_evenly(pending, keep, first_fixed=False)
        assert kept[-1] == 200 and len(kept) == keep and kept == sorted(kept, reverse=True)
    assert keep_evenly(pending, 1, first_fixed=True) == [999]


@pytest.mark.parametrize("kwargs, match", [
    ({"budget_nfe": 0}, r"`budget_nfe` must be an integer >= 1 \(evaluations per image\), got 0"),
    ({"budget_nfe": True}, "`budget_nfe` must be an integer >= 1"),
    ({"deadline_s": -1}, "`deadline_s` must be > 0 seconds, got -1"),
])
def test_bad_limits_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Allowance(**kwargs)


def test_auto_split_covers_the_budget_with_the_fewest_short_runs():
    for budget in range(1, 201):
        k, i = auto_split(budget)
        assert 1 <= k <= AUTO_OUTER_STEPS and k * i >= budget >= k * min(i, MIN_INNER_STEPS)
        assert k * (i - 1) < budget  # the smallest I that covers the budget
        assert budget >= k * AUTO_MIN_INNER or k == 1
        if budget >= AUTO_OUTER_STEPS * AUTO_MIN_INNER:
            assert k == AUTO_OUTER_STEPS
    with pytest.raises(ValueError, match="`budget_nfe` must be an integer >= 1"):
        auto_split(0)
