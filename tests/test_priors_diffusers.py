"""DiffusionPrior: the (x̂0, ε̂) conversions, clipping, padding, chunks, dtypes, errors, the default prior.

Folder layouts and load_prior are in test_priors_loading.py, schedules in test_priors_schedule.py.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from diffusers import DDPMScheduler, UNet2DModel  # noqa: E402

from nested_inverse.imageio import bundled_image, from_model_range, to_model_range  # noqa: E402
from nested_inverse.priors import Prior  # noqa: E402
from nested_inverse.priors.diffusers import DiffusionPrior  # noqa: E402


def tiny_unet(channels: int = 3, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=16,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )


def save_pipeline(folder, prediction_type: str = "epsilon", clip: bool = False, channels: int = 3):
    unet = tiny_unet(channels)
    unet.save_pretrained(folder / "unet")
    DDPMScheduler(prediction_type=prediction_type, clip_sample=clip).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline"}))
    return unet


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_round_trip_and_consistency(tmp_path, prediction_type):
    unet = save_pipeline(tmp_path, prediction_type)
    prior = DiffusionPrior.from_pretrained(tmp_path)
    assert isinstance(prior, Prior)
    assert prior.prediction_type == prediction_type and not prior.clip_x0
    assert prior.alphas_cumprod.dtype == torch.float64 and prior.alphas_cumprod.shape == (1000,)
    # Same weights as saved.
    for (n1, p1), (_, p2) in zip(unet.state_dict().items(), prior.unet.state_dict().items()):
        assert torch.equal(p1, p2), n1

    g = torch.Generator().manual_seed(1)
    x_t = torch.randn(3, 3, 16, 16, generator=g)
    t = torch.tensor([10, 400, 999])
    with torch.no_grad():
        x0, eps = prior.predict(x_t, t)
        out = unet(x_t, t).sample.double()
    a = prior.alphas_cumprod[t].view(-1, 1, 1, 1)
    recon = a.sqrt() * x0.double() + (1 - a).sqrt() * eps.double()
    torch.testing.assert_close(recon, x_t.double(), atol=2e-5, rtol=0)
    # The network output is used exactly as the prediction type says.
    x = x_t.double()
    if prediction_type == "epsilon":
        torch.testing.assert_close(eps.double(), out, atol=1e-6, rtol=0)
    elif prediction_type == "sample":
        torch.testing.assert_close(x0.double(), out, atol=1e-6, rtol=0)
    else:
        torch.testing.assert_close(x0.double(), a.sqrt() * x - (1 - a).sqrt() * out, atol=1e-5, rtol=0)
        torch.testing.assert_close(eps.double(), (1 - a).sqrt() * x + a.sqrt() * out, atol=1e-5, rtol=0)


def test_clipping_keeps_pair_consistent(tmp_path):
    save_pipeline(tmp_path, "epsilon", clip=True)
    prior = DiffusionPrior.from_pretrained(tmp_path)
    assert prior.clip_x0
    x_t = 3 * torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        x0, eps = prior.predict(x_t, 900)
    assert x0.abs().max() <= 1.0 and (x0.abs() == 1).any()
    a = prior.alphas_cumprod[900]
    torch.testing.assert_close(
        a.sqrt() * x0.double() + (1 - a).sqrt() * eps.double(), x_t.double(), atol=1e-5, rtol=0
    )
    # The option overrides the config.
    unclipped = DiffusionPrior.from_pretrained(tmp_path, clip_x0=False)
    with torch.no_grad():
        assert unclipped.predict(x_t, 900)[0].abs().max() > 1


def test_timestep_forms_and_float64_output(tmp_path):
    save_pipeline(tmp_path)
    prior = DiffusionPrior.from_pretrained(tmp_path)
    x_t = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = prior.predict(x_t, 250)
        for t in (torch.tensor(250), torch.tensor([250, 250]), torch.tensor([250.0, 250.0])):
            got = prior.predict(x_t, t)
            torch.testing.assert_close(got[0], ref[0])
        x0, eps = prior.predict(x_t.double(), 250)
    assert x0.dtype == eps.dtype == torch.float64
    torch.testing.assert_close(x0.float(), ref[0], atol=1e-5, rtol=0)


def test_odd_size_is_padded_and_cropped(tmp_path):
    save_pipeline(tmp_path)
    prior = DiffusionPrior.from_pretrained(tmp_path)
    assert prior.downsample_factor == 2
    for shape in [(1, 3, 13, 10), (2, 3, 17, 9), (1, 3, 1, 1)]:
        x_t = torch.randn(shape, generator=torch.Generator().manual_seed(4))
        with torch.no_grad():
            x0, eps = prior.predict(x_t, 500)
        assert x0.shape == eps.shape == x_t.shape
        assert torch.isfinite(x0).all()
    # A size that needs no padding goes through unchanged: the top-left 16×16 of a 16×16 run.
    x_t = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(prior.network(x_t, torch.tensor([5])), prior.unet(x_t, 5).sample)


def test_default_prior_pads_non_multiple_of_8():
    prior = DiffusionPrior.default()
    assert prior.downsample_factor == 8
    x_t = torch.randn(1, 3, 21, 30, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        x0, eps = prior.predict(x_t, 300)
    assert x0.shape == x_t.shape and torch.isfinite(x0).all() and torch.isfinite(eps).all()


def test_chunking_matches_single_batch(tmp_path):
    save_pipeline(tmp_path)
    full = DiffusionPrior.from_pretrained(tmp_path)
    chunked = DiffusionPrior.from_pretrained(tmp_path, chunk_size=2)
    x_t = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    t = torch.tensor([1, 100, 200, 300, 999])
    with torch.no_grad():
        a, b = full.predict(x_t, t), chunked.predict(x_t, t)
    torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=0)  # ε̂: x̂0 amplifies rounding by 1/√ᾱ


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_network_returns_float32(tmp_path, dtype):
    save_pipeline(tmp_path)
    ref = DiffusionPrior.from_pretrained(tmp_path)
    half = DiffusionPrior.from_pretrained(tmp_path, torch_dtype=dtype)
    assert half.dtype == dtype
    x_t = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        try:
            x0, eps = half.predict(x_t, 300)
        except RuntimeError as err:  # an old CPU build without half convolutions
            pytest.skip(f"{dtype} not supported on this CPU: {err}")
        x0_ref, _ = ref.predict(x_t, 300)
    assert x0.dtype == eps.dtype == torch.float32
    assert (x0 - x0_ref).abs().max() < 0.1


def test_differentiable_wrt_x_t(tmp_path):
    save_pipeline(tmp_path)
    prior = DiffusionPrior.from_pretrained(tmp_path)
    x_t = torch.randn(1, 3, 15, 15, requires_grad=True)
    x0, _ = prior.predict(x_t, 100)
    (g,) = torch.autograd.grad(x0.square().sum(), x_t)
    assert g.shape == x_t.shape and torch.isfinite(g).all() and g.abs().sum() > 0
    assert not any(p.requires_grad for p in prior.parameters())


def test_channel_mismatch_and_timestep_range(tmp_path):
    save_pipeline(tmp_path, channels=1)
    prior = DiffusionPrior.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="3 channels.*expects 1"):
        prior.predict(torch.zeros(1, 3, 8, 8), 5)
    x = torch.zeros(2, 1, 8, 8)
    for bad in (1000, -1, torch.tensor([3, 1000])):
        with pytest.raises(ValueError, match=r"outside the valid range \[0, 1000\)"):
            prior.predict(x, bad)
    with pytest.raises(ValueError, match="batch size 2"):
        prior.predict(x, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="integer"):
        prior.predict(x, torch.tensor([1.5, 2.0]))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [0, 1]."""
    return -10 * math.log10(float((a - b).square().mean()))


def test_default_prior_denoises_held_out_crops(capsys):
    """At t = 100 (√((1−ᾱ)/ᾱ) ≈ 0.35 on [-1, 1]) the prior's x̂0 beats the noisy observation.

    Measured (seed 0, centre 64×64 crops, float32, CPU): PSNR of x̂0 / of x_t/√ᾱ_t / of x_t
    astronaut 27.9 / 15.3 / 15.7 dB, coffee 30.7 / 15.3 / 15.7, chelsea 28.1 / 15.3 / 15.8:
    gains of 12.6–15.4 dB. The issue asks for ≥ 3 dB; the test asks for ≥ 10 dB (2.5 dB margin).
    """
    prior = DiffusionPrior.default()
    t = 100
    a = float(prior.alphas_cumprod[t])
    g = torch.Generator().manual_seed(0)
    for name in ("astronaut", "coffee", "chelsea"):
        clean = bundled_image(name, 64)
        x0 = to_model_range(clean)
        x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * torch.randn(x0.shape, generator=g)
        with torch.no_grad():
            x0_hat, _ = prior.predict(x_t, t)
        p_hat = psnr(from_model_range(x0_hat).clamp(0, 1), clean)
        p_noisy = psnr(from_model_range(x_t / math.sqrt(a)), clean)
        p_xt = psnr(from_model_range(x_t), clean)
        with capsys.disabled():
            print(f"\n{name}: PSNR x0_hat {p_hat:.2f}, x_t/sqrt(abar) {p_noisy:.2f}, x_t {p_xt:.2f} dB")
        assert p_hat - p_noisy >= 10.0
        assert p_hat - p_xt >= 10.0


def test_bad_prediction_type():
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusionPrior(tiny_unet(), {"prediction_type": "x0"})
