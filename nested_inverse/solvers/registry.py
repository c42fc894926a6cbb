"""Solvers by name: ``make("ddrm", prior, problem, eta=0.85)``, ``available()``, ``register``.

Mirrors :mod:`operators.registry`. A solver class is built as ``cls(prior, operator, y, sigma_y,
**params)`` (``y`` in the model range, ``sigma_y`` on the [0, 1] scale). Installed packages add
their own through the entry-point group ``nested_inverse.solvers`` (name = method name, value =
the class); these are loaded the first time names are listed or looked up.

Pixel solvers work on image priors, latent solvers (subclasses of
:class:`~nested_inverse.solvers.LatentInverseSolver`) on a
:class:`~nested_inverse.LatentPrior`; :func:`make` refuses a mismatch, naming the methods that fit.

Example:
    >>> from nested_inverse import solvers
    >>> solvers.available()
    ['daps', 'ddnm', 'ddrm', 'diffpir', 'dps', 'latent-dps', 'pigdm', 'psld']
    >>> solvers.available(latent=True)
    ['latent-dps', 'psld']
    >>> solvers.describe("ddrm")
    'ddrm: DDRM (eta=0.85, eta_b=1.0, rcond=None)'
"""

from __future__ import annotations

import inspect
from importlib import metadata
from typing import Any

from ..priors import Prior
from ..priors.protocol import is_latent_prior
from .base import Solver
from .daps import DAPS
from .ddnm import DDNM
from .ddrm import DDRM
from .diffpir import DiffPIR
from .dps import DPS
from .latent import LatentInverseSolver
from .pigdm import PiGDM
from .psld import PSLD, LatentDPS

__all__ = ["ENTRY_POINT_GROUP", "available", "default_method", "describe", "get", "make", "parameters",
           "register"]

ENTRY_POINT_GROUP = "nested_inverse.solvers"

#: arguments every solver takes from the problem, not from the caller's ``params``.
_PROBLEM_ARGS = ("self", "prior", "operator", "y", "sigma_y")

_REGISTRY: dict[str, type[Solver]] = {}
_PLUGINS: dict[str, metadata.EntryPoint] = {}
_entry_points_loaded = False


def register(name: str, cls: type[Solver] | None = None, *, overwrite: bool = False) -> Any:
    """Register the solver class ``cls`` under ``name`` (lower case); usable as a decorator."""
    if cls is None:
        return lambda c: register(name, c, overwrite=overwrite)
    if not isinstance(name, str) or not name or name != name.lower():
        raise ValueError(f"`name` must be a non-empty lower-case string, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Solver)):
        raise ValueError(f"`cls` for {name!r} must be a Solver subclass, got {cls!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"solver {name!r} is already registered; pass `overwrite=True` to replace it")
    _REGISTRY[name] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:  # built-ins and explicit registrations win over plug-ins
            _PLUGINS.setdefault(ep.name, ep)


def available(latent: bool | None = None) -> list[str]:
    """Registered method names, sorted (built-ins and installed plug-ins); with ``latent`` only the
    latent solvers (True) or the pixel solvers (False). Filtering loads the plug-ins it lists."""
    _load_entry_points()
    names = sorted(set(_REGISTRY) | set(_PLUGINS))
    if latent is None:
        return names
    return [n for n in names if issubclass(get(n), LatentInverseSolver) == bool(latent)]


def default_method(prior: Prior) -> str:
    """The method a front end uses when none is named: ``"ddrm"`` for a pixel prior, ``"psld"``
    for a :class:`~nested_inverse.LatentPrior` (benchmarks/RESULTS.md, issue 11)."""
    return "psld" if is_latent_prior(prior) else "ddrm"


def get(method: str) -> type[Solver]:
    """The solver class registered as ``method`` (case-insensitive)."""
    key = str(method).lower()
    _load_entry_points()
    if key in _PLUGINS and key not in _REGISTRY:
        ep = _PLUGINS[key]
        try:
            register(key, ep.load())
        except Exception as error:  # a broken plug-in must say which one it is
            raise ValueError(f"plug-in solver {key!r} ({ep.value}) failed to load: {error}") from error
    if key not in _REGISTRY:
        raise ValueError(f"`method`={method!r} is not known; accepted: {', '.join(available())}")
    return _REGISTRY[key]


def parameters(method: str) -> dict[str, inspect.Parameter] | None:
    """The keyword parameters ``method`` takes beyond the problem, or None for ``**kwargs``."""
    sig = inspect.signature(get(method).__init__)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {k: p for k, p in sig.parameters.items()
            if k not in _PROBLEM_ARGS and p.kind not in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY)}


def check_params(method: str, params: dict[str, Any]) -> type[Solver]:
    """The class of ``method`` after checking that it accepts every name in ``params``."""
    cls = get(method)
    accepted = parameters(method)
    unknown = sorted(set(params) - set(accepted)) if accepted is not None else []
    if unknown:
        raise ValueError(f"`method_params` {', '.join(unknown)} not accepted by {method!r}; "
                         f"it accepts: {', '.join(accepted) or 'none'}")
    return cls


def describe(method: str) -> str:
    """One line: ``name: Class (param=default, …)``."""
    params = parameters(method)
    shown = "…" if params is None else ", ".join(
        k if p.default is p.empty else f"{k}={p.default!r}" for k, p in params.items())
    return f"{str(method).lower()}: {get(method).__name__} ({shown})"


def make(method: str, prior: Prior, problem: Any, **params: Any) -> Solver:
    """The solver ``method`` for ``problem`` (a :class:`~nested_inverse.Problem`) with ``params``.

    Unknown methods and parameters, and a pixel solver for a latent prior (or the reverse), raise
    ``ValueError`` naming what is accepted.
    """
    cls = check_params(method, params)
    latent_prior, latent_method = is_latent_prior(prior), issubclass(cls, LatentInverseSolver)
    if latent_prior != latent_method:
        kind = "a latent prior (it has `decode` and `encode`)" if latent_prior else "a pixel prior"
        raise ValueError(
            f"`method`={method!r} is a {'latent' if latent_method else 'pixel'} solver but `prior` "
            f"({type(prior).__name__}) is {kind}; accepted with this prior: "
            f"{', '.join(available(latent=latent_prior))}")
    return cls(prior, problem.operator, problem.y, problem.sigma_y, **params)


for _name, _cls in (("ddrm", DDRM), ("ddnm", DDNM), ("pigdm", PiGDM), ("dps", DPS),
                   ("diffpir", DiffPIR),
                   ("daps", DAPS),
                   ("latent-dps", LatentDPS), ("psld", PSLD)):
    register(_name, _cls)
