"""The reference loader over an EZ-VSL/FNAC-style folder: ``frames/<id>.jpg`` + ``audio/<id>.wav``.

Per sample it does what the published code does: open the frame with PIL, read the wav,
take the central 3 s window and compute the log-spectrogram on the fly; samples are items of
a map-style Dataset, collated into batches in the DataLoader workers. Unlike the published
code it does not catch a failure and return a random other sample: a bad file raises (or, with
``bad_sample="skip"``, is left out and counted). It is the benchmark baseline and lets users
train on folders they already have.

Order and rank split follow the shard loaders: ids sorted; in train mode a permutation seeded
by (seed, epoch); rank r takes the contiguous range [N*r//W, N*(r+1)//W); same remainder rules.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from avloc import schema
from avloc.data import augment
from avloc.data.batch import make_batch
from avloc.data.shards import BAD_SAMPLE_POLICIES, batches_per_epoch, rank_range
from avloc.data.workers import WorkerLoaderState, worker_options
from avloc.errors import InputError

log = logging.getLogger("avloc.data")


def load_folder_sample(frame_path: Path, audio_path: Path, aug, image_size: int, mask_fill: str = "zero"):
    from PIL import Image

    from avloc.audio import read_wav_int16_mono
    from avloc.spectrogram import fnac_spectrogram_from_samples

    with Image.open(frame_path) as img:
        img.load()
        image = augment.train_image(img, aug, image_size) if aug is not None else augment.eval_image(img, image_size)
    samples, sr = read_wav_int16_mono(audio_path)
    if sr != schema.SAMPLE_RATE:
        raise ValueError(f"audio is {sr} Hz, the recipe needs {schema.SAMPLE_RATE} Hz")
    log_spec, _, _ = fnac_spectrogram_from_samples(samples, sr)
    return image, augment.spec_tensor(log_spec, aug, mask_fill)


class FolderSamples(Dataset):
    """Map-style, one sample per item as in the published code: item p = position p of one rank's epoch."""

    def __init__(self, root: str, ids: list, order: list, *, train: bool, seed: int, epoch: int, rank: int,
                 image_size: int, bad_sample: str, spec_mask_fill: str = "zero"):
        self.root = Path(root)
        self.ids = ids
        self.order = order  # position in this rank's epoch -> index into ids
        self.train = train
        self.seed, self.epoch, self.rank = seed, epoch, rank
        self.image_size = image_size
        self.bad_sample = bad_sample
        self.spec_mask_fill = spec_mask_fill

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int) -> dict:
        key = self.ids[self.order[position]]
        aug = augment.draw_augment(augment.batch_rng(self.seed, self.epoch, self.rank, position)) if self.train else None
        try:
            image, spec = load_folder_sample(self.root / "frames" / f"{key}.jpg", self.root / "audio" / f"{key}.wav",
                                             aug, self.image_size, self.spec_mask_fill)
        except Exception as exc:  # any unreadable frame or wav is this sample's fault
            return {"_error": f"bad sample {key!r} in {self.root}: {type(exc).__name__}: {exc}".replace("\n", " ")}
        return {"image": image, "spec": spec, "key": key}


class CollateFolder:
    """Samples -> batch; a bad sample either becomes the batch's error or is dropped and counted."""

    def __init__(self, bad_sample: str):
        self.bad_sample = bad_sample

    def __call__(self, samples: list) -> dict:
        errors = [s["_error"] for s in samples if "_error" in s]
        if errors and self.bad_sample == "error":
            return {"_error": errors[0]}
        good = [s for s in samples if "_error" not in s]
        batch = make_batch([s["image"] for s in good], [s["spec"] for s in good], [s["key"] for s in good],
                           [-1] * len(good), [None] * len(good))
        batch["_skipped"] = len(errors)
        return batch


def list_folder(root: Path) -> list:
    frames = root / "frames"
    audio = root / "audio"
    if not frames.is_dir() or not audio.is_dir():
        raise InputError(f"{root} is not an EZ-VSL-style folder (needs frames/<id>.jpg and audio/<id>.wav)")
    frame_ids = {p.stem for p in frames.glob("*.jpg")}
    audio_ids = {p.stem for p in audio.glob("*.wav")}
    return sorted(frame_ids & audio_ids), sorted(frame_ids ^ audio_ids)


class FolderLoader(WorkerLoaderState):
    backend = "folder"

    def __init__(self, root, *, mode: str = "train", batch_size: int = 256, device="cpu", rank: int = 0,
                 world_size: int = 1, seed: int = 12345, image_size: int = 224, num_workers: int = 2,
                 drop_last: bool = True, bad_sample: str = "error", spec_mask_fill: str = "zero"):
        augment.mask_fill_value(spec_mask_fill)
        if bad_sample not in BAD_SAMPLE_POLICIES:
            raise InputError(f"bad_sample must be one of {BAD_SAMPLE_POLICIES}, got {bad_sample!r}")
        self.root = Path(root)
        self.ids, unpaired = list_folder(self.root)
        if unpaired:
            msg = f"{len(unpaired)} id(s) in {self.root} have a frame or a wav but not both, e.g. {unpaired[0]!r}"
            if bad_sample == "error":
                raise InputError(msg + " (use bad_sample='skip' to leave them out)")
            log.warning("%s: left out", msg)
        if not self.ids:
            raise InputError(f"{self.root} has no frames/<id>.jpg with a matching audio/<id>.wav")
        self._skipped_open = len(unpaired)
        self.mode, self.train = mode, mode == "train"
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self.seed, self.image_size, self.num_workers = seed, image_size, num_workers
        self.drop_last, self.bad_sample = drop_last, bad_sample
        self.spec_mask_fill = spec_mask_fill
        self._init_position()

    @property
    def num_samples(self) -> int:
        return len(self.ids)

    @property
    def skipped(self) -> int:
        return self._skipped_open + self._skipped_runtime

    def __len__(self) -> int:
        return batches_per_epoch(len(self.ids), self.rank, self.world_size, self.batch_size, self.drop_last)

    def epoch_order(self) -> list:
        n = len(self.ids)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.train else np.arange(n)
        start, stop = rank_range(n, self.rank, self.world_size)
        return [int(i) for i in order[start:stop]]

    def __iter__(self):
        start = self._take_resume_point()
        order = self.epoch_order()
        dataset = FolderSamples(str(self.root), self.ids, order, train=self.train, seed=self.seed, epoch=self.epoch,
                                rank=self.rank, image_size=self.image_size, bad_sample=self.bad_sample,
                                spec_mask_fill=self.spec_mask_fill)
        batches = [list(range(b * self.batch_size, min(len(order), (b + 1) * self.batch_size)))
                   for b in range(start, len(self))]
        workers = max(0, min(self.num_workers, len(batches)))
        loader = DataLoader(dataset, batch_sampler=batches, collate_fn=CollateFolder(self.bad_sample),
                            pin_memory=self.device.type == "cuda", **worker_options(workers))
        yield from self._stream(loader, start)
