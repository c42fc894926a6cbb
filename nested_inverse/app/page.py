"""The Gradio page around :class:`~nested_inverse.app.session.Session`: inputs on the left, the
streamed restoration, the buttons that steer it and the downloads on the right.

Each tab gets its own session, found by Gradio's per-tab session hash, and closing the tab stops
its run. Mistakes (a file that is not an image, a mask of the wrong size, a bad setting) are shown
as messages on the page, naming the field, the value and what is accepted; never a traceback.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr
import numpy as np
import torch
from torch import Tensor

import operators

from .. import solvers
from ..solvers.latent import is_latent_prior
from ..errors import UsageError
from ..dataset.files import downscaled_size
from ..service import display, estimate_seconds
from ..tasks import resolve_task
from ..guidance import Edit, Resample, SetInnerSteps
from .inputs import (Source, editor_composite, editor_image, named_images, painted_mask,
                     read_image, read_mask, read_named)
from .job import DEFAULT_MAX_SIDE, GENERATE, INPAINT_MASK, Settings
from .session import Frame, Session, Sessions

__all__ = ["TASKS", "build_page", "display_factor"]

log = logging.getLogger(__name__)

#: The tasks offered, in the page's order: the painted/uploaded mask first, then every registered
#: operator, then unconditional generation.
TASKS = [INPAINT_MASK, *operators.available(), GENERATE]

#: Library argument names → the page's field labels, for messages.
_FIELDS = {"sigma_y": "σ_y", "center_crop": "Centre crop N×N", "budget_nfe": "Budget (NFE)",
           "max_side": "Max side", 
           "deadline_s": "Deadline (s)", "outer": "Outer steps K", "inner": "Inner steps I",
           "outer_steps": "Outer steps K", "inner_steps": "Inner steps I", "seed": "Seed",
           "method_params": "Method", "method_args": "Method", "method": "Method", "task": "Task",
           "steps": "steps", "SetInnerSteps.steps": "Inner steps from the next step",
           "x": "image", "image": "Upload an image", "mask": "mask",
           "example": "…or pick an example",
           "samples": "Samples", "edit": "Edit", "prompt": "Prompt",
           "negative_prompt": "Negative prompt", "class_label": "Class",
           "guidance_scale": "Guidance scale"}

_DISPLAY_SIDE = 256  # small results are enlarged (nearest neighbour) to about this for viewing

_SHOWN_HEIGHT = 240  # the row y · restoration · reference, one height for all

_LEGEND = ("**A†y** (the first result, 0 NFE) is the pseudo-inverse: what the observation alone "
           "gives, before any network call. Each outer step then adds its network evaluations "
           "(NFE). The whole photo is restored, downscaled to the max side; with a centre crop "
           "set, only that window (marked below).")

_INTRO = """\
# nested-inverse: anytime restoration
Load an image, choose the degradation and press **Run**: after every outer step of nested
diffusion a finished restoration appears, with its network evaluations (NFE) and time. Stop when
it is good, Resample a step you dislike, Pause and paint on the result to steer it.
"""

_INTRO_LATENT = """
A latent pipeline is served: **generate** draws an image for the prompt (Stable Diffusion) or the
class (DiT) with nested generation, every outer step decoded; restorations run the latent solver
(PSLD by default) steered by the prompt. Sizes must be multiples of the pipeline's VAE factor.
"""


def _class_value(value: Any) -> Any:
    """The page's class field: empty → None, digits → an id, else a class name."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if not text:
        return None
    return int(text) if text.isdigit() else text


def _text(value: Any) -> str | None:
    return None if value is None or str(value) == "" else str(value)


def on_page(message: str) -> str:
    """A library message with every `` `argument` `` shown as the page's field label."""
    return re.sub(r"`([A-Za-z_.]+)`", lambda m: f"'{_FIELDS.get(m.group(1), m.group(1))}'",
                  " ".join(message.split()))


def display_factor(height: int, width: int) -> int:
    """The integer enlargement that brings an image's larger side to about 256 pixels (≥ 1)."""
    return max(1, _DISPLAY_SIDE // max(height, width))


def _shown(x: Tensor) -> np.ndarray:
    """A ``[1, C, H, W]`` model-range image as ``[H·f, W·f, 3]`` uint8 for the page."""
    x01 = display(None, x)[0]  # the session has decoded a latent run's results already
    if x01.shape[0] == 1:
        x01 = x01.expand(3, -1, -1)
    f = display_factor(*x01.shape[-2:])
    arr = (x01 * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.ascontiguousarray(arr.repeat(f, 0).repeat(f, 1))


def _shown01(x01: Tensor | None) -> np.ndarray | None:
    """:func:`_shown` for a ``[1, C, H, W]`` image in [0, 1] (None, or not an image: None)."""
    if x01 is None or x01.ndim != 4 or x01.shape[1] not in (1, 3):
        return None
    return _shown(x01 * 2 - 1)


def region(height: int, width: int, crop: int | None, h: int, w: int) -> tuple[int, int]:
    """Top-left ``(top, left)`` of the ``h×w`` window a run restores in a ``height×width`` photo:
    the centre ``crop×crop`` (when given), then centred again to the task's factor, as
    ``imageio.center_crop`` cuts them."""
    top = left = 0
    if crop is not None:
        c_h, c_w = min(crop, height), min(crop, width)
        top, left, height, width = (height - c_h) // 2, (width - c_w) // 2, c_h, c_w
    return top + (height - h) // 2, left + (width - w) // 2


def restored_size(height: int, width: int, settings: Settings) -> tuple[int, int]:
    """``(h, w)`` of the restoration of a ``height×width`` upload under ``settings``: the centre
    crop, the downscale to ``max_side``, the crop to the task's factor (as
    :func:`~nested_inverse.service.prepare_image`)."""
    if settings.center_crop is not None:
        height, width = min(settings.center_crop, height), min(settings.center_crop, width)
    factor = 1
    if settings.task not in (INPAINT_MASK, GENERATE):
        factor = max(1, resolve_task(settings.task).geometry()[0])
    if settings.degraded:  # the observation is shrunk, then restored factor× larger
        h, w = downscaled_size(height, width, (settings.max_side or 0) // factor or None)
        return h * factor, w * factor
    h, w = downscaled_size(height, width, settings.max_side)
    return h // factor * factor, w // factor * factor


def estimate(prior: Any, source: Source | None, settings: Settings) -> str:
    """One line for the page: the restoration's size and about how long the run takes
    (:func:`~nested_inverse.service.estimate_seconds`)."""
    if source is None or settings.task == GENERATE:
        return ""
    h, w = restored_size(*source.image.shape[-2:], settings)
    config = settings.config()
    seconds = estimate_seconds(prior, h, w, config)
    line = f"Restores **{w}×{h}** pixels"
    if seconds is not None:
        line += f" in about **{_duration(seconds)}** ({config.budget} NFE on this server)"
    return line + "."


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 90 else f"{minutes / 60:.1f} h"


def marked(photo01: Tensor, top: int, left: int, h: int, w: int) -> np.ndarray:
    """``photo01: [1, 3, H, W]`` in [0, 1] as uint8 ``[H, W, 3]`` with a magenta frame around
    the restored ``h×w`` window at ``(top, left)`` (2 pixels wide, or 1 % of the larger side)."""
    arr = (photo01[0].permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy().copy()
    t = max(2, max(arr.shape[:2]) // 100)
    b, r = min(top + h, arr.shape[0]), min(left + w, arr.shape[1])
    magenta = np.array([255, 0, 255], dtype=np.uint8)
    for rows, cols in ((slice(max(top - t, 0), top), slice(max(left - t, 0), r + t)),
                       (slice(b, b + t), slice(max(left - t, 0), r + t)),
                       (slice(top, b), slice(max(left - t, 0), left)),
                       (slice(top, b), slice(r, r + t))):
        arr[rows, cols] = magenta
    return arr


def _unshown(image01: Tensor, shape: tuple[int, ...]) -> Tensor:
    """An enlarged page image ``[1, 3, H·f, W·f]`` back to ``shape`` (mean over each f×f block)."""
    f = display_factor(*shape[-2:])
    if f > 1 and tuple(image01.shape[-2:]) == (shape[-2] * f, shape[-1] * f):
        image01 = torch.nn.functional.avg_pool2d(image01, f)
    return image01


def _int(value: Any, zero_is_none: bool = False) -> Any:
    """A page number as an int when it is a whole number (None stays None; others are left for
    the settings to refuse with a message)."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return None if zero_is_none and value == 0 else value


def _float(value: Any) -> Any:
    return None if value is None or value == "" else float(value)


def build_page(sessions: Sessions, max_runs: int = 2) -> gr.Blocks:
    """The page, with ``max_runs`` runs at once over all tabs (more wait in Gradio's queue)."""
    latent = is_latent_prior(sessions.prior)
    with gr.Blocks(title="nested-inverse") as page:
        gr.Markdown(_INTRO + (_INTRO_LATENT if latent else ""))
        with gr.Row():
            with gr.Column(scale=1):
                inputs = _input_fields(sessions.prior)
            with gr.Column(scale=2):
                results = _result_fields()
        _wire(page, SimpleNamespace(**vars(inputs), **vars(results)), _Handlers(sessions),
              max_runs)
    return page


def _input_fields(prior: Any) -> SimpleNamespace:
    """The left column, created in the current Gradio context: the image, the task, the prompt or
    class (latent pipelines), the sizes and the sampler; the components by name."""
    latent = is_latent_prior(prior)
    kind = getattr(prior, "kind", None) if latent else None
    ui = SimpleNamespace()
    ui.upload = gr.File(label="Upload an image (PNG, JPEG, TIFF)", type="filepath",
                        file_types=["image"], elem_id="upload")
    ui.example = gr.Dropdown(named_images(), value=None, label="…or pick an example",
                             elem_id="example")
    ui.canvas = gr.ImageEditor(
        label="The image: for inpaint-mask, paint the region to fill", sources=(),
        type="numpy", image_mode="RGBA", elem_id="canvas",
        brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"))
    ui.mask_file = gr.File(label="…or upload a mask (white = observed, black = missing)",
                           type="filepath", file_types=["image"])
    ui.task = gr.Dropdown(TASKS, value=GENERATE if latent else "sr4", label="Task",
                          elem_id="task")
    # Steering a latent pipeline: shown only when one is served (the settings refuse these fields
    # for a pixel prior anyway).
    with gr.Accordion("Prompt / class (latent pipeline)", open=True, visible=latent):
        ui.prompt = gr.Textbox("", label="Prompt", elem_id="prompt", visible=kind == "text",
                               placeholder="a photo of a cat (text-to-image pipelines)")
        ui.negative = gr.Textbox("", label="Negative prompt", elem_id="negative_prompt",
                                 visible=kind == "text")
        ui.label = gr.Textbox("", label="Class (id or name; class-conditional pipelines)",
                              elem_id="class_label", visible=kind == "class")
        ui.scale = gr.Number(None, minimum=0, elem_id="guidance_scale",
                             label="Guidance scale (empty: 7.5 text / 4 class for "
                                   "generate, 1 for restorations)")
    ui.sigma_y = gr.Number(0.0, label="σ_y: noise std on the [0, 1] scale", minimum=0)
    ui.degraded = gr.Checkbox(False, label="The image is already degraded (it is y)")
    with gr.Row():
        ui.max_side = gr.Number(DEFAULT_MAX_SIDE, precision=0, minimum=0, elem_id="max_side",
                                label="Max side (px; the whole image is downscaled to it; 0: "
                                      "full size)")
        ui.crop = gr.Number(0, precision=0, minimum=0, elem_id="crop",
                            label="Centre crop N×N (0: none; the size for generate)")
    ui.estimated = gr.Markdown("", elem_id="estimate")
    with gr.Accordion("Sampler", open=True):
        # only the solvers that fit the served prior (pixel or latent)
        ui.method = gr.Dropdown(solvers.available(latent=latent),
                                value=solvers.default_method(prior), label="Method")
        # Gradio shows an empty number as 0 and refuses a value under `minimum` before any
        # handler runs ("Value 0 is less than minimum value 1", naming no field): so these have
        # no minimum, 0 or empty means auto / none, and the settings refuse the rest with the
        # field's label.
        with gr.Row():
            ui.outer = gr.Number(None, precision=0, elem_id="outer",
                                 label="Outer steps K (0 or empty: auto)")
            ui.inner = gr.Number(None, precision=0, elem_id="inner",
                                 label="Inner steps I (0 or empty: auto)")
            ui.seed = gr.Number(0, precision=0, minimum=0, label="Seed")
        with gr.Row():
            ui.budget = gr.Number(None, precision=0, elem_id="budget",
                                  label="Budget (NFE; 0 or empty: none)")
            ui.deadline = gr.Number(None, elem_id="deadline",
                                    label="Deadline (s; 0 or empty: none)")
        ui.compare = gr.Checkbox(False, label="Show vanilla x̂0 beside, at equal NFE")
    return ui


def _result_fields() -> SimpleNamespace:
    """The right column, created in the current Gradio context: Run and the status, the pictures,
    the buttons that steer a run, the strip, Edit, the downloads and the uncertainty map."""
    ui = SimpleNamespace()
    # Run and the status at the top of the results, where the eye is after pressing.
    with gr.Row(equal_height=True):
        ui.run = gr.Button("Run", variant="primary", elem_id="run", scale=1)
        ui.stop = gr.Button("Stop (keep this result)", variant="stop", elem_id="stop", scale=1)
        ui.status = gr.Markdown("Load an image and press Run.", elem_id="status")
    # y · restoration · reference at one display scale (each enlarged to ~256 px).
    with gr.Row():
        ui.observed = gr.Image(label="Observation y", type="numpy", interactive=False,
                               elem_id="observed", height=_SHOWN_HEIGHT)
        ui.result = gr.Image(label="Restoration (live)", type="numpy", interactive=False,
                             elem_id="result", height=_SHOWN_HEIGHT)
        ui.reference = gr.Image(label="Reference", type="numpy", interactive=False,
                                elem_id="reference", height=_SHOWN_HEIGHT)
        ui.vanilla = gr.Image(label="Vanilla x̂0", type="numpy", interactive=False,
                              visible=False, height=_SHOWN_HEIGHT)
    gr.Markdown(_LEGEND, elem_id="legend")
    ui.photo = gr.Image(label="Your photo, the restored region marked", type="numpy",
                        interactive=False, elem_id="photo", height=200)
    with gr.Row():
        ui.resample = gr.Button("Resample last step", elem_id="resample")
        ui.pause = gr.Button("Pause", elem_id="pause")
        ui.resume = gr.Button("Continue", elem_id="continue")
    with gr.Row():
        ui.new_inner = gr.Number(4, precision=0, minimum=1, label="Inner steps from the next step")
        ui.set_inner = gr.Button("Set inner steps")
    ui.strip = gr.Gallery(label="Every outer step (click one for its time)", columns=8, height=170,
                          object_fit="contain", elem_id="strip")
    with gr.Accordion("Edit: Pause, paint on the result, apply", open=False):
        ui.edit_canvas = gr.ImageEditor(label="The current result", sources=(), type="numpy",
                                        image_mode="RGB")
        ui.apply_edit = gr.Button("Apply edit and continue")
    ui.downloads = gr.File(label="Downloads: restoration, observation, steps, record",
                           file_count="multiple", interactive=False, elem_id="downloads")
    with gr.Row():
        ui.samples = gr.Number(4, precision=0, minimum=2, maximum=16, label="Samples")
        ui.uncertain = gr.Button("Uncertainty map (std over samples)")
    ui.uncertainty = gr.Image(label="Per-pixel std", type="numpy", interactive=False, height=240)
    return ui


def _wire(page: gr.Blocks, ui: SimpleNamespace, handlers: _Handlers, max_runs: int) -> None:
    """The page's events → ``handlers``: loading an image, the estimate, Run (``max_runs`` at once
    over all tabs, in one concurrency group with the uncertainty map), the commands, closing a
    tab."""
    loading = [ui.canvas, ui.upload, ui.status, ui.result, ui.strip, ui.downloads, ui.photo,
               ui.observed, ui.reference]
    loads = [ui.upload.upload(handlers.on_upload, [ui.upload], loading, concurrency_limit=None),
             ui.example.change(handlers.on_example, [ui.example], loading,
                               concurrency_limit=None)]
    inputs = [ui.canvas, ui.mask_file, ui.task, ui.sigma_y, ui.degraded, ui.crop, ui.max_side,
              ui.method, ui.outer, ui.inner, ui.seed, ui.budget, ui.deadline, ui.compare,
              ui.prompt, ui.negative, ui.label, ui.scale]
    sizing = [ui.canvas, ui.task, ui.degraded, ui.crop, ui.max_side, ui.method, ui.outer,
              ui.inner, ui.budget]
    on_estimate = handlers.on_estimate  # one function for every event: one concurrency group
    # A new image (the canvas set by a handler) and every field that changes the size or the
    # budget update the estimate.
    for event in [*loads, *(box.change for box in sizing[1:])]:
        then = event.then if hasattr(event, "then") else event
        then(on_estimate, sizing, [ui.estimated], concurrency_limit=None, show_progress="hidden")
    ui.run.click(handlers.on_run, inputs, [ui.status, ui.result, ui.vanilla, ui.strip,
                                           ui.edit_canvas, ui.downloads, ui.photo, ui.observed,
                                           ui.reference],
                 concurrency_limit=max_runs, concurrency_id="runs")
    ui.uncertain.click(handlers.on_uncertainty, [ui.samples], [ui.uncertainty],
                       concurrency_id="runs")
    for button, act in ((ui.stop, lambda s: s.stop()),
                        (ui.resample, lambda s: s.command(Resample())),
                        (ui.pause, lambda s: s.pause()), (ui.resume, lambda s: s.resume())):
        button.click(handlers.control(act), None, None, concurrency_limit=None)
    ui.set_inner.click(handlers.control_with(lambda s, n: s.command(SetInnerSteps(_int(n)))),
                       [ui.new_inner], None, concurrency_limit=None)
    ui.apply_edit.click(handlers.control_with(_edit), [ui.edit_canvas], None,
                        concurrency_limit=None)
    page.unload(handlers.on_unload)


class _Handlers:
    """The page's event handlers over one server's ``sessions``, each tab's found by Gradio's
    session hash. Gradio passes a handler its inputs positionally and the request only to a
    parameter annotated ``gr.Request``; the names (``on_run`` …) are what the tests look up."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    def session_of(self, request: gr.Request) -> Session:
        return self.sessions.get(request.session_hash)

    def on_upload(self, path: Any, request: gr.Request) -> Any:
        session = self.session_of(request)
        try:
            return _loaded(read_image(path, name=_name_of(path)), session)
        except UsageError as err:
            return _refused(err, session)

    def on_example(self, name: str | None, request: gr.Request) -> Any:
        if not name:
            return (gr.skip(),) * 9
        session = self.session_of(request)
        try:
            return _loaded(read_named(name), session)
        except UsageError as err:
            return _refused(err, session)

    def on_estimate(self, canvas: Any, task: str, degraded: bool, crop: Any, max_side: Any,
                    method: str, outer: Any, inner: Any, budget: Any,
                    request: gr.Request) -> str:
        source = self.session_of(request).source if editor_image(canvas) is not None else None
        try:
            return estimate(self.sessions.prior, source, Settings(
                task=task, degraded=bool(degraded), center_crop=_int(crop, zero_is_none=True),
                max_side=_int(max_side, zero_is_none=True), method=method,
                outer=_int(outer, zero_is_none=True), inner=_int(inner, zero_is_none=True),
                budget_nfe=_int(budget, zero_is_none=True)))
        except (ValueError, TypeError):  # settings Run would refuse: Run says why
            return ""

    def on_run(self, canvas: Any, mask_file: Any, task: str, sigma_y: Any, degraded: bool,
               crop: Any, max_side: Any, method: str, outer: Any, inner: Any, seed: Any,
               budget: Any, deadline: Any, compare: bool, prompt: Any, negative: Any, label: Any,
               scale: Any, request: gr.Request) -> Any:
        session = self.session_of(request)
        try:
            settings = Settings(task=task, sigma_y=_float(sigma_y) or 0.0, degraded=bool(degraded),
                                prompt=_text(prompt), negative_prompt=_text(negative),
                                class_label=_class_value(label), guidance_scale=_float(scale),
                                method=method, outer=_int(outer, zero_is_none=True),
                                inner=_int(inner, zero_is_none=True),
                                seed=_int(seed) or 0, budget_nfe=_int(budget, zero_is_none=True),
                                deadline_s=_float(deadline) or None,
                                center_crop=_int(crop, zero_is_none=True),
                                max_side=_int(max_side, zero_is_none=True),
                                compare_vanilla=bool(compare))
            # Only what the canvas shows runs: an emptied canvas means no input, whatever the
            # session held before.
            shown = session.source if editor_image(canvas) is not None else None
            source = _with_mask(shown, canvas, mask_file, task)
            fixed: tuple[Any, ...] | None = None
            for frame in session.run(settings, source):
                if fixed is None:  # the job exists once the first frame comes
                    fixed = _inputs_shown(session)
                    yield _outputs(frame, settings.compare_vanilla) + fixed
                else:
                    yield _outputs(frame, settings.compare_vanilla) + (gr.skip(),) * 3
        except ValueError as err:  # UsageError, or a library check (K beyond the schedule …)
            # A user's mistake: one line in the server's log, the message in the status line
            # (replacing the last run's text) and a toast; no traceback, no red error badges.
            message = on_page(str(err))
            log.info("refused run: %s", message)
            gr.Warning(message)
            yield (f"**Not run:** {message}",) + (gr.skip(),) * 8
        except Exception as err:  # noqa: BLE001 - the page shows one line, the log the rest
            log.exception("run failed")
            message = f"the run failed on the server ({type(err).__name__}; the log has details)"
            gr.Warning(message)
            yield (f"**{message}**",) + (gr.skip(),) * 8

    def on_uncertainty(self, samples: Any, request: gr.Request) -> Any:
        session = self.session_of(request)
        try:
            for std, n in session.uncertainty(_int(samples)):
                peak = float(std.max())
                shown = std / peak if peak > 0 else std
                yield gr.update(value=_shown(shown[None, None] * 2 - 1),
                                label=f"per-pixel std over {n} samples (white = {peak:.3f})")
        except UsageError as err:
            message = on_page(str(err))
            log.info("refused uncertainty map: %s", message)
            gr.Warning(message)
            yield gr.skip()

    # Gradio passes the request only to a parameter annotated gr.Request, so one signature each.
    def control(self, act: Any) -> Any:
        """A button's handler: ``act(session)`` on the tab's session, a refusal as a toast."""
        def handler(request: gr.Request) -> None:
            _act_on(self.session_of(request), act)
        return handler

    def control_with(self, act: Any) -> Any:
        """:meth:`control` for a button with one input: ``act(session, value)``."""
        def handler(value: Any, request: gr.Request) -> None:
            _act_on(self.session_of(request), act, value)
        return handler

    def on_unload(self, request: gr.Request) -> None:
        self.sessions.close(request.session_hash)


def _loaded(source: Source, session: Session) -> tuple[Any, ...]:
    """Outputs for a new input: the canvas shows it, the old results go (they were of another
    image)."""
    session.source = source
    arr = (source.image[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    h, w = arr.shape[:2]
    return ({"background": arr, "layers": [], "composite": arr}, gr.skip(),
            f"{source.name}: {w}×{h} pixels loaded; press **Run**", None, [], None,
            None, None, None)


def _refused(err: UsageError, session: Session) -> tuple[Any, ...]:
    """Outputs for a refused input: no source at all (a Run now is refused, never run on an
    earlier image), the upload box and canvas emptied, the message where the status is."""
    session.source = None
    message = on_page(str(err))
    log.info("refused input: %s", message)
    gr.Warning(message)
    return (None, None, f"**Not loaded:** {message}. No image is loaded now.", None, [],
            None, None, None, None)


def _act_on(session: Session, act: Any, *values: Any) -> None:
    """``act(session, *values)``; a refused command is a line in the log and a toast."""
    try:
        act(session, *values)
    except (UsageError, ValueError) as err:
        log.info("refused command: %s", on_page(str(err)))
        gr.Warning(on_page(str(err)))


def _edit(session: Session, canvas: Any) -> None:
    """Apply what was painted on the edit canvas to the paused step (at the run's own size)."""
    image = editor_composite(canvas)
    if image is None or session.job is None:
        raise UsageError("`edit`: nothing painted; Pause, paint on the current result, then "
                         "apply")
    session.command(Edit(_unshown(image, session.job.image_shape)))


def _name_of(path: Any) -> str | None:
    """The upload's own file name (Gradio keeps it as the temporary copy's name)."""
    return Path(path).name if path else None


def _with_mask(source: Source | None, canvas: Any, mask_file: Any, task: str) -> Source | None:
    """``source`` with the mask the page holds for inpaint-mask: the painted one, else the
    uploaded file; other tasks ignore both."""
    if source is None or task != INPAINT_MASK:
        return source
    layers = canvas.get("layers") if isinstance(canvas, dict) else None
    mask = painted_mask(layers, source.image)
    if mask is not None:
        return Source(source.name, source.image, mask, "painted")
    if mask_file:
        return Source(source.name, source.image, read_mask(mask_file, source.image),
                      _name_of(mask_file))
    return source


def _outputs(frame: Frame, compare: bool) -> tuple[Any, ...]:
    """The stream's outputs for one frame: status, result, vanilla, strip, edit canvas, files."""
    if frame.message:
        gr.Warning(on_page(frame.message))
    current = frame.current
    step = "A†y" if current.outer_step == 0 else f"step {current.outer_step} · {current.nfe} NFE"
    result = gr.update(value=_shown(current.image), label=f"Restoration: {step}")
    if compare and frame.vanilla is not None:
        vanilla = gr.update(value=_shown(frame.vanilla.image), visible=True,
                            label=f"Vanilla x̂0: {frame.vanilla.nfe} NFE")
    else:
        vanilla = gr.update(visible=compare)
    strip = [(_shown(r.image), short_caption(r)) for r in frame.results]
    edit_canvas = gr.skip()
    if frame.paused or frame.done:  # what Edit paints on: the paused step, or the final result
        arr = _shown(current.image)
        edit_canvas = {"background": arr, "layers": [], "composite": arr}
    files = [str(p) for p in frame.files.values()] if frame.done else gr.skip()
    return f"**{frame.status}**", result, vanilla, strip, edit_canvas, files


def _inputs_shown(session: Session) -> tuple[Any, ...]:
    """The run's fixed pictures: the photo with the restored window marked, the observation y
    and the reference (the clean crop, when the page degraded it), each an update with a caption."""
    job = session.job
    if job is None or job.problem is None:  # generation: nothing observed
        return gr.update(value=None), gr.update(value=None), gr.update(value=None)
    H, W = job.source.image.shape[-2:]
    h, w = job.image_shape[-2:]
    crop = job.settings.center_crop
    c_h, c_w = (H, W) if crop is None else (min(crop, H), min(crop, W))
    # Downscaled (max side) when the restoration is smaller than the window by more than the
    # crop to the task's factor takes (at most factor − 1 pixels, i.e. under 8 here).
    shrunk = max(c_h - h, c_w - w) >= 8
    top, left = region(H, W, crop, c_h, c_w) if shrunk else region(H, W, crop, h, w)
    hh, ww = (c_h, c_w) if shrunk else (h, w)
    what = "the whole photo" if crop is None else f"the {ww}×{hh} window marked (magenta) of {W}×{H}"
    if shrunk:
        what += f", downscaled to {w}×{h}"
    photo = gr.update(value=marked(job.source.image, top, left, hh, ww),
                      label=f"Your photo: the page restores {what}")
    y = job.problem.y01.detach().float().cpu()
    y_label = "Observation y" + (f" ({y.shape[-1]}×{y.shape[-2]})"
                                 if y.ndim == 4 and y.shape[-1] != w else "")
    observed = gr.update(value=_shown01(y.clamp(0, 1)), label=y_label)
    if job.clean is None:
        reference = gr.update(value=None, label="Reference (none: the input was already y)")
    else:
        reference = gr.update(value=_shown01(job.clean), label="Reference (clean)")
    return photo, observed, reference


def short_caption(result: Any) -> str:
    """A strip caption that fits under a thumbnail: ``"4 · 16 NFE"`` (``"A†y"`` first)."""
    return "A†y" if result.outer_step == 0 else f"{result.outer_step} · {result.nfe} NFE"
