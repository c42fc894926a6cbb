"""The loop every solver shares (each method writes only its ``step``), and the observation
that inverse-problem solvers add to it."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from operators import SVD, LinearOperator
from operators.random import Generators, randn

from ..priors import Prior
from ..timesteps import spaced_timesteps

__all__ = ["InverseSolver", "Solver", "SolverState", "ddim_step", "spectral_observation", "unit_interval"]


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
    r"""A diffusion sampler over images ``[B, C, H, W]``, run from noise or from any ``(x_t, t)``.

    Subclasses implement :meth:`step`, one move from timestep ``t`` to ``s`` (``s = −1`` meaning
    the clean image) with one network evaluation, and may override :meth:`initial_state` (the
    state at ``t_start`` when starting from noise) and :meth:`project` (how an edited image is
    made consistent with what the solver knows). The loop, validation, NFE accounting and
    randomness live here; the timesteps come from the caller or are spread evenly.

    Args:
        prior: anything with ``alphas_cumprod`` and ``predict(x_t, t) -> (x0_hat, eps_hat)``.
        initial_estimate: the estimate of x0 before any evaluation ``[B, C, H, W]``; it sets the
            image shape, dtype and device of the solver.
    """

    #: vector–Jacobian products through the network per step (DPS and ΠGDM: 1).
    vjp_per_step: int = 0

    def __init__(self, prior: Prior, initial_estimate: Tensor) -> None:
        if not (hasattr(prior, "alphas_cumprod") and hasattr(prior, "predict")):
            raise ValueError(f"`prior` must have `alphas_cumprod` and `predict`, got "
                             f"{type(prior).__name__}")
        self.prior = prior
        self.alphas_cumprod = torch.as_tensor(prior.alphas_cumprod, dtype=torch.float64).cpu()
        self.initial_estimate = initial_estimate

    @property
    def image_shape(self) -> tuple[int, ...]:
        """``[B, C, H, W]`` of the images this solver produces."""
        return tuple(self.initial_estimate.shape)

    @property
    def num_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def alpha(self, t: int) -> float:
        """``ᾱ_t`` as a Python float; ``t = −1`` is the clean image, ``ᾱ = 1``."""
        return 1.0 if t < 0 else float(self.alphas_cumprod[t])

    def noise(self, generator: Generators) -> Tensor:
        """Standard normal noise shaped like an image batch, from the caller's generator(s)."""
        ref = self.initial_estimate
        return randn(self.image_shape, generator, dtype=ref.dtype, device=ref.device)

    def initial_state(self, t_start: int, generator: Generators) -> Tensor:
        """``x_T`` when starting from noise: ``N(0, I)`` (DDRM overrides with its spectral start)."""
        return self.noise(generator)

    def project(self, x: Tensor) -> Tensor:
        """``x`` made consistent with what the solver knows (nothing, for a sampler without data)."""
        return x

    @abstractmethod
    def step(self, x_t: Tensor, t: int, s: int, generator: Generators) -> tuple[Tensor, Tensor]:
        """One network evaluation at ``t``; returns ``(x_s, x0_hat)`` with ``s < t`` (−1: clean)."""

    def evaluations(self, t: int) -> int:
        """Network evaluations the step at ``t`` makes (one; DAPS: its ODE steps)."""
        return 1

    def timesteps(self, t_start: int, steps: int) -> list[int]:
        """The timesteps of a run from ``t_start`` that spends ``steps`` evaluations: spread evenly
        over ``[t_start, 1]`` (fewer when that holds fewer)."""
        return spaced_timesteps(t_start, steps)

    def iterate(
        self,
        x_t: Tensor | None = None,
        t_start: int | None = None,
        steps: int = 20,
        generator: Generators = None,
        *,
        timesteps: Sequence[int] | None = None,
    ) -> Iterator[SolverState]:
        """Run the solver, yielding the state after each network evaluation.

        From noise when ``x_t`` is None (``t_start`` defaults to ``T − 1``); otherwise from the given
        ``x_t`` at ``t_start`` down to the clean image. The evaluations happen at ``timesteps``
        (strictly decreasing integers in ``[0, T)``, the first one ``t_start``) when given, else at
        :meth:`timesteps` ``(t_start, steps)``.
        """
        T = self.num_timesteps
        if timesteps is not None:
            timesteps = _check_timesteps(timesteps, T)
            if t_start is not None and t_start != timesteps[0]:
                raise ValueError(f"`t_start`={t_start} differs from `timesteps[0]`={timesteps[0]}")
            t_start = timesteps[0]
        elif isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"`steps` must be an integer >= 1, got {steps!r}")
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
            x = x_t.to(dtype=self.initial_estimate.dtype, device=self.initial_estimate.device)
        if timesteps is None:
            timesteps = self.timesteps(t_start, steps)
        nfe = 0
        for i, t in enumerate(timesteps):
            s = timesteps[i + 1] if i + 1 < len(timesteps) else -1
            with torch.no_grad():
                x, x0 = self.step(x, t, s, generator)
            nfe += self.evaluations(t)
            yield SolverState(x_t=x, t=s, x0_hat=x0, nfe=nfe, vjp=(i + 1) * self.vjp_per_step)

    def sample(
        self,
        x_t: Tensor | None = None,
        t_start: int | None = None,
        steps: int = 20,
        generator: Generators = None,
        *,
        timesteps: Sequence[int] | None = None,
    ) -> Tensor:
        """The result ``x0`` ``[B, C, H, W]``; arguments as for :meth:`iterate`."""
        state = None
        for state in self.iterate(x_t, t_start, steps, generator, timesteps=timesteps):
            pass
        return state.x_t


class InverseSolver(Solver):
    r"""A solver for ``y = A x0 + 2σ_y·n``: the observation, its operator and ``A†y``.

    Args:
        prior: anything with ``alphas_cumprod`` and ``predict``.
        operator: the forward operator ``A``: a :class:`~operators.LinearOperator`, or (for
            solvers that only differentiate through it, DPS) any differentiable callable.
        y: the observation in the model range, shaped like ``operator(x)``; its dtype and device
            set the solver's.
        sigma_y: observation noise std on the [0, 1] image scale (0.05 = 5 % of the range);
            ``2·sigma_y`` in the model range [-1, 1].
        image_shape: ``(C, H, W)`` of the images; needed only when ``operator`` is not a
            ``LinearOperator`` and has no ``image_shape`` attribute.

    Before the first evaluation the estimate is ``A†y`` (zeros, mid-grey, for a non-linear
    ``operator``).
    """

    def __init__(
        self,
        prior: Prior,
        operator: LinearOperator | Callable[[Tensor], Tensor],
        y: Tensor,
        sigma_y: float = 0.0,
        *,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(y, Tensor):
            raise ValueError(f"`y` must be a tensor, got {type(y).__name__}")
        if not torch.isfinite(y).all():
            raise ValueError("`y` contains NaN or inf; check the observation")
        sigma_y = float(sigma_y)
        if not sigma_y >= 0:
            raise ValueError(f"`sigma_y` must be >= 0 (on the [0, 1] image scale), got {sigma_y}")
        if not callable(operator):
            raise ValueError(f"`operator` must be callable (x -> y), got {type(operator).__name__}")
        if image_shape is not None:
            image_shape = tuple(int(s) for s in image_shape)
            if len(image_shape) != 3:
                raise ValueError(f"`image_shape` must be (C, H, W), got {image_shape}")
        self.operator = operator
        self.y = y
        self.sigma_y = sigma_y
        if isinstance(operator, LinearOperator) and image_shape is None:
            self.y_pinv = _pinv_checked(operator, y)
        else:
            self.y_pinv = _zeros_checked(operator, y, image_shape)
        super().__init__(prior, self.y_pinv)

    @property
    def sigma(self) -> float:
        """Observation noise std in the model range [-1, 1]: ``2·sigma_y``."""
        return 2.0 * self.sigma_y

    def A_pinv(self, y: Tensor) -> Tensor:
        """``A† y`` inside the solver loop: the operator's ``pinv`` without its finiteness check,
        for the reasons of :meth:`A`."""
        method = getattr(type(self.operator), "pinv", None)
        if getattr(method, "checks_finite", False) and hasattr(method, "__wrapped__"):
            return method.__wrapped__(self.operator, y)
        return self.operator.pinv(y)

    def A(self, x: Tensor) -> Tensor:
        """``A x`` inside the solver loop: ``operator.forward``, without the finiteness check of
        ``operator(x)`` (the observation was checked once; a prior that diverges must reach the
        result check, and a GPU should not wait on a check every step)."""
        if isinstance(self.operator, LinearOperator):
            return self.operator.forward(x)
        return self.operator(x)

    def project(self, x: Tensor) -> Tensor:
        """For noiseless linear problems ``x − A†(A x − y)``, the nearest image with ``A x = y``;
        ``x`` itself otherwise."""
        if self.sigma_y > 0 or not isinstance(self.operator, LinearOperator):
            return x
        with torch.no_grad():
            return x - self.A_pinv(self.A(x) - self.y)


def _check_timesteps(timesteps: Sequence[int], T: int) -> list[int]:
    ts = [int(t) for t in timesteps]
    if not ts or any(not 0 <= t < T for t in ts) or any(a <= b for a, b in zip(ts, ts[1:])):
        raise ValueError(f"`timesteps` must be strictly decreasing integers in [0, {T}), got "
                         f"{list(timesteps)}")
    return ts


def _pinv_checked(operator: LinearOperator, y: Tensor) -> Tensor:
    """``A†y`` ``[B, C, H, W]`` after checking that ``y`` fits ``operator``."""
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


def _zeros_checked(operator: Callable[[Tensor], Tensor], y: Tensor,
                   image_shape: tuple[int, ...] | None) -> Tensor:
    """Mid-grey ``[B, C, H, W]`` after checking ``y`` against the forward pass of that probe."""
    shape = image_shape or getattr(operator, "image_shape", None)
    if shape is None:
        raise ValueError(f"{type(operator).__name__} is not a LinearOperator: pass "
                         "`image_shape=(C, H, W)` so the solver knows the size of the images")
    probe = torch.zeros((y.shape[0], *shape), dtype=y.dtype, device=y.device)
    with torch.no_grad():
        out = operator(probe)
    if tuple(out.shape) != tuple(y.shape):
        raise ValueError(f"`y` has shape {tuple(y.shape)} but the operator maps images of "
                         f"shape {tuple(probe.shape)} to {tuple(out.shape)}")
    return probe
