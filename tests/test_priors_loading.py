"""Loading priors: DDPMPipeline folders, bare UNets with explicit or flat schedules, pickles refused
unless allowed, missing folders and Hub ids, load_prior, and the bundled data."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from diffusers import DDPMScheduler  # noqa: E402

import nested_inverse  # noqa: E402
from nested_inverse import paths  # noqa: E402
from nested_inverse.priors import CountingPrior  # noqa: E402
from nested_inverse.priors.diffusers import DiffusionPrior  # noqa: E402
from nested_inverse.priors.loading import default_prior, load_prior, load_unet  # noqa: E402
from nested_inverse.priors.schedule import alphas_cumprod_from_schedule  # noqa: E402
from test_priors_diffusers import save_pipeline, tiny_unet  # noqa: E402


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


def test_load_unet_returns_the_network_and_the_folder_schedule(tmp_path):
    unet = save_pipeline(tmp_path, "v_prediction")
    loaded, schedule = load_unet(tmp_path)
    assert torch.equal(loaded.conv_in.weight, unet.conv_in.weight)
    assert schedule["prediction_type"] == "v_prediction"
    given = {"betas": torch.full((10,), 0.01)}
    assert load_unet(tmp_path, schedule=given)[1] is given


def test_empty_file_instead_of_folder_is_named(tmp_path):
    # A file is read as a guided-diffusion checkpoint (priors/adm.py); an empty one is no checkpoint.
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="weights.safetensors.*not a readable safetensors file"):
        DiffusionPrior.from_pretrained(tmp_path / "weights.safetensors")


def test_non_unet_config_is_refused(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text('{"_class_name": "UNet2DConditionModel"}')
    with pytest.raises(ValueError, match="UNet2DConditionModel.*only pixel-space"):
        DiffusionPrior.from_pretrained(tmp_path)


def test_default_prior_is_the_bundled_one():
    prior = default_prior()
    assert isinstance(prior, DiffusionPrior)
    assert torch.equal(prior.alphas_cumprod, DiffusionPrior.default().alphas_cumprod)


def test_half_precision_on_the_cpu_is_warned_from_python_too(caplog, monkeypatch):
    """The warning lives in load_prior, so Python, the command line and the page all give it."""
    import logging

    from nested_inverse.priors import load_prior

    # a command-line test in the same worker may have set up its own handler without propagation
    monkeypatch.setattr(logging.getLogger("nested_inverse"), "propagate", True)

    with caplog.at_level(logging.WARNING, logger="nested_inverse"):
        load_prior(None, torch_dtype=torch.bfloat16, device="cpu")
    assert "`torch_dtype` bfloat16 on the CPU runs far slower than float32" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="nested_inverse"):
        load_prior(None, torch_dtype=torch.float32, device="cpu")
    assert "runs far slower" not in caplog.text


# ---- the Hub offline: fail fast, or load from the cache -----------------------------------------
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_uncached_hub_id_offline_fails_fast_saying_how_to_get_it(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(FileNotFoundError) as err:
        load_prior("someowner/somename")
    # the Hub client's retries took ~50 s here before (measured: 55 s); now ~0.1 s after imports
    assert time.perf_counter() - start < 10
    text = str(err.value)
    assert "`path_or_repo_id`='someowner/somename' is not a local folder, not in the local " \
           "Hugging Face cache" in text
    assert "(HF_HUB_OFFLINE is set)" in text and "`hf download someowner/somename`" in text


def test_the_hub_probe_says_why_it_cannot_connect(monkeypatch):
    import socket

    import huggingface_hub.constants as hub

    from nested_inverse.priors.loading import _hub_unreachable

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    with socket.socket() as server:  # a port that listens, then one that does not
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
        assert _hub_unreachable() is None
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    assert _hub_unreachable() == f"no connection to 127.0.0.1:{port}: Connection refused"


def test_a_cached_hub_id_loads_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants as hub

    repo = tmp_path / "models--someowner--tiny"
    save_pipeline(repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prior = load_prior("someowner/tiny")
    assert prior.in_channels == 3 and prior.num_timesteps == 1000


def test_no_accelerate_warning_when_it_is_not_installed(tmp_path, monkeypatch):
    """diffusers warned "`accelerate` was not found" on the first run of a fresh install."""
    import diffusers.models.modeling_utils as modeling
    import diffusers.utils

    save_pipeline(tmp_path)
    monkeypatch.setattr(diffusers.utils, "is_accelerate_available", lambda: False)
    monkeypatch.setattr(modeling, "is_accelerate_available", lambda: False)
    said: list[str] = []  # diffusers' own handler does not propagate to caplog
    monkeypatch.setattr(modeling.logger, "warning", lambda msg, *a, **k: said.append(msg))
    load_unet(tmp_path)
    assert not [m for m in said if "accelerate" in m]
