"""The loop every inverse-problem solver shares; each method writes only its ``step``."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from operators import SVD, LinearOperator
from operators.random import Generators, randn

from ..priors import Prior
from ..timesteps import spaced_timesteps

__all__ = ["Solver", "SolverState", "ddim_step", "spectral_observation", "unit_interval"]


@dataclass
class SolverState:
    """One step of a solver run.

    Attributes:
        x_t: the sample after this step ``[B, C, H, W]``, at timestep ``t``; after the last step
            ``t == -1`` and ``x_t`` is the result. ``(x_t, t)`` is always a valid restart point for
            ``sample(x_t=..., t_start=t)`` while ``t >= 0``.
        t: the timestep of ``x_t`` (−1 for the clean result).
        x0_hat: the solver's estimate of x0 at this step, after its data-consistency correction.
        nfe: network evaluations so far in this run, per image.
        vjp: vector–Jacobian products through the network so far, per image (DPS, ΠGDM).
    """

    x_t: Tensor
    t: int
    x0_hat: Tensor
    nfe: int
    vjp: int = 0


def unit_interval(name: str, value: float) -> float:
    """``value`` as a float after checking it lies in [0, 1] (η-like parameters), naming ``name``."""
    if isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1], got {value!r}")
    return float(value)


def spectral_observation(
    svd: SVD, y: Tensor, floor: Tensor | float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    r"""``y`` in the operator's spectral space: ``(observed, ȳ, s)``, each ``[B or 1, N]``.

    ``observed = s > floor``; ``ȳ_i = (Uᵀy)_i / s_i`` on observed components and 0 elsewhere; ``s``
    in ``y``'s dtype and device with 1 where unobserved, so callers may divide by it (DDRM, DDNM+).
    """
    s = svd.singulars.to(dtype=y.dtype, device=y.device)
    observed = s > floor
    safe = torch.where(observed, s, torch.ones_like(s))
    with torch.no_grad():
        y_bar = torch.where(observed, svd.Ut(y) / safe, 0.0)
    return observed, y_bar, safe


def ddim_step(
    x0: Tensor, eps: Tensor, a_t: float, a_s: float, eta: float, noise: Tensor | None
) -> Tensor:
    r"""DDIM update from ``t`` to ``s < t`` (Song et al., 2021, arXiv 2010.02502).

    ``σ = η·√((1−ᾱ_s)/(1−ᾱ_t))·√(1−ᾱ_t/ᾱ_s)``,
    ``x_s = √ᾱ_s·x̂0 + √(1−ᾱ_s−σ²)·ε̂ + σ·z``. With ``ᾱ_s = 1`` this returns ``x̂0``.
    """
    sigma = eta * math.sqrt((1 - a_s) / (1 - a_t)) * math.sqrt(max(1 - a_t / a_s, 0.0))
    out = math.sqrt(a_s) * x0 + math.sqrt(max(1 - a_s - sigma**2, 0.0)) * eps
    if sigma > 0:
        out = out + sigma * noise
    return out


class Solver(ABC):
    r"""A diffusion solver for ``y = A x0 + 2σ_y·n``, run from noise or from any ``(x_t, t)``.

    Subclasses implement :meth:`step`, one move from timestep ``t`` to ``s`` (``s = −1`` meaning
    the clean image) with one network evaluation, and may override :meth:`initial_state` (the
    state at ``t_start`` when starting from noise). The loop, validation, timesteps, NFE
    accounting and randomness live here.

    Args:
        prior: anything with ``alphas_cumprod`` and ``predict(x_t, t) -> (x0_hat, eps_hat)``.
        operator: the linear forward operator ``A``.
        y: the observation, shaped like ``operator(x)``; its dtype and device set the solver's.
        sigma_y: observation noise std on the [0, 1] image scale (0.05 = 5 % of the range);
            ``2·sigma_y`` in the model range [-1, 1].
    """

    #: vector–Jacobian products through the network per step (DPS and ΠGDM: 1).
    vjp_per_step: int = 0

    def __init__(self, prior: Prior, operator: LinearOperator, y: Tensor, sigma_y: float = 0.0):
        if not (hasattr(prior, "alphas_cumprod") and hasattr(prior, "predict")):
            raise ValueError(f"`prior` must have `alphas_cumprod` and `predict`, got "
                             f"{type(prior).__name__}")
        if not isinstance(y, Tensor):
            raise ValueError(f"`y` must be a tensor, got {type(y).__name__}")
        if not torch.isfinite(y).all():
            raise ValueError("`y` contains NaN or inf; check the observation")
        sigma_y = float(sigma_y)
        if not sigma_y >= 0:
            raise ValueError(f"`sigma_y` must be >= 0 (on the [0, 1] image scale), got {sigma_y}")
        self.prior = prior
        self.operator = operator
        self.y = y
        self.sigma_y = sigma_y
        self.alphas_cumprod = torch.as_tensor(prior.alphas_cumprod, dtype=torch.float64).cpu()
        self.y_pinv = self.check_observation(operator, y)

    def check_observation(self, operator: LinearOperator, y: Tensor) -> Tensor:
        """Check that ``y`` fits ``operator`` and return ``A†y`` ``[B, C, H, W]``, the estimate shown
        before the first network evaluation (its shape is the solver's image shape). Solvers for
        non-linear forward models override this (see :class:`DPS`)."""
        image_shape = getattr(operator, "image_shape", None)
        if image_shape is not None:  # check before pinv, which would fail with a shape error
            expected = tuple(operator.output_shape((y.shape[0], *image_shape)))
            if expected != tuple(y.shape):
                raise ValueError(
                    f"`y` has shape {tuple(y.shape)} but the operator maps images of shape "
                    f"{(y.shape[0], *image_shape)} to {expected}"
                )
        try:
            with torch.no_grad():
                y_pinv = operator.pinv(y)
        except RuntimeError as err:
            raise ValueError(f"`y` of shape {tuple(y.shape)} does not fit the operator "
                             f"{type(operator).__name__}: {err}") from err
        expected = tuple(operator.output_shape(tuple(y_pinv.shape)))
        if expected != tuple(y.shape):
            raise ValueError(
                f"`y` has shape {tuple(y.shape)} but the operator maps images of shape "
                f"{tuple(y_pinv.shape)} to {expected}"
            )
        return y_pinv

    @property
    def sigma(self) -> float:
        """Observation noise std in the model range [-1, 1]: ``2·sigma_y``."""
        return 2.0 * self.sigma_y

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``[B, C, H, W]`` of the images this solver restores."""
        return tuple(self.y_pinv.shape)

    @property
    def num_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def alpha(self, t: int) -> float:
        """``ᾱ_t`` as a Python float; ``t = −1`` is the clean image, ``ᾱ = 1``."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def noise(self, generator: Generators) -> Tensor:
        """Standard normal noise shaped like an image batch, from the caller's generator(s)."""
        return randn(self.image_shape, generator, dtype=self.y.dtype, device=self.y.device)

    def initial_state(self, t_start: int, generator: Generators) -> Tensor:
        """``x_T`` when starting from noise: ``N(0, I)`` (DDRM overrides with its spectral start)."""
        return self.noise(generator)

    @abstractmethod
    def step(self, x_t: Tensor, t: int, s: int, generator: Generators) -> tuple[Tensor, Tensor]:
        """One network evaluation at ``t``; returns ``(x_s, x0_hat)`` with ``s < t`` (−1: clean)."""

    def iterate(
        self,
        x_t: Tensor | None = None,
        t_start: int | None = None,
        steps: int = 20,
        generator: Generators = None,
    ) -> Iterator[SolverState]:
        """Run the solver, yielding the state after each of its ``steps`` network evaluations.

        From noise when ``x_t`` is None (``t_start`` defaults to ``T − 1``); otherwise from the given
        ``x_t`` at ``t_start`` down to the clean image, with evaluations spread evenly over
        ``[t_start, 1]`` (fewer when that interval holds fewer integers).
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"`steps` must be an integer >= 1, got {steps!r}")
        T = self.num_timesteps
        if x_t is None:
            t_start = T - 1 if t_start is None else t_start
        elif t_start is None:
            raise ValueError("`t_start` is required when `x_t` is given")
        if isinstance(t_start, bool) or not isinstance(t_start, int) or not 0 <= t_start < T:
            raise ValueError(f"`t_start` must be an integer in [0, {T}), got {t_start!r}")
        if x_t is None:
            x = self.initial_state(t_start, generator)
        else:
            if tuple(x_t.shape) != self.image_shape:
                raise ValueError(f"`x_t` has shape {tuple(x_t.shape)}, expected {self.image_shape}")
            x = x_t.to(dtype=self.y.dtype, device=self.y.device)
        timesteps = spaced_timesteps(t_start, steps)
        for i, t in enumerate(timesteps):
            s = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            with torch.no_grad():
                x, x0 = self.step(x, t, s, generator)
            yield SolverState(x_t=x, t=s, x0_hat=x0, nfe=i + 1, vjp=(i + 1) * self.vjp_per_step)

    def sample(
        self,
        x_t: Tensor | None = None,
        t_start: int | None = None,
        steps: int = 20,
        generator: Generators = None,
    ) -> Tensor:
        """The restored image ``x0`` ``[B, C, H, W]``; arguments as for :meth:`iterate`."""
        state = None
        for state in self.iterate(x_t, t_start, steps, generator):
            pass
        return state.x_t
