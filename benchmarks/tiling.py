r"""Tiled against whole: the same restoration with the prior on tiles and on the whole image.

For each image (a ``--side`` centre crop of a bundled photo, or a held-out crop resized to it) and
each task, ``nested_inverse.restore`` runs twice with the same seed, method and budget: ``tile=0``
(the UNet on the whole image) and ``tile=--tile`` (:class:`~nested_inverse.priors.TiledPrior`:
``--tile`` tiles, overlap ``tile // 4``; at 256 px the default rule's tiles of 64). Reported: the
PSNR of each against the clean image and their difference, and a seam measure. The seam measure
is the gradient energy ``g = (∂x x̂)² + (∂y x̂)²`` (forward differences, channel mean) of the
restoration averaged over the pixels of the tiles' blend zones (rows or columns that two tiles
share) divided by its average over the other pixels (tile interiors): a seam would raise the
tiled run's ratio above the whole run's, which has no tiles and gives the ratio the image
content alone produces at those pixels. ``edge`` is the same ratio on the one-pixel lines where a
tile starts or ends (where a cut without blending would be).

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python benchmarks/tiling.py --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import operators
from nested_inverse import metrics
from nested_inverse.imageio import bundled_image, heldout_image
from nested_inverse.priors.tiled import tile_starts
from nested_inverse.restore import restore


def clean_image(name: str, side: int) -> torch.Tensor:
    """``[1, 3, side, side]`` in [0, 1]: a centre crop of a bundled image, or a held-out crop
    (``heldout:NAME``, 128 px) resized bicubically when ``side`` differs."""
    if name.startswith("heldout:"):
        x = heldout_image(name.split(":", 1)[1])
        if x.shape[-1] != side:
            x = F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False,
                              antialias=True).clamp(0, 1)
        return x
    return bundled_image(name, side)


def zone_masks(side: int, tile: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(blend, edge)`` boolean ``[side, side]`` masks: pixels in rows or columns two tiles share,
    and pixels on the first or last row/column of a tile that is not on the image border."""
    overlap = tile // 4
    starts = tile_starts(side, tile, overlap)
    band = torch.zeros(side, dtype=torch.bool)
    line = torch.zeros(side, dtype=torch.bool)
    for a, b in zip(starts, starts[1:]):
        band[b:a + tile] = True
        line[b] = line[a + tile - 1] = True
    blend = band[:, None] | band[None, :]
    edge = line[:, None] | line[None, :]
    return blend, edge


def energy_ratio(x: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean gradient energy of ``x: [1, C, H, W]`` on ``mask`` over its mean off ``mask``."""
    gx = (x[..., :-1, 1:] - x[..., :-1, :-1]) ** 2
    gy = (x[..., 1:, :-1] - x[..., :-1, :-1]) ** 2
    g = (gx + gy).mean(dim=(0, 1))
    m = mask[:-1, :-1]
    return float(g[m].mean() / g[~m].mean())


def one(name: str, task: str, args: argparse.Namespace) -> dict:
    x = clean_image(name, args.side)
    op = operators.make(task, image_shape=(3, args.side, args.side))
    y = op(x)
    blend, edge = zone_masks(args.side, args.tile)
    row = {"image": name, "task": task}
    for mode, tile in (("whole", 0), ("tiled", args.tile)):
        start = time.perf_counter()
        out = restore(y, op, seed=args.seed, budget_nfe=args.budget, tile=tile, progress=False)
        row[f"{mode}_s"] = time.perf_counter() - start
        out = out.reshape(x.shape)
        row[f"{mode}_psnr"] = float(metrics.psnr(out, x))
        row[f"{mode}_blend"] = energy_ratio(out, blend)
        row[f"{mode}_edge"] = energy_ratio(out, edge)
    row["clean_blend"] = energy_ratio(x, blend)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", default="astronaut,coffee,chelsea,heldout:coffee-wood")
    p.add_argument("--tasks", default="sr4,inpaint-box")
    p.add_argument("--side", type=int, default=256)
    p.add_argument("--tile", type=int, default=64)
    p.add_argument("--budget", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.images.split(","):
        for task in args.tasks.split(","):
            rows.append(one(name, task, args))
            print(rows[-1], flush=True)
    print(f"\nbundled prior, ddrm, {args.budget} NFE (auto split), seed {args.seed}, {args.side}×{args.side}, "
          f"tile {args.tile} / overlap {args.tile // 4}, {args.threads} thread(s)\n")
    print("| image | task | PSNR whole | PSNR tiled | Δ (dB) | blend/interior whole | tiled | edge/interior whole | tiled | clean blend/interior | s whole | s tiled |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['image']} | {r['task']} | {r['whole_psnr']:.2f} | {r['tiled_psnr']:.2f} | "
              f"{r['tiled_psnr'] - r['whole_psnr']:+.2f} | {r['whole_blend']:.3f} | {r['tiled_blend']:.3f} | "
              f"{r['whole_edge']:.3f} | {r['tiled_edge']:.3f} | {r['clean_blend']:.3f} | "
              f"{r['whole_s']:.0f} | {r['tiled_s']:.0f} |")
    deltas = [r["tiled_psnr"] - r["whole_psnr"] for r in rows]
    ratio = [r["tiled_blend"] / r["whole_blend"] for r in rows]
    print(f"\nmean Δ PSNR {statistics.mean(deltas):+.3f} dB (max |Δ| {max(map(abs, deltas)):.3f}); "
          f"mean tiled/whole blend-zone energy ratio {statistics.mean(ratio):.3f}")


if __name__ == "__main__":
    main()
