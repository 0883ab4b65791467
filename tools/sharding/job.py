"""One shard job: every clip of the shard decoded and built into a sample, then its files.

Ok samples are written in plan order (``writer``: tar + DALI index, atomic), then
``<stem>.parquet`` (rows of every clip of the shard, ok or failed), then ``<stem>_stats.json``,
last, which marks the shard done and records the job's hash and each clip's file size and
modification time. Clips in ``job.known_failed`` (they hung or killed a worker earlier in this
run) are recorded with their reason without being opened again. Safe to run again.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Callable, Optional

from avloc import schema
from avloc.tools.sharding import manifest
from avloc.tools.sharding.planning import ShardJob
from avloc.tools.sharding.sample_builder import BuildOptions, ClipTask, SampleBuilder, SampleOutcome
from avloc.tools.sharding.writer import ShardWriter


@dataclasses.dataclass
class ShardJobResult:
    stem: str
    split: str
    n_ok: int
    n_failed: int
    seconds: float


_builders: dict = {}


def _builder(options: BuildOptions, timeout_s: float, memory_mb: Optional[float]) -> SampleBuilder:
    key = json.dumps([dataclasses.asdict(options), timeout_s, memory_mb], sort_keys=True)
    if key not in _builders:
        _builders[key] = SampleBuilder(options, timeout_s=timeout_s, memory_mb=memory_mb)
    return _builders[key]


def run_shard_job(job: ShardJob, on_clip: Optional[Callable[[SampleOutcome], None]] = None,
                  on_start: Optional[Callable[[str], None]] = None, timeout_s: float = 120.0,
                  memory_mb: Optional[float] = None) -> ShardJobResult:
    """Build one shard (tar + idx, parquet, then the stats done marker); ``on_start(key)`` before and
    ``on_clip(outcome)`` after each clip; ``timeout_s`` bounds a decoder process, ``memory_mb`` the
    frame size a clip may have (``decode.check_frame_memory``)."""
    t0 = time.perf_counter()
    out = Path(job.out)
    builder = _builder(job.options, timeout_s, memory_mb)
    rows, n_ok = [], 0
    with ShardWriter(out / f"{job.stem}.tar") as writer:
        for task in job.tasks:
            if on_start:
                on_start(task.key)
            known = job.known_failed.get(task.key)
            outcome = (SampleOutcome(clip_id=task.clip_id, key=task.key, status="failed", reason=known[0],
                                     detail=known[1], flags=list(task.flags)) if known else builder.build(task))
            position = None
            if outcome.status == "ok":
                writer.write(task.key, outcome.members)
                position, n_ok = n_ok, n_ok + 1
            rows.append(_row(task, outcome, job.stem if position is not None else None, position))
            if on_clip:
                on_clip(outcome)
    manifest.write_parquet(out / f"{job.stem}.parquet", rows)
    seconds = time.perf_counter() - t0
    stats = {
        "stem": job.stem, "split": job.split, "job_hash": job.job_hash, "recipe_hash": schema.RECIPE_HASH,
        "schema_version": schema.SCHEMA_VERSION, "samples": n_ok, "failed": len(rows) - n_ok,
        "clips": len(rows), "tar_bytes": (out / f"{job.stem}.tar").stat().st_size, "seconds": round(seconds, 3),
        "keys": [t.key for t, r in zip(job.tasks, rows) if r["status"] == "ok"],
        "sources": {t.key: [t.file_size, t.mtime_ns] for t in job.tasks},  # a changed file redoes the shard
    }
    manifest.write_json(out / f"{job.stem}_stats.json", stats, durable=False)  # tar + idx were fsynced
    return ShardJobResult(stem=job.stem, split=job.split, n_ok=n_ok, n_failed=len(rows) - n_ok, seconds=seconds)


def _row(task: ClipTask, outcome, shard: Optional[str], position: Optional[int]) -> dict:
    meta = outcome.meta
    fields = dict(
        clip_id=task.clip_id, key=task.key, source_path=task.rel_path, file_size=task.file_size,
        status=outcome.status, reason=outcome.reason, detail=outcome.detail, flags=sorted(set(outcome.flags)),
        split=task.split, label=task.label, class_index=task.class_index, shard=shard, shard_position=position,
        in_test_ids=task.in_test_ids, rotation=outcome.rotation, **{k: outcome.timings.get(k) for k in
                                                                    ("decode_s", "spec_s", "encode_s", "total_s")})
    if meta is not None:
        fields.update(duration=meta.duration, frame_time=meta.frame_time, fps=meta.fps, width=meta.width,
                      height=meta.height, video_codec=meta.video_codec, audio_codec=meta.audio_codec,
                      source_sample_rate=meta.source_sample_rate, audio_seconds=meta.audio_seconds,
                      window_start=meta.window_start)
    return manifest.row(**fields)
