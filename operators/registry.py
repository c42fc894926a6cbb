"""Operators by name: ``make("sr4", image_shape=(3, 256, 256))``, ``available()``, ``register``.

A factory is ``f(image_shape, generator=None, **params) -> LinearOperator``. Installed packages add
their own through the entry-point group ``nested_inverse.operators`` (name = operator name, value =
the factory); these are loaded lazily, the first time names are listed or looked up.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

import torch

from .base import LinearOperator
from .blur import Blur, gaussian_kernel, motion_kernel, uniform_kernel
from .colorization import Colorization
from .denoise import Identity
from .inpainting import Inpainting, box_mask, freeform_mask, half_mask, random_mask
from .random import Generators
from .superres import BicubicDownsample, BoxDownsample

__all__ = ["ENTRY_POINT_GROUP", "available", "describe", "make", "register"]

ENTRY_POINT_GROUP = "nested_inverse.operators"
Factory = Callable[..., LinearOperator]


@dataclass(frozen=True)
class _Entry:
    factory: Factory
    description: str


_REGISTRY: dict[str, _Entry] = {}
_PLUGINS: dict[str, metadata.EntryPoint] = {}
_entry_points_loaded = False


def register(
    name: str, factory: Factory | None = None, description: str | None = None, *,
    overwrite: bool = False,
) -> Factory | Callable[[Factory], Factory]:
    """Register ``factory(image_shape, generator=None, **params)`` under ``name``.

    Usable directly, ``register("my-op", f, "what it does")``, or as a decorator,
    ``@register("my-op")``. ``description`` defaults to the first line of the factory's docstring.
    Registering a taken name raises unless ``overwrite=True``.
    """
    if factory is None:
        return lambda f: register(name, f, description, overwrite=overwrite)
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ValueError(f"`factory` for {name!r} must be callable, got {type(factory).__name__}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"operator {name!r} is already registered; pass `overwrite=True` to "
                         "replace it")
    if description is None:
        description = (inspect.getdoc(factory) or "").strip().split("\n")[0].rstrip(".")
    _REGISTRY[name] = _Entry(factory, description)
    return factory


def _load_entry_points() -> None:
    # Only the names are read here; a plug-in's module is imported when it is first described or made.
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:  # built-ins and explicit registrations win over plug-ins
            _PLUGINS.setdefault(ep.name, ep)


def available() -> list[str]:
    """Registered operator names, sorted (built-ins and installed plug-ins)."""
    _load_entry_points()
    return sorted(set(_REGISTRY) | set(_PLUGINS))


def _entry(name: str) -> _Entry:
    _load_entry_points()
    if name in _PLUGINS and name not in _REGISTRY:
        ep = _PLUGINS[name]
        try:
            factory = ep.load()
        except Exception as error:  # a broken plug-in must say which one it is
            raise ValueError(
                f"plug-in operator {name!r} ({ep.value}) failed to load: {error}"
            ) from error
        register(name, factory)
    if name not in _REGISTRY:
        raise ValueError(f"unknown operator {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def _params(factory: Factory) -> dict[str, inspect.Parameter] | None:
    """Keyword parameters of a factory, or None if it takes ``**kwargs`` (anything goes)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {k: p for k, p in sig.parameters.items()
            if k not in ("image_shape", "generator") and p.kind is not p.VAR_POSITIONAL}


def describe(name: str) -> str:
    """One line: ``name: description (param=default, …)``, for a command-line listing."""
    entry = _entry(name)
    params = _params(entry.factory)
    if params is None:
        shown = "…"
    else:
        shown = ", ".join(k if p.default is p.empty else f"{k}={p.default!r}"
                          for k, p in params.items())
    return f"{name}: {entry.description} ({shown})"


def make(
    name: str, image_shape: Sequence[int] = (3, 256, 256), generator: Generators = None, **params
) -> LinearOperator:
    """Build the registered operator ``name`` for images of ``image_shape`` ``(C, H, W)``.

    ``generator`` seeds random operators (masks, motion kernels); a list of per-image generators
    gives per-image masks. Unknown names and unknown ``params`` raise ``ValueError``.

    Example:
        >>> import operators
        >>> operators.make("sr4", image_shape=(3, 64, 64)).output_shape((3, 64, 64))
        (3, 16, 16)
    """
    entry = _entry(name)
    accepted = _params(entry.factory)
    if accepted is not None:
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)} for operator {name!r}; it "
                             f"accepts: {', '.join(accepted) or 'none'}")
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"`image_shape` must be (C, H, W) with positive sizes, got {tuple(image_shape)}")
    op = entry.factory(shape, generator=generator, **params)
    if not isinstance(op, LinearOperator):
        raise ValueError(f"factory for {name!r} returned {type(op).__name__}, not a LinearOperator")
    return op


# Built-ins.


@register("inpaint-box")
def _inpaint_box(image_shape, generator=None, fraction: float = 0.5) -> Inpainting:
    """Missing box of `fraction` x the image sides; centred, or at random with a generator."""
    return Inpainting(box_mask(*image_shape[1:], fraction, generator), image_shape)


@register("inpaint-random")
def _inpaint_random(image_shape, generator=None, drop: float = 0.5) -> Inpainting:
    """Each pixel missing with probability `drop` (seed 0 without a generator)."""
    return Inpainting(random_mask(*image_shape[1:], drop, generator), image_shape)


@register("inpaint-half")
def _inpaint_half(image_shape, generator=None, side: str = "right") -> Inpainting:
    """The `side` half of the image missing (right, left, top or bottom)."""
    return Inpainting(half_mask(*image_shape[1:], side), image_shape)


@register("inpaint-freeform")
def _inpaint_freeform(image_shape, generator=None, strokes: int = 5,
                      width_fraction: float = 0.06) -> Inpainting:
    """Random brush strokes missing (seed 0 without a generator)."""
    return Inpainting(freeform_mask(*image_shape[1:], strokes, width_fraction, generator), image_shape)


def _register_sr(factor: int) -> None:
    def box(image_shape, generator=None) -> BoxDownsample:
        return BoxDownsample(factor, image_shape)

    def bicubic(image_shape, generator=None, a: float = -0.5) -> BicubicDownsample:
        return BicubicDownsample(factor, image_shape, a)

    register(f"sr{factor}", box,
             f"{factor}x super-resolution, box averaging of {factor}x{factor} blocks")
    register(f"sr{factor}-bicubic", bicubic,
             f"{factor}x super-resolution, bicubic (Keys a=-0.5) antialiased downsampling, "
             "reflective boundary")


for _factor in (2, 4, 8):
    _register_sr(_factor)


@register("blur-gauss")
def _blur_gauss(image_shape, generator=None, sigma: float = 3.0, size: int | None = None,
                rcond: float = 0.0) -> Blur:
    """Gaussian blur (std `sigma` px, size 2*ceil(3 sigma)+1 by default), zero boundary."""
    k = gaussian_kernel(sigma, size)
    return Blur(torch.outer(k, k), image_shape, rcond)


@register("blur-aniso")
def _blur_aniso(image_shape, generator=None, sigma_h: float = 1.0, sigma_w: float = 4.0,
                size: int | None = None, rcond: float = 0.0) -> Blur:
    """Axis-aligned Gaussian blur, std `sigma_h` (vertical) and `sigma_w` px, zero boundary."""
    size = size if size is not None else 2 * math.ceil(3 * max(sigma_h, sigma_w)) + 1
    return Blur(torch.outer(gaussian_kernel(sigma_h, size), gaussian_kernel(sigma_w, size)),
                image_shape, rcond)


@register("blur-uniform")
def _blur_uniform(image_shape, generator=None, size: int = 9, rcond: float = 0.0) -> Blur:
    """Uniform (box) blur of `size` x `size` pixels, zero boundary."""
    k = uniform_kernel(size)
    return Blur(torch.outer(k, k), image_shape, rcond)


@register("blur-motion")
def _blur_motion(image_shape, generator=None, size: int | None = None, intensity: float = 0.5,
                 rcond: float = 0.0) -> Blur:
    """Random camera-shake blur (61x61 or the largest odd size that fits), circular boundary."""
    if size is None:
        fit = min(image_shape[1:])
        size = min(61, fit if fit % 2 else fit - 1)
    if not (generator is None or isinstance(generator, torch.Generator)):
        raise ValueError("`generator` for blur-motion must be one torch.Generator (one kernel for the "
                         "batch), not a list")
    return Blur(motion_kernel(size, intensity, generator), image_shape, rcond, boundary="circular")


@register("colorize")
def _colorize(image_shape, generator=None, weights: Sequence[float] | None = None) -> Colorization:
    """Colour to gray (channel mean by default), y: [B, 1, H, W]."""
    return Colorization(image_shape, weights)


@register("denoise")
def _denoise(image_shape, generator=None) -> Identity:
    """Identity (denoising only; the noise comes from the noise model)."""
    return Identity(image_shape)
