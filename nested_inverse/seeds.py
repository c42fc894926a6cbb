r"""The seeding rule: one integer per image, three generators from it.

Every front door (``restore()``, ``nested-inverse restore``, ``nested-inverse run``, the page)
follows one rule, so the same image, settings and seed give the same bytes through each:

1. **An image's seed** is ``seed + i``, where ``i`` is the image's index in what it came with:
   its position in the batch passed to :func:`~nested_inverse.restore`, in the ``IMAGE`` arguments
   of ``nested-inverse restore``, or in ``run``'s sorted file list (before ``limit`` and before
   sharding across processes); the page restores one image (``i = 0``). So image ``k`` of
   ``run --seed S`` is restored exactly as ``restore --seed S+k`` restores that image alone, and a
   result never depends on the batch an image lands in or on the number of processes.
2. **Its generators** are CPU ``torch.Generator``\s seeded with ``sha256(image seed, purpose, j)``
   for the purposes ``operator`` (random masks and kernels), ``noise`` (the observation noise when
   an image is degraded) and ``sample`` (restoration ``j``: 0 for the run, 1, 2 … for extra
   samples). Noise is drawn on the CPU and moved to the device, so a seed gives the same noise on
   every device (as diffusers' ``randn_tensor`` with a CPU generator).

``sha256`` rather than ``hash()``: Python salts ``hash`` per process.

Example:
    >>> s = ImageSeeds(3)
    >>> s.seed_for("sample") == ImageSeeds(3).seed_for("sample") != s.seed_for("noise")
    True
    >>> [t.seed for t in image_seeds(10, 2)]
    [10, 11]
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["PURPOSES", "ImageSeeds", "check_seed", "image_seeds"]

#: What each of an image's generators draws.
PURPOSES = ("operator", "noise", "sample")


def check_seed(seed: Any, name: str = "seed") -> int:
    """``seed`` as an int; refuses floats (``1.5`` would silently lose its fraction), bools,
    text and negative numbers, naming ``name``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"`{name}`={seed!r} must be an integer >= 0")
    return int(seed)


@dataclass(frozen=True)
class ImageSeeds:
    """The seeds of one image under the rule above.

    Attributes:
        seed: the image's seed (the run's seed plus the image's index).
    """

    seed: int

    def __post_init__(self) -> None:
        check_seed(self.seed)

    def seed_for(self, purpose: str, j: int = 0) -> int:
        """The 63-bit seed of generator ``purpose`` (``j``: which sample)."""
        if purpose not in PURPOSES:
            raise ValueError(f"`purpose`={purpose!r} is not one of {', '.join(PURPOSES)}")
        digest = hashlib.sha256(f"{self.seed}\0{purpose}\0{int(j)}".encode()).digest()
        return int.from_bytes(digest[:8], "little") >> 1

    def generator(self, purpose: str, j: int = 0) -> torch.Generator:
        """A CPU generator for ``purpose`` (noise is moved to the device after it is drawn)."""
        return torch.Generator("cpu").manual_seed(self.seed_for(purpose, j))

    def describe(self, samples: int | None = None) -> dict[str, Any]:
        """What a run record notes: the image seed and its generators' seeds (``sample``, or with
        ``samples`` the list of the first ``samples`` restorations' as ``samples``)."""
        out: dict[str, Any] = {"image": self.seed, "operator": self.seed_for("operator"),
                               "noise": self.seed_for("noise")}
        if samples is None:
            out["sample"] = self.seed_for("sample")
        else:
            out["samples"] = [self.seed_for("sample", j) for j in range(samples)]
        return out


def image_seeds(seed: int, count: int, start: int = 0) -> list[ImageSeeds]:
    """The seeds of images ``start … start + count − 1`` of a collection seeded with ``seed``."""
    seed = check_seed(seed)
    return [ImageSeeds(seed + start + i) for i in range(count)]
