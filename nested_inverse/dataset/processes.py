"""Where this process stands among the processes of a launch (``accelerate launch``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import UsageError

__all__ = ["Processes", "launcher_processes"]


@dataclass
class Processes:
    """This process's place among the processes of a launch (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None
    device: torch.device | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0


def launcher_processes() -> Processes:
    """Rank, world size and a barrier from Hugging Face Accelerate when started by a launcher
    (``WORLD_SIZE`` > 1); a single process otherwise. Accelerate is imported only in the first case,
    so it stays an optional dependency."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return Processes()
    try:
        from accelerate import PartialState
    except ImportError as err:
        raise UsageError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} says this is one of several processes, "
                         "but accelerate is not installed; pip install 'nested-inverse[distributed]'") from err
    state = PartialState()
    return Processes(state.process_index, state.num_processes, state.wait_for_everyone, state.device)
