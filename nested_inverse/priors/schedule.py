r"""Noise schedules: ``β_t`` and ``ᾱ_t = ∏_{s≤t} (1 − β_s)``, variance-preserving process.

Under ``x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε`` every prior carries ``ᾱ_t`` for ``t = 0 … T−1`` (float64
``[T]``, in (0, 1], non-increasing). The kinds of diffusers' ``beta_schedule``:

- ``linear``:            ``β_t = β_start + (β_end − β_start)·t/(T−1)`` (Ho et al., 2020);
- ``scaled_linear``:     ``√β_t`` linear from ``√β_start`` to ``√β_end`` (latent diffusion);
- ``squaredcos_cap_v2``: ``β_t = min(1 − ᾱ((t+1)/T)/ᾱ(t/T), 0.999)`` with
  ``ᾱ(s) = cos²((s + 0.008)/1.008 · π/2)`` (Nichol & Dhariwal, 2021);
- explicit ``trained_betas``.

References:
    Ho, Jain, Abbeel (2020). Denoising Diffusion Probabilistic Models. arXiv:2006.11239.
    Nichol, Dhariwal (2021). Improved Denoising Diffusion Probabilistic Models. arXiv:2102.09672.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["BETA_SCHEDULES", "alphas_cumprod_from_schedule", "betas_from_config", "linear_alphas_cumprod",
           "linear_betas"]

#: the ``beta_schedule`` kinds :func:`betas_from_config` accepts
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _check_length(num_train_timesteps: Any) -> int:
    T = num_train_timesteps
    if isinstance(T, bool) or not isinstance(T, numbers.Real) or int(T) != T or T < 1:
        raise ValueError(f"`num_train_timesteps`={num_train_timesteps!r} must be a positive integer")
    return int(num_train_timesteps)


def linear_betas(num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                 beta_end: float = 0.02) -> Tensor:
    r"""``β_t = β_start + (β_end − β_start)·t/(T−1)``, float64 ``[T]``: the DDPM schedule (Ho et al.).

    >>> linear_betas(5, 0.1, 0.5)
    tensor([0.1000, 0.2000, 0.3000, 0.4000, 0.5000], dtype=torch.float64)
    """
    T = _check_length(num_train_timesteps)
    for name, value in (("beta_start", beta_start), ("beta_end", beta_end)):
        if not 0 <= value < 1:
            raise ValueError(f"`{name}`={value!r} must be in [0, 1)")
    return torch.linspace(beta_start, beta_end, T, dtype=torch.float64)


def linear_alphas_cumprod(num_train_timesteps: int = 1000, beta_start: float = 1e-4,
                          beta_end: float = 0.02) -> Tensor:
    r"""``ᾱ_t = ∏_{s≤t} (1 − β_s)`` for :func:`linear_betas`, float64 ``[T]``.

    The defaults (T = 1000, β from 1e-4 to 0.02) are the schedule of Ho et al. (2020), of the
    bundled prior and of :class:`~nested_inverse.GaussianMixturePrior`.

    >>> abar = linear_alphas_cumprod()
    >>> abar.shape, float(abar[0]), round(float(abar[-1]), 6)
    (torch.Size([1000]), 0.9999, 4e-05)
    """
    return torch.cumprod(1 - linear_betas(num_train_timesteps, beta_start, beta_end), 0)


def betas_from_config(config: Mapping[str, Any]) -> Tensor:
    r"""``β_t`` (float64 ``[T]``) from a diffusers scheduler config.

    Reads ``trained_betas`` if given, else ``beta_schedule`` (one of :data:`BETA_SCHEDULES`,
    default ``"linear"``), ``num_train_timesteps`` (1000), ``beta_start`` (1e-4) and
    ``beta_end`` (0.02), with diffusers' defaults.

    >>> betas_from_config({"beta_schedule": "scaled_linear", "num_train_timesteps": 3,
    ...                    "beta_start": 0.01, "beta_end": 0.09})
    tensor([0.0100, 0.0400, 0.0900], dtype=torch.float64)
    """
    trained = config.get("trained_betas")
    if trained is not None:
        return torch.as_tensor(trained, dtype=torch.float64).flatten()
    T = _check_length(config.get("num_train_timesteps", 1000))
    start = float(config.get("beta_start", 1e-4))
    end = float(config.get("beta_end", 0.02))
    kind = config.get("beta_schedule", "linear")
    if kind == "linear":
        return linear_betas(T, start, end)
    if kind == "scaled_linear":
        return torch.linspace(math.sqrt(start), math.sqrt(end), T, dtype=torch.float64) ** 2
    if kind == "squaredcos_cap_v2":
        s = torch.arange(T + 1, dtype=torch.float64) / T
        abar = torch.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2
        # The cap keeps β_{T−1} < 1, so ᾱ_{T−1} > 0 and x̂0 stays defined at the last step.
        return (1 - abar[1:] / abar[:-1]).clamp(max=0.999)
    raise ValueError(
        f"`beta_schedule`={kind!r} is not supported; accepted: {', '.join(BETA_SCHEDULES)} "
        "or explicit `trained_betas`"
    )


def alphas_cumprod_from_schedule(schedule: Any) -> Tensor:
    r"""``ᾱ_t = ∏_{s≤t} (1 − β_s)`` as float64 ``[T]`` from any description of a noise schedule.

    Args:
        schedule: a diffusers scheduler config (a mapping with ``beta_schedule``, ``beta_start``,
            ``beta_end``, ``num_train_timesteps`` or ``trained_betas``; see
            :func:`betas_from_config`), a diffusers scheduler (its ``.config`` is used), a mapping
            ``{"betas": ...}`` or ``{"alphas_cumprod": ...}``, or a 1-d tensor / sequence taken as
            ``alphas_cumprod`` itself.

    Raises:
        ValueError: for an unknown ``beta_schedule``, ``rescale_betas_zero_snr=True`` (ᾱ_{T−1} = 0),
            or ``ᾱ`` outside (0, 1] or increasing somewhere.

    >>> alphas_cumprod_from_schedule({"beta_schedule": "linear", "num_train_timesteps": 1000})[0]
    tensor(0.9999, dtype=torch.float64)
    >>> alphas_cumprod_from_schedule({"betas": [0.5, 0.5]})
    tensor([0.5000, 0.2500], dtype=torch.float64)
    """
    if hasattr(schedule, "config") and isinstance(getattr(schedule, "config"), Mapping):
        schedule = schedule.config
    if isinstance(schedule, Mapping):
        if "alphas_cumprod" in schedule:
            abar = torch.as_tensor(schedule["alphas_cumprod"], dtype=torch.float64).flatten()
        elif "betas" in schedule:
            betas = torch.as_tensor(schedule["betas"], dtype=torch.float64).flatten()
            abar = torch.cumprod(1 - betas, 0)
        else:
            if schedule.get("rescale_betas_zero_snr", False):
                raise ValueError(
                    "`rescale_betas_zero_snr`=True gives ᾱ_{T−1} = 0, where x̂0 is undefined for "
                    "epsilon models; accepted: False"
                )
            abar = torch.cumprod(1 - betas_from_config(schedule), 0)
    elif isinstance(schedule, (Tensor, Sequence)) and not isinstance(schedule, str):
        abar = torch.as_tensor(schedule, dtype=torch.float64).detach().cpu().flatten()
    else:
        raise ValueError(
            f"`schedule`={schedule!r} of type {type(schedule).__name__} is not understood; accepted: "
            "a diffusers scheduler or its config dict, {'betas': ...}, {'alphas_cumprod': ...}, or a "
            "1-d tensor of alphas_cumprod"
        )
    abar = abar.detach().cpu()
    if abar.numel() < 1:
        raise ValueError("`schedule` gives an empty alphas_cumprod; expected at least one timestep")
    bad = ~((abar > 0) & (abar <= 1))
    if bool(bad.any()):
        t = int(bad.nonzero()[0])
        raise ValueError(
            f"`schedule` gives alphas_cumprod outside (0, 1] (T={abar.numel()}, ᾱ_{t}={abar[t].item()}); "
            "expected betas in [0, 1) or alphas_cumprod in (0, 1]"
        )
    rising = abar[1:] > abar[:-1]
    if bool(rising.any()):
        t = int(rising.nonzero()[0]) + 1
        raise ValueError(
            f"`schedule` gives alphas_cumprod that are not non-increasing in t "
            f"(ᾱ_{t - 1}={abar[t - 1].item()} < ᾱ_{t}={abar[t].item()})"
        )
    return abar
