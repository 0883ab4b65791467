"""How a loader reads and augments: one frozen object, checked once by ``build_loader``.

What to read is ``build_loader``'s ``source`` and ``split``; how to read it (backend, batch,
rank, order, bad samples, workers, device) and how to augment it (frame size, SpecAugment fill)
is a ``LoaderOptions``. The choice lists live here, importable without torch.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, List, Optional

import numpy as np

from avloc import schema
from avloc.utils.options import CommandOptions, choice_problem, range_problem

BACKENDS = ("auto", "dali", "torch", "folder")
MODES = ("train", "eval")
BAD_SAMPLE_POLICIES = ("error", "skip")
# Where the torch shard loader decodes frames: "worker" (PIL in the DataLoader workers) or "device"
# (the whole batch at once with torchvision's decode_jpeg on the loader's device: nvJPEG on CUDA).
IMAGE_DECODES = ("worker", "device")
SHUFFLE_BUFFER = 1024
# What SpecAugment writes into its masks, in log-spectrogram units (before the division by 12).
# "zero" is the recipe (METHOD.md §1.2); since the log-spectrogram of audio in [-1, 1] is
# negative everywhere (about -16 to -5), a zero band is the loudest thing in the spectrogram.
# "silence" writes log(LOG_FLOOR), the value of digital silence, which is what a mask is meant
# to be; an encoder trained from scratch on the synthetic clips collapses with zero fill and
# learns with silence fill (benchmarks/results/train-quality-cpu.md).
SPEC_MASK_FILLS = {"zero": 0.0, "silence": float(np.log(schema.LOG_FLOOR))}
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


@dataclasses.dataclass(frozen=True)
class LoaderOptions(CommandOptions):
    # how to read
    backend: str = "auto"  # auto: folder for a frames/ + audio/ folder, else dali when it imports, else torch
    mode: str = "train"  # train: shuffled and augmented; eval: stored order, no augmentation
    batch_size: int = 256  # per rank
    rank: int = 0
    world_size: int = 1
    seed: int = 12345  # with the epoch and rank, fixes the order and every augmentation draw
    drop_last: Optional[bool] = None  # None: drop a partial last batch in train mode, keep it in eval mode
    shuffle_buffer: int = SHUFFLE_BUFFER  # train mode: the shuffle buffer inside a rank (shard backends)
    bad_sample: str = "error"  # error: stop, naming the sample; skip: leave it out and count it
    num_workers: int = 2  # DataLoader worker processes (torch, folder); pipeline threads (dali)
    device: Any = "cpu"  # where batches are delivered: cpu, cuda, cuda:N, or a torch.device
    image_decode: str = "worker"  # torch backend: "device" decodes each batch's JPEGs on the device (nvJPEG on CUDA)
    # how to augment (train mode)
    image_size: int = 224
    spec_mask_fill: str = "zero"  # the value SpecAugment writes: a key of SPEC_MASK_FILLS

    @property
    def train(self) -> bool:
        return self.mode == "train"

    @property
    def drops_last(self) -> bool:
        return self.train if self.drop_last is None else bool(self.drop_last)

    @property
    def mask_fill(self) -> float:
        """The SpecAugment fill value, in log-spectrogram units."""
        return SPEC_MASK_FILLS[self.spec_mask_fill]

    def augmentation(self) -> dict:
        """The augmentation settings, for run reports."""
        return {"image_size": self.image_size, "spec_mask_fill": self.spec_mask_fill}

    def problems(self) -> List[str]:
        found = (choice_problem("backend", self.backend, BACKENDS) + choice_problem("mode", self.mode, MODES)
                 + choice_problem("bad_sample", self.bad_sample, BAD_SAMPLE_POLICIES)
                 + choice_problem("spec_mask_fill", self.spec_mask_fill, SPEC_MASK_FILLS)
                 + choice_problem("image_decode", self.image_decode, IMAGE_DECODES))
        if self.image_decode == "device" and self.backend in ("dali", "folder"):
            found.append(f"image_decode='device' is an option of the torch shard loader, not of backend {self.backend!r}")
        for name in ("batch_size", "world_size", "image_size", "shuffle_buffer"):
            found += range_problem(name, getattr(self, name), 1)
        found += range_problem("num_workers", self.num_workers, 0) + range_problem("seed", self.seed, 0)
        if self.world_size >= 1 and not 0 <= self.rank < self.world_size:
            found.append(f"rank {self.rank} is outside world_size {self.world_size}")
        if not _DEVICE.fullmatch(str(self.device)):
            found.append(f"device must be cpu, cuda or cuda:N; got {self.device!r}")
        return found
