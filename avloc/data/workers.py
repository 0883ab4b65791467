"""How DataLoader worker processes are started, in one place for every torch-side loader.

Workers use one intra-op thread each (the cores are theirs to share). They are forked, except
when DALI is loaded in this process: DALI pipelines own native threads that do not survive a
fork, and a forked child that garbage-collects an inherited pipeline blocks forever in its
shutdown. Then workers start from a clean "forkserver" process instead.
"""

from __future__ import annotations

import sys

import torch


def init_worker(_worker_id: int) -> None:
    torch.set_num_threads(1)


def worker_options(num_workers: int) -> dict:
    """DataLoader keyword arguments for ``num_workers`` worker processes (none when 0)."""
    if num_workers <= 0:
        return {"num_workers": 0}
    options = {"num_workers": num_workers, "worker_init_fn": init_worker, "prefetch_factor": 2}
    if "nvidia.dali" in sys.modules:
        options["multiprocessing_context"] = "forkserver"
    return options
