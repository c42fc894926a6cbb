"""Seeded noise that follows the caller's generators, one per image where asked."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["Generators", "randn", "split_generators"]

Generators = torch.Generator | Sequence[torch.Generator] | None


def randn(
    shape: Sequence[int],
    generator: Generators = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Standard normal noise of ``shape`` ``[B, ...]``.

    ``generator`` is ``None``, one ``torch.Generator`` for the whole batch, or a sequence of ``B``
    generators, one per image, so that an image's noise does not depend on which other images share
    its batch. Noise is drawn on each generator's device, then moved to ``device``.
    """
    shape = tuple(int(s) for s in shape)
    if generator is None or isinstance(generator, torch.Generator):
        gen_device = generator.device if generator is not None else device
        return torch.randn(shape, generator=generator, dtype=dtype, device=gen_device).to(device)
    generator = list(generator)
    if len(generator) != shape[0]:
        raise ValueError(
            f"`generator` is a list of {len(generator)} generators but the batch has {shape[0]} "
            "items; pass one generator per item, a single generator, or None"
        )
    return torch.cat(
        [torch.randn((1, *shape[1:]), generator=g, dtype=dtype, device=g.device).to(device)
         for g in generator]
    )


def split_generators(generator: Generators, index: Sequence[int] | slice) -> Generators:
    """The generators of a sub-batch (``None`` and a single generator pass through)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    generator = list(generator)
    return generator[index] if isinstance(index, slice) else [generator[i] for i in index]
