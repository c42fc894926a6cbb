"""Problem: the observation in both ranges, the operator's offset A·1, range masks, bad input."""

from __future__ import annotations

import pytest
import torch

import operators
from nested_inverse import Problem, to_model_range


def test_model_range_observation_is_the_operator_applied_to_the_model_range_image():
    # A(2x − 1) = 2·A x − A 1 for every linear A, also where A 1 ≠ 1 (zero-padded blur borders).
    x = torch.rand(2, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for name in ("sr4", "blur-gauss", "colorize", "inpaint-box"):
        op = operators.make(name, image_shape=(3, 12, 12))
        problem = Problem(op(x), op)
        torch.testing.assert_close(problem.y, op(to_model_range(x)), rtol=0, atol=1e-12)
        assert problem.image_shape == (2, 3, 12, 12)


def test_pixels_outside_the_range_are_not_data():
    op = operators.make("inpaint-half", image_shape=(1, 4, 4))
    y01 = torch.rand(1, 1, 4, 4, generator=torch.Generator().manual_seed(1))  # garbage in the hole
    problem = Problem(y01, op)
    hidden = ~op.range_mask().expand_as(y01)
    assert (problem.y[hidden] == 0).all()
    torch.testing.assert_close(problem.y[~hidden], 2 * y01[~hidden] - 1)
    everywhere = Problem(y01, op, range_mask=torch.ones_like(y01, dtype=torch.bool))
    torch.testing.assert_close(everywhere.y, 2 * y01 - op(torch.ones_like(y01)))  # A 1 = 0 there


def test_degrade_keeps_the_exact_model_range_observation_and_seeds_per_image():
    op = operators.make("sr2", image_shape=(3, 8, 8))
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    gens = [torch.Generator().manual_seed(i) for i in (5, 6)]
    problem = Problem.degrade(x, op, 0.1, generator=gens)
    alone = Problem.degrade(x[1:], op, 0.1, generator=[torch.Generator().manual_seed(6)])
    torch.testing.assert_close(problem.y[1:], alone.y, rtol=0, atol=0)
    noise = problem.y - op(to_model_range(x))
    assert 0.1 < float(noise.std()) < 0.3  # 2·σ_y = 0.2 in the model range
    torch.testing.assert_close(problem.y01, (problem.y + op(torch.ones_like(x))) / 2)
    assert problem.sigma == pytest.approx(0.2)


def test_from_model_clamps_to_the_unit_interval():
    op = operators.make("denoise", image_shape=(1, 2, 2))
    problem = Problem(torch.full((1, 1, 2, 2), 0.5), op)
    out = problem.from_model(torch.tensor([[[[-3.0, 0.0], [1.0, 5.0]]]]))
    assert out.tolist() == [[[[0.0, 0.5], [1.0, 1.0]]]]


@pytest.mark.parametrize("y, sigma_y, match", [
    (torch.full((1, 3, 4, 4), float("nan")), 0.0, r"`y` contains 48 NaN or inf values"),
    (torch.full((1, 3, 5, 5), 0.5), 0.0, r"`y` has shape \(1, 3, 5, 5\) but `operator` maps"),
    (torch.full((1, 3, 4, 4), 0.5), -0.1, r"`sigma_y`=-0.1 must be a finite number >= 0"),
])
def test_bad_input_names_the_argument(y, sigma_y, match):
    op = operators.make("sr2", image_shape=(3, 8, 8))
    with pytest.raises(ValueError, match=match):
        Problem(y, op, sigma_y)


def test_operator_must_be_an_operator():
    with pytest.raises(ValueError, match="`operator` must be an operators.LinearOperator, got str"):
        Problem(torch.zeros(1, 1, 2, 2), "sr2")
