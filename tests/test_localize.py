"""avloc localize: geometry, time alignment, the copied audio stream, resume and bad inputs.

Real ffmpeg encodes every input; the model is either a real FNAC checkpoint (CLI runs) or one
whose heat map is known (``localize_fixtures.RedModel``: the redness of the frame).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import avloc
from avloc.errors import InputError
from avloc.localization import measure
from avloc.overlay import blend_heatmap, colormap_lut
from cli_invoke import avloc_cli
from localize_fixtures import (LoudRedModel, RedModel, audio_md5, decoded_first_frame, make_video, red_box,
                               square_frames, tone)

SR = 16000


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real (untrained, small-dim) FNAC checkpoint in the avloc format."""
    import torch

    from avloc.checkpoint import save_checkpoint
    from avloc.model import FNACModel

    torch.manual_seed(0)
    model = FNACModel(dim=8)
    path = tmp_path_factory.mktemp("ckpt") / "fnac.pt"
    save_checkpoint(path, model_state=model.state_dict(), model_config=model.model_config())
    return path


def invoke(args):
    from click.testing import CliRunner

    return CliRunner().invoke(avloc_cli, args)


def _inside(x, y, box, margin=0.0):
    x0, y0, x1, y1 = box
    return x0 - margin <= x <= x1 + margin and y0 - margin <= y <= y1 + margin


# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize("width,height", [(321, 243), (97, 311)])
def test_peak_and_box_land_on_the_object_in_source_pixels_at_odd_sizes(tmp_path, width, height):
    box = (width // 5, height // 3, width // 5 + width // 4, height // 3 + height // 4)
    video = make_video(tmp_path / "odd.mp4", square_frames(width, height, 10, lambda i: box), 10, tone(1.0))
    result = avloc.localize(video, model=RedModel(), every=0.5)
    assert (result.facts.width, result.facts.height) == (width, height)
    assert "odd_resolution" in result.flags
    cell_w, cell_h = width / 224, height / 224
    for row in result.rows:
        assert _inside(row["peak_x"], row["peak_y"], box)
        # the binarised region holds the whole square (plateau of the map) ...
        assert row["box_x0"] <= box[0] + cell_w and row["box_x1"] >= box[2] - cell_w
        assert row["box_y0"] <= box[1] + cell_h and row["box_y1"] >= box[3] - cell_h
        assert 0 <= row["box_x0"] < row["box_x1"] <= width and 0 <= row["box_y0"] < row["box_y1"] <= height


def test_box_is_the_binarised_region_in_source_pixels(tmp_path):
    """A red area covering more than half of the frame: the median rule keeps exactly that area."""
    width, height = 301, 201
    area = (0, 0, 181, 201)  # 60 % of the width, full height
    video = make_video(tmp_path / "half.mp4", square_frames(width, height, 5, lambda i: area), 5, tone(1.0))
    row = avloc.localize(video, model=RedModel(), every=1.0).rows[0]
    assert row["box_x0"] == 0 and row["box_y0"] == 0 and row["box_y1"] == pytest.approx(height)
    # the map's grid cells are 301 / 28 ~ 11 px and the cell holding the edge is part red: within 2 cells
    assert abs(row["box_x1"] - 181) <= 2 * width / 28


@pytest.mark.parametrize("width,height", [(301, 201), (1080, 1920), (17, 9)])
def test_read_map_scales_the_224_grid_to_source_pixels(width, height):
    raw = np.zeros((28, 28), np.float32)
    raw[:, :14] = 1.0  # left half hot: the median rule keeps exactly the left half
    got = measure.read_map(raw, width, height)
    assert (got["box_x0"], got["box_y0"], got["box_y1"]) == (0.0, 0.0, pytest.approx(height))
    assert got["box_x1"] == pytest.approx(width / 2) and got["box_fraction"] == 0.5
    raw = np.zeros((7, 7), np.float32)
    raw[2, 5] = 1.0  # one hot cell: the peak is at its centre, to one 224-grid cell
    got = measure.read_map(raw, width, height)
    assert abs(got["peak_x"] - 5.5 / 7 * width) <= width / 224
    assert abs(got["peak_y"] - 2.5 / 7 * height) <= height / 224
    assert got["confidence"] == pytest.approx(1.0 / 13)  # top 25 % of 49 values = 13 values, one of them 1


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotated_video_maps_are_in_displayed_orientation(tmp_path, rotation):
    coded_w, coded_h = 240, 150
    box = (20, 20, 80, 70)  # top-left of the coded frame
    video = make_video(tmp_path / f"rot{rotation}.mp4", square_frames(coded_w, coded_h, 6, lambda i: box), 6,
                       tone(1.0), rotate=rotation)
    shown = decoded_first_frame(video, coded_h, coded_w)  # ffmpeg applies the display matrix
    expected = red_box(shown)
    result = avloc.localize(video, model=RedModel(), every=0.5)
    assert (result.facts.width, result.facts.height) == (coded_h, coded_w)
    assert result.facts.rotation in (90, 270) and "rotated" in result.flags
    assert result.heatmap(0).shape == (coded_w, coded_h)
    for row in result.rows:
        assert _inside(row["peak_x"], row["peak_y"], expected)


def test_huge_frames_are_streamed_and_mapped_in_source_pixels(tmp_path):
    width, height = 3840, 2160
    box = (2800, 1500, 3400, 1900)
    video = make_video(tmp_path / "uhd.mp4", square_frames(width, height, 3, lambda i: box), 3, tone(1.0))
    result = avloc.localize(video, model=RedModel(), every=0.5, out=tmp_path / "out", json_only=True)
    assert (result.facts.width, result.facts.height) == (width, height) and result.frames_decoded == 3
    assert len(result.rows) == 2
    for row in result.rows:
        assert _inside(row["peak_x"], row["peak_y"], box)
    # thumbnails for the contact sheet are kept small, whatever the source size
    assert all(thumb.shape[1] <= 360 for _, thumb in result.sheet)


def test_memory_budget_holds_frames_instead_of_buffering(tmp_path):
    """With a budget below the frames between two instants, frames are drawn with the previous map."""
    from avloc.localization.engine import EngineSettings, run_source
    from avloc.localization.source import open_source

    video = make_video(tmp_path / "b.mp4", square_frames(320, 240, 30, lambda i: (10, 10, 60, 60)), 10, tone(3.0))

    class Sink:
        frames = []

        def write(self, t, rgb, heat, row):
            self.frames.append(t)

    sink = Sink()
    with open_source(video) as source:
        result = run_source(source, RedModel(), settings=EngineSettings(every=2.0, max_buffer_mb=1.0), renderer=sink)
    assert len(sink.frames) == 30 and sink.frames == sorted(sink.frames)
    assert result.held_frames > 0 and "held_frames" in result.flags


# ---------------------------------------------------------------- time alignment


def test_each_instant_uses_the_frame_on_screen_and_the_audio_around_it(tmp_path):
    fps, seconds = 10, 8.0
    n = int(fps * seconds)
    # the square moves 3 px per frame: the peak says which frame the model saw
    frames = square_frames(320, 160, n, lambda i: (3 * i, 50, 3 * i + 40, 90))
    tone_span = (3.0, 4.0)
    audio = tone(seconds, silent_spans=[(0.0, tone_span[0]), (tone_span[1], seconds)])
    video = make_video(tmp_path / "t.mkv", frames, fps, audio, audio_codec="pcm_s16le")
    result = avloc.localize(video, model=LoudRedModel(), every=0.25)
    assert len(result.rows) == 32
    for row in result.rows:
        t = row["time"]
        # the frame on screen at t: the last one starting at or before t
        assert row["frame_time"] <= t + 1e-6 < row["frame_time"] + 1 / fps + 1e-6
        # the 3 s centred on t, clamped to the 8 s track
        start = min(max(t - 1.5, 0.0), seconds - 3.0)
        assert row["window_start"] == pytest.approx(start, abs=1 / SR)
        assert row["window_end"] == pytest.approx(start + 3.0, abs=1 / SR)
        hears_tone = row["window_start"] < tone_span[1] and row["window_end"] > tone_span[0]
        near_edge = min(abs(row["window_start"] - tone_span[1]), abs(row["window_end"] - tone_span[0])) < 0.05
        if not near_edge:
            assert row["silent"] is (not hears_tone), row
        if row["silent"]:
            assert row["confidence"] == pytest.approx(0.0, abs=1e-6)  # the model heard silence
        else:
            frame_index = int(round(row["frame_time"] * fps))
            assert _inside(row["peak_x"], row["peak_y"], (3 * frame_index, 50, 3 * frame_index + 40, 90), 2.0)
    assert "silent_windows" in result.flags


def test_audio_windows_are_the_training_recipe():
    """The window for t is avloc.audio.window_around of the float track, and its spectrogram the sharder's."""
    from avloc import schema
    from avloc.audio import to_float_audio, window_around
    from avloc.spectrogram import fnac_spectrogram_from_samples

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(SR * 5) * 3000).astype(np.int16)
    windows = measure.audio_windows(audio, [0.0, 2.5, 4.9])
    x = to_float_audio(audio)
    for w, t in zip(windows, [0.0, 2.5, 4.9]):
        np.testing.assert_array_equal(w, window_around(x, t))
    # at the clip's centre the window is the central one: the spectrogram equals the shard's
    spec = measure.spectrograms(measure.audio_windows(audio, [2.5]))[0, 0].numpy()
    shard_spec, _, _ = fnac_spectrogram_from_samples(audio)
    np.testing.assert_allclose(spec, shard_spec / schema.SPEC_SCALE, rtol=0, atol=0)


# ---------------------------------------------------------------- outputs


def test_overlay_video_copies_the_audio_stream_bit_exactly(tmp_path, checkpoint):
    frames = square_frames(160, 120, 25, lambda i: (10, 10, 50, 50))
    video = make_video(tmp_path / "in.mp4", frames, 25, tone(1.0))
    out = tmp_path / "out"
    r = invoke(["localize", str(video), "--checkpoint", str(checkpoint), "--out", str(out), "--image-size", "64",
                "--no-progress"])
    assert r.exit_code == 0, r.output
    folder = out / "in_mp4"
    assert sorted(p.name for p in folder.iterdir()) == ["overlay.mp4", "sheet.png", "table.json", "table.parquet"]
    assert audio_md5(folder / "overlay.mp4") == audio_md5(video)
    import av

    with av.open(str(folder / "overlay.mp4")) as c:
        s = c.streams.video[0]
        assert (s.codec_context.width, s.codec_context.height) == (160, 120)
        assert float(s.average_rate) == pytest.approx(25)
        assert c.streams.audio[0].codec_context.name == "aac"
    record = json.loads((folder / "table.json").read_text())
    import pyarrow.parquet as pq

    table = pq.read_table(folder / "table.parquet")
    assert table.num_rows == len(record["rows"]) == 2
    assert table.column("time").to_pylist() == [0.0, 0.5]


def test_image_with_audio_file(tmp_path, checkpoint):
    from PIL import Image

    import soundfile

    img = tmp_path / "photo.png"
    Image.fromarray(square_frames(200, 150, 1, lambda i: (10, 10, 60, 60))[0]).save(img)
    wav = tmp_path / "bark.wav"
    soundfile.write(wav, tone(2.0), SR, subtype="PCM_16")
    out = tmp_path / "out"
    r = invoke(["localize", str(img), "--audio", str(wav), "--checkpoint", str(checkpoint), "--out", str(out),
                "--image-size", "64", "--every", "1", "--no-progress"])
    assert r.exit_code == 0, r.output
    folder = out / "photo_png"
    assert audio_md5(folder / "overlay.mkv") == audio_md5(wav)  # PCM cannot go in mp4: Matroska
    assert [row["time"] for row in json.loads((folder / "table.json").read_text())["rows"]] == [0.0, 1.0]


def test_json_only_writes_numbers_only(tmp_path, checkpoint):
    video = make_video(tmp_path / "a.mp4", square_frames(64, 48, 10, lambda i: (1, 1, 9, 9)), 10, tone(1.0))
    r = invoke(["localize", str(video), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
                "--image-size", "64", "--json-only", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert [p.name for p in (tmp_path / "o" / "a_mp4").iterdir()] == ["table.json"]


def test_folder_run_lists_bad_inputs_processes_the_rest_and_resumes(tmp_path, checkpoint):
    clips = tmp_path / "clips"
    (clips / "sub").mkdir(parents=True)
    make_video(clips / "a.mp4", square_frames(64, 48, 5, lambda i: (1, 1, 9, 9)), 10, tone(0.5))
    make_video(clips / "sub" / "b.mkv", square_frames(66, 50, 5, lambda i: (1, 1, 9, 9)), 10, tone(0.5))
    (clips / "broken.mp4").write_bytes(b"not a video at all" * 100)
    out = tmp_path / "out"
    args = ["localize", str(clips), "--checkpoint", str(checkpoint), "--out", str(out), "--image-size", "32",
            "--every", "1", "--no-progress"]
    r = invoke(args)
    assert r.exit_code == 1
    assert "broken.mp4: corrupt_file" in r.output and "1 of 3 inputs failed" in r.output
    summary = json.loads((out / "localize_summary.json").read_text())
    assert [f["reason"] for f in summary["failed"]] == ["corrupt_file"]
    assert len(summary["done"]) == 2
    done = [out / "a_mp4" / "table.json", out / "sub" / "b_mkv" / "table.json"]
    stamps = [p.stat().st_mtime_ns for p in done]

    (clips / "broken.mp4").unlink()
    r = invoke(args)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "localize_summary.json").read_text())
    assert len(summary["skipped"]) == 2 and not summary["done"]
    assert [p.stat().st_mtime_ns for p in done] == stamps

    # a changed input (or changed settings) is done again; an incomplete output too
    make_video(clips / "a.mp4", square_frames(64, 48, 6, lambda i: (1, 1, 9, 9)), 10, tone(0.6))
    (out / "sub" / "b_mkv" / "sheet.png").unlink()
    r = invoke(args)
    assert r.exit_code == 0, r.output
    summary = json.loads((out / "localize_summary.json").read_text())
    assert sorted(Path(d["input"]).name for d in summary["done"]) == ["a.mp4", "b.mkv"]


# ---------------------------------------------------------------- bad inputs


def _single(tmp_path, checkpoint, path, *extra):
    return invoke(["localize", str(path), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"),
                   "--image-size", "64", "--no-progress", *extra])


def test_unreadable_file_is_one_line_exit_2(tmp_path, checkpoint):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(4096))
    r = _single(tmp_path, checkpoint, bad)
    assert r.exit_code == 2
    errors = [ln for ln in r.output.splitlines() if ln.startswith("avloc: error:")]
    assert len(errors) == 1 and "bad.mp4" in errors[0] and "Traceback" not in r.output


def test_no_video_stream_and_no_audio_stream(tmp_path, checkpoint):
    from avloc.ffmpeg_bin import ffmpeg_exe

    audio_only = tmp_path / "audio_only.mp4"
    wav = tmp_path / "x.wav"
    import soundfile

    soundfile.write(wav, tone(1.0), SR, subtype="PCM_16")
    subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(wav), "-c:a", "aac", str(audio_only)],
                   check=True)
    r = _single(tmp_path, checkpoint, audio_only)
    assert r.exit_code == 2 and "no_video_stream" in r.output
    mute = make_video(tmp_path / "mute.mp4", square_frames(64, 48, 5, lambda i: (1, 1, 9, 9)), 5)
    r = _single(tmp_path, checkpoint, mute)
    assert r.exit_code == 2 and "no_audio_stream" in r.output


def test_silent_audio_is_flagged_and_maps_still_made(tmp_path):
    video = make_video(tmp_path / "quiet.mp4", square_frames(96, 64, 20, lambda i: (1, 1, 30, 30)), 10,
                       np.zeros(SR * 2, np.float32))
    result = avloc.localize(video, model=RedModel(), every=0.5, out=tmp_path / "o")
    assert "silent_audio" in result.flags
    assert all(row["silent"] for row in result.rows) and len(result.rows) == 4
    assert all(row["audio_dbfs"] <= -100 for row in result.rows)
    assert result.maps.shape[0] == 4 and (tmp_path / "o" / "overlay.mp4").is_file()


def test_very_short_clip_is_tiled_and_flagged(tmp_path):
    video = make_video(tmp_path / "short.mp4", square_frames(96, 64, 5, lambda i: (1, 1, 30, 30)), 10, tone(0.5))
    result = avloc.localize(video, model=RedModel(), every=0.5, out=tmp_path / "o")
    assert {"short_audio_tiled", "very_short_clip"} <= set(result.flags)
    assert len(result.rows) == 1 and result.rows[0]["tiled"] is True
    # the 3 s window is the short track repeated, exactly as the recipe tiles it
    from avloc.audio import tile_to, to_float_audio

    window = measure.audio_windows(result_audio(video), [0.0])[0]
    np.testing.assert_array_equal(window, tile_to(to_float_audio(result_audio(video)), 48000))


def result_audio(video):
    from avloc.localization.source import open_source

    with open_source(video) as source:
        return source.audio


def test_output_folder_that_cannot_be_written_is_refused_before_work(tmp_path, checkpoint):
    video = make_video(tmp_path / "a.mp4", square_frames(64, 48, 5, lambda i: (1, 1, 9, 9)), 5, tone(1.0))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = invoke(["localize", str(video), "--checkpoint", str(checkpoint), "--out", str(blocker / "out")])
    assert r.exit_code == 2 and "cannot be created" in r.output
    if os.geteuid() != 0:  # root writes anywhere: the mode check only means something for other users
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        r = invoke(["localize", str(video), "--checkpoint", str(checkpoint), "--out", str(locked)])
        assert r.exit_code == 2 and "not writable" in r.output


def test_options_list_every_problem_at_once(tmp_path):
    r = invoke(["localize", str(tmp_path / "nope.mp4"), "--checkpoint", str(tmp_path / "none.pt"), "--every", "0",
                "--audio", str(tmp_path / "x.wav")])
    assert r.exit_code == 2
    for part in ("input not found", "--checkpoint", "--every must be > 0", "--audio goes with exactly one image"):
        assert part in r.output


def test_library_needs_a_model_or_a_checkpoint(tmp_path):
    with pytest.raises(InputError):
        avloc.localize(tmp_path / "x.mp4")


# ---------------------------------------------------------------- avloc.overlay


def test_blend_keeps_the_picture_where_the_map_is_low_and_colours_it_where_high():
    image = np.full((10, 20, 3), 100, np.uint8)
    heat = np.zeros((5, 5), np.float32)
    np.testing.assert_array_equal(blend_heatmap(image, heat), image)
    out = blend_heatmap(image, np.ones((5, 5), np.float32), alpha=1.0)
    np.testing.assert_array_equal(out, np.broadcast_to(colormap_lut()[255], out.shape))
