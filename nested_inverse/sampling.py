"""How to restore, as one value: the solver and its parameters, nested K×I or vanilla N steps.

:class:`SamplerConfig` is what ``restore()``, the command line and the dataset runner record and
build from: ``config.solver(prior, problem)`` then ``config.sampler(solver)`` gives the anytime
stream's source (:class:`~nested_inverse.NestedSampler` or :class:`~nested_inverse.VanillaSampler`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import solvers
from .anytime import VanillaSampler
from .errors import UsageError
from .nested import NestedSampler
from .priors import Prior
from .problem import Problem
from .solvers.base import Solver, unit_interval

__all__ = ["SamplerConfig"]


@dataclass
class SamplerConfig:
    """The solver and the step budget.

    Nested (default): ``outer`` outer steps, each running the solver for ``inner`` steps, so
    ``outer·inner`` network evaluations and one restoration after every outer step. Vanilla:
    the solver alone for ``steps`` evaluations.

    Attributes:
        method: a registered solver (``nested_inverse.solvers.available()``).
        method_args: keyword parameters of the solver (e.g. ``{"eta": 0.85}``).
        outer, inner: K and I of a nested run.
        vanilla: run the solver alone instead; steps: its evaluations.
        outer_eta: η of the outer DDIM step, in [0, 1].

    Example:
        >>> SamplerConfig(method="ddnm", outer=2, inner=3).budget
        6
        >>> SamplerConfig(method="ddrm", method_args={"eta2": 0.5})
        Traceback (most recent call last):
        ...
        nested_inverse.errors.UsageError: `method_params` eta2 not accepted by 'ddrm'; it accepts: eta, eta_b, rcond
    """

    method: str = "ddrm"
    method_args: dict[str, Any] = field(default_factory=dict)
    outer: int = 5
    inner: int = 4
    vanilla: bool = False
    steps: int = 20
    outer_eta: float = 0.0

    def __post_init__(self) -> None:
        for name in ("outer", "inner", "steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"`{name}`={value!r} must be an integer >= 1")
        try:
            solvers.registry.check_params(self.method, self.method_args)
            self.outer_eta = unit_interval("outer_eta", self.outer_eta)
        except ValueError as err:
            raise UsageError(str(err)) from err

    @property
    def budget(self) -> int:
        """Network evaluations per image (at most; fewer when a timestep interval is short)."""
        return self.steps if self.vanilla else self.outer * self.inner

    def solver(self, prior: Prior, problem: Problem) -> Solver:
        """The solver ``method`` for ``problem``."""
        return solvers.make(self.method, prior, problem, **self.method_args)

    def sampler(self, solver: Solver) -> NestedSampler | VanillaSampler:
        """Nested ``outer × inner`` around ``solver``, or ``solver`` alone for ``steps``."""
        if self.vanilla:
            return VanillaSampler(solver, self.steps)
        return NestedSampler(solver, self.outer, self.inner, self.outer_eta)

    def describe(self) -> dict[str, Any]:
        """What records and ``run.json`` hold (``outer_eta`` only when it is not the default)."""
        record = {"method": self.method, "method_args": dict(self.method_args),
                  "outer": self.outer, "inner": self.inner, "vanilla": self.vanilla,
                  "steps": self.steps}
        if self.outer_eta != 0:
            record["outer_eta"] = self.outer_eta
        return record
