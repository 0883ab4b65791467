"""A non-finite loss stops the run naming the step and the loss terms, or (asked) skips the step without trace.

The NaN enters through the real path: one clip's stored spectrogram is NaN in the shard, read by the
real loader, through the real model and losses.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import loader_fixtures
from loader_fixtures import write_shards

SETS = ["batch_size=4", "image_size=32", "visual_weights=none", "dim=32", "num_workers=0", "loader=torch",
        "epochs=1", "warmup_epochs=0", "log_every=1", "progress=false", "checkpoint_every=100"]
BAD_INDEX = 5


@pytest.fixture(scope="module")
def nan_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("nan-shards")
    clean = loader_fixtures.random_spec

    def spec_with_one_nan_clip(i, *, seed=0):
        spec = clean(i, seed=seed)
        return np.full_like(spec, np.nan) if i == BAD_INDEX else spec

    mp = pytest.MonkeyPatch()
    mp.setattr(loader_fixtures, "random_spec", spec_with_one_nan_clip)
    try:
        write_shards(root, {"train": 16, "val": 4}, samples_per_shard=8)
    finally:
        mp.undo()
    return root


def run(shards, run_dir, *extra):
    cmd = [sys.executable, "-m", "avloc.cli", "train", "--shards", str(shards), "--out", str(run_dir)]
    for item in SETS + list(extra):
        cmd += ["--set", item]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "2"})


def rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_stop_names_step_and_terms(nan_shards, tmp_path):
    proc = run(nan_shards, tmp_path / "run")
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("avloc: error: non-finite loss at step ")
    assert "contrastive=nan" in last and "loss=nan" in last and "Traceback" not in proc.stderr
    step = int(last.split("at step ")[1].split()[0])
    assert 1 <= step <= 4
    # the sample that carried the NaN is named with its shard, and no checkpoint is pointed at before one exists
    assert f"non-finite spec input in sample '{loader_fixtures.clip_key(BAD_INDEX)}' in shard train-000000.tar" in last
    assert "no checkpoint was written yet" in last and "latest.pt" not in last
    assert not (tmp_path / "run" / "checkpoints" / "latest.pt").exists()
    train_steps = [r["step"] for r in rows(tmp_path / "run") if r["kind"] == "train"]
    assert train_steps == list(range(1, step))  # nothing logged at or after the bad step
    assert all(math.isfinite(r["loss"]) for r in rows(tmp_path / "run") if r["kind"] == "train")


def test_skip_leaves_no_trace(nan_shards, tmp_path):
    proc = run(nan_shards, tmp_path / "run", "nonfinite=skip")
    assert proc.returncode == 0, proc.stderr
    assert "skipping step" in proc.stderr
    all_rows = rows(tmp_path / "run")
    end = all_rows[-1]
    assert end["kind"] == "end" and end["skipped_steps"] == 1
    assert end["steps"] == 3 and end["samples_seen"] == 16  # 4 batches read, 3 optimiser steps
    assert sum(r["kind"] == "nonfinite" for r in all_rows) == 1
    latest = torch.load(tmp_path / "run" / "checkpoints" / "latest.pt", weights_only=True)
    for name, t in latest["model"].items():  # weights and BatchNorm running statistics
        if t.is_floating_point():
            assert torch.isfinite(t).all(), name
    val = [r for r in all_rows if r["kind"] == "val"][0]
    assert math.isfinite(val["val_contrastive"])
