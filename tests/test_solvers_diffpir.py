"""DiffPIR: the proximal data step against a dense solve (SVD and CG paths), its limits in ζ and
ρ_t, and its place on the mixture yardstick."""

import pytest
import torch

import operators
from nested_inverse.solvers import DiffPIR

from test_solvers import FlatOperator, small_gmm


@pytest.fixture
def setup(generator):
    prior = small_gmm(generator)
    matrix = torch.randn(6, 16, generator=generator, dtype=torch.float64)
    x = prior.sample(2, generator)
    return prior, matrix, x


@pytest.mark.parametrize("sigma_y", [0.0, 0.05])
def test_data_step_is_the_dense_proximal_solution_with_and_without_svd(setup, generator, sigma_y):
    prior, matrix, x = setup
    op = operators.MatrixOperator(matrix, (1, 4, 4))
    y = op(x)
    x0 = torch.randn(2, 1, 4, 4, generator=generator, dtype=torch.float64)
    for t in (50, 500):
        svd_solver, cg_solver = DiffPIR(prior, op, y, sigma_y), DiffPIR(prior, FlatOperator(matrix), y,
                                                                        sigma_y)
        assert svd_solver.svd is not None and cg_solver.svd is None
        rho = svd_solver.rho(t)
        # argmin ‖y − A x‖² + ρ‖x − x0‖²  ⇔  (AᵀA + ρI) x = Aᵀy + ρ x0
        lhs = matrix.T @ matrix + rho * torch.eye(16, dtype=torch.float64)
        rhs = y @ matrix + rho * x0.flatten(1)
        dense = torch.linalg.solve(lhs, rhs.T).T.reshape(x0.shape)
        torch.testing.assert_close(svd_solver.data_step(x0, t), dense, rtol=1e-7, atol=1e-8)
        torch.testing.assert_close(cg_solver.data_step(x0, t), dense, rtol=0, atol=1e-6)


def test_rho_follows_the_paper(setup):
    """ρ_t = λ·σ_n²·ᾱ_t/(1−ᾱ_t) with σ_n = 2σ_y: larger at low noise, ∝ λ, floored when noiseless."""
    prior, matrix, x = setup
    op = operators.MatrixOperator(matrix, (1, 4, 4))
    y = op(x)
    solver = DiffPIR(prior, op, y, 0.05, lambda_=7.0)
    a = float(prior.alphas_cumprod[100])
    assert solver.rho(100) == pytest.approx(7.0 * 0.1**2 * a / (1 - a))
    assert solver.rho(10) > solver.rho(100) > solver.rho(900)
    assert DiffPIR(prior, op, y, 0.05, lambda_=1.0).rho(100) == pytest.approx(solver.rho(100) / 7)
    assert DiffPIR(prior, op, y, 0.0, sigma_floor=1e-3).rho(100) == pytest.approx(
        7.0 * 0.002**2 * a / (1 - a))


def test_zeta_zero_is_deterministic_and_zeta_mixes_fresh_noise(setup):
    prior, matrix, x = setup
    op = operators.MatrixOperator(matrix, (1, 4, 4))
    y = op(x)

    start = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=x.dtype)

    def run(zeta, seed):  # from one start, so that only the re-noising can draw
        return DiffPIR(prior, op, y, 0.05, zeta=zeta).sample(
            x_t=start, t_start=999, steps=6, generator=torch.Generator().manual_seed(seed))

    torch.testing.assert_close(run(0.0, 1), run(0.0, 2), rtol=0, atol=0)
    assert not torch.allclose(run(0.3, 1), run(0.3, 2))


def test_bad_parameters_are_named(setup):
    prior, matrix, x = setup
    op = operators.MatrixOperator(matrix, (1, 4, 4))
    y = op(x)
    for name, value in [("lambda_", 0.0), ("lambda_", float("inf")), ("zeta", -0.1),
                        ("sigma_floor", 0.0)]:
        with pytest.raises(ValueError, match=name):
            DiffPIR(prior, op, y, **{name: value})
    with pytest.raises(ValueError, match="DPS"):
        DiffPIR(prior, lambda v: v.flatten(1)[:, :6], y)
