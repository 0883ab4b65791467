"""`avloc shard` end to end on synthetic clips: layout, sample contents read back by webdataset
and DALI, seeded shuffle across shards, splits/labels/boxes from the csv, resume and overwrite."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from avloc import schema
from avloc.errors import InputError
from avloc.tools.sharding.decode import FfmpegDecoder
from avloc.tools.sharding.sample_builder import BuildOptions, ClipTask
from avloc.tools.sharding import ShardConfig, run_shard
from avloc.tools.sharding.planning import plan_shards
from avloc.spectrogram import fnac_spectrogram_from_samples

N_CLIPS = 8
PER_SHARD = 3


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from avloc.tools.synth import generate_clips

    return generate_clips(tmp_path_factory.mktemp("synth"), N_CLIPS, seed=3, duration=4.0, width=160, height=120,
                          workers=1)


def _config(synth, out, **kw) -> ShardConfig:
    base = dict(clips=synth.clips_dir, out=out, csv=synth.csv_path, boxes=synth.boxes_path,
                samples_per_shard=PER_SHARD, workers=2, progress=False)
    base.update(kw)
    return ShardConfig(**base)


@pytest.fixture(scope="module")
def built(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    report = run_shard(_config(synth, out, val_fraction=0.3, seed=5))
    return out, report


def _tar_samples(tar_path: Path) -> list:
    """[(key, {ext: bytes})] in stored order, with Python's tarfile."""
    samples = []
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            key, ext = member.name.split(".", 1)
            if not samples or samples[-1][0] != key:
                samples.append((key, {}))
            samples[-1][1][ext] = tar.extractfile(member).read()
    return samples


def _listed_tars(out: Path) -> dict:
    summary = json.loads((out / "dataset.json").read_text())
    return {split: [out / s["name"] for s in entries] for split, entries in summary["shards"].items()}


def test_layout_and_summary(built, synth):
    out, report = built
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["schema_version"] == schema.SCHEMA_VERSION
    assert summary["recipe_hash"] == schema.RECIPE_HASH
    assert summary["classes"] == sorted({item["label"] for item in synth.items})
    assert summary["frame"]["short_side"] == schema.FRAME_SHORT_SIDE == 246 and summary["frame"]["jpeg_quality"] == schema.JPEG_QUALITY
    assert report["ok"] == N_CLIPS and report["failed"] == 0
    assert sum(summary["counts"].values()) == N_CLIPS
    for split, tars in _listed_tars(out).items():
        assert sum(e["samples"] for e in summary["shards"][split]) == summary["counts"][split]
        for tar in tars:
            stem = tar.name[:-4]
            for suffix in (".tar", ".idx", ".parquet", "_stats.json"):
                assert (out / f"{stem}{suffix}").is_file()
            stats = json.loads((out / f"{stem}_stats.json").read_text())
            assert stats["samples"] == len(_tar_samples(tar)) == int((out / f"{stem}.idx").read_text().split()[1])
    rows = pq.read_table(out / schema.MANIFEST_PATH).to_pylist()
    assert len(rows) == N_CLIPS and {r["status"] for r in rows} == {"ok"}
    assert not list(out.glob("*.tmp"))


def test_samples_read_back_with_webdataset(built, synth):
    import webdataset as wds

    out, _ = built
    items = {item["id"]: item for item in synth.items}
    tars = [str(t) for ts in _listed_tars(out).values() for t in ts]
    seen = []
    for sample in wds.WebDataset(tars, shardshuffle=False, empty_check=False):
        key = sample["__key__"]
        seen.append(key)
        meta = schema.SampleMeta.from_json_bytes(sample["json"])
        item = items[meta.clip_id]
        assert meta.key == key == item["id"]
        assert meta.label == item["label"]
        assert meta.class_index == json.loads((out / "dataset.json").read_text())["classes"].index(item["label"])
        assert (meta.split == "test") == (item["split"] == "test")
        np.testing.assert_allclose(meta.bbox, item["bbox"], rtol=0, atol=1e-9)
        assert meta.frame_time == pytest.approx(2.0) and meta.duration == pytest.approx(4.0)
        assert meta.clip_start == float(int(key.rsplit("_", 1)[1]))
        assert (meta.width, meta.height) == (160, 120)
        spec = schema.decode_spec(sample["spec.f16"])
        # the stored spectrogram is exactly the recipe applied to the decoded audio
        decoded = FfmpegDecoder().decode(item["path"])
        expected, _, _ = fnac_spectrogram_from_samples(decoded.audio)
        np.testing.assert_array_equal(spec, expected.astype(np.float16))
        from PIL import Image

        img = Image.open(io.BytesIO(sample["jpg"]))
        assert img.format == "JPEG" and min(img.size) == 246 and img.size == (328, 246)
    assert sorted(seen) == sorted(items)


@pytest.mark.dali
def test_dali_reads_the_shards(built):
    from nvidia.dali import fn, pipeline_def, types

    out, _ = built
    tars = sorted(str(t) for ts in _listed_tars(out).values() for t in ts)
    idxs = [t[:-4] + ".idx" for t in tars]

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        jpg, spec, meta = fn.readers.webdataset(paths=tars, index_paths=idxs, ext=["jpg", "spec.f16", "json"],
                                                dtypes=[types.UINT8, types.FLOAT16, types.UINT8],
                                                missing_component_behavior="error", name="reader")
        return fn.decoders.image(jpg, device="cpu"), spec, meta

    p = pipe()
    p.build()
    n = p.reader_meta("reader")["epoch_size"]
    import webdataset as wds

    # what webdataset reads from the same tars is the reference
    expected = {s["__key__"]: s for s in wds.WebDataset(tars, shardshuffle=False, empty_check=False)}
    assert n == len(expected) == N_CLIPS
    got = set()
    for _ in range(n):
        img, spec, meta = p.run()
        m = schema.SampleMeta.from_json_bytes(np.array(meta[0]).tobytes())
        assert m.key not in got
        got.add(m.key)
        arr = np.array(spec[0])
        assert arr.dtype == np.float16
        np.testing.assert_array_equal(arr.reshape(schema.SPEC_SHAPE), schema.decode_spec(expected[m.key]["spec.f16"]))
        assert np.array(meta[0]).tobytes() == expected[m.key]["json"]
        assert np.array(img[0]).shape == (246, 328, 3)
    assert got == set(expected)


def _task(i, split="train"):
    return ClipTask(clip_id=f"clip{i:07d}_000000", key=f"clip{i:07d}_000000", path=f"/x/{i}.mp4",
                    rel_path=f"{i}.mp4", label=None, class_index=-1, split=split, clip_start=0.0, file_size=100)


def test_plan_is_a_seeded_shuffle_across_shards(tmp_path):
    tasks = [_task(i) for i in range(40)] + [_task(100 + i, "test") for i in range(7)]
    opts = BuildOptions()

    def keys(seed, order=tasks):
        return [[t.key for t in j.tasks] for j in plan_shards(order, out=tmp_path, samples_per_shard=10, seed=seed,
                                                            options=opts)]

    a = keys(0)
    assert a == keys(0) == keys(0, order=list(reversed(tasks)))  # input order does not matter
    assert a != keys(1)
    flat = [k for shard in a[:4] for k in shard]
    assert sorted(flat) == sorted(t.key for t in tasks[:40])
    assert flat != sorted(flat)  # shuffled across shards, not cut from the sorted list
    assert [len(s) for s in a] == [10, 10, 10, 10, 7]
    jobs = plan_shards(tasks, out=tmp_path, samples_per_shard=10, seed=0, options=opts)
    assert [j.stem for j in jobs] == ["train-000000", "train-000001", "train-000002", "train-000003", "test-000000"]
    assert len({j.job_hash for j in jobs}) == len(jobs)


def test_stored_order_follows_the_plan(built):
    out, _ = built
    for split, tars in _listed_tars(out).items():
        for tar in tars:
            stats = json.loads(Path(str(tar)[:-4] + "_stats.json").read_text())
            assert [k for k, _ in _tar_samples(tar)] == stats["keys"]


def test_resume_skips_done_shards_and_rebuilds_unfinished(synth, tmp_path):
    out = tmp_path / "shards"
    first = run_shard(_config(synth, out))
    tars = sorted(out.glob("*.tar"))
    assert first["shards_built"] == len(tars) >= 3
    mtimes = {t: t.stat().st_mtime_ns for t in tars}
    # a rerun changes nothing
    again = run_shard(_config(synth, out))
    assert again["shards_skipped"] == len(tars) and again["clips_built"] == 0
    assert {t: t.stat().st_mtime_ns for t in tars} == mtimes
    # a shard never marked done (killed before its stats) and a stray temp file: only that shard is rebuilt
    victim = tars[1]
    Path(str(victim)[:-4] + "_stats.json").unlink()
    (out / f".{victim.name}.x1y2z3.tmp").write_bytes(b"half")  # what a killed writer leaves
    third = run_shard(_config(synth, out))
    assert third["shards_built"] == 1 and third["shards_skipped"] == len(tars) - 1
    assert not list(out.glob("*.tmp"))
    assert all(t.stat().st_mtime_ns == mtimes[t] for t in tars if t != victim)
    keys = [k for t in sorted(out.glob("*.tar")) for k, _ in _tar_samples(t)]
    assert len(keys) == len(set(keys)) == N_CLIPS
    assert third["ok"] == N_CLIPS


def test_resume_redoes_a_clip_replaced_by_one_of_the_same_size(tmp_path):
    """Resume looks at each clip's size and modification time: a file replaced by another clip of
    the same size gets its shard rebuilt with the new content; the other shard is kept."""
    from test_shard_clips import make_clip

    clips = tmp_path / "clips"
    first = make_clip(clips / "replaced001_000000.mp4", duration=2.0, frequency=440.0)
    make_clip(clips / "untouched01_000000.mp4", duration=2.0)
    other = make_clip(tmp_path / "other.mp4", duration=2.0, frequency=2000.0)
    # the same size: pad the shorter file (mp4 readers ignore bytes after the last box)
    size = max(first.stat().st_size, other.stat().st_size)
    original = first.read_bytes().ljust(size, b"\0")
    first.write_bytes(original)
    out = tmp_path / "out"
    cfg = ShardConfig(clips=clips, out=out, samples_per_shard=1, workers=1, progress=False)
    run_shard(cfg)

    def tone_bin(key):
        for tar in out.glob("*.tar"):
            for k, members in _tar_samples(tar):
                if k == key:
                    return int(np.median(schema.decode_spec(members["spec.f16"]).astype(np.float32).argmax(axis=0)))

    assert tone_bin("replaced001_000000") == round(440 / (schema.SAMPLE_RATE / schema.NPERSEG))
    replacement = other.read_bytes().ljust(size, b"\0")
    assert len(replacement) == len(original) and replacement != original
    first.write_bytes(replacement)
    report = run_shard(cfg)
    assert report["shards_built"] == 1 and report["shards_skipped"] == 1
    assert tone_bin("replaced001_000000") == round(2000 / (schema.SAMPLE_RATE / schema.NPERSEG))


def test_changed_options_need_overwrite(synth, tmp_path):
    out = tmp_path / "shards"
    run_shard(_config(synth, out, workers=1))
    with pytest.raises(InputError, match="--overwrite"):
        run_shard(_config(synth, out, workers=1, frame_size=128))
    report = run_shard(_config(synth, out, workers=1, frame_size=128, overwrite=True, keep_audio=True))
    assert report["shards_built"] == report["shards"]
    from PIL import Image

    tar = sorted(out.glob("train-*.tar"))[0]
    key, members = _tar_samples(tar)[0]
    assert min(Image.open(io.BytesIO(members["jpg"])).size) == 128
    audio = np.load(io.BytesIO(members["audio.npy"]), allow_pickle=False)
    assert audio.dtype == np.int16 and audio.shape == (schema.WINDOW_SAMPLES,)
    spec, _, _ = fnac_spectrogram_from_samples(audio)
    np.testing.assert_array_equal(schema.decode_spec(members["spec.f16"]), spec.astype(np.float16))


def test_val_list_and_fraction(synth, tmp_path):
    train_ids = sorted(i["id"] for i in synth.items if i["split"] == "train")
    val_list = tmp_path / "val.txt"
    val_list.write_text(train_ids[0] + "\n")
    report = run_shard(_config(synth, tmp_path / "a", val_list=val_list, workers=1))
    assert report["per_split"]["val"] == 1
    rows = pq.read_table(tmp_path / "a" / schema.MANIFEST_PATH).to_pylist()
    assert [r["clip_id"] for r in rows if r["split"] == "val"] == [train_ids[0]]
    n_test = sum(1 for i in synth.items if i["split"] == "test")
    assert report["per_split"]["test"] == n_test
