"""Noise schedules: ᾱ_t from every kind of description, against closed forms and diffusers, and the
errors for bad configs (naming the argument, the value received and what is accepted)."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler

from nested_inverse.priors import GaussianMixturePrior, linear_alphas_cumprod
from nested_inverse.priors.schedule import (
    BETA_SCHEDULES,
    alphas_cumprod_from_schedule,
    betas_from_config,
    linear_betas,
)

CONFIGS = [{"beta_schedule": kind} for kind in BETA_SCHEDULES] + [
    {"beta_schedule": "linear", "num_train_timesteps": 50, "beta_start": 1e-3, "beta_end": 0.2},
    {"beta_schedule": "scaled_linear", "num_train_timesteps": 7, "beta_start": 0.00085, "beta_end": 0.012},
    {"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 20},
    {"trained_betas": [0.1, 0.2, 0.3]},
]


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "squaredcos_cap_v2"])
def test_schedules_match_diffusers(schedule):
    sched = DDIMScheduler(beta_schedule=schedule)
    ours = alphas_cumprod_from_schedule(sched)
    assert ours.dtype == torch.float64 and ours.shape == (1000,)
    torch.testing.assert_close(ours, sched.alphas_cumprod.double(), atol=2e-6, rtol=1e-5)
    assert (ours[1:] <= ours[:-1]).all()


def test_bad_schedules():
    with pytest.raises(ValueError, match="beta_schedule"):
        alphas_cumprod_from_schedule({"beta_schedule": "sigmoid"})
    with pytest.raises(ValueError, match="schedule"):
        alphas_cumprod_from_schedule("linear")
    with pytest.raises(ValueError, match="non-increasing"):
        alphas_cumprod_from_schedule(torch.tensor([0.5, 0.9]))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_properties(config):
    """ᾱ_0 = 1 − β_0, ᾱ_t = ᾱ_{t−1}(1 − β_t), non-increasing, in (0, 1], float64 [T]."""
    betas = betas_from_config(config)
    abar = alphas_cumprod_from_schedule(config)
    assert abar.dtype == betas.dtype == torch.float64 and abar.shape == betas.shape
    assert abar[0] == 1 - betas[0]
    torch.testing.assert_close(abar[1:], abar[:-1] * (1 - betas[1:]), atol=0, rtol=1e-15)
    assert (abar[1:] <= abar[:-1]).all() and (abar > 0).all() and (abar <= 1).all()


def test_linear_closed_form():
    T, b0, b1 = 1000, 1e-4, 0.02
    t = torch.arange(T, dtype=torch.float64)
    betas = linear_betas(T, b0, b1)
    torch.testing.assert_close(betas, b0 + (b1 - b0) * t / (T - 1), atol=1e-15, rtol=0)
    torch.testing.assert_close(linear_alphas_cumprod(), torch.cumprod(1 - betas, 0), atol=0, rtol=0)
    # log ᾱ_t = Σ log(1 − β_s): an independent route to the same numbers.
    torch.testing.assert_close(linear_alphas_cumprod().log(), torch.log1p(-betas).cumsum(0),
                               atol=1e-12, rtol=0)


def test_scaled_linear_closed_form():
    T, b0, b1 = 10, 0.00085, 0.012
    t = torch.arange(T, dtype=torch.float64)
    expected = (math.sqrt(b0) + (math.sqrt(b1) - math.sqrt(b0)) * t / (T - 1)) ** 2
    got = betas_from_config({"beta_schedule": "scaled_linear", "num_train_timesteps": T,
                             "beta_start": b0, "beta_end": b1})
    torch.testing.assert_close(got, expected, atol=1e-15, rtol=0)


def test_cosine_closed_form():
    """Without the cap, ᾱ_t = f((t+1)/T)/f(0), f(s) = cos²((s + 0.008)/1.008 · π/2)."""
    T = 1000
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    abar = alphas_cumprod_from_schedule({"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": T})
    betas = betas_from_config({"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": T})
    uncapped = int((betas < 0.999).sum())
    expected = torch.tensor([f((t + 1) / T) / f(0) for t in range(uncapped)], dtype=torch.float64)
    torch.testing.assert_close(abar[:uncapped], expected, atol=1e-12, rtol=0)
    assert betas.max() <= 0.999 and abar[-1] > 0


def test_trained_betas_and_explicit_forms_agree():
    betas = linear_betas()
    ref = linear_alphas_cumprod()
    for schedule in ({"trained_betas": betas.tolist()}, {"betas": betas}, {"alphas_cumprod": ref},
                     ref, ref.tolist(), DDPMScheduler(), dict(DDPMScheduler().config)):
        assert torch.equal(alphas_cumprod_from_schedule(schedule), ref)


def test_one_linear_schedule_everywhere():
    """The GMM default, the training schedule and DiffusionPrior's default config give the same bits."""
    ref = linear_alphas_cumprod(1000, 1e-4, 0.02)
    gmm = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 2), torch.eye(2)[None], event_shape=(1, 1, 2))
    assert torch.equal(gmm.alphas_cumprod, ref)
    assert torch.equal(alphas_cumprod_from_schedule({"beta_schedule": "linear"}), ref)
    assert torch.equal(alphas_cumprod_from_schedule({}), ref)  # diffusers' defaults
    assert torch.equal(ref, torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0))


@pytest.mark.parametrize("config, pattern", [
    ({"beta_schedule": "sigmoid"},
     r"`beta_schedule`='sigmoid' is not supported; accepted: linear, scaled_linear, squaredcos_cap_v2"),
    ({"num_train_timesteps": 0}, r"`num_train_timesteps`=0 must be a positive integer"),
    ({"num_train_timesteps": 2.5}, r"`num_train_timesteps`=2.5 must be a positive integer"),
    ({"beta_start": -0.1}, r"`beta_start`=-0.1 must be in \[0, 1\)"),
    ({"beta_end": 1.0}, r"`beta_end`=1.0 must be in \[0, 1\)"),
    ({"rescale_betas_zero_snr": True}, r"`rescale_betas_zero_snr`=True .* accepted: False"),
    ({"trained_betas": [0.5, 1.5]}, r"outside \(0, 1\] \(T=2, ᾱ_1=-0.25"),
    ({"alphas_cumprod": [0.5, 0.9]}, r"not non-increasing in t \(ᾱ_0=0.5 < ᾱ_1=0.9\)"),
    ({"alphas_cumprod": []}, r"empty alphas_cumprod"),
])
def test_bad_configs_name_argument_value_and_accepted(config, pattern):
    with pytest.raises(ValueError, match=pattern):
        alphas_cumprod_from_schedule(config)


def test_unknown_schedule_type_names_it():
    with pytest.raises(ValueError, match=r"`schedule`=3 of type int is not understood; accepted:"):
        alphas_cumprod_from_schedule(3)


def test_schedules_match_ddim_scheduler_config_object():
    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    assert torch.equal(alphas_cumprod_from_schedule(sched), alphas_cumprod_from_schedule(dict(sched.config)))
