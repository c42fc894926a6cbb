"""guided-diffusion (ADM) checkpoint files on the command line: ``restore --prior x.pt`` end to end
on a random-weight file, ``--class`` for class-conditional ones, and ``convert`` round-tripping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from nested_inverse import bundled_image, save_image
from nested_inverse.cli import main
from nested_inverse.priors.adm_random import random_adm_state_dict
from nested_inverse.priors.loading import load_prior

#: a small layout of the family (32 channels, 3 levels, attention at level 1)
SMALL = {"model_channels": 32, "channel_mult": (1, 2, 2), "num_res_blocks": 1, "attention_levels": (1,)}
FAST = ["--outer", "2", "--inner", "2", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adm")
    paths = {"obs": root / "face.png", "adm": root / "random_adm.pt", "cond": root / "cond.pt"}
    save_image(bundled_image("astronaut", 8), paths["obs"])  # an 8 × 8 observation for sr4
    torch.save(random_adm_state_dict(**SMALL, seed=0), paths["adm"])
    torch.save(random_adm_state_dict(**SMALL, num_classes=10, seed=1), paths["cond"])
    return paths


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and ": error: " in err, err
    return err


def test_restore_with_an_adm_checkpoint_file(files, tmp_path):
    out = tmp_path / "sr"
    assert main(["restore", str(files["obs"]), "--prior", str(files["adm"]), "--task", "sr4",
                 "--out", str(out), *FAST]) == 0
    with Image.open(out / "face.png") as img:
        assert img.size == (32, 32)
    meta = json.loads((out / "face.json").read_text())
    assert meta["prior"] == str(files["adm"])


def test_class_conditional_needs_class(files, tmp_path, capsys):
    args = ["restore", str(files["obs"]), "--prior", str(files["cond"]), "--task", "sr4",
            "--out", str(tmp_path / "c"), *FAST]
    assert main(args) != 0
    assert "--class" in _error(capsys)
    assert main([*args, "--class", "3"]) == 0
    assert (tmp_path / "c" / "face.png").is_file()
    assert main([*args[:-len(FAST)], "--out", str(tmp_path / "d"), "--class", "10", *FAST]) != 0
    assert "out of range" in _error(capsys)


def test_class_label_changes_the_prediction(files):
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    a = load_prior(str(files["cond"]), class_label=0).predict(x, 500)[1]
    b = load_prior(str(files["cond"]), class_label=7).predict(x, 500)[1]
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="unconditional"):
        load_prior(str(files["adm"]), class_label=1)


def test_convert_round_trips(files, tmp_path, capsys):
    out = tmp_path / "ffhq-like"
    assert main(["convert", str(files["adm"]), str(out)]) == 0
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["beta_end"] == 0.02
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 900])
    direct, folder = load_prior(str(files["adm"])), load_prior(str(out))
    torch.testing.assert_close(folder.alphas_cumprod, direct.alphas_cumprod, rtol=0, atol=0)
    for a, b in zip(direct.predict(x, t), folder.predict(x, t)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    capsys.readouterr()
    assert main(["convert", str(files["adm"]), str(out)]) != 0
    assert "not an empty folder" in _error(capsys)
    assert main(["convert", str(files["obs"]), str(tmp_path / "x")]) != 0
    assert "face.png" in _error(capsys)
