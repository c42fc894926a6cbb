"""Where this process stands among the processes of a launch (``accelerate launch``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import UsageError

__all__ = ["Processes", "launcher_processes", "share_cores"]


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


def _cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def share_cores(processes: Processes, threads: int | None = None) -> int | None:
    """Set torch's CPU threads for this process: ``threads`` when given, else, with several
    processes on this machine, ``max(1, cores // processes)``; returns what was set (None: left).

    Processes that each start one thread per core wait on each other: on a busy 2-core machine
    one evaluation took 4.9 s with two threads and 0.58 s with one (issue 21).
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise UsageError(f"`threads`={threads!r} must be an integer >= 1")
    else:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "") or processes.world)
        if local <= 1:
            return None
        threads = max(1, _cores() // local)
    torch.set_num_threads(threads)
    return threads
