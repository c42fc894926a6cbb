"""Pictures of an anytime run: the restorations after each outer step as a labelled strip and a GIF."""

from __future__ import annotations

import io
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["frames", "gif_bytes", "pick", "strip_bytes"]

_LABEL_H = 14  # pixels of the band above each frame that holds its label
_MIN_SIDE = 96  # tiny images are enlarged (nearest neighbour) so the labels fit


def pick(items: Sequence, most: int = 8) -> list:
    """At most ``most`` of ``items``, evenly spread, always keeping the first and the last."""
    if len(items) <= most:
        return list(items)
    idx = torch.linspace(0, len(items) - 1, most).round().long().tolist()
    return [items[i] for i in dict.fromkeys(idx)]


def frames(images: Sequence[Tensor], labels: Sequence[str]) -> list:
    """PIL RGB frames: each image ``[C, H, W]`` in [0, 1] under a band with its label."""
    from PIL import Image, ImageDraw

    out = []
    for x, label in zip(images, labels):
        arr = (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
        if arr.shape[0] == 1:
            arr = arr.expand(3, -1, -1)
        img = Image.fromarray(arr.permute(1, 2, 0).contiguous().numpy(), "RGB")
        scale = max(1, -(-_MIN_SIDE // min(img.size)))
        if scale > 1:
            img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
        canvas = Image.new("RGB", (img.width, img.height + _LABEL_H), "white")
        canvas.paste(img, (0, _LABEL_H))
        ImageDraw.Draw(canvas).text((2, 1), label, fill="black")
        out.append(canvas)
    return out


def strip_bytes(pictures: Sequence, gap: int = 2) -> bytes:
    """PNG bytes of ``pictures`` side by side."""
    from PIL import Image

    width = sum(p.width for p in pictures) + gap * (len(pictures) - 1)
    height = max(p.height for p in pictures)
    canvas = Image.new("RGB", (width, height), "white")
    x = 0
    for p in pictures:
        canvas.paste(p, (x, 0))
        x += p.width + gap
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def gif_bytes(pictures: Sequence, frame_ms: int = 600, last_ms: int = 2000) -> bytes:
    """Animated GIF bytes of ``pictures`` (looping; the final frame is held longer)."""
    buf = io.BytesIO()
    durations = [frame_ms] * (len(pictures) - 1) + [last_ms]
    pictures[0].save(buf, format="GIF", save_all=True, append_images=list(pictures[1:]),
                     duration=durations, loop=0)
    return buf.getvalue()
