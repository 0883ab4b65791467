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
from test_shard_clips import make_bad_inputs, make_clip, make_long_clip


@pytest.fixture(scope="module")
def bad_clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    made = make_bad_inputs(root / "clips")
    return root / "clips", made


@pytest.fixture(scope="module")
def both_sets(bad_clips, tmp_path_factory):
    """The corpus sharded with each decoder: decoder -> (out, report, rows, made, clips)."""
    clips, made = bad_clips
    sets = {}
    for decoder in ("ffmpeg", "pyav"):
        out = tmp_path_factory.mktemp(f"out-{decoder}")
        report = run_shard(ShardConfig(clips=clips, out=out, samples_per_shard=5, workers=2, decoder=decoder,
                                       progress=False))
        rows = {r["source_path"]: r for r in pq.read_table(out / schema.MANIFEST_PATH).to_pylist()}
        sets[decoder] = (out, report, rows, made, clips)
    return sets


@pytest.fixture(scope="module", params=["ffmpeg", "pyav"])
def sharded(request, both_sets):
    return both_sets[request.param]


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
    "two_pixels": "frame_too_small",
}
EXPECTED_FLAGS = {
    "short_audio": "short_audio_tiled",
    "silent": "silent_audio",
    "odd_resolution": "odd_resolution",
    "tiny_resolution": "frame_upscaled",
    "rotated": "rotated",
    "vfr": "variable_frame_rate",
    "non_ascii": "key_rewritten",
    "audio_after_video": "audio_after_video",
    "cut_at_95": "audio_truncated",
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
                                          "no_video_stream": 1, "unreadable_file": 1, "frame_too_small": 1}
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
    assert re.search(r" failed 7\b", lines[-1]), lines[-1]
    assert "; failed: 7" in result.stdout


def test_the_set_does_not_depend_on_the_decoder(both_sets):
    """Every file gets the same status, reason and flags from both decoders, and every sample the
    same frame (within JPEG noise), spectrogram (within float16 rounding) and metadata."""
    a_out, _, a_rows, _, _ = both_sets["ffmpeg"]
    b_out, _, b_rows, _, _ = both_sets["pyav"]
    assert a_rows.keys() == b_rows.keys()
    for path in a_rows:
        a, b = a_rows[path], b_rows[path]
        assert (a["status"], a["reason"], a["flags"]) == (b["status"], b["reason"], b["flags"]), path
        for column in ("frame_time", "audio_seconds", "window_start", "width", "height", "rotation"):
            assert a[column] == pytest.approx(b[column], abs=1e-3), (path, column)
    a_samples, b_samples = _samples(a_out), _samples(b_out)
    assert a_samples.keys() == b_samples.keys() and a_samples
    for key in a_samples:
        fa = np.asarray(Image.open(io.BytesIO(a_samples[key]["jpg"])), dtype=np.float32)
        fb = np.asarray(Image.open(io.BytesIO(b_samples[key]["jpg"])), dtype=np.float32)
        assert fa.shape == fb.shape and np.abs(fa - fb).mean() < 1.0, key
        sa = schema.decode_spec(a_samples[key]["spec.f16"]).astype(np.float32)
        sb = schema.decode_spec(b_samples[key]["spec.f16"]).astype(np.float32)
        # equal sources give equal float16 values; resampled ones differ by a few LSB of int16 audio
        assert np.abs(sa - sb).max() <= 0.05 and np.abs(sa - sb).mean() <= 1e-3, key
        ma = json.loads(a_samples[key]["json"])
        mb = json.loads(b_samples[key]["json"])
        assert {k: v for k, v in ma.items() if k != "frame_time"} == {k: v for k, v in mb.items() if k != "frame_time"}


# --- clips that hang, run away with memory or kill their worker: named, recorded, the run finishes ---

def _manifest_rows(out):
    assert (out / "dataset.json").is_file()
    return {r["source_path"]: r for r in pq.read_table(out / schema.MANIFEST_PATH).to_pylist()}


@pytest.mark.parametrize("decoder", ["ffmpeg", "pyav"])
def test_a_fifo_named_like_a_clip_times_out(tmp_path, decoder):
    """Opening a FIFO blocks until a writer comes (a stalled network read does the same): the clip
    is given up after --clip-timeout, its worker replaced, and the shard finished without it."""
    clips = tmp_path / "clips"
    make_clip(clips / "goodclip001_000000.mp4", duration=2.0)
    make_clip(clips / "goodclip002_000000.mp4", duration=2.0)
    os.mkfifo(clips / "fifoclip001_000000.mp4")
    out = tmp_path / "out"
    report = run_shard(ShardConfig(clips=clips, out=out, workers=1, decoder=decoder, progress=False,
                                   clip_timeout_s=4.0))
    rows = _manifest_rows(out)
    fifo = rows["fifoclip001_000000.mp4"]
    assert fifo["status"] == "failed" and fifo["reason"] == "clip_timeout", fifo
    assert "fifoclip001_000000.mp4" in fifo["detail"] and "4 s" in fifo["detail"]
    assert report["ok"] == 2 and report["failed_by_reason"] == {"clip_timeout": 1}


def _pids_reading(path) -> list:
    """Processes that hold ``path`` open."""
    target = os.path.realpath(path)
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    pids.append(int(pid))
                    break
            except OSError:
                continue
    return pids


def test_a_worker_killed_on_a_clip_names_it_and_the_run_finishes(tmp_path):
    """The kernel's OOM killer sends SIGKILL: here the test sends it to the worker that is reading a
    clip (a FIFO that never delivers data). The clip is recorded as worker_died, the shard is rebuilt
    by a fresh worker, the manifest and dataset.json are written."""
    import signal
    import threading
    import time

    clips = tmp_path / "clips"
    for i in range(3):
        make_clip(clips / f"goodclip00{i}_000000.mp4", duration=2.0)
    fifo = clips / "fifoclip001_000000.mp4"
    os.mkfifo(fifo)
    killed = []

    def kill_the_reader():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:  # succeeds once a worker opens the FIFO for reading
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                time.sleep(0.05)
                continue
            pids = []
            while not pids and time.monotonic() < deadline:  # the reader holds the FIFO until we close it
                pids = [p for p in _pids_reading(fifo) if p != os.getpid()]
                time.sleep(0.05)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            os.close(fd)
            return

    thread = threading.Thread(target=kill_the_reader, daemon=True)
    thread.start()
    out = tmp_path / "out"
    report = run_shard(ShardConfig(clips=clips, out=out, workers=1, samples_per_shard=10, progress=False,
                                   clip_timeout_s=300.0))
    thread.join(5)
    assert killed, "no worker opened the FIFO"
    rows = _manifest_rows(out)
    row = rows[fifo.name]
    assert row["status"] == "failed" and row["reason"] == "worker_died", row
    assert fifo.name in row["detail"] and "SIGKILL" in row["detail"]
    assert report["ok"] == 3 and report["failed"] == 1
    assert not list(out.glob(".*.tmp"))  # the lost attempt's temporary shard files are gone


@pytest.fixture(scope="module")
def big_frame_clip(tmp_path_factory):
    """One 8K frame: decoding it needs far more than 64 MB."""
    return make_clip(tmp_path_factory.mktemp("big") / "bigframe001_000000.mp4", duration=1.0, fps=2,
                     size=(8192, 4320))


def test_a_frame_too_big_for_the_memory_bound_is_refused_before_decoding(tmp_path, big_frame_clip):
    clips = tmp_path / "clips"
    make_clip(clips / "goodclip001_000000.mp4", duration=2.0)
    (clips / big_frame_clip.name).symlink_to(big_frame_clip)
    report = run_shard(ShardConfig(clips=clips, out=tmp_path / "out", workers=1, decoder="pyav", progress=False,
                                   clip_memory_mb=100))
    row = _manifest_rows(tmp_path / "out")[big_frame_clip.name]
    assert row["reason"] == "memory_limit" and "8192x4320" in row["detail"], row
    assert report["ok"] == 1


@pytest.mark.parametrize("decoder", ["ffmpeg", "pyav"])
def test_a_clip_over_the_workers_memory_bound_is_recorded_and_its_worker_replaced(tmp_path, big_frame_clip,
                                                                                  monkeypatch, decoder):
    """With the size check off, the worker's address-space bound itself stops the 8K decode: the clip
    fails with memory_limit, that worker leaves, a fresh one finishes the shard (fork inherits the patch)."""
    from avloc.tools.sharding import decode

    monkeypatch.setattr(decode, "FRAME_MEMORY_FACTOR", 0)
    clips = tmp_path / "clips"
    make_clip(clips / "goodclip001_000000.mp4", duration=2.0)
    make_clip(clips / "goodclip002_000000.mp4", duration=2.0)
    (clips / big_frame_clip.name).symlink_to(big_frame_clip)
    report = run_shard(ShardConfig(clips=clips, out=tmp_path / "out", workers=1, decoder=decoder, progress=False,
                                   clip_memory_mb=64, samples_per_shard=10))
    row = _manifest_rows(tmp_path / "out")[big_frame_clip.name]
    assert row["status"] == "failed" and row["reason"] == "memory_limit", row
    assert report["ok"] == 2 and report["failed"] == 1


@pytest.fixture(scope="module")
def long_clip_folder(tmp_path_factory):
    clips = tmp_path_factory.mktemp("long") / "clips"
    make_clip(clips / "goodclip001_000000.mp4", duration=2.0)
    make_long_clip(clips / "longclip001_000000.mkv", seconds=1200.0)
    return clips


@pytest.mark.parametrize("decoder", ["ffmpeg", "pyav"])
def test_a_20_minute_clip_shards_under_a_small_memory_bound(long_clip_folder, tmp_path, decoder):
    """Decoding the whole 20-minute track would need ~80 MB here (and fails under this 64 MB bound);
    the window alone fits. The sample is the central 3 s of the whole track (the 1 kHz half
    starts at 600 s, so the window holds both tones)."""
    out = tmp_path / "out"
    report = run_shard(ShardConfig(clips=long_clip_folder, out=out, workers=1, decoder=decoder, progress=False,
                                   clip_memory_mb=64))
    assert report["ok"] == 2, report["failed_by_reason"]
    row = _manifest_rows(out)["longclip001_000000.mkv"]
    assert row["audio_seconds"] == pytest.approx(1200.0) and row["window_start"] == pytest.approx(598.5)
    assert row["frame_time"] == pytest.approx(600.0) and "audio_after_video" not in row["flags"]
    spec = schema.decode_spec(_samples(out)[row["key"]]["spec.f16"]).astype(np.float32)
    bins = spec.argmax(axis=0)
    low, high = round(440 / (schema.SAMPLE_RATE / schema.NPERSEG)), round(1000 / (schema.SAMPLE_RATE / schema.NPERSEG))
    assert (bins[:90] == low).all() and (bins[-90:] == high).all()
