"""What the clip generator and the benchmark copies share: ids, the output folder, file writes,
and running per-item jobs over processes with progress."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from avloc.errors import InputError
from avloc.utils.atomic import atomic_write_bytes
from avloc.utils.progress import Progress

YTID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def make_ytids(rng: np.random.Generator, n: int) -> list:
    """Unique 11-character YouTube-like ids; every 6th starts with '-' and every 6th
    (offset 3) carries an inner '_', as real ids do, to exercise file-name handling."""
    ids, seen = [], set()
    while len(ids) < n:
        i = len(ids)
        chars = [YTID_ALPHABET[k] for k in rng.integers(0, 62, size=11)]
        if i % 6 == 0:
            chars[0] = "-"
        elif i % 6 == 3:
            chars[int(rng.integers(1, 10))] = "_"
        ytid = "".join(chars)
        if ytid not in seen:
            seen.add(ytid)
            ids.append(ytid)
    return ids


def ensure_output_dir(path: Path) -> None:
    """Create ``path`` (with parents) or say in one line why it cannot be written to."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK):
        raise InputError(f"output folder is not writable: {path}")


def write_file(path: Path, data: bytes) -> None:
    """Atomic write (fsynced), creating the parent folders."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data, fsync=True)


def json_bytes(obj, indent=1) -> bytes:
    return (json.dumps(obj, indent=indent, ensure_ascii=False) + "\n").encode("utf-8")


def run_jobs(jobs: list, worker, workers: int, progress: bool, desc: str, unit: str = "item") -> list:
    """Run ``worker(job)`` over jobs, in processes when workers > 1; results in job order.

    ``worker`` never raises: it returns a dict whose ``ok`` is False on failure, counted as failed.
    """
    results = [None] * len(jobs)
    with Progress(len(jobs), desc, unit, enabled=progress and len(jobs) > 0) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                results[i] = worker(job)
                bar.update(1, failed=int(not results[i]["ok"]))
        else:
            # fork: no re-import of the caller's __main__ (spawn would need a main guard there)
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("fork")) as pool:
                futures = {pool.submit(worker, job): i for i, job in enumerate(jobs)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update(1, failed=int(not results[futures[fut]]["ok"]))
    return results
