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
* Epoch, position, resume point and counters are avloc.data.loader's, as for every loader; this
  file holds only what is DALI's.
* Resume: the pipeline is built with ``enable_checkpointing``; ``state_dict()`` holds the
  iterator's DALI checkpoint (reader position, shuffle buffer and random generator states),
  so ``load_state_dict`` + iterating continues the epoch at the next batch, bit-identically.
* A JPEG the decoder rejects stops the pipeline. The wrapper then finds the culprit (PIL over
  this rank's samples of the epoch) and raises one line naming shard and key. DALI cannot
  drop one sample from a running batch, so with ``bad_sample="skip"`` such JPEGs are reported
  the same way, advising the torch backend; everything the shard set checks when it opens the
  shards (index rows, truncated tar, missing members, incomplete JPEG, a frame header above
  the pixel limit, a json member that does not parse) is skipped before the pipeline is built,
  exactly as the torch loader skips it.
"""

from __future__ import annotations

import io
import tempfile

import numpy as np
import torch

from avloc.data.batch import parse_meta
from avloc.data.frame_scale import crop_only
from avloc.data.loader import ShardLoader
from avloc.data.options import LoaderOptions
from avloc.data.shards import ShardSet, rank_plan, rank_samples
from avloc.errors import AvlocError, InputError
from avloc.utils.progress import warn

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


class DaliShardLoader(ShardLoader):
    """The Loader protocol over a DALI pipeline; ``prefetch`` batches are queued per pipeline."""

    backend = "dali"

    def __init__(self, shards: ShardSet, options: LoaderOptions, *, prefetch: int = 2):
        super().__init__(shards, options)
        self.gpu = self.device.type == "cuda"
        self.device_id = None
        if self.gpu:
            self.device_id = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.prefetch = prefetch
        self.crop_only = crop_only(shards.frame_short_side, options.image_size)
        self._iterator = None
        self._index_dir = None
        if shards.skipped_at_open:
            # the reader must not see the samples the index check left out
            self._index_dir = tempfile.TemporaryDirectory(prefix="avloc-dali-idx-")
            self._index_paths = [str(p) for p in shards.write_clean_indexes(self._index_dir.name)]
        else:
            self._index_paths = [str(s.index) for s in shards.shards]

    def state_dict(self) -> dict:
        state = super().state_dict()
        if self._iterator is not None and 0 < self.batches_done < len(self):
            state["dali_checkpoint"] = self._iterator.checkpoints()[0]
        return state

    def build_pipeline(self, checkpoint=None):
        from avloc.pipelines.eval import eval_pipeline
        from avloc.pipelines.train import train_pipeline

        o = self.options
        plan = rank_plan(self.shards, o, self.epoch)
        shards = self.shards.shards
        paths = [str(shards[i].tar) for i in plan.shard_order]
        index_paths = [self._index_paths[i] for i in plan.shard_order]
        extra = {"mask_fill": o.mask_fill, "crop_only": self.crop_only} if o.train else {}
        make = train_pipeline if o.train else eval_pipeline
        pipe = make(paths, index_paths, **extra, shard_id=o.rank, num_shards=o.world_size,
                    reader_seed=_derived_seed(o.seed, self.epoch, o.rank, 1), gpu=self.gpu,
                    image_size=o.image_size, shuffle_buffer=o.shuffle_buffer,
                    batch_size=o.batch_size, num_threads=max(1, o.num_workers), device_id=self.device_id,
                    seed=_derived_seed(o.seed, self.epoch, o.rank, 2), prefetch_queue_depth=self.prefetch,
                    checkpoint=checkpoint)
        pipe.build()
        return pipe, plan

    def _make_iterator(self, checkpoint=None):
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

        from avloc.pipelines.graph import READER_NAME

        pipe, plan = self.build_pipeline(checkpoint)
        policy = LastBatchPolicy.DROP if self.options.drops_last else LastBatchPolicy.PARTIAL
        try:
            it = DALIGenericIterator(pipe, OUTPUTS, reader_name=READER_NAME, last_batch_policy=policy, auto_reset=False)
        except RuntimeError as exc:
            self._raise_pipeline_error(exc, plan)
        return it, plan

    def _raise_pipeline_error(self, exc: Exception, plan):
        found = find_undecodable_jpeg(self.shards, rank_samples(self.shards, plan))
        if found is None:
            first = str(exc).strip().splitlines()
            raise AvlocError(f"DALI pipeline failed on rank {self.options.rank}, epoch {self.epoch}: "
                             f"{' '.join(first[-3:]) if first else type(exc).__name__}") from None
        shard, key, why = found
        advice = (" (DALI cannot drop a sample mid-batch: use backend='torch' to skip it, or remove it)"
                  if self.options.bad_sample == "skip" else "")
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
        start = self.position.begin()
        if start >= len(self):
            return  # the saved position is the end of this epoch
        checkpoint = self.position.resumed_state.get("dali_checkpoint") if start else None
        self._iterator = None
        it, plan = self._make_iterator(checkpoint)
        self._iterator = it
        if start and checkpoint is None:
            # a state without a DALI checkpoint (e.g. written by the torch backend): replay the batches
            warn(f"resuming epoch {self.epoch} at batch {start} without a DALI checkpoint: replaying {start} batches")
            for _ in range(start):
                next(it)
        while self.batches_done < plan.num_batches:
            try:
                out = next(it)[0]
            except StopIteration:
                break
            except RuntimeError as exc:
                self._iterator = None
                self._raise_pipeline_error(exc, plan)
            batch = self._to_batch(out)
            self.position.count(len(batch["key"]))
            yield batch
