"""Restore (or only degrade) a folder of clean images: seeded, batched, resumable, shardable.

- ``files.py``: finding images, the mixed-size policy, atomic and undoable writes;
- ``processes.py``: this process's rank among those of a launcher (``accelerate launch``);
- ``records.py``: the configuration pin, ``metrics.csv`` and :class:`Summary`;
- ``runner.py``: :func:`run_dataset` and :func:`degrade_dataset`.
"""

from ..errors import UsageError
from ..sampling import SamplerConfig
from ..tasks import Task, parse_key_values, resolve_task
from .files import (IMAGE_SUFFIXES, Outputs, check_writable, discover_images, load_clean,
                    operator_images, output_names, prepare_clean, remove_empty)
from .processes import Processes, launcher_processes
from .records import METRIC_COLUMNS, Summary
from .runner import check_result, degrade_dataset, run_dataset

__all__ = ["IMAGE_SUFFIXES", "METRIC_COLUMNS", "Outputs", "Processes", "SamplerConfig", "Summary",
           "Task", "UsageError", "check_result", "check_writable", "degrade_dataset",
           "discover_images", "launcher_processes", "load_clean",
           "operator_images", "output_names", "parse_key_values", "prepare_clean", "remove_empty",
           "resolve_task", "run_dataset"]
