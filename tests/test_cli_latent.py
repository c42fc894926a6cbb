"""``nested-inverse restore`` with a latent pipeline as ``--prior``: latent restoration from the
shell, steered by ``--prompt`` (tiny random Stable-Diffusion-shaped pipeline, 32-px images)."""

from __future__ import annotations

import json

import pytest
from PIL import Image

import nested_inverse as ni
from nested_inverse.cli import main
from nested_inverse.priors import LatentDiffusionPrior, load_prior
from nested_inverse.priors.tiny import save_tiny_sd

COFFEE = str(ni.images_dir() / "coffee.png")


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return save_tiny_sd(tmp_path_factory.mktemp("pipelines") / "sd")


def restore(sd, out, *extra):
    return main(["restore", COFFEE, "--degrade", "--task", "sr4", "--center-crop", "32",
                 "--prior", str(sd), "--budget", "4", "--out", str(out), "--no-progress", *extra])


def test_load_prior_reads_a_latent_pipeline_folder(sd):
    assert isinstance(load_prior(sd), LatentDiffusionPrior)


def test_a_prompt_steers_a_latent_restoration(sd, tmp_path):
    assert restore(sd, tmp_path / "cat", "--prompt", "a photo of a cat", "--guidance-scale",
                   "3") == 0
    record = json.loads((tmp_path / "cat" / "coffee.json").read_text())
    # the latent default: PSLD on the auto split of 4 evaluations (one run), decoded to 32 px
    assert (record["method"], record["nfe"], record["image_shape"]) == ("psld", 4, [3, 32, 32])
    assert (record["prompt"], record["negative_prompt"], record["guidance_scale"]) == (
        "a photo of a cat", None, 3.0)
    assert Image.open(tmp_path / "cat" / "coffee.png").size == (32, 32)
    assert restore(sd, tmp_path / "dog", "--prompt", "a photo of a dog", "--guidance-scale",
                   "3") == 0
    assert restore(sd, tmp_path / "cat2", "--prompt", "a photo of a cat", "--guidance-scale",
                   "3") == 0
    cat, cat2, dog = (Image.open(tmp_path / d / "coffee.png").tobytes() for d in ("cat", "cat2", "dog"))
    assert cat == cat2 and cat != dog  # the prompt, not chance, changes the result


def test_a_prompt_with_a_pixel_prior_names_the_flag(tmp_path, capsys):
    assert main(["restore", COFFEE, "--degrade", "--task", "sr4", "--center-crop", "32",
                 "--prompt", "a cat", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "`--prompt` steers a text-conditional latent pipeline" in err and "pixel prior" in err
    assert not (tmp_path / "o").exists()


def test_a_pixel_solver_on_a_latent_pipeline_is_refused(sd, tmp_path, capsys):
    assert restore(sd, tmp_path / "o", "--method", "ddrm") == 2
    assert "accepted with this prior: latent-dps, psld" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_dataset_runner_refuses_a_latent_pipeline_naming_the_flag(sd, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    Image.open(COFFEE).crop((0, 0, 32, 32)).save(tmp_path / "in" / "a.png")
    assert main(["run", str(tmp_path / "in"), "--task", "sr4", "--prior", str(sd),
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "is a latent pipeline; `run` runs pixel priors only so far" in capsys.readouterr().err
