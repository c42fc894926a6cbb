"""Operator details: exact values, per-image masks, composition, user operators, bad input."""


import pytest
import torch
import torch.nn.functional as F

import operators
from operators.superres import bicubic_matrix

SHAPE = (3, 24, 40)


def _x(batch=2, shape=SHAPE, seed=0, dtype=torch.float64):
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --- exact answers -------------------------------------------------------------------------------


def test_bicubic_weights_match_imresize_half():
    # MATLAB imresize(·, 0.5, 'bicubic') interior weights: Keys a = −0.5 at ±0.25, ±0.75, ±1.25, ±1.75.
    row = bicubic_matrix(32, 2)[8]
    expected = torch.tensor([-0.01171875, -0.03515625, 0.11328125, 0.43359375,
                             0.43359375, 0.11328125, -0.03515625, -0.01171875], dtype=torch.float64)
    torch.testing.assert_close(row[13:21], expected)
    assert float(row[:13].abs().sum() + row[21:].abs().sum()) == 0


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bicubic_preserves_constants_and_reflects(factor):
    m = bicubic_matrix(16, factor)
    torch.testing.assert_close(m.sum(1), torch.ones(16 // factor, dtype=torch.float64))
    # Symmetric boundary: flipping the input flips the output.
    torch.testing.assert_close(m.flip(0).flip(1), m)


def test_box_downsample_is_block_mean():
    x = torch.arange(16.0, dtype=torch.float64).view(1, 1, 4, 4)
    y = operators.make("sr2", image_shape=(1, 4, 4))(x)
    torch.testing.assert_close(y, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]], dtype=torch.float64))
    svd = operators.make("sr2", image_shape=(1, 4, 4)).svd()
    torch.testing.assert_close(svd.singulars, torch.tensor([[0.5] * 4 + [0.0] * 12],
                                                           dtype=torch.float64))


def test_separable_blur_is_zero_padded_convolution():
    k = torch.outer(operators.gaussian_kernel(1.5, 7), operators.gaussian_kernel(0.8, 5))
    op = operators.Blur(k, SHAPE)
    assert op.boundary == "zero"
    x = _x()
    reference = F.conv2d(x, k.flip(0, 1).expand(3, 1, 7, 5), padding=(3, 2), groups=3)
    torch.testing.assert_close(op(x), reference)


def test_nonseparable_blur_is_circular_convolution():
    k = operators.motion_kernel(7, generator=torch.Generator().manual_seed(3))
    op = operators.Blur(k, SHAPE)
    assert op.boundary == "circular"
    x = _x()
    reference = torch.zeros_like(x)
    for i in range(7):
        for j in range(7):
            reference += k[i, j] * x.roll((i - 3, j - 3), dims=(-2, -1))
    torch.testing.assert_close(op(x), reference)


def test_forced_circular_boundary_for_separable_kernel():
    k = torch.outer(operators.uniform_kernel(3), operators.uniform_kernel(3))
    op = operators.Blur(k, SHAPE, boundary="circular")
    assert op.boundary == "circular"
    assert operators.check(op, SHAPE).ok


def test_blur_without_image_shape_follows_input_size():
    k = operators.motion_kernel(5, generator=torch.Generator().manual_seed(0))
    op = operators.Blur(k)
    small, large = _x(shape=(1, 8, 12)), _x(shape=(3, 16, 10))
    torch.testing.assert_close(op(small), operators.Blur(k, (1, 8, 12))(small))
    torch.testing.assert_close(op.pinv(op(large)), operators.Blur(k, (3, 16, 10)).pinv(op(large)))
    # No hidden call history (issue 10): the SVD depends on the size, so it asks for it.
    with pytest.raises(ValueError, match=r"pass `image_shape=\(C, H, W\)`"):
        op.svd()
    assert operators.Blur(k, (3, 16, 10)).svd().singulars.shape == (1, 3 * 16 * 10)
    with pytest.raises(ValueError, match=r"does not fit this Blur, built for \[B, 3, 24, 40\]"):
        operators.Blur(k, SHAPE)(small)


def test_motion_kernel_is_seeded_normalised_and_nonseparable():
    a = operators.motion_kernel(61, 0.5, torch.Generator().manual_seed(7))
    b = operators.motion_kernel(61, 0.5, torch.Generator().manual_seed(7))
    c = operators.motion_kernel(61, 0.5, torch.Generator().manual_seed(8))
    assert a.shape == (61, 61) and torch.equal(a, b) and not torch.equal(a, c)
    assert abs(float(a.sum()) - 1) < 1e-12 and (a >= 0).all()
    s = torch.linalg.svdvals(a)
    assert s[1] > 0.05 * s[0]  # a real trajectory, not a line


def test_colorize_mean_and_svd():
    op = operators.make("colorize", image_shape=SHAPE)
    x = _x()
    torch.testing.assert_close(op(x), x.mean(1, keepdim=True))
    s = op.svd().singulars
    n = SHAPE[1] * SHAPE[2]
    torch.testing.assert_close(s[0, :n], torch.full((n,), 3**-0.5, dtype=torch.float64))
    assert (s[0, n:] == 0).all()
    # A† copies the gray value into every channel.
    torch.testing.assert_close(op.pinv(op(x)), op(x).expand(-1, 3, -1, -1))


# --- inpainting ----------------------------------------------------------------------------------


def test_inpainting_pinv_zero_where_missing_and_box_centred():
    op = operators.make("inpaint-box", image_shape=SHAPE, fraction=0.5)
    mask = op.mask[0, 0]
    assert not mask[6:18, 10:30].any() and mask.sum() == 24 * 40 - 12 * 20
    x = _x()
    p = op.pinv(op(x))
    assert (p[..., 6:18, 10:30] == 0).all()
    torch.testing.assert_close(p, x * mask)


def test_user_mask_shapes_and_per_image_singulars():
    masks = torch.rand(2, 1, 24, 40, generator=torch.Generator().manual_seed(0)) > 0.3
    op = operators.Inpainting(masks.float(), image_shape=SHAPE)
    x = _x()
    torch.testing.assert_close(op(x), x * masks)
    svd = op.svd()
    assert svd.singulars.shape == (2, 3 * 24 * 40)
    torch.testing.assert_close(svd.singulars.sum(1), 3 * masks.flatten(1).sum(1).double())
    assert operators.check(op, SHAPE).ok
    with pytest.raises(ValueError, match="does not fit"):
        op(_x(batch=3))
    # A [H, W] mask needs no image shape for forward; its SVD needs the channel count, which it
    # asks for rather than remembering it from earlier calls (issue 10).
    shared = operators.Inpainting(masks[0, 0])
    torch.testing.assert_close(shared(x), x * masks[0])
    with pytest.raises(ValueError, match=r"pass `image_shape=\(C, H, W\)`"):
        shared.svd()
    assert operators.Inpainting(masks[0, 0], SHAPE).svd().singulars.shape == (1, 3 * 24 * 40)


def test_per_image_generators_give_per_image_masks():
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    op = operators.make("inpaint-random", image_shape=SHAPE, generator=gens, drop=0.7)
    assert op.mask.shape == (2, 1, 24, 40)
    assert not torch.equal(op.mask[0], op.mask[1])
    alone = operators.make("inpaint-random", image_shape=SHAPE,
                           generator=[torch.Generator().manual_seed(2)], drop=0.7)
    assert torch.equal(alone.mask[0], op.mask[1])
    assert abs(float(op.mask.float().mean()) - 0.3) < 0.05
    again = operators.make("inpaint-random", image_shape=SHAPE, drop=0.7)
    assert torch.equal(again.mask, operators.make("inpaint-random", image_shape=SHAPE, drop=0.7).mask)


@pytest.mark.parametrize("side", ["right", "left", "top", "bottom"])
def test_inpaint_half(side):
    m = operators.make("inpaint-half", image_shape=SHAPE, side=side).mask[0, 0]
    assert int(m.sum()) == 24 * 40 // 2
    cut = {"right": m[:, 20:], "left": m[:, :20], "top": m[:12], "bottom": m[12:]}[side]
    assert not cut.any()


def test_freeform_mask_is_seeded_and_partial():
    a = operators.make("inpaint-freeform", image_shape=(3, 64, 64),
                       generator=torch.Generator().manual_seed(4)).mask
    b = operators.make("inpaint-freeform", image_shape=(3, 64, 64),
                       generator=torch.Generator().manual_seed(4)).mask
    assert torch.equal(a, b)
    assert 0.03 < 1 - float(a.float().mean()) < 0.7


# --- composition and user operators --------------------------------------------------------------


class ForwardOnlyShift(operators.LinearOperator):
    """A user's operator: only `forward`, a one-pixel shift-and-average with a crop."""

    def forward(self, x):
        return 0.5 * (x[..., 1:, :] + x[..., :-1, :])


def test_forward_only_operator_through_fallbacks_and_check():
    op = ForwardOnlyShift(image_shape=SHAPE)
    report = operators.check(op, SHAPE)
    assert report.ok, str(report)
    assert report.svd_reconstruction is None and "svd" in str(report)
    # The autograd adjoint equals the hand-written one.
    y = _x(shape=(3, 23, 40))
    expected = torch.zeros(2, *SHAPE, dtype=torch.float64)
    expected[..., 1:, :] += 0.5 * y
    expected[..., :-1, :] += 0.5 * y
    torch.testing.assert_close(op.adjoint(y), expected)


def test_check_reports_a_broken_adjoint():
    class Broken(ForwardOnlyShift):
        def adjoint(self, y):
            return F.pad(y, (0, 0, 1, 0))

    report = operators.check(Broken(image_shape=SHAPE), SHAPE)
    assert not report.ok and "too large" in str(report)


def test_compose_mask_after_downsampling():
    sr = operators.make("sr4", image_shape=SHAPE)
    mask = operators.Inpainting(operators.random_mask(6, 10, 0.5), image_shape=(3, 6, 10))
    op = mask @ sr
    assert isinstance(op, operators.Compose) and op.svd() is None
    x = _x()
    torch.testing.assert_close(op(x), mask(sr(x)))
    report = operators.check(op, SHAPE)
    assert report.ok, str(report)
    # CG pinv equals the closed form: upsample the observed low-resolution pixels.
    torch.testing.assert_close(op.pinv(op(x)), sr.pinv(mask(sr(x))), rtol=1e-6, atol=1e-6)


# --- noise ---------------------------------------------------------------------------------------


def test_gaussian_noise_seeding_and_scale():
    noise = operators.GaussianNoise(0.1)
    y = torch.zeros(2, 3, 64, 64, dtype=torch.float64)
    a = noise(y, torch.Generator().manual_seed(0))
    assert torch.equal(a, noise(y, torch.Generator().manual_seed(0)))
    assert abs(float(a.std()) - 0.2) < 0.01  # sigma on [0, 1] is 2·sigma on [-1, 1]
    gens = lambda *s: [torch.Generator().manual_seed(i) for i in s]  # noqa: E731
    pair = noise(y, gens(5, 6))
    assert torch.equal(pair[1:], noise(y[:1], gens(6)))


def test_poisson_noise_statistics_and_seeding():
    rate = 50.0
    x01 = torch.full((4, 1, 64, 64), 0.3, dtype=torch.float64)
    noise = operators.PoissonNoise(rate)
    y = noise(x01 * 2 - 1, torch.Generator().manual_seed(0))
    counts = (y + 1) / 2 * rate
    torch.testing.assert_close(counts, counts.round())
    y01 = (y + 1) / 2
    assert abs(float(y01.mean()) - 0.3) < 0.005
    assert abs(float(y01.var()) / (0.3 / rate) - 1) < 0.05
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    per_image = noise(x01 * 2 - 1, gens)
    torch.testing.assert_close(per_image[2:3], noise(x01[:1] * 2 - 1, [torch.Generator().manual_seed(2)]))


def test_degradation_keeps_missing_pixels_zero():
    op = operators.make("inpaint-box", image_shape=SHAPE)
    degrade = operators.Degradation(op, operators.GaussianNoise(0.05))
    x = _x()
    y = degrade(x, generator=torch.Generator().manual_seed(0))
    assert (y[..., 6:18, 10:30] == 0).all()
    assert float((y - op(x)).abs().max()) > 0
    assert degrade.sigma_y == 0.05
    torch.testing.assert_close(degrade(x, torch.Generator().manual_seed(0)), y)


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("call, match", [
    (lambda: operators.make("nope"), "unknown operator 'nope'.*sr4"),
    (lambda: operators.make("sr4", image_shape=SHAPE, sigma=1.0), "unknown parameter.*sigma.*none"),
    (lambda: operators.make("blur-gauss", image_shape=SHAPE, sigmaa=1.0), "sigmaa.*sigma, size"),
    (lambda: operators.make("sr4", image_shape=(3, 50, 80)), "height 50 .*factor. 4"),
    (lambda: operators.make("sr8-bicubic", image_shape=(3, 48, 84)), "width 84 .*factor. 8"),
    (lambda: operators.Blur(torch.ones(3), SHAPE), "2-D"),
    (lambda: operators.Blur(torch.ones(4, 3), SHAPE), "odd"),
    (lambda: operators.Blur(torch.full((3, 3), float("nan")), SHAPE), "NaN"),
    (lambda: operators.make("colorize", image_shape=(1, 8, 8)), "1 channel"),
    (lambda: operators.Inpainting(torch.ones(20, 40), image_shape=SHAPE), "does not fit"),
    (lambda: operators.Inpainting(torch.full((24, 40), 0.5)), "only 0 .* and 1"),
    (lambda: operators.GaussianNoise(-0.1), "sigma"),
    (lambda: operators.PoissonNoise(0), "rate"),
    (lambda: operators.make("inpaint-random", image_shape=SHAPE, drop=1.5), "drop"),
    (lambda: operators.make("inpaint-half", image_shape=SHAPE, side="up"), "side"),
])
def test_bad_construction_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_bad_inputs_raise():
    x = _x()
    with pytest.raises(ValueError, match=r"\[B, 3, 24, 40\].*\[2, 3, 24, 48\]"):
        operators.make("sr4", image_shape=SHAPE)(_x(shape=(3, 24, 48)))
    with pytest.raises(ValueError, match="colorization"):
        operators.make("colorize", image_shape=SHAPE)(x[:, :1])
    with pytest.raises(ValueError, match="does not fit"):
        operators.make("inpaint-box", image_shape=SHAPE)(_x(shape=(3, 24, 41)))
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="1 NaN or inf"):
        operators.Degradation(operators.make("denoise", image_shape=SHAPE))(bad)
    with pytest.raises(ValueError, match="list of 1 generators but the batch has 2"):
        operators.GaussianNoise(0.1)(x, [torch.Generator()])


def test_a_mask_that_observes_nothing_warns_and_one_that_observes_something_does_not():
    import warnings

    with pytest.warns(UserWarning, match="observes no pixel"):
        operators.Inpainting(torch.zeros(8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        operators.Inpainting(torch.eye(8))
