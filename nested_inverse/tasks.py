"""Tasks and seeds for experiments: which operator a task name means, and per-image randomness.

A task is a registered operator name (``sr4``, ``inpaint-box`` …) or a user's factory given as
``module:function``, with parameters (``task_args``; ``--task-arg k=v`` on the command line).
Seeds follow one rule for every front door: :mod:`nested_inverse.seeds`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

import operators
from operators import Inpainting, LinearOperator

from .errors import UsageError

__all__ = [
    "Task",
    "check_params",
    "parse_key_values",
    "resolve_task",
]


# --------------------------------------------------------------------------------------------------
# Tasks: a registered operator name or a user's factory, with parameters
# --------------------------------------------------------------------------------------------------


def parse_key_values(pairs: Iterable[str] | None, what: str = "task_args") -> dict[str, Any]:
    """``["sigma=2", "side=left"]`` → ``{"sigma": 2, "side": "left"}``.

    Values are read as Python literals (numbers, ``True``, ``None``, ``(1, 2)``) when they parse as
    one, else kept as strings.
    """
    out: dict[str, Any] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise UsageError(f"`{what}`={pair!r} is not understood; expected KEY=VALUE, e.g. sigma=2.0")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
        if _non_finite(value):
            # "nan" would stay a string and surface as a comparison error deep in the operator.
            raise UsageError(f"`{what}` {key}={value.strip()} is not a finite number; give a "
                             f"value such as {key}=2.0")
    return out


def _non_finite(text: str) -> bool:
    """Whether a KEY=VALUE value reads as NaN or an infinity (``nan``, ``inf``, ``1e999``)."""
    try:
        return not math.isfinite(float(text))
    except ValueError:  # not a number at all: a string, a tuple, True, None
        return False


@dataclass
class Task:
    """A degradation task: how to build the operator for an image of a given shape.

    Attributes:
        name: the registered operator name, ``module:function`` for a user's factory, or
            ``"inpaint-mask"`` for inpainting with a given mask.
        factory: ``f(image_shape, generator=None, **params) -> LinearOperator``.
        params: keyword parameters for the factory (``task_args``).
        mask: for ``inpaint-mask``, the observed pixels ``[H, W]`` bool (True = observed).
    """

    name: str
    factory: Callable[..., LinearOperator] | None
    params: dict[str, Any] = field(default_factory=dict)
    mask: Tensor | None = None
    registered: bool = True

    def make(self, image_shape: Sequence[int], generator: Any = None) -> LinearOperator:
        """The operator for images ``(C, H, W)``; ``generator`` seeds random masks and kernels."""
        shape = tuple(int(s) for s in image_shape)
        if self.mask is not None:
            if tuple(self.mask.shape) != shape[1:]:
                raise UsageError(f"`mask` is {self.mask.shape[1]}×{self.mask.shape[0]} pixels but the "
                                 f"image is {shape[2]}×{shape[1]}; give a mask of the image's size")
            return Inpainting(self.mask, shape)
        if self.registered:
            return operators.make(self.name, shape, generator=generator, **self.params)
        op = self.factory(shape, generator=generator, **self.params)
        if not isinstance(op, LinearOperator):
            raise UsageError(f"`task`={self.name!r} returned {type(op).__name__}, not an "
                             "operators.LinearOperator")
        return op

    def geometry(self) -> tuple[int, int, int]:
        """``(factor, image_channels, observation_channels)``: images of ``H × W`` are observed at
        ``H/factor × W/factor``. Found by building the operator for a probe image."""
        if self.mask is not None:
            return 1, 3, 3
        errors = []
        for size in (64, 96, 120, 128):
            try:
                out = self.make((3, size, size)).output_shape((3, size, size))
            except (ValueError, RuntimeError, TypeError) as err:
                errors.append(str(err))
                continue
            if len(out) != 3:
                raise UsageError(f"`task`={self.name!r} maps images to shape {tuple(out)}, not an "
                                 "image (C, H, W); image-shaped observations are needed here")
            factor = size // out[1] if out[1] and size % out[1] == 0 and out[1] == out[2] else 0
            return factor, 3, int(out[0])
        given = " with `task_args` " + " ".join(f"{k}={v!r}" for k, v in self.params.items()) \
            if self.params else ""
        raise UsageError(f"`task`={self.name!r}{given} cannot be built: "
                         f"{errors[0] if errors else 'unknown error'}")

    def describe(self) -> dict[str, Any]:
        """What goes into the JSON sidecars and ``run.json``."""
        return {"task": self.name, "task_args": self.params}


def resolve_task(task: str | None, task_args: Mapping[str, Any] | None = None,
                 mask: Tensor | None = None) -> Task:
    """The task ``task`` names: a registered operator (``sr4``), ``module:function`` (imported from
    ``sys.path``, e.g. ``my_ops:make_op``), or — with ``mask`` — inpainting with that mask."""
    spec, params = task, dict(task_args or {})
    if mask is not None:
        if spec is not None and not spec.startswith("inpaint"):
            raise UsageError(f"`mask` applies to inpainting, not to `task`={spec!r}; drop `task` "
                             "or use an inpaint-* task")
        if params:
            raise UsageError(f"`task_args` {sorted(params)} cannot apply with `mask` (the mask is "
                             "the whole inpainting operator)")
        return Task("inpaint-mask", None, {}, mask=mask.to(torch.bool), registered=False)
    if not spec:
        raise UsageError(f"`task` is required; one of: {', '.join(operators.available())}, or "
                         "module:function for your own operator")
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UsageError(f"`task`={spec!r}: cannot import module {module_name!r} ({err}); put it "
                             "on PYTHONPATH or in the current folder") from err
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise UsageError(f"`task`={spec!r}: module {module_name!r} has no callable {attr!r}")
        check_params(spec, factory, params)
        return Task(spec, factory, params, registered=False)
    if spec not in operators.available():
        raise UsageError(f"`task`={spec!r} is not a known operator; available: "
                         f"{', '.join(operators.available())}, or module:function for your own")
    return Task(spec, None, params)


def check_params(spec: str, factory: Callable[..., Any], params: Mapping[str, Any],
                  skip: Sequence[str] = ("image_shape", "generator"), what: str = "task_args") -> None:
    """Unknown keyword parameters are reported, naming the accepted ones, not passed on blindly."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    accepted = [k for k, p in sig.parameters.items()
                if k not in skip and p.kind not in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY)]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UsageError(f"`{what}` {', '.join(unknown)} not accepted by {spec!r}; it accepts: "
                         f"{', '.join(accepted) or 'none'}")
