"""DiffusionPrior: loading, the (x̂0, ε̂) conversions, padding, dtypes, errors, and the default prior."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel  # noqa: E402

import nested_inverse  # noqa: E402
from nested_inverse import paths  # noqa: E402
from nested_inverse.priors.diffusers import (  # noqa: E402
    DiffusionPrior,
    alphas_cumprod_from_schedule,
    load_prior,
)
from nested_inverse.imageio import bundled_image, from_model_range, to_model_range  # noqa: E402
from nested_inverse.priors import CountingPrior, Prior  # noqa: E402



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


def test_bare_unet_folder_with_explicit_schedules(tmp_path):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match="schedule"):
        DiffusionPrior.from_pretrained(tmp_path / "bare")
    ref = alphas_cumprod_from_schedule({"beta_schedule": "linear"})
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    for schedule in (
        DDPMScheduler(),
        dict(DDPMScheduler().config),
        {"betas": betas},
        {"trained_betas": betas.tolist()},
        torch.cumprod(1 - betas, 0),
    ):
        prior = DiffusionPrior.from_pretrained(tmp_path / "bare", schedule=schedule)
        torch.testing.assert_close(prior.alphas_cumprod, ref, atol=1e-12, rtol=0)
    # The flat layout (Google's DDPM repos): scheduler_config.json beside config.json.
    DDPMScheduler(prediction_type="v_prediction", beta_schedule="scaled_linear").save_config(tmp_path / "bare")
    flat = DiffusionPrior.from_pretrained(tmp_path / "bare")
    assert flat.prediction_type == "v_prediction"
    scaled = alphas_cumprod_from_schedule({"beta_schedule": "scaled_linear"})
    torch.testing.assert_close(flat.alphas_cumprod, scaled)
    # subfolder="unet" of a pipeline picks up the sibling scheduler.
    save_pipeline(tmp_path / "pipe")
    assert DiffusionPrior.from_pretrained(tmp_path / "pipe", subfolder="unet").num_timesteps == 1000


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_schedules_match_diffusers(schedule):
    sched = DDIMScheduler(beta_schedule=schedule)
    ours = alphas_cumprod_from_schedule(sched)
    assert ours.dtype == torch.float64 and ours.shape == (1000,)
    torch.testing.assert_close(ours, sched.alphas_cumprod.double(), atol=2e-6, rtol=1e-5)
    assert (ours[1:] <= ours[:-1]).all()


def test_bad_schedules():
    with pytest.raises(ValueError, match="beta_schedule"):
        alphas_cumprod_from_schedule({"beta_schedule": "sigmoid"})
    with pytest.raises(ValueError, match="schedule"):
        alphas_cumprod_from_schedule("linear")
    with pytest.raises(ValueError, match="non-increasing"):
        alphas_cumprod_from_schedule(torch.tensor([0.5, 0.9]))
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusionPrior(tiny_unet(), {"prediction_type": "x0"})


def test_pickle_refused_unless_allowed(tmp_path):
    unet = tiny_unet()
    unet.save_pretrained(tmp_path / "unet", safe_serialization=False)
    DDPMScheduler(clip_sample=False).save_pretrained(tmp_path / "scheduler")
    assert (tmp_path / "unet" / "diffusion_pytorch_model.bin").exists()
    with pytest.raises(ValueError, match="allow_pickle=True"):
        DiffusionPrior.from_pretrained(tmp_path)
    prior = DiffusionPrior.from_pretrained(tmp_path, allow_pickle=True)
    assert torch.equal(prior.unet.conv_in.weight, unet.conv_in.weight)


def test_missing_and_malformed_folders(tmp_path, monkeypatch):
    for missing in (str(tmp_path / "nope"), "./definitely-not-here", tmp_path / "nope"):
        with pytest.raises(FileNotFoundError, match="nope|definitely-not-here"):
            DiffusionPrior.from_pretrained(missing)
    # "models/missing" has the shape of a Hub id, but "models" exists here: a local path, not the Hub.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(FileNotFoundError, match="models/missing"):
        DiffusionPrior.from_pretrained("models/missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json"):
        DiffusionPrior.from_pretrained(tmp_path / "empty")
    (tmp_path / "noweights" / "unet").mkdir(parents=True)
    tiny_unet().save_config(tmp_path / "noweights" / "unet")
    with pytest.raises(FileNotFoundError, match="no weights"):
        DiffusionPrior.from_pretrained(tmp_path / "noweights")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_offline_hub_id_fails_clearly():
    with pytest.raises(FileNotFoundError, match="not-a-real-owner/not-a-real-model"):
        DiffusionPrior.from_pretrained("not-a-real-owner/not-a-real-model")


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


def test_load_prior(tmp_path):
    save_pipeline(tmp_path)
    prior = load_prior(str(tmp_path))
    assert isinstance(prior, DiffusionPrior)
    counting = CountingPrior(prior)
    assert load_prior(counting, device="cpu") is counting
    with pytest.raises(ValueError, match="chunk_size"):
        load_prior(counting, chunk_size=2)
    with pytest.raises(ValueError, match="not understood"):
        load_prior(42)  # type: ignore[arg-type]
    assert nested_inverse.load_prior is load_prior and nested_inverse.DiffusionPrior is DiffusionPrior


def test_bundled_data_found_through_paths():
    prior_dir = paths.default_prior_dir()
    assert (prior_dir / "unet" / "config.json").is_file()
    assert (prior_dir / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (prior_dir / "scheduler" / "scheduler_config.json").is_file()
    assert (prior_dir / "README.md").is_file()
    for name in ("astronaut", "coffee", "chelsea"):
        assert (paths.images_dir() / f"{name}.png").is_file()


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
