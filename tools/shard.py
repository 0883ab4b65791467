"""``avloc shard``: raw clips -> WebDataset shards, resumable, with a manifest and a report.

Plan. Clips are found (tools.discover), filtered by ``--subset`` / ``--exclude``, given a split
(csv split column -> ``test``; ``val`` carved from train by a hash of the clip id or a
``--val-list``; else ``train``), then, per split, sorted by key and permuted with a generator
seeded by ``--seed``, and cut into shards of ``--samples-per-shard`` clips. The plan depends
only on the inputs and the seed, so a rerun plans the same shards.

Shard job. One job builds one shard: every clip of the shard is decoded and turned into a
sample (tools.sample_builder), ok samples are written in plan order (tools.shard_writer: tar +
DALI index, atomic), then ``<stem>.parquet`` (rows of every clip of the shard, ok or failed),
then ``<stem>_stats.json``, last, which marks the shard done and records the job's hash (its
clips, their files' sizes, the recipe and the build options).

Resume. A rerun skips shards whose stats file exists with the same hash and whose files are all
there; it deletes temporary files and shards that were never marked done, and rebuilds those.
Done shards from different inputs or options are an error unless ``--overwrite``.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from avloc import schema
from avloc.errors import AvlocError, InputError
from avloc.tools import discover, manifest
from avloc.tools.decode import DECODERS
from avloc.tools.distribute import DISTRIBUTORS, make_distributor
from avloc.tools.sample_builder import BuildOptions, ClipTask, SampleBuilder
from avloc.tools.shard_writer import TMP_SUFFIX, ShardWriter, atomic_write_bytes

_SHARD_FILE = re.compile(r"^(?P<stem>(?:train|val|test)-\d{6})(?P<kind>\.tar|\.idx|\.parquet|_stats\.json)(?P<tmp>\.tmp)?$")
MANIFEST_NAME = "manifest.parquet"
SUMMARY_NAME = "dataset.json"
MISSING_NAME = "missing_ids.txt"
LOCK_NAME = ".avloc-shard.lock"


@dataclasses.dataclass
class ShardConfig:
    clips: Path
    out: Path
    csv: Optional[Path] = None
    subset: Optional[Path] = None
    exclude: Optional[list] = None  # one path or a list of paths
    test_ids: Optional[list] = None  # one path or a list of paths
    boxes: Optional[Path] = None
    val_fraction: float = 0.0
    val_list: Optional[Path] = None
    workers: Optional[int] = None  # None: all usable cores
    samples_per_shard: int = 1000
    keep_audio: bool = False
    frame_size: int = schema.FRAME_SHORT_SIDE
    jpeg_quality: int = schema.JPEG_QUALITY
    seed: int = 0
    overwrite: bool = False
    decoder: str = "ffmpeg"
    decoder_threads: int = 2  # threads per video decoder (frame threading), in every worker
    distributor: str = "local"
    progress: bool = True
    log: Optional[Callable[[str], None]] = None


@dataclasses.dataclass
class ShardJob:
    out: str
    stem: str
    split: str
    tasks: list  # ClipTask in write order
    options: BuildOptions
    job_hash: str


@dataclasses.dataclass
class ShardJobResult:
    stem: str
    split: str
    n_ok: int
    n_failed: int
    seconds: float


# ----------------------------------------------------------------------------- the job

_builders: dict = {}


def _builder(options: BuildOptions) -> SampleBuilder:
    key = json.dumps(dataclasses.asdict(options), sort_keys=True)
    if key not in _builders:
        _builders[key] = SampleBuilder(options)
    return _builders[key]


def run_shard_job(job: ShardJob, on_clip: Optional[Callable[[], None]] = None) -> ShardJobResult:
    """Build one shard (tar + idx, parquet, then the stats done marker). Safe to run again."""
    t0 = time.perf_counter()
    out = Path(job.out)
    builder = _builder(job.options)
    rows, n_ok = [], 0
    with ShardWriter(out / f"{job.stem}.tar") as writer:
        for task in job.tasks:
            outcome = builder.build(task)
            position = None
            if outcome.status == "ok":
                writer.write(task.key, outcome.members)
                position, n_ok = n_ok, n_ok + 1
            rows.append(_row(task, outcome, job.stem if position is not None else None, position))
            if on_clip:
                on_clip()
    manifest.write_parquet(out / f"{job.stem}.parquet", rows)
    seconds = time.perf_counter() - t0
    stats = {
        "stem": job.stem, "split": job.split, "job_hash": job.job_hash, "recipe_hash": schema.RECIPE_HASH,
        "schema_version": schema.SCHEMA_VERSION, "samples": n_ok, "failed": len(rows) - n_ok,
        "clips": len(rows), "tar_bytes": (out / f"{job.stem}.tar").stat().st_size, "seconds": round(seconds, 3),
        "keys": [t.key for t, r in zip(job.tasks, rows) if r["status"] == "ok"],
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


# ----------------------------------------------------------------------------- config and output folder

def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [Path(v) for v in value]
    return [Path(value)]


def check_config(cfg: ShardConfig) -> None:
    """Every problem with the arguments, before any work (InputError, exit 2)."""
    problems = []
    if not Path(cfg.clips).is_dir():
        problems.append(f"--clips {cfg.clips} is not a folder")
    for flag, paths in (("--csv", _as_list(cfg.csv)), ("--subset", _as_list(cfg.subset)),
                        ("--exclude", _as_list(cfg.exclude)), ("--test-ids", _as_list(cfg.test_ids)),
                        ("--boxes", _as_list(cfg.boxes)), ("--val-list", _as_list(cfg.val_list))):
        for p in paths:
            if not p.is_file():
                problems.append(f"{flag} {p} is not a file")
    if cfg.workers is not None and cfg.workers < 1:
        problems.append(f"--workers must be >= 1, got {cfg.workers}")
    if cfg.samples_per_shard < 1:
        problems.append(f"--samples-per-shard must be >= 1, got {cfg.samples_per_shard}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        problems.append(f"--val-fraction must be in [0, 1), got {cfg.val_fraction}")
    if not 16 <= cfg.frame_size <= 4096:
        problems.append(f"--frame-size must be in [16, 4096], got {cfg.frame_size}")
    if not 1 <= cfg.jpeg_quality <= 100:
        problems.append(f"jpeg quality must be in [1, 100], got {cfg.jpeg_quality}")
    if not 1 <= cfg.decoder_threads <= 64:
        problems.append(f"--decoder-threads must be in [1, 64], got {cfg.decoder_threads}")
    if cfg.decoder not in DECODERS:
        problems.append(f"--decoder must be one of {', '.join(DECODERS)}, got {cfg.decoder!r}")
    if cfg.distributor not in DISTRIBUTORS:
        problems.append(f"--distributor must be one of {', '.join(DISTRIBUTORS)}, got {cfg.distributor!r}")
    if not problems and Path(cfg.out).resolve() == Path(cfg.clips).resolve():
        problems.append("--out must not be the --clips folder")
    if problems:
        raise InputError("; ".join(problems))


def ensure_writable(out: Path) -> None:
    """Create ``out`` and prove a file can be written and renamed there (InputError otherwise)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".avloc-write-test-{os.getpid()}"
        atomic_write_bytes(probe, b"ok")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"--out {out} is not writable: {exc.strerror or exc}") from None


class _OutputLock:
    """An exclusive lock on the output folder so two runs never write the same shards."""

    def __init__(self, out: Path):
        self.path = out / LOCK_NAME
        self.fh = None

    def __enter__(self):
        self.fh = open(self.path, "a")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            raise InputError(f"another `avloc shard` run is writing to {self.path.parent}") from None
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()
        return False


# ----------------------------------------------------------------------------- selection and plan

@dataclasses.dataclass
class Selection:
    tasks: list  # ClipTask to build
    side_rows: list  # manifest rows of files not built (duplicate, excluded, not_in_subset)
    classes: list
    counts: dict  # discovery/list counts for the report
    missing_ids: list  # listed (subset, else csv) but not found


def _val_by_hash(clip_id: str, fraction: float) -> bool:
    h = int(hashlib.sha256(clip_id.encode("utf-8")).hexdigest()[:16], 16)
    return h / float(1 << 64) < fraction


def select(cfg: ShardConfig) -> Selection:
    found = discover.find_clips(cfg.clips)
    if found.n_files == 0:
        raise InputError(f"no clips under {cfg.clips} (looked for {', '.join(discover.CLIP_EXTENSIONS)}, recursively)")
    csv_entries = discover.read_vggsound_csv(cfg.csv) if cfg.csv else {}
    subset_list = discover.read_id_list(cfg.subset) if cfg.subset else None
    subset = set(subset_list) if subset_list is not None else None
    exclude: set = set()
    for p in _as_list(cfg.exclude):
        exclude.update(discover.read_id_list(p))
    test_ids: set = set()
    for p in _as_list(cfg.test_ids):
        test_ids.update(discover.read_id_list(p))
    boxes = discover.read_boxes(cfg.boxes) if cfg.boxes else {}
    val_ids = set(discover.read_id_list(cfg.val_list)) if cfg.val_list else set()
    classes = sorted({e.label for e in csv_entries.values()})
    class_index = {label: i for i, label in enumerate(classes)}
    known_test = test_ids | exclude

    side_rows, tasks = [], []
    for dropped, kept in found.duplicates:
        side_rows.append(manifest.row(clip_id=dropped.clip_id, key=dropped.key, source_path=dropped.rel_path,
                                      file_size=dropped.size, status="duplicate", reason="duplicate_clip_id",
                                      detail=f"kept {kept.rel_path}", in_test_ids=dropped.clip_id in known_test))
    n_not_in_subset = n_excluded = 0
    for clip in found.clips:
        if subset is not None and clip.clip_id not in subset:
            n_not_in_subset += 1
            side_rows.append(manifest.row(clip_id=clip.clip_id, key=clip.key, source_path=clip.rel_path,
                                          file_size=clip.size, status="not_in_subset", reason="not_in_subset",
                                          in_test_ids=clip.clip_id in known_test))
            continue
        if clip.clip_id in exclude:
            n_excluded += 1
            side_rows.append(manifest.row(clip_id=clip.clip_id, key=clip.key, source_path=clip.rel_path,
                                          file_size=clip.size, status="excluded", reason="excluded", in_test_ids=True))
            continue
        entry = csv_entries.get(clip.clip_id)
        flags = []
        if clip.key_rewritten:
            flags.append("key_rewritten")
        if cfg.csv and entry is None:
            flags.append("not_in_csv")
        if entry is not None and entry.split == "test":
            split = "test"
        elif clip.clip_id in val_ids or (cfg.val_fraction > 0 and _val_by_hash(clip.clip_id, cfg.val_fraction)):
            split = "val"
        else:
            split = "train"
        tasks.append(ClipTask(
            clip_id=clip.clip_id, key=clip.key, path=str(clip.path), rel_path=clip.rel_path,
            label=entry.label if entry else None, class_index=class_index[entry.label] if entry else -1,
            split=split, clip_start=clip.clip_start, bbox=boxes.get(clip.clip_id), flags=tuple(flags),
            file_size=clip.size, in_test_ids=clip.clip_id in known_test))

    found_ids = {c.clip_id for c in found.clips}
    listed = subset_list if subset_list is not None else list(csv_entries)
    missing = [i for i in listed if i not in found_ids]
    counts = {
        "files_found": found.n_files,
        "clip_ids_found": len(found.clips),
        "duplicates": len(found.duplicates),
        "listed": len(listed),
        "listed_from": "subset" if cfg.subset else ("csv" if cfg.csv else None),
        "listed_missing": len(missing),
        "not_in_subset": n_not_in_subset,
        "excluded": n_excluded,
        "selected": len(tasks),
        "listed_test_overlap": len(set(listed) & known_test) if test_ids or exclude else None,
        "test_ids_known": len(known_test),
    }
    if not tasks:
        raise InputError(f"none of the {len(found.clips)} clips under {cfg.clips} is selected "
                         f"({n_not_in_subset} not in --subset, {n_excluded} excluded)")
    return Selection(tasks=tasks, side_rows=side_rows, classes=classes, counts=counts, missing_ids=missing)


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
                                 job_hash=_job_hash(stem, chunk, options)))
    return jobs


def _job_hash(stem: str, tasks: list, options: BuildOptions) -> str:
    payload = {
        "stem": stem, "recipe_hash": schema.RECIPE_HASH, "schema_version": schema.SCHEMA_VERSION,
        "build": options.recipe(),
        "clips": [[t.key, t.clip_id, t.rel_path, t.file_size, t.label, t.class_index, t.split, t.bbox,
                   list(t.flags), t.in_test_ids] for t in tasks],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()[:16]


# ----------------------------------------------------------------------------- resume

def _shard_files(out: Path) -> dict:
    """stem -> {kind: path} for our shard files in ``out`` (tmp files under kind + '.tmp')."""
    files: dict = {}
    for entry in os.scandir(out):
        m = _SHARD_FILE.match(entry.name)
        if m:
            files.setdefault(m["stem"], {})[m["kind"] + (m["tmp"] or "")] = Path(entry.path)
    return files


def _read_stats(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _parquet_intact(path: Path) -> bool:
    """A whole parquet file starts and ends with its magic bytes."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(-4, os.SEEK_END)
            return head == b"PAR1" and fh.read(4) == b"PAR1"
    except OSError:
        return False


def reconcile(out: Path, jobs: list, *, overwrite: bool) -> tuple[list, list]:
    """Clean the output folder for this plan; returns (pending jobs, jobs already done)."""
    files = _shard_files(out)
    if overwrite:
        for kinds in files.values():
            for path in kinds.values():
                path.unlink(missing_ok=True)
        for name in (MANIFEST_NAME, SUMMARY_NAME, MISSING_NAME):
            (out / name).unlink(missing_ok=True)
        return list(jobs), []
    for kinds in files.values():  # temporary files never hold finished work
        for kind, path in list(kinds.items()):
            if kind.endswith(TMP_SUFFIX):
                path.unlink(missing_ok=True)
                del kinds[kind]
    planned = {job.stem: job for job in jobs}
    for stem, kinds in sorted(files.items()):
        stats_path = kinds.get("_stats.json")
        stats = _read_stats(stats_path) if stats_path else None
        if stats is None:
            continue
        job = planned.get(stem)
        if job is None or stats.get("job_hash") != job.job_hash:
            why = "is not part of this run's plan" if job is None else "was built from other clips or options"
            raise InputError(f"{out} holds finished shard {stem} that {why}; rerun with --overwrite to rebuild the "
                             "set, or use another --out")
    pending, done = [], []
    for job in jobs:
        kinds = files.get(job.stem, {})
        stats = _read_stats(kinds["_stats.json"]) if "_stats.json" in kinds else None
        complete = (stats is not None and all(k in kinds for k in (".tar", ".idx", ".parquet"))
                    and kinds[".tar"].stat().st_size == stats.get("tar_bytes") and _parquet_intact(kinds[".parquet"]))
        if complete:
            done.append(job)
            continue
        for path in kinds.values():  # never marked done (killed mid-shard) or damaged since: rebuild
            path.unlink(missing_ok=True)
        pending.append(job)
    return pending, done


# ----------------------------------------------------------------------------- the run

def run_shard(cfg: ShardConfig) -> dict:
    """Build (or finish building) the shard set described by ``cfg``; returns the report."""
    log = cfg.log or (lambda msg: print(msg, file=sys.stderr))
    check_config(cfg)
    out = Path(cfg.out)
    ensure_writable(out)
    workers = cfg.workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    distributor = make_distributor(cfg.distributor, workers)
    t_start = time.perf_counter()
    with _OutputLock(out):
        selection = select(cfg)
        options = BuildOptions(frame_size=cfg.frame_size, jpeg_quality=cfg.jpeg_quality, keep_audio=cfg.keep_audio,
                               decoder=cfg.decoder, decoder_threads=cfg.decoder_threads)
        jobs = plan_shards(selection.tasks, out=out, samples_per_shard=cfg.samples_per_shard, seed=cfg.seed,
                           options=options)
        pending, done = reconcile(out, jobs, overwrite=cfg.overwrite)
        n_pending_clips = sum(len(j.tasks) for j in pending)
        log(f"avloc shard: {selection.counts['clip_ids_found']} clips found, {len(selection.tasks)} selected -> "
            f"{len(jobs)} shards ({len(done)} already done, {len(pending)} to build: {n_pending_clips} clips); "
            f"decoder {cfg.decoder}, distributor {distributor.name}, workers {workers}")
        results = {}
        t_build = time.perf_counter()
        bar = _progress_bar(n_pending_clips, cfg.progress)
        try:
            for result in distributor.run(pending, on_clip=lambda n: bar.update(n) if bar else None):
                results[result.stem] = result
        except OSError as exc:  # disk full, folder removed, ...: the finished shards stay valid
            raise AvlocError(f"writing shards to {out} failed: {exc.strerror or exc}; {len(results)} shards finished "
                             "in this run are kept, rerun the same command to resume") from None
        finally:
            if bar:
                bar.close()
        build_seconds = time.perf_counter() - t_build
        # the manifest is assembled from the shards' parquet files as Arrow tables (no per-row Python objects)
        shard_counts = {}
        for job in jobs:
            stats = _read_stats(out / f"{job.stem}_stats.json") or {}
            shard_counts.setdefault(job.split, []).append((job.stem, int(stats.get("samples", 0))))
        table = manifest.concat([out / f"{job.stem}.parquet" for job in jobs], selection.side_rows)
        report = _report(cfg, selection, table, jobs, done, results, n_pending_clips, build_seconds,
                         time.perf_counter() - t_start, workers)
        manifest.write_table(out / MANIFEST_NAME, table)
        atomic_write_bytes(out / MISSING_NAME, "".join(i + "\n" for i in selection.missing_ids).encode())
        counts = {split: sum(n for _, n in shard_counts.get(split, [])) for split in schema.SPLITS}
        frame = {"short_side": cfg.frame_size, "jpeg_quality": cfg.jpeg_quality, "resize": "bicubic",
                 "time": "frame nearest duration / 2 (of the video stream)"}
        manifest.write_json(out / SUMMARY_NAME, manifest.dataset_json(
            classes=selection.classes, shards=shard_counts, counts=counts, frame=frame,
            build={"seed": cfg.seed, "samples_per_shard": cfg.samples_per_shard, "keep_audio": cfg.keep_audio,
                   "decoder": cfg.decoder, "val_fraction": cfg.val_fraction, "report": report}))
    return report


def _progress_bar(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="clip", desc="shard", file=sys.stderr, disable=not sys.stderr.isatty(),
                dynamic_ncols=True)


def _report(cfg, selection, table, jobs, done, results, n_built, build_seconds, total_seconds, workers) -> dict:
    cols = {name: table.column(name).to_pylist() for name in ("status", "reason", "split", "in_test_ids", "flags")}
    rows = [dict(zip(cols, values)) for values in zip(*cols.values())]
    ok = [r for r in rows if r["status"] == "ok"]
    failed = Counter(r["reason"] for r in rows if r["status"] == "failed")
    flags = Counter(f for r in ok for f in r["flags"])
    set_overlap = sum(1 for r in ok if r["in_test_ids"] and r["split"] in ("train", "val"))
    return {
        **selection.counts,
        "ok": len(ok),
        "failed": sum(failed.values()),
        "failed_by_reason": dict(sorted(failed.items())),
        "flags": dict(sorted(flags.items())),
        "per_split": {s: sum(1 for r in ok if r["split"] == s) for s in schema.SPLITS},
        "set_test_overlap": set_overlap if (cfg.test_ids or cfg.exclude) else None,
        "shards": len(jobs),
        "shards_skipped": len(done),
        "shards_built": len(results),
        "clips_built": n_built,
        "build_seconds": round(build_seconds, 3),
        "total_seconds": round(total_seconds, 3),
        "clips_per_second": round(n_built / build_seconds, 3) if n_built and build_seconds > 0 else None,
        "workers": workers,
        "decoder": cfg.decoder,
        "distributor": cfg.distributor,
    }


def format_report(report: dict, out) -> str:
    """The end-of-run summary the CLI prints."""
    lines = [f"shards in {out}: {report['shards']} ({report['shards_built']} built now, "
             f"{report['shards_skipped']} already done)"]
    lines.append(f"clips: {report['files_found']} files, {report['clip_ids_found']} ids, "
                 f"{report['duplicates']} duplicate files, {report['selected']} selected")
    if report["listed_from"]:
        lines.append(f"listed in --{report['listed_from']}: {report['listed']}, missing (no file): "
                     f"{report['listed_missing']} (ids in {MISSING_NAME})")
    if report["not_in_subset"] or report["excluded"]:
        lines.append(f"left out: {report['not_in_subset']} not in --subset, {report['excluded']} excluded")
    per_split = ", ".join(f"{s} {n}" for s, n in report["per_split"].items() if n)
    lines.append(f"ok: {report['ok']} ({per_split or 'none'}); failed: {report['failed']}")
    for reason, n in report["failed_by_reason"].items():
        lines.append(f"  failed {reason}: {n}")
    if report["flags"]:
        lines.append("flags: " + ", ".join(f"{k} {v}" for k, v in report["flags"].items()))
    if report["set_test_overlap"] is not None:
        line = f"test-id overlap: {report['set_test_overlap']} train/val samples in this set are known test ids"
        if report["listed_from"]:
            line += (f"; {report['listed_test_overlap']} of the {report['listed']} ids in --{report['listed_from']} "
                     "are known test ids")
        lines.append(line)
    if report["clips_per_second"]:
        lines.append(f"throughput: {report['clips_built']} clips in {report['build_seconds']:.1f} s = "
                     f"{report['clips_per_second']:.2f} clips/s ({report['workers']} workers, {report['decoder']} "
                     f"decoder, {report['distributor']})")
    lines.append(f"manifest: {Path(out) / MANIFEST_NAME}; summary: {Path(out) / SUMMARY_NAME}")
    return "\n".join(lines)
