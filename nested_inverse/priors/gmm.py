"""An exact prior: a Gaussian mixture, whose denoiser and posteriors are known in closed form."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from operators import LinearOperator
from operators.random import Generators

from .schedule import linear_alphas_cumprod

__all__ = ["GaussianMixturePrior"]


def _psd_sqrt(cov: Tensor) -> Tensor:
    """A matrix ``L`` with ``L Lᵀ = cov`` for a symmetric PSD ``cov`` (possibly singular)."""
    eigval, eigvec = torch.linalg.eigh(0.5 * (cov + cov.transpose(-1, -2)))
    return eigvec * eigval.clamp_min(0).sqrt().unsqueeze(-2)


class GaussianMixturePrior:
    r"""``p(x0) = Σ_k w_k N(x0; μ_k, Σ_k)`` on tensors ``[B, *event_shape]``, with exact answers.

    Under the variance-preserving process ``x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε``, each component's
    marginal is ``N(√ᾱ μ_k, C_k)`` with ``C_k = ᾱ Σ_k + (1−ᾱ) I``, so the Bayes denoiser is

    ``E[x0 | x_t] = Σ_k r_k(x_t) (μ_k + √ᾱ Σ_k C_k⁻¹ (x_t − √ᾱ μ_k))``,
    ``r_k ∝ w_k N(x_t; √ᾱ μ_k, C_k)``.

    Conditioning on any linear-Gaussian observation ``z = H x0 + n``, ``n ~ N(0, diag(v))``, gives
    another mixture (:meth:`condition`); :meth:`posterior` uses it for ``y = A x0 + σ_y·n`` and
    :meth:`posterior_sample` for ``p(x0 | x_t, y)`` (an exact inner sampler for nested diffusion).
    All linear algebra is dense and in float64: meant for dimensions up to a few dozen.

    Args:
        weights: ``[K]``, non-negative (normalised here).
        means: ``[K, d]`` with ``d = prod(event_shape)``.
        covs: ``[K, d, d]``, symmetric positive definite.
        event_shape: shape of one sample, e.g. ``(1, 4, 4)`` so image operators apply unchanged.
        alphas_cumprod: ``ᾱ_t`` ``[T]``; default :func:`~.schedule.linear_alphas_cumprod` (T = 1000).

    Example:
        >>> import torch
        >>> from nested_inverse import GaussianMixturePrior
        >>> prior = GaussianMixturePrior(torch.ones(2), torch.tensor([[1.0, 0.0], [-1.0, 0.0]]),
        ...                              0.1 * torch.eye(2).repeat(2, 1, 1), event_shape=(1, 1, 2))
        >>> prior.sample(3, torch.Generator().manual_seed(0)).shape
        torch.Size([3, 1, 1, 2])
    """

    def __init__(
        self,
        weights: Tensor,
        means: Tensor,
        covs: Tensor,
        event_shape: Sequence[int],
        alphas_cumprod: Tensor | None = None,
    ) -> None:
        self.event_shape = tuple(int(s) for s in event_shape)
        d = math.prod(self.event_shape)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        means = torch.as_tensor(means, dtype=torch.float64)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        k = weights.shape[0] if weights.ndim == 1 else -1
        if weights.ndim != 1 or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"`weights` must be a non-negative [K] tensor with a positive sum, "
                             f"got shape {tuple(weights.shape)}")
        if means.shape != (k, d):
            raise ValueError(f"`means` must have shape [K, d] = [{k}, {d}] for event_shape "
                             f"{self.event_shape}, got {tuple(means.shape)}")
        if covs.shape != (k, d, d):
            raise ValueError(f"`covs` must have shape [K, d, d] = [{k}, {d}, {d}], got "
                             f"{tuple(covs.shape)}")
        self.weights = weights / weights.sum()
        self.means = means
        self.covs = 0.5 * (covs + covs.transpose(-1, -2))
        self.dim = d
        if alphas_cumprod is None:
            alphas_cumprod = linear_alphas_cumprod()
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float64)

    # ----------------------------------------------------------------------------------- sampling
    def sample(self, n: int, generator: Generators = None) -> Tensor:
        """``n`` independent draws, ``[n, *event_shape]``, float64."""
        logw = self.weights.log().expand(n, -1)
        means = self.means.expand(n, -1, -1)
        return _sample(logw, means, _psd_sqrt(self.covs), generator).view(n, *self.event_shape)

    def log_prob(self, x0: Tensor) -> Tensor:
        """``log p(x0)`` for ``x0: [B, *event_shape]`` → ``[B]``."""
        x = x0.reshape(x0.shape[0], self.dim).to(torch.float64)
        return torch.logsumexp(self.weights.log() + _log_normal(x, self.means, self.covs), dim=-1)

    # ----------------------------------------------------------------------------------- denoiser
    def predict(self, x_t: Tensor, t: int | Tensor) -> tuple[Tensor, Tensor]:
        """Exact ``(E[x0 | x_t], (x_t − √ᾱ_t E[x0 | x_t]) / √(1 − ᾱ_t))``, shaped like ``x_t``."""
        b = x_t.shape[0]
        a = self._alpha(t, b)  # [B]
        x = x_t.reshape(b, self.dim).to(torch.float64)
        eye = torch.eye(self.dim, dtype=torch.float64)
        # One factorisation per distinct timestep: C = ᾱ Σ + (1 − ᾱ) I, [1 or B, K, d, d].
        a_cov = a[:1] if bool((a == a[0]).all()) else a
        cov = a_cov[:, None, None, None] * self.covs + (1 - a_cov)[:, None, None, None] * eye
        chol = torch.linalg.cholesky(cov)
        sa = a.sqrt()[:, None, None]
        resid = x[:, None, :] - sa * self.means  # [B, K, d]
        sol = torch.cholesky_solve(resid.unsqueeze(-1), chol)  # C⁻¹ (x − √ᾱ μ)
        logp = _gauss_logp(resid, sol, chol)
        r = torch.softmax(self.weights.log() + logp, dim=-1)  # [B, K]
        cond = self.means + sa * (self.covs @ sol).squeeze(-1)  # [B, K, d]
        x0 = (r.unsqueeze(-1) * cond).sum(1)
        eps = (x - a.sqrt()[:, None] * x0) / (1 - a).sqrt()[:, None]
        return x0.view_as(x_t).to(x_t.dtype), eps.view_as(x_t).to(x_t.dtype)

    # -------------------------------------------------------------------------------- posteriors
    def condition(self, matrix: Tensor, value: Tensor, noise_var: Tensor) -> "_ConditionedMixture":
        r"""``p(x0 | z)`` for ``z = H x0 + n``, ``n ~ N(0, diag(v))``: a mixture per item.

        Per component, with ``G = H Σ Hᵀ + diag(v)`` and gain ``K = Σ Hᵀ G⁻¹``: mean
        ``μ + K (z − H μ)``, covariance ``Σ − K H Σ`` (computed in Joseph form), weight
        ``∝ w N(z; H μ, G)``.

        Args:
            matrix: ``H`` ``[m, d]``; value: ``z`` ``[B, m]``; noise_var: ``v`` ``[m]`` (zeros
                allowed where ``H Σ Hᵀ`` is positive definite on them).
        """
        H = matrix.to(torch.float64)
        z = value.to(torch.float64)
        v = torch.as_tensor(noise_var, dtype=torch.float64).expand(H.shape[0])
        SHt = self.covs @ H.T  # [K, d, m]
        G = H @ SHt + torch.diag_embed(v)  # [K, m, m]
        chol = torch.linalg.cholesky(0.5 * (G + G.transpose(-1, -2)))
        gain = torch.cholesky_solve(SHt.transpose(-1, -2), chol).transpose(-1, -2)  # [K, d, m]
        resid = z[:, None, :] - self.means @ H.T  # [B, K, m]
        means = self.means + (gain @ resid.unsqueeze(-1)).squeeze(-1)  # [B, K, d]
        # Joseph form: (I − K H) Σ (I − K H)ᵀ + K diag(v) Kᵀ stays symmetric PSD in floating point.
        ikh = torch.eye(self.dim, dtype=torch.float64) - gain @ H
        covs = ikh @ self.covs @ ikh.transpose(-1, -2) + (gain * v) @ gain.transpose(-1, -2)
        sol = torch.cholesky_solve(resid.unsqueeze(-1), chol)
        logp = _gauss_logp(resid, sol, chol)
        logw = torch.log_softmax(self.weights.log() + logp, dim=-1)
        return _ConditionedMixture(logw, means, covs, self.event_shape)

    def posterior(self, op: LinearOperator, y: Tensor, sigma_y: float = 0.0) -> "GaussianMixturePrior":
        r"""The exact posterior ``p(x0 | y)`` for ``y = A x0 + 2σ_y·n`` as another mixture.

        ``sigma_y`` is on the [0, 1] image scale (0.05 = 5 % of the range), hence the factor 2 in
        the model range [-1, 1]. ``y`` holds one observation (batch 1). Components of ``y`` outside
        the range of ``A`` carry no information about ``x0`` and are dropped, so noiseless problems
        with rank-deficient ``A`` (inpainting, say) are handled exactly.
        """
        if y.shape[0] != 1:
            raise ValueError(f"`y` must hold one observation (batch 1), got batch {y.shape[0]}; "
                             "use `posterior_sample` for batches")
        cond = self._condition_on_y(op, y, sigma_y, None, None)
        return GaussianMixturePrior(cond.logw[0].exp(), cond.means[0], cond.covs, self.event_shape,
                                    self.alphas_cumprod)

    def posterior_sample(
        self,
        op: LinearOperator | None,
        y: Tensor | None,
        sigma_y: float = 0.0,
        x_t: Tensor | None = None,
        t: int | Tensor | None = None,
        generator: Generators = None,
        n: int | None = None,
    ) -> Tensor:
        r"""Exact samples of ``p(x0 | y)``, or of ``p(x0 | x_t, y)`` when ``x_t`` and ``t`` are given.

        The latter conditions on both observations of ``x0``: ``y = A x0 + 2σ_y·n`` and
        ``x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε`` (one sample per item of ``x_t: [B, *event]``). With
        ``op=None`` only ``x_t`` is conditioned on. Without ``x_t``, ``n`` samples are drawn for
        the single observation ``y``.
        """
        cond = self._condition_on_y(op, y, sigma_y, x_t, t)
        if x_t is None:
            if cond.logw.shape[0] != 1:
                raise ValueError(f"without `x_t`, `y` must hold one observation (batch 1), got batch "
                                 f"{cond.logw.shape[0]}; pass `x_t` and `t` for one sample per item")
            count = 1 if n is None else n
            cond = _ConditionedMixture(cond.logw.expand(count, -1),
                                       cond.means.expand(count, -1, -1), cond.covs, self.event_shape)
        return cond.sample(generator)

    # ---------------------------------------------------------------------------------- helpers
    def _condition_on_y(self, op: LinearOperator | None, y: Tensor | None, sigma_y: float,
                        x_t: Tensor | None, t: int | Tensor | None) -> "_ConditionedMixture":
        if sigma_y < 0:
            raise ValueError(f"`sigma_y` must be >= 0, got {sigma_y}")
        rows: list[Tensor] = []
        values: list[Tensor] = []
        variances: list[Tensor] = []
        batch = 1 if x_t is None else x_t.shape[0]
        if op is not None:
            A = self._dense(op)  # [m, d]
            # Keep only the range of A: y's other components are pure noise.
            U, s, Vh = torch.linalg.svd(A, full_matrices=False)
            keep = s > s.max() * max(A.shape) * torch.finfo(torch.float64).eps
            yv = y.reshape(y.shape[0], -1).to(torch.float64)
            rows.append(s[keep, None] * Vh[keep])
            values.append((yv @ U[:, keep]).expand(batch, -1))
            variances.append(torch.full((int(keep.sum()),), (2 * sigma_y) ** 2, dtype=torch.float64))
        if x_t is not None:
            if t is None:
                raise ValueError("`t`=None: a timestep is required with `x_t`")
            a = self._alpha(t, batch)
            if not torch.all(a == a[0]):
                raise ValueError(f"`posterior_sample` needs one timestep `t` for the whole batch, got "
                                 f"{torch.as_tensor(t).reshape(-1).tolist()}")
            a = a[0]
            rows.append(a.sqrt() * torch.eye(self.dim, dtype=torch.float64))
            values.append(x_t.reshape(batch, -1).to(torch.float64))
            variances.append((1 - a).expand(self.dim))
        if not rows:
            raise ValueError("nothing to condition on: give `op` and `y`, or `x_t` and `t`")
        return self.condition(torch.cat(rows), torch.cat(values, dim=1), torch.cat(variances))

    def _dense(self, op: LinearOperator) -> Tensor:
        """The matrix of ``op`` on this event shape, ``[m, d]``, by applying it to a basis."""
        basis = torch.eye(self.dim, dtype=torch.float64).view(self.dim, *self.event_shape)
        with torch.no_grad():
            return op(basis).reshape(self.dim, -1).T.contiguous()

    def _alpha(self, t: int | Tensor, batch: int) -> Tensor:
        t = torch.as_tensor(t).reshape(-1).to(torch.long).cpu().expand(batch)
        T = self.alphas_cumprod.shape[0]
        if (t < 0).any() or (t >= T).any():
            raise ValueError(f"timestep `t` must lie in [0, {T}), got {t.tolist()}")
        return self.alphas_cumprod[t]


class _ConditionedMixture:
    """Per-item mixtures: ``logw [B, K]``, ``means [B, K, d]``, shared ``covs [K, d, d]``."""

    def __init__(self, logw: Tensor, means: Tensor, covs: Tensor, event_shape: tuple[int, ...]):
        self.logw, self.means, self.covs, self.event_shape = logw, means, covs, event_shape

    def sample(self, generator: Generators = None) -> Tensor:
        b = self.logw.shape[0]
        return _sample(self.logw, self.means, _psd_sqrt(self.covs), generator).view(
            b, *self.event_shape)


def _sample(logw: Tensor, means: Tensor, sqrt_cov: Tensor, generator: Generators) -> Tensor:
    """One draw per item from mixtures ``logw [B, K]``, ``means [B, K, d]``, ``sqrt_cov [K, d, d]``."""
    b, _, d = means.shape
    if generator is None or isinstance(generator, torch.Generator):
        u = torch.rand(b, generator=generator, dtype=torch.float64)
        z = torch.randn(b, d, generator=generator, dtype=torch.float64)
    else:
        gens = list(generator)
        if len(gens) != b:
            raise ValueError(f"`generator` has {len(gens)} entries for a batch of {b}; accepted: None, "
                             "one torch.Generator, or one per item")
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in gens])
        z = torch.cat([torch.randn(1, d, generator=g, dtype=torch.float64) for g in gens])
    # Inverse-CDF component choice keeps one uniform per item, whatever K is.
    cdf = torch.cumsum(logw.exp(), dim=-1)
    k = torch.searchsorted(cdf / cdf[:, -1:], u[:, None]).clamp_max(logw.shape[1] - 1)[:, 0]
    return means[torch.arange(b), k] + (sqrt_cov[k] @ z.unsqueeze(-1)).squeeze(-1)


def _log_normal(x: Tensor, means: Tensor, covs: Tensor) -> Tensor:
    """``log N(x; μ_k, Σ_k)`` for ``x: [B, d]`` → ``[B, K]``."""
    chol = torch.linalg.cholesky(covs)
    resid = x[:, None, :] - means
    return _gauss_logp(resid, torch.cholesky_solve(resid.unsqueeze(-1), chol), chol)


def _gauss_logp(resid: Tensor, sol: Tensor, chol: Tensor) -> Tensor:
    """``log N(r; 0, C)`` from ``r [..., m]``, ``C⁻¹r [..., m, 1]`` and ``chol(C) [..., m, m]``."""
    logdet = 2 * chol.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    m = resid.shape[-1]
    return -0.5 * ((resid.unsqueeze(-1) * sol).sum((-1, -2)) + logdet + m * math.log(2 * math.pi))
