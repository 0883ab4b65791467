"""The shard plan: per split, a seeded permutation of the key-sorted clips, cut into shard jobs.

The plan depends only on the inputs and the seed, so a rerun plans the same shards; each job
carries a hash of what decides its bytes (its clips, their files' sizes, the recipe and the
build options), which marks a finished shard as finished for exactly this plan. The files'
modification times are not hashed (a touched file keeps its shard's identity) but stored in the
shard's stats: a done shard with a clip whose size or time changed since is rebuilt (``output``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from avloc import schema
from avloc.tools.sharding.sample_builder import BuildOptions


@dataclasses.dataclass
class ShardJob:
    out: str
    stem: str
    split: str
    tasks: list  # ClipTask in write order
    options: BuildOptions
    job_hash: str
    # key -> (reason, detail) of clips that already failed in a way that must not be retried in
    # this run (they hung or killed their worker); not part of the hash
    known_failed: dict = dataclasses.field(default_factory=dict)


def plan_shards(tasks: list, *, out: Path, samples_per_shard: int, seed: int, options: BuildOptions) -> list:
    """Deterministic shard jobs: per split, a seeded permutation of the key-sorted clips, cut in order."""
    jobs = []
    for split_index, split in enumerate(schema.SPLITS):
        items = sorted((t for t in tasks if t.split == split), key=lambda t: t.key)
        if not items:
            continue
        order = np.random.default_rng([seed, split_index]).permutation(len(items))
        items = [items[i] for i in order]
        for index, first in enumerate(range(0, len(items), samples_per_shard)):
            chunk = items[first:first + samples_per_shard]
            stem = schema.shard_stem(split, index)
            jobs.append(ShardJob(out=str(out), stem=stem, split=split, tasks=chunk, options=options,
                                 job_hash=job_hash(stem, chunk, options)))
    return jobs


def job_hash(stem: str, tasks: list, options: BuildOptions) -> str:
    payload = {
        "stem": stem, "recipe_hash": schema.RECIPE_HASH, "schema_version": schema.SCHEMA_VERSION,
        "build": options.recipe(),
        "clips": [[t.key, t.clip_id, t.rel_path, t.file_size, t.label, t.class_index, t.split, t.bbox,
                   list(t.flags), t.in_test_ids] for t in tasks],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:16]
