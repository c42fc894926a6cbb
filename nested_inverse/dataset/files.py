"""Files of a dataset run: finding images, the mixed-size policy, and atomic, undoable writes."""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from operators import LinearOperator

from ..errors import UsageError
from ..imageio import atomic_write, center_crop, crop_to_multiple, load_image, save_image

__all__ = ["IMAGE_SUFFIXES", "Outputs", "check_writable", "discover_images", "kernel_png",
           "downscale", "load_clean", "npy_bytes", "operator_images", "output_names",
           "prepare_clean", "remove_empty"]

#: File suffixes taken as images when scanning a dataset folder (other files are ignored).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif")


def discover_images(root: str | os.PathLike[str],
                    exclude: str | os.PathLike[str] | None = None) -> list[str]:
    """Paths (relative to ``root``, ``/``-separated, sorted) of the image files under ``root``,
    recursively. Hidden files and folders, files without an image suffix and the folder
    ``exclude`` (an output folder inside the dataset) are ignored."""
    base = Path(root)
    skip = Path(exclude).resolve() if exclude is not None else None
    if not base.exists():
        raise UsageError(f"`root`={str(root)!r}: no such folder")
    if not base.is_dir():
        raise UsageError(f"`root`={str(root)!r} is a file; expected a folder of images")
    found = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (skip is None or (Path(dirpath) / d).resolve() != skip))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append((Path(dirpath) / name).relative_to(base).as_posix())
    return sorted(found)


def output_names(rels: Sequence[str]) -> dict[str, str]:
    """Output name (no suffix) per input: ``a/b.png`` → ``a/b``; ``a/b.jpg`` beside it → ``a/b.jpg``."""
    stems = [rel.rsplit(".", 1)[0] for rel in rels]
    taken = {s for s in stems if stems.count(s) > 1}
    return {rel: rel if stem in taken else stem for rel, stem in zip(rels, stems)}


def downscaled_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """``(h, w)`` with the longer side at most ``max_side``, the aspect ratio kept (rounded)."""
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def downscale(x: Tensor, max_side: int | None) -> Tensor:
    """``x: [..., H, W]`` shrunk so its longer side is at most ``max_side`` (None: unchanged),
    each output pixel the mean of the pixels it covers (``area``: no aliasing)."""
    H, W = x.shape[-2:]
    size = downscaled_size(H, W, max_side)
    if size == (H, W):
        return x
    lead = x.shape[:-2]
    out = torch.nn.functional.interpolate(x.reshape(-1, 1, H, W), size=size, mode="area")
    return out.reshape(*lead, *size).contiguous()


def prepare_clean(x: Tensor, factor: int, crop: int | None = None, name: str = "image",
                  max_side: int | None = None) -> Tensor:
    """The mixed-size policy: centre-crop ``x: [1, C, H, W]`` to ``crop × crop`` when given,
    downscale it to ``max_side`` when given (:func:`downscale`), then crop to a multiple of the
    task's ``factor``. Raises :class:`UsageError` naming ``name`` when too small."""
    H, W = x.shape[-2:]
    if crop is not None:
        if crop > H or crop > W:
            raise UsageError(f"{name}: image is {W}×{H} pixels, smaller than `center_crop` {crop}")
        x = center_crop(x, crop)
    x = downscale(x, max_side)
    factor = max(int(factor), 1)
    if x.shape[-1] < factor or x.shape[-2] < factor:
        raise UsageError(f"{name}: image is {x.shape[-1]}×{x.shape[-2]} pixels, smaller than the task "
                         f"needs (at least {factor}×{factor})")
    return crop_to_multiple(x, factor).contiguous()


class Outputs:
    """Files written for one item, removed again if the item fails before it is finished.

    Every write is atomic: a temporary file beside the target, then ``os.replace``.
    """

    def __init__(self) -> None:
        self.written: list[Path] = []

    def image(self, x01: Tensor, path: Path) -> Path:
        self.written.append(save_image(x01, path))
        return path

    def bytes(self, data: bytes, path: Path) -> Path:
        self.written.append(atomic_write(path, data))
        return path

    def json(self, obj: Any, path: Path) -> Path:
        return self.bytes((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), path)

    def discard(self) -> None:
        for p in self.written:
            p.unlink(missing_ok=True)
        self.written.clear()


def check_writable(out: str | os.PathLike[str]) -> list[Path]:
    """Create ``out`` (and missing parents) and check a file can be written there.

    Returns the folders it created, so that a caller that fails later can remove them again.
    Raises :class:`UsageError` naming ``out`` otherwise.
    """
    path = Path(out)
    created = []
    for parent in reversed([path, *path.parents]):
        if not parent.exists():
            created.append(parent)
    try:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path} is a file")
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        remove_empty(created)
        reason = err.strerror or str(err)
        raise UsageError(f"`out`={str(out)!r} cannot be written: {reason}") from err
    return created


def remove_empty(folders: Sequence[Path]) -> None:
    """Remove ``folders`` (deepest first) that are empty."""
    for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            pass


def operator_images(op: LinearOperator) -> dict[str, Any]:
    """What describes a synthesised operator besides ``y``: ``mask`` ``[B or 1, 1, H, W]`` in {0, 1}
    and ``kernel`` ``[kh, kw]`` (float64) when the operator has them."""
    found: dict[str, Any] = {}
    mask = getattr(op, "mask", None)
    if isinstance(mask, Tensor) and mask.ndim == 4:
        found["mask"] = mask[:, :1].to(torch.float32)
    kernel = getattr(op, "kernel", None)
    if isinstance(kernel, Tensor) and kernel.ndim == 2:
        found["kernel"] = kernel.detach().to(torch.float64).cpu()
    return found


def kernel_png(kernel: Tensor) -> Tensor:
    """A blur kernel scaled to [0, 1] (its maximum white) for viewing, ``[1, 1, kh, kw]``."""
    k = kernel.to(torch.float32)
    return (k / k.max().clamp_min(1e-12))[None, None]


def npy_bytes(array: Tensor) -> bytes:
    """``array`` as the bytes of a ``.npy`` file (exact values, readable with ``numpy.load``)."""
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, array.detach().cpu().numpy())
    return buf.getvalue()




def load_clean(path: Path, factor: int, crop: int | None, rel: str,
               max_side: int | None = None) -> Tensor:
    """The clean image at ``path`` as ``[1, 3, H, W]`` in [0, 1], through :func:`prepare_clean`."""
    try:
        x = load_image(path, mode="RGB")
    except ValueError as err:
        cause = " ".join(str(err.__cause__ or "").replace(str(path), "").split()).strip(" '\"")
        raise UsageError(f"not a readable image file{f' ({cause})' if cause else ''}") from err
    return prepare_clean(x, factor, crop, rel, max_side)
