"""DAPS: decoupled annealing posterior sampling (Zhang et al., 2025)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from operators import LinearOperator
from operators.random import Generators

from ..priors import Prior
from ..timesteps import spaced_timesteps
from .base import InverseSolver, ddim_step, spectral_observation

__all__ = ["DAPS"]

_SPREADS = ("vp", "sigma")


class DAPS(InverseSolver):
    r"""Decoupled annealing: at each noise level solve the probability-flow ODE to a clean
    estimate, sample ``x0`` given that estimate and ``y``, then re-noise ``x0`` afresh.

    At annealing level ``t`` (next level ``s``), with ``σ_t = √((1−ᾱ_t)/ᾱ_t)``:

    1. ``x̂0 = ODE(x_t)``: ``ode_steps`` deterministic DDIM steps from ``t`` towards 0, the last
       evaluation's clean prediction (one step: the denoiser's ``x̂0``);
    2. ``x0 ~ p(x0 | x̂0, y) ∝ N(x0; x̂0, r_t² I)·N(y; A x0, τ² I)``;
    3. ``x_s ~ q(x_s | x0) = N(√ᾱ_s·x0, (1−ᾱ_s) I)``: the next state depends on ``x_t`` only
       through ``x0`` (the decoupling).

    Step 2 is Gaussian. With an SVD ``A = U diag(s) Vᵀ`` it is sampled exactly, per spectral
    component ``(τ²·x̄0_i + r²s_i²·ȳ_i)/(τ² + r²s_i²) + √(r²τ²/(τ² + r²s_i²))·z_i`` (``ȳ_i =
    (Uᵀy)_i/s_i``; noiseless: ``ȳ_i`` itself; unobserved: ``x̄0_i + r·z_i``), at no network cost.
    Without one it runs the paper's Langevin chain from ``x̂0``,
    ``x ← x + η_k·((x̂0 − x)/r² − ∇‖A x − y‖²/(2τ²)) + √(2η_k)·z``, ``langevin_steps`` times, with
    ``η_k = lr·(1 + ρ·(lr_min_ratio − 1))`` decaying linearly in ``ρ = 1 − t/(T−1)``;
    the gradient comes from ``operator.adjoint`` or, for a non-linear ``A``, autograd.

    Evaluations: ``ode_steps`` per level, so ``steps`` evaluations give ``max(1, steps //
    ode_steps)`` levels; Langevin steps cost none. (A caller's level below ``ode_steps − 1``
    holds fewer distinct ODE timesteps; states count the evaluations made.) The result is the last level's ``x0``.

    Settings and differences from the paper and the official code (zhangbingliang2019/DAPS):
    the paper's DAPS-1K runs 200 levels × 5 ODE steps on an EDM σ grid from 100 to 0.1; here
    ``ode_steps = 1`` by default (the 20–200-evaluation budgets of this toolkit buy more levels
    that way) and the levels are the timesteps every solver here uses (spread evenly, or the
    caller's). The official code sets ``r_t = σ_t``; it starts Langevin at ``x̂0`` with a step size
    small enough that the chain moves little at high noise, so that choice acts as a loose prior
    there. Sampled exactly, ``r_t = σ_t`` (up to 157 at ``t = 999``) would throw the unobserved
    part of ``x0`` far off, so the default is ``r_t = √(1−ᾱ_t) = σ_t/√(1+σ_t²)`` — the spread of
    ``x0`` given ``x_t`` for unit-variance data, ≈ ``σ_t`` at low noise (``r="sigma"`` restores the
    official rule). ``τ`` defaults to the observation's own noise ``2σ_y`` (model range): the
    exact likelihood, where the official configs fix ``τ = 0.01`` for ``σ_y = 0.05``; the Langevin
    chain floors it at ``tau_floor``. Langevin defaults are the official pixel-space configs:
    100 steps, ``lr = 1e-4``, ``lr_min_ratio = 0.01``.

    Shapes: ``y`` as ``operator(x)``; states ``[B, C, H, W]``.

    Args:
        prior, operator, y, sigma_y: see :class:`InverseSolver`; ``operator`` may be any
            differentiable callable (Langevin through autograd; pass ``image_shape``).
        ode_steps: network evaluations per annealing level (≥ 1).
        r: ``"vp"`` (``r_t = √(1−ᾱ_t)``) or ``"sigma"`` (``r_t = σ_t``, the official code).
        tau: likelihood std in the model range; None: ``2·sigma_y``.
        langevin_steps, lr, lr_min_ratio, tau_floor: the Langevin chain (operators without SVD).
        image_shape: ``(C, H, W)`` for a callable ``operator`` without ``image_shape``.

    Example:
        >>> import torch, operators
        >>> from nested_inverse import GaussianMixturePrior
        >>> from nested_inverse.solvers import DAPS
        >>> prior = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 4), torch.eye(4)[None],
        ...                              event_shape=(1, 2, 2))
        >>> op = operators.make("inpaint-half", image_shape=(1, 2, 2))
        >>> y = op(prior.sample(1, torch.Generator().manual_seed(0)))
        >>> states = list(DAPS(prior, op, y, ode_steps=2).iterate(steps=6))
        >>> [s.nfe for s in states]
        [2, 4, 6]

    References:
        Zhang, Chu, Berner, Meng, Anandkumar, Song, "Improving Diffusion Inverse Problem Solving
        with Decoupled Noise Annealing", CVPR 2025, arXiv 2407.01521.
    """

    def __init__(
        self,
        prior: Prior,
        operator: LinearOperator | Callable[[Tensor], Tensor],
        y: Tensor,
        sigma_y: float = 0.0,
        ode_steps: int = 1,
        r: str = "vp",
        tau: float | None = None,
        langevin_steps: int = 100,
        lr: float = 1e-4,
        lr_min_ratio: float = 0.01,
        tau_floor: float = 0.01,
        *,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__(prior, operator, y, sigma_y, image_shape=image_shape)
        self.ode_steps = _count("ode_steps", ode_steps)
        self.langevin_steps = _count("langevin_steps", langevin_steps)
        if r not in _SPREADS:
            raise ValueError(f"`r` must be one of {_SPREADS}, got {r!r}")
        self.r = r
        self.tau = self.sigma if tau is None else _positive("tau", tau, zero_ok=True)
        self.lr = _positive("lr", lr)
        self.lr_min_ratio = _positive("lr_min_ratio", lr_min_ratio)
        self.tau_floor = _positive("tau_floor", tau_floor)
        self.svd = operator.svd() if isinstance(operator, LinearOperator) else None
        if self.svd is not None:
            self._observed, self._y_bar, self._s = spectral_observation(self.svd, y)

    def ode_timesteps(self, t: int) -> list[int]:
        """Where the ODE from level ``t`` evaluates: ``ode_steps`` timesteps over ``[t, 0]``
        (fewer only when ``t < ode_steps − 1``)."""
        return [t] if self.ode_steps == 1 else spaced_timesteps(t, self.ode_steps, t_end=0)

    def evaluations(self, t: int) -> int:
        return len(self.ode_timesteps(t))

    def timesteps(self, t_start: int, steps: int) -> list[int]:
        """``max(1, steps // ode_steps)`` annealing levels spread evenly over ``[t_start, t_end]``,
        ``t_end = max(1, ode_steps − 1)`` so that every level's ODE makes ``ode_steps``
        evaluations."""
        return spaced_timesteps(t_start, max(1, steps // self.ode_steps),
                                t_end=max(1, self.ode_steps - 1))

    def spread(self, t: int) -> float:
        """``r_t``: the std of the Gaussian ``p(x0 | x_t)`` is taken to be."""
        a_t = self.alpha(t)
        return math.sqrt(1 - a_t) if self.r == "vp" else math.sqrt((1 - a_t) / a_t)

    def ode(self, x_t: Tensor, t: int) -> Tensor:
        """``x̂0`` after ``ode_steps`` deterministic DDIM evaluations from ``(x_t, t)``."""
        ts = self.ode_timesteps(t)
        x = x_t
        for i, tau in enumerate(ts):
            x0, eps = self.prior.predict(x, tau)
            if i + 1 < len(ts):
                x = ddim_step(x0, eps, self.alpha(tau), self.alpha(ts[i + 1]), 0.0, None)
        return x0

    def conditional_sample(self, x0: Tensor, r: float, progress: float,
                           generator: Generators) -> Tensor:
        """A draw from ``N(x; x̂0, r² I)·N(y; A x, τ² I)`` ``[B, C, H, W]``: exact with an SVD, by
        Langevin otherwise (started at ``x̂0``)."""
        if self.svd is not None:
            svd, tau2, r2 = self.svd, self.tau**2, r * r
            x0_bar = svd.Vt(x0)
            s2 = self._s**2
            mean = torch.where(self._observed, (tau2 * x0_bar + r2 * s2 * self._y_bar)
                               / (tau2 + r2 * s2), x0_bar)
            var = torch.where(self._observed, r2 * tau2 / (tau2 + r2 * s2), r2)
            return svd.V(mean + var.sqrt() * svd.Vt(self.noise(generator)))
        return self.langevin(x0, r, progress, generator)

    def langevin(self, x0: Tensor, r: float, progress: float, generator: Generators) -> Tensor:
        """The paper's Langevin chain for step 2 (no closed form), ``langevin_steps`` long."""
        lr = self.lr * (1 + progress * (self.lr_min_ratio - 1))
        tau2 = max(self.tau, self.tau_floor) ** 2
        x = x0.clone()
        for _ in range(self.langevin_steps):
            score = (x0 - x) / (r * r) - self.data_gradient(x) / tau2
            x = x + lr * score + math.sqrt(2 * lr) * self.noise(generator)
        return x

    def data_gradient(self, x: Tensor) -> Tensor:
        """``∇_x ‖A x − y‖²/2``: ``Aᵀ(A x − y)`` for a linear operator, autograd otherwise."""
        if isinstance(self.operator, LinearOperator):
            return self.operator.adjoint(self.A(x) - self.y)
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            loss = 0.5 * (self.A(x) - self.y).pow(2).sum()
            (grad,) = torch.autograd.grad(loss, x)
        return grad

    def step(self, x_t: Tensor, t: int, s: int, generator: Generators) -> tuple[Tensor, Tensor]:
        x0_hat = self.ode(x_t, t)
        # The Langevin step size decays with the noise level, not with a counter: an inner run
        # started low takes the small steps an outer run would take there.
        progress = 1 - t / (self.num_timesteps - 1)
        x0 = self.conditional_sample(x0_hat, self.spread(t), progress, generator)
        if s < 0:
            return x0, x0
        a_s = self.alpha(s)
        return math.sqrt(a_s) * x0 + math.sqrt(1 - a_s) * self.noise(generator), x0


def _count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1, got {value!r}")
    return value


def _positive(name: str, value: float, zero_ok: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value >= 0 if zero_ok else value > 0):
        raise ValueError(f"`{name}` must be a finite number {'>= 0' if zero_ok else '> 0'}, "
                         f"got {value!r}")
    return float(value)
