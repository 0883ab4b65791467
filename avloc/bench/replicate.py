"""Large shard sets made cheaply from a few real samples, for the loader benchmarks.

* ``replicate_shards``: copies of real samples under new keys, written with the real shard
  writer (tar + DALI index) and listed in a dataset.json that keeps the source's frame record:
  every sample is distinct on disk, every byte of it a real sample's.
* ``link_shards``: one such shard hard-linked (copied where links are not possible) under many
  shard names, each with its own index file: a set of ~144 shards and 144,000 samples costs
  one shard of disk. Keys repeat across shards, which no loader relies on.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from avloc import schema
from avloc.data.shards import ShardSet
from avloc.tools.sharding.writer import ShardWriter
from avloc.utils.atomic import atomic_write_text


def link_or_copy(src, dst) -> None:
    """``dst`` as a hard link of ``src``, or a copy where links are not possible (another file system)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _read_members(shards: ShardSet) -> list:
    """[(key, {ext: bytes})] of every sample of the set, in stored order."""
    samples = []
    for shard in shards.shards:
        with open(shard.tar, "rb") as fh:
            for sample in shard.samples:
                members = {}
                for ext, (off, size) in sample.members.items():
                    fh.seek(off)
                    members[ext] = fh.read(size)
                samples.append((sample.key, members))
    return samples


def _summary(source: Path, split: str, shards: list) -> dict:
    """dataset.json for the new set: the source's, with this split's shard list and count only."""
    summary = json.loads((Path(source) / "dataset.json").read_text())
    summary["shards"] = {s: [] for s in schema.SPLITS}
    summary["shards"][split] = [{"name": name, "samples": n} for name, n in shards]
    summary["counts"] = {s: 0 for s in schema.SPLITS}
    summary["counts"][split] = sum(n for _, n in shards)
    summary.setdefault("build", {})["replicated_from"] = str(source)
    return summary


def replicate_shards(source, out, n_samples: int, *, samples_per_shard: int, split: str = "train",
                     source_split: str = "train") -> Path:
    """A shard set of ``n_samples`` samples (``split``) cycling over ``source``'s samples, each copy
    under a key of its own (its json's key and clip id follow). Returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    originals = _read_members(ShardSet(source, source_split))
    written = []
    for index, first in enumerate(range(0, n_samples, samples_per_shard)):
        stem = schema.shard_stem(split, index)
        count = min(samples_per_shard, n_samples - first)
        with ShardWriter(out / f"{stem}.tar") as writer:
            for i in range(first, first + count):
                key, members = originals[i % len(originals)]
                new_key = f"r{i:07d}_{key}"[:schema.MAX_KEY_LENGTH]
                meta = json.loads(members[schema.EXT_META])
                meta.update(key=new_key, clip_id=new_key, split=split)
                copy = dict(members)
                copy[schema.EXT_META] = json.dumps(meta, sort_keys=True).encode("utf-8")
                writer.write(new_key, copy)
        written.append((f"{stem}.tar", count))
    atomic_write_text(out / "dataset.json", json.dumps(_summary(Path(source), split, written), indent=1))
    return out


def link_shards(base, out, n_shards: int, *, split: str = "train") -> Path:
    """``n_shards`` shards named ``<split>-NNNNNN`` that are all ``base``'s one ``split`` shard
    (hard links of its tar, a copy of its index each). Returns ``out``."""
    base, out = Path(base), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base_set = ShardSet(base, split)
    if len(base_set.shards) != 1:
        raise ValueError(f"{base} must hold exactly one {split} shard, it holds {len(base_set.shards)}")
    tar, index, n = base_set.shards[0].tar, base_set.shards[0].index, base_set.num_samples
    listed = []
    for i in range(n_shards):
        stem = schema.shard_stem(split, i)
        dst = out / f"{stem}.tar"
        if not dst.exists():
            link_or_copy(tar, dst)
        shutil.copyfile(index, out / f"{stem}.idx")
        listed.append((f"{stem}.tar", n))
    atomic_write_text(out / "dataset.json", json.dumps(_summary(base, split, listed), indent=1))
    return out
