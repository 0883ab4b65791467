"""The loader protocol every backend implements, and the epoch bookkeeping they share.

A loader yields the batches (avloc.data.batch) of one rank's epoch. The torch, folder and
DALI loaders subclass ``Loader``; what they have in common (epoch, position, resume point,
counters) is one ``EpochPosition`` they hold, so a backend writes only how it reads:

    len(loader)                batches this rank yields per epoch
    iter(loader)               the epoch's batches from the current position
    loader.set_epoch(e)        go to the start of epoch e (its order depends on seed, epoch, rank only)
    loader.state_dict()        {"backend", "epoch", "batches_done", "seed", "rank", "world_size"}
                               (a backend may add keys, e.g. DALI's reader checkpoint)
    loader.load_state_dict(s)  the next iteration continues epoch s["epoch"] at batch s["batches_done"]
    loader.backend             "torch" | "folder" | "dali"
    loader.options             the LoaderOptions it was built with
    loader.num_samples         samples in the split (after those left out when opening)
    loader.samples_read        samples this loader has yielded so far
    loader.skipped             bad samples left out so far (when opening and while reading)
    loader.skipped_this_epoch  bad samples left out while reading the current epoch
"""

from __future__ import annotations

import abc
from typing import Iterator, Optional

from avloc.data.options import LoaderOptions


class EpochPosition:
    """Where a loader stands: epoch, batches done, the state to resume from, and the counts."""

    def __init__(self):
        self.epoch = 0
        self.batches_done = 0
        self.resumed_state: Optional[dict] = None  # what the current iteration resumed from
        self._pending: Optional[dict] = None  # a loaded state, taken by the next iteration
        self.samples_read = 0
        self.skipped_reading = 0
        self.skipped_this_epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.batches_done = 0
        self._pending = None

    def load(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.batches_done = int(state["batches_done"])
        self._pending = dict(state)

    def begin(self) -> int:
        """Start an iteration; returns the first batch (not 0 once after a loaded state)."""
        self.resumed_state, self._pending = self._pending, None
        self.batches_done = int(self.resumed_state["batches_done"]) if self.resumed_state else 0
        if self.batches_done == 0:
            self.skipped_this_epoch = 0
        return self.batches_done

    def count(self, samples: int, skipped: int = 0) -> None:
        """One batch of ``samples`` was yielded; ``skipped`` bad samples were left out of it."""
        self.batches_done += 1
        self.samples_read += samples
        self.skipped_reading += skipped
        self.skipped_this_epoch += skipped


class Loader(abc.ABC):
    """The loader protocol (see the module docstring); subclasses implement how a rank's epoch is read."""

    backend = "?"

    def __init__(self, options: LoaderOptions):
        import torch

        self.options = options
        self.device = torch.device(options.device)
        self.position = EpochPosition()

    @property
    @abc.abstractmethod
    def num_samples(self) -> int:
        ...

    @abc.abstractmethod
    def __len__(self) -> int:
        ...

    @abc.abstractmethod
    def __iter__(self) -> Iterator[dict]:
        ...

    @property
    def skipped_at_open(self) -> int:
        """Bad samples left out before reading (found from the index or the listing)."""
        return 0

    @property
    def skipped(self) -> int:
        return self.skipped_at_open + self.position.skipped_reading

    @property
    def skipped_this_epoch(self) -> int:
        return self.position.skipped_this_epoch

    @property
    def samples_read(self) -> int:
        return self.position.samples_read

    @property
    def epoch(self) -> int:
        return self.position.epoch

    @property
    def batches_done(self) -> int:
        return self.position.batches_done

    def set_epoch(self, epoch: int) -> None:
        self.position.set_epoch(epoch)

    def state_dict(self) -> dict:
        o = self.options
        return {"backend": self.backend, "epoch": self.position.epoch, "batches_done": self.position.batches_done,
                "seed": o.seed, "rank": o.rank, "world_size": o.world_size}

    def load_state_dict(self, state: dict) -> None:
        self.position.load(state)


class ShardLoader(Loader):
    """A loader over a ShardSet (torch and DALI): its size and epoch length come from the shards."""

    def __init__(self, shards, options):
        super().__init__(options)
        self.shards = shards

    @property
    def num_samples(self) -> int:
        return self.shards.num_samples

    @property
    def skipped_at_open(self) -> int:
        return self.shards.skipped_at_open

    def __len__(self) -> int:
        from avloc.data.shards import rank_plan

        return rank_plan(self.shards, self.options, self.epoch).num_batches
