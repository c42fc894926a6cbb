import math

import pytest
import torch

from nested_inverse.metrics import (
    anytime_quality,
    lpips,
    lpips_available,
    psnr,
    sliced_wasserstein,
    ssim,
)


def images(seed=0, shape=(2, 3, 32, 32)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def test_psnr_exact_values():
    x = images()
    torch.testing.assert_close(psnr(x + 0.1, x), torch.full((2,), 20.0, dtype=torch.float64))
    torch.testing.assert_close(psnr(x + 0.2, x, data_range=2.0),
                               torch.full((2,), 20.0, dtype=torch.float64))
    assert torch.isinf(psnr(x, x)).all()
    # Per image: only the second image is perturbed.
    y = x.clone()
    y[1] += 0.01
    out = psnr(y, x)
    assert out.shape == (2,) and math.isinf(out[0]) and abs(out[1] - 40.0) < 1e-4


def test_ssim_matches_the_reference_implementation():
    skimage = pytest.importorskip("skimage.metrics")
    x = images()
    z = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    ours = ssim(z, x)
    for i in range(2):
        ref = skimage.structural_similarity(
            x[i].permute(1, 2, 0).numpy(), z[i].permute(1, 2, 0).numpy(), gaussian_weights=True,
            sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=2)
        assert abs(float(ours[i]) - float(ref)) < 1e-5


def test_ssim_properties_and_a_pinned_value():
    x = images()
    torch.testing.assert_close(ssim(x, x), torch.ones(2, dtype=torch.float64))
    z = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    torch.testing.assert_close(ssim(z, x), ssim(x, z))
    more = (x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert (ssim(more, x) < ssim(z, x)).all()
    # Pinned (measured; equals scikit-image 0.26 to 1e-6).
    torch.testing.assert_close(ssim(z, x), torch.tensor([0.944062, 0.947183], dtype=torch.float64),
                               atol=1e-5, rtol=0)
    # Smaller than the window: the largest odd window that fits.
    small = images(shape=(1, 1, 6, 8))
    assert float(ssim(small, small)) == pytest.approx(1.0)


def test_image_metrics_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="shape"):
        psnr(images(), images(shape=(2, 3, 16, 16)))
    with pytest.raises(ValueError, match="tensors"):
        ssim(images().numpy(), images())


def test_anytime_quality_by_hand():
    # Available: 1.0 for n = 1..3, 2.0 for n = 4..7, 3.0 for n = 8.
    assert anytime_quality([(0, 1.0), (4, 2.0), (8, 3.0)], 8) == pytest.approx(14 / 8)
    # A vanilla-like curve: nothing new until the end.
    assert anytime_quality([(0, 10.0), (20, 30.0)], 20) == pytest.approx((19 * 10 + 30) / 20)
    # Later results at the same nfe replace earlier ones (an edit); results past N are ignored.
    assert anytime_quality([(0, 0.0), (2, 1.0), (2, 5.0), (9, 100.0)], 4) == pytest.approx(3.75)
    per_image = anytime_quality([(0, torch.tensor([1.0, 2.0])), (2, torch.tensor([3.0, 3.0]))], 4)
    torch.testing.assert_close(per_image, torch.tensor([2.5, 2.75]))


def test_anytime_quality_rejects_bad_curves():
    with pytest.raises(ValueError, match="0 evaluations"):
        anytime_quality([(1, 1.0)], 4)
    with pytest.raises(ValueError, match="order"):
        anytime_quality([(0, 1.0), (3, 1.0), (2, 1.0)], 4)
    with pytest.raises(ValueError, match="total_nfe"):
        anytime_quality([(0, 1.0)], 0)


def test_lpips_is_optional_and_never_downloads():
    if not lpips_available():
        with pytest.raises(RuntimeError, match="unavailable offline"):
            lpips(images(), images(1))
        pytest.skip("lpips package or its weights not available locally")
    x = images()
    assert lpips(x, x).abs().max() < 1e-6
    assert (lpips(images(1), x) > 0.1).all()


def test_sliced_wasserstein_separates_distributions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(2000, 4, generator=g), torch.randn(2000, 4, generator=g)
    same = sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(1))
    shifted = sliced_wasserstein(a, b + 1.0, generator=torch.Generator().manual_seed(1))
    assert same < 0.1 and shifted > 5 * same
    with pytest.raises(ValueError, match="dimension"):
        sliced_wasserstein(a, torch.randn(10, 3))
