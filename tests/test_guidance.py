"""Guidance commands sent into a running nested sampler, on the exact Gaussian-mixture prior.

Public API only (``nested_inverse.NestedSampler``, the commands, ``operators.make``), so these
survive changes inside ``nested.py``. ``test_nested.py`` has the basic cases (an Edit drives the
next outer step, Resample redraws and is charged to a budget, the unknown-command error); this
file checks what it does not: validation of every field, that a rejected command changes nothing,
the projection for a non-mask operator and at outer step 0, exact evaluation counts with
interleaved commands, Stop at any point, and sending outside the run's lifetime.
"""

from __future__ import annotations

import math

import pytest
import torch

import operators
from nested_inverse import (
    DDNM,
    CountingPrior,
    Edit,
    GaussianMixturePrior,
    NestedSampler,
    Resample,
    SetInnerSteps,
    Stop,
)

SHAPE = (1, 4, 4)


@pytest.fixture(scope="module")
def prior():
    g = torch.Generator().manual_seed(0)
    d, k = math.prod(SHAPE), 3
    roots = 0.3 * torch.randn(k, d, d, generator=g, dtype=torch.float64) / d**0.5
    covs = roots @ roots.transpose(-1, -2) + 0.05 * torch.eye(d, dtype=torch.float64)
    return GaussianMixturePrior(torch.rand(k, generator=g, dtype=torch.float64) + 0.2,
                                torch.randn(k, d, generator=g, dtype=torch.float64), covs, SHAPE)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def make_run(prior, task="sr2", outer=4, inner=3, counting=False):
    op = operators.make(task, image_shape=SHAPE)
    y = op(prior.sample(1, gen(1)))
    net = CountingPrior(prior) if counting else prior
    run = NestedSampler(DDNM(net, op, y), outer_steps=outer, inner_steps=inner).iterate(gen())
    return run, op, y, net


# ---------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("image", [None, 0.5, [[0.0]], torch.zeros(1, 1, 4, 4).numpy()],
                         ids=["none", "float", "list", "ndarray"])
def test_edit_needs_a_tensor(image):
    with pytest.raises(ValueError, match="`Edit.image`"):
        Edit(image)


@pytest.mark.parametrize("steps", [0, -1, True, False, 2.0, "3", None])
def test_set_inner_steps_needs_a_positive_integer(steps):
    with pytest.raises(ValueError, match="`SetInnerSteps.steps`"):
        SetInnerSteps(steps)


def test_valid_commands_construct():
    assert SetInnerSteps(1).steps == 1
    assert Edit(torch.zeros(1)).image.shape == (1,)


# ----------------------------------------------------------------------- rejected commands
def _trace(run):
    return [(r.outer_step, r.nfe, r.t, r.image.clone()) for r in run]


def test_rejected_commands_leave_the_run_unchanged(prior):
    reference, *_ = make_run(prior)
    expected = _trace(reference)

    run, *_ = make_run(prior)
    first = next(run)
    with pytest.raises(RuntimeError, match="resample"):
        run.send(Resample())  # nothing to resample at outer step 0
    results = [first]
    for bad in (torch.zeros(1, 1, 4, 5), torch.zeros(1, *SHAPE, dtype=torch.float64)[0],
                torch.full((1, *SHAPE), float("nan")), torch.full((1, *SHAPE), float("inf"))):
        step = next(run)
        with pytest.raises(ValueError, match="Edit.image"):
            run.send(Edit(bad))
        assert run.latest is step  # the current result is untouched
        results.append(step)
    assert next(run, None) is None
    got = [(r.outer_step, r.nfe, r.t, r.image) for r in results]
    assert len(got) == len(expected)
    for (s, n, t, image), (s2, n2, t2, image2) in zip(got, expected):
        assert (s, n, t) == (s2, n2, t2)
        assert torch.equal(image, image2)  # same draws: the rejections consumed no randomness


# -------------------------------------------------------------------------------------- Edit
@pytest.mark.parametrize("task", ["sr2", "inpaint-half"])
def test_noiseless_edit_is_projected_onto_the_observation(prior, task):
    run, op, y, _ = make_run(prior, task)
    next(run), next(run)
    edit = torch.linspace(-3, 3, 16, dtype=torch.float64).reshape(1, *SHAPE)
    edited = run.send(Edit(edit)).image
    torch.testing.assert_close(op(edited), y)  # A x = y
    assert not torch.allclose(op(edit), y)  # ... which the edit itself did not satisfy
    # Only the observed part changed: the result is the edit plus something in range(A†).
    torch.testing.assert_close(edited, edit - op.pinv(op(edit) - y))
    # Projecting again changes nothing.
    torch.testing.assert_close(run.send(Edit(edited)).image, edited)


def test_edit_at_outer_step_zero_only_replaces_the_image_shown(prior):
    reference, *_ = make_run(prior)
    next(reference)
    expected = next(reference)

    run, op, y, _ = make_run(prior)
    start = next(run)
    edit = torch.full_like(start.image, 0.5)
    shown = run.send(Edit(edit))
    assert shown.outer_step == 0 and shown.nfe == 0
    torch.testing.assert_close(op(shown.image), y)
    following = next(run)  # the first outer step starts from the initial noise, not the edit
    assert torch.equal(following.image, expected.image) and following.nfe == expected.nfe


# -------------------------------------------------------------------------- evaluation counts
def test_resample_costs_the_last_inner_run_not_the_next_setting(prior):
    run, _, _, net = make_run(prior, outer=4, inner=4, counting=True)
    next(run)
    assert next(run).nfe == net.nfe == 4
    assert run.send(SetInnerSteps(2)).nfe == 4  # applies from the next outer step on
    assert run.send(Resample()).nfe == net.nfe == 8  # the last run had 4 evaluations
    assert run.send(Resample()).nfe == net.nfe == 12  # and again
    assert next(run).nfe == net.nfe == 14  # the next run has the new 2
    assert run.send(Resample()).nfe == net.nfe == 16  # now the last run had 2
    assert [r.nfe for r in run] == [18, 20] and net.nfe == 20


def test_set_inner_steps_changes_the_next_increment_exactly(prior):
    run, _, _, net = make_run(prior, outer=5, inner=3, counting=True)
    next(run)
    run.send(SetInnerSteps(7))  # at outer step 0: the first run already uses it
    assert next(run).nfe == net.nfe == 7
    run.send(SetInnerSteps(1))
    run.send(SetInnerSteps(4))  # the last one sent wins
    assert next(run).nfe == net.nfe == 11
    run.send(SetInnerSteps(1))
    assert next(run).nfe == net.nfe == 12
    assert [r.nfe for r in run] == [13, 14] and net.nfe == 14


# -------------------------------------------------------------------------------------- Stop
def test_stop_at_outer_step_zero_spends_nothing(prior):
    run, _, _, net = make_run(prior, counting=True)
    start = next(run)
    stopped = run.send(Stop())
    assert stopped is start and stopped.outer_step == 0 and stopped.nfe == 0
    assert next(run, None) is None and net.nfe == 0


def test_stop_after_a_resample_answers_with_the_resampled_result(prior):
    run, _, _, net = make_run(prior, counting=True)
    next(run), next(run)
    again = run.send(Resample())
    assert run.send(Stop()) is again and run.latest is again
    assert next(run, None) is None and net.nfe == again.nfe == 6


# ------------------------------------------------------------------------- outside the run
COMMANDS = [lambda: Stop(), lambda: Resample(), lambda: SetInnerSteps(2),
            lambda: Edit(torch.zeros(1, *SHAPE, dtype=torch.float64))]
IDS = ["stop", "resample", "set-inner-steps", "edit"]


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
def test_sending_before_the_first_result_raises_and_the_run_starts_normally(prior, command):
    run, *_ = make_run(prior, outer=2, inner=2)
    with pytest.raises(RuntimeError, match="next"):
        run.send(command())
    assert run.latest is None
    assert [r.outer_step for r in run] == [0, 1, 2]


@pytest.mark.parametrize("command", COMMANDS, ids=IDS)
@pytest.mark.parametrize("ending", ["stop", "exhausted"])
def test_sending_after_the_end_raises(prior, command, ending):
    run, *_ = make_run(prior, outer=2, inner=2)
    if ending == "stop":
        next(run)
        last = run.send(Stop())
    else:
        last = list(run)[-1]
    assert next(run, None) is None
    with pytest.raises(RuntimeError, match="ended"):
        run.send(command())
    assert run.latest is last
