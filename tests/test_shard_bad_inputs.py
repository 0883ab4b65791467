"""Every bad-input kind gets its reason or flag in the manifest; nothing crashes, nothing is
substituted silently, the run completes (exit 0), with both decoders."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from avloc import schema
from cli_invoke import avloc_cli
from avloc.tools.sharding import ShardConfig, run_shard
from test_shard_clips import make_bad_inputs, make_clip


@pytest.fixture(scope="module")
def bad_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    made = make_bad_inputs(root / "clips")
    return root / "clips", made


@pytest.fixture(scope="module", params=["ffmpeg", "pyav"])
def sharded(request, bad_clips, tmp_path_factory):
    clips, made = bad_clips
    out = tmp_path_factory.mktemp(f"out-{request.param}")
    report = run_shard(ShardConfig(clips=clips, out=out, samples_per_shard=5, workers=2, decoder=request.param,
                                   progress=False))
    rows = {r["source_path"]: r for r in pq.read_table(out / "manifest.parquet").to_pylist()}
    return out, report, rows, made, clips


def _row(sharded, kind):
    out, report, rows, made, clips = sharded
    return rows[made[kind].relative_to(clips).as_posix()]


EXPECTED_FAILURES = {
    "zero_bytes": "empty_file",
    "corrupt": "corrupt_file",
    "truncated": "corrupt_file",
    "no_audio": "no_audio_stream",
    "no_video": "no_video_stream",
    "unreadable": "unreadable_file",
}
EXPECTED_FLAGS = {
    "short_audio": "short_audio_tiled",
    "silent": "silent_audio",
    "odd_resolution": "odd_resolution",
    "tiny_resolution": "frame_upscaled",
    "rotated": "rotated",
    "vfr": "variable_frame_rate",
    "non_ascii": "key_rewritten",
}


def test_every_file_has_one_manifest_row(sharded):
    out, report, rows, made, clips = sharded
    files = [p for p in clips.rglob("*") if p.is_symlink() or p.is_file()]
    assert len(rows) == len(files) == report["files_found"]
    assert report["ok"] + report["failed"] + report["duplicates"] == len(files)


@pytest.mark.parametrize("kind,reason", sorted(EXPECTED_FAILURES.items()))
def test_failures_have_reasons(sharded, kind, reason):
    row = _row(sharded, kind)
    assert row["status"] == "failed" and row["reason"] == reason, row
    assert row["detail"] and "\n" not in row["detail"]
    assert row["shard"] is None


@pytest.mark.parametrize("kind,flag", sorted(EXPECTED_FLAGS.items()))
def test_survivors_are_flagged(sharded, kind, flag):
    row = _row(sharded, kind)
    assert row["status"] == "ok" and flag in row["flags"], row
    assert row["shard"] is not None


def test_good_clips_have_no_problem_flags(sharded):
    for kind in ("good", "good_stereo_44k"):
        row = _row(sharded, kind)
        assert row["status"] == "ok"
        assert set(row["flags"]) <= {"frame_upscaled"}, row["flags"]


def test_duplicate_reported_and_one_kept(sharded):
    kept, dropped = _row(sharded, "duplicate_kept"), _row(sharded, "duplicate_dropped")
    assert kept["status"] == "ok" and kept["clip_id"] == "duplicate01_000030"
    assert dropped["status"] == "duplicate" and dropped["clip_id"] == kept["clip_id"]
    assert dropped["detail"] == "kept duplicate01_000030.mp4"


def _samples(out):
    samples = {}
    for tar in sorted(out.glob("*.tar")):
        with tarfile.open(tar) as t:
            for m in t.getmembers():
                key, ext = m.name.split(".", 1)
                samples.setdefault(key, {})[ext] = t.extractfile(m).read()
    return samples


def test_sample_contents_of_the_odd_cases(sharded):
    out, report, rows, made, clips = sharded
    samples = _samples(out)
    assert len(samples) == report["ok"]
    for key in samples:  # every key is tar/webdataset safe
        assert key.isascii() and "." not in key and len(key) <= 80
    non_ascii = _row(sharded, "non_ascii")
    meta = schema.SampleMeta.from_json_bytes(samples[non_ascii["key"]]["json"])
    assert meta.clip_id == "café ünïcödé clip" and meta.source_path == "café ünïcödé clip.mp4"
    # rotation honoured: the stored frame is portrait and is the upright clip's frame turned a quarter
    upright = np.asarray(Image.open(io.BytesIO(samples[_row(sharded, "good")["key"]]["jpg"])), dtype=np.float32)
    rotated = np.asarray(Image.open(io.BytesIO(samples[_row(sharded, "rotated")["key"]]["jpg"])), dtype=np.float32)
    assert rotated.shape == (328, 246, 3)
    assert np.abs(np.rot90(upright) - rotated).mean() < 4.0  # JPEG noise only
    # silent audio: the spectrogram sits on the log floor; no substitute sound
    silent = schema.decode_spec(samples[_row(sharded, "silent")["key"]]["spec.f16"]).astype(np.float32)
    assert np.abs(silent - np.log(schema.LOG_FLOOR)).max() < 0.01
    # short audio: the 1.2 s tone is tiled to 3 s, so every frame holds the tone
    short = _row(sharded, "short_audio")
    assert short["audio_seconds"] == pytest.approx(1.2, abs=0.05)
    spec = schema.decode_spec(samples[short["key"]]["spec.f16"]).astype(np.float32)
    tone_bin = round(440 / (schema.SAMPLE_RATE / schema.NPERSEG))
    assert (spec.argmax(axis=0) == tone_bin).mean() > 0.9
    # vfr: the frame time is the real timestamp of a frame near the centre (frames here are 0.1 s apart)
    vfr = _row(sharded, "vfr")
    assert abs(vfr["frame_time"] - vfr["duration"] / 2) <= 0.1
    assert round(vfr["frame_time"] * 1000) % 20 == 0  # on a real frame timestamp, not the requested time


def test_report_counts(sharded):
    out, report, rows, made, clips = sharded
    assert report["failed_by_reason"] == {"corrupt_file": 2, "empty_file": 1, "no_audio_stream": 1,
                                          "no_video_stream": 1, "unreadable_file": 1}
    assert report["duplicates"] == 1
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["counts"]["train"] == report["ok"]


def test_cli_exit_zero_with_failed_clips(bad_clips, tmp_path):
    clips, _ = bad_clips
    result = CliRunner().invoke(avloc_cli, ["shard", "--clips", str(clips), "--out", str(tmp_path / "o"), "--workers", "1",
                                      "--no-progress", "--samples-per-shard", "50"])
    assert result.exit_code == 0, result.output
    assert "failed corrupt_file: 2" in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permission bits")
def test_permission_denied_file(tmp_path):
    clips = tmp_path / "clips"
    clip = make_clip(clips / "noperm00001_000000.mp4", duration=1.0)
    clip.chmod(0)
    try:
        report = run_shard(ShardConfig(clips=clips, out=tmp_path / "o", workers=1, progress=False))
    finally:
        clip.chmod(0o644)
    assert report["failed_by_reason"] == {"unreadable_file": 1}


def test_progress_counts_failed_clips(bad_clips, tmp_path, monkeypatch):
    """Without a terminal, progress lines count the clips that failed so far (workers report them)."""
    monkeypatch.setenv("AVLOC_PROGRESS_INTERVAL", "0")
    clips, _ = bad_clips
    result = CliRunner().invoke(avloc_cli, ["shard", "--clips", str(clips), "--out", str(tmp_path / "o"),
                                            "--workers", "2", "--samples-per-shard", "5"])
    assert result.exit_code == 0, result.output
    lines = [ln for ln in result.stderr.splitlines() if "] shard: " in ln]
    assert lines and "done in" in lines[-1]
    assert re.search(r" failed 6\b", lines[-1]), lines[-1]
    assert "; failed: 6" in result.stdout
