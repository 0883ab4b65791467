"""How this process may start worker processes (DataLoader workers, shard workers), decided in one place.

Forking is the cheapest start, but a forked child inherits the parent's native threads in whatever
state they were, and two kinds hang it: DALI pipelines (a child that garbage-collects an inherited
pipeline blocks forever in its shutdown) and FFmpeg's threads once this process has decoded with
PyAV (seen with PyAV 19: every forked worker hung in its first frame conversion). After either,
workers start from a clean forkserver ("spawn" where there is none).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from typing import Optional

_PYAV_USED_IN_PID: Optional[int] = None


def mark_pyav_used() -> None:
    """Record that this process has opened media with PyAV (its children do not inherit the mark)."""
    global _PYAV_USED_IN_PID
    _PYAV_USED_IN_PID = os.getpid()


def pyav_used_in_this_process() -> bool:
    return _PYAV_USED_IN_PID == os.getpid()


def worker_start_method() -> str:
    """"fork" unless DALI is loaded or PyAV has decoded in this process; then "forkserver" (or "spawn")."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and "nvidia.dali" not in sys.modules and not pyav_used_in_this_process():
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"
