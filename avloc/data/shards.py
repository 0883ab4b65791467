"""Shard listing from dataset.json, index parsing and validation, and the per-epoch read plan.

The read plan is shared by the DALI and torch loaders so that both put the same samples on
the same rank in the same epoch:

* the split's shards are listed from dataset.json; in train mode their order is permuted
  with a generator seeded by (seed, epoch) (samples stay in stored order inside a shard);
* the concatenated sample sequence (N samples) is cut into ``world_size`` contiguous ranges,
  rank r reading [N*r//W, N*(r+1)//W) -- the formula of DALI's readers (shard_id/num_shards);
* inside a rank, train mode shuffles with a buffer (DALI: ``initial_fill``; torch: the same
  buffered algorithm on sample positions).

Remainder policy. Train mode (drop_last=True): every rank yields floor(floor(N/W)/B) full
batches, the same count on every rank (DDP needs equal step counts); the at most
W*B + W - 1 samples left over are not seen that epoch, and which ones they are changes with
the epoch's shuffle. Eval mode (drop_last=False): every sample exactly once across ranks; the
last batch of a rank may be partial and ranks may differ by one batch.

Bad samples found from the index and a few header bytes (an index row that is not numbers, a
tar shorter than its index, a sample without its ``jpg``/``spec.f16``/``json``, a spectrogram
of the wrong byte size, a jpg without JPEG start and end markers or whose header claims more
pixels than ``frame_limits.MAX_FRAME_PIXELS``, a ``json`` member that does not parse) are
handled before any reading, the same way for the DALI and torch loaders: ``bad_sample="error"`` raises one line naming
the shard and key; ``"skip"`` leaves them out of N (counted in ``skipped_at_open``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from avloc import schema
from avloc.data.batch import parse_meta
from avloc.data.frame_limits import frame_size_problem, jpeg_frame_size
from avloc.data.frame_scale import common_short_side, read_jpeg_size
from avloc.errors import InputError
from avloc.utils.atomic import atomic_write_text

REQUIRED_EXTS = (schema.EXT_FRAME, schema.EXT_SPEC, schema.EXT_META)
SPEC_NBYTES = schema.SPEC_BINS * schema.SPEC_FRAMES * schema.SPEC_DTYPE.itemsize


@dataclasses.dataclass
class IndexedSample:
    key: str
    members: dict  # ext -> (data offset, size)
    problem: Optional[str] = None  # why its index row cannot be used (then the sample is bad)


@dataclasses.dataclass
class Shard:
    tar: Path
    index: Path
    samples: list  # IndexedSample, valid ones only, in stored order
    frame_short_side: Optional[int] = None  # of the first valid sample's frame (one per shard)

    @property
    def name(self) -> str:
        return self.tar.name


@dataclasses.dataclass
class BadSample:
    shard: str
    key: str
    reason: str

    def message(self) -> str:
        return f"bad sample {self.key!r} in shard {self.shard}: {self.reason}"


def _parse_row(parts: list, step: int) -> tuple:
    """(members, key, problem) of one index row; offsets and sizes must be non-negative integers."""
    members, key, problem = {}, None, None
    for i in range(0, len(parts), step):
        ext, off, size = parts[i], parts[i + 1], parts[i + 2]
        if step == 4:
            key = parts[i + 3].split("/")[-1].split(".", 1)[0]
        if not (off.isdigit() and size.isdigit()):  # isdigit: no sign, no decimal point
            problem = problem or f"index row gives {ext} offset {off!r} and size {size!r}, not non-negative integers"
            continue
        members[ext] = (int(off), int(size))
    return members, key, problem


def parse_index(index_path: Path) -> list:
    """DALI v1.1/v1.2 index -> [IndexedSample]; v1.2 rows carry member file names (the key). A row
    whose numbers are not non-negative integers, or whose fields do not group into members, gives
    a sample with ``problem`` set (a bad sample, handled by ``bad_sample``)."""
    try:
        lines = Path(index_path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read shard index {index_path}: {exc}") from None
    if not lines or not lines[0].startswith("v1."):
        raise InputError(f"shard index {index_path} has no DALI version header")
    head = lines[0].split()
    samples = []
    for row_no, line in enumerate(lines[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        if head[0] == "v1.2" and len(parts) % 4 == 0:
            step = 4
        elif len(parts) % 3 == 0:
            step = 3
        else:
            samples.append(IndexedSample(key=f"#{len(samples)}", members={},
                                         problem=f"index line {row_no} does not group into members ({len(parts)} "
                                                 "fields)"))
            continue
        members, key, problem = _parse_row(parts, step)
        if problem:
            problem = f"{problem} (index line {row_no})"
        samples.append(IndexedSample(key=key or f"#{len(samples)}", members=members, problem=problem))
    if len(head) > 1 and head[1].isdigit() and int(head[1]) != len(samples):
        raise InputError(f"shard index {index_path} announces {head[1]} samples but lists {len(samples)}")
    return samples


def check_sample(sample: IndexedSample, tar_size: int, tar_fh) -> Optional[str]:
    """Why a sample cannot be read (None when it looks intact). Reads 4 bytes of its jpg."""
    if sample.problem:
        return sample.problem
    for ext in REQUIRED_EXTS:
        if ext not in sample.members:
            return f"missing its {ext} member"
    for ext, (off, size) in sample.members.items():
        if off + size > tar_size:
            return f"{ext} member ends at byte {off + size} but the tar has {tar_size} bytes (truncated tar)"
    if sample.members[schema.EXT_SPEC][1] != SPEC_NBYTES:
        return f"spectrogram has {sample.members[schema.EXT_SPEC][1]} bytes, expected {SPEC_NBYTES}"
    off, size = sample.members[schema.EXT_FRAME]
    fd = tar_fh.fileno()

    def read_at(pos: int, n: int) -> bytes:  # one pread per read: no seek, no buffer refill
        return os.pread(fd, n, off + pos)

    if size < 4 or read_at(0, 2) != b"\xff\xd8" or read_at(size - 2, 2) != b"\xff\xd9":
        return "jpg member is not a complete JPEG (missing start/end marker)"
    dims = jpeg_frame_size(read_at, size)
    problem = frame_size_problem(*dims) if dims is not None else None
    if problem:
        return problem
    meta_off, meta_size = sample.members[schema.EXT_META]
    try:
        parse_meta(os.pread(fd, meta_size, meta_off))
    except ValueError as exc:
        return f"json member: {exc}"
    return None


def _shard_entries(summary: dict, split: str) -> list:
    shards = summary.get("shards")
    if isinstance(shards, dict):
        entries = shards.get(split, [])
    elif isinstance(shards, list):
        entries = [s for s in shards if isinstance(s, dict) and s.get("split") == split]
    else:
        entries = []
    names = []
    for entry in entries:
        if isinstance(entry, str):
            names.append(entry)
        elif isinstance(entry, dict):
            name = entry.get("tar") or entry.get("name") or entry.get("path") or entry.get("stem")
            if name is None:
                raise InputError(f"dataset.json: shard entry without a name: {entry}")
            names.append(name)
    return [n if n.endswith(".tar") else n + ".tar" for n in names]


class ShardSet:
    """The valid samples of one split of a shards directory (``bad_sample``: "error" or "skip")."""

    def __init__(self, root, split: str = "train", *, bad_sample: str = "error"):
        self.root = Path(root)
        self.split = split
        self.bad_sample = bad_sample
        summary_path = self.root / "dataset.json"
        if not summary_path.is_file():
            raise InputError(f"{self.root} is not a shards directory (no dataset.json); run `avloc shard` first")
        try:
            summary = json.loads(summary_path.read_text())
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read {summary_path}: {exc}") from None
        names = _shard_entries(summary, split)
        if not names:
            raise InputError(f"{summary_path} lists no shards for split {split!r}")
        self.bad: list[BadSample] = []
        self.shards: list[Shard] = [self._open_shard(self.root / name) for name in names]
        self.num_samples = sum(len(s.samples) for s in self.shards)
        if self.num_samples == 0:
            raise InputError(f"split {split!r} of {self.root} has no readable samples")
        frame = summary.get("frame") if isinstance(summary.get("frame"), dict) else {}
        declared = frame.get("short_side") if isinstance(frame.get("short_side"), int) else None
        self.frame_short_side = common_short_side({s.name: s.frame_short_side for s in self.shards}, declared,
                                                  f"split {split!r} of {self.root}")

    @property
    def skipped_at_open(self) -> int:
        return len(self.bad)

    def shard_of(self, key: str) -> Optional[str]:
        """The name of the shard holding sample ``key`` (for messages; a linear search)."""
        return next((shard.name for shard in self.shards for s in shard.samples if s.key == key), None)

    def _open_shard(self, tar: Path) -> Shard:
        index = tar.with_suffix(".idx")
        if not tar.is_file():
            raise InputError(f"shard {tar} listed in dataset.json is missing")
        if not index.is_file():
            raise InputError(f"shard index {index} is missing (DALI and the torch loader need it)")
        samples, good = parse_index(index), []
        tar_size = tar.stat().st_size
        with open(tar, "rb") as fh:
            for sample in samples:
                reason = check_sample(sample, tar_size, fh)
                if reason is None:
                    good.append(sample)
                    continue
                bad = BadSample(tar.name, sample.key, reason)
                if self.bad_sample == "error":
                    raise InputError(bad.message() + " (use bad_sample='skip' to leave such samples out)")
                self.bad.append(bad)
            short_side = None
            if good:
                off, size = good[0].members[schema.EXT_FRAME]
                dims = read_jpeg_size(fh, off, size)
                short_side = min(dims) if dims else None
        return Shard(tar=tar, index=index, samples=good, frame_short_side=short_side)

    def write_clean_indexes(self, out_dir: Path) -> list:
        """Index files listing only the valid samples (for DALI when some were left out)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, shard in enumerate(self.shards):
            rows = []
            for s in shard.samples:
                rows.append(" ".join(f"{ext} {off} {size} {s.key}.{ext}" for ext, (off, size) in s.members.items()))
            path = out_dir / f"{i:06d}-{shard.index.name}"
            atomic_write_text(path, f"v1.2 {len(rows)}\n" + "".join(r + "\n" for r in rows))
            paths.append(path)
        return paths


@dataclasses.dataclass
class EpochPlan:
    """What one rank reads in one epoch."""

    shard_order: list  # indices into ShardSet.shards, in read order
    start: int  # first sample (in the concatenated order) of this rank
    stop: int
    num_batches: int

    @property
    def num_samples(self) -> int:
        return self.stop - self.start


def rank_range(total: int, rank: int, world_size: int) -> tuple:
    return total * rank // world_size, total * (rank + 1) // world_size


def batches_per_epoch(total: int, rank: int, world_size: int, batch_size: int, drop_last: bool) -> int:
    if drop_last:
        return (total // world_size) // batch_size
    start, stop = rank_range(total, rank, world_size)
    return -(-(stop - start) // batch_size)


def plan_epoch(shards: ShardSet, *, epoch: int, seed: int, rank: int, world_size: int, batch_size: int,
               shuffle: bool, drop_last: bool) -> EpochPlan:
    order = list(range(len(shards.shards)))
    if shuffle:
        order = [int(i) for i in np.random.default_rng([seed, epoch]).permutation(len(order))]
    start, stop = rank_range(shards.num_samples, rank, world_size)
    return EpochPlan(order, start, stop, batches_per_epoch(shards.num_samples, rank, world_size, batch_size, drop_last))


def rank_plan(shards: ShardSet, options, epoch: int) -> EpochPlan:
    """The read plan of one rank of a shard loader (LoaderOptions ``options``): the torch and DALI
    loaders share it, so both put the same samples on each rank."""
    return plan_epoch(shards, epoch=epoch, seed=options.seed, rank=options.rank, world_size=options.world_size,
                      batch_size=options.batch_size, shuffle=options.train, drop_last=options.drops_last)


def rank_samples(shards: ShardSet, plan: EpochPlan) -> list:
    """[(shard index, position in shard, IndexedSample)] for the rank's range, in read order."""
    out, pos = [], 0
    for si in plan.shard_order:
        samples = shards.shards[si].samples
        lo, hi = max(plan.start - pos, 0), min(plan.stop - pos, len(samples))
        out.extend((si, j, samples[j]) for j in range(lo, hi))
        pos += len(samples)
        if pos >= plan.stop:
            break
    return out


def buffered_shuffle(n: int, buffer: int, rng: np.random.Generator) -> list:
    """The order in which a sequential stream of n items leaves a shuffle buffer of ``buffer`` slots."""
    out, pool = [], []
    for i in range(n):
        pool.append(i)
        if len(pool) >= buffer:
            j = int(rng.integers(len(pool)))
            pool[j], pool[-1] = pool[-1], pool[j]
            out.append(pool.pop())
    while pool:
        j = int(rng.integers(len(pool)))
        pool[j], pool[-1] = pool[-1], pool[j]
        out.append(pool.pop())
    return out
