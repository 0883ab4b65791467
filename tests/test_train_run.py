"""`avloc train` end to end on tiny real shards: run folder, validation-based best.pt, SIGKILL + --resume,
refusals with one-line messages. Every run is a real subprocess of the CLI."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from click.testing import CliRunner

from avloc.checkpoint import save_checkpoint
from avloc.errors import InputError
from avloc.utils.system import cpu_has_native_bf16
from cli_invoke import avloc_cli
from loader_fixtures import write_shards

TINY = ["batch_size=4", "image_size=32", "visual_weights=none", "dim=32", "num_workers=0", "loader=torch",
        "log_every=1", "progress=false", "epochs=3", "warmup_epochs=1", "checkpoint_every=3", "lr_schedule=cosine"]


def train_cmd(shards, run_dir, *extra_sets, resume=False):
    cmd = [sys.executable, "-m", "avloc.cli", "train", "--shards", str(shards), "--out", str(run_dir)]
    for item in TINY + list(extra_sets):
        cmd += ["--set", item]
    return cmd + (["--resume"] if resume else [])


def env():
    # one intra-op thread: CPU kernels are then bit-reproducible, so a resumed run can be compared exactly
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run_train(shards, run_dir, *extra_sets, resume=False, timeout=480):
    return subprocess.run(train_cmd(shards, run_dir, *extra_sets, resume=resume), capture_output=True, text=True,
                          timeout=timeout, env=env())


def rows(run_dir, kind=None):
    out = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in out if kind is None or r["kind"] == kind]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-shards")
    write_shards(root, {"train": 16, "val": 6}, samples_per_shard=8)  # 4 steps per epoch at batch 4
    return root


@pytest.fixture(scope="module")
def full_run(shards, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("full") / "run"
    proc = run_train(shards, run_dir)
    assert proc.returncode == 0, proc.stderr
    return run_dir, proc


def test_run_folder_metrics_and_validation_selection(full_run):
    run_dir, proc = full_run
    cfg = (run_dir / "config.yaml").read_text()
    assert "batch_size: 4" in cfg and "lr: 0.0001" in cfg
    start = rows(run_dir, "start")[0]
    assert start["device"] == "cpu" and start["precision"] == "fp32" and start["loader"] == "torch"
    assert start["kernel"] == "torch" and start["steps_per_epoch"] == 4 and start["spec_mask_fill"] == "zero"
    assert "device cpu, precision fp32, loader torch" in proc.stderr

    train = rows(run_dir, "train")
    assert [r["step"] for r in train] == list(range(1, 13))
    for r in train:
        assert {"contrastive", "fns1", "tns", "fns2", "samples_per_s", "data_wait_fraction"} <= set(r)
        assert 0.0 <= r["data_wait_fraction"] <= 1.0
        expected = r["contrastive"] + (0 if r["warmup"] else 100 * (r["fns1"] + r["tns"] + r["fns2"]))
        assert r["loss"] == pytest.approx(expected, rel=1e-5)
    assert [r["warmup"] for r in train] == [True] * 4 + [False] * 8
    # cosine schedule, set per epoch (the resume test below retraces it from a mid-epoch checkpoint)
    lrs = [1e-4 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * e / 3))) for e in range(3)]
    assert [r["lr"] for r in train] == pytest.approx([lr for lr in lrs for _ in range(4)], rel=1e-9)

    val = rows(run_dir, "val")
    assert [r["epoch"] for r in val] == [0, 1, 2]
    # the fixture's val split has boxes on half its samples: localisation next to the trivial baselines
    for r in val:
        assert r["val_boxes"] == 3 and r["val_samples"] == 6
        assert {"val_ap50", "val_auc", "val_pointing", "baseline_centre_ap50", "baseline_centre_pointing",
                "baseline_whole_ap50", "val_retrieval_a2i"} <= set(r)
        assert r["selection_metric"] == "ap50"
        # the same items with the audio replaced, and the spread of the val embeddings
        assert {"val_silence_ap50", "val_shuffled_ap50", "val_audio_cos", "val_visual_cos"} <= set(r)
        assert -1.0 <= r["val_audio_cos"] <= 1.0
        if r["val_ap50"] > 0:
            assert isinstance(r["val_uses_sound"], bool) and "keep" in r["val_audio_verdict"]

    # the collapse monitor's probe every log_every (1) steps: spread and weighted gradient norms per term
    probes = rows(run_dir, "probe")
    assert [p["step"] for p in probes] == list(range(1, 13))
    assert all("grad_fns1" not in p for p in probes[:4]) and all(p["grad_fns1"] > 0 for p in probes[4:])
    assert all(0.0 <= p["retrieval_a2i"] <= 1.0 and "audio_cos" in p for p in probes)

    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    improved = [r for r in val if r["improved"]]
    assert improved[0]["epoch"] == 0
    chosen = improved[-1]
    assert best["selected_on"] == "ap50" and best["step"] == chosen["step"]
    assert best["selected_value"] == chosen["val_ap50"]
    assert max(r["val_ap50"] for r in val) == chosen["val_ap50"]

    from avloc.model import FNACModel

    model = FNACModel(**best["model_config"])
    model.load_state_dict(best["model"])
    latest = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert latest["step"] == 12 and latest["samples_seen"] == 48 and latest["epoch_done"]
    end = rows(run_dir, "end")[-1]
    assert end["steps"] == 12 and end["samples_seen"] == 48


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bf16 (avx512_bf16/amx_bf16)")
def test_bf16_autocast_trains_on_a_cpu_with_native_bf16(shards, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(shards, run_dir, "precision=bf16", "epochs=2")
    assert proc.returncode == 0, proc.stderr
    assert rows(run_dir, "start")[0]["precision"] == "bf16" and "precision bf16" in proc.stderr
    train = rows(run_dir, "train")
    assert len(train) == 8 and all(math.isfinite(r["loss"]) for r in train)
    weights = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)["model"]
    assert all(t.dtype != torch.bfloat16 for t in weights.values())  # autocast: the weights stay fp32


def test_training_writes_curves_png_at_every_validation(full_run):
    from PIL import Image

    run_dir, _ = full_run
    png = run_dir / "curves.png"
    assert png.is_file() and not list(run_dir.glob(".curves.png.*"))
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 800
        pixels = np.asarray(img.convert("L"))
    assert pixels.std() > 5  # something was drawn


def test_spec_mask_fill_reaches_the_train_loader(shards, tmp_path):
    from avloc.training.config import build_config
    from avloc.training.trainer import Trainer

    cfg = build_config(None, TINY + ["spec_mask_fill=silence"])
    trainer = Trainer.build(cfg, shards)
    assert trainer.loader.options.spec_mask_fill == "silence"
    batch = next(iter(trainer.loader))
    assert not (batch["spec"] == 0).any()  # masks hold silence, and the fixture's spectra are never 0


def test_sigkill_then_resume_matches_uninterrupted(shards, full_run, tmp_path):
    full_dir, _ = full_run
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(train_cmd(shards, run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env())
    latest = run_dir / "checkpoints" / "latest.pt"
    deadline = time.time() + 180
    killed_after = None
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "metrics.jsonl").is_file():
            steps = [r["step"] for r in rows(run_dir, "train")]
            if steps and steps[-1] >= 7 and latest.is_file():  # past the checkpoint at step 6, mid epoch 2 of 3
                proc.send_signal(signal.SIGKILL)
                killed_after = steps[-1]
                break
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed_after is not None and proc.returncode == -signal.SIGKILL, "the run was not killed mid-way"
    saved = torch.load(latest, weights_only=True)
    assert 6 <= saved["step"] < 12

    resumed = run_train(shards, run_dir, resume=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {latest}" in resumed.stderr

    end, ref_end = rows(run_dir, "end")[-1], rows(full_dir, "end")[-1]
    assert (end["steps"], end["samples_seen"]) == (ref_end["steps"], ref_end["samples_seen"]) == (12, 48)
    # metrics.jsonl has each step once: rows logged after the checkpoint by the killed process were dropped
    assert [r["step"] for r in rows(run_dir, "train")] == list(range(1, 13))
    # same data order, augmentation and dropout RNG: the resumed run retraces the uninterrupted one
    ref_loss = {r["step"]: r["loss"] for r in rows(full_dir, "train")}
    for r in rows(run_dir, "train"):
        assert r["loss"] == pytest.approx(ref_loss[r["step"]], rel=1e-6), r["step"]
    a = torch.load(latest, weights_only=True)["model"]
    b = torch.load(full_dir / "checkpoints" / "latest.pt", weights_only=True)["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-6, atol=1e-7, msg=name)


def test_refusals_are_one_line(shards, full_run, tmp_path):
    full_dir, _ = full_run
    # an existing run is never overwritten without --resume
    proc = run_train(shards, full_dir)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr and "Traceback" not in proc.stderr
    # resuming with a changed recipe value names it
    proc = run_train(shards, full_dir, "lr=0.5", resume=True)
    assert proc.returncode == 2 and "different config" in proc.stderr and "lr:" in proc.stderr

    # a checkpoint from another schema
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    torch.save({"schema": "someone-else/3", "model": {}}, other / "checkpoints" / "latest.pt")
    proc = run_train(shards, other, resume=True)
    assert proc.returncode == 2 and "is not an avloc-checkpoint/1 checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
    # an avloc checkpoint without training state (e.g. an exported model)
    save_checkpoint(other / "checkpoints" / "latest.pt", model_state={}, model_config={})
    proc = run_train(shards, other, resume=True)
    assert proc.returncode == 2 and "no resumable training state" in proc.stderr

    # no val split to validate on
    no_val = tmp_path / "noval"
    write_shards(no_val, {"train": 8})
    proc = run_train(no_val, tmp_path / "r2")
    assert proc.returncode == 2 and "no 'val' split" in proc.stderr


def test_progress_lines_without_a_terminal_umask_modes_and_stale_temps(shards, tmp_path, monkeypatch, capsys):
    """In-process run, stderr not a terminal: timestamped progress lines with ETA and a final line that
    stays; files get the umask's modes (not 0600); temporaries a killed writer left are removed."""
    from avloc.training.config import build_config
    from avloc.training.logs import MetricsLog
    from avloc.training.loop import run_training

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    stale = [run_dir / "checkpoints" / ".latest.pt.k1ll3d.tmp", run_dir / ".config.yaml.k1ll3d.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    monkeypatch.setenv("AVLOC_PROGRESS_INTERVAL", "0")
    previous = os.umask(0o022)
    try:
        cfg = build_config(None, TINY + ["progress=true", "epochs=1", "warmup_epochs=0", "tensorboard=off"])
        summary = run_training(shards, run_dir, config=cfg)
        MetricsLog(run_dir, "off").truncate_after(summary["steps"])  # the resume path rewrites metrics.jsonl
    finally:
        os.umask(previous)
    err = capsys.readouterr().err
    progress = [line for line in err.splitlines() if "] train: " in line]
    assert progress[0].startswith("[") and "train: 1/4 (25.0%)" in progress[0] and "step/s ETA" in progress[0]
    assert "epoch=1/4" not in err and "epoch=1/1" in progress[0] and "loss=" in progress[0]
    assert "train: 4/4 (100.0%)" in progress[-1] and "done in" in progress[-1]
    lines = err.splitlines()  # the final line stays (no carriage return rewrites it), before the summary
    assert "\r" not in err and lines.index(progress[-1]) < [i for i, x in enumerate(lines) if x.startswith("done:")][0]
    for path in stale:
        assert not path.exists()
    for name in ("config.yaml", "metrics.jsonl", "checkpoints/latest.pt", "checkpoints/best.pt"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o644, name
    assert not [p for p in run_dir.rglob(".*") if p.is_file()]


# ---------------------------------------------------------------- refusals that must leave the run untouched

def _snapshot(run_dir: Path) -> dict:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_resume_without_latest_refuses_and_touches_nothing(shards, full_run, tmp_path):
    import shutil

    run_dir = tmp_path / "finished"
    shutil.copytree(full_run[0], run_dir)
    (run_dir / "checkpoints" / "latest.pt").unlink()  # e.g. removed to save space; best.pt and the history stay
    before = _snapshot(run_dir)
    proc = run_train(shards, run_dir, resume=True)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "nothing to resume" in lines[0] and str(run_dir / "checkpoints" / "latest.pt") in lines[0]
    assert _snapshot(run_dir) == before  # metrics history, best.pt and config.yaml byte for byte

    fresh = tmp_path / "fresh"
    proc = run_train(shards, fresh, resume=True)
    assert proc.returncode == 2 and "nothing to resume" in proc.stderr and not fresh.exists()

    # the library refuses too (a notebook or torchrun calls it without the command's checks)
    from avloc.training.config import build_config
    from avloc.training.loop import run_training

    with pytest.raises(InputError, match="nothing to resume"):
        run_training(shards, run_dir, config=build_config(None, TINY), resume=True)
    assert _snapshot(run_dir) == before


def test_unusable_out_is_one_line_before_any_work(shards, tmp_path):
    from mounts import tmpfs

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [(a_file, "is a file, not a folder"), (a_file / "run", "is a file"),
             (Path("/proc/avloc-run"), "cannot be created: /proc is not writable")]
    with tmpfs(tmp_path / "ro", 1 << 20, read_only=True) as read_only:
        cases.append((read_only / "run", f"{read_only} is not writable"))
        cases.append((read_only, f"{read_only} is not writable"))
        for k, (out, message) in enumerate(cases):
            if k == 0:  # one case through a real process; the rest in-process through the same entry point
                proc = run_train(shards, out, timeout=60)
                code, stderr = proc.returncode, proc.stderr
            else:
                result = CliRunner().invoke(avloc_cli, train_cmd(shards, out)[3:])
                code, stderr = result.exit_code, result.stderr
            lines = stderr.strip().splitlines()
            assert code == 2 and len(lines) == 1 and message in lines[0], (out, stderr)
            assert "Traceback" not in stderr


def test_full_disk_in_a_checkpoint_write_is_one_line_and_keeps_the_previous_file(tmp_path):
    from avloc.checkpoint import load_checkpoint, save_checkpoint
    from avloc.errors import AvlocError
    from mounts import tmpfs

    with tmpfs(tmp_path / "small", 1 << 20) as disk:
        path = disk / "checkpoints" / "latest.pt"
        save_checkpoint(path, model_state={"w": torch.arange(50_000, dtype=torch.float32)}, model_config={}, step=1)
        with pytest.raises(AvlocError) as err:  # the next one does not fit beside it
            save_checkpoint(path, model_state={"w": torch.zeros(300_000)}, model_config={}, step=2)
        text = str(err.value)
        assert text.startswith(f"cannot write {path}: No space left on device (") and re.search(r"\(\d+ [KM]iB free\)", text)
        assert "\n" not in text and "previous file" in text
        kept = load_checkpoint(path)
        assert kept["step"] == 1 and torch.equal(kept["model"]["w"], torch.arange(50_000, dtype=torch.float32))
        assert [p.name for p in path.parent.iterdir()] == ["latest.pt"]  # no temporary left behind


@pytest.mark.slow
def test_training_on_a_disk_that_fills_up_stops_with_one_line(shards, full_run, tmp_path):
    """The real run: latest.pt (step 3) and best.pt fit, the next latest.pt does not fit beside them."""
    from mounts import tmpfs

    ckpts = full_run[0] / "checkpoints"
    size = (ckpts / "latest.pt").stat().st_size + (ckpts / "best.pt").stat().st_size + (8 << 20)
    with tmpfs(tmp_path / "disk", size) as disk:
        run_dir = disk / "run"
        proc = run_train(shards, run_dir)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        latest = run_dir / "checkpoints" / "latest.pt"
        assert lines[-1].startswith(f"avloc: error: cannot write {latest}: No space left on device (")
        assert "MiB free" in lines[-1]
        saved = torch.load(latest, weights_only=True)
        assert saved["step"] == 3  # the checkpoint before the failed write, whole
        assert not [p for p in run_dir.rglob(".*.tmp")]
