"""The shard loader for machines without DALI: webdataset tar reading, PIL/torch decoding and
augmentation in DataLoader worker processes.

Per rank the read plan is the one of avloc.data.shards (same shards, same contiguous sample
range as DALI). Inside a rank the sample order (buffered shuffle in train mode) is computed from
the index, then cut into batches; worker w of W builds batches w, w+W, w+2W, ... Each worker
streams the rank's tars with webdataset's tar iterator, keeps the raw members of the samples
of its own batches and decodes only those. The DataLoader takes batches from workers in turn,
so the batch order is the same for any number of workers, and a resumed run can start at any
batch without decoding the ones before it.
"""

from __future__ import annotations

import io

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
from avloc.errors import InputError


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


class EpochBatches(IterableDataset):
    """One rank's epoch as batches (picklable: plain lists, numbers and the options)."""

    def __init__(self, *, tars: list, stream: list, order: list, member_counts: list, num_batches: int,
                 start_batch: int, epoch: int, options: LoaderOptions):
        self.tars = tars  # shard index -> tar path (str)
        self.stream = stream  # read order: [(shard index, key)]
        self.order = order  # stream positions in yield order
        self.member_counts = member_counts  # stream position -> members the sample has in the tar
        self.batch_size = options.batch_size
        self.num_batches = num_batches
        self.start_batch = start_batch
        self.epoch = epoch
        self.options = options

    def _owned_batches(self) -> list:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return [b for b in range(self.start_batch, self.num_batches) if (b - self.start_batch) % workers == worker]

    @staticmethod
    def _tar_samples(tar: str, members_of: dict):
        """(key, {ext: bytes}) for the keys of ``members_of`` (key -> member count) in one tar, in stored
        order, read with webdataset's tar reader. A sample is handed out as soon as its last member is
        read, so nothing past the last wanted sample is needed."""
        import webdataset.tariterators as wds_tar

        current, current_key = {}, None
        with open(tar, "rb") as fh:
            for item in wds_tar.tar_file_iterator(fh, select_files=lambda n: n.split(".", 1)[0] in members_of):
                key, _, ext = item["fname"].rpartition("/")[2].partition(".")
                if key != current_key:
                    current, current_key = {}, key
                current[ext] = item["data"]
                if len(current) == members_of[key]:
                    yield key, current
                    current, current_key = {}, None

    def __iter__(self):
        batches = self._owned_batches()
        if not batches:
            return
        slot_of = {}  # stream position -> (batch, slot)
        for b in batches:
            for slot, pos in enumerate(self.order[b * self.batch_size:(b + 1) * self.batch_size]):
                slot_of[pos] = (b, slot)
        by_shard = {}  # shard index -> {key: stream position}
        for pos in slot_of:
            si, key = self.stream[pos]
            by_shard.setdefault(si, {})[key] = pos
        shard_sequence = list(dict.fromkeys(si for si, _ in self.stream if si in by_shard))
        sizes = {b: len(self.order[b * self.batch_size:(b + 1) * self.batch_size]) for b in batches}
        raw = {}  # batch -> {slot: members, or an error string}
        next_i = 0

        def place(key: str, value, wanted: dict) -> None:
            b, slot = slot_of[wanted.pop(key)]
            raw.setdefault(b, {})[slot] = value

        for si in shard_sequence:
            wanted, tar = by_shard[si], self.tars[si]
            try:
                for key, members in self._tar_samples(tar, {k: self.member_counts[wanted[k]] for k in wanted}):
                    if key not in wanted:
                        continue
                    place(key, members, wanted)
                    # hand out every batch that is now complete, in order
                    while next_i < len(batches) and len(raw.get(batches[next_i], {})) == sizes[batches[next_i]]:
                        yield self._build(batches[next_i], raw.pop(batches[next_i]))
                        next_i += 1
                    if not wanted:
                        break
                reason = "not found in the tar"
            except Exception as exc:  # tarfile errors on a corrupt or truncated tar
                reason = f"the tar cannot be read past some point: {type(exc).__name__}: {exc}"
            for key in list(wanted):
                place(key, f"bad sample {key!r} in shard {tar}: {reason}", wanted)
            while next_i < len(batches) and len(raw.get(batches[next_i], {})) == sizes[batches[next_i]]:
                yield self._build(batches[next_i], raw.pop(batches[next_i]))
                next_i += 1

    def _build(self, b: int, slots: dict) -> dict:
        o = self.options
        rng = augment.batch_rng(o.seed, self.epoch, o.rank, b) if o.train else None
        images, specs, keys, labels, bboxes, augs, skipped = [], [], [], [], [], [], 0
        for slot in range(len(slots)):
            aug = augment.draw_augment(rng) if rng is not None else None
            members = slots[slot]
            si, key = self.stream[self.order[b * self.batch_size + slot]]
            if isinstance(members, str):
                error = members
            else:
                try:
                    image, spec, label, bbox = decode_sample(members, aug, o)
                    error = None
                except Exception as exc:  # PIL, json and shape errors all mean: this sample is bad
                    error = f"bad sample {key!r} in shard {self.tars[si]}: {type(exc).__name__}: {exc}"
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
        import importlib.util

        # checked here: inside the workers a missing reader would look like unreadable tars
        if importlib.util.find_spec("webdataset") is None:
            raise InputError("the torch shard loader reads tars with webdataset, which is not installed "
                             "(pip install 'webdataset>=1.0,<2')")
        # imported here, once, so that forked workers inherit them: importing torchvision.io takes ~1 s,
        # which each epoch's workers would otherwise pay before their first batch
        import torchvision.io  # noqa: F401
        import webdataset.tariterators  # noqa: F401
        super().__init__(shards, options)

    def epoch_dataset(self, start_batch: int) -> EpochBatches:
        o = self.options
        plan = rank_plan(self.shards, o, self.epoch)
        picked = rank_samples(self.shards, plan)
        stream = [(si, s.key) for si, _, s in picked]
        if o.train:
            rng = np.random.default_rng([o.seed, self.epoch, o.rank, 7])
            order = buffered_shuffle(len(stream), o.shuffle_buffer, rng)
        else:
            order = list(range(len(stream)))
        return EpochBatches(tars=[str(s.tar) for s in self.shards.shards], stream=stream, order=order,
                            member_counts=[len(s.members) for _, _, s in picked], num_batches=plan.num_batches,
                            start_batch=start_batch, epoch=self.epoch, options=o)

    def __iter__(self):
        start = self.position.begin()
        dataset = self.epoch_dataset(start)
        workers = max(0, min(self.options.num_workers, dataset.num_batches - start))
        batches = DataLoader(dataset, batch_size=None, pin_memory=self.device.type == "cuda",
                             persistent_workers=False, **worker_options(workers))
        if self.options.image_decode == "device":
            batches = device_decode.decoded_batches(batches, self.options)
        yield from stream_batches(batches, self)
