r"""The memory plan of a run: its peak estimated before any large allocation, against what is free.

    peak ≈ images + network,   images = COPIES · B·C·H·W · 4 bytes,
    network = per_pixel · (pixels of one network call),   per_pixel = K · Σ_l c_l·(n+1)/4^l

with ``c_l`` a diffusers UNet's ``block_out_channels``, ``n`` its ``layers_per_block`` (the skip
activations each level keeps, at a quarter of the pixels per level), ``K`` = 19 bytes without a
gradient and 95 with one (ΠGDM, DPS, DAPS, PSLD backpropagate through the network), and a call's
pixels ``tile_batch·tile²`` on a :class:`~nested_inverse.priors.TiledPrior`, ``B·H·W`` otherwise.

Calibration (bundled prior, ``Σ = 324``; peak resident set above the base during the first
evaluation, ``VmHWM`` reset through ``/proc/self/clear_refs``, one CPU thread, 2026-12-04):
4.9 kB per pixel without a gradient (batch 16 × 64², 304 MiB; whole 512², 1033 MiB; whole 1024²,
4040 MiB: ``python benchmarks/size.py``) and 23.7–24.8 kB per pixel with one (16 × 64², 1483 MiB;
4 × 128², 1547 MiB), i.e. ``K`` = 15 and 76; the constants above carry a 25 % margin. ``COPIES``
= 16 image-sized float32 tensors covers what solvers, the problem and the tiled blend hold
(x_t, x̂0, ε̂, A†y, noise, the blend's two accumulators, float64 temporaries). Attention layers are
not counted: PyTorch's fused attention does not hold the token×token matrix. Other priors
(Gaussian mixtures, a user's network) count as 4 image copies per call.

What is free is the least of ``MemAvailable`` (``/proc/meminfo``), the address-space limit
(``RLIMIT_AS`` less the process's ``VmSize``) and the cgroup's ``memory.max`` less
``memory.current``; on CUDA, ``torch.cuda.mem_get_info``. A plan uses at most
:data:`SAFETY` of it.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import UsageError
from .priors import LatentPrior, TiledPrior
from .priors.protocol import wrapped_priors

__all__ = ["COPIES", "GRADIENT_METHODS", "SAFETY", "InsufficientMemory", "MemoryPlan", "free_memory",
           "network_bytes", "plan_memory"]

#: image-sized float32 tensors a run holds at once (module docstring)
COPIES = 16
#: share of the free memory a plan may fill
SAFETY = 0.8
#: solvers that backpropagate through the network
GRADIENT_METHODS = frozenset({"pigdm", "dps", "daps", "psld", "latent-dps"})
_K_NO_GRAD, _K_GRAD = 19, 95

_GIB = 2 ** 30


class InsufficientMemory(UsageError):
    """The run would need more memory than is free; the message says how much, and the ways out."""


@dataclass(frozen=True)
class MemoryPlan:
    """A run's estimated peak (bytes) by part, the free memory it was compared with, and the tile
    batch chosen (None when the prior is not tiled)."""

    estimate_bytes: int
    free_bytes: int | None
    limit: str
    tile_batch: int | None
    parts: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        free = "unknown" if self.free_bytes is None else f"{self.free_bytes / _GIB:.2f} GiB"
        parts = ", ".join(f"{k} {v / _GIB:.2f}" for k, v in self.parts.items())
        return (f"estimated peak {self.estimate_bytes / _GIB:.2f} GiB ({parts}); free {free} "
                f"({self.limit})" + ("" if self.tile_batch is None else f"; {self.tile_batch} tiles per call"))


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _status_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def free_memory(device: torch.device | str = "cpu") -> tuple[int | None, str]:
    """``(bytes, which limit)``: the least of the limits that apply (module docstring); ``(None,
    "unknown")`` when none can be read (an MPS device, a system without ``/proc``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0]), f"{device} free"
    if device.type != "cpu":
        return None, "unknown"
    found: list[tuple[int, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable"))
    except OSError:
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        found.append((max(0, soft - (_status_bytes("VmSize") or 0)), "RLIMIT_AS"))
    for limit, current in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                           ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                            "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        cap, used = _read_int(limit), _read_int(current)
        if cap is not None and used is not None and cap < 2 ** 60:  # v1 "unlimited" is ~2^63
            found.append((max(0, cap - used), "cgroup memory limit"))
    return min(found) if found else (None, "unknown")


def _per_pixel(prior: Any, grad: bool) -> float:
    """Bytes per pixel of one network call (module docstring); looks through wrappers' ``.prior``."""
    for p in wrapped_priors(prior):
        config = getattr(getattr(p, "unet", None), "config", None)
        if config is not None and "block_out_channels" in config:
            layers = int(config.get("layers_per_block", 2) or 2)
            total = sum(c * (layers + 1) / 4 ** level
                        for level, c in enumerate(config["block_out_channels"]))
            return (_K_GRAD if grad else _K_NO_GRAD) * total
    return 4 * 3 * 4.0  # a generic prior: four float32 copies of a 3-channel input


def network_bytes(prior: Any, batch: int, height: int, width: int, *, grad: bool) -> int:
    """Activations of one ``prior.predict`` on ``[batch, C, height, width]`` (module docstring)."""
    return int(_per_pixel(prior, grad) * batch * height * width)


def plan_memory(*, image_shape: tuple[int, int, int], batch: int, method: str, prior: Any = None,
                device: torch.device | str = "cpu", max_tile_batch: int = 64,
                free: tuple[int | None, str] | None = None) -> MemoryPlan:
    """The plan of restoring ``batch`` images ``image_shape = (C, H, W)`` with ``method``.

    ``prior=None`` counts the images alone (a check before the prior is loaded; so does a latent
    prior, whose network runs on latents a fraction of the image's size). On a
    :class:`~nested_inverse.priors.TiledPrior` the largest tile batch in ``[1, max_tile_batch]``
    (and at most the batch's tiles) that fits is chosen; otherwise the network runs on the whole
    batch. Raises :class:`InsufficientMemory` when nothing fits, naming the image size, the
    estimate, what is free and the ways out.

    >>> from nested_inverse.memory import plan_memory
    >>> from nested_inverse.priors import TiledPrior, load_prior
    >>> tiled = TiledPrior(load_prior(None))  # 64-pixel tiles
    >>> plan = plan_memory(image_shape=(3, 2048, 2048), batch=1, method="ddrm", prior=tiled,
    ...                    free=(8 * 2 ** 30, "RLIMIT_AS"))
    >>> plan.tile_batch, round(plan.estimate_bytes / 2 ** 30, 2)
    (64, 2.25)
    >>> plan_memory(image_shape=(3, 12000, 12000), batch=1, method="ddrm",
    ...             free=(8 * 2 ** 30, "RLIMIT_AS"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nested_inverse.memory.InsufficientMemory: not enough memory to restore a 12000×12000 image (144.0 megapixels): estimated peak 25.75 GiB ...
    """
    C, H, W = (int(s) for s in image_shape)
    tile = prior.tile if isinstance(prior, TiledPrior) else None
    if isinstance(prior, LatentPrior):
        prior = None
    free_bytes, limit = free_memory(device) if free is None else free
    images = COPIES * batch * C * H * W * 4
    grad = method in GRADIENT_METHODS
    usable = None if free_bytes is None else int(SAFETY * free_bytes)

    def plan(tile_batch: int | None) -> MemoryPlan:
        parts = {"images": images}
        if prior is not None:
            parts["network"] = (network_bytes(prior, batch, H, W, grad=grad) if tile_batch is None
                                else network_bytes(prior, tile_batch, tile, tile, grad=grad))
        return MemoryPlan(sum(parts.values()), free_bytes, limit, tile_batch, parts)

    if tile is None or prior is None:
        result = plan(None)
    else:
        tiles = batch * prior.num_tiles(H, W)
        top = max(1, min(max_tile_batch, tiles))
        if usable is not None:
            # the largest batch of tiles that fits, by halving from the top
            tb = top
            while tb > 1 and plan(tb).estimate_bytes > usable:
                tb //= 2
            result = plan(tb)
        else:
            result = plan(min(16, top))
    if usable is not None and result.estimate_bytes > usable:
        raise InsufficientMemory(_refusal(result, C, H, W, batch, tile, device))
    return result


def _refusal(plan: MemoryPlan, C: int, H: int, W: int, batch: int, tile: int | None,
             device: torch.device | str) -> str:
    ways = ["downscale it (`max_side`, e.g. --max-side 2048)"]
    if batch > 1:
        ways.append("restore fewer images at once")
    if tile is None and "network" in plan.parts:
        ways.append("run the prior on tiles (`tile`)")
    if torch.device(device).type == "cpu":
        ways.append("use a device with more memory (`device`)")
    return (f"not enough memory to restore a {W}×{H} image ({W * H / 1e6:.1f} megapixels"
            f"{'' if batch == 1 else f', {batch} at once'}): {plan.describe()}; at most "
            f"{SAFETY:.0%} of the free memory is used. Ways out: " + "; ".join(ways))
