r"""Training data for :func:`~.training.train_prior`: random augmented patches of a folder of images.

A patch ``[B, C, p, p]`` in [0, 1] is drawn by choosing an image uniformly, a crop side
``round(p/scale)`` uniformly among the ``scales`` that fit it, a uniform position, resizing the crop
to ``p`` (bilinear, antialiased), then a random horizontal flip, a 90° rotation, optionally a channel
permutation and, with probability ``grayscale_prob``, conversion to gray (ITU-R BT.601 luma).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["PatchSampler", "find_images", "load_training_images", "luma"]


def find_images(folder: Path) -> list[Path]:
    """The image files under ``folder`` (recursive, by Pillow's extensions), skipping hidden paths."""
    from PIL import Image

    exts = {e.lower() for e in Image.registered_extensions()}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in exts
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def load_training_images(folder: Path, patch_size: int) -> tuple[list[Tensor], list[Path], bool]:
    """The readable images of ``folder`` (recursive) as uint8 ``[C, H, W]``, C = 1 or 3."""
    from ..imageio import load_image

    files = find_images(folder)
    images, used, colour, too_small = [], [], False, []
    for path in files:
        try:
            x = load_image(path, mode=None)[0]
        except (ValueError, OSError) as err:
            warnings.warn(f"skipping unreadable image {path}: {err}", stacklevel=3)
            continue
        if min(x.shape[-2:]) < patch_size:
            too_small.append(f"{path.name} ({x.shape[-2]}×{x.shape[-1]})")
            continue
        colour |= x.shape[0] == 3 and not bool((x[0] == x[1]).all() and (x[1] == x[2]).all())
        images.append((x * 255).round().to(torch.uint8))
        used.append(path)
    if not images:
        if too_small:
            raise ValueError(
                f"`patch_size`={patch_size} is larger than every image in {folder} "
                f"({', '.join(too_small[:5])}{' …' if len(too_small) > 5 else ''}); use a smaller "
                "--patch-size"
            )
        raise ValueError(
            f"`images_dir`={str(folder)!r} holds no readable images (searched recursively for "
            f"{len(files)} image files with Pillow-readable extensions: .png, .jpg, .tif, …)"
        )
    if too_small:
        warnings.warn(
            f"skipping {len(too_small)} images smaller than `patch_size`={patch_size}: "
            f"{', '.join(too_small[:5])}{' …' if len(too_small) > 5 else ''}",
            stacklevel=3,
        )
    return images, used, colour


class PatchSampler:
    """Random ``[B, C, p, p]`` patches in [0, 1]: image uniformly, scale uniformly among those that
    fit (a crop of side ``round(p/scale)`` resized to ``p``), then random flips, 90° rotations,
    optional channel permutation and occasional grayscale.

    Args:
        images: uint8 ``[C, H, W]`` with C = 1 or 3 (converted to ``channels``: gray is repeated,
            colour goes to luma).
        patch_size: ``p``; scales: crop scales in (0, 1]; channels: 1 or 3.
        channel_permute: shuffle R, G, B per patch (3 channels only).
        grayscale_prob: probability of turning a patch gray (3 channels only).

    >>> images = [torch.randint(0, 256, (3, 40, 30), dtype=torch.uint8)]
    >>> sampler = PatchSampler(images, 16, 1, (1.0, 0.5), channel_permute=False, grayscale_prob=0.0)
    >>> sampler(4, torch.Generator().manual_seed(0)).shape
    torch.Size([4, 1, 16, 16])
    """

    def __init__(self, images: list[Tensor], patch_size: int, channels: int, scales: Sequence[float],
                 channel_permute: bool, grayscale_prob: float) -> None:
        # luma wants a batch dimension: without [None] a colour image became [1, 1, H, W], its crops empty.
        self.images = [im if im.shape[0] == channels else
                       im.expand(3, -1, -1) if channels == 3 else
                       luma(im.float()[None])[0].round().to(torch.uint8)
                       for im in images]
        self.p = patch_size
        self.channels = channels
        self.sides = sorted({max(patch_size, round(patch_size / s)) for s in scales})
        self.channel_permute = channel_permute and channels == 3
        self.grayscale_prob = grayscale_prob if channels == 3 else 0.0

    def __call__(self, batch: int, g: torch.Generator) -> Tensor:
        p = self.p
        by_side: dict[int, list[Tensor]] = {}
        for _ in range(batch):
            im = self.images[int(torch.randint(len(self.images), (), generator=g))]
            H, W = im.shape[-2:]
            fits = [k for k in self.sides if k <= min(H, W)]
            k = fits[int(torch.randint(len(fits), (), generator=g))]
            top = int(torch.randint(H - k + 1, (), generator=g))
            left = int(torch.randint(W - k + 1, (), generator=g))
            by_side.setdefault(k, []).append(im[:, top : top + k, left : left + k])
        parts = []
        for k, crops in by_side.items():
            x = torch.stack(crops).float() / 255
            if k != p:
                x = F.interpolate(x, size=(p, p), mode="bilinear", antialias=True, align_corners=False)
            parts.append(x)
        x = torch.cat(parts)[torch.randperm(batch, generator=g)]
        out = []
        for xi in x:
            if bool(torch.rand((), generator=g) < 0.5):
                xi = xi.flip(-1)
            xi = torch.rot90(xi, int(torch.randint(4, (), generator=g)), dims=(-2, -1))
            if self.channel_permute:
                xi = xi[torch.randperm(3, generator=g)]
            if self.grayscale_prob and bool(torch.rand((), generator=g) < self.grayscale_prob):
                xi = luma(xi[None])[0].expand(3, -1, -1)
            out.append(xi)
        return torch.stack(out).clamp(0, 1)


def luma(x: Tensor) -> Tensor:
    """``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601) of ``x: [B, 3, H, W]`` → ``[B, 1, H, W]``."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(-3, keepdim=True)
