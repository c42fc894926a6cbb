r"""Image I/O and conversions: files, PIL, numpy and tensors ↔ ``[B, C, H, W]`` float in [0, 1].

Public images are in [0, 1]; inside the library they live in the model range [-1, 1]:
``x_model = 2·x01 − 1`` (:func:`to_model_range`) and back ``x01 = (x_model + 1)/2``
(:func:`from_model_range`).

>>> x = bundled_image("astronaut", size=64)
>>> x.shape, x.dtype
(torch.Size([1, 3, 64, 64]), torch.float32)
>>> bool(from_model_range(to_model_range(x)).sub(x).abs().max() < 1e-6)
True
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .paths import images_dir

__all__ = [
    "ImageTooLarge",
    "atomic_write",
    "bundled_image",
    "bundled_image_names",
    "center_crop",
    "crop_to_multiple",
    "from_model_range",
    "from_tensor",
    "heldout_image",
    "heldout_image_names",
    "load_image",
    "save_image",
    "to_model_range",
    "to_tensor",
]

_MODES = ("RGB", "L")


def load_image(path: str | os.PathLike[str], mode: str | None = "RGB") -> Tensor:
    """Read an image file as ``[1, C, H, W]`` float32 in [0, 1].

    Args:
        path: any format Pillow reads (PNG, JPEG, TIFF, …); EXIF orientation is applied; 16-bit
            images are scaled by 1/65535.
        mode: ``"RGB"`` (C = 3), ``"L"`` (grayscale, C = 1), or None to keep the file's channels
            (grayscale → 1, colour → 3; alpha is dropped).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a readable image, or ``mode`` is not accepted;
            :class:`ImageTooLarge` (a ValueError) when it has more pixels than Pillow's
            decompression-bomb limit ``PIL.Image.MAX_IMAGE_PIXELS``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if mode not in (*_MODES, None):
        raise ValueError(f"`mode`={mode!r} is not accepted; use 'RGB', 'L' or None")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"`path`={str(path)!r}: no such file")
    if p.is_dir():
        raise ValueError(f"`path`={str(path)!r} is a folder; expected an image file")
    try:
        with _open(p, path) as img:
            img = ImageOps.exif_transpose(img)
            img.load()
            x = to_tensor(img)
    except ImageTooLarge:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"`path`={str(path)!r} is not a readable image: {err}") from err
    return _to_mode(x, mode)


class ImageTooLarge(ValueError):
    """An image file beyond Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``);
    the message names the file, its pixels, the limit and what to do."""


def _open(p: Path, path: str | os.PathLike[str]) -> Any:
    """``PIL.Image.open(p)``, refusing a file of more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels
    (Pillow warns above it and raises above twice it, in words about attacks) with
    :class:`ImageTooLarge`. ``MAX_IMAGE_PIXELS = None`` lifts the limit, as it does for Pillow."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(p)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        # Pillow says the pixel count only in its message: "Image size (N pixels) exceeds ..."
        found = re.search(r"\((\d+) pixels\)", str(err))
        n = int(found.group(1)) if found else None
        size = "larger than the limit" if n is None else f"{n} pixels ({n / 1e6:.1f} megapixels)"
        limit = Image.MAX_IMAGE_PIXELS
        raise ImageTooLarge(
            f"`path`={str(path)!r} is {size}, beyond Pillow's decompression-bomb limit of "
            f"{limit} pixels ({limit / 1e6:.1f} megapixels, PIL.Image.MAX_IMAGE_PIXELS): downscale it "
            "first (restorations of a few megapixels are what fits in memory; e.g. 4096 pixels on "
            "the longer side), or, for a file you trust, raise PIL.Image.MAX_IMAGE_PIXELS") from None


def _to_mode(x: Tensor, mode: str | None) -> Tensor:
    if mode == "RGB" and x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1).contiguous()
    if mode == "L" and x.shape[1] == 3:
        # ITU-R 601 luma, as Pillow's convert("L").
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)
    return x


def save_image(x: Any, path: str | os.PathLike[str]) -> Path:
    """Write ``x`` (``[C, H, W]`` or ``[1, C, H, W]`` in [0, 1], C = 1 or 3; or PIL / numpy) to ``path``.

    Values are clamped to [0, 1] and rounded to 8 bits. The format follows the suffix (PNG when
    there is none or it is unknown). The file is written to a temporary name beside ``path`` and
    moved into place with ``os.replace``, so a reader never sees a half-written image. Missing
    parent folders are created. Returns the path written.
    """
    from PIL import Image

    t = x if isinstance(x, Tensor) else to_tensor(x)
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] not in (1, 3):
        raise ValueError(
            f"`x` must be [C, H, W] or [1, C, H, W] with C = 1 or 3, got shape {tuple(t.shape)}"
        )
    arr = (t[0].detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    arr = arr.permute(1, 2, 0).numpy()
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    buffer = io.BytesIO()
    img.save(buffer, format=Image.registered_extensions().get(Path(path).suffix.lower(), "PNG"))
    return atomic_write(path, buffer.getvalue())


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    A reader never sees a half-written file, and an interrupted write leaves none behind. The file
    gets the usual permissions (``0666`` less the umask), not ``mkstemp``'s private ``0600``.
    Missing parent folders are created.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


def to_tensor(img: Any, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """Any image → ``[B, C, H, W]`` float in [0, 1].

    Accepts a PIL image (L, RGB, RGBA/P/CMYK → RGB, 16-bit → /65535); a numpy array ``[H, W]``,
    ``[H, W, C]`` or ``[N, H, W, C]`` (C = 1, 3 or 4; alpha dropped), uint8 (/255), uint16
    (/65535), bool or float (taken as [0, 1]); or a tensor ``[H, W]``, ``[C, H, W]`` or
    ``[B, C, H, W]`` (uint8 /255, float kept on its device). Float tensors keep their dtype;
    everything else becomes ``dtype``. Convert back to the input's kind with :func:`from_tensor`.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(img, Image.Image):
        if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
            arr = np.asarray(img).astype(np.float32) / 65535.0
        elif img.mode in ("I", "F"):
            arr = np.asarray(img).astype(np.float32)
            if img.mode == "I":
                arr = arr / (65535.0 if arr.max() > 255 else 255.0)
        elif img.mode in ("L", "RGB"):
            arr = np.asarray(img)
        elif img.mode in ("1", "LA"):
            arr = np.asarray(img.convert("L"))
        else:
            arr = np.asarray(img.convert("RGB"))
        return to_tensor(arr, dtype=dtype)
    if isinstance(img, np.ndarray):
        arr = img
        if arr.ndim == 2:
            arr = arr[None, :, :, None]
        elif arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"numpy image of shape {img.shape} not understood; expected [H, W], [H, W, C] or "
                "[N, H, W, C] with C = 1, 3 or 4 (numpy images are channels-last)"
            )
        arr = np.ascontiguousarray(arr[..., :3])
        # torch warns on (and must never write into) read-only arrays such as np.asarray(PIL image).
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy()).permute(0, 3, 1, 2)
        return _scale(t, img.dtype, dtype)
    if isinstance(img, Tensor):
        t = img
        if t.dim() == 2:
            t = t[None, None]
        elif t.dim() == 3:
            t = t[None]
        if t.dim() != 4:
            raise ValueError(
                f"tensor image of shape {tuple(img.shape)} not understood; expected [H, W], "
                "[C, H, W] or [B, C, H, W]"
            )
        return _scale(t, img.dtype, img.dtype if img.is_floating_point() else dtype)
    raise ValueError(
        f"image of type {type(img).__name__} not understood; expected a PIL image, a numpy array "
        "or a torch tensor"
    )


def _scale(t: Tensor, src: Any, dtype: torch.dtype) -> Tensor:
    name = str(src).replace("torch.", "")
    if name == "uint8":
        return t.to(dtype) / 255.0
    if name == "uint16":
        return t.to(torch.float32).to(dtype) / 65535.0
    if name == "bool":
        return t.to(dtype)
    if t.is_floating_point():
        return t.to(dtype)
    raise ValueError(f"image dtype {name} not understood; expected uint8, uint16, bool or float")


def from_tensor(x: Tensor, like: Any = None) -> Any:
    """``[B, C, H, W]`` in [0, 1] → the kind of ``like`` (the object once given to :func:`to_tensor`).

    - PIL image → PIL image (L for C = 1, else RGB; a list when B > 1);
    - numpy → an array with ``like``'s layout and dtype (uint8 rounded, floats clamped to [0, 1]);
    - tensor → a tensor with ``like``'s layout, dtype and device;
    - None → ``x`` itself.
    """
    if like is None:
        return x
    x = x.detach() if not isinstance(like, Tensor) else x
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None  # type: ignore[assignment]
    if Image is not None and isinstance(like, Image.Image):
        arr = from_tensor(x, np.zeros((x.shape[0], 1, 1, 3), dtype=np.uint8))
        imgs = [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]
        return imgs[0] if len(imgs) == 1 else imgs
    if isinstance(like, np.ndarray):
        arr = x.float().cpu().clamp(0, 1).permute(0, 2, 3, 1).numpy()
        if like.dtype == np.uint8:
            arr = np.round(arr * 255).astype(np.uint8)
        elif like.dtype == np.uint16:
            arr = np.round(arr * 65535).astype(np.uint16)
        elif np.issubdtype(like.dtype, np.floating):
            arr = arr.astype(like.dtype)
        if like.ndim == 2:
            return arr[0, :, :, 0] if arr.shape[0] == 1 and arr.shape[-1] == 1 else arr
        if like.ndim == 3:
            return arr[0] if arr.shape[0] == 1 else arr
        return arr
    if isinstance(like, Tensor):
        t = x.to(like.device)
        if like.dtype == torch.uint8:
            t = (t.clamp(0, 1) * 255).round().to(torch.uint8)
        elif like.is_floating_point():
            t = t.to(like.dtype)
        if like.dim() == 2 and t.shape[0] == 1 and t.shape[1] == 1:
            return t[0, 0]
        if like.dim() == 3 and t.shape[0] == 1:
            return t[0]
        return t
    raise ValueError(f"`like` of type {type(like).__name__} not understood; expected PIL, numpy or tensor")


def to_model_range(x01: Tensor) -> Tensor:
    """``2·x − 1``: [0, 1] → the model range [-1, 1]."""
    return x01 * 2 - 1


def from_model_range(x: Tensor) -> Tensor:
    """``(x + 1)/2``: the model range [-1, 1] → [0, 1] (not clamped)."""
    return (x + 1) / 2


def _hw(size: int | tuple[int, int] | list[int], name: str = "size") -> tuple[int, int]:
    if isinstance(size, int):
        h = w = size
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        h, w = int(size[0]), int(size[1])
    else:
        raise ValueError(f"`{name}`={size!r} not understood; expected an int or (height, width)")
    if h < 1 or w < 1:
        raise ValueError(f"`{name}`={size!r} must be positive")
    return h, w


def center_crop(x: Tensor, size: int | tuple[int, int]) -> Tensor:
    """The central ``[..., h, w]`` window of ``x: [..., H, W]`` (``size`` an int for a square)."""
    h, w = _hw(size)
    H, W = x.shape[-2:]
    if h > H or w > W:
        raise ValueError(f"`size`={size!r} is larger than the image ({H}×{W})")
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top : top + h, left : left + w]


def crop_to_multiple(x: Tensor, m: int) -> Tensor:
    """Centre-crop ``x: [..., H, W]`` to ``[..., m·⌊H/m⌋, m·⌊W/m⌋]``."""
    if int(m) < 1:
        raise ValueError(f"`m`={m!r} must be a positive integer")
    H, W = x.shape[-2:]
    if H < m or W < m:
        raise ValueError(f"image ({H}×{W}) is smaller than `m`={m}")
    return center_crop(x, (H - H % m, W - W % m))


def bundled_image_names() -> list[str]:
    """Names of the bundled held-out test images (``data/images/*.png``), sorted."""
    return sorted(p.stem for p in images_dir().glob("*.png"))


def bundled_image(name: str, size: int | tuple[int, int] | None = None) -> Tensor:
    """A bundled held-out image (``astronaut``, ``coffee``, ``chelsea``) as ``[1, 3, h, w]`` in [0, 1],
    centre-cropped to ``size`` when given. The default prior never saw these images in training.
    """
    names = bundled_image_names()
    if name not in names:
        raise ValueError(f"`name`={name!r} is not a bundled image; available: {', '.join(names)}")
    x = load_image(images_dir() / f"{name}.png")
    return x if size is None else center_crop(x, size).contiguous()


def heldout_image_names() -> list[str]:
    """Names of the held-out crops (``data/images/heldout/*.png``, 128×128 RGB), sorted.

    >>> names = heldout_image_names()
    >>> len(names) >= 12, names[0]
    (True, 'astronaut-face')
    """
    return sorted(p.stem for p in (images_dir() / "heldout").glob("*.png"))


def heldout_image(name: str, size: int | tuple[int, int] | None = None) -> Tensor:
    """A held-out crop (see :func:`heldout_image_names`) as ``[1, 3, h, w]`` in [0, 1],
    centre-cropped to ``size`` when given.

    The crops are 128×128 regions of astronaut, coffee and chelsea away from their centre 128×128
    windows; the default prior never saw these images in training. Boxes and licences are in
    ``data/images/heldout/README.md``.

    >>> heldout_image("chelsea-eye").shape
    torch.Size([1, 3, 128, 128])
    >>> heldout_image("coffee-spoon", size=64).shape
    torch.Size([1, 3, 64, 64])
    """
    names = heldout_image_names()
    if name not in names:
        raise ValueError(f"`name`={name!r} is not a held-out image; available: {', '.join(names)}")
    x = load_image(images_dir() / "heldout" / f"{name}.png")
    return x if size is None else center_crop(x, size).contiguous()
