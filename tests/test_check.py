"""operators.check: passes correct operators and catches each kind of broken one."""

from __future__ import annotations

import pytest
import torch

import operators
from operators.base import SVD

SHAPE = (1, 4, 6)


class Scale(operators.LinearOperator):
    """``A x = 2 x``: closed forms everywhere, each of which a subclass below breaks."""

    def forward(self, x):
        return 2 * x

    def adjoint(self, y):
        return 2 * y

    def pinv(self, y):
        return y / 2


def test_a_correct_operator_passes_in_both_dtypes():
    for dtype in (torch.float64, torch.float32):
        report = operators.check(Scale(SHAPE), SHAPE, dtype=dtype)
        assert report.ok, str(report)
        assert report.adjoint < 1e-12 if dtype == torch.float64 else report.adjoint < 1e-6
    assert "ok" in str(operators.check(Scale(SHAPE), SHAPE))


def test_a_wrong_adjoint_is_caught():
    class WrongAdjoint(Scale):
        def adjoint(self, y):
            return 3 * y

    report = operators.check(WrongAdjoint(SHAPE), SHAPE)
    assert not report.ok and report.adjoint > 0.1 and "adjoint" in str(report)


def test_a_wrong_pinv_is_caught():
    class WrongPinv(Scale):
        def pinv(self, y):
            return y / 3

    report = operators.check(WrongPinv(SHAPE), SHAPE)
    assert not report.ok and report.adjoint < 1e-12 and report.pinv > 0.1


def test_a_wrong_svd_is_caught():
    class _HalfSVD(SVD):  # claims singular values 1 where A has 2
        def Vt(self, x):
            return x.flatten(1)

        def V(self, c):
            return c.view(-1, *SHAPE)

        def Ut(self, y):
            return y.flatten(1)

        def U(self, c):
            return c.view(-1, *SHAPE)

        @property
        def singulars(self):
            return torch.ones(1, 24, dtype=torch.float64)

    class WrongSVD(Scale):
        def svd(self):
            return _HalfSVD()

    report = operators.check(WrongSVD(SHAPE), SHAPE)
    assert not report.ok
    assert report.svd_reconstruction == pytest.approx(0.5)  # U(1·Vᵀx) = x, A x = 2x
    assert report.svd_inverse < 1e-12 and report.svd_norm < 1e-12


def test_tolerances_can_be_set_and_non_operators_are_refused():
    report = operators.check(Scale(SHAPE), SHAPE, tolerances=(0.0, 0.0, 0.0))
    assert report.tolerances == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="`op` must be an operators.LinearOperator, got function"):
        operators.check(lambda x: x, SHAPE)
