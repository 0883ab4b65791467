"""``avloc shard``: raw clips -> WebDataset shards, resumable, with a manifest and a report.

Select the clips (``selection``), plan the shards (``planning``), skip what is done and clean
what is not (``output``), build the pending shards over a distributor (``job``,
``distributors``), then write the manifest (``schema.MANIFEST_PATH``), ``missing_ids.txt``,
``dataset.json`` and the dataset card (``card``) from the shards' own files and return the report
(``report``). A set made before the manifest moved to its folder loses its old top-level copy
once the new one is written.
"""

from __future__ import annotations

import time
from pathlib import Path

from avloc import schema
from avloc.errors import AvlocError
from avloc.tools.sharding import card, manifest
from avloc.tools.sharding.config import ShardConfig
from avloc.tools.sharding.decode import remove_orphan_frames
from avloc.tools.sharding.distributors import make_distributor
from avloc.tools.sharding.output import (MANIFEST_NAME, MISSING_NAME, SUMMARY_NAME, OutputLock, ensure_writable, read_stats,
                                         reconcile)
from avloc.tools.sharding.planning import plan_shards
from avloc.tools.sharding.report import RunTimes, build_report
from avloc.tools.sharding.sample_builder import BuildOptions
from avloc.tools.sharding.selection import Selection, select
from avloc.tools.sharding.supervisor import WorkerLimits
from avloc.utils.atomic import atomic_write_bytes
from avloc.utils.progress import Progress, log
from avloc.utils.system import usable_cores


def run_shard(cfg: ShardConfig) -> dict:
    """Build (or finish building) the shard set described by ``cfg``; returns the report."""
    cfg.checked()
    out = Path(cfg.out)
    ensure_writable(out)
    workers = cfg.workers or usable_cores()
    distributor = make_distributor(cfg.distributor, workers, WorkerLimits(cfg.clip_timeout_s, cfg.clip_memory_mb))
    remove_orphan_frames()  # frame files of ffmpeg processes a killed run left in /dev/shm
    t_start = time.perf_counter()
    with OutputLock(out):
        selection = select(cfg)
        threads = cfg.decoder_threads or max(1, usable_cores() // workers)  # frame threads only help on idle cores
        options = BuildOptions(frame_size=cfg.frame_size, jpeg_quality=cfg.jpeg_quality, keep_audio=cfg.keep_audio,
                               decoder=cfg.decoder, decoder_threads=threads, min_frame_side=cfg.min_frame_side)
        jobs = plan_shards(selection.tasks, out=out, samples_per_shard=cfg.samples_per_shard, seed=cfg.seed,
                           options=options)
        pending, done = reconcile(out, jobs, overwrite=cfg.overwrite)
        n_pending_clips = sum(len(j.tasks) for j in pending)
        log(f"avloc shard: {selection.counts['clip_ids_found']} clips found, {len(selection.tasks)} selected -> "
            f"{len(jobs)} shards ({len(done)} already done, {len(pending)} to build: {n_pending_clips} clips); "
            f"decoder {cfg.decoder}, distributor {distributor.name}, workers {workers}")
        t_build = time.perf_counter()
        built = _build(distributor, pending, n_pending_clips, out, cfg.progress)
        build_seconds = time.perf_counter() - t_build
        # the manifest is assembled from the shards' parquet files as Arrow tables (no per-row Python objects)
        table = manifest.concat([out / f"{job.stem}.parquet" for job in jobs], selection.side_rows)
        times = RunTimes(shards=len(jobs), shards_skipped=len(done), shards_built=len(built),
                         clips_built=n_pending_clips, build_seconds=build_seconds,
                         total_seconds=time.perf_counter() - t_start, workers=workers)
        report = build_report(cfg, selection.counts, table, times)
        manifest.write_table(out / MANIFEST_NAME, table)
        (out / schema.LEGACY_MANIFEST_PATH).unlink(missing_ok=True)  # would be counted twice by a *.parquet glob
        summary = _write_summary(cfg, out, jobs, selection, report)
        card.write_card(out, summary, cfg.keep_audio)
    if cfg.report_json:
        manifest.write_json(cfg.report_json, report)
    return report


def _build(distributor, pending: list, n_clips: int, out: Path, progress: bool) -> dict:
    """Run the pending shard jobs; stem -> result of each shard built now."""
    results = {}
    with Progress(n_clips, "shard", "clip", enabled=progress and n_clips > 0) as bar:
        try:
            for result in distributor.run(pending, on_clip=lambda n, failed: bar.update(n, failed=failed)):
                results[result.stem] = result
        except OSError as exc:  # disk full, folder removed, ...: the finished shards stay valid
            raise AvlocError(f"writing shards to {out} failed: {exc.strerror or exc}; {len(results)} shards finished "
                             "in this run are kept, rerun the same command to resume") from None
    return results


def _write_summary(cfg: ShardConfig, out: Path, jobs: list, selection: Selection, report: dict) -> dict:
    """``missing_ids.txt`` and ``dataset.json``, from the shards' stats files; returns the summary."""
    shard_counts = {}
    for job in jobs:
        stats = read_stats(out / f"{job.stem}_stats.json") or {}
        shard_counts.setdefault(job.split, []).append((job.stem, int(stats.get("samples", 0))))
    atomic_write_bytes(out / MISSING_NAME, "".join(i + "\n" for i in selection.missing_ids).encode(), fsync=True)
    counts = {split: sum(n for _, n in shard_counts.get(split, [])) for split in schema.SPLITS}
    frame = {"short_side": cfg.frame_size, "jpeg_quality": cfg.jpeg_quality, "resize": "bicubic",
             "time": "frame nearest duration / 2 (of the video stream)"}
    summary = manifest.dataset_json(
        classes=selection.classes, shards=shard_counts, counts=counts, frame=frame,
        build={"seed": cfg.seed, "samples_per_shard": cfg.samples_per_shard, "keep_audio": cfg.keep_audio,
               "decoder": cfg.decoder, "val_fraction": cfg.val_fraction, "report": report})
    manifest.write_json(out / SUMMARY_NAME, summary)
    return summary
