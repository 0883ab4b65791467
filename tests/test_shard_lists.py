"""Id lists, csv, subset/exclude/missing counts and test-id overlap, on synthetic files and on the
real VGG-Sound / VGG-SS metadata (shared_metadata fixture)."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from avloc.errors import InputError
from avloc import schema
from avloc.idlists import read_id_list
from avloc.tools.sharding import ShardConfig, run_shard, discover
from avloc.tools.sharding.selection import select
from test_shard_clips import make_clip


def test_read_id_list_formats(tmp_path):
    (tmp_path / "a.txt").write_text("abcdefghijk_000001\r\n\r\n# comment\nabcdefghijk_000002\nabcdefghijk_000001\n")
    assert read_id_list(tmp_path / "a.txt") == ["abcdefghijk_000001", "abcdefghijk_000002"]
    (tmp_path / "b.csv").write_text("abcdefghijk_000003.mp4,dog barking\r\n")
    assert read_id_list(tmp_path / "b.csv") == ["abcdefghijk_000003"]
    (tmp_path / "c.csv").write_text('abcdefghijk,4,"engine, revving",train\n')
    assert read_id_list(tmp_path / "c.csv") == ["abcdefghijk_000004"]
    (tmp_path / "d.json").write_text('[{"file": "abcdefghijk_000005", "bbox": []}, "abcdefghijk_000006"]')
    assert read_id_list(tmp_path / "d.json") == ["abcdefghijk_000005", "abcdefghijk_000006"]


def test_one_id_list_reader_for_shard_and_evaluate(tmp_path):
    from avloc.evaluation import flickr, vggss

    assert vggss.read_id_list is read_id_list and flickr.read_id_list is read_id_list
    # flickr_test.csv rows are "<id>,<number>": the id alone (a vggsound.csv row has 4 columns)
    (tmp_path / "flickr.csv").write_text("10000130166,202\r\n10007936344,0\r\n")
    assert read_id_list(tmp_path / "flickr.csv") == ["10000130166", "10007936344"]
    (tmp_path / "bom.csv").write_text("\ufeffabcdefghijk_000007\n", encoding="utf-8")
    assert read_id_list(tmp_path / "bom.csv") == ["abcdefghijk_000007"]
    with pytest.raises(InputError, match="cannot read id list"):
        read_id_list(tmp_path / "absent.csv")


def test_vggsound_csv_and_ms_names(tmp_path):
    (tmp_path / "v.csv").write_text('abcdefghijk,30,"playing violin, fiddle",train\nzyxwvutsrqp,0,dog barking,test\n')
    entries = discover.read_vggsound_csv(tmp_path / "v.csv")
    assert entries["abcdefghijk_000030"].label == "playing violin, fiddle"
    assert entries["zyxwvutsrqp_000000"].split == "test"
    assert schema.clip_id_for("abcdefghijk_30000_40000") == ("abcdefghijk_000030", 30.0, False)
    (tmp_path / "bad.csv").write_text("abcdefghijk,30,dog,validation\n")
    with pytest.raises(InputError, match="split"):
        discover.read_vggsound_csv(tmp_path / "bad.csv")


def test_sample_keys():
    assert schema.sample_key("abc-DEF_123_000010") == "abc-DEF_123_000010"  # not rewritten
    key = schema.sample_key("naïve clip.v2")
    assert key != "naïve clip.v2" and key.startswith("naive_clip_v2_u") and key.isascii() and "." not in key
    assert schema.sample_key("naïve clip.v2") != schema.sample_key("naive clip.v2")
    long_key = schema.sample_key("x" * 300)
    assert long_key != "x" * 300 and len(long_key) <= schema.MAX_KEY_LENGTH


@pytest.fixture(scope="module")
def real_lists(shared_metadata):
    needed = ["vggss_144k.txt", "vggss_test.csv", "vggss.json"]
    if not all((shared_metadata / n).is_file() for n in needed):
        pytest.skip("real metadata files are absent")
    return {
        "subset": read_id_list(shared_metadata / "vggss_144k.txt"),
        "test": read_id_list(shared_metadata / "vggss_test.csv"),
        "boxes": read_id_list(shared_metadata / "vggss.json"),
    }


def test_real_lists_and_overlap(real_lists):
    assert len(real_lists["subset"]) == 144000
    assert len(real_lists["test"]) == 5158 and not any(i.endswith("\r") for i in real_lists["test"])
    assert set(real_lists["test"]) == set(real_lists["boxes"])
    assert len(set(real_lists["subset"]) & set(real_lists["test"])) == 3715


@pytest.fixture(scope="module")
def real_id_clips(real_lists, tmp_path_factory):
    """Clips named by real ids: 3 in the 144k list and in the VGG-SS test set, 2 in the list only,
    1 in neither."""
    subset, test = real_lists["subset"], set(real_lists["test"])
    leaked = [i for i in subset if i in test][:3]
    clean = [i for i in subset if i not in test][:2]
    stranger = "strangerid1_000000"
    root = tmp_path_factory.mktemp("real-ids")
    first = make_clip(root / f"{leaked[0]}.mp4", duration=3.2, size=(64, 48))
    for ident in leaked[1:] + clean + [stranger]:
        shutil.copy(first, root / f"{ident}.mp4")
    return root, leaked, clean, stranger


def test_subset_missing_and_overlap_counts(real_id_clips, shared_metadata, tmp_path):
    root, leaked, clean, stranger = real_id_clips
    cfg = ShardConfig(clips=root, out=tmp_path / "o", subset=shared_metadata / "vggss_144k.txt",
                      test_ids=[shared_metadata / "vggss_test.csv"], workers=1, progress=False)
    selection = select(cfg)
    counts = selection.counts
    assert counts["clip_ids_found"] == 6 and counts["not_in_subset"] == 1
    assert counts["listed"] == 144000 and counts["listed_missing"] == 144000 - 5
    assert counts["listed_test_overlap"] == 3715
    assert len(selection.missing_ids) == 144000 - 5
    report = run_shard(cfg)
    assert report["ok"] == 5 and report["set_test_overlap"] == 3
    missing = (tmp_path / "o" / "missing_ids.txt").read_text().split()
    assert len(missing) == 144000 - 5 and leaked[0] not in missing
    rows = {r["clip_id"]: r for r in pq.read_table(tmp_path / "o" / schema.MANIFEST_PATH).to_pylist()}
    assert rows[stranger]["status"] == "not_in_subset"
    assert all(rows[i]["in_test_ids"] for i in leaked) and not any(rows[i]["in_test_ids"] for i in clean)


def test_exclude_removes_test_clips(real_id_clips, shared_metadata, tmp_path):
    root, leaked, clean, stranger = real_id_clips
    cfg = ShardConfig(clips=root, out=tmp_path / "o", subset=shared_metadata / "vggss_144k.txt",
                      exclude=[shared_metadata / "vggss_test.csv"], workers=1, progress=False)
    report = run_shard(cfg)
    assert report["excluded"] == 3 and report["ok"] == 2 and report["set_test_overlap"] == 0
    rows = {r["clip_id"]: r for r in pq.read_table(tmp_path / "o" / schema.MANIFEST_PATH).to_pylist()}
    assert {rows[i]["status"] for i in leaked} == {"excluded"}
    assert {rows[i]["status"] for i in clean} == {"ok"}
