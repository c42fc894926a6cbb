import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

import operators
from nested_inverse import GaussianMixturePrior, restore, solvers
from nested_inverse.metrics import psnr


@pytest.fixture(scope="module")
def prior():
    """A small mixture on 3×4×4 images whose samples stay inside the model range."""
    g = torch.Generator().manual_seed(0)
    d = 48
    means = 0.4 * torch.rand(3, d, generator=g, dtype=torch.float64) - 0.2
    covs = 0.01 * torch.eye(d, dtype=torch.float64).repeat(3, 1, 1)
    return GaussianMixturePrior(torch.ones(3), means, covs, event_shape=(3, 4, 4))


def observation(name="sr2", seed=1):
    x = 0.3 + 0.4 * torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    op = operators.make(name, image_shape=(3, 4, 4))
    return x, op, op(x)


def test_tensor_in_tensor_out_with_intermediates(prior):
    x, op, y = observation()
    out, results = restore(y, op, method="ddnm", outer_steps=3, inner_steps=2, prior=prior,
                           seed=0, return_intermediates=True, progress=False)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape and out.dtype == y.dtype
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    assert [(r.outer_step, r.nfe) for r in results] == [(0, 0), (1, 2), (2, 4), (3, 6)]
    assert all(isinstance(r.image, torch.Tensor) and r.image.shape == x.shape for r in results)
    assert torch.equal(results[-1].image, out)
    # Noiseless DDNM keeps A x = y; this also checks the [0, 1] ↔ model range conversion of y.
    torch.testing.assert_close(op(out), y, atol=1e-5, rtol=0)
    again = restore(y, op, method="ddnm", outer_steps=3, inner_steps=2, prior=prior, seed=0,
                    progress=False)
    assert torch.equal(out, again)


def test_the_observation_conversion_holds_where_a_of_ones_is_not_one(prior):
    x, op, y = observation("inpaint-half")
    out = restore(y, op, method="ddnm", outer_steps=2, inner_steps=2, prior=prior, seed=0,
                  progress=False)
    observed = op(torch.ones_like(x)) > 0
    torch.testing.assert_close(out[observed], x[observed], atol=1e-5, rtol=0)


def test_numpy_and_pil_come_back_as_numpy_and_pil(prior):
    x, op, y = observation()
    arr = (y[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    out = restore(arr, op, method="ddnm", outer_steps=2, inner_steps=1, prior=prior, seed=0,
                  progress=False)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (4, 4, 3)
    pil, results = restore(Image.fromarray(arr), op, method="ddnm", outer_steps=2, inner_steps=1,
                           prior=prior, seed=0, progress=False, return_intermediates=True)
    assert isinstance(pil, Image.Image) and pil.size == (4, 4)
    assert all(isinstance(r.image, Image.Image) for r in results)
    np.testing.assert_array_equal(np.asarray(pil), out)


def test_registry_names_need_an_image_shape(prior):
    x, op, y = observation()
    out = restore(y, "sr2", image_shape=(3, 4, 4), method="ddnm", outer_steps=2, inner_steps=1,
                  prior=prior, seed=0, progress=False)
    assert out.shape == x.shape
    with pytest.raises(ValueError, match="image_shape"):
        restore(y, "sr2", method="ddnm", prior=prior, progress=False)


def test_bad_arguments_are_reported(prior):
    x, op, y = observation()
    with pytest.raises(ValueError, match="method"):
        restore(y, op, method="magic", prior=prior, progress=False)
    with pytest.raises(ValueError, match="operator"):
        restore(y, 3.0, method="ddnm", prior=prior, progress=False)
    with pytest.raises(ValueError, match="`y`"):
        restore(x, op, method="ddnm", prior=prior, progress=False)


def test_vanilla_runs_the_solver_alone(prior):
    x, op, y = observation()
    out, results = restore(y, op, method="ddnm", vanilla=True, steps=5, prior=prior, seed=0,
                           return_intermediates=True, progress=False)
    assert out.shape == x.shape and [r.nfe for r in results] == list(range(6))
    assert torch.equal(results[-1].image, out)


def test_budget_is_passed_through(prior):
    x, op, y = observation()
    _, results = restore(y, op, method="ddnm", outer_steps=4, inner_steps=5, budget_nfe=7,
                         prior=prior, seed=0, return_intermediates=True, progress=False)
    assert results[-1].nfe == 7


def test_every_registered_method_runs(prior):
    x, op, y = observation()
    assert solvers.available(latent=False) == ["daps", "ddnm", "ddrm", "diffpir", "dps", "pigdm"]
    for method in solvers.available(latent=False):  # latent ones: tests/test_restore_latent.py
        out = restore(y, op, 0.05, method=method, outer_steps=2, inner_steps=2, prior=prior,
                      seed=0, progress=False)
        assert out.shape == x.shape and torch.isfinite(out).all()


def test_the_bundled_prior_restores_a_small_crop():
    import nested_inverse as ni

    x = ni.bundled_image("coffee", size=32)
    op = operators.make("sr4", image_shape=(3, 32, 32))
    y = op(x)
    out, results = restore(y, op, method="ddnm", outer_steps=2, inner_steps=1, seed=0,
                           return_intermediates=True, progress=False)
    assert out.shape == x.shape and [r.nfe for r in results] == [0, 1, 2]
    # Measured 22.5 dB (A†y 22.8 dB: two evaluations are too few to beat it); the bound only
    # rules out nonsense such as a wrong range conversion.
    assert float(psnr(out, x)) > 18
    assert not math.isnan(float(psnr(results[1].image, x)))



@pytest.mark.parametrize("seed", [1.5, "abc", -1, True])
def test_restore_refuses_a_seed_that_is_not_a_count(prior, seed):
    _, op, y = observation()
    with pytest.raises(ValueError, match="`seed`"):
        restore(y, op, method="ddnm", outer_steps=1, inner_steps=1, prior=prior, seed=seed,
                progress=False)


@pytest.mark.parametrize("to_bad, words", [(lambda y: 255 * y, "dividing by 255"),
                                           (lambda y: 2 * y - 1, "(y + 1) / 2")])
def test_restore_refuses_an_observation_off_the_unit_scale(prior, to_bad, words):
    """A float image in [0, 255] came back all white, one in [-1, 1] clamped, without a word."""
    _, op, y = observation()
    y = y.clone()
    y[..., 0, 0] = 0.0  # a dark pixel and a bright one, so both wrong scales are plain
    y[..., 0, 1] = 1.0
    with pytest.raises(ValueError, match=re.escape(words)):
        restore(to_bad(y), op, method="ddnm", outer_steps=1, inner_steps=1, prior=prior, seed=0,
                progress=False)


def test_a_noisy_observation_stays_accepted(prior):
    """The bounds leave room for the noise: σ_y = 0.1 pushes y well outside [0, 1]."""
    x, op, _ = observation()
    y = op(x) + 0.1 * torch.randn(op(x).shape, generator=torch.Generator().manual_seed(0))
    out = restore(y, op, sigma_y=0.1, method="ddnm", outer_steps=1, inner_steps=1, prior=prior,
                  seed=0, progress=False)
    assert out.shape == x.shape
