"""Leaderboard readers: the real AVGN / SLAVC lists (skipped without ../shared), the partner-row
ground truth, xywh boxes, the array-only mask unpickler, and bad input counted with reasons."""

from __future__ import annotations

import csv
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from avloc import metrics
from avloc.errors import InputError
from avloc.evaluation.benchmarks import FULL_SET_SIZES, load_benchmark
from avloc.evaluation.masks import UnsafeMaskError, mask_gt_map, read_mask_array, read_pickled_array
from avloc.evaluation.rows import read_rows


@pytest.fixture(scope="module")
def real_root(tmp_path_factory, shared_metadata):
    """The real lists and json beside empty frames/ audio/ anno/ folders: every medium missing."""
    root = tmp_path_factory.mktemp("real")
    for sub in ("frames", "audio", "anno"):
        (root / sub).mkdir()
    for path in [shared_metadata / "vggss.json", shared_metadata / "vggss_test.csv", shared_metadata / "flickr_test.csv",
                 *(shared_metadata / "avgn").iterdir(), *(shared_metadata / "slavc").iterdir()]:
        shutil.copy(path, root / path.name)
    return root


@pytest.mark.parametrize("benchmark", ["vggsound-single", "vggsound-duet", "music-solo", "music-duet",
                                       "vgginstruments", "vgginstruments-multi", "vggss-extended"])
def test_real_lists_give_the_official_counts_with_every_medium_missing(real_root, benchmark):
    bench = load_benchmark(benchmark, real_root)
    assert bench.expected == FULL_SET_SIZES[benchmark], bench.expected_source
    assert bench.items == [] and len(bench.missing["frame"]) == bench.expected
    assert "malformed_row" not in bench.defective


def test_real_flickr_extended_list(real_root, shared_metadata):
    (real_root / "Annotations").mkdir(exist_ok=True)
    bench = load_benchmark("flickr-extended", real_root)
    assert bench.expected == FULL_SET_SIZES["flickr-extended"] == 249 + 250
    rows, bad = read_rows(shared_metadata / "slavc" / "flickr_test_plus_silent.csv", 3, header=("video", "audio", "label"))
    assert len(rows) == 250 and not bad and all(r[2] == "non-sounding" for r in rows)


def test_real_music_boxes_are_xywh_and_all_convert(shared_metadata):
    solo = json.loads((shared_metadata / "avgn" / "music_solo.json").read_text())
    duet = json.loads((shared_metadata / "avgn" / "music_duet.json").read_text())
    boxes = [e["bbox"] for e in solo] + [e[k] for e in duet for k in ("bbox_src1", "bbox_src2")]
    assert len(solo) == 2124 and len(duet) == 1020
    converted = [metrics.gt_map_from_boxes([metrics.xywh_to_corners(b)]).sum() for b in boxes]
    assert min(converted) > 0  # every real box gives a non-empty map once converted
    # read as corners (the public loader's trap) many boxes come out empty or wrong
    as_corners_empty = sum(metrics.gt_map_from_boxes([b]).sum() == 0 for b in boxes)
    assert as_corners_empty > 100


def test_real_duet_rows_are_not_symmetric_and_ground_truth_comes_from_the_row(real_root, shared_metadata):
    rows = list(csv.reader((shared_metadata / "avgn" / "vggsound_duet_test.csv").read_text().splitlines()))
    pairs = {(r[0], r[2]) for r in rows}
    assert len(rows) == 5158 and sum((b, a) in pairs for a, b in pairs) == 2  # a partner lookup is wrong
    boxes = {e["file"]: e["bbox"] for e in json.loads((shared_metadata / "vggss.json").read_text())}
    first = rows[0]
    root = real_root / "one_row"
    shutil.copytree(real_root, root, ignore=shutil.ignore_patterns("one_row"))
    for clip in (first[0], first[2]):
        shutil.copy(_tiny_jpg(root), root / "frames" / f"{clip}.jpg")
        (root / "audio" / f"{clip}.wav").write_bytes(b"")
    bench = load_benchmark("vggsound-duet", root)
    (item,) = bench.items
    assert item.clips == [first[0], first[2]] and item.labels == [first[1], first[3]]
    for k, clip in enumerate((first[0], first[2])):
        assert item.sources[k].gt == boxes[clip] and item.sources[k].view == k
        assert item.views[k].name == f"{clip}.jpg"


def _tiny_jpg(root: Path) -> Path:
    from PIL import Image

    path = root / "tiny.jpg"
    if not path.exists():
        Image.new("RGB", (8, 8)).save(path)
    return path


# ------------------------------------------------------------------------- masks

def test_mask_unpickler_rebuilds_arrays_and_refuses_anything_else(tmp_path):
    mask = np.zeros((6, 8), np.uint8)
    mask[1:3, 2:5] = 1
    for protocol in (2, 4, 5):
        path = tmp_path / f"m{protocol}.pkl"
        path.write_bytes(pickle.dumps(mask, protocol=protocol))
        np.testing.assert_array_equal(read_pickled_array(path), mask)

    class Hostile:
        def __reduce__(self):
            import os

            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps(Hostile()))
    with pytest.raises(UnsafeMaskError) as err:
        read_mask_array(hostile)
    assert str(hostile) in str(err.value) and "system" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "pwned").exists()
    not_array = tmp_path / "list.pkl"
    not_array.write_bytes(pickle.dumps([[0, 1]]))
    with pytest.raises(ValueError, match="not an array"):
        read_mask_array(not_array)
    garbled = tmp_path / "garbled.pkl"
    garbled.write_bytes(pickle.dumps(mask)[:20])
    with pytest.raises(ValueError, match="not a readable pickled array"):
        read_mask_array(garbled)
    obj_npy = tmp_path / "obj.npy"
    np.save(obj_npy, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="plain .npy"):
        read_mask_array(obj_npy)


def test_masks_from_npy_and_png_resize_nearest_and_binarise(tmp_path):
    from PIL import Image

    mask = np.zeros((112, 224), np.uint8)
    mask[:, :56] = 3
    np.save(tmp_path / "m.npy", mask)
    Image.fromarray(mask * 80).save(tmp_path / "m.png")
    for name in ("m.npy", "m.png"):
        gt = mask_gt_map(tmp_path / name)
        assert gt.shape == (224, 224) and set(np.unique(gt)) == {0.0, 1.0}
        assert gt[:, :56].all() and not gt[:, 56:].any()


# ------------------------------------------------------------------------- bad input, counted

def test_read_rows_counts_malformed_rows_and_skips_headers(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("file,class\na_000_00001,cello\n\nb_000_00002\nc_000_00003,flute,extra\nd_000_00004,\n")
    rows, bad = read_rows(path, 2)
    assert rows == [["a_000_00001", "cello"]] and [line for line, _ in bad] == [4, 5, 6]
    with pytest.raises(InputError, match="cannot read list"):
        read_rows(tmp_path / "none.csv", 2)


def test_bad_input_is_counted_with_reasons(tmp_path):
    from avloc.tools.synth import write_benchmark

    duet = write_benchmark(tmp_path / "duet", "vggsound-duet", 3, seed=3, frame_size=(48, 32))
    root = duet.root
    (clip_a, _, clip_b, _), row2, row3 = duet.rows
    records = json.loads((root / "vggss.json").read_text())
    for r in records:
        if r["file"] == row2[0]:
            r["bbox"] = [[float("nan"), 0.1, 0.5, 0.5]]  # a NaN box: the row's source has no usable box
    (root / "vggss.json").write_text(json.dumps(records))
    (root / "audio" / f"{row3[2]}.wav").unlink()  # a pair whose partner's audio is missing
    with open(root / "vggsound_duet_test.csv", "a") as fh:
        fh.write("only_two,fields\n")
    bench = load_benchmark("vggsound-duet", root)
    assert [it.id for it in bench.items] == [f"{clip_a}+{clip_b}"]
    assert bench.expected == 4 and bench.defective["malformed_row"] == 1
    assert bench.defective["nan"] == 1 and bench.defective["no_usable_box"] == 1
    # both rows lack something on one side only: the NaN box's row and the missing audio's row
    assert bench.defective["partner_missing"] == 2 and f"{row3[0]}+{row3[2]}" in bench.missing["audio"]
    assert f"{row2[0]}+{row2[2]}" in bench.missing["annotation"]

    music = write_benchmark(tmp_path / "music", "music-solo", 3, seed=4, frame_size=(48, 32))
    entries = json.loads((music.root / "music_solo.json").read_text())
    entries[0]["bbox"] = [0.5, 0.5, 0.0, 0.3]  # empty after xywh conversion
    entries[1]["bbox"] = [0.5, 0.5, 0.7, 0.3]  # out of range: kept, clipped, counted
    (music.root / "music_solo.json").write_text(json.dumps(entries + ["garbage"]))
    bench = load_benchmark("music-solo", music.root)
    assert bench.defective["bad_xywh_box"] == 1 and bench.defective["out_of_range"] == 1
    assert bench.defective["malformed_entry"] == 1 and len(bench.items) == 2
    assert "empty box after conversion" in bench.defective_items[entries[0]["file"]][0]


def test_unknown_layouts_are_one_line_input_errors(tmp_path):
    for name in ("vggsound-duet", "music-solo", "vgginstruments", "flickr-extended", "vggss-extended"):
        with pytest.raises(InputError) as err:
            load_benchmark(name, tmp_path)
        assert "\n" not in str(err.value)
