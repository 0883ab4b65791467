"""Kill `avloc shard` with SIGKILL mid-run, then rerun: no half-written shard is ever visible and
the finished set has every clip exactly once, identical to an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from test_shard_clips import make_clip

N_CLIPS = 10


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill-clips")
    first = make_clip(root / "killclip000_000000.mp4", duration=3.2, size=(96, 64))
    for i in range(1, N_CLIPS):  # same bytes, different ids: decoding cost is what matters here
        (root / f"killclip{i:03d}_{i:06d}.mp4").write_bytes(first.read_bytes())
    return root


def _command(clips, out, workers=2):
    return [sys.executable, "-m", "avloc.cli", "shard", "--clips", str(clips), "--out", str(out), "--workers",
            str(workers), "--samples-per-shard", "2", "--no-progress", "--seed", "7"]


def _check_visible_shards_complete(out: Path) -> None:
    """Every visible .tar is a whole tar whose index lists exactly its samples."""
    for tar in out.glob("*.tar"):
        with tarfile.open(tar) as t:
            names = t.getnames()
        idx = tar.with_suffix(".idx")
        assert idx.is_file(), f"{tar.name} visible without its index"
        head, *rows = idx.read_text().splitlines()
        assert int(head.split()[1]) == len(rows) == len({n.split(".", 1)[0] for n in names})


def _finished_keys(out: Path) -> list:
    summary = json.loads((out / "dataset.json").read_text())
    keys = []
    for entries in summary["shards"].values():
        for entry in entries:
            with tarfile.open(out / entry["name"]) as t:
                keys.extend(dict.fromkeys(n.split(".", 1)[0] for n in t.getnames()))
    return keys


def _shard_contents(out: Path) -> dict:
    contents = {}
    for tar in sorted(out.glob("*.tar")):
        with tarfile.open(tar) as t:
            contents[tar.name] = [n for n in t.getnames()]
    return contents


def _kill_when(cmd, condition, timeout=120.0):
    """Start cmd, SIGKILL it as soon as condition() is true; returns the exit code."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if condition():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    return proc.wait(timeout=timeout)


def _wait_for_workers_to_die(out: Path) -> None:
    """Workers die with their parent (PR_SET_PDEATHSIG); once they are gone nothing changes."""
    if not out.is_dir():  # killed before it made the folder (a slow start on a busy machine)
        return
    before = None
    for _ in range(50):
        now = sorted((p.name, p.stat().st_size) for p in out.iterdir())
        if now == before:
            return
        before = now
        time.sleep(0.1)


def test_sigkill_mid_shard_then_resume(clips, tmp_path):
    out = tmp_path / "shards"
    rc = _kill_when(_command(clips, out), lambda: out.is_dir() and any(out.glob(".*.tar.*.tmp")))
    assert rc == -signal.SIGKILL, "the run finished before it could be killed"
    _wait_for_workers_to_die(out)
    _check_visible_shards_complete(out)
    done_before = len(list(out.glob("*_stats.json")))
    assert done_before < N_CLIPS // 2  # the kill really interrupted the run

    result = subprocess.run(_command(clips, out), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{done_before} already done" in result.stderr
    keys = _finished_keys(out)
    assert len(keys) == len(set(keys)) == N_CLIPS
    assert not list(out.glob("*.tmp"))

    reference = tmp_path / "reference"
    subprocess.run(_command(clips, reference, workers=1), check=True, capture_output=True, timeout=300)
    assert _shard_contents(out) == _shard_contents(reference)


@pytest.mark.slow
def test_repeated_random_kills_converge(clips, tmp_path):
    out = tmp_path / "shards"
    rng = random.Random(0)
    for attempt in range(8):
        delay = rng.uniform(0.5, 6.0)
        start = time.monotonic()
        rc = _kill_when(_command(clips, out), lambda: time.monotonic() - start > delay)
        _wait_for_workers_to_die(out)
        _check_visible_shards_complete(out)
        if rc == 0:
            break
    subprocess.run(_command(clips, out), check=True, capture_output=True, timeout=300)
    keys = _finished_keys(out)
    assert len(keys) == len(set(keys)) == N_CLIPS
