"""The seeding rule (nested_inverse.seeds) and the doors that follow it: the same image, settings
and seed give the same bytes from Python, ``restore`` and the page; ``run``'s image k is
``restore --degrade --seed S+k`` on that image alone."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import nested_inverse as ni
import operators
from nested_inverse.app import Session, Settings, read_image
from nested_inverse.cli import main
from nested_inverse.cli.common import load_prior_cached
from nested_inverse.seeds import ImageSeeds, check_seed, image_seeds

BUDGET, SEED = 4, 3


def test_an_image_seed_gives_stable_separate_generators():
    # Pinned: the same on every machine and in every process (sha256, not the salted hash()).
    assert ImageSeeds(0).seed_for("noise") == 6006011211322034958
    seeds = {ImageSeeds(s).seed_for(p, j) for s in (0, 1) for p in ("operator", "noise", "sample")
             for j in (0, 1)}
    assert len(seeds) == 12 and all(0 <= s < 2**63 for s in seeds)
    g = ImageSeeds(5).generator("sample")
    assert g.device.type == "cpu"
    assert torch.equal(torch.rand(3, generator=g), torch.rand(
        3, generator=torch.Generator().manual_seed(ImageSeeds(5).seed_for("sample"))))
    assert [s.seed for s in image_seeds(7, 3, start=2)] == [9, 10, 11]
    assert ImageSeeds(2).describe() == {"image": 2, "operator": ImageSeeds(2).seed_for("operator"),
                                        "noise": ImageSeeds(2).seed_for("noise"),
                                        "sample": ImageSeeds(2).seed_for("sample")}
    assert len(ImageSeeds(2).describe(samples=3)["samples"]) == 3


@pytest.mark.parametrize("bad", [1.5, "abc", -1, True, None])
def test_a_seed_that_is_not_a_non_negative_integer_is_named(bad):
    with pytest.raises(ValueError, match=r"`seed`=.* must be an integer >= 0"):
        check_seed(bad)
    with pytest.raises(ValueError, match="purpose"):
        ImageSeeds(0).seed_for("colour")


@pytest.fixture(scope="module")
def observation(tmp_path_factory):
    """A 16×16 SR×4 observation of a bundled image, as a user's file."""
    x = ni.bundled_image("coffee", size=64)
    path = tmp_path_factory.mktemp("obs") / "obs.png"
    ni.save_image(operators.make("sr4", image_shape=(3, 64, 64))(x).clamp(0, 1), path)
    return path


def test_python_the_command_line_and_the_page_give_the_same_bytes(observation, tmp_path):
    prior = load_prior_cached("default", "cpu", "float32")  # the one the CLI uses, loaded once
    y = ni.load_image(observation)
    out = ni.restore(y, "sr4", image_shape=(3, 64, 64), budget_nfe=BUDGET, seed=SEED, prior=prior,
                     progress=False)
    python_png = ni.save_image(out, tmp_path / "python.png").read_bytes()

    assert main(["restore", str(observation), "--task", "sr4", "--budget", str(BUDGET),
                 "--seed", str(SEED), "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    cli_png = (tmp_path / "cli" / "obs.png").read_bytes()

    session = Session(prior)
    try:
        last = list(session.run(Settings(task="sr4", degraded=True, budget_nfe=BUDGET, seed=SEED,
                                         center_crop=None), read_image(observation)))[-1]
        page_png = last.files["restoration"].read_bytes()
    finally:
        session.close()
    assert python_png == cli_png == page_png
    record = json.loads((tmp_path / "cli" / "obs.json").read_text())
    assert record["seeds"]["image"] == SEED and record["nfe"] == BUDGET
    # The rule is what makes them agree: another seed gives another restoration.
    other = ni.restore(y, "sr4", image_shape=(3, 64, 64), budget_nfe=BUDGET, seed=SEED + 1,
                       prior=prior, progress=False)
    assert (other - out).abs().max() > 1 / 255


def test_image_k_of_run_is_restore_with_seed_plus_k(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.png", "b.png"):  # sorted: a is image 0, b image 1
        shutil.copy(ni.images_dir() / "heldout" / "coffee-rim.png", data / name)
    common = ["--task", "sr4", "--center-crop", "32", "--budget", str(BUDGET), "--no-progress"]
    assert main(["run", str(data), "--out", str(tmp_path / "run"), "--seed", str(SEED),
                 "--batch-size", "2", *common]) == 0
    for k, name in enumerate(("a.png", "b.png")):
        assert main(["restore", str(data / name), "--degrade", "--seed", str(SEED + k),
                     "--out", str(tmp_path / f"restore{k}"), *common]) == 0
        ran = (tmp_path / "run" / "restored" / name).read_bytes()
        assert ran == (tmp_path / f"restore{k}" / name).read_bytes(), name
        record = json.loads((tmp_path / "run" / "records" / f"{name[0]}.json").read_text())
        assert record["seeds"]["image"] == SEED + k
    # Same file, different index: different noise, so different restorations.
    assert ((tmp_path / "run" / "restored" / "a.png").read_bytes()
            != (tmp_path / "run" / "restored" / "b.png").read_bytes())
