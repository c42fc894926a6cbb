"""Properties every solver shares (shapes, determinism, batch independence, errors), plus exact
answers that single out each method."""

import math

import pytest
import torch

import operators
from nested_inverse import GaussianMixturePrior
from nested_inverse.solvers import DAPS, DDNM, DDRM, DPS, DiffPIR, PiGDM

SOLVERS = [DDRM, DDNM, PiGDM, DPS, DiffPIR, DAPS]
#: Solvers whose noiseless result satisfies A x0 = y exactly.
PROJECTING = [DDRM, DDNM, DAPS]
#: A parameter value each solver refuses, and the name its message must carry.
BAD_PARAM = {DDRM: ("eta", 1.5), DDNM: ("eta", 1.5), PiGDM: ("eta", 1.5), DPS: ("eta", 1.5),
             DiffPIR: ("zeta", 1.5), DAPS: ("ode_steps", 0)}


def small_gmm(generator, k=4, d=16, event_shape=(1, 4, 4)):
    weights = torch.rand(k, generator=generator, dtype=torch.float64) + 0.2
    means = torch.randn(k, d, generator=generator, dtype=torch.float64)
    roots = 0.3 * torch.randn(k, d, d, generator=generator, dtype=torch.float64) / math.sqrt(d)
    covs = roots @ roots.transpose(-1, -2) + 0.02 * torch.eye(d, dtype=torch.float64)
    return GaussianMixturePrior(weights, means, covs, event_shape)


@pytest.fixture
def problem(generator):
    prior = small_gmm(generator)
    op = operators.MatrixOperator(torch.randn(6, 16, generator=generator, dtype=torch.float64),
                                  (1, 4, 4))
    x = prior.sample(3, generator)
    return prior, op, x, op(x)


def gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


class FlatOperator(operators.LinearOperator):
    """A forward-only user operator: no SVD, adjoint by autograd, pinv by CG."""

    def __init__(self, matrix):
        super().__init__((1, 4, 4))
        self.matrix = matrix

    def forward(self, x):
        return x.flatten(1) @ self.matrix.to(x).T


# ------------------------------------------------------------------------------------ shared
@pytest.mark.parametrize("cls", SOLVERS)
def test_same_generators_same_output_and_batch_independence(cls, problem):
    prior, op, _, y = problem
    solver = cls(prior, op, y, sigma_y=0.02)
    a = solver.sample(steps=4, generator=gens(1, 2, 3))
    b = solver.sample(steps=4, generator=gens(1, 2, 3))
    assert a.shape == y.shape[:1] + (1, 4, 4)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # Image 1 alone, with its own generator, gives what it gave inside the batch of 3.
    alone = cls(prior, op, y[1:2], sigma_y=0.02).sample(steps=4, generator=gens(2))
    torch.testing.assert_close(alone, a[1:2], rtol=0, atol=1e-12)
    # A different generator for image 1 changes only image 1.
    c = solver.sample(steps=4, generator=gens(1, 7, 3))
    torch.testing.assert_close(c[[0, 2]], a[[0, 2]], rtol=0, atol=1e-12)
    assert not torch.allclose(c[1], a[1])


@pytest.mark.parametrize("cls", SOLVERS)
def test_states_count_evaluations_and_end_at_the_result(cls, problem):
    prior, op, _, y = problem
    states = list(cls(prior, op, y).iterate(steps=5, generator=torch.Generator().manual_seed(0)))
    assert [s.nfe for s in states] == [1, 2, 3, 4, 5]
    assert [s.vjp for s in states] == [cls.vjp_per_step * (i + 1) for i in range(5)]
    assert states[-1].t == -1
    torch.testing.assert_close(states[-1].x_t, states[-1].x0_hat)
    assert all(torch.isfinite(s.x_t).all() and torch.isfinite(s.x0_hat).all() for s in states)


@pytest.mark.parametrize("cls", PROJECTING)
def test_noiseless_result_is_consistent_with_y(cls, problem):
    prior, op, _, y = problem
    x0 = cls(prior, op, y).sample(steps=5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(op(x0), y, rtol=0, atol=1e-9)


@pytest.mark.parametrize("cls", SOLVERS)
def test_inner_use_from_a_given_state(cls, problem):
    prior, op, x, y = problem
    t = 300
    a = float(prior.alphas_cumprod[t])
    g = torch.Generator().manual_seed(0)
    x_t = math.sqrt(a) * x + math.sqrt(1 - a) * torch.randn(x.shape, generator=g, dtype=x.dtype)
    states = list(cls(prior, op, y).iterate(x_t=x_t, t_start=t, steps=3, generator=g))
    assert [s.t for s in states] == [150, 1, -1]
    if cls in PROJECTING:
        torch.testing.assert_close(op(states[-1].x_t), y, rtol=0, atol=1e-9)
    # (x_t, t) of any state is a valid restart point.
    again = cls(prior, op, y).sample(x_t=states[0].x_t, t_start=states[0].t, steps=2,
                                     generator=torch.Generator().manual_seed(0))
    assert again.shape == x.shape


@pytest.mark.parametrize("cls", SOLVERS)
def test_float32_batches(cls, problem):
    prior, op, _, y = problem
    x0 = cls(prior, op, y.float(), sigma_y=0.05).sample(steps=3, generator=torch.Generator())
    assert x0.dtype == torch.float32 and x0.shape == (3, 1, 4, 4)
    assert torch.isfinite(x0).all()


@pytest.mark.parametrize("cls", SOLVERS)
def test_per_image_masks(cls, generator):
    """Inpainting with one mask per image: per-image singulars ``[B, N]``."""
    prior = small_gmm(generator, d=16, event_shape=(1, 4, 4))
    mask = torch.rand(2, 1, 4, 4, generator=generator) > 0.5
    op = operators.Inpainting(mask, image_shape=(1, 4, 4))
    x = prior.sample(2, generator)
    y = op(x)
    x0 = cls(prior, op, y).sample(steps=4, generator=gens(0, 1))
    assert x0.shape == x.shape and torch.isfinite(x0).all()
    if cls in PROJECTING:
        torch.testing.assert_close(x0[mask], x[mask], rtol=0, atol=1e-9)


@pytest.fixture(scope="module")
def tiny_unet_prior():
    """A tiny random UNet (downsampling factor 8) behind DiffusionPrior."""
    from diffusers import UNet2DModel

    from nested_inverse import DiffusionPrior

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(8,) * 4,
                       layers_per_block=1, norm_num_groups=4, down_block_types=("DownBlock2D",) * 4,
                       up_block_types=("UpBlock2D",) * 4)
    return DiffusionPrior(unet, {"beta_schedule": "linear", "clip_sample": True})


@pytest.mark.parametrize("cls", SOLVERS)
def test_image_size_not_a_multiple_of_eight(cls, tiny_unet_prior):
    """3×36×44 goes through DiffusionPrior's padding (and, for ΠGDM and DPS, its backward)."""
    op = operators.make("sr4", image_shape=(3, 36, 44))
    y = op(torch.rand(1, 3, 36, 44, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    x0 = cls(tiny_unet_prior, op, y, sigma_y=0.01).sample(steps=2, generator=torch.Generator())
    assert x0.shape == (1, 3, 36, 44) and torch.isfinite(x0).all()


@pytest.mark.parametrize("cls", SOLVERS)
def test_bad_input_is_reported(cls, problem):
    prior, op, _, y = problem
    with pytest.raises(ValueError, match="shape"):
        cls(prior, op, y[:, :5])
    with pytest.raises(ValueError, match="sigma_y"):
        cls(prior, op, y, sigma_y=-0.1)
    bad = y.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        cls(prior, op, bad)
    solver = cls(prior, op, y)
    with pytest.raises(ValueError, match="steps"):
        solver.sample(steps=0)
    with pytest.raises(ValueError, match="t_start"):
        solver.sample(t_start=1000)
    with pytest.raises(ValueError, match="t_start"):
        solver.sample(x_t=torch.zeros(3, 1, 4, 4, dtype=torch.float64))
    with pytest.raises(TypeError, match="bogus"):
        cls(prior, op, y, bogus=1)
    name, value = BAD_PARAM[cls]
    with pytest.raises(ValueError, match=name):
        cls(prior, op, y, **{name: value})


# -------------------------------------------------------------------------------------- DDRM
def test_ddrm_without_svd_names_the_operator_and_alternatives(problem):
    prior, op, _, y = problem
    flat = FlatOperator(op.matrix)
    with pytest.raises(ValueError, match="FlatOperator.*DDNM"):
        DDRM(prior, flat, y)


def test_ddrm_spectral_initialisation(generator):
    """From noise, observed components of x̄_T = Vᵀx_T/√ᾱ_T start at ȳ plus the missing noise."""
    prior = small_gmm(generator)
    op = operators.MatrixOperator(torch.randn(4, 16, generator=generator, dtype=torch.float64),
                                  (1, 4, 4))
    sigma_y = 0.4  # 2σ_y/s_i exceeds σ_t = √((1−ᾱ)/ᾱ) at t = 50 for the smaller singulars
    y = op(prior.sample(1, generator)).expand(20000, -1)
    solver = DDRM(prior, op, y, sigma_y=sigma_y)
    t = 50
    a = float(prior.alphas_cumprod[t])
    x_bar = solver.svd.Vt(solver.initial_state(t, generator)) / math.sqrt(a)
    sig = math.sqrt((1 - a) / a)
    s = solver.svd.singulars[0]
    noise = 2 * sigma_y / s[:4]
    missing = (sig**2 - noise**2).clamp_min(0)
    assert (missing == 0).any() and (missing > 0).any()
    mean = torch.where(missing > 0, solver.y_bar[0, :4], 0.0)
    std = torch.where(missing > 0, missing.sqrt(), sig)
    torch.testing.assert_close(x_bar[:, :4].mean(0), mean, atol=4 * sig / 141, rtol=0)
    torch.testing.assert_close(x_bar[:, :4].std(0), std, rtol=0.03, atol=0)
    torch.testing.assert_close(x_bar[:, 4:].std(0), torch.full((12,), sig, dtype=torch.float64),
                               rtol=0.03, atol=0)


# ------------------------------------------------------------------------------------- DDNM+
def test_ddnm_plus_is_plain_ddnm_when_noiseless_or_switched_off(problem):
    prior, op, _, y = problem
    run = lambda **kw: DDNM(prior, op, y, **kw).sample(steps=4, generator=gens(0, 1, 2))  # noqa: E731
    torch.testing.assert_close(run(plus=True), run(plus=False), rtol=0, atol=0)
    assert DDNM(prior, op, y, sigma_y=0.05).plus and not DDNM(prior, op, y, sigma_y=0.05,
                                                              plus=False).plus
    assert not torch.allclose(run(sigma_y=0.05), run(sigma_y=0.05, plus=False))


def test_ddnm_plus_scalar_version_matches_svd_for_unit_singulars(generator):
    """For a mask every singular value is 1, so the pinv-only (scalar) DDNM+ is exact."""
    prior = small_gmm(generator)
    mask = torch.rand(1, 1, 4, 4, generator=generator) > 0.4
    op = operators.Inpainting(mask, image_shape=(1, 4, 4))
    y = op(prior.sample(2, generator))
    with_svd = DDNM(prior, op, y, sigma_y=0.1)
    scalar = DDNM(prior, op, y, sigma_y=0.1)
    scalar.svd = None
    a = with_svd.sample(steps=5, generator=gens(0, 1))
    b = scalar.sample(steps=5, generator=gens(0, 1))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_ddnm_plus_keeps_the_schedule_noise(generator):
    """Where y's noise exceeds what x_s should hold, DDNM+ keeps x_s at the schedule's noise level
    √(1−ᾱ_s) on observed components; plain DDNM overshoots."""
    d = 16
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, d, dtype=torch.float64),
                                 torch.eye(d, dtype=torch.float64)[None], (1, 4, 4))
    op = operators.MatrixOperator(torch.eye(d, dtype=torch.float64)[:4], (1, 4, 4))
    n, sigma_y, t, s = 20000, 0.25, 100, 50
    x0 = torch.zeros(n, 1, 4, 4, dtype=torch.float64)
    y = op(x0) + 2 * sigma_y * torch.randn(n, 4, generator=generator, dtype=torch.float64)
    a_t, a_s = float(prior.alphas_cumprod[t]), float(prior.alphas_cumprod[s])
    # At x_t = 0 the prior predicts x̂0 = ε̂ = 0, so x_s's spread is y's noise carried by the
    # correction plus the fresh DDIM noise: DDNM+ caps it at b = √(1−ᾱ_s) (here c > b, so the
    # correction is scaled to λ = b/c and no fresh noise is added).
    x_t = torch.zeros_like(x0)
    spread = {}
    for plus in (True, False):
        solver = DDNM(prior, op, y, sigma_y=sigma_y, plus=plus)
        x_s, _ = solver.step(x_t, t, s, generator)
        spread[plus] = float(x_s.flatten(1)[:, :4].std())
    b, c = math.sqrt(1 - a_s), math.sqrt(a_s) * 2 * sigma_y
    assert c > 1.5 * b
    assert abs(spread[True] - b) < 0.03 * b
    assert abs(spread[False] - math.sqrt(c**2 + 0.85**2 * (1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
               ) < 0.03 * c


# ------------------------------------------------------------------------------------- ΠGDM
def test_pigdm_conjugate_gradients_match_the_svd(problem):
    """Noisy ΠGDM without an SVD (CG on r²AAᵀ + σ_y²I) agrees with the spectral form."""
    prior, op, _, y = problem
    a = PiGDM(prior, op, y, sigma_y=0.05).sample(steps=3, generator=gens(0, 1, 2))
    b = PiGDM(prior, FlatOperator(op.matrix), y, sigma_y=0.05, cg_tol=1e-10).sample(
        steps=3, generator=gens(0, 1, 2))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


# -------------------------------------------------------------------------------------- DPS
def test_dps_with_a_nonlinear_forward_model(generator):
    prior = small_gmm(generator, k=1)  # one mode: the misfit measures guidance, not mode luck
    matrix = torch.randn(6, 16, generator=generator, dtype=torch.float64)

    def forward(x):  # saturating, so visibly non-linear on the prior's range
        return torch.tanh(0.3 * x.flatten(1) @ matrix.T)

    x = prior.sample(3, generator)
    y = forward(x)
    with pytest.raises(ValueError, match="image_shape"):
        DPS(prior, forward, y)
    with pytest.raises(ValueError, match="shape"):
        DPS(prior, forward, y[:, :4], image_shape=(1, 4, 4))
    solver = DPS(prior, forward, y, image_shape=(1, 4, 4), zeta=0.3)
    torch.testing.assert_close(solver.y_pinv, torch.zeros_like(x))
    misfit = {}
    for zeta in (1e-9, 0.3):
        x0 = DPS(prior, forward, y, image_shape=(1, 4, 4), zeta=zeta).sample(
            steps=40, generator=gens(0, 1, 2))
        misfit[zeta] = (forward(x0) - y).norm(dim=1)
    # Measured: 0.50/0.58/0.26 guided vs 0.77/1.08/0.94 unguided (40 steps; DPS needs many more).
    assert (misfit[0.3] < 0.8 * misfit[1e-9]).all(), misfit
    assert misfit[0.3].mean() < 0.65 * misfit[1e-9].mean(), misfit


def test_dps_poisson_likelihood_weights_dark_pixels_more(generator):
    prior = small_gmm(generator)
    op = operators.MatrixOperator(torch.eye(16, dtype=torch.float64)[:4], (1, 4, 4))
    y = torch.tensor([[-0.9, 0.0, 0.5, 0.9]], dtype=torch.float64)
    solver = DPS(prior, op, y, likelihood="poisson")
    x0 = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    x0.view(-1)[:4] = y[0] + 0.1  # the same misfit on every observed pixel
    weights = 1 / (2 * (y + 1) / 2)
    torch.testing.assert_close(solver.misfit(x0), 0.1 * weights.sum().sqrt().view(1))
    with pytest.raises(ValueError, match="likelihood"):
        DPS(prior, op, y, likelihood="laplace")
    with pytest.raises(ValueError, match="zeta"):
        DPS(prior, op, y, zeta=0)


def test_ddrm_noiseless_deblurring_stays_bounded_with_tiny_singular_values():
    """Gaussian blur has tiny singular values: ȳ = Uᵀy/s must not amplify y's quantisation."""
    from nested_inverse import DDRM, GaussianMixturePrior

    op = operators.make("blur-gauss", image_shape=(1, 8, 8), sigma=2.0, size=7)
    assert float(op.svd().singulars.min()) < 1e-4
    prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 64), 0.3 * torch.eye(64)[None],
                                 event_shape=(1, 8, 8))
    g = torch.Generator().manual_seed(0)
    x = prior.sample(2, g).float()
    y = (((op(x) + 1) / 2 * 255).round() / 255) * 2 - 1  # as if read from an 8-bit PNG
    out = DDRM(prior, op, y).sample(steps=5, generator=g)
    assert out.abs().max() < 5  # without the cut-off: ~1e5
    loose = DDRM(prior, op, y, rcond=0.0).sample(steps=5, generator=torch.Generator().manual_seed(0))
    assert loose.abs().max() > 10 * out.abs().max()  # the cut-off is what keeps it bounded
