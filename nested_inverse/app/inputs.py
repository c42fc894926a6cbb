"""What a page visitor hands in, checked: an image file, a bundled image, a mask file or a painted mask.

Every reader returns tensors on the library's public conventions (images ``[1, 3, H, W]`` float32 in
[0, 1], masks ``[H, W]`` bool with True = observed) or raises
:class:`~nested_inverse.errors.UsageError` naming the page field, the value and what is accepted,
so the page can show the message instead of a traceback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UsageError
from ..imageio import bundled_image_names, heldout_image_names, images_dir, load_image, to_tensor

__all__ = ["MAX_FILE_BYTES", "MAX_PIXELS", "Source", "editor_composite", "editor_image",
           "named_images", "painted_mask", "read_image", "read_mask", "read_named"]

#: Largest upload read (bytes); Gradio refuses larger files before they reach us, this catches the
#: rest (files given by path, tests).
MAX_FILE_BYTES = 20 * 1024 * 1024
#: Largest image decoded (pixels, about 4096 × 4096): anything bigger is refused before decoding.
MAX_PIXELS = 4096 * 4096


@dataclass
class Source:
    """The image a run starts from.

    Attributes:
        name: a file name (``coffee.png``): shown in the record and used for the per-image seeds,
            as the command line uses the input's file name.
        image: ``[1, 3, H, W]`` in [0, 1] (the clean image, or the observation when it is already
            degraded).
        mask: ``[H, W]`` bool, True = observed (inpainting with a given mask), else None.
        mask_name: where the mask came from (a file name or ``"painted"``), for the record.
    """

    name: str
    image: Tensor
    mask: Tensor | None = None
    mask_name: str | None = None


def named_images() -> list[str]:
    """The images the page offers by name: bundled photos (``coffee``) and held-out crops
    (``heldout/coffee-spoon``)."""
    return bundled_image_names() + [f"heldout/{n}" for n in heldout_image_names()]


def read_named(name: str) -> Source:
    """A bundled or held-out image by its name in :func:`named_images`."""
    if name not in named_images():
        raise UsageError(f"`example`={name!r} is not a bundled image; choose one of: "
                         f"{', '.join(named_images())}")
    path = images_dir() / f"{name}.png"
    return Source(Path(name).name + ".png", load_image(path, mode="RGB"))


def _checked_file(path: Any, field: str) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
        raise UsageError(f"`{field}`: no file was received ({path!r}); upload a PNG, JPEG or TIFF "
                         "image")
    p = Path(path)
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise UsageError(f"`{field}` {p.name!r} is {size / 2**20:.1f} MiB; files up to "
                         f"{MAX_FILE_BYTES // 2**20} MiB are accepted")
    return p


def _decoded(p: Path, field: str, mode: str) -> Tensor:
    """Decode ``p`` after checking its pixel count from the header alone (no decompression bomb)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as img:
            w, h = img.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise UsageError(f"`{field}` {p.name!r} is not an image: {_reason(err, p)}; upload a "
                         "PNG, JPEG or TIFF image") from err
    if w * h > MAX_PIXELS:
        raise UsageError(f"`{field}` {p.name!r} is {w}×{h} pixels; images up to {MAX_PIXELS} "
                         "pixels (4096×4096) are accepted")
    try:
        return load_image(p, mode=mode)
    except ValueError as err:
        raise UsageError(f"`{field}` {p.name!r} is not a readable image: {_reason(err, p)}; "
                         "upload a PNG, JPEG or TIFF image") from err


def _reason(err: BaseException, p: Path) -> str:
    """The decoder's reason, once, without the server's temporary path (``load_image`` wraps
    PIL's error in a message naming the path: the wrapped error is the reason)."""
    if isinstance(err.__cause__, (OSError, SyntaxError, ValueError)):
        err = err.__cause__
    text = " ".join(str(err).split()).replace(str(p), p.name)
    return text.replace(f"image file {p.name!r}", "the file")


def read_image(path: Any, name: str | None = None) -> Source:
    """An uploaded image file as a :class:`Source` (RGB; ``name`` defaults to the file's name)."""
    p = _checked_file(path, "image")
    return Source(name or p.name, _decoded(p, "image", "RGB"))


def read_mask(path: Any, image: Tensor) -> Tensor:
    """An uploaded mask file (white = observed, black = missing, as ``restore --mask``) for
    ``image: [1, C, H, W]``; it must have the image's size."""
    p = _checked_file(path, "mask")
    m = _decoded(p, "mask", "L")[0, 0] > 0.5
    _same_size(m, image, f"`mask` {p.name!r}")
    return m


def painted_mask(layers: list[Any] | None, image: Tensor) -> Tensor | None:
    """The mask painted in the browser: every pixel any layer covers (alpha > 0) is missing.

    ``layers`` are the image editor's layers (``[H, W, 4]`` RGBA arrays or PIL images); None when
    nothing was painted.
    """
    painted = None
    for layer in layers or ():
        arr = np.asarray(layer)
        if arr.ndim != 3 or arr.shape[-1] != 4:
            raise UsageError(f"`mask`: a painted layer of shape {arr.shape} is not an RGBA image")
        covered = torch.from_numpy(np.ascontiguousarray(arr[..., 3] > 0))
        painted = covered if painted is None else painted | covered
    if painted is None or not bool(painted.any()):
        return None
    _same_size(painted, image, "the painted `mask`")
    return ~painted


def _same_size(mask: Tensor, image: Tensor, what: str) -> None:
    (h, w), (H, W) = mask.shape, image.shape[-2:]
    if (h, w) != (H, W):
        raise UsageError(f"{what} is {w}×{h} pixels but the image is {W}×{H}; give a mask of the "
                         "image's size")


def editor_image(value: Any) -> Tensor | None:
    """The background of an image-editor value (``{"background", "layers", "composite"}``) as
    ``[1, 3, H, W]`` in [0, 1], or None when it holds no image."""
    if not isinstance(value, dict) or value.get("background") is None:
        return None
    return _rgb(value["background"])


def editor_composite(value: Any) -> Tensor | None:
    """What the editor shows, painting included, as ``[1, 3, H, W]`` in [0, 1] (None if empty)."""
    if not isinstance(value, dict) or value.get("composite") is None:
        return None
    return _rgb(value["composite"])


def _rgb(image: Any) -> Tensor:
    x = to_tensor(np.asarray(image))
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x[:, :3].contiguous()
