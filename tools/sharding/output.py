"""The output folder: writable check, the run lock, and resume (what is done, what to rebuild).

A rerun skips shards whose stats file exists with the same job hash and whose files are all
there; it deletes temporary files and shards that were never marked done, and rebuilds those.
A done shard one of whose clip files was replaced since (another size or modification time than
its stats record) is rebuilt too.
Done shards from different inputs or options are an error unless ``--overwrite``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path
from typing import Optional

from avloc import schema
from avloc.errors import AvlocError, InputError
from avloc.utils.atomic import atomic_write_bytes, remove_stale_temps

_SHARD_FILE = re.compile(r"^(?P<stem>(?:train|val|test)-\d{6})(?P<kind>\.tar|\.idx|\.parquet|_stats\.json)$")
MANIFEST_NAME = schema.MANIFEST_PATH  # relative to the output folder
SUMMARY_NAME = schema.SUMMARY_NAME
CARD_NAME = schema.CARD_NAME
MISSING_NAME = "missing_ids.txt"
LOCK_NAME = ".avloc-shard.lock"


def ensure_writable(out: Path) -> None:
    """Create ``out`` and prove a file can be written and renamed there (InputError otherwise)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".avloc-write-test-{os.getpid()}"
        atomic_write_bytes(probe, b"ok")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"--out {out} is not writable: {exc.strerror or exc}") from None
    except AvlocError as exc:
        raise InputError(f"--out {out} is not writable: {exc}") from None


class OutputLock:
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


def shard_files(out: Path) -> dict:
    """stem -> {kind: path} for our finished-named shard files in ``out``."""
    files: dict = {}
    for entry in os.scandir(out):
        m = _SHARD_FILE.match(entry.name)
        if m:
            files.setdefault(m["stem"], {})[m["kind"]] = Path(entry.path)
    return files


def read_stats(path: Path) -> Optional[dict]:
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


def _check_done_shards_belong(out: Path, files: dict, jobs: list) -> None:
    planned = {job.stem: job for job in jobs}
    for stem, kinds in sorted(files.items()):
        stats = read_stats(kinds["_stats.json"]) if "_stats.json" in kinds else None
        if stats is None:
            continue
        job = planned.get(stem)
        if job is None or stats.get("job_hash") != job.job_hash:
            other = _other_decoder(job, stats) if job is not None else None
            if other is not None:  # e.g. a set begun before the default decoder changed
                raise InputError(f"{out} holds finished shard {stem} built with --decoder {other}; pass --decoder "
                                 f"{other} to resume that set, or --overwrite to rebuild it")
            why = "is not part of this run's plan" if job is None else "was built from other clips or options"
            raise InputError(f"{out} holds finished shard {stem} that {why}; rerun with --overwrite to rebuild the "
                             "set, or use another --out")


def _other_decoder(job, stats: dict):
    """The other decoder whose plan gives the done shard's hash, if one does."""
    import dataclasses

    from avloc.tools.sharding.decode import DECODERS
    from avloc.tools.sharding.planning import job_hash

    for decoder in DECODERS:
        if decoder != job.options.decoder:
            options = dataclasses.replace(job.options, decoder=decoder)
            if job_hash(job.stem, job.tasks, options) == stats.get("job_hash"):
                return decoder
    return None


def _sources_changed(job, stats: dict) -> bool:
    """A clip of a done shard whose file changed since the shard was built (stats without
    ``sources``, from an older version, cannot tell and count as unchanged)."""
    sources = stats.get("sources")
    if not isinstance(sources, dict):
        return False
    for task in job.tasks:
        recorded = sources.get(task.key)
        if recorded is not None and list(recorded) != [task.file_size, task.mtime_ns]:
            return True
    return False


def reconcile(out: Path, jobs: list, *, overwrite: bool) -> tuple[list, list]:
    """Clean the output folder for this plan; returns (pending jobs, jobs already done)."""
    remove_stale_temps(out)  # temporary files never hold finished work
    if (out / MANIFEST_NAME).parent.is_dir():
        remove_stale_temps((out / MANIFEST_NAME).parent)
    files = shard_files(out)
    if overwrite:
        for kinds in files.values():
            for path in kinds.values():
                path.unlink(missing_ok=True)
        for name in (MANIFEST_NAME, schema.LEGACY_MANIFEST_PATH, SUMMARY_NAME, MISSING_NAME, CARD_NAME):
            (out / name).unlink(missing_ok=True)
        return list(jobs), []
    _check_done_shards_belong(out, files, jobs)
    pending, done = [], []
    for job in jobs:
        kinds = files.get(job.stem, {})
        stats = read_stats(kinds["_stats.json"]) if "_stats.json" in kinds else None
        complete = (stats is not None and all(k in kinds for k in (".tar", ".idx", ".parquet"))
                    and kinds[".tar"].stat().st_size == stats.get("tar_bytes") and _parquet_intact(kinds[".parquet"]))
        if complete and not _sources_changed(job, stats):
            done.append(job)
            continue
        for path in kinds.values():  # never marked done (killed mid-shard) or damaged since: rebuild
            path.unlink(missing_ok=True)
        pending.append(job)
    return pending, done
