"""How DataLoader worker processes are started, in one place for every torch-side loader.

Workers use one intra-op thread each (the cores are theirs to share). They are forked, except
when DALI is loaded in this process: DALI pipelines own native threads that do not survive a
fork, and a forked child that garbage-collects an inherited pipeline blocks forever in its
shutdown. Then workers start from a clean "forkserver" process instead.
"""

from __future__ import annotations

import logging
import sys

import torch

log = logging.getLogger("avloc.data")


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


class WorkerLoaderState:
    """Epoch position, resume point and bad-sample counts of a loader that runs DataLoader workers.

    Shared by the torch shard loader and the folder loader: they differ in what a worker reads,
    not in how batches are counted, resumed and checked.
    """

    backend = "?"

    def _init_position(self) -> None:
        self.epoch = 0
        self.batches_done = 0
        self._resume_from = 0
        self.skipped_this_epoch = 0
        self._skipped_runtime = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.batches_done = self._resume_from = 0

    def state_dict(self) -> dict:
        return {"backend": self.backend, "epoch": self.epoch, "batches_done": self.batches_done, "seed": self.seed,
                "rank": self.rank, "world_size": self.world_size}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.batches_done = self._resume_from = int(state["batches_done"])

    def _take_resume_point(self) -> int:
        start, self._resume_from = self._resume_from, 0
        return start

    def _stream(self, loader, start: int):
        """Yield the worker batches on the device, counting position and skipped samples."""
        from avloc.data.batch import to_device
        from avloc.errors import InputError

        self.batches_done = start
        if start == 0:
            self.skipped_this_epoch = 0
        for batch in loader:
            if "_error" in batch:
                raise InputError(batch["_error"])
            skipped = batch.pop("_skipped")
            batch.pop("_index", None)
            self.skipped_this_epoch += skipped
            self._skipped_runtime += skipped
            self.batches_done += 1
            yield to_device(batch, self.device)
        if self.skipped_this_epoch:
            log.warning("epoch %d: skipped %d bad sample(s) on rank %d", self.epoch, self.skipped_this_epoch, self.rank)
