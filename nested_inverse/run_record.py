"""The JSON record of one restoration, the same keys from every door (``restore``'s ``NAME.json``,
the page's download): what was asked, how it was seeded and sampled, what it cost and, against a
clean image, how good each outer step's result was."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from . import __version__
from .metrics import image_quality
from .sampling import SamplerConfig
from .seeds import ImageSeeds

__all__ = ["RunRecord"]


@dataclass
class RunRecord:
    """What a run was asked to do; :meth:`finish` adds what it did.

    Attributes:
        command: the door (``restore``, ``serve``).
        input: the image's path or name.
        task: ``Task.describe()`` (``task``, ``task_args``).
        mask: where an inpainting mask came from (a file name, ``painted``), else None.
        sigma_y: observation noise std on the [0, 1] scale.
        sampler: the configuration that ran (after a deadline chose its budget).
        deadline_s: the wall-clock limit, if any.
        prior: the prior as the user named it.
        device, dtype: where and in what precision it ran.
        seed, seeds: the seed given and the image's seeds (:mod:`nested_inverse.seeds`).
        degrade: the image was clean and degraded first.
        center_crop, max_side: the crop and the downscale applied to the input.
        observation_shape: ``(C, h, w)`` of ``y`` (None for generation).
        condition: what steered a latent pipeline (prompt, guidance scale …), else None.
    """

    command: str
    input: str
    task: dict[str, Any]
    mask: str | None
    sigma_y: float
    sampler: SamplerConfig
    deadline_s: float | None
    prior: str | None
    device: str
    dtype: str
    seed: int
    seeds: ImageSeeds
    degrade: bool
    center_crop: int | None
    max_side: int | None
    observation_shape: Sequence[int] | None
    condition: dict[str, Any] | None = None

    def finish(self, shown: Sequence[tuple[int, Tensor]], seconds: float,
               clean: Tensor | None = None) -> dict[str, Any]:
        """The record as JSON-ready values: ``shown`` the results after each outer step as
        ``(nfe, image [1, C, H, W] in [0, 1])``, the last the final one; with ``clean``, PSNR and
        SSIM of the final result and of every step."""
        x01 = shown[-1][1]
        record: dict[str, Any] = {
            "command": self.command, "version": __version__, "input": self.input, **self.task,
            "mask": self.mask, "sigma_y": self.sigma_y, **self.sampler.describe(),
            "deadline_s": self.deadline_s, "prior": self.prior, **(self.condition or {}),
            "device": self.device, "dtype": self.dtype, "seed": self.seed,
            "seeds": self.seeds.describe(), "degrade": self.degrade,
            "center_crop": self.center_crop, "max_side": self.max_side,
            "image_shape": list(x01.shape[1:]),
            "observation_shape": (list(self.observation_shape)
                                  if self.observation_shape is not None else None),
            "nfe": int(shown[-1][0]), "wall_time_s": round(seconds, 3),
            "intermediates": [{"nfe": int(n)} for n, _ in shown],
        }
        if clean is not None:
            clean = clean.cpu().float()
            record.update({k: v[0] for k, v in image_quality(x01, clean).items()})
            for entry, (_, img) in zip(record["intermediates"], shown):
                quality = image_quality(img, clean)
                entry.update({"psnr": quality["psnr"][0], "ssim": quality["ssim"][0]})
        return json.loads(json.dumps(record, default=str))
