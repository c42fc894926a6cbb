"""One browser tab's run: the anytime stream as page frames, and the buttons that steer it.

:meth:`Session.run` is a generator the page streams from: a :class:`Frame` after ``A†y`` and after
every outer step, then a last one with the downloads. The buttons call :meth:`Session.stop`,
:meth:`Session.command`, :meth:`Session.pause` and :meth:`Session.resume` from other threads; the
guidance commands wait in an inbox and are sent into the run by the streaming thread between outer
steps (an :class:`~nested_inverse.AnytimeRun` is not to be driven from two threads). Stop does not
wait for the step in progress: the run's stop check (``iterate(stop=...)``) ends it before its next
evaluation, and the result on the page, the latest delivered, is the final one.

Nothing here imports Gradio; :mod:`nested_inverse.app.page` lays the page out around it.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..anytime import AnytimeResult, AnytimeRun
from ..errors import UsageError
from ..generate import LatentStream
from ..guidance import Edit, Resample, SetInnerSteps, Stop
from ..imageio import to_model_range
from ..priors import Prior
from .inputs import Source
from ..service import display
from .job import Job, Settings, prepare
from .record import write_outputs

__all__ = ["Frame", "Session", "Sessions"]

log = logging.getLogger(__name__)

_RESUME = object()  # the inbox's "continue" (after a pause)
_WAIT_S = 0.1  # how often a paused run looks at its inbox and the stop flag


class _Decoded(LatentStream):
    """A latent run's stream with every result decoded to an image (model range), as the page
    shows, downloads and measures it; an image-sized ``Edit`` is encoded to a latent first (a
    latent-sized one is passed as it is), as :class:`~nested_inverse.generate.GenerationRun`.

    Before any evaluation a generation has nothing to decode: it shows mid-grey (0), as the
    generation stream does; a restoration shows the decoded ``encode(A†y)``.
    """

    def __init__(self, run: Any, prior: Any, image_shape: tuple[int, ...], generation: bool) -> None:
        super().__init__(run, prior, image_shape)
        self.generation = generation

    def _decoded(self, result: AnytimeResult) -> AnytimeResult:
        if self.generation and result.nfe == 0:
            image = torch.zeros(self.image_shape, device=result.image.device)
        else:
            with torch.no_grad():
                image = self.prior.decode(result.image).clamp(-1, 1)
        return dataclasses.replace(result, image=image)


@dataclass
class Frame:
    """What the page shows at one moment of a run.

    Attributes:
        results: the trajectory so far, one :class:`AnytimeResult` per outer step (``A†y`` first;
            a resampled or edited step replaces its entry); the last is the current result.
            Images are ``[1, C, H, W]`` in the model range.
        vanilla: the vanilla solver's latest result at the same evaluations (when compared).
        status: one line for the page (what is running, paused, finished).
        message: a refused command or a note to show as a warning, else None.
        paused: the run waits for Continue or an edit.
        done: the last frame; ``files`` then holds the downloads by role.
    """

    results: list[AnytimeResult]
    vanilla: AnytimeResult | None = None
    status: str = ""
    message: str | None = None
    paused: bool = False
    done: bool = False
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def current(self) -> AnytimeResult:
        return self.results[-1]


def caption(result: AnytimeResult) -> str:
    """``"step 3 · 12 NFE · 0.8 s"`` (``"A†y · 0 NFE"`` before the first step)."""
    step = "A†y" if result.outer_step == 0 else f"step {result.outer_step}"
    return f"{step} · {result.nfe} NFE · {result.elapsed_s:.1f} s"


class Session:
    """The state of one tab: at most one run at a time, its inbox of commands and its downloads.

    Args:
        prior: the loaded prior, shared by all tabs (read-only during runs).
        prior_name: how the record names it (``"default"`` or the ``--prior`` given).
        device: where the prior runs.
        root: the folder its downloads go in a subfolder of (default: the system's temporary one).

    Attributes:
        source: the image this tab loaded (upload or example), kept exactly as read.
        job, last: the latest run and its latest frame.
    """

    def __init__(self, prior: Prior, prior_name: str = "default",
                 device: torch.device | str = "cpu", root: Path | None = None) -> None:
        self.prior = prior
        self.prior_name = prior_name
        self.device = torch.device(device)
        self.folder = Path(tempfile.mkdtemp(prefix="tab-", dir=root))
        self.source: Source | None = None
        self.job: Job | None = None
        self.last: Frame | None = None  # the latest frame of the latest run
        self._lock = threading.Lock()
        self._running = False  # a run streams (the buttons act on it)
        self._sampling = False  # the uncertainty map's extra samples are being drawn
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False

    # ------------------------------------------------------------------ the buttons (any thread)
    @property
    def running(self) -> bool:
        return self._running

    def stop(self) -> None:
        """Keep the current result and end the run (within one network evaluation)."""
        self._stop.set()

    def pause(self) -> None:
        """Wait after the step in progress until :meth:`resume` (or an edit, or Stop)."""
        self._check_running("Pause")
        self._paused.set()

    def resume(self) -> None:
        """Go on after :meth:`pause`."""
        self._check_running("Continue")
        self._inbox.put(_RESUME)

    def command(self, command: Edit | Resample | SetInnerSteps) -> None:
        """Queue a guidance command for the running sampler; it acts after the step in progress.

        ``Edit`` takes the image in [0, 1] here (``[1, 3, H, W]``, the page's painted result) and
        also ends a pause. Refusals by the sampler come back as the next frame's ``message``.
        """
        self._check_running(type(command).__name__)
        if isinstance(command, Edit):
            shape = self.job.image_shape
            if tuple(command.image.shape) != tuple(shape):
                raise UsageError(f"`edit` image is {tuple(command.image.shape)[-1]}×"
                                 f"{tuple(command.image.shape)[-2]} pixels; the restoration is "
                                 f"{shape[-1]}×{shape[-2]}: paint on the current result")
            command = Edit(to_model_range(command.image.to(torch.float32)))
        self._inbox.put(command)

    def close(self) -> None:
        """The tab is gone: stop its run and delete its downloads."""
        self._closed = True
        self._stop.set()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _check_running(self, what: str) -> None:
        if not self._running:
            raise UsageError(f"`{what}` needs a run in progress; press Run first")

    # ------------------------------------------------------------------ the stream (one thread)
    def run(self, settings: Settings, source: Source | None) -> Iterator[Frame]:
        """Frames of a run of ``settings`` on ``source``: after ``A†y``, after every outer step and
        after every command, then one ``done`` frame with the downloads.

        Raises :class:`UsageError` (before any evaluation) for bad settings or input, or when this
        tab already has a run in progress.
        """
        job = prepare(settings, source, self.device, self.prior)
        with self._lock:
            if self._running or self._sampling:
                raise UsageError("this tab already has a run in progress; press Stop first")
            if self._closed:
                raise UsageError("this tab's session has ended; reload the page")
            self._running = True
            self._stop, self._paused = threading.Event(), threading.Event()
            self._inbox = queue.SimpleQueue()
        self.job = job
        try:
            yield from self._stream(job)
        finally:
            self._running = False

    def _stream(self, job: Job) -> Iterator[Frame]:
        s = job.settings
        prior, stop = job.prior if job.latent else self.prior, self._stop.is_set
        run = self._decoding(job, job.sampler(prior).iterate(job.generator(), budget_nfe=s.budget_nfe,
                                                             deadline_s=s.deadline_s, stop=stop))
        vanilla = _Beside(self._decoding(job, job.sampler(prior, vanilla=True)
                                         .iterate(job.generator(), stop=stop))) \
            if s.compare_vanilla else None
        started = time.perf_counter()
        trajectory: list[AnytimeResult] = []
        guidance: list[dict[str, Any]] = []
        try:
            for result in run:
                trajectory.append(result)
                yield self._frame(trajectory, vanilla, f"running: {caption(result)}")
                yield from self._between_steps(run, trajectory, vanilla, guidance)
                if self._stop.is_set():
                    break
        finally:
            run.close()
        stopped = self._stop.is_set()
        if self._closed:
            return
        files = write_outputs(job, trajectory, guidance, stopped, time.perf_counter() - started,
                              self.prior_name, _dtype_name(self.prior), self.folder)
        how = "stopped" if stopped else "finished"
        self.last = Frame(list(trajectory), vanilla.latest if vanilla else None,
                          f"{how}: {caption(trajectory[-1])}", done=True, files=files)
        yield self.last

    @staticmethod
    def _decoding(job: Job, run: AnytimeRun) -> Any:
        """``run`` itself, or for a latent run its results decoded (see :class:`_Decoded`)."""
        if not job.latent:
            return run
        return _Decoded(run, job.prior, job.image_shape, job.problem is None)

    def _between_steps(self, run: AnytimeRun, trajectory: list[AnytimeResult],
                       vanilla: _Beside | None, guidance: list[dict[str, Any]]) -> Iterator[Frame]:
        """Apply queued commands; while paused, wait for more (or Continue, an Edit, Stop)."""
        announced = False
        while not self._stop.is_set():
            try:
                item = self._inbox.get(timeout=_WAIT_S) if self._paused.is_set() else \
                    self._inbox.get_nowait()
            except queue.Empty:
                if not self._paused.is_set():
                    return
                if not announced:
                    announced = True
                    yield self._frame(trajectory, vanilla, "paused: edit the result, or Continue",
                                      paused=True)
                continue
            if item is _RESUME or isinstance(item, Edit):
                self._paused.clear()
            if item is _RESUME:
                continue
            yield self._apply(run, item, trajectory, vanilla, guidance)
        try:
            run.send(Stop())  # the sampler's own Stop: the latest result is the final one
        except RuntimeError:
            pass  # the run has already ended

    def _apply(self, run: AnytimeRun, command: Any, trajectory: list[AnytimeResult],
               vanilla: _Beside | None, guidance: list[dict[str, Any]]) -> Frame:
        name = type(command).__name__
        try:
            result = run.send(command)
        except (ValueError, RuntimeError) as err:
            return self._frame(trajectory, vanilla, f"running: {caption(trajectory[-1])}",
                               message=f"{name} refused: {err}")
        if self._stop.is_set():  # stopped during a Resample: the previous result stands
            return self._frame(trajectory, vanilla, "stopping")
        trajectory[-1] = result
        entry: dict[str, Any] = {"command": name, "outer_step": result.outer_step,
                                 "nfe": result.nfe}
        if isinstance(command, SetInnerSteps):
            entry["steps"] = command.steps
        guidance.append(entry)
        return self._frame(trajectory, vanilla, f"{name}: {caption(result)}")

    def _frame(self, trajectory: list[AnytimeResult], vanilla: _Beside | None, status: str,
               message: str | None = None, paused: bool = False) -> Frame:
        beside = vanilla.at(trajectory[-1].nfe) if vanilla is not None else None
        self.last = Frame(list(trajectory), beside, status, message, paused)
        return self.last

    # ------------------------------------------------------------------ extras
    def uncertainty(self, samples: int = 4) -> Iterator[tuple[Tensor, int]]:
        """Per-pixel standard deviation over ``samples`` restorations of the last run's problem
        (its own result and ``samples − 1`` fresh runs, sampling seeds 1, 2 …), mean over
        channels: ``([H, W] in the [0, 1] scale, samples so far)`` after each new sample."""
        if self.job is None or self.last is None or not self.last.done:
            raise UsageError("`uncertainty` needs a finished run; press Run first")
        if isinstance(samples, bool) or not isinstance(samples, int) or not 2 <= samples <= 16:
            raise UsageError(f"`samples`={samples!r} must be an integer in [2, 16]")
        with self._lock:
            if self._running or self._sampling:
                raise UsageError("this tab already has a run in progress; press Stop first")
            self._sampling = True
            self._stop = threading.Event()
        try:
            job = self.job
            prior = job.prior if job.latent else self.prior
            stack = [display(None, self.last.current.image)]  # the page's results: decoded
            for index in range(1, samples):
                x = job.sampler(prior).sample(job.generator(index), stop=self._stop.is_set)
                if self._stop.is_set():  # the sample was cut short: not one of the posterior's
                    return
                stack.append(display(prior, x))
                yield torch.stack(stack).std(0, unbiased=True)[0].mean(0), len(stack)
        finally:
            self._sampling = False


class _Beside:
    """A vanilla run advanced only as far as the nested run beside it: ``at(nfe)`` steps it to the
    last result with at most ``nfe`` evaluations (its x̂0 then), at no cost beyond those."""

    def __init__(self, run: AnytimeRun) -> None:
        self.run = run
        self.latest: AnytimeResult | None = None
        self._next: AnytimeResult | None = None  # computed, not yet shown (its nfe is too high)
        self._ended = False

    def at(self, nfe: int) -> AnytimeResult | None:
        while True:
            if self._next is None:
                if self._ended:
                    return self.latest
                try:
                    self._next = next(self.run)
                except StopIteration:
                    self._ended = True
                    return self.latest
            if self._next.nfe > nfe:
                return self.latest
            self.latest, self._next = self._next, None


def _dtype_name(prior: Any) -> str:
    return str(getattr(prior, "dtype", torch.float32)).replace("torch.", "")


class Sessions:
    """The sessions of all open tabs, by Gradio's per-tab session hash.

    A tab's session is made on its first use and closed (run stopped, downloads removed) when the
    tab unloads; no tab can reach another's run. Downloads live under ``root``.
    """

    def __init__(self, prior: Prior, prior_name: str = "default",
                 device: torch.device | str = "cpu") -> None:
        self.prior, self.prior_name, self.device = prior, prior_name, device
        self.root = Path(tempfile.mkdtemp(prefix="nested-inverse-app-"))
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, key: str) -> Session:
        with self._lock:
            if key not in self._sessions:
                self._sessions[key] = Session(self.prior, self.prior_name, self.device, self.root)
            return self._sessions[key]

    def close(self, key: str) -> None:
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is not None:
            running = session.running
            session.close()
            log.info("a tab closed%s", "; its run was stopped" if running else "")
