"""DataLoader workers for the torch-side loaders: how they start, and how their batches are counted.

Workers use one intra-op thread each (the cores are theirs to share). They are forked, unless a
forked child could hang in what it inherits (DALI loaded, or PyAV used, in this process:
avloc.utils.processes). Then they start from a clean "forkserver" process, which imports torch
and the loaders' modules once, so that each epoch's workers fork with them loaded instead of
importing them again (measured: first batch 7 s instead of 12-15 s on a loaded 2-core machine).
torchvision.io (the torch shard loader's JPEG decoder) is among them: importing it takes ~1 s, which
every epoch's workers would otherwise pay before their first batch.
"""

from __future__ import annotations

import multiprocessing
from typing import Iterator

import torch

from avloc.data.augment import normalise
from avloc.data.batch import to_device
from avloc.errors import InputError
from avloc.utils.processes import worker_start_method
from avloc.utils.progress import warn


# what a DataLoader worker needs before it can build a batch (set before the forkserver starts;
# once it runs, later calls change nothing)
FORKSERVER_PRELOAD = ("torch", "torchvision.io", "avloc.data.torch_loader", "avloc.data.folder")


def init_worker(_worker_id: int) -> None:
    torch.set_num_threads(1)


def worker_options(num_workers: int) -> dict:
    """DataLoader keyword arguments for ``num_workers`` worker processes (none when 0)."""
    if num_workers <= 0:
        return {"num_workers": 0}
    options = {"num_workers": num_workers, "worker_init_fn": init_worker, "prefetch_factor": 2}
    method = worker_start_method()
    if method != "fork":
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(list(FORKSERVER_PRELOAD))
        options["multiprocessing_context"] = context
    return options


def stream_batches(batches, loader) -> Iterator[dict]:
    """The batches workers built (with ``_skipped``, maybe ``_error``), on the loader's device,
    counted in its position. A worker reports a bad sample as the batch's ``_error``. uint8 images
    (the torch shard loader's) are normalised here, on the device: a quarter of the bytes cross from
    the workers (and to a GPU), and the float batch is made once, where it is used."""
    position = loader.position
    for batch in batches:
        if "_error" in batch:
            raise InputError(batch["_error"])
        skipped = batch.pop("_skipped")
        batch.pop("_index", None)
        position.count(len(batch["key"]), skipped)
        batch = to_device(batch, loader.device)
        if batch["image"].dtype == torch.uint8:
            batch["image"] = normalise(batch["image"])
        yield batch
    if position.skipped_this_epoch:
        warn(f"epoch {position.epoch}: skipped {position.skipped_this_epoch} bad sample(s) on rank "
             f"{loader.options.rank}")
