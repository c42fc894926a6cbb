"""TiledPrior: exact where the prior acts pixel by pixel, seamless where it does not, gradients
through recomputed chunks, every solver unchanged on it."""

from __future__ import annotations

import math
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from diffusers import UNet2DModel  # noqa: E402

import operators  # noqa: E402
from nested_inverse import GaussianMixturePrior, Problem, solvers  # noqa: E402
from nested_inverse.priors import DiffusionPrior  # noqa: E402
from nested_inverse.priors.tiled import TiledPrior, native_tile, tile_starts  # noqa: E402


class Pixelwise:
    """An exact Gaussian prior applied to every pixel on its own: tiling must change nothing."""

    def __init__(self) -> None:
        self.gmm = GaussianMixturePrior(torch.tensor([0.3, 0.7]), torch.tensor([[-0.5], [0.4]]),
                                        torch.tensor([[[0.05]], [[0.2]]]), event_shape=(1,))
        self.alphas_cumprod = self.gmm.alphas_cumprod

    def predict(self, x, t):
        if isinstance(t, torch.Tensor) and t.numel() > 1:  # one t per image → one per pixel
            t = t.repeat_interleave(x[0].numel())
        x0, eps = self.gmm.predict(x.reshape(-1, 1), t)
        return x0.reshape(x.shape), eps.reshape(x.shape)


class TileMean:
    """A prior whose estimate is the mean of the tile it sees: wherever two tiles meet, their
    estimates jump, so a hard cut would show a seam."""

    alphas_cumprod = torch.linspace(0.999, 0.01, 1000, dtype=torch.float64)

    def predict(self, x, t):
        x0 = x.mean(dim=(1, 2, 3), keepdim=True).expand_as(x)
        return x0, x - x0


def tiny_prior(seed: int = 0) -> DiffusionPrior:
    torch.manual_seed(seed)
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, norm_num_groups=4,
                       down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"))
    return DiffusionPrior(unet, {"beta_schedule": "linear", "clip_sample": False})


@pytest.mark.parametrize("length,tile,overlap", [(64, 64, 16), (65, 64, 16), (100, 16, 4),
                                                 (2048, 64, 16), (37, 8, 7), (9, 8, 0)])
def test_tile_starts_cover_with_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(tile - g >= overlap for g in gaps)  # neighbours share at least `overlap` pixels
    # the fewest tiles that do: one fewer could not keep the overlap
    n = len(starts)
    assert n == 1 or (n - 2) * (tile - overlap) + tile < length


@pytest.mark.parametrize("tile,overlap,tile_batch", [(8, 2, 3), (8, 0, 1), (16, 15, 64), (5, 4, 7)])
def test_pixelwise_prior_is_unchanged_by_tiling(tile, overlap, tile_batch):
    prior = Pixelwise()
    tiled = TiledPrior(prior, tile=tile, overlap=overlap, tile_batch=tile_batch)
    x = torch.randn(2, 3, 21, 34, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for t in (999, 250, torch.tensor([10, 700])):
        x0, eps = tiled.predict(x, t)
        x0_ref, eps_ref = prior.predict(x, t)
        torch.testing.assert_close(x0, x0_ref, rtol=0, atol=1e-12)
        torch.testing.assert_close(eps, eps_ref, rtol=0, atol=1e-12)


def test_windows_are_a_partition_of_unity():
    tiled = TiledPrior(Pixelwise(), tile=16, overlap=5)
    windows, norm = tiled._windows(50, 37, torch.device("cpu"), torch.float64)
    total = torch.zeros(1, 1, 50, 37, dtype=torch.float64)
    for w, (i, j) in zip(windows, tiled.tiles(50, 37)):
        total[..., i:i + 16, j:j + 16] += w
        assert float(w.min()) > 0
    torch.testing.assert_close(total * norm, torch.ones_like(total))


def test_the_blend_has_no_seams():
    """Tile estimates that jump by Δ where tiles meet are cross-faded over the overlap O: the
    blended image's steepest step is at most Δ·(π/2)/O (sin² rises at most π/(2O) per pixel),
    where a hard cut would step by Δ."""
    H = W = 48  # tiles of 16 without overlap meet edge to edge: the control below
    x = torch.zeros(1, 1, H, W, dtype=torch.float64)
    x[..., :, W // 2:] = 1.0  # the two columns of tiles see different means
    overlap = 8
    tiled = TiledPrior(TileMean(), tile=16, overlap=overlap)
    x0, _ = tiled.predict(x, 500)
    means = [float(x[..., i:i + 16, j:j + 16].mean()) for i, j in tiled.tiles(H, W)]
    jump = max(means) - min(means)
    steepest = max(float(x0.diff(dim=-1).abs().max()), float(x0.diff(dim=-2).abs().max()))
    assert jump > 0.3
    assert steepest <= jump * (math.pi / 2) / overlap * 1.01
    # the negative control: without overlap the tiles meet edge to edge, and it shows
    hard_tiled = TiledPrior(TileMean(), tile=16, overlap=0)
    assert hard_tiled.tiles(H, W)[:3] == [(0, 0), (0, 16), (0, 32)]
    hard, _ = hard_tiled.predict(x, 500)
    assert float(hard.diff(dim=-1).abs().max()) > 3 * steepest


def test_unet_prior_identity_chunks_and_determinism():
    prior = tiny_prior()
    x = torch.randn(2, 3, 40, 29, generator=torch.Generator().manual_seed(1))
    tiled = TiledPrior(prior, overlap=6, tile_batch=5)
    assert tiled.tile == 16 == native_tile(prior)
    x0, eps = tiled.predict(x, 400)
    a = float(prior.alphas_cumprod[400])
    torch.testing.assert_close(math.sqrt(a) * x0 + math.sqrt(1 - a) * eps, x, atol=1e-5, rtol=0)
    again = TiledPrior(prior, overlap=6, tile_batch=1).predict(x, 400)
    torch.testing.assert_close(again[0], x0, atol=1e-5, rtol=1e-5)
    assert torch.equal(tiled.predict(x, 400)[0], x0)
    # one tile covers a small image: the prior itself answers
    small = x[..., :16, :12]
    assert torch.equal(tiled.predict(small, 400)[0], prior.predict(small, 400)[0])


def test_gradient_through_recomputed_chunks_is_exact():
    """The vector–Jacobian product ΠGDM and DPS take, through checkpointed chunks, equals the one
    through the untiled pixelwise prior."""
    prior = Pixelwise()
    x = torch.randn(1, 3, 19, 23, dtype=torch.float64, requires_grad=True)
    v = torch.randn(1, 3, 19, 23, dtype=torch.float64)
    (g_tiled,) = torch.autograd.grad((TiledPrior(prior, tile=8, overlap=3, tile_batch=2)
                                      .predict(x, 600)[0] * v).sum(), x)
    (g_ref,) = torch.autograd.grad((prior.predict(x, 600)[0] * v).sum(), x)
    torch.testing.assert_close(g_tiled, g_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("method", ["ddrm", "ddnm", "pigdm", "dps", "daps", "diffpir"])
def test_every_solver_runs_on_a_tiled_prior(method):
    prior = TiledPrior(tiny_prior(), overlap=4, tile_batch=8)
    x = torch.rand(1, 3, 36, 28, generator=torch.Generator().manual_seed(2))
    op = operators.make("sr2", image_shape=(3, 36, 28))
    problem = Problem(op(x).clamp(0, 1), op, sigma_y=0.01)
    solver = solvers.make(method, prior, problem)
    out = solver.sample(steps=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 36, 28) and bool(torch.isfinite(out).all())


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="`overlap`=16 must be an integer in \\[0, tile=16\\)"):
        TiledPrior(tiny_prior(), overlap=16)
    with pytest.raises(ValueError, match="`tile` is needed"):
        TiledPrior(Pixelwise())
    with pytest.raises(ValueError, match="`tile_batch`=0"):
        TiledPrior(Pixelwise(), tile=8, tile_batch=0)
    class Latent(Pixelwise):
        def decode(self, z):
            return z

        def encode(self, x):
            return x

    latent = Latent()
    with pytest.raises(ValueError, match="latent prior"):
        TiledPrior(latent, tile=8)
