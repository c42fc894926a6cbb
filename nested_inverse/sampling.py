"""How to restore, as one value: the solver and its parameters, nested K×I or vanilla N steps.

:class:`SamplerConfig` is what ``restore()``, the command line and the dataset runner record and
build from: ``config.solver(prior, problem)`` then ``config.sampler(solver)`` gives the anytime
stream's source (:class:`~nested_inverse.NestedSampler` or :class:`~nested_inverse.VanillaSampler`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

from . import solvers
import torch

from operators.random import Generators

from .anytime import AnytimeRun, StopCheck
from .errors import UsageError
from .nested import NestedSampler, outer_timesteps
from .planning import DEADLINE_MARGIN, auto_split, nested_defaults, planned_nfe
from .priors import LatentPrior, Prior
from .memory import plan_memory
from .priors.tiled import TiledPrior, check_tile, tiled_for
from .problem import Problem
from .solvers.base import Solver, unit_interval
from .vanilla import VanillaSampler

__all__ = ["DEFAULT_BUDGET", "SamplerConfig", "budget_for_deadline"]

#: network evaluations per image when a nested or vanilla run is given no budget.
DEFAULT_BUDGET = 20

log = logging.getLogger(__name__)


@dataclass
class SamplerConfig:
    """The solver and the step budget.

    Nested (default): ``outer`` outer steps, each running the solver for ``inner`` steps, so
    ``outer·inner`` network evaluations and one restoration after every outer step. Left unset
    (``outer=None``), the split is the default policy for ``budget_nfe`` (20 when unset):
    :func:`~nested_inverse.planning.auto_split` gives K × I and
    :func:`~nested_inverse.planning.nested_defaults` the inner solver's parameters that
    ``method_args`` does not set, for the problem's observation noise: applied where the
    configuration meets the problem (:meth:`for_problem`, :meth:`solver`), so ``sigma_y`` is held
    by the :class:`~nested_inverse.Problem` alone; the run spends exactly ``budget_nfe``. Vanilla: the solver alone
    for ``steps`` evaluations (``budget_nfe``, else 20).

    Attributes:
        method: a registered solver (``nested_inverse.solvers.available()``).
        method_args: keyword parameters of the solver (e.g. ``{"eta": 0.85}``).
        outer, inner: K and I of a nested run; both None for the default policy.
        vanilla: run the solver alone instead; steps: its evaluations.
        outer_eta: η of the outer DDIM step, in [0, 1].
        budget_nfe: evaluations per image the run may spend (None: ``outer·inner``).
        sigma_y: None (the default): the policy plans for the problem's noise when it meets the
            problem. A number (on the [0, 1] scale) plans for that noise now, and a problem with
            another is refused.
        tile: tiles of the pixel prior for large images (:func:`~nested_inverse.priors.tiled_for`):
            None for tiles of the network's training size once a side exceeds twice it, N for
            N-pixel tiles, 0 for the whole image always.
        auto: whether ``outer``/``inner`` (and defaults in ``method_args``) came from the policy
            (set by the config itself).
        budget_default: whether ``budget_nfe`` was left unset (a deadline may then choose it).
        planned: the evaluations the run will make (without a deadline), set by :meth:`solver`
            once the prior's schedule is known; :attr:`budget` is then that number.

    Example:
        >>> SamplerConfig(method="ddnm", outer=2, inner=3).budget
        6
        >>> config = SamplerConfig(budget_nfe=50)
        >>> config.outer, config.inner, config.budget
        (4, 13, 50)
        >>> config.for_noise(0.0).method_args  # the policy, once the problem's noise is known
        {'eta': 1.0}
        >>> SamplerConfig(method="ddrm", method_args={"eta2": 0.5})
        Traceback (most recent call last):
        ...
        nested_inverse.errors.UsageError: `method_params` eta2 not accepted by 'ddrm'; it accepts: eta, eta_b, rcond
    """

    method: str = "ddrm"
    method_args: dict[str, Any] = field(default_factory=dict)
    outer: int | None = None
    inner: int | None = None
    vanilla: bool = False
    steps: int | None = None
    outer_eta: float = 0.0
    budget_nfe: int | None = None
    sigma_y: float | None = None
    tile: int | None = None
    auto: bool = field(default=False, init=False)
    budget_default: bool = field(default=False, init=False)
    planned: int | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.sigma_y is not None:
            if not (isinstance(self.sigma_y, (int, float)) and math.isfinite(self.sigma_y)
                    and self.sigma_y >= 0):
                raise UsageError(f"`sigma_y`={self.sigma_y!r} must be a number >= 0 on the [0, 1] "
                                 "scale (or None for the problem's)")
            self.sigma_y = float(self.sigma_y)
        if self.budget_nfe is not None:
            self._check_count("budget_nfe", self.budget_nfe)
        self.budget_default = self.budget_nfe is None
        if self.vanilla:
            if self.steps is None:
                self.steps = DEFAULT_BUDGET if self.budget_nfe is None else self.budget_nfe
        elif self.outer is None and self.inner is None:
            self.auto = True
            self.outer, self.inner = auto_split(self.budget_nfe or DEFAULT_BUDGET)
            self.budget_nfe = self.budget_nfe or DEFAULT_BUDGET
            self.method_args = self._policy_args(self.sigma_y)
        elif self.outer is None or self.inner is None:
            given, missing = ("outer", "inner") if self.inner is None else ("inner", "outer")
            raise UsageError(f"`{given}`={getattr(self, given)!r} given without `{missing}`: give "
                             "both, or neither for the default split (planning.auto_split)")
        for name in ("outer", "inner", "steps"):
            if getattr(self, name) is not None:
                self._check_count(name, getattr(self, name))
        try:
            solvers.registry.check_params(self.method, self.method_args)
            self.outer_eta = unit_interval("outer_eta", self.outer_eta)
            check_tile(self.tile)
        except ValueError as err:
            raise UsageError(str(err)) from err

    @staticmethod
    def _check_count(name: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"`{name}`={value!r} must be an integer >= 1")

    @property
    def budget(self) -> int:
        """Network evaluations per image: the ones the run will make once :meth:`solver` has met
        the schedule (a progress bar's total), before that an upper bound (fewer come when a
        timestep interval is short)."""
        if self.planned is not None:
            return self.planned
        if self.vanilla:
            return self.steps
        return min(self.outer * self.inner, self.budget_nfe or self.outer * self.inner)

    def with_budget(self, budget_nfe: int) -> SamplerConfig:
        """This configuration for another budget (the split re-chosen when it is the policy's)."""
        if self.vanilla:
            return replace(self, steps=budget_nfe)
        return replace(self, budget_nfe=budget_nfe,
                       **({"outer": None, "inner": None} if self.auto else {}))

    def _policy_args(self, sigma_y: float | None) -> dict[str, Any]:
        """``method_args`` with the default policy's parameters for noise ``sigma_y`` under them
        (as given while the noise is not known)."""
        if sigma_y is None:
            return dict(self.method_args)
        return {**nested_defaults(self.method, sigma_y), **self.method_args}

    def for_problem(self, problem: Problem) -> SamplerConfig:
        """This configuration with the default policy applied for ``problem``'s noise (itself
        when it already was): what runs, and what records note."""
        return self.for_noise(float(problem.sigma_y))

    def for_noise(self, sigma_y: float) -> SamplerConfig:
        """:meth:`for_problem` for problems with noise ``sigma_y`` (a dataset's, before its
        problems exist)."""
        if not self.auto or self.sigma_y is not None:
            return self
        resolved = replace(self, sigma_y=float(sigma_y), outer=None, inner=None)
        resolved.budget_default = self.budget_default  # still the default budget, if it was
        return resolved

    def solver(self, prior: Prior, problem: Problem) -> Solver:
        """The solver ``method`` for ``problem``, on a tiled prior when the images are large
        (``tile``), with the default policy for its noise."""
        if self.auto and self.sigma_y is not None and float(problem.sigma_y) != self.sigma_y:
            raise UsageError(f"the default policy of this configuration was planned for `sigma_y`="
                             f"{self.sigma_y}, but the problem has sigma_y={problem.sigma_y}; "
                             "build it with SamplerConfig(sigma_y=...) of the problem")
        batch, channels, height, width = problem.image_shape
        prior = tiled_for(prior, height, width, self.tile)
        plan = plan_memory(image_shape=(channels, height, width), batch=batch, method=self.method,
                           prior=prior, device=problem.y.device)
        if isinstance(prior, TiledPrior):
            prior.tile_batch = plan.tile_batch
        args = self._policy_args(float(problem.sigma_y)) if self.auto else self.method_args
        solver = solvers.make(self.method, prior, problem, **args)
        self._fit_schedule(solver)
        return solver

    def _fit_schedule(self, solver: Solver) -> None:
        """Set :attr:`planned`, the evaluations the run makes on ``solver``'s schedule, and say
        (once per configuration) where a request asks for more than the schedule can spend.

        A run from ``τ`` makes at most one evaluation per timestep of ``[τ, 1]`` (999 from the
        top of a 1000-step schedule), so ``steps``/``inner`` beyond that and a budget beyond what
        the outer steps can spend give the same run as the cap: said, not refused, and the
        progress total is the true one, not an ETA of hours for a run of minutes.
        """
        T = solver.num_timesteps

        def run_nfe(tau: int, steps: int) -> int:
            return sum(solver.evaluations(t) for t in solver.timesteps(tau, steps))

        warn = self.planned is None  # a dataset run builds one solver per image: say it once
        if self.vanilla:
            self.planned = run_nfe(T - 1, self.steps)
            if warn and self.planned < self.steps:
                log.warning("`steps`=%d is more than the %d-step schedule allows: a run from "
                            "t=%d makes at most %d evaluations; running %d", self.steps, T, T - 1,
                            self.planned, self.planned)
            return
        try:
            taus = outer_timesteps(T, self.outer)
        except ValueError as err:
            raise UsageError(f"`outer`={self.outer} must lie in [1, {T - 1}] for a schedule of "
                             f"{T} timesteps") from err
        most = run_nfe(taus[0], self.inner)
        unlimited = planned_nfe(taus, self.inner, math.inf, run_nfe)
        self.planned = planned_nfe(taus, self.inner, self.budget_nfe or math.inf, run_nfe)
        if warn and most < self.inner and not self.auto:  # the policy's: the budget's warning
            log.warning("`inner`=%d is more than the %d-step schedule allows: an inner run from "
                        "t=%d makes at most %d evaluations", self.inner, T, taus[0], most)
        if warn and self.budget_nfe is not None and unlimited < min(self.budget_nfe,
                                                                    self.outer * self.inner):
            log.warning("`budget_nfe`=%d is more than %d outer steps can spend on the %d-step "
                        "schedule (inner runs from t=%d down to t=%d): at most %d evaluations; "
                        "running %d", self.budget_nfe, self.outer, T, taus[0], taus[-1],
                        unlimited, self.planned)

    def sampler(self, solver: Solver) -> NestedSampler | VanillaSampler:
        """Nested ``outer × inner`` around ``solver``, or ``solver`` alone for ``steps``."""
        if self.vanilla:
            return VanillaSampler(solver, self.steps)
        return NestedSampler(solver, self.outer, self.inner, self.outer_eta)

    def run(
        self, prior: Prior, problem: Problem, generator: Generators = None,
        deadline_s: float | None = None, stop: StopCheck | None = None,
    ) -> AnytimeRun:
        """The anytime stream of this configuration on ``problem``, within ``budget_nfe``, ending
        before the next evaluation once ``stop()`` is true."""
        return self.sampler(self.solver(prior, problem)).iterate(
            generator, budget_nfe=None if self.vanilla else self.budget_nfe, deadline_s=deadline_s,
            stop=stop)

    def describe(self) -> dict[str, Any]:
        """What records and ``run.json`` hold (``outer_eta``, ``budget_nfe`` and ``split`` only
        when they are not the defaults of an explicit K × I)."""
        record = {"method": self.method, "method_args": dict(self.method_args),
                  "outer": self.outer, "inner": self.inner, "vanilla": self.vanilla,
                  "steps": self.steps}
        if self.auto:
            record["split"] = "auto"
        if self.budget_nfe is not None and not self.vanilla:
            record["budget_nfe"] = self.budget_nfe
        if self.outer_eta != 0:
            record["outer_eta"] = self.outer_eta
        if self.tile is not None:
            record["tile"] = self.tile
        return record


def budget_for_deadline(solver: Solver, deadline_s: float) -> int:
    """Evaluations per image that fit ``deadline_s`` seconds, from one timed solver step.

    One :meth:`Solver.step` from the noisiest timestep, so the probe costs what a step of the run
    costs: the network evaluation and whatever the solver adds to it (ΠGDM's and DPS's
    vector–Jacobian products, a latent solver's decoder). The probe is spent outside the run: its
    seconds are taken off the deadline and its result dropped;
    ``⌊(deadline − probe)/(probe·DEADLINE_MARGIN)⌋``, at least 1. The run itself still keeps to
    the deadline as it measures its own rate (:meth:`NestedSampler.iterate`).
    """
    if not float(deadline_s) > 0:
        raise UsageError(f"`deadline_s`={deadline_s!r} must be > 0 seconds")
    T = solver.num_timesteps
    # A private generator: the probe must not advance the caller's random state.
    generator = torch.Generator(device=solver.initial_estimate.device).manual_seed(0)
    start = time.perf_counter()
    x = solver.initial_state(T - 1, generator)
    with torch.no_grad():
        x_s, _ = solver.step(x, T - 1, T // 2, generator)
    float(x_s.flatten()[0])  # the device has finished
    probe = time.perf_counter() - start
    return max(1, math.floor((float(deadline_s) - probe) / (probe * DEADLINE_MARGIN)))
