"""The DALI shard loader: builds one pipeline per epoch and turns its outputs into avloc batches.

* Read plan: avloc.data.shards.plan_epoch -- in train mode the shard files are passed to the
  reader in a (seed, epoch)-seeded order, and the reader (shard_id = rank, num_shards = world
  size, stick_to_shard) reads the same contiguous sample range as the torch loader. Pipeline
  and reader seeds are derived from (seed, epoch, rank), so ``set_epoch(e)`` gives the same
  order whatever ran before.
* Keys, labels and boxes come from each sample's ``json`` member, which the pipeline returns as
  zero-padded bytes and this wrapper parses (DALI has no JSON operator; ~10 us per sample, far
  below the decode cost, and it needs no side table that could disagree with the shard). The
  key comes from the reader's source info (``<tar>:<offset>:<key>.jpg``): what was actually read.
* Resume: the pipeline is built with ``enable_checkpointing``; ``state_dict()`` holds the
  iterator's DALI checkpoint (reader position, shuffle buffer and random generator states),
  so ``load_state_dict`` + iterating continues the epoch at the next batch, bit-identically.
* A JPEG the decoder rejects stops the pipeline. The wrapper then finds the culprit (PIL over
  this rank's samples of the epoch) and raises one line naming shard and key. DALI cannot
  drop one sample from a running batch, so with ``bad_sample="skip"`` such JPEGs are reported
  the same way, advising the torch backend; everything detectable from the index (truncated
  tar, missing members, incomplete JPEG) is skipped before the pipeline is built.
"""

from __future__ import annotations

import io
import logging
import tempfile

import numpy as np
import torch

from avloc.data import augment
from avloc.data.batch import parse_meta
from avloc.data.shards import ShardEpochPlanner, ShardSet, rank_samples
from avloc.errors import AvlocError, InputError

log = logging.getLogger("avloc.data")
OUTPUTS = ["image", "spec", "meta", "source"]


def _derived_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0] & 0x7FFFFFFF)


def _rows_to_bytes(rows: torch.Tensor) -> list:
    data = rows.cpu().numpy()
    return [bytes(r).rstrip(b"\0") for r in data]


def find_undecodable_jpeg(shards: ShardSet, samples: list):
    """(shard name, key, error) of the first sample whose JPEG PIL cannot decode, or None."""
    from PIL import Image

    for si, _, sample in samples:
        shard = shards.shards[si]
        off, size = sample.members["jpg"]
        with open(shard.tar, "rb") as fh:
            fh.seek(off)
            data = fh.read(size)
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
        except Exception as exc:
            return shard.name, sample.key, f"{type(exc).__name__}: {exc}"
    return None


class DaliShardLoader(ShardEpochPlanner):
    backend = "dali"

    def __init__(self, shards: ShardSet, *, mode: str = "train", batch_size: int = 256, device="cpu", rank: int = 0,
                 world_size: int = 1, seed: int = 12345, image_size: int = 224, num_workers: int = 2,
                 drop_last: bool = True, shuffle_buffer: int = 1024, prefetch: int = 2, spec_mask_fill: str = "zero"):
        augment.mask_fill_value(spec_mask_fill)
        self.spec_mask_fill = spec_mask_fill
        self.shards = shards
        self.mode, self.train = mode, mode == "train"
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.gpu = self.device.type == "cuda"
        self.device_id = None
        if self.gpu:
            self.device_id = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.rank, self.world_size = rank, world_size
        self.seed, self.image_size = seed, image_size
        self.num_threads = max(1, num_workers)
        self.drop_last = drop_last
        self.shuffle_buffer = shuffle_buffer
        self.prefetch = prefetch
        self.epoch = 0
        self.batches_done = 0
        self._pending = None  # a state to resume from on the next __iter__
        self._iterator = None
        self._index_dir = None
        if shards.skipped_at_open:
            # the reader must not see the samples the index check left out
            self._index_dir = tempfile.TemporaryDirectory(prefix="avloc-dali-idx-")
            self._index_paths = [str(p) for p in shards.write_clean_indexes(self._index_dir.name)]
        else:
            self._index_paths = [str(s.index) for s in shards.shards]

    @property
    def num_samples(self) -> int:
        return self.shards.num_samples

    @property
    def skipped(self) -> int:
        return self.shards.skipped_at_open

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.batches_done = 0
        self._pending = None

    def close(self) -> None:
        """Release the pipeline (its threads stop prefetching); the next iteration builds a new one."""
        self._iterator = None

    def state_dict(self) -> dict:
        state = {"backend": self.backend, "epoch": self.epoch, "batches_done": self.batches_done, "seed": self.seed,
                 "rank": self.rank, "world_size": self.world_size}
        if self._iterator is not None and 0 < self.batches_done < len(self):
            state["dali_checkpoint"] = self._iterator.checkpoints()[0]
        return state

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.batches_done = int(state["batches_done"])
        self._pending = dict(state)

    def build_pipeline(self, checkpoint=None):
        from avloc.pipelines.eval import eval_pipeline
        from avloc.pipelines.train import train_pipeline

        plan = self._plan()
        shards = self.shards.shards
        paths = [str(shards[i].tar) for i in plan.shard_order]
        index_paths = [self._index_paths[i] for i in plan.shard_order]
        extra = {"mask_fill": augment.mask_fill_value(self.spec_mask_fill)} if self.train else {}
        make = train_pipeline if self.train else eval_pipeline
        pipe = make(paths, index_paths, **extra, shard_id=self.rank, num_shards=self.world_size,
                    reader_seed=_derived_seed(self.seed, self.epoch, self.rank, 1), gpu=self.gpu,
                    image_size=self.image_size, shuffle_buffer=self.shuffle_buffer,
                    batch_size=self.batch_size, num_threads=self.num_threads, device_id=self.device_id,
                    seed=_derived_seed(self.seed, self.epoch, self.rank, 2), prefetch_queue_depth=self.prefetch,
                    checkpoint=checkpoint)
        pipe.build()
        return pipe, plan

    def _make_iterator(self, checkpoint=None):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        from avloc.pipelines.graph import READER_NAME

        pipe, plan = self.build_pipeline(checkpoint)
        policy = LastBatchPolicy.DROP if self.drop_last else LastBatchPolicy.PARTIAL
        try:
            it = DALIGenericIterator(pipe, OUTPUTS, reader_name=READER_NAME, last_batch_policy=policy, auto_reset=False)
        except RuntimeError as exc:
            self._raise_pipeline_error(exc, plan)
        return it, plan

    def _raise_pipeline_error(self, exc: Exception, plan):
        found = find_undecodable_jpeg(self.shards, rank_samples(self.shards, plan))
        if found is None:
            first = str(exc).strip().splitlines()
            raise AvlocError(f"DALI pipeline failed on rank {self.rank}, epoch {self.epoch}: "
                             f"{' '.join(first[-3:]) if first else type(exc).__name__}") from None
        shard, key, why = found
        advice = (" (DALI cannot drop a sample mid-batch: use backend='torch' to skip it, or remove it)"
                  if self.shards.bad_sample == "skip" else "")
        raise InputError(f"bad sample {key!r} in shard {shard}: the JPEG cannot be decoded ({why}){advice}") from None

    def _to_batch(self, out: dict) -> dict:
        metas = _rows_to_bytes(out["meta"])
        sources = _rows_to_bytes(out["source"])
        keys, labels, bboxes = [], [], []
        for meta, source in zip(metas, sources):
            tar, _, name = source.decode("utf-8", "replace").rpartition(":")
            key = name.split(".", 1)[0]
            try:
                label, bbox = parse_meta(meta)
            except ValueError as exc:
                raise InputError(f"bad sample {key!r} in shard {tar.rpartition(':')[0]}: json member: {exc}") from None
            keys.append(key)
            labels.append(label)
            bboxes.append(bbox)
        label_tensor = torch.tensor(labels, dtype=torch.long)
        image, spec = out["image"], out["spec"]
        if self.gpu:
            label_tensor = label_tensor.to(self.device, non_blocking=True)
        if image.dtype != torch.float32:
            image = image.float()
        return {"image": image, "spec": spec, "key": keys, "label": label_tensor, "bbox": bboxes}

    def __iter__(self):
        pending, self._pending = self._pending, None
        start = 0
        checkpoint = None
        if pending and int(pending["batches_done"]) >= len(self):
            self.batches_done = int(pending["batches_done"])
            return  # the saved position is the end of this epoch
        if pending and int(pending["batches_done"]) > 0:
            start = int(pending["batches_done"])
            checkpoint = pending.get("dali_checkpoint")
        self._iterator = None
        it, plan = self._make_iterator(checkpoint)
        self._iterator = it
        if start and checkpoint is None:
            # a state without a DALI checkpoint (e.g. written by the torch backend): replay the batches
            log.warning("resuming epoch %d at batch %d without a DALI checkpoint: replaying %d batches",
                        self.epoch, start, start)
            for _ in range(start):
                next(it)
        self.batches_done = start
        while self.batches_done < plan.num_batches:
            try:
                out = next(it)[0]
            except StopIteration:
                break
            except RuntimeError as exc:
                self._iterator = None
                self._raise_pipeline_error(exc, plan)
            batch = self._to_batch(out)
            self.batches_done += 1
            yield batch
