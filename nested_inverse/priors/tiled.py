r"""A pixel prior evaluated on overlapping tiles, so any image size costs bounded memory.

For an image ``x_t: [B, C, H, W]`` larger than the network's tile ``T``, the tiles
``P_k x_t`` (``T×T`` windows whose starts step by at most ``T − O``, ``O`` the overlap) are
denoised separately and blended with a smooth window ``w_k``:

    x̂0(x_t) = Σ_k P_kᵀ(w_k ⊙ x̂0_k) / Σ_k P_kᵀ w_k,   x̂0_k, ε̂_k = prior.predict(P_k x_t, t)

and the same for ``ε̂``. The blend is linear, so ``x_t = √ᾱ_t·x̂0 + √(1−ᾱ_t)·ε̂`` still holds exactly
(each tile satisfies it on the same pixels of ``x_t``). ``w_k`` is 1 inside a tile and rises as
``sin²`` over the overlap on every side that has a neighbour (a side on the image border keeps
weight 1), so neighbouring estimates are cross-faded, never cut: no seams, and no tone shift since
nothing is normalised per tile (the shifts of diffusers' tiled VAE come from its per-tile group
norms; here every tile sees the same ``x_t`` values and schedule). The grid is fixed by the image
size, so the result is deterministic.

Tiles go through the network ``tile_batch`` at a time. When a gradient is wanted (ΠGDM and DPS
backpropagate through ``predict``) each chunk is recomputed in the backward pass
(``torch.utils.checkpoint``), so memory holds one chunk's activations, not every tile's.

Patch-averaged estimates over overlapping grids follow Özdenizci and Legenstein (2023), "Restoring
Vision in Adverse Weather Conditions with Patch-Based Denoising Diffusion Models"
(WeatherDiffusion), arXiv 2207.14626; DDNM (Wang et al., 2023, arXiv 2212.00490) restores large
images with shifted masks over tiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .protocol import LatentPrior, Prior, wrapped_priors

__all__ = ["UNTILED_UP_TO", "TiledPrior", "check_tile", "native_tile", "tile_starts", "tiled_for"]

#: an image whose sides are at most this many times the network's training size runs whole
UNTILED_UP_TO = 2


def native_tile(prior: Prior) -> int | None:
    """The side a prior's network was trained at: ``sample_size`` of a diffusers UNet (the
    smaller side when it is a pair), else the prior's own ``tile_size``; None when unknown.
    Wrappers that keep the prior they wrap as ``.prior`` are looked through."""
    for p in wrapped_priors(prior):
        size = getattr(p, "tile_size", None)
        config = getattr(getattr(p, "unet", None), "config", None)
        if size is None and hasattr(config, "get"):
            size = config.get("sample_size")
        if size:
            return int(min(size) if isinstance(size, (tuple, list)) else size)
    return None


def check_tile(tile: int | None) -> None:
    """Refuse a ``tile`` setting that is neither None, 0 nor a side of at least 2 pixels."""
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 0
                             or tile == 1):
        raise ValueError(f"`tile`={tile!r} must be an integer >= 2 (pixels), 0 (never tile) or "
                         "None (tiles of the network's training size for images over twice it)")


def tiled_for(prior: Prior, height: int, width: int, tile: int | None = None) -> Prior:
    """The prior a run on ``height × width`` images uses: ``prior`` itself, or a
    :class:`TiledPrior` over it.

    ``tile=None`` (the default rule): tiles of the network's training size :func:`native_tile`
    once a side exceeds ``UNTILED_UP_TO`` (2) times that size, the whole image below (a
    convolutional UNet runs on crops a little larger than it was trained on as it always did;
    beyond, memory grows with the image and attention layers see far more tokens than in
    training). ``tile=N`` tiles of N pixels whenever a side exceeds N; ``tile=0`` never tiles.
    Latent priors, priors of unknown training size and an already tiled prior are returned as
    they are.

    >>> from nested_inverse.priors.tiled import tiled_for
    >>> from nested_inverse.priors import load_prior
    >>> prior = load_prior(None)  # the bundled 64-pixel prior
    >>> tiled_for(prior, 128, 96) is prior, type(tiled_for(prior, 400, 600)).__name__
    (True, 'TiledPrior')
    >>> tiled_for(prior, 400, 600, tile=0) is prior, tiled_for(prior, 100, 100, tile=48).tile
    (True, 48)
    """
    check_tile(tile)
    if tile == 0 or isinstance(prior, (TiledPrior, LatentPrior)):
        return prior
    native = native_tile(prior)
    if tile is None:
        if native is None or max(height, width) <= UNTILED_UP_TO * native:
            return prior
        tile = native
    if max(height, width) <= tile:
        return prior
    return TiledPrior(prior, tile=tile)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of the fewest ``tile``-long windows covering ``[0, length)`` with neighbours
    overlapping by at least ``overlap``, spread evenly; ``[0]`` when one window (or less) covers it.

    >>> tile_starts(64, 64, 16), tile_starts(100, 64, 16), tile_starts(160, 64, 16)
    ([0], [0, 36], [0, 48, 96])
    """
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _ramp(size: int, start_fade: int, end_fade: int, device: torch.device,
          dtype: torch.dtype) -> Tensor:
    """Weights along one side of a tile: ``sin²`` rises over ``start_fade`` and falls over
    ``end_fade`` samples, 1 between; strictly positive everywhere."""
    w = torch.ones(size, device=device, dtype=dtype)
    for fade, index in ((start_fade, slice(0, start_fade)), (end_fade, slice(size - end_fade, size))):
        if fade > 0:
            u = (torch.arange(fade, device=device, dtype=dtype) + 0.5) / fade
            w[index] = torch.sin(0.5 * math.pi * (u if index.start == 0 else u.flip(0))) ** 2
    return w


class TiledPrior(nn.Module):
    r"""Wraps a pixel prior: ``predict(x_t, t)`` on overlapping ``tile×tile`` windows, blended.

    ``x̂0 = Σ_k P_kᵀ(w_k ⊙ x̂0_k) / Σ_k P_kᵀ w_k`` (and ``ε̂`` alike), ``w_k`` a ``sin²`` cross-fade
    over the overlap (module docstring). An image no larger than one tile goes to the prior whole.

    Args:
        prior: any pixel :class:`~nested_inverse.Prior` (not a latent one).
        tile: tile side in pixels; default: the network's training size (:func:`native_tile`).
        overlap: least overlap of neighbouring tiles; default ``tile // 4``. Must be < ``tile``.
        tile_batch: tiles per network call (memory; :func:`nested_inverse.memory.plan_memory`
            chooses it); default 16.
        progress: show a progress bar over the tile chunks of an evaluation: True, False, or None
            to show it when an evaluation takes more than 8 chunks and stderr is a terminal.

    Shapes: ``x_t: [B, C, H, W]`` of any ``H, W``; ``t: int | [B]``; outputs ``[B, C, H, W]``.

    Example (an exact Gaussian prior that acts pixel by pixel, so tiling changes nothing):

    >>> from nested_inverse import GaussianMixturePrior
    >>> pixelwise = GaussianMixturePrior(torch.ones(1), torch.zeros(1, 1), torch.eye(1)[None] * 0.5,
    ...                                  event_shape=(1,))
    >>> class Pixels:  # the 1-pixel Gaussian applied to every pixel
    ...     alphas_cumprod = pixelwise.alphas_cumprod
    ...     def predict(self, x, t):
    ...         x0, eps = pixelwise.predict(x.reshape(-1, 1), t)
    ...         return x0.reshape(x.shape), eps.reshape(x.shape)
    >>> tiled = TiledPrior(Pixels(), tile=8, overlap=2, tile_batch=3)
    >>> x = torch.randn(2, 3, 20, 13, dtype=torch.float64)
    >>> tiled.tiles(20, 13)
    [(0, 0), (0, 5), (6, 0), (6, 5), (12, 0), (12, 5)]
    >>> torch.allclose(tiled.predict(x, 300)[0], Pixels().predict(x, 300)[0])
    True
    """

    def __init__(self, prior: Prior, tile: int | None = None, overlap: int | None = None,
                 tile_batch: int | None = None, progress: bool | None = None) -> None:
        super().__init__()
        if isinstance(prior, LatentPrior):
            raise ValueError("`prior` is a latent prior: tile its images through the VAE's own "
                             "tiling (AutoencoderKL.enable_tiling), not its latents here")
        if tile is None:
            tile = native_tile(prior)
            if tile is None:
                raise ValueError(f"`tile` is needed: {type(prior).__name__} does not say the size "
                                 "its network was trained at (no UNet `sample_size`)")
        for name, value, low in (("tile", tile, 2), ("tile_batch", tile_batch, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < low):
                raise ValueError(f"`{name}`={value!r} must be an integer >= {low}")
        overlap = tile // 4 if overlap is None else overlap
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < tile:
            raise ValueError(f"`overlap`={overlap!r} must be an integer in [0, tile={tile})")
        self.prior = prior
        self.alphas_cumprod: Tensor = prior.alphas_cumprod
        self.tile, self.overlap = tile, overlap
        self.tile_batch: int = 16 if tile_batch is None else tile_batch
        self.progress = progress
        self._weights: dict[tuple, Tensor] = {}

    def extra_repr(self) -> str:
        return f"tile={self.tile}, overlap={self.overlap}, tile_batch={self.tile_batch}"

    def tiles(self, height: int, width: int) -> list[tuple[int, int]]:
        """``(top, left)`` of every tile of an ``height × width`` image, row by row."""
        return [(i, j) for i in tile_starts(height, self.tile, self.overlap)
                for j in tile_starts(width, self.tile, self.overlap)]

    def num_tiles(self, height: int, width: int) -> int:
        """Tiles per image (network evaluations of one tile per ``predict`` per image)."""
        return len(self.tiles(height, width))

    def _windows(self, height: int, width: int, device: torch.device,
                 dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Per-tile weights ``[K, 1, th, tw]`` and the normaliser ``1/Σ_k P_kᵀ w_k``, ``[1, 1, H, W]``."""
        key = (height, width, device, dtype)
        if key not in self._weights:
            th, tw = min(self.tile, height), min(self.tile, width)
            rows, cols = tile_starts(height, self.tile, self.overlap), tile_starts(width, self.tile, self.overlap)

            def fades(starts: list[int], size: int, k: int) -> tuple[int, int]:
                # Fade exactly over the region shared with each neighbour (>= overlap).
                before = starts[k - 1] + size - starts[k] if k > 0 else 0
                after = starts[k] + size - starts[k + 1] if k + 1 < len(starts) else 0
                return before, after

            windows, total = [], torch.zeros(1, 1, height, width, device=device, dtype=dtype)
            for a, i in enumerate(rows):
                wr = _ramp(th, *fades(rows, th, a), device=device, dtype=dtype)
                for b, j in enumerate(cols):
                    w = wr[:, None] * _ramp(tw, *fades(cols, tw, b), device=device, dtype=dtype)
                    windows.append(w[None])
                    total[..., i:i + th, j:j + tw] += w
            self._weights = {key: (torch.stack(windows), total.reciprocal())}
        return self._weights[key]

    def _chunks(self, batch: int, height: int, width: int) -> Iterator[list[tuple[int, int, int, int]]]:
        """``(image, tile index, top, left)`` for every tile of the batch, ``tile_batch`` at a time."""
        items = [(b, k, i, j) for b in range(batch) for k, (i, j) in enumerate(self.tiles(height, width))]
        for s in range(0, len(items), self.tile_batch):
            yield items[s:s + self.tile_batch]

    def predict(self, x_t: Tensor, t: int | Tensor) -> tuple[Tensor, Tensor]:
        B, _, H, W = x_t.shape
        if H <= self.tile and W <= self.tile:
            return self.prior.predict(x_t, t)
        th, tw = min(self.tile, H), min(self.tile, W)
        windows, norm = self._windows(H, W, x_t.device, x_t.dtype)
        per_image = t.detach().flatten().expand(B) if isinstance(t, Tensor) and t.numel() > 1 else None
        x0 = torch.zeros_like(x_t)
        eps = torch.zeros_like(x_t)
        grad = torch.is_grad_enabled() and x_t.requires_grad
        chunks = list(self._chunks(B, H, W))
        for chunk in self._progress(chunks):
            patches = torch.stack([x_t[b, :, i:i + th, j:j + tw] for b, _, i, j in chunk])
            t_chunk = t if per_image is None else per_image[[b for b, *_ in chunk]]
            if grad:  # keep one chunk's activations: recompute them in the backward pass
                x0_k, eps_k = checkpoint(self.prior.predict, patches, t_chunk, use_reentrant=False)
            else:
                x0_k, eps_k = self.prior.predict(patches, t_chunk)
            w = windows[[k for _, k, _, _ in chunk]]
            x0_k, eps_k = x0_k * w, eps_k * w
            for n, (b, _, i, j) in enumerate(chunk):
                x0[b, :, i:i + th, j:j + tw] += x0_k[n]
                eps[b, :, i:i + th, j:j + tw] += eps_k[n]
        return x0 * norm, eps * norm

    def _progress(self, chunks: list) -> list | Iterator:
        show = self.progress if self.progress is not None else len(chunks) > 8
        if not show:
            return chunks
        from tqdm.auto import tqdm

        # disable=None: tqdm stays silent when stderr is not a terminal (logs, CI).
        return tqdm(chunks, desc="tiles", unit="chunk", leave=False,
                    disable=None if self.progress is None else False)
