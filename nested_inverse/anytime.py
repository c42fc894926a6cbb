r"""The anytime stream every front end reads: one :class:`AnytimeResult` after each piece of work.

A sampler's ``iterate(generator, budget_nfe, deadline_s)`` returns an :class:`AnytimeRun`: ``A†y``
at 0 evaluations, then a result after every outer step of a nested run
(:class:`~nested_inverse.NestedSampler`, :mod:`nested_inverse.nested`) or after every step of a
plain solver run (:class:`~nested_inverse.VanillaSampler`, :mod:`nested_inverse.vanilla`). Break out of the loop to keep the latest result; send guidance commands
(:mod:`nested_inverse.guidance`) between results. ``restore()``, the command line, the dataset
runner and the benchmarks are thin layers over this stream.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from .guidance import Steerable, apply

__all__ = ["AnytimeResult", "AnytimeRun", "StopCheck", "StopOnly", "run_to_end"]


@dataclass
class AnytimeResult:
    """The restoration available at one moment of a run.

    Attributes:
        image: the restoration ``[B, C, H, W]`` in the model range [-1, 1] (``A†y`` at first).
        outer_step: results delivered before this one (outer steps of a nested run, solver steps
            of a vanilla run; 0 for ``A†y``).
        nfe: network evaluations spent so far, per image (resamples and aborted runs included).
        elapsed_s: seconds since the run started when this result became available.
        x_t: the state this result was computed from ``[B, C, H, W]`` (for a nested run the outer
            state its inner run started from; the initial state for outer step 0).
        t: the timestep of ``x_t``.
    """

    image: Tensor
    outer_step: int
    nfe: int
    elapsed_s: float
    x_t: Tensor
    t: int


class AnytimeRun(Iterator[AnytimeResult]):
    """The iterator a sampler's ``iterate`` returns.

    ``next(run)`` gives the next result; ``run.send(command)`` applies a guidance command to the
    current result and answers with the (updated) current result. A rejected command raises
    ``ValueError``/``RuntimeError`` and the run stays alive. ``run.latest`` is the latest result
    (None before the first).

    Args:
        results: the generator of results (it reads ``target.latest`` for what commands changed).
        target: what commands act on (:class:`~nested_inverse.guidance.Steerable`).
    """

    def __init__(self, results: Iterator[AnytimeResult], target: Steerable) -> None:
        self._results = results
        self._target = target
        self._started = False
        self._ended = False

    @property
    def latest(self) -> AnytimeResult | None:
        return self._target.latest

    def __iter__(self) -> AnytimeRun:
        return self

    def __next__(self) -> AnytimeResult:
        # The first result (0 evaluations) is always delivered: a stopped run still has one.
        if self._ended or (self._started and self._target.stopped):
            self._ended = True
            raise StopIteration
        self._started = True
        try:
            result = next(self._results)
        except StopIteration:
            self._ended = True
            raise
        self._target.latest = result
        return result

    def send(self, command: object) -> AnytimeResult:
        if command is None:
            return next(self)
        if not self._started:
            raise RuntimeError("call next(run) for the first result before sending commands")
        if self._ended or self._target.stopped:
            raise RuntimeError(f"the run has ended; {command!r} must be sent before the next() "
                               "that ends it")
        return apply(command, self._target)

    def close(self) -> None:
        self._ended = True
        close = getattr(self._results, "close", None)
        if close is not None:
            close()


def run_to_end(
    run: AnytimeRun, callback: Callable[[AnytimeResult], None] | None = None
) -> list[AnytimeResult]:
    """Every result of ``run``, in order (``callback(result)`` after each, e.g. a progress bar)."""
    results = []
    for result in run:
        results.append(result)
        if callback is not None:
            callback(result)
    return results


#: a caller's stop check (``threading.Event().is_set``, a Ctrl-C flag, a deadline of its own): the
#: run asks it before every network evaluation and ends, keeping its latest result, once it is true.
StopCheck = Callable[[], bool]


class StopOnly:
    """What guidance commands act on in a run that only ``Stop`` can steer (vanilla runs); the
    base of richer sessions, which override the other commands.

    ``stopped`` is true once ``Stop`` was sent or the caller's ``stop`` check answers true; the
    samplers ask it between network evaluations (as diffusers' pipelines ask ``interrupt``), so
    any caller can end a run without wrapping its prior.
    """

    def __init__(self, stop: StopCheck | None = None) -> None:
        if stop is not None and not callable(stop):
            raise ValueError(f"`stop` must be a callable answering True to end the run (e.g. "
                             f"threading.Event().is_set), got {type(stop).__name__}")
        self.latest: AnytimeResult | None = None
        self._check = stop
        self._stopped = False

    @property
    def stopped(self) -> bool:
        if not self._stopped and self._check is not None and self._check():
            self._stopped = True
        return self._stopped

    def stop(self) -> AnytimeResult:
        self._stopped = True
        return self.latest

    def edit(self, image: Tensor) -> AnytimeResult:
        raise ValueError("`Edit` needs a nested run (NestedSampler); a vanilla run accepts only Stop()")

    def resample(self) -> AnytimeResult:
        raise ValueError("`Resample` needs a nested run (NestedSampler); a vanilla run accepts only "
                         "Stop()")

    def set_inner_steps(self, steps: int) -> AnytimeResult:
        raise ValueError("`SetInnerSteps` needs a nested run (NestedSampler); a vanilla run accepts "
                         "only Stop()")


def __getattr__(name: str) -> Any:
    # `VanillaSampler` lived here until it got its own module beside `nested.py`.
    if name == "VanillaSampler":
        warnings.warn("`nested_inverse.anytime.VanillaSampler` moved to "
                      "`nested_inverse.vanilla.VanillaSampler` (also `nested_inverse.VanillaSampler`)",
                      DeprecationWarning, stacklevel=2)
        from .vanilla import VanillaSampler

        return VanillaSampler
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
