"""Which timesteps a sampler evaluates the network at."""

from __future__ import annotations

import torch

__all__ = ["spaced_timesteps"]


def spaced_timesteps(t_start: int, steps: int, t_end: int = 1) -> list[int]:
    """``steps`` integer timesteps spread evenly over ``[t_start, t_end]``, largest first.

    Rounded and de-duplicated, so fewer come back when the interval holds fewer integers
    (``spaced_timesteps(3, 10) == [3, 2, 1]``); ``t_start = 0`` gives ``[0]``. A request beyond
    the interval's ``t_start − t_end + 1`` integers costs what the whole interval costs: no grid of
    the requested size is built (``--budget 100000000`` once built a 25-million-entry list).

    Example:
        >>> spaced_timesteps(999, 4)
        [999, 666, 334, 1]
    """
    if steps < 1:
        raise ValueError(f"`steps` must be >= 1, got {steps}")
    if t_start < 0:
        raise ValueError(f"`t_start` must be >= 0, got {t_start}")
    t_end = min(t_end, t_start)
    # With at least one point per integer every integer is within half a spacing of a point, so
    # the rounded grid is the whole interval: the same list as from any larger request.
    steps = min(steps, t_start - t_end + 1)
    grid = torch.linspace(t_start, t_end, steps, dtype=torch.float64).round().long().tolist()
    return list(dict.fromkeys(grid))
