"""Synthetic leaderboard layouts: the files the public code reads, with every sounding object where
the ground truth says (checked from the pixels of the written frames) and the audio as listed."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli_invoke import avloc_cli
from synth_checks import assert_object_in_box, box_map, colour_mask, iou, read_wav
from avloc import metrics
from avloc.evaluation.masks import read_mask_array
from avloc.tools.synth import write_benchmark
from avloc.tools.synth.audio import identify_class
from avloc.tools.synth.render import mask_box
from avloc.tools.synth.scene import CLASS_COLOURS, CLASS_NAMES


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


@pytest.mark.parametrize("benchmark", ["music-solo", "music-duet"])
def test_music_layout_xywh_boxes_match_the_pixels(tmp_path, benchmark):
    b = write_benchmark(tmp_path, benchmark, 4, seed=2, n_classes=8)
    records = json.loads((tmp_path / f"{benchmark.replace('-', '_')}.json").read_text())
    listed = _rows(tmp_path / f"{benchmark.replace('-', '_')}_test.csv")
    assert [r[0] for r in listed] == [r["file"] for r in records] and len(records) == 4
    for rec in records:
        video, second, frame_no = rec["file"].rsplit("_", 2)
        assert len(second) == 3 and len(frame_no) == 5
        frame = np.asarray(Image.open(tmp_path / "frames" / f"{rec['file']}.jpg"))
        keys = [("class_src1", "bbox_src1"), ("class_src2", "bbox_src2")] if benchmark == "music-duet" else [("class", "bbox")]
        for cls_key, box_key in keys:
            corners = metrics.xywh_to_corners(rec[box_key])  # the boxes are [x, y, w, h]
            seen = colour_mask(frame, CLASS_COLOURS[CLASS_NAMES.index(rec[cls_key])])
            assert iou(box_map(mask_box(seen), 320, 240), box_map(corners, 320, 240)) > 0.9, rec
        audio, sr = read_wav(tmp_path / "audio" / f"{video}.wav")
        assert audio.shape[0] == 6 * sr
    first = b.items[0]
    audio, sr = read_wav(first["audio"])
    if benchmark == "music-solo":
        assert identify_class(audio[:, 0], sr, 8) == first["class_indices"][0]
    assert {it["sample_rate"] for it in b.items} == {16000, 44100}  # videos at two rates


def test_vggsound_duet_pairs_different_classes_at_mixed_rates(tmp_path):
    b = write_benchmark(tmp_path, "vggsound-duet", 3, seed=3, n_classes=8)
    rows = _rows(tmp_path / "vggsound_duet_test.csv")
    boxes = {r["file"]: r["bbox"][0] for r in json.loads((tmp_path / "vggss.json").read_text())}
    assert len(rows) == 3 and all(r[1] != r[3] for r in rows)
    rates = set()
    for row in rows:
        for (clip, label), (_, partner) in (((row[0], row[1]), (row[2], row[3])), ((row[2], row[3]), (row[0], row[1]))):
            frame = np.asarray(Image.open(tmp_path / "frames" / f"{clip}.jpg"))
            seen = colour_mask(frame, CLASS_COLOURS[CLASS_NAMES.index(label)])
            assert_object_in_box(seen, boxes[clip])
            # the mixture makes the partner's class sound too: its looks are not on this frame
            assert colour_mask(frame, CLASS_COLOURS[CLASS_NAMES.index(partner)]).sum() == 0
            # small sources: a whole-image map (cIoU = the box's share) stays under CIoU 0.3, a map on the
            # source can pass it (the median rule caps cIoU at twice the share)
            x1, y1, x2, y2 = boxes[clip]
            assert 0.15 < (x2 - x1) * (y2 - y1) < 0.3
            audio, sr = read_wav(tmp_path / "audio" / f"{clip}.wav")
            rates.add((sr, audio.shape[1]))
            assert identify_class(audio.mean(axis=1), sr, 8) == CLASS_NAMES.index(label)
    assert rates == {(16000, 1), (22050, 2)}
    assert len(b.rows) == 3


@pytest.mark.parametrize("benchmark", ["vgginstruments", "vgginstruments-multi"])
def test_vgginstruments_masks_in_three_formats_match_the_pixels(tmp_path, benchmark):
    write_benchmark(tmp_path, benchmark, 2, seed=4, n_classes=8)
    rows = _rows(tmp_path / f"{benchmark.replace('-', '_')}_test.csv")
    clips = [(r[k], r[k + 1]) for r in rows for k in range(0, len(r), 2)]
    formats = set()
    for clip, label in clips:
        (mask_path,) = list((tmp_path / "anno").glob(f"{clip}.*"))
        formats.add(mask_path.suffix)
        mask = read_mask_array(mask_path) > 0
        frame = np.asarray(Image.open(tmp_path / "frames" / f"{clip}.jpg"))
        seen = colour_mask(frame, CLASS_COLOURS[CLASS_NAMES.index(label)])
        assert mask.shape == (240, 320) and iou(mask, seen) > 0.85
    assert formats >= {".pkl", ".png"} and (len(clips) < 3 or ".npy" in formats)


@pytest.mark.parametrize("benchmark,base_list", [("flickr-extended", "flickr_test.csv"),
                                                 ("vggss-extended", "vggss_test.csv")])
def test_extended_non_sounding_frames_do_not_show_the_audio_class(tmp_path, benchmark, base_list):
    b = write_benchmark(tmp_path, benchmark, 2, seed=6, n_classes=8)
    rows = _rows(tmp_path / f"{base_list[:-4]}_plus_silent.csv")
    assert rows[0] == ["video", "audio", "label"] and len(rows) == 3
    assert len(_rows(tmp_path / base_list)) == 2  # the sounding part: the base list only
    extra = [it for it in b.items if it.get("role") == "non-sounding"]
    assert [[it["video"], it["audio_id"], "non-sounding"] for it in extra] == rows[1:]
    assert any(it["video"] == it["audio_id"] for it in extra) and any(it["video"] != it["audio_id"] for it in extra)
    for it in extra:
        frame = np.asarray(Image.open(it["frame"]))
        assert colour_mask(frame, CLASS_COLOURS[it["class_index"]]).sum() == 0
        audio, sr = read_wav(it["audio"])
        assert identify_class(audio[:, 0], sr, 8) == it["class_index"]


def test_cli_writes_each_leaderboard_set_under_its_name(tmp_path):
    res = CliRunner().invoke(avloc_cli, ["synth", "--out", str(tmp_path), "--benchmark", "music-duet", "--items", "1",
                                         "--size", "64x48", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "music-duet" / "music_duet.json").is_file()
    assert f"avloc evaluate --benchmark music-duet --data-root {tmp_path / 'music-duet'}" in res.output
    res = CliRunner().invoke(avloc_cli, ["synth", "--out", str(tmp_path), "--benchmark", "vggsound-duet",
                                         "--classes", "1", "--no-progress"])
    assert res.exit_code == 2 and "needs between 2" in res.output
