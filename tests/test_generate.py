"""Anytime generation (generate.py) and ``nested-inverse generate`` on tiny random pipelines."""

from __future__ import annotations

import json

import pytest
import torch

import nested_inverse as ni
from nested_inverse import DDIM, Edit, NestedSampler, Resample, Stop
from nested_inverse.cli import main
from nested_inverse.priors import load_latent_pipeline
from nested_inverse.priors.tiny import save_tiny_dit, save_tiny_sd


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipelines")
    return {"sd": save_tiny_sd(root / "sd"), "dit": save_tiny_dit(root / "dit")}


@pytest.fixture(scope="module")
def sd(folders):
    return load_latent_pipeline(folders["sd"])


@pytest.fixture(scope="module")
def dit(folders):
    return load_latent_pipeline(folders["dit"])


def _gens(seed, n):
    """The generators of images 0 … n−1 seeded ``seed`` (the rule of nested_inverse.seeds)."""
    from nested_inverse.seeds import image_seeds

    return [s.generator("sample") for s in image_seeds(seed, n)]


@pytest.mark.parametrize("which", ["sd", "dit"])
def test_one_outer_step_is_plain_ddim_bit_for_bit(which, sd, dit):
    prior, cond = (sd, {"prompt": "a cat"}) if which == "sd" else (dit, {"class_label": 5})
    guided = prior.conditioned(**cond, guidance_scale=3.0)
    out = ni.generate(guided, outer_steps=1, inner_steps=4, num_images=2, height=16, width=16,
                      seed=7)
    plain = DDIM(guided, (2, 4, 8, 8), eta=0.85).sample(steps=4, generator=_gens(7, 2))
    assert torch.equal(out.steps[-1].result.image, plain)
    with torch.no_grad():
        assert torch.equal(out.images, (prior.decode(plain) / 2 + 0.5).clamp(0, 1))
    # the same through the sampler the stream is built on
    nested = NestedSampler.unconditional(guided, (2, 4, 8, 8), 1, 4).sample(_gens(7, 2))
    assert torch.equal(nested, plain)


def test_same_seed_same_bytes_and_batch_independence(sd):
    kw = dict(prompt="a cat", outer_steps=2, inner_steps=2, height=16, width=16)
    a = ni.generate(sd, num_images=2, seed=3, **kw)
    b = ni.generate(sd, num_images=2, seed=3, **kw)
    assert all(torch.equal(x.image, y.image) and torch.equal(x.result.image, y.result.image)
               for x, y in zip(a.steps, b.steps))
    assert not torch.equal(a.images, ni.generate(sd, num_images=2, seed=4, **kw).images)
    # image i is seeded seed + i: the second image of a batch is the first of a batch seeded +1
    alone = ni.generate(sd, num_images=1, seed=4, **kw)
    assert torch.allclose(a.steps[-1].result.image[1:], alone.steps[-1].result.image,
                          rtol=1e-4, atol=1e-4)


def test_nfe_network_images_and_decoding_reported_apart(sd, dit):
    out = ni.generate(dit, class_label=[1, 2], outer_steps=3, inner_steps=2, num_images=2,
                      height=16, width=16, guidance_scale=4.0)
    assert [s.nfe for s in out.steps] == [0, 2, 4, 6]
    assert [s.network_images for s in out.steps] == [0, 8, 16, 24]  # 2B per guided evaluation
    assert (out.nfe, out.network_images) == (6, 24)
    assert out.steps[0].decode_s == 0 and all(s.decode_s > 0 for s in out.steps[1:])
    assert out.decode_s == pytest.approx(sum(s.decode_s for s in out.steps))
    assert out.sampler["outer_timesteps"] == [999, 666, 333]
    assert out.condition == {"class_label": [1, 2], "guidance_scale": 4.0}
    assert torch.equal(out.steps[0].image, torch.full((2, 3, 16, 16), 0.5))
    assert 0 <= float(out.images.min()) and float(out.images.max()) <= 1

    out = ni.generate(sd, "a cat", outer_steps=2, inner_steps=3, height=16, width=16,
                      guidance_scale=1.0)
    assert (out.nfe, out.network_images) == (6, 6)  # no unconditional pass at s = 1
    assert ni.generate(sd, "a cat", outer_steps=2, inner_steps=3, height=16, width=16,
                       budget_nfe=4).nfe == 4
    # a deadline that has passed before the first evaluation ends: only the mid-grey start
    late = ni.generate(sd, "a cat", outer_steps=2, inner_steps=3, height=16, width=16,
                       deadline_s=1e-9)
    assert [s.nfe for s in late.steps] == [0] and torch.equal(late.images, late.steps[0].image)


def test_guidance_commands_pass_through(dit):
    run = ni.generation_run(dit, class_label=3, outer_steps=3, inner_steps=2, height=16, width=16)
    assert next(run).nfe == 0
    first = next(run)
    again = run.send(Resample())
    assert (first.nfe, again.nfe, again.outer_step) == (2, 4, 1)
    assert not torch.equal(first.result.image, again.result.image)
    picture = torch.rand(1, 3, 16, 16) * 2 - 1  # an image-sized edit, model range: encoded first
    edited = run.send(Edit(picture))
    with torch.no_grad():
        z = dit.encode(picture)
        assert torch.equal(edited.result.image, z)
        assert torch.equal(edited.image, (dit.decode(z) / 2 + 0.5).clamp(0, 1))
    assert next(run).nfe == 6
    assert run.send(Stop()).nfe == 6 and next(run, None) is None


def test_bad_requests_name_the_argument(sd, dit):
    with pytest.raises(ValueError, match=r"`prompt`='a cat' was given but this prior is class-"
                                         r"conditional"):
        ni.generate(dit, "a cat", height=16, width=16)
    with pytest.raises(ValueError, match=r"`class_label`=12 is out of range"):
        ni.generate(dit, class_label=12, height=16, width=16)
    with pytest.raises(ValueError, match=r"`height`=15 must be a positive multiple of 2"):
        ni.generate(sd, "a cat", height=15, width=16)
    with pytest.raises(ValueError, match=r"`prompt` has 3 entries but `num_images`=2"):
        ni.generate(sd, ["a", "b", "c"], num_images=2, height=16, width=16)
    with pytest.raises(ValueError, match=r"`prompt` was given but `prior` is already conditioned"):
        ni.generate(sd.conditioned(prompt="a"), "b", height=16, width=16)
    for call in (ni.generate, ni.generation_run):  # one dtype argument, as diffusers
        with pytest.raises(TypeError, match=r"takes no `dtype`: pass `torch_dtype`"):
            call(sd, "a cat", height=16, width=16, dtype=torch.float64)
        with pytest.raises(TypeError, match=r"unexpected keyword argument 'inner'"):
            call(sd, "a cat", height=16, width=16, inner=3)


def test_cli_generate_progress_total_is_what_runs(folders, tmp_path, monkeypatch):
    """`--budget 100` with the 2 × 2 split showed a total of 100 for a run of 4 evaluations."""
    import tqdm.auto

    totals: list[int] = []
    real = tqdm.auto.tqdm
    def bar(*a, **k):
        if k.get("unit") == "NFE":
            totals.append(k["total"])
        return real(*a, **k)

    monkeypatch.setattr(tqdm.auto, "tqdm", bar)
    base = ["generate", "--prompt", "a cat", "--prior", str(folders["sd"]), "--height", "16",
            "--width", "16", "--no-progress", "--outer", "2"]
    assert main([*base, "--inner", "2", "--budget", "100", "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--inner", "3", "--budget", "5", "--out", str(tmp_path / "b")]) == 0
    records = [json.loads((tmp_path / d / "generated.json").read_text())["nfe"] for d in "ab"]
    assert totals == records == [4, 5]


def test_cli_generate_writes_image_strip_and_record(folders, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["generate", "--prompt", "a red cat", "--prior", str(folders["sd"]), "--outer", "2",
                 "--inner", "2", "--guidance-scale", "5", "--negative-prompt", "blurry",
                 "--height", "16", "--width", "16", "--seed", "1", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {"generated.png", "generated_steps.png",
                                               "generated_steps.gif", "generated.json"}
    record = json.loads((out / "generated.json").read_text())
    assert (record["prompt"], record["negative_prompt"], record["guidance_scale"]) == \
        ("a red cat", "blurry", 5.0)
    assert (record["nfe"], record["network_images"], record["seeds"]) == (4, 8, [1])
    assert [i["nfe"] for i in record["intermediates"]] == [0, 2, 4]
    assert record["outer_timesteps"] == [999, 500] and record["image_shape"] == [3, 16, 16]
    again = tmp_path / "again"  # the same command again: the same bytes
    assert main(["generate", "--prompt", "a red cat", "--prior", str(folders["sd"]), "--outer", "2",
                 "--inner", "2", "--guidance-scale", "5", "--negative-prompt", "blurry",
                 "--height", "16", "--width", "16", "--seed", "1", "--out", str(again),
                 "--no-progress"]) == 0
    for name in ("generated.png", "generated_steps.png", "generated_steps.gif"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    image = ni.load_image(out / "generated.png")
    assert image.shape == (1, 3, 16, 16)
    # the written image is the API's for the same seed (8-bit rounding)
    same = ni.generate(load_latent_pipeline(folders["sd"]), "a red cat", negative_prompt="blurry",
                       guidance_scale=5.0, outer_steps=2, inner_steps=2, height=16, width=16, seed=1)
    assert torch.allclose(image, same.images, atol=1 / 255 + 1e-6)

    code = main(["generate", "--class", "3", "--prior", str(folders["sd"]), "--out",
                 str(tmp_path / "bad"), "--height", "16", "--width", "16", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "`--class`=3 was given but this prior is text-conditional" in err
    assert not (tmp_path / "bad").exists()
    code = main(["generate", "--class", "3", "--prior", str(tmp_path / "none"), "--out",
                 str(tmp_path / "bad"), "--no-progress"])
    assert code == 2 and "`--prior`=" in (err := capsys.readouterr().err) and "no such folder" in err
