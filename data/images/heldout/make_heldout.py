"""Recreate the held-out crops in this folder from the sample images inside scikit-image.

    pip install scikit-image==0.26.0
    python data/images/heldout/make_heldout.py

It reads only files already on disk in the installed package (``skimage/data/*.png``), checks
each one exists and has the SHA-256 recorded below (the same bytes as ``data/images/*.png``), and
writes ``<source>-<region>.png`` (128×128 RGB) beside this script. It downloads nothing: it does
not call ``skimage.data.<name>()``, which may fetch files. Boxes are ``(x, y)`` of the top-left
corner in the source image, size 128; none overlaps the source's centre 128×128 window (the crop
``bundled_image(name, 128)`` that benchmarks use) and no two crops of one source overlap.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from PIL import Image

SIZE = 128
SKIMAGE_VERSION = "0.26.0"

# Source files and their SHA-256 (as in scikit-image's own data registry).
SOURCES = {
    "astronaut": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "coffee": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "chelsea": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
}

# name: (source, x, y) — top-left corner of a SIZE×SIZE box.
CROPS = {
    "astronaut-face": ("astronaut", 168, 16),
    "astronaut-flag": ("astronaut", 0, 0),
    "astronaut-stripes": ("astronaut", 0, 160),
    "astronaut-shuttle": ("astronaut", 360, 40),
    "astronaut-patch": ("astronaut", 128, 330),
    "astronaut-nametag": ("astronaut", 256, 322),
    "astronaut-helmet": ("astronaut", 384, 384),
    "astronaut-sleeve": ("astronaut", 0, 330),
    "coffee-rim": ("coffee", 170, 8),
    "coffee-handle": ("coffee", 108, 200),
    "coffee-spoon": ("coffee", 300, 264),
    "coffee-wood": ("coffee", 472, 0),
    "coffee-plank": ("coffee", 0, 64),
    "chelsea-ear": ("chelsea", 0, 0),
    "chelsea-eye": ("chelsea", 290, 44),
    "chelsea-whiskers": ("chelsea", 0, 172),
}


def skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        sys.exit("scikit-image is not installed: pip install scikit-image==" + SKIMAGE_VERSION)
    return Path(spec.origin).parent / "data"


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return abs(a[0] - b[0]) < SIZE and abs(a[1] - b[1]) < SIZE


def main() -> None:
    import skimage

    if skimage.__version__ != SKIMAGE_VERSION:
        print(f"warning: scikit-image {skimage.__version__}; the boxes were chosen on "
              f"{SKIMAGE_VERSION} (the SHA-256 check below still guards the sources)")
    src_dir = skimage_data_dir()
    images = {}
    for name, digest in SOURCES.items():
        path = src_dir / f"{name}.png"
        if not path.is_file():
            sys.exit(f"{path} is missing from the installed scikit-image")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            sys.exit(f"{path} differs from the recorded SHA-256 {digest}")
        with Image.open(path) as img:
            images[name] = img.convert("RGB")
    out_dir = Path(__file__).resolve().parent
    placed: dict[str, list[tuple[int, int]]] = {}
    for crop, (source, x, y) in CROPS.items():
        img = images[source]
        W, H = img.size
        centre = ((W - SIZE) // 2, (H - SIZE) // 2)
        assert x + SIZE <= W and y + SIZE <= H, crop
        assert not _overlap((x, y), centre), f"{crop} overlaps the centre crop of {source}"
        assert not any(_overlap((x, y), p) for p in placed.get(source, [])), f"{crop} overlaps"
        placed.setdefault(source, []).append((x, y))
        img.crop((x, y, x + SIZE, y + SIZE)).save(out_dir / f"{crop}.png", optimize=True)
        print(f"{crop}.png  {source}.png  x={x} y={y} size={SIZE}")


if __name__ == "__main__":
    main()
