"""Every registered operator against the contract, on a non-square image in float64."""

import pytest
import torch

import operators

SHAPE = (3, 48, 80)
# Parameters that make an operator fit the small test image.
PARAMS = {"blur-motion": {"size": 31}}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module", params=operators.available())
def case(request):
    name = request.param
    op = operators.make(name, image_shape=SHAPE, **PARAMS.get(name, {}))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, *SHAPE, generator=g, dtype=torch.float64)
    return name, op, x, g


def test_adjointness(case):
    _, op, x, g = case
    Ax = op(x)
    y = torch.randn(Ax.shape, generator=g, dtype=torch.float64)
    lhs, rhs = (Ax * y).sum(), (x * op.adjoint(y)).sum()
    assert abs(float(lhs - rhs)) <= 1e-8 * float(x.norm() * y.norm())


def test_pinv_solves_consistent_system(case):
    _, op, x, _ = case
    Ax = op(x)
    assert _rel(op(op.pinv(Ax)), Ax) < 1e-8


def test_pinv_is_minimum_norm(case):
    # A†y lies in the row space: no component along a zero singular value. Hence A†(Ax) is the
    # projection of x and no longer than x (up to rounding amplified by tiny singular values).
    _, op, x, g = case
    y = torch.randn(op(x).shape, generator=g, dtype=torch.float64)  # not in the range in general
    svd = op.svd()
    c = svd.Vt(op.pinv(y))
    null = svd.singulars.to(c) == 0
    assert float((c * null).norm()) <= 1e-10 * float(c.norm())
    assert float(op.pinv(op(x)).norm()) <= float(x.norm()) * (1 + 1e-6)


def test_svd(case):
    name, op, x, g = case
    svd = op.svd()
    assert svd is not None, f"{name} should have an SVD"
    Ax = op(x)
    n = x[0].numel()
    c = svd.Vt(x)
    s = svd.singulars.to(c)
    assert c.shape == (2, n) and s.shape[1] == n and s.shape[0] in (1, 2)
    assert (s >= 0).all() and (s[:, :1] > 0).all()
    assert _rel(svd.U(s * c), Ax) < 1e-10
    assert _rel(svd.V(c), x) < 1e-10
    assert abs(float(c.norm() - x.norm())) < 1e-10 * float(x.norm())
    # Ut zero-pads: spectral components of y where s = 0 must be zero for y in the range of A.
    assert float((svd.Ut(Ax) * (s == 0)).abs().max()) < 1e-10 * float(Ax.abs().max())
    y = torch.randn(Ax.shape, generator=g, dtype=torch.float64)
    torch.testing.assert_close(svd.V(s * svd.Ut(y)), op.adjoint(y))


def test_pinv_refuses_nan_or_inf(case):
    # every closed-form pinv (eight overrides) and the CG fallback, through one wrapper
    _, op, x, _ = case
    y = op(x).clone()  # the identity's y is x itself, shared by the module's tests
    y.view(-1)[[0, -1]] = torch.tensor([float("inf"), float("nan")], dtype=y.dtype)
    with pytest.raises(ValueError, match=r"`y` contains 2 NaN or inf values; \w+\.pinv accepts "
                                         r"finite observations"):
        op.pinv(y)


def test_float32_follows_input(case):
    _, op, x, _ = case
    x32 = x.float()
    y = op(x32)
    assert y.dtype == torch.float32
    assert op.adjoint(y).dtype == torch.float32 and op.pinv(y).dtype == torch.float32
    svd = op.svd()
    assert svd.Vt(x32).dtype == torch.float32 and svd.U(svd.Ut(y)).dtype == torch.float32
    assert _rel(y.double(), op(x)) < 1e-5
    # The float32 pseudo-inverse stays stable: A†A is a projection, up to rounding.
    p = op.pinv(y)
    assert float(p.norm()) <= 1.01 * float(x32.norm())
    assert _rel(op(p), y) < 1e-3


def test_output_shape_matches_forward(case):
    _, op, x, _ = case
    assert op.output_shape(x.shape) == tuple(op(x).shape)
    assert op.output_shape(SHAPE) == tuple(op(x).shape[1:])


def test_check_report_is_ok(case):
    name, op, _, _ = case
    report = operators.check(op, SHAPE)
    assert report.ok, str(report)
    assert report.svd_reconstruction is not None


def test_available_is_sorted_and_complete():
    names = operators.available()
    assert names == sorted(names)
    expected = {
        "inpaint-box", "inpaint-random", "inpaint-half", "inpaint-freeform", "sr2", "sr4", "sr8",
        "sr2-bicubic", "sr4-bicubic", "sr8-bicubic", "blur-gauss", "blur-uniform", "blur-aniso",
        "blur-motion", "colorize", "denoise",
    }
    assert expected <= set(names)
    for name in expected:
        assert operators.describe(name).startswith(f"{name}: ")
