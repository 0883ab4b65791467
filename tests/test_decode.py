"""Decode backends: ffmpeg (one process per clip) and PyAV (in-process) give the same frame,
frame time and audio; rotation, resampling and the bad-file reasons."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from avloc import schema
from avloc.tools.sharding import decode
from avloc.tools.sharding.decode import DecodeFailure, FfmpegDecoder, PyAVDecoder, probe
from test_shard_clips import make_clip, make_long_clip


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("decode-clips")
    return {
        "plain": make_clip(root / "plain.mp4", duration=4.0),
        "rotated": make_clip(root / "rotated.mp4", duration=4.0, rotation=90),
        "rotated180": make_clip(root / "rotated180.mp4", duration=4.0, rotation=180),
        "rotated270": make_clip(root / "rotated270.mp4", duration=4.0, rotation=270),
        "stereo44k": make_clip(root / "stereo44k.mkv", duration=4.0, sample_rate=44100, channels=2),
        "vfr": make_clip(root / "vfr.mp4", duration=4.0, vfr=True),
        "webm_vp9_opus": make_clip(root / "webm.webm", duration=3.5, fps=30, sample_rate=48000,
                                   video_codec="libvpx-vp9", audio_codec="libopus"),
        "no_audio": make_clip(root / "no_audio.mp4", duration=2.0, audio=False),
    }


@pytest.mark.parametrize("name", ["plain", "rotated", "stereo44k", "vfr", "webm_vp9_opus"])
def test_backends_agree(clips, name):
    a = FfmpegDecoder().decode(clips[name])
    b = PyAVDecoder().decode(clips[name])
    assert a.frame.dtype == np.uint8 and a.frame.ndim == 3
    np.testing.assert_array_equal(a.frame, b.frame)  # same h264 decode + swscale defaults: bit-identical
    assert a.frame_time == pytest.approx(b.frame_time, abs=1e-4)
    assert a.info.rotation == b.info.rotation
    assert len(a.audio) == len(b.audio)
    # 16 kHz mono sources decode identically; resampled ones within a few LSB
    tol = 0 if name not in ("stereo44k", "webm_vp9_opus") else 64
    assert np.abs(a.audio.astype(np.int32) - b.audio.astype(np.int32)).max() <= tol


@pytest.mark.parametrize("threads", [1, 3])
def test_decoder_threads_do_not_change_results(clips, threads):
    ref = PyAVDecoder(threads=2).decode(clips["plain"])
    for decoder in (PyAVDecoder(threads=threads), FfmpegDecoder(threads=threads)):
        got = decoder.decode(clips["plain"])
        np.testing.assert_array_equal(got.frame, ref.frame)
        np.testing.assert_array_equal(got.audio, ref.audio)
        assert got.frame_time == ref.frame_time


def test_centre_frame_time_and_audio_length(clips):
    d = FfmpegDecoder().decode(clips["plain"])
    assert d.frame_time == pytest.approx(2.0)  # 4 s at 25 fps: frame 50
    assert d.info.duration == pytest.approx(4.0)
    assert len(d.audio) == 4 * schema.SAMPLE_RATE  # encoder padding trimmed
    assert d.frame.shape == (120, 160, 3)


def test_rotation_is_honoured(clips):
    upright = PyAVDecoder().decode(clips["plain"])
    for decoder in (FfmpegDecoder(), PyAVDecoder()):
        rotated = decoder.decode(clips["rotated"])
        assert rotated.info.rotation == 90
        assert rotated.frame.shape == (160, 120, 3)
        # display matrix 90 = a quarter turn counter-clockwise of the coded picture
        np.testing.assert_array_equal(rotated.frame, np.rot90(upright.frame))
        for turns, name in ((2, "rotated180"), (3, "rotated270")):
            other = decoder.decode(clips[name])
            assert other.info.rotation == 90 * turns
            np.testing.assert_array_equal(other.frame, np.rot90(decoder.decode(clips["plain"]).frame, turns))


def test_frame_nearest_the_centre(tmp_path):
    # 10.04 s at 25 fps: the centre is 5.02 s, the nearest frame is frame 125 at 5.0 s (VGG-SS's frame)
    clip = make_clip(tmp_path / "long.mp4", duration=10.04, size=(64, 48), audio_duration=10.04)
    for decoder in (FfmpegDecoder(), PyAVDecoder()):
        decoded = decoder.decode(clip)
        assert decoded.info.duration == pytest.approx(10.04)
        assert decoded.frame_time == pytest.approx(5.0)


def test_variable_frame_rate_detected(clips):
    assert probe(clips["vfr"]).variable_frame_rate
    assert not probe(clips["plain"]).variable_frame_rate


def test_one_ffmpeg_process_per_clip(clips, monkeypatch):
    launches = []
    real_run = subprocess.run

    def counting_run(*args, **kwargs):
        launches.append(args[0])
        return real_run(*args, **kwargs)

    monkeypatch.setattr(decode.subprocess, "run", counting_run)
    FfmpegDecoder().decode(clips["plain"])
    assert len(launches) == 1
    cmd = launches[0]
    assert sum(1 for x in cmd if x == "-i") == 2  # one process, the file opened twice (audio, seeked video)


def test_bad_files_raise_reasons(tmp_path, clips):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01not a video" * 100)
    missing = tmp_path / "missing.mp4"
    cases = {empty: "empty_file", garbage: "corrupt_file", missing: "unreadable_file", clips["no_audio"]: "no_audio_stream"}
    for path, reason in cases.items():
        with pytest.raises(DecodeFailure) as info:
            probe(path)
        assert info.value.reason == reason, (path, info.value)


def test_target_size():
    assert decode.target_size(320, 240, 256) == (341, 256)
    assert decode.target_size(240, 320, 256) == (256, 341)
    assert decode.target_size(16, 12, 256) == (341, 256)
    assert decode.target_size(256, 256, 256) == (256, 256)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    return make_long_clip(tmp_path_factory.mktemp("long") / "long.mkv", seconds=1200.0)


def _whole_track(decoder, path, monkeypatch):
    """The reference: the same decoder made to decode the whole track."""
    with monkeypatch.context() as m:
        m.setattr(decode, "LONG_CLIP_S", float("inf"))
        return decoder.decode(path)


@pytest.mark.parametrize("backend", [FfmpegDecoder, PyAVDecoder])
def test_a_long_clip_decodes_only_its_window(long_clip, backend, monkeypatch):
    """A 20-minute clip: only the central 3 s (and a margin) are decoded, seeked to; the samples
    are exactly those of a whole-track decode, at the same place; the frame is the same."""
    import time

    t0 = time.perf_counter()
    got = backend().decode(long_clip)
    window_s = time.perf_counter() - t0
    total = 1200 * schema.SAMPLE_RATE
    assert got.audio_total == total and got.audio_start == total // 2 - schema.WINDOW_SAMPLES // 2
    assert got.audio.shape == (schema.WINDOW_SAMPLES,) and got.audio.dtype == np.int16
    t0 = time.perf_counter()
    whole = _whole_track(backend(), long_clip, monkeypatch)
    whole_s = time.perf_counter() - t0
    assert whole.audio_total is None and len(whole.audio) == total
    np.testing.assert_array_equal(got.audio, whole.audio[got.audio_start:got.audio_start + schema.WINDOW_SAMPLES])
    np.testing.assert_array_equal(got.frame, whole.frame)
    assert got.frame_time == whole.frame_time == pytest.approx(600.0)
    assert window_s < whole_s / 2, (window_s, whole_s)  # measured in the same test: the window costs less


def test_a_long_compressed_clip_seeks_within_resampling_noise(tmp_path, monkeypatch):
    """66 s of 44.1 kHz stereo AAC (over LONG_CLIP_S): the seeked window's FNAC spectrogram matches the whole decode's
    (a resampler started elsewhere may shift the samples by a fraction of one), with both decoders,
    and the two decoders agree with each other."""
    from avloc.spectrogram import fnac_spectrogram_from_samples

    clip = make_clip(tmp_path / "long44.mp4", duration=66.0, size=(64, 48), fps=5, sample_rate=44100, channels=2)
    specs = []
    for backend in (FfmpegDecoder, PyAVDecoder):
        got = backend().decode(clip)
        assert got.audio_total == 66 * schema.SAMPLE_RATE and len(got.audio) == schema.WINDOW_SAMPLES
        whole = _whole_track(backend(), clip, monkeypatch)
        ref = whole.audio[got.audio_start:got.audio_start + schema.WINDOW_SAMPLES]
        spec, ref_spec = fnac_spectrogram_from_samples(got.audio)[0], fnac_spectrogram_from_samples(ref)[0]
        assert np.abs(spec - ref_spec).max() <= 0.05 and np.abs(spec - ref_spec).mean() <= 1e-3
        specs.append(spec)
    assert np.abs(specs[0] - specs[1]).max() <= 0.05 and np.abs(specs[0] - specs[1]).mean() <= 1e-3


@pytest.mark.parametrize("backend", [FfmpegDecoder, PyAVDecoder])
def test_a_faststart_clip_cut_at_95_percent_decodes_the_same_with_both(tmp_path, backend):
    clip = make_clip(tmp_path / "fs.mp4", duration=6.0, extra_video_args=("-movflags", "+faststart"))
    data = clip.read_bytes()
    clip.write_bytes(data[:int(len(data) * 0.95)])
    got, ref = backend().decode(clip), FfmpegDecoder().decode(clip)
    np.testing.assert_array_equal(got.frame, ref.frame)
    np.testing.assert_array_equal(got.audio, ref.audio)
    assert len(got.audio) < 5.75 * schema.SAMPLE_RATE  # the cut audio is shorter than the declared 6 s


def _processes_mentioning(text: str) -> list:
    """Live (not zombie) processes whose command line contains ``text``."""
    import os

    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                cmdline = fh.read().decode("utf-8", "replace")
            with open(f"/proc/{pid}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state not in ("Z", "X"):
            pids.append(int(pid))
    return pids


def _stalled_ffmpeg_worker(fifo, info):
    from avloc.tools.sharding.supervisor import become_group_leader

    become_group_leader()  # as a shard worker does first
    FfmpegDecoder(timeout_s=300).decode(fifo, info)


def test_the_ffmpeg_process_goes_with_its_lost_worker(tmp_path, clips):
    """A worker lost while its ffmpeg runs (here ffmpeg waits on a FIFO; the kernel's OOM killer
    kills only the worker): the supervisor kills the worker's process group, and the ffmpeg with
    it, so no ffmpeg is left to write a frame file into /dev/shm."""
    import multiprocessing as mp
    import os
    import signal
    import time

    from avloc.tools.sharding.supervisor import kill_process_group

    fifo = tmp_path / "stalled.mp4"
    os.mkfifo(fifo)
    worker = mp.get_context("fork").Process(target=_stalled_ffmpeg_worker, args=(fifo, probe(clips["plain"])))
    worker.start()
    deadline = time.monotonic() + 60
    while not _processes_mentioning(str(fifo)) and time.monotonic() < deadline:
        time.sleep(0.05)
    ffmpeg = _processes_mentioning(str(fifo))
    assert ffmpeg, "ffmpeg did not start"
    try:
        os.kill(worker.pid, signal.SIGKILL)  # the OOM killer's choice: the worker alone
        worker.join()
        assert _processes_mentioning(str(fifo)) == ffmpeg  # an orphan, until its group is killed
        kill_process_group(worker.pid)
        deadline = time.monotonic() + 10
        while _processes_mentioning(str(fifo)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _processes_mentioning(str(fifo))
    finally:
        for pid in _processes_mentioning(str(fifo)):
            os.kill(pid, signal.SIGKILL)


def test_frame_files_of_dead_processes_are_removed(tmp_path):
    import os
    import subprocess
    import uuid

    proc = subprocess.Popen(["true"])
    proc.wait()
    dead = tmp_path / f"avloc-{proc.pid}-{uuid.uuid4().hex}.ppm"
    live = tmp_path / f"avloc-{os.getpid()}-{uuid.uuid4().hex}.ppm"
    other = tmp_path / f"other-{proc.pid}.ppm"
    for path in (dead, live, other):
        path.write_bytes(b"P6")
    assert decode.remove_orphan_frames(str(tmp_path)) == 1
    assert not dead.exists() and live.exists() and other.exists()


SHARD_AFTER_DECODING = """
import shutil, sys
from pathlib import Path
from avloc.tools.sharding import ShardConfig, run_shard
from avloc.tools.sharding.decode import PyAVDecoder
from avloc.utils.processes import worker_start_method

def main():
    clips, out = Path(sys.argv[1]), Path(sys.argv[2])
    print(worker_start_method())
    PyAVDecoder(threads=2).decode(next(clips.glob("*.mp4")))  # FFmpeg threads now live in this process
    print(worker_start_method())
    report = run_shard(ShardConfig(clips=clips, out=out, workers=2, progress=False, clip_timeout_s=60))
    print(report["ok"], report["failed"])

if __name__ == "__main__":
    main()
"""


def test_a_shard_run_after_in_process_decoding_starts_clean_workers(clips, tmp_path):
    # PyAV 19's FFmpeg threads deadlock a child forked after the parent decoded: every worker hung
    # in its first frame conversion. The workers then start from a forkserver; run in a fresh
    # process so that what this test process decoded earlier does not decide the first answer.
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("plain", "stereo44k"):
        (folder / clips[name].name).symlink_to(clips[name])
    script = tmp_path / "shard_after_decoding.py"
    script.write_text(SHARD_AFTER_DECODING)
    proc = subprocess.run([sys.executable, str(script), str(folder), str(tmp_path / "shards")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before, after, counts = proc.stdout.strip().splitlines()[-3:]
    assert (before, after) == ("fork", "forkserver")
    assert counts == "2 0", proc.stderr[-3000:]
