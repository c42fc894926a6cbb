r"""A solver run alone, as an anytime stream: the baseline nested runs are compared with.

:class:`VanillaSampler` gives the same stream as :class:`~nested_inverse.NestedSampler`
(:mod:`nested_inverse.anytime`): ``A†y`` at 0 evaluations, then one result per solver step.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from torch import Tensor

from operators.random import Generators

from .anytime import AnytimeResult, AnytimeRun, StopCheck, StopOnly, run_to_end
from .planning import Allowance
from .solvers.base import Solver

__all__ = ["VanillaSampler"]


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
