"""The anytime stream: vanilla runs as streams, what they accept, and running a stream to its end."""

from __future__ import annotations

import pytest
import torch

import operators
from nested_inverse import (DDNM, CountingPrior, Edit, GaussianMixturePrior, NestedSampler, Resample, Stop,
                            VanillaSampler)
from nested_inverse.anytime import run_to_end

PRIOR = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None], event_shape=(1, 2, 2))
OP = operators.make("inpaint-half", image_shape=(1, 2, 2))
Y = OP(torch.ones(2, 1, 2, 2, dtype=torch.float64))


def _gens():
    return [torch.Generator().manual_seed(i) for i in range(2)]


def test_vanilla_stream_is_the_solver_run_step_by_step():
    solver = DDNM(PRIOR, OP, Y)
    results = run_to_end(VanillaSampler(solver, 4).iterate(_gens()))
    assert [r.nfe for r in results] == [0, 1, 2, 3, 4]
    torch.testing.assert_close(results[0].image, solver.y_pinv)
    states = list(solver.iterate(steps=4, generator=_gens()))
    for r, s in zip(results[1:], states):
        torch.testing.assert_close(r.image, s.x_t if s.t < 0 else s.x0_hat, rtol=0, atol=0)
    assert results[-1].t == -1


def test_vanilla_budget_caps_the_steps_and_stop_ends_the_run():
    assert [r.nfe for r in VanillaSampler(DDNM(PRIOR, OP, Y), 6).iterate(budget_nfe=3)] == [0, 1, 2, 3]
    run = VanillaSampler(DDNM(PRIOR, OP, Y), 6).iterate()
    next(run), next(run)
    assert run.send(Stop()).nfe == 1
    assert next(run, None) is None
    with pytest.raises(RuntimeError, match="the run has ended"):
        run.send(Stop())


def test_vanilla_refuses_nested_only_commands_and_stays_alive():
    run = VanillaSampler(DDNM(PRIOR, OP, Y), 3).iterate()
    next(run)
    for command in (Resample(), Edit(torch.zeros(2, 1, 2, 2))):
        with pytest.raises(ValueError, match="needs a nested run"):
            run.send(command)
    assert next(run).nfe == 1


def test_nested_and_vanilla_share_one_interface():
    samplers = [VanillaSampler(DDNM(PRIOR, OP, Y), 4), NestedSampler(DDNM(PRIOR, OP, Y), 2, 2)]
    for sampler in samplers:
        results = run_to_end(sampler.iterate(_gens()))
        assert results[-1].nfe == sampler.total_nfe == 4
        assert results[-1].image.shape == (2, 1, 2, 2)


def test_vanilla_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`steps` must be an integer >= 1, got 0"):
        VanillaSampler(DDNM(PRIOR, OP, Y), 0)
    with pytest.raises(ValueError, match="`solver` must be a Solver"):
        VanillaSampler(PRIOR, 2)
    with pytest.raises(ValueError, match="`budget_nfe` must be an integer >= 1"):
        VanillaSampler(DDNM(PRIOR, OP, Y), 2).iterate(budget_nfe=0)


def test_vanilla_stop_check_true_after_k_evaluations_makes_exactly_k():
    counting = CountingPrior(PRIOR)
    results = run_to_end(VanillaSampler(DDNM(counting, OP, Y), 6).iterate(
        _gens(), stop=lambda: counting.nfe >= 2))
    assert counting.nfe == 2 and [r.nfe for r in results] == [0, 1, 2]
    assert VanillaSampler(DDNM(counting, OP, Y), 6).sample(stop=lambda: True).shape == (2, 1, 2, 2)
    assert counting.nfe == 2


def test_vanilla_sampler_lives_beside_nested_and_its_old_place_warns():
    import nested_inverse.anytime as anytime
    from nested_inverse.vanilla import VanillaSampler as moved

    assert moved is VanillaSampler
    with pytest.warns(DeprecationWarning, match="moved to `nested_inverse.vanilla"):
        assert anytime.VanillaSampler is moved
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        anytime.Nothing
