r"""The anytime stream every front end reads: one :class:`AnytimeResult` after each piece of work.

A sampler's ``iterate(generator, budget_nfe, deadline_s)`` returns an :class:`AnytimeRun`: ``A†y``
at 0 evaluations, then a result after every outer step of a nested run
(:class:`~nested_inverse.NestedSampler`) or after every step of a plain solver run
(:class:`VanillaSampler`). Break out of the loop to keep the latest result; send guidance commands
(:mod:`nested_inverse.guidance`) between results. ``restore()``, the command line, the dataset
runner and the benchmarks are thin layers over this stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from torch import Tensor

from operators.random import Generators

from .guidance import Steerable, apply
from .planning import Allowance
from .solvers.base import Solver

__all__ = ["AnytimeResult", "AnytimeRun", "StopCheck", "StopOnly", "VanillaSampler", "run_to_end"]


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


class VanillaSampler:
    r"""A solver run alone from noise for ``steps`` evaluations, as an anytime stream.

    Results: ``A†y`` at 0 evaluations, then after every step the solver's ``x̂0`` (the result
    itself after the last), so vanilla and nested runs compare at equal evaluations.

    Args:
        solver: any :class:`~nested_inverse.solvers.Solver`.
        steps: network evaluations, ``>= 1``.

    Example:
        >>> import torch, operators
        >>> from nested_inverse import DDNM, GaussianMixturePrior, VanillaSampler
        >>> prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
        ...                              event_shape=(1, 2, 2))
        >>> op = operators.make("inpaint-half", image_shape=(1, 2, 2))
        >>> y = op(torch.ones(1, 1, 2, 2, dtype=torch.float64))
        >>> [r.nfe for r in VanillaSampler(DDNM(prior, op, y), steps=3).iterate()]
        [0, 1, 2, 3]
    """

    def __init__(self, solver: Solver, steps: int) -> None:
        if not isinstance(solver, Solver):
            raise ValueError(f"`solver` must be a Solver, got {type(solver).__name__}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"`steps` must be an integer >= 1, got {steps!r}")
        self.solver = solver
        self.steps = steps

    @property
    def total_nfe(self) -> int:
        return self.steps

    def __repr__(self) -> str:
        return f"VanillaSampler({type(self.solver).__name__}, steps={self.steps})"

    def iterate(
        self,
        generator: Generators = None,
        budget_nfe: int | None = None,
        deadline_s: float | None = None,
        stop: StopCheck | None = None,
    ) -> AnytimeRun:
        """Run; ``budget_nfe`` caps the steps, ``deadline_s`` ends the run before an evaluation
        that would not fit at the measured rate (never a result after the deadline), and the run
        ends before the next evaluation once ``stop()`` is true (every step is a result, so the
        latest delivered one stands)."""
        allowance = Allowance(budget_nfe, deadline_s)
        session = StopOnly(stop)
        return AnytimeRun(self._run(generator, allowance), session)

    def _run(self, generator: Generators, allowance: Allowance) -> Iterator[AnytimeResult]:
        allowance.start()
        solver = self.solver
        steps = int(min(self.steps, allowance.remaining()))
        yield AnytimeResult(solver.initial_estimate, 0, 0, 0.0, solver.initial_estimate, -1)
        tick, spent = time.perf_counter(), 0
        for state in solver.iterate(steps=steps, generator=generator):
            now = time.perf_counter()
            allowance.charge(state.nfe - spent, now - tick)
            spent = state.nfe
            if allowance.expired():
                return
            image = state.x_t if state.t < 0 else state.x0_hat
            yield AnytimeResult(image, state.nfe, state.nfe, allowance.elapsed_s, state.x_t,
                                state.t)
            if state.t >= 0 and allowance.remaining() < 1:
                return
            tick = time.perf_counter()

    def sample(self, generator: Generators = None, stop: StopCheck | None = None) -> Tensor:
        """The result ``[B, C, H, W]`` (model range); the latest one when ``stop()`` ended the run."""
        return run_to_end(self.iterate(generator, stop=stop))[-1].image
