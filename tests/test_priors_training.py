"""Prior training: short CPU runs write a loadable folder, resume, and report bad input clearly."""

from __future__ import annotations

import inspect
import json
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import nested_inverse  # noqa: E402
from nested_inverse import paths  # noqa: E402
from nested_inverse.cli import main  # noqa: E402
from nested_inverse.priors.diffusers import DiffusionPrior  # noqa: E402
from nested_inverse.priors.training import train_prior  # noqa: E402

TINY = dict(patch_size=16, block_out_channels=(16, 32), layers_per_block=1, batch_size=8, progress=False)



@pytest.fixture
def images(tmp_path):
    """Three small RGB images (one in a subfolder) and a file that is not an image."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for name, (h, w) in {"a.png": (40, 48), "b.jpg": (32, 32), "sub/c.png": (50, 36)}.items():
        smooth = np.cumsum(rng.normal(size=(h, w, 3)), axis=1)
        arr = (255 * (smooth - smooth.min()) / np.ptp(smooth)).astype(np.uint8)
        Image.fromarray(arr).save(folder / name)
    (folder / "notes.png").write_text("not an image")
    return folder


def step_of(out) -> int:
    return int(torch.load(out / "checkpoint" / "state.pt", weights_only=True)["step"])


def test_short_run_writes_loadable_folder_and_resumes(images, tmp_path):
    out = tmp_path / "prior"
    with pytest.warns(UserWarning, match="notes.png"):
        result = train_prior(images, out, max_steps=6, checkpoint_every=4, **TINY)
    assert result == out and step_of(out) == 6
    for name in ("model_index.json", "README.md", "unet/config.json",
                 "unet/diffusion_pytorch_model.safetensors", "scheduler/scheduler_config.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "DDPMPipeline"
    readme = (out / "README.md").read_text()
    assert "6 steps" in readme and "3 images" in readme

    prior = DiffusionPrior.from_pretrained(out)
    assert prior.prediction_type == "epsilon" and prior.clip_x0
    torch.testing.assert_close(
        prior.alphas_cumprod,
        torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0),
        atol=1e-12, rtol=0,
    )
    with torch.no_grad():
        x0, eps = prior.predict(torch.randn(2, 3, 20, 20), 500)
    assert x0.shape == (2, 3, 20, 20) and torch.isfinite(eps).all()
    first = prior.unet.conv_in.weight.clone()

    with pytest.warns(UserWarning):
        train_prior(images, out, max_steps=9, **TINY)
    assert step_of(out) == 9
    assert "9 steps" in (out / "README.md").read_text()
    assert not torch.equal(DiffusionPrior.from_pretrained(out).unet.conv_in.weight, first)

    # Same settings, new seed for the data, but another architecture cannot resume.
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="block_out_channels"):
        train_prior(images, out, max_steps=12, **{**TINY, "block_out_channels": (16, 16)})
    with pytest.warns(UserWarning):
        train_prior(images, out, max_steps=2, resume=False, **TINY)
    assert step_of(out) == 2


def test_time_budget_and_init_from(images, tmp_path):
    start = time.perf_counter()
    with pytest.warns(UserWarning):
        train_prior(images, tmp_path / "a", max_time_s=2.0, **TINY)
    assert time.perf_counter() - start < 15
    assert step_of(tmp_path / "a") >= 1
    with pytest.warns(UserWarning):
        train_prior(images, tmp_path / "b", max_steps=1, init_from=tmp_path / "a",
                    **{**TINY, "block_out_channels": (8, 8)})  # the architecture comes from init_from
    cfg = json.loads((tmp_path / "b" / "unet" / "config.json").read_text())
    assert cfg["block_out_channels"] == [16, 32]


def test_grayscale_folder_trains_a_one_channel_prior(tmp_path):
    folder = tmp_path / "gray"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)).save(folder / f"{i}.png")
    train_prior(folder, tmp_path / "out", max_steps=1, **TINY)
    prior = DiffusionPrior.from_pretrained(tmp_path / "out")
    assert prior.in_channels == 1
    with pytest.raises(ValueError, match="3 channels"):
        prior.predict(torch.zeros(1, 3, 16, 16), 1)


def test_bad_input(images, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        train_prior(tmp_path / "empty", tmp_path / "o", max_steps=1, **TINY)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="`patch_size`=64 is larger than every"):
        train_prior(images, tmp_path / "o", max_steps=1, **{**TINY, "patch_size": 64})
    with pytest.raises(FileNotFoundError, match="nope"):
        train_prior(tmp_path / "nope", tmp_path / "o", max_steps=1, **TINY)
    with pytest.raises(ValueError, match="budget"):
        train_prior(images, tmp_path / "o", **TINY)
    with pytest.raises(ValueError, match="multiple of the UNet's downsampling factor 2"):
        train_prior(images, tmp_path / "o", max_steps=1, **{**TINY, "patch_size": 15})
    with pytest.raises(ValueError, match="mixed_precision"):
        train_prior(images, tmp_path / "o", max_steps=1, mixed_precision="fp8", **TINY)


def test_cli(images, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["train-prior", str(images), "--out", str(out), "--patch-size", "16", "--channels", "16,32",
            "--layers-per-block", "1", "--batch-size", "4", "--steps", "2", "--quiet"]
    with pytest.warns(UserWarning):
        assert main(args) == 0
    assert step_of(out) == 2 and f"wrote {out}" in capsys.readouterr().out
    assert main(["train-prior", str(tmp_path / "missing"), "--out", str(out), "--steps", "1"]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_defaults_express_the_bundled_recipe(tmp_path):
    """The defaults are the bundled prior's recipe, and build exactly its architecture."""
    defaults = {k: p.default for k, p in inspect.signature(train_prior).parameters.items()}
    assert defaults["patch_size"] == 64 and tuple(defaults["block_out_channels"]) == (64, 128, 128, 256)
    assert defaults["layers_per_block"] == 2 and defaults["lr"] == 3e-4
    assert defaults["batch_size"] == 256 and defaults["ema_decay"] == 0.9995
    assert defaults["grad_clip"] == 1.0 and tuple(defaults["scales"]) == (1.0, 0.75, 0.5, 0.35)

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        folder / "x.png"
    )
    train_prior(folder, tmp_path / "out", max_steps=0, save_dtype=torch.float16, progress=False)
    ours = json.loads((tmp_path / "out" / "unet" / "config.json").read_text())
    bundled = json.loads((paths.default_prior_dir() / "unet" / "config.json").read_text())
    for key in bundled:
        if not key.startswith("_"):
            assert ours[key] == bundled[key], key
    ours_s = json.loads((tmp_path / "out" / "scheduler" / "scheduler_config.json").read_text())
    bundled_s = json.loads((paths.default_prior_dir() / "scheduler" / "scheduler_config.json").read_text())
    for key in bundled_s:
        if not key.startswith("_"):
            assert ours_s[key] == bundled_s[key], key


def test_exported():
    assert nested_inverse.train_prior is train_prior and "train_prior" in nested_inverse.__all__
