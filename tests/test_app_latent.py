"""The web page's handlers with a latent pipeline (tiny random SD and DiT, 16 px): text-to-image
and class-conditional nested generation, prompt-steered latent restoration, the buttons, and
conditioning fields refused with a message where they do not fit the served prior."""

from __future__ import annotations

import json

import pytest
import torch

from nested_inverse.app import GENERATE, Session, Settings, read_named
from nested_inverse.errors import UsageError
from nested_inverse.guidance import Edit, Resample, SetInnerSteps
from nested_inverse.priors import load_latent_pipeline
from nested_inverse.priors.tiny import save_tiny_dit, save_tiny_sd

SIZE = 16


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    return load_latent_pipeline(save_tiny_sd(tmp_path_factory.mktemp("sd")))


@pytest.fixture(scope="module")
def dit(tmp_path_factory):
    return load_latent_pipeline(save_tiny_dit(tmp_path_factory.mktemp("dit")))


@pytest.fixture
def session(sd):
    s = Session(sd, "tiny-sd")
    yield s
    s.close()


def settings(**kw):
    base = dict(task=GENERATE, center_crop=SIZE, outer=2, inner=2, seed=0, method="psld")
    return Settings(**{**base, **kw})


def steps(frames):
    return [(f.current.outer_step, f.current.nfe) for f in frames]


def test_text_to_image_generation_frames_record_and_bytes(session):
    frames = list(session.run(settings(prompt="a cat", guidance_scale=3.0), None))
    *running, last = frames
    assert steps(running) == [(0, 0), (1, 2), (2, 4)]  # NFE = k·I, one guided pass each
    assert all(f.current.image.shape == (1, 3, SIZE, SIZE) for f in frames)  # decoded, not latents
    assert torch.equal(running[0].current.image, torch.zeros(1, 3, SIZE, SIZE))  # mid-grey start
    assert float(last.current.image.abs().max()) <= 1
    record = json.loads(last.files["record"].read_text())
    assert (record["prompt"], record["negative_prompt"], record["class_label"],
            record["guidance_scale"]) == ("a cat", None, None, 3.0)
    assert record["task"] == GENERATE and record["nfe"] == 4 and record["prior"] == "tiny-sd"
    again = list(session.run(settings(prompt="a cat", guidance_scale=3.0), None))[-1]
    assert again.files["restoration"].read_bytes() == last.files["restoration"].read_bytes()
    other = list(session.run(settings(prompt="a dog", guidance_scale=3.0), None))[-1]
    assert not torch.equal(other.current.image, last.current.image)


def test_default_guidance_for_generation_is_diffusers(session):
    last = list(session.run(settings(prompt="a cat", outer=1, inner=1), None))[-1]
    assert json.loads(last.files["record"].read_text())["guidance_scale"] == 7.5


def test_class_conditional_generation(dit):
    session = Session(dit)
    last = list(session.run(settings(class_label=3, outer=1, inner=2), None))[-1]
    assert steps([last]) == [(1, 2)] and last.current.image.shape == (1, 3, SIZE, SIZE)
    record = json.loads(last.files["record"].read_text())
    assert (record["class_label"], record["guidance_scale"]) == (3, 4.0)
    with pytest.raises(UsageError, match=r"`class_label`.*10"):
        next(session.run(settings(class_label=10), None))
    session.close()


def test_restoration_with_a_prompt_runs_psld_and_decodes(session):
    frames = list(session.run(settings(task="sr2", prompt="a cup", outer=2, inner=1),
                              read_named("coffee")))
    *running, last = frames
    assert steps(running) == [(0, 0), (1, 1), (2, 2)]
    assert all(f.current.image.shape == (1, 3, SIZE, SIZE) for f in frames)
    assert set(last.files) == {"restoration", "observation", "steps_strip", "record"}
    record = json.loads(last.files["record"].read_text())
    assert (record["method"], record["prompt"], record["guidance_scale"]) == ("psld", "a cup", 1.0)
    assert "psnr" in record


def test_stop_resample_set_inner_and_edit_on_a_latent_run(session):
    stream = session.run(settings(prompt="a cat", outer=4, inner=1), None)
    first = [next(stream), next(stream)]
    session.command(Resample())
    assert steps([next(stream)]) == [(1, 2)]
    session.command(SetInnerSteps(2))
    next(stream)
    assert steps([next(stream)]) == [(2, 4)]
    session.command(Edit(torch.full((1, 3, SIZE, SIZE), 0.5)))  # painted image: encoded
    edited = next(stream)
    assert edited.message is None and edited.current.image.shape == (1, 3, SIZE, SIZE)
    session.stop()
    last = next(stream)
    assert last.done and last.status.startswith("stopped")
    assert torch.equal(last.current.image, edited.current.image)
    record = json.loads(last.files["record"].read_text())
    assert record["stopped"] is True
    assert [g["command"] for g in record["guidance"]] == ["Resample", "SetInnerSteps", "Edit"]
    assert next(stream, None) is None and first[0].current.nfe == 0


@pytest.mark.parametrize("kw, match", [
    (dict(class_label=3), r"`class_label`=3 was given but this prior is text-conditional"),
    (dict(task="sr2", method="ddrm"), r"`method`='ddrm' is a pixel solver, but the served prior "
                                      r"is a latent pipeline; one of: latent-dps, psld"),
    (dict(center_crop=15), r"`center_crop`: the image is 15×15 pixels, but the served latent "
                           r"pipeline needs sides that are multiples of 2"),
    (dict(guidance_scale=-1.0), r"`guidance_scale`=-1.0 must be a finite number >= 0"),
])
def test_bad_conditioning_on_the_sd_page(session, kw, match):
    with pytest.raises(UsageError, match=match):
        next(session.run(settings(**kw), None if "task" not in kw else read_named("coffee")))
    assert not session.running


def test_a_prompt_on_a_pixel_prior_is_refused():
    from nested_inverse.app import prepare

    with pytest.raises(UsageError, match=r"`prompt`='a cat' steers a latent pipeline .* but the "
                                         r"served prior is a pixel prior"):
        prepare(Settings(task="sr4", prompt="a cat"), read_named("coffee"))
    with pytest.raises(UsageError, match=r"`method`='psld' is a latent solver, but the served "
                                         r"prior is a pixel prior"):
        prepare(Settings(task="sr4", method="psld"), read_named("coffee"))


def test_page_offers_the_latent_fields_and_solvers(sd):
    pytest.importorskip("gradio")
    from nested_inverse.app import Sessions
    from nested_inverse.app.page import _class_value, build_page, on_page

    page = build_page(Sessions(sd))
    blocks = {getattr(b, "elem_id", None): b for b in page.blocks.values()}
    assert {"prompt", "negative_prompt", "class_label", "guidance_scale"} <= set(blocks)
    assert blocks["prompt"].visible and not blocks["class_label"].visible  # SD: text, no class
    assert blocks["task"].value == GENERATE
    methods = [b for b in page.blocks.values() if getattr(b, "label", None) == "Method"][0]
    assert [c[0] for c in methods.choices] == ["latent-dps", "psld"] and methods.value == "psld"
    assert (_class_value(""), _class_value("3"), _class_value(" tench "), _class_value(2.0)) == \
        (None, 3, "tench", 2)
    assert on_page("`class_label`=3 was given") == "'Class'=3 was given"
    # The Run handler as Gradio calls it: the page's fields, in the page's order.
    import gradio as gr
    import types

    on_run = [f for f in page.fns.values() if f.name == "on_run"][0].fn
    fields = [None, None, GENERATE, 0, False, SIZE, 0, "psld", 2, 2, 0, None, None, False]
    request = types.SimpleNamespace(session_hash="tab")
    outputs = list(on_run(*fields, "a cat", "", "", 3.0, request))
    assert outputs[-1][0].startswith("**finished: step 2 · 4 NFE")
    assert outputs[-1][1]["value"].shape == (256, 256, 3)  # 16 px shown enlarged ×16
    # A mistake is a status line naming the field (no exception, no red badge).
    refused = list(on_run(*fields, "a cat", "", "3", None, request))
    assert "'Class'=3 was given but this prior is text-conditional" in refused[-1][0]


def test_serve_takes_a_pipeline_folder(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from nested_inverse.app import page as page_module
    from nested_inverse.cli import main

    served = {}

    class Page:
        def launch(self, **kw):
            served["launch"] = kw

    def build(sessions, max_runs=2):
        served["prior"] = sessions.prior
        return Page()

    monkeypatch.setattr(page_module, "build_page", build)
    folder = save_tiny_sd(tmp_path / "sd")
    assert main(["serve", "--prior", str(folder), "--port", "0"]) == 0
    assert served["prior"].kind == "text" and served["launch"]["share"] is False


def test_the_same_latent_restoration_as_restore_prompt(session, tmp_path, capsys):
    from nested_inverse.cli import main
    from nested_inverse.imageio import images_dir

    folder = save_tiny_sd(tmp_path / "sd")  # the same seed: the same weights as the fixture's
    assert main(["restore", str(images_dir() / "coffee.png"), "--degrade", "--task", "sr2",
                 "--center-crop", str(SIZE), "--outer", "2", "--inner", "1", "--prior", str(folder),
                 "--prompt", "a cup", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    last = list(session.run(settings(task="sr2", prompt="a cup", outer=2, inner=1),
                            read_named("coffee")))[-1]
    cli = json.loads((tmp_path / "o" / "coffee.json").read_text())
    page = json.loads(last.files["record"].read_text())
    same = ("method", "outer", "inner", "seeds", "nfe", "prompt", "negative_prompt",
            "guidance_scale", "psnr")
    assert {k: page[k] for k in same} == {k: cli[k] for k in same}
    assert last.files["restoration"].read_bytes() == (tmp_path / "o" / "coffee.png").read_bytes()


def test_vanilla_beside_uncertainty_and_edit_on_a_latent_restoration(session):
    stream = session.run(settings(task="sr2", prompt="a cup", outer=2, inner=1,
                                  compare_vanilla=True), read_named("coffee"))
    frames = [next(stream), next(stream)]
    assert [f.vanilla.nfe for f in frames] == [0, 1]
    assert frames[1].vanilla.image.shape == (1, 3, SIZE, SIZE)  # decoded too
    session.command(Edit(torch.full((1, 3, SIZE, SIZE), 0.5)))
    edited = next(stream)
    assert edited.message is None and edited.current.image.shape == (1, 3, SIZE, SIZE)
    last = list(stream)[-1]
    assert last.done and steps([last]) == [(2, 2)]
    maps = list(session.uncertainty(2))
    assert maps[-1][0].shape == (SIZE, SIZE) and float(maps[-1][0].max()) > 0
