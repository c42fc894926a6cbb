import pytest
import torch

import operators


class ForwardOnly(operators.LinearOperator):
    """A user-style operator: only `forward` is written."""

    def __init__(self, matrix: torch.Tensor, image_shape):
        super().__init__(image_shape)
        self.matrix = matrix

    def forward(self, x):
        return x.flatten(1) @ self.matrix.T


@pytest.fixture
def matrix(generator):
    return torch.randn(7, 16, generator=generator, dtype=torch.float64)


def test_matrix_operator_svd_reconstructs(matrix, generator):
    op = operators.MatrixOperator(matrix, (1, 4, 4))
    x = torch.randn(3, 1, 4, 4, generator=generator, dtype=torch.float64)
    svd = op.svd()
    torch.testing.assert_close(svd.U(svd.singulars * svd.Vt(x)), op(x))
    torch.testing.assert_close(svd.V(svd.Vt(x)), x)
    assert (svd.singulars[0, 7:] == 0).all() and (svd.singulars[0, :7] > 0).all()


def test_forward_only_fallbacks_match_closed_forms(matrix, generator):
    exact = operators.MatrixOperator(matrix, (1, 4, 4))
    user = ForwardOnly(matrix, (1, 4, 4))
    assert user.svd() is None
    y = torch.randn(3, 7, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(user.adjoint(y), exact.adjoint(y))
    # CG tolerance is 1e-6 relative: the answers agree to about that.
    torch.testing.assert_close(user.pinv(y), exact.pinv(y), rtol=1e-5, atol=1e-5)


def test_pinv_is_minimum_norm_for_rank_deficient(generator):
    low = torch.randn(7, 2, generator=generator, dtype=torch.float64)
    matrix = low @ torch.randn(2, 16, generator=generator, dtype=torch.float64)  # rank 2
    exact = operators.MatrixOperator(matrix, (1, 4, 4))
    user = ForwardOnly(matrix, (1, 4, 4))
    y = torch.randn(2, 7, generator=generator, dtype=torch.float64)  # not in the range
    reference = (torch.linalg.pinv(matrix) @ y.T).T.view(2, 1, 4, 4)
    torch.testing.assert_close(exact.pinv(y), reference)
    torch.testing.assert_close(user.pinv(y), reference, rtol=1e-5, atol=1e-5)


def test_autograd_adjoint_without_shape_asks_for_one(matrix):
    user = ForwardOnly(matrix, None)
    with pytest.raises(ValueError, match="image_shape"):
        user.adjoint(torch.zeros(1, 7, dtype=torch.float64))


def test_matrix_operator_rejects_mismatched_shape(matrix):
    with pytest.raises(ValueError, match="columns"):
        operators.MatrixOperator(matrix, (1, 4, 5))


@pytest.mark.parametrize("name", ["sr2", "inpaint-box", "blur-gauss", "colorize", "denoise"])
def test_nan_or_inf_input_is_a_clear_error(name):
    op = operators.make(name, image_shape=(3, 8, 8))
    x = torch.zeros(1, 3, 8, 8)
    x[0, 0, 0, 0], x[0, 1, 2, 3] = float("nan"), float("inf")
    with pytest.raises(ValueError, match=r"`x` contains 2 NaN or inf values; \w+ accepts finite"):
        op(x)
    assert torch.isfinite(op(torch.zeros(1, 3, 8, 8))).all()


def test_composition_checks_its_input_once():
    inner = operators.make("blur-gauss", image_shape=(3, 8, 8))
    op = operators.make("sr2", image_shape=(3, 8, 8)) @ inner
    with pytest.raises(ValueError, match="Compose accepts finite"):
        op(torch.full((1, 3, 8, 8), float("nan")))


def test_finite_input_whose_sum_overflows_is_accepted():
    op = operators.make("denoise", image_shape=(1, 2, 2))
    x = torch.full((1, 1, 2, 2), 3e38)  # finite float32 values; their sum is inf
    assert torch.equal(op(x), x)


def test_a_users_own_pinv_checks_its_input_too(matrix):
    class Halve(operators.LinearOperator):
        def forward(self, x):
            return 0.5 * x

        def pinv(self, y):
            return 2.0 * y

    class Quarter(Halve):  # an override of an override: wrapped too
        def forward(self, x):
            return 0.5 * super().forward(x)

        def pinv(self, y):
            return 2.0 * super().pinv(y)

    x = torch.arange(4.0).reshape(1, 1, 2, 2)
    for op in (Halve(image_shape=(1, 2, 2)), Quarter(image_shape=(1, 2, 2))):
        assert torch.equal(op.pinv(op(x)), x)
        with pytest.raises(ValueError, match=r"`y` contains 1 NaN or inf values; \w+\.pinv"):
            op.pinv(torch.tensor([[[[1.0, float("inf")], [0.0, 0.0]]]]))
    big = torch.full((1, 1, 2, 2), 3e38)  # finite, though its sum overflows
    assert torch.isfinite(Halve(image_shape=(1, 2, 2)).pinv(big / 2)).all()
