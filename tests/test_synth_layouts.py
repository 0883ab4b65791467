"""Synthetic benchmark sets: paths exactly as the released layouts (METHOD.md §5) lay them out, and the
ground truth (boxes, XML, masks) agreeing with the pixels of the written frames."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from click.testing import CliRunner

from cli_invoke import avloc_cli
from synth_checks import assert_object_in_box, box_map, colour_mask, iou, read_wav
from avloc.errors import InputError
from avloc.tools.synth import write_benchmark
from avloc.tools.synth.audio import identify_class
from avloc.tools.synth.scene import CLASS_COLOURS, CLASS_NAMES


def test_vggss_layout(tmp_path):
    b = write_benchmark(tmp_path, "vggss", 3, seed=1, n_classes=8)
    records = json.loads((tmp_path / "vggss.json").read_text())
    ids = (tmp_path / "vggss_test.csv").read_bytes().decode().split("\r\n")
    assert ids[-1] == "" and ids[:-1] == [r["file"] for r in records]
    names = {it["id"]: it for it in b.items}
    for rec in records:
        frame = np.asarray(Image.open(tmp_path / "frames" / f"{rec['file']}.jpg"))
        assert frame.shape == (240, 320, 3)
        audio, sr = read_wav(tmp_path / "audio" / f"{rec['file']}.wav")
        assert sr == 16000 and audio.shape == (160000, 1)
        cls = CLASS_NAMES.index(rec["class"])
        assert identify_class(audio[:, 0], sr, 8) == cls
        (box,) = rec["bbox"]
        assert_object_in_box(colour_mask(frame, CLASS_COLOURS[cls]), box)
        assert 0.25 <= (box[2] - box[0]) * (box[3] - box[1]) <= 0.5
        assert names[rec["file"]]["bbox"] == [box]


def parse_flickr_xml(path):
    """The rule of datasets.md: children of the root, grandchildren tagged bbox, skip one."""
    boxes = []
    for child in ET.parse(path).getroot():
        for grand in child:
            if grand.tag == "bbox":
                boxes.append([int(e.text) for e in list(grand)[1:5]])
    return boxes


@pytest.mark.parametrize("layout", ["flat", "split"])
def test_flickr_layout(tmp_path, layout):
    b = write_benchmark(tmp_path, "flickr", 8, seed=2, n_classes=6, layout=layout, frame_size=(288, 200))
    rows = (tmp_path / "flickr_test.csv").read_bytes().decode().split("\r\n")[:-1]
    ids = [r.split(",")[0] for r in rows]
    assert all(r.split(",")[1].isdigit() for r in rows) and all(i.isdigit() for i in ids)
    n_annotators = set()
    for fid, it in zip(ids, b.items):
        if layout == "flat":
            frame_p, wav_p, xml_p = (tmp_path / f"{fid}.{e}" for e in ("jpg", "wav", "xml"))
        else:
            frame_p, wav_p, xml_p = (tmp_path / "frames" / f"{fid}.jpg", tmp_path / "audio" / f"{fid}.wav",
                                     tmp_path / "Annotations" / f"{fid}.xml")
        boxes = parse_flickr_xml(xml_p)
        assert 1 <= len(boxes) <= 3
        n_annotators.add(len(boxes))
        frame = np.asarray(Image.open(frame_p).resize((256, 256), Image.NEAREST))
        seen = colour_mask(frame, CLASS_COLOURS[it["class_index"]])
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= 256 and 0 <= y1 < y2 <= 256
        # the first annotator's box is exact up to rounding; the others are a few pixels off it
        first = [v / 256 for v in boxes[0]]
        assert_object_in_box(seen, first)
        assert all(iou(box_map(first, 256, 256), box_map([v / 256 for v in b], 256, 256)) > 0.85 for b in boxes)
        assert read_wav(wav_p)[1] == 16000
    assert len(n_annotators) > 1 or len(ids) < 3


def test_avsbench_s4_layout(tmp_path):
    b = write_benchmark(tmp_path, "avsbench-s4", 3, seed=3, n_classes=8, train_items=1, val_items=1)
    root = tmp_path / "Single-source"
    assert b.root == root
    with open(root / "s4_meta_data.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    header = list(rows[0].keys())
    assert header[2] == "category" and "split" in header
    assert sorted(r["split"] for r in rows) == ["test", "test", "test", "train", "val"]
    stereo = 0
    for row in rows:
        name, cat, split = row[header[0]], row["category"], row["split"]
        label = next(n for n in CLASS_NAMES if n.replace(",", "").replace(" ", "_") == cat)
        cls = CLASS_NAMES.index(label)
        for k in range(1, 6):
            frame = Image.open(root / "s4_data" / "visual_frames" / split / cat / name / f"{name}_{k}.png")
            assert frame.size == (224, 224)
            mask_p = root / "s4_data" / "gt_masks" / split / cat / name / f"{name}_{k}.png"
            if split == "train" and k > 1:
                assert not mask_p.exists()
                continue
            mask_img = Image.open(mask_p)
            assert mask_img.size == (224, 224) and len(mask_img.getbands()) == 1
            mask = np.asarray(mask_img) > 0
            seen = colour_mask(np.asarray(frame), CLASS_COLOURS[cls], tol=30, opened=False)
            assert iou(mask, seen) > 0.99  # lossless png: the silhouette exactly
            assert 0.1 <= mask.mean() <= 0.5  # 25-50% of the frame, of which others may hide a part
        audio, sr = read_wav(root / "s4_data" / "audio_wav" / split / cat / f"{name}.wav")
        assert sr == 16000 and audio.shape[0] == 80000
        stereo += audio.shape[1] == 2
        assert identify_class(audio.mean(axis=1), sr, 8) == cls
    assert stereo >= 1


def test_avsbench_ms3_layout(tmp_path):
    b = write_benchmark(tmp_path, "avsbench-ms3", 2, seed=4, train_items=1, val_items=0)
    root = tmp_path / "Multi-sources"
    with open(root / "ms3_meta_data.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    header, rows = rows[0], rows[1:]
    split_col = header.index("split")
    assert [r[split_col] for r in rows] == ["test", "test", "train"]
    for row, it in zip(rows, b.items):
        name, split = row[0], row[split_col]
        masks = []
        for k in range(1, 6):
            frame = np.asarray(Image.open(root / "ms3_data" / "visual_frames" / name / f"{name}.mp4_{k}.png"))
            mask_img = Image.open(root / "ms3_data" / "gt_masks" / split / name / f"{name}_{k}.png")
            assert mask_img.mode == "P"
            mask = np.asarray(mask_img) > 0
            seen = np.zeros_like(mask)
            for cls in it["class_indices"]:
                seen |= colour_mask(frame, CLASS_COLOURS[cls], tol=30, opened=False)
            assert iou(mask, seen) > 0.99
            masks.append(mask)
        assert any((masks[0] != m).any() for m in masks[1:])  # objects drift between frames
        audio, sr = read_wav(root / "ms3_data" / "audio_wav" / split / f"{name}.wav")
        assert sr == 16000 and audio.shape[0] == 80000


def test_determinism_and_bad_input(tmp_path):
    a = write_benchmark(tmp_path / "a", "vggss", 2, seed=7)
    b = write_benchmark(tmp_path / "b", "vggss", 2, seed=7)
    assert (tmp_path / "a" / "vggss.json").read_bytes() == (tmp_path / "b" / "vggss.json").read_bytes()
    fa = sorted(p.name for p in (tmp_path / "a" / "frames").iterdir())
    assert fa == sorted(p.name for p in (tmp_path / "b" / "frames").iterdir())
    assert Path(a.items[0]["frame"]).read_bytes() == Path(b.items[0]["frame"]).read_bytes()
    with pytest.raises(InputError):
        write_benchmark(tmp_path / "c", "coco", 2)
    with pytest.raises(InputError):
        write_benchmark(tmp_path / "c", "flickr", 2, layout="nested")


def test_cli_benchmark_all(tmp_path):
    res = CliRunner().invoke(avloc_cli, ["synth", "--out", str(tmp_path), "--benchmark", "all", "--items", "1",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "vggss" / "vggss.json").is_file()
    assert (tmp_path / "flickr" / "flickr_test.csv").is_file()
    assert (tmp_path / "avsbench" / "Single-source" / "s4_meta_data.csv").is_file()
    assert (tmp_path / "avsbench" / "Multi-sources" / "ms3_meta_data.csv").is_file()
    assert not (tmp_path / "clips").exists()  # clips only when --n is given with --benchmark


def test_benchmark_names_and_the_evaluate_hint(tmp_path):
    """synth writes each copy under the name avloc evaluate knows it by, and says how to score it."""
    from avloc.tools.synth import BENCHMARKS, SynthBenchmarkCopy

    assert BENCHMARKS[:4] == ("vggss", "flickr", "avsbench-s4", "avsbench-ms3")
    assert set(BENCHMARKS[4:]) == {"vggsound-single", "vggsound-duet", "music-solo", "music-duet", "vgginstruments",
                                   "vgginstruments-multi", "flickr-extended", "vggss-extended"}
    res = CliRunner().invoke(avloc_cli, ["synth", "--out", str(tmp_path), "--benchmark", "avsbench-s4", "--items", "1",
                                         "--no-progress"])
    assert res.exit_code == 0, res.output
    assert f"avloc evaluate --benchmark avsbench-s4 --data-root {tmp_path / 'avsbench'}" in res.output
    manifest = json.loads((tmp_path / "avsbench" / "Single-source" / "synth_benchmark.json").read_text())
    assert manifest["benchmark"] == "avsbench-s4"
    copy = write_benchmark(tmp_path / "v", "vggss", 1)
    assert isinstance(copy, SynthBenchmarkCopy) and copy.benchmark == "vggss"


def test_bad_options_reported_together(tmp_path):
    with pytest.raises(InputError) as err:
        write_benchmark(tmp_path / "c", "flickr", 0, layout="nested", image_format="gif")
    for text in ("n_items", "layout", "image_format"):
        assert text in str(err.value)
