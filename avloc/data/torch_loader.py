"""The shard loader for machines without DALI: reading, PIL/torch decoding and augmentation in
DataLoader worker processes.

Per rank the read plan is the one of avloc.data.shards (same shards, same contiguous sample
range as DALI). Inside a rank the sample order (buffered shuffle in train mode) is computed from
the index, then cut into batches; worker w of W builds batches w, w+W, w+2W, ... Each worker
reads only the samples of its own batches, at the byte ranges the shard's DALI index gives (one
pread per sample; each member's tar header is checked against the index), and decodes them.
Streaming every tar through a tar reader in each worker, as before, made W workers read and parse
the whole epoch W times (benchmarks/results/loaders-cpu-cost.md). The DataLoader takes batches
from workers in turn, so the batch order is the same for any number of workers, and a resumed run
can start at any batch without reading the ones before it.
"""
from __future__ import annotations

import collections
import io
import os
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from avloc import schema
from avloc.data import augment, device_decode
from avloc.data.batch import make_batch, parse_meta
from avloc.data.frame_limits import check_pil_frame_size, frame_size_problem
from avloc.data.frame_scale import crop_only, jpeg_size
from avloc.data.loader import ShardLoader
from avloc.data.options import LoaderOptions
from avloc.data.shards import buffered_shuffle, rank_plan, rank_samples
from avloc.data.workers import stream_batches, worker_options


def decode_jpeg_tensor(data: bytes) -> torch.Tensor:
    """JPEG bytes -> uint8 [3, H, W] RGB through torchvision's libjpeg-turbo (faster than PIL's open +
    decode + array copy, benchmarks/results/loaders-cpu-cost.md); ValueError when the JPEG is bad."""
    from torchvision.io import ImageReadMode, decode_jpeg

    try:
        return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError as exc:
        raise ValueError(f"cannot decode the JPEG: {exc}") from None


def decode_pixels(jpeg: bytes, aug, options: LoaderOptions) -> torch.Tensor:
    """The frame's pixels as the model sees them, uint8 [3, S, S], not yet normalised: train mode crops
    (and flips) a frame stored at the training scale, resizes any other (augment.train_pixels); eval
    mode resizes to exactly size x size. Workers ship uint8 (a quarter of float32's bytes through shared
    memory) and the batch is normalised where it lands (workers.stream_batches)."""
    from PIL import Image

    size = options.image_size
    if aug is not None:
        dims = jpeg_size(jpeg)
        if dims is not None and crop_only(min(dims), size):
            problem = frame_size_problem(dims[1], dims[0])
            if problem:
                raise ValueError(problem)
            return augment.train_crop_pixels(decode_jpeg_tensor(jpeg), aug, size)
    img = Image.open(io.BytesIO(jpeg))
    check_pil_frame_size(img)  # header only: nothing is decoded above the limit
    img.load()
    pixels = augment.train_pixels(img, aug, size) if aug is not None else augment.eval_pixels(img, size)
    return augment.pil_pixels(pixels)


def decode_sample(members: dict, aug, options: LoaderOptions):
    """Raw members -> (image uint8 [3,S,S], spec [1,257,T], label, bbox). Raises ValueError/OSError when bad.
    With ``image_decode="device"`` the image stays encoded (avloc.data.device_decode decodes the batch)."""
    jpeg = members[schema.EXT_FRAME]
    if options.image_decode == "device":
        dims = jpeg_size(jpeg)
        problem = frame_size_problem(dims[1], dims[0]) if dims else None
        if problem:
            raise ValueError(problem)
        image = device_decode.encoded_frame(jpeg)
    else:
        image = decode_pixels(jpeg, aug, options)
    spec = augment.spec_tensor(schema.decode_spec(members[schema.EXT_SPEC]), aug, options.mask_fill)
    label, bbox = parse_meta(members[schema.EXT_META])
    return image, spec, label, bbox


# the members a training sample needs (a kept audio window stored between them is read with the span, not used)
READ_EXTS = (schema.EXT_FRAME, schema.EXT_SPEC, schema.EXT_META)
TAR_BLOCK = 512  # a USTAR member header; the shard writer's names fit one block, right before the data


def member_problem(block: bytes, key: str, ext: str) -> Optional[str]:
    """Why the tar header before a member's data does not look like that member's (None when it does)."""
    if len(block) < TAR_BLOCK or block[257:262] != b"ustar":
        return f"the tar header of its {ext} member is damaged (no USTAR header where the index puts it)"
    name = block[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
    if not key.startswith("#") and name != f"{key}.{ext}":  # '#n': a v1.1 index names no members
        return f"the tar header of its {ext} member names {name[:60]!r}, not {key}.{ext} (damaged tar or index)"
    return None


def read_members(fd: int, key: str, offsets, sizes) -> dict:
    """{ext: bytes} of one sample, read with one pread from its first member's header to its last
    member's end (the members are stored one after another); each member's tar header is checked
    against the index. Raises ValueError when the bytes are not there or not what the index says."""
    first = min(int(o) for o in offsets) - TAR_BLOCK
    last = max(int(o) + int(n) for o, n in zip(offsets, sizes))
    if first < 0:
        raise ValueError(f"the index puts a member at byte {first + TAR_BLOCK}, inside the first tar header")
    span = os.pread(fd, last - first, first)
    if len(span) < last - first:
        raise ValueError(f"the tar ends at byte {first + len(span)}, before the sample's end at byte {last} "
                         "(truncated tar)")
    members = {}
    for ext, off, size in zip(READ_EXTS, offsets, sizes):
        at = int(off) - first
        problem = member_problem(span[at - TAR_BLOCK:at], key, ext)
        if problem:
            raise ValueError(problem)
        members[ext] = span[at:at + int(size)]
    return members


MAX_OPEN_TARS = 64  # per worker: a worker's batches reach every shard of the epoch, the fd limit is often 1024


class OpenFiles:
    """Read-only descriptors of the tars a worker reads, the least recently used closed beyond ``limit``."""

    def __init__(self, limit: int):
        self.limit = limit
        self._fds: collections.OrderedDict = collections.OrderedDict()

    def get(self, key, path: str) -> int:
        if key in self._fds:
            self._fds.move_to_end(key)
            return self._fds[key]
        fd = os.open(path, os.O_RDONLY)
        self._fds[key] = fd
        while len(self._fds) > self.limit:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.popitem()[1])


class EpochBatches(IterableDataset):
    """One rank's epoch as batches (picklable: lists, numpy arrays, numbers and the options).

    Each worker reads only the samples of its own batches, straight from the byte ranges the shard
    indexes give (one pread per sample, every member's tar header checked), so W workers read the
    epoch once between them, not W times as streaming every tar in each worker would."""

    def __init__(self, *, tars: list, keys: list, shard_of, offsets, sizes, order: list, num_batches: int,
                 start_batch: int, epoch: int, options: LoaderOptions):
        self.tars = tars  # shard index -> tar path (str)
        self.keys = keys  # stream position -> sample key
        self.shard_of = shard_of  # stream position -> shard index (int32 array)
        self.offsets = offsets  # stream position -> data offset of each READ_EXTS member (int64 [N, 3])
        self.sizes = sizes  # the members' sizes (int64 [N, 3])
        self.order = order  # stream positions in yield order
        self.batch_size = options.batch_size
        self.num_batches = num_batches
        self.start_batch = start_batch
        self.epoch = epoch
        self.options = options

    def _owned_batches(self) -> list:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return [b for b in range(self.start_batch, self.num_batches) if (b - self.start_batch) % workers == worker]

    def _read_batch(self, b: int, fds: OpenFiles) -> dict:
        """slot -> {ext: bytes}, or the error text of a sample that cannot be read."""
        positions = self.order[b * self.batch_size:(b + 1) * self.batch_size]
        slots = {}
        # in stored order: forward reads through each tar
        for slot, pos in sorted(enumerate(positions), key=lambda sp: (int(self.shard_of[sp[1]]),
                                                                       int(self.offsets[sp[1], 0]))):
            si, key = int(self.shard_of[pos]), self.keys[pos]
            tar = self.tars[si]
            try:
                slots[slot] = read_members(fds.get(si, tar), key, self.offsets[pos], self.sizes[pos])
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                slots[slot] = f"bad sample {key!r} in shard {tar}: {reason}"
        return slots

    def __iter__(self):
        fds = OpenFiles(MAX_OPEN_TARS)
        try:
            for b in self._owned_batches():
                yield self._build(b, self._read_batch(b, fds))
        finally:
            fds.close()

    def _build(self, b: int, slots: dict) -> dict:
        o = self.options
        rng = augment.batch_rng(o.seed, self.epoch, o.rank, b) if o.train else None
        images, specs, keys, labels, bboxes, augs, skipped = [], [], [], [], [], [], 0
        for slot in range(len(slots)):
            aug = augment.draw_augment(rng) if rng is not None else None
            members = slots[slot]
            pos = self.order[b * self.batch_size + slot]
            key = self.keys[pos]
            if isinstance(members, str):
                error = members
            else:
                try:
                    image, spec, label, bbox = decode_sample(members, aug, o)
                    error = None
                except Exception as exc:  # PIL, json and shape errors all mean: this sample is bad
                    error = f"bad sample {key!r} in shard {self.tars[int(self.shard_of[pos])]}: {type(exc).__name__}: {exc}"
            if error is not None:
                if o.bad_sample == "error":
                    return {"_error": error.replace("\n", " ")}
                skipped += 1
                continue
            images.append(image)
            augs.append(aug)
            specs.append(spec)
            keys.append(key)
            labels.append(label)
            bboxes.append(bbox)
        if o.image_decode == "device":
            batch = device_decode.pending_batch(images, augs, specs, keys, labels, bboxes)
        else:
            batch = make_batch(images, specs, keys, labels, bboxes)
        batch["_skipped"] = skipped
        batch["_index"] = b
        return batch


class TorchShardLoader(ShardLoader):
    backend = "torch"

    def __init__(self, shards, options):
        # imported here, once, so that forked workers inherit it: importing torchvision.io takes ~1 s,
        # which each epoch's workers would otherwise pay before their first batch
        import torchvision.io  # noqa: F401

        super().__init__(shards, options)

    def epoch_dataset(self, start_batch: int) -> EpochBatches:
        o = self.options
        plan = rank_plan(self.shards, o, self.epoch)
        picked = rank_samples(self.shards, plan)
        if o.train:
            rng = np.random.default_rng([o.seed, self.epoch, o.rank, 7])
            order = buffered_shuffle(len(picked), o.shuffle_buffer, rng)
        else:
            order = list(range(len(picked)))
        # every sample here passed the shard set's checks, so it has each READ_EXTS member
        spans = np.array([[s.members[ext] for ext in READ_EXTS] for _, _, s in picked], dtype=np.int64).reshape(-1, 3, 2)
        return EpochBatches(tars=[str(s.tar) for s in self.shards.shards], keys=[s.key for _, _, s in picked],
                            shard_of=np.array([si for si, _, _ in picked], dtype=np.int32),
                            offsets=np.ascontiguousarray(spans[:, :, 0]), sizes=np.ascontiguousarray(spans[:, :, 1]),
                            order=order, num_batches=plan.num_batches, start_batch=start_batch, epoch=self.epoch,
                            options=o)

    def __iter__(self):
        start = self.position.begin()
        dataset = self.epoch_dataset(start)
        workers = max(0, min(self.options.num_workers, dataset.num_batches - start))
        batches = DataLoader(dataset, batch_size=None, pin_memory=self.device.type == "cuda",
                             persistent_workers=False, **worker_options(workers))
        if self.options.image_decode == "device":
            batches = device_decode.decoded_batches(batches, self.options)
        yield from stream_batches(batches, self)
