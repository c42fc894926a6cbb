"""The web page's handlers without a browser: the stream of frames, the commands, bad inputs.

The bundled prior at 32 px with a few steps; exact expectations (results per outer step, NFE = k·I,
Stop keeping the shown image bit for bit, the same restoration and record keys as the command line).
"""

from __future__ import annotations

import json
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import nested_inverse as ni
from nested_inverse.app import (GENERATE, INPAINT_MASK, Session, Sessions, Settings, Source,
                                read_image, read_mask, read_named)
from nested_inverse.app import inputs
from nested_inverse.app.inputs import painted_mask
from nested_inverse.cli import main
from nested_inverse.cli.common import load_prior_cached
from nested_inverse.errors import UsageError
from nested_inverse.guidance import Edit, Resample, SetInnerSteps

SIZE = 32


@pytest.fixture(scope="module")
def prior():
    # The command line's cache, so the comparison with `restore` below loads it once.
    return load_prior_cached("default", "cpu", "float32")


@pytest.fixture
def session(prior):
    s = Session(prior)
    yield s
    s.close()


def settings(**kw):
    base = dict(task="sr4", center_crop=SIZE, outer=3, inner=2, seed=0)
    return Settings(**{**base, **kw})


def steps(frames):
    return [(f.current.outer_step, f.current.nfe) for f in frames]


# ------------------------------------------------------------------------------------ the stream
def test_a_frame_after_every_outer_step_then_the_downloads(session):
    frames = list(session.run(settings(), read_named("coffee")))
    *running, last = frames
    assert steps(running) == [(0, 0), (1, 2), (2, 4), (3, 6)]  # K + 1 results, NFE = k·I
    assert [len(f.results) for f in running] == [1, 2, 3, 4]
    assert not any(f.done for f in running) and last.done and last.status.startswith("finished")
    assert set(last.files) == {"restoration", "observation", "steps_strip", "record"}
    assert all(p.is_file() and p.parent == session.folder for p in last.files.values())
    record = json.loads(last.files["record"].read_text())
    assert record["nfe"] == 6 and [e["nfe"] for e in record["intermediates"]] == [0, 2, 4, 6]
    assert record["stopped"] is False and record["guidance"] == []
    saved = ni.load_image(last.files["restoration"])
    expected = ((last.current.image + 1) / 2).clamp(0, 1)
    assert (saved - expected).abs().max() <= 0.5 / 255 + 1e-6  # the final result, 8-bit rounded


def test_the_same_restoration_and_record_keys_as_the_command_line(session, tmp_path, capsys):
    path = ni.images_dir() / "coffee.png"
    assert main(["restore", str(path), "--degrade", "--task", "sr4", "--center-crop", str(SIZE),
                 "--outer", "3", "--inner", "2", "--out", str(tmp_path), "--no-progress"]) == 0
    last = list(session.run(settings(), read_named("coffee")))[-1]
    cli = json.loads((tmp_path / "coffee.json").read_text())
    page = json.loads(last.files["record"].read_text())
    assert set(page) == set(cli) | {"guidance", "stopped"}
    same = ("task", "task_args", "sigma_y", "method", "method_args", "outer", "inner", "seed",
            "seeds", "degrade", "center_crop", "image_shape", "observation_shape", "nfe",
            "intermediates", "psnr", "ssim")
    assert {k: page[k] for k in same} == {k: cli[k] for k in same}
    assert (last.files["restoration"].read_bytes() == (tmp_path / "coffee.png").read_bytes())


def test_an_already_degraded_image(session):
    observation = list(session.run(settings(), read_named("coffee")))[-1].files["observation"]
    frames = list(session.run(settings(degraded=True, center_crop=None), read_image(observation)))
    assert session.job.problem.y01.shape == (1, 3, 8, 8) and session.job.image_shape == (1, 3, 32, 32)
    assert steps(frames[:-1]) == [(0, 0), (1, 2), (2, 4), (3, 6)]
    record = json.loads(frames[-1].files["record"].read_text())
    assert record["degrade"] is False and "psnr" not in record and record["input"] == "coffee_y.png"


def test_a_budget_caps_the_run(session):
    frames = list(session.run(settings(budget_nfe=4), read_named("coffee")))  # K·I = 6 > 4
    assert steps(frames[:-1]) == [(0, 0), (1, 2), (2, 4)]  # an outer step dropped, as the sampler
    assert json.loads(frames[-1].files["record"].read_text())["nfe"] == 4


def test_empty_split_fields_take_the_default_policy(session):
    frames = list(session.run(settings(outer=None, inner=None, budget_nfe=8), read_named("coffee")))
    assert steps(frames[:-1]) == [(0, 0), (1, 4), (2, 8)]  # auto_split(8) = 2 × 4, DDRM at η = 1
    record = json.loads(frames[-1].files["record"].read_text())
    assert (record["split"], record["method_args"], record["nfe"]) == ("auto", {"eta": 1.0}, 8)


def test_vanilla_beside_at_equal_evaluations(session):
    frames = list(session.run(settings(compare_vanilla=True), read_named("coffee")))
    assert [f.vanilla.nfe for f in frames[:-1]] == [0, 2, 4, 6]
    assert not torch.equal(frames[1].vanilla.image, frames[1].current.image)


def test_unconditional_generation(session):
    frames = list(session.run(settings(task=GENERATE, outer=2), None))
    assert steps(frames[:-1]) == [(0, 0), (1, 2), (2, 4)]
    assert frames[-1].current.image.shape == (1, 3, SIZE, SIZE)
    assert "observation" not in frames[-1].files
    assert json.loads(frames[-1].files["record"].read_text())["task"] == GENERATE


# ---------------------------------------------------------------------------------- the buttons
def test_stop_between_steps_keeps_the_shown_image_bit_for_bit(session):
    stream = session.run(settings(outer=5), read_named("coffee"))
    shown = [next(stream), next(stream)]
    session.stop()
    last = next(stream)
    assert last.done and last.status.startswith("stopped")
    assert steps([last]) == [(1, 2)] and torch.equal(last.current.image, shown[-1].current.image)
    assert json.loads(last.files["record"].read_text())["stopped"] is True
    assert next(stream, None) is None


class Hook:
    """A prior that calls ``act`` just before its ``n``-th evaluation (a press mid-step)."""

    def __init__(self, prior, n, act):
        self.prior, self.n, self.act, self.nfe = prior, n, act, 0
        self.alphas_cumprod = prior.alphas_cumprod

    def predict(self, x_t, t):
        self.nfe += 1
        if self.nfe == self.n:
            self.act()
        return self.prior.predict(x_t, t)


def test_stop_during_a_step_ends_at_the_next_evaluation(prior):
    session = Session(prior)
    hook = Hook(prior, 3, session.stop)  # the first evaluation of outer step 2
    session.prior = hook
    frames = list(session.run(settings(outer=5), read_named("coffee")))
    assert hook.nfe == 3  # the 4th evaluation was refused: Stop did not wait for the step
    assert steps(frames) == [(0, 0), (1, 2), (1, 2)] and frames[-1].done
    assert torch.equal(frames[-1].current.image, frames[1].current.image)
    session.close()


def test_resample_and_set_inner_steps_act_and_are_recorded(session):
    stream = session.run(settings(outer=3), read_named("coffee"))
    first = [next(stream), next(stream)]
    session.command(Resample())
    resampled = next(stream)
    assert steps([resampled]) == [(1, 4)] and len(resampled.results) == 2
    assert not torch.equal(resampled.current.image, first[-1].current.image)
    session.command(SetInnerSteps(1))
    assert steps([next(stream)]) == [(1, 4)]  # acknowledged; acts from the next step
    assert steps([next(stream), next(stream)]) == [(2, 5), (3, 6)]
    record = json.loads(next(stream).files["record"].read_text())
    assert record["guidance"] == [{"command": "Resample", "outer_step": 1, "nfe": 4},
                                  {"command": "SetInnerSteps", "outer_step": 1, "nfe": 4,
                                   "steps": 1}]


def test_a_refused_command_is_a_message_and_the_run_goes_on(session):
    stream = session.run(settings(), read_named("coffee"))
    next(stream)  # A†y: nothing to resample yet
    session.command(Resample())
    refused = next(stream)
    assert refused.message.startswith("Resample refused: nothing to resample")
    assert steps([refused]) == [(0, 0)]
    assert steps(list(stream)[:-1]) == [(1, 2), (2, 4), (3, 6)]


def test_pause_then_edit_continues_from_the_painted_image(session):
    stream = session.run(settings(task="inpaint-box"), read_named("coffee"))
    next(stream), next(stream)
    session.pause()
    paused = next(stream)
    assert paused.paused and steps([paused]) == [(1, 2)]
    painted = torch.full((1, 3, SIZE, SIZE), 0.5)
    session.command(Edit(painted))
    edited = next(stream)
    op, y = session.job.problem.operator, session.job.problem.y
    # The edit is projected onto A x = y: observed pixels kept, the hole grey.
    torch.testing.assert_close(op(edited.current.image), y, atol=1e-5, rtol=0)
    hole = (~op.range_mask()).expand_as(painted)
    assert int(hole.sum()) > 0 and float(edited.current.image[hole].abs().max()) < 1e-6
    assert not edited.paused and steps([next(stream)]) == [(2, 4)]


def test_pause_waits_until_continue(session):
    stream = session.run(settings(), read_named("coffee"))
    next(stream), next(stream)
    session.pause()
    assert next(stream).paused
    threading.Timer(0.3, session.resume).start()  # pressed while the stream waits
    assert steps([next(stream)]) == [(2, 4)]
    list(stream)


def test_commands_need_a_run(session):
    for press in (lambda: session.command(Resample()), session.pause, session.resume):
        with pytest.raises(UsageError, match="needs a run in progress; press Run first"):
            press()
    session.stop()  # harmless


def test_an_edit_of_the_wrong_size_is_refused(session):
    stream = session.run(settings(), read_named("coffee"))
    next(stream)
    with pytest.raises(UsageError, match=r"`edit` image is 16×16 pixels; the restoration is 32×32"):
        session.command(Edit(torch.zeros(1, 3, 16, 16)))
    stream.close()


def test_one_run_per_tab(session):
    stream = session.run(settings(), read_named("coffee"))
    next(stream)
    with pytest.raises(UsageError, match="already has a run in progress"):
        next(session.run(settings(), read_named("coffee")))
    stream.close()
    assert not session.running


def test_uncertainty_map(session):
    with pytest.raises(UsageError, match="needs a finished run"):
        next(session.uncertainty(3))
    list(session.run(settings(), read_named("coffee")))
    maps = list(session.uncertainty(3))
    assert [n for _, n in maps] == [2, 3]
    std = maps[-1][0]
    assert std.shape == (SIZE, SIZE) and float(std.min()) >= 0 and float(std.max()) > 0


# ----------------------------------------------------------------------------------------- tabs
def test_tabs_do_not_mix_and_a_closed_tab_stops(prior):
    tabs = Sessions(prior)
    a, b = tabs.get("a"), tabs.get("b")
    assert a is not b and tabs.get("a") is a and a.folder != b.folder
    alone = [f.current.image for f in Session(prior).run(settings(seed=1), read_named("coffee"))]
    run_a = a.run(settings(seed=1), read_named("coffee"))
    run_b = b.run(settings(seed=2), read_named("chelsea"))
    mixed = []
    for _ in range(4):  # interleaved, step by step
        mixed.append(next(run_a).current.image)
        next(run_b)
    assert all(torch.equal(x, y) for x, y in zip(mixed, alone))
    tabs.close("b")
    assert next(run_b, None) is None and not b.folder.exists()  # no downloads for a closed tab
    assert next(run_a).done and len(tabs) == 1


# ------------------------------------------------------------------------------- bad inputs
def test_not_an_image(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("hello")
    with pytest.raises(UsageError, match=r"`image` 'notes.png' is not an image: .*; upload a PNG"):
        read_image(bad)
    with pytest.raises(UsageError, match=r"`image`: no file was received \(None\)"):
        read_image(None)


def test_a_bad_file_is_named_once_without_the_server_path(tmp_path):
    # Gradio hands the handler a temporary copy: its folder must not reach the page, and the
    # decoder's reason is given once (load_image wraps it in a message of its own).
    bad, cut = tmp_path / "notes.png", tmp_path / "cut.png"
    bad.write_text("hello")
    cut.write_bytes((ni.images_dir() / "coffee.png").read_bytes()[:3000])
    for path, reason in ((bad, "is not an image: cannot identify the file;"),
                         (cut, "is not a readable image: image file is truncated;")):
        with pytest.raises(UsageError) as caught:
            read_image(path)
        message = str(caught.value)
        assert reason in message and str(tmp_path) not in message, message
        assert message.count(path.name) == 1, message
        assert message.count("not an image") + message.count("not a readable image") == 1, message


def test_too_large(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (80, 60)).save(path)
    monkeypatch.setattr(inputs, "MAX_PIXELS", 80 * 60 - 1)
    with pytest.raises(UsageError, match=r"`image` 'big.png' is 80×60 pixels; images up to 4799"):
        read_image(path)
    monkeypatch.setattr(inputs, "MAX_FILE_BYTES", 10)
    with pytest.raises(UsageError, match=r"`image` 'big.png' is 0.0 MiB; files up to 0 MiB"):
        read_image(path)


def test_mask_of_the_wrong_size(tmp_path):
    path = tmp_path / "mask.png"
    Image.new("L", (20, 10), 255).save(path)
    image = torch.zeros(1, 3, 12, 24)
    with pytest.raises(UsageError, match=r"`mask` 'mask.png' is 20×10 pixels but the image is 24×12"):
        read_mask(path, image)
    layer = torch.zeros(10, 20, 4, dtype=torch.uint8)
    layer[0, 0, 3] = 255
    with pytest.raises(UsageError, match=r"the painted `mask` is 20×10 pixels but the image is 24×12"):
        painted_mask([layer.numpy()], image)


def test_painted_mask_marks_the_painted_pixels_missing():
    layer = torch.zeros(4, 5, 4, dtype=torch.uint8)
    layer[1:3, 2, 3] = 200
    mask = painted_mask([layer.numpy()], torch.zeros(1, 3, 4, 5))
    assert mask.dtype == torch.bool and int((~mask).sum()) == 2 and not mask[1, 2]
    assert painted_mask([torch.zeros(4, 5, 4, dtype=torch.uint8).numpy()], torch.zeros(1, 3, 4, 5)) \
        is None


def test_inpainting_with_a_painted_mask(session):
    x = read_named("coffee")
    mask = torch.ones(x.image.shape[-2:], dtype=torch.bool)
    H, W = mask.shape
    mask[H // 2 - 4:H // 2 + 4, W // 2 - 4:W // 2 + 4] = False
    frames = list(session.run(settings(task=INPAINT_MASK, outer=2),
                              Source(x.name, x.image, mask, "painted")))
    hidden = ~session.job.problem.operator.range_mask()[0, 0]
    assert int(hidden.sum()) == 64 and bool(hidden[12:20, 12:20].all())  # the centre, cropped
    assert json.loads(frames[-1].files["record"].read_text())["mask"] == "painted"


@pytest.mark.parametrize("kw, match", [
    (dict(sigma_y=-0.1), r"`sigma_y`=-0.1 must be a number >= 0"),
    (dict(method="ddpm"), r"`method`='ddpm' is not a solver; one of: daps, ddnm, ddrm"),
    (dict(outer=0), r"`outer`=0 must be an integer >= 1"),
    (dict(budget_nfe=0), r"`budget_nfe`=0 must be an integer >= 1"),
    (dict(deadline_s=-1.0), r"`deadline_s`=-1.0 must be a number of seconds > 0"),
])
def test_bad_settings_name_the_field(kw, match):
    with pytest.raises(UsageError, match=match):
        settings(**kw)


@pytest.mark.parametrize("kw, source, match", [
    (dict(task=INPAINT_MASK), "coffee", r"needs a mask: paint the region to fill"),
    (dict(task="sr5"), "coffee", r"`task`='sr5' is not a known operator; available: blur-aniso"),
    (dict(center_crop=1000), "coffee", r"image is 600×400 pixels, smaller than `center_crop` 1000"),
    (dict(), None, r"`image`: no image given; upload one or pick an example"),
])
def test_bad_runs_are_refused_before_any_evaluation(session, kw, source, match):
    with pytest.raises(UsageError, match=match):
        next(session.run(settings(**kw), read_named(source) if source else None))
    assert not session.running


# ------------------------------------------------------------------------------ page and CLI
def test_serve_without_gradio_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    assert main(["serve"]) == 2
    assert capsys.readouterr().err.strip() == ('nested-inverse serve: error: the web page needs '
                                               'Gradio: pip install "nested-inverse[app]"')


def test_serve_on_a_taken_port_names_port_before_loading_anything(capsys):
    """It once printed its URL, then Gradio's advice about GRADIO_SERVER_PORT."""
    pytest.importorskip("gradio")
    import socket
    import time

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        start = time.perf_counter()
        rc = main(["serve", "--port", str(port)])
        seconds = time.perf_counter() - start
    err = capsys.readouterr().err.strip()
    assert rc == 2 and f"`--port`={port} is in use" in err and "GRADIO" not in err
    assert seconds < 5  # refused before the prior loads


def test_page_builds_and_names_fields(prior):
    pytest.importorskip("gradio")
    from nested_inverse.app.page import TASKS, build_page, display_factor, on_page

    assert on_page("`sigma_y`=-1 must be >= 0") == "'σ_y'=-1 must be >= 0"
    assert display_factor(32, 32) == 8 and display_factor(300, 100) == 1
    assert TASKS[0] == INPAINT_MASK and TASKS[-1] == GENERATE and "sr4" in TASKS
    page = build_page(Sessions(prior))
    ids = {getattr(b, "elem_id", None) for b in page.blocks.values()}
    assert {"upload", "run", "stop", "result", "status", "downloads"} <= ids


def test_the_restored_window_is_marked_where_the_run_cuts_it():
    pytest.importorskip("gradio")
    from nested_inverse.app.page import marked, region, short_caption
    from nested_inverse.imageio import center_crop, crop_to_multiple

    photo = torch.rand(1, 3, 400, 600, generator=torch.Generator().manual_seed(0))
    # The default run: a 64×64 centre crop of a 600×400 photo; a 63 crop for sr4 keeps 60×60.
    assert region(400, 600, 64, 64, 64) == (168, 268)
    window = crop_to_multiple(center_crop(photo, 63), 4)
    top, left = region(400, 600, 63, *window.shape[-2:])
    assert torch.equal(photo[..., top:top + 60, left:left + 60], window)
    assert region(400, 600, None, 400, 600) == (0, 0)
    arr = marked(photo, 168, 268, 64, 64)
    frame = np.zeros((400, 600), dtype=bool)
    frame[162:238, 262:338] = True
    frame[168:232, 268:332] = False  # the frame is 6 px (1 % of 600) around the window
    magenta = (arr == [255, 0, 255]).all(-1)
    assert (magenta == frame).all()
    assert short_caption(SimpleNamespace(outer_step=0, nfe=0)) == "A†y"
    assert short_caption(SimpleNamespace(outer_step=4, nfe=20)) == "4 · 20 NFE"


def test_the_size_and_time_estimate_follow_the_settings(prior):
    from nested_inverse.app.page import estimate, restored_size
    from nested_inverse.service import estimate_seconds, seconds_per_pixel
    from nested_inverse.sampling import SamplerConfig

    # 600×400, max side 256: 256×171, cropped to SR×4's factor: 256×168.
    assert restored_size(400, 600, Settings(task="sr4")) == (168, 256)
    assert restored_size(400, 600, Settings(task="sr4", max_side=None)) == (400, 600)
    assert restored_size(400, 600, Settings(task="sr4", center_crop=100, max_side=None)) == (100, 100)
    assert restored_size(400, 600, Settings(task="sr4", degraded=True)) == (43 * 4, 64 * 4)
    line = estimate(prior, read_named("coffee"), Settings(task="sr4"))
    assert line.startswith("Restores **256×168** pixels in about **") and "(20 NFE" in line
    # ∝ evaluations and (tiled) pixels; the gradient solvers cost more per step.
    small, large = (estimate_seconds(prior, s, s, SamplerConfig()) for s in (64, 1024))
    assert seconds_per_pixel(prior) > 0 and large > 100 * small
    assert (estimate_seconds(prior, 64, 64, SamplerConfig(budget_nfe=40))
            == pytest.approx(2 * small))
    assert estimate_seconds(prior, 64, 64, SamplerConfig(method="dps")) > 1.5 * small
