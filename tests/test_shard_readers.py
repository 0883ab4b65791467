"""A shard set read by the readers people already use (webdataset, Hugging Face ``datasets``
streaming and not, DALI, duckdb), each compared with what avloc wrote (the tars read with
Python's tarfile), the spectrogram recovered from the sample and the dataset card alone; the
layout keeps manifest rows out of a plain directory load or a ``*.parquet`` glob; a set made
with the manifest at its old place still resumes and reads."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from avloc import schema
from avloc.tools.sharding import ShardConfig, run_shard
from avloc.tools.sharding.card import JSON_FIELD_TYPES, sample_features

N_CLIPS = 8
BROKEN = "AAAAAAAAAAA_000001.mp4"  # not a video: one failed row in a shard's parquet and the manifest


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from avloc.tools.synth import generate_clips

    s = generate_clips(tmp_path_factory.mktemp("synth"), N_CLIPS, seed=11, duration=4.0, width=160, height=120,
                       workers=1)
    (Path(s.clips_dir) / BROKEN).write_bytes(b"\x00not a video" * 50)
    return s


def _config(synth, out, **kw) -> ShardConfig:
    base = dict(clips=synth.clips_dir, out=out, csv=synth.csv_path, boxes=synth.boxes_path, samples_per_shard=3,
                workers=1, progress=False, val_fraction=0.3, seed=5, keep_audio=True)
    base.update(kw)
    return ShardConfig(**base)


@pytest.fixture(scope="module")
def built(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    report = run_shard(_config(synth, out))
    assert report["ok"] == N_CLIPS and report["failed"] == 1
    return out


def _card(folder: Path) -> tuple[dict, str]:
    text = (folder / schema.CARD_NAME).read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def _written(out: Path) -> dict:
    """{split: {key: {ext: bytes}}} as avloc wrote them, read with Python's tarfile."""
    summary = json.loads((out / schema.SUMMARY_NAME).read_text())
    written = {}
    for split, entries in summary["shards"].items():
        for entry in entries:
            with tarfile.open(out / entry["name"]) as tar:
                for member in tar.getmembers():
                    key, ext = member.name.split(".", 1)
                    written.setdefault(split, {}).setdefault(key, {})[ext] = tar.extractfile(member).read()
    return written


def _spec(data: bytes, layout: dict) -> np.ndarray:
    """The spectrogram from its bytes and a layout (the card's or the sample json's), nothing else."""
    return np.frombuffer(data, dtype=layout["spec_dtype"]).reshape(layout["spec_shape"][0], -1)


def _check_sample(written: dict, key: str, *, image, spec_bytes: bytes, audio, meta: dict, layout: dict) -> None:
    from PIL import Image

    ref = written[key]
    np.testing.assert_array_equal(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image),
                                  np.asarray(Image.open(io.BytesIO(ref["jpg"])).convert("RGB")))
    assert spec_bytes == ref["spec.f16"]
    spec = _spec(spec_bytes, layout)
    assert spec.shape == schema.SPEC_SHAPE and spec.dtype == np.float16
    np.testing.assert_array_equal(spec, schema.decode_spec(ref["spec.f16"]))
    np.testing.assert_array_equal(_spec(spec_bytes, meta), spec)  # the sample's own json says the same
    np.testing.assert_array_equal(np.asarray(audio, dtype=np.int16), np.load(io.BytesIO(ref["audio.npy"])))
    expected_meta = json.loads(ref["json"])
    assert {k: meta[k] for k in expected_meta} == expected_meta


def test_card_states_the_set(built):
    meta, body = _card(built)
    summary = json.loads((built / schema.SUMMARY_NAME).read_text())
    splits = [s for s in schema.SPLITS if summary["shards"][s]]
    assert len(splits) >= 2
    (default,) = meta["configs"]
    assert default["default"] and default["data_files"] == [{"split": s, "path": f"{s}-*.tar"} for s in splits]
    layout = meta["avloc"]
    assert layout["spec_dtype"] == "<f2" and layout["spec_shape"] == [257, 200]
    assert layout["spec_axes"] == ["frequency", "time"] and layout["spec_scale"] == 12.0
    assert layout["counts"] == summary["counts"] and layout["recipe_hash"] == schema.RECIPE_HASH
    assert layout["schema_version"] == schema.SCHEMA_VERSION and layout["audio_member"] == "audio.npy"
    for split in schema.SPLITS:
        assert f"| {split} | {summary['counts'][split]} | {len(summary['shards'][split])} |" in body
    for fact in ("`<f2`", "257 x T", "frequency x time", "natural log", "divided by 12",
                 f"shorter side (px): {summary['frame']['short_side']}",
                 "JPEG quality: 95", "time in the clip", schema.RECIPE_HASH, "import webdataset", "load_dataset",
                 "fn.readers.webdataset", "duckdb.sql"):
        assert fact in body, fact
    manifest_meta, _ = _card(built / schema.MANIFEST_DIR)
    assert manifest_meta["configs"][0]["data_files"] == [{"split": "manifest", "path": "manifest.parquet"}]


def test_card_features_are_what_datasets_writes():
    import dataclasses

    import datasets

    assert list(JSON_FIELD_TYPES) == [f.name for f in dataclasses.fields(schema.SampleMeta)]
    features = datasets.Features._from_yaml_list(sample_features(keep_audio=True))
    assert isinstance(features["jpg"], datasets.Image) and features["spec.f16"] == datasets.Value("binary")
    assert features._to_yaml_list() == sample_features(keep_audio=True)


def test_webdataset_reads_what_avloc_wrote(built):
    import webdataset as wds

    layout = _card(built)[0]["avloc"]
    for split, written in _written(built).items():
        tars = sorted(str(p) for p in built.glob(f"{split}-*.tar"))
        seen = []
        for s in wds.WebDataset(tars, shardshuffle=False, empty_check=False).decode("pil"):
            seen.append(s["__key__"])
            assert isinstance(s["audio.npy"], np.ndarray) and s["audio.npy"].dtype == np.int16  # default decoder
            _check_sample(written, s["__key__"], image=s["jpg"], spec_bytes=s["spec.f16"], audio=s["audio.npy"],
                          meta=s["json"], layout=layout)
        assert sorted(seen) == sorted(written) and len(seen) == len(set(seen))


@pytest.mark.parametrize("streaming", [False, True], ids=["map", "streaming"])
def test_hf_datasets_reads_the_folder(built, tmp_path, streaming):
    import datasets

    layout = _card(built)[0]["avloc"]
    written = _written(built)
    loaded = datasets.load_dataset(str(built), streaming=streaming, cache_dir=str(tmp_path / "cache"))
    assert sorted(loaded) == sorted(written)  # the tars' splits, nothing from the parquet files
    for split, rows in loaded.items():
        seen = []
        for row in rows:
            seen.append(row["__key__"])
            _check_sample(written[split], row["__key__"], image=row["jpg"], spec_bytes=row["spec.f16"],
                          audio=row["audio.npy"], meta=row["json"], layout=layout)
        assert sorted(seen) == sorted(written[split]) and len(seen) == len(set(seen))
    if not streaming:
        rows = datasets.load_dataset(str(built / schema.MANIFEST_DIR), split="manifest",
                                     cache_dir=str(tmp_path / "cache"))
        manifest = pq.read_table(built / schema.MANIFEST_PATH)
        assert rows.num_rows == manifest.num_rows == N_CLIPS + 1
        assert sorted(rows["source_path"]) == sorted(manifest.column("source_path").to_pylist())


def test_duckdb_counts_each_clip_once(built):
    import duckdb

    written = _written(built)
    con = duckdb.connect()
    rows = con.execute(f"SELECT key, split, shard, shard_position, status FROM read_parquet('{built}/*.parquet')").fetchall()
    assert len(rows) == N_CLIPS + 1  # every clip file once, the failed one included
    ok = [r for r in rows if r[4] == "ok"]
    assert sorted((r[1], r[0]) for r in ok) == sorted((s, k) for s, keys in written.items() for k in keys)
    for key, split, shard, position, _ in ok:  # where duckdb says a sample is, it is
        with tarfile.open(built / f"{shard}.tar") as tar:
            stored = list(dict.fromkeys(m.name.split(".", 1)[0] for m in tar.getmembers()))
        assert stored[position] == key
    (n,) = con.execute(f"SELECT count(*) FROM read_parquet('{built}/{schema.MANIFEST_PATH}')").fetchone()
    assert n == N_CLIPS + 1
    kv = con.execute(f"SELECT file_name, decode(key), decode(value) FROM parquet_kv_metadata('{built}/*.parquet')"
                     ).fetchall()
    per_file: dict = {}
    for name, k, v in kv:
        per_file.setdefault(name, {})[k] = v
    assert len(per_file) == len(list(built.glob("*.parquet")))
    for meta in per_file.values():
        assert meta["avloc.spec_dtype"] == "<f2" and json.loads(meta["avloc.spec_shape"]) == [257, 200]
        assert meta["avloc.spec_member"] == "spec.f16" and meta["avloc.recipe_hash"] == schema.RECIPE_HASH


def test_recursive_parquet_readers_skip_the_manifest(built):
    import pyarrow.dataset as pads

    # Arrow's directory discovery (what pandas and polars-over-pyarrow use) recurses, skipping "_" and "." names
    found = pads.dataset(str(built), format="parquet", exclude_invalid_files=True)
    assert sorted(Path(f).name for f in found.files) == sorted(p.name for p in built.glob("*-*.parquet"))
    assert found.count_rows() == N_CLIPS + 1


@pytest.mark.dali
def test_dali_reads_what_avloc_wrote(built):
    from nvidia.dali import fn, pipeline_def, types

    layout = _card(built)[0]["avloc"]
    written = {k: v for per_split in _written(built).values() for k, v in per_split.items()}
    tars = sorted(str(p) for p in built.glob("*.tar"))

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        jpg, spec, audio, meta = fn.readers.webdataset(
            paths=tars, index_paths=[t[:-4] + ".idx" for t in tars], ext=["jpg", "spec.f16", "audio.npy", "json"],
            dtypes=[types.UINT8, types.FLOAT16, types.UINT8, types.UINT8], missing_component_behavior="error",
            name="reader")
        return fn.decoders.image(jpg, device="cpu"), spec, audio, meta

    p = pipe()
    p.build()
    n = p.reader_meta("reader")["epoch_size"]
    assert n == len(written) == N_CLIPS
    seen = set()
    for _ in range(n):
        img, spec, audio, meta = (np.array(x[0]) for x in p.run())
        m = json.loads(meta.tobytes())
        assert m["key"] not in seen
        seen.add(m["key"])
        _check_sample(written, m["key"], image=img, spec_bytes=spec.tobytes(),
                      audio=np.load(io.BytesIO(audio.tobytes())), meta=m, layout=layout)
    assert seen == set(written)


def test_set_with_the_old_manifest_place_resumes_and_reads(synth, built, tmp_path):
    from avloc.data import LoaderOptions, build_loader

    old = tmp_path / "old"
    shutil.copytree(built, old)
    (old / schema.MANIFEST_PATH).rename(old / schema.LEGACY_MANIFEST_PATH)  # the layout before the card
    shutil.rmtree(old / schema.MANIFEST_DIR)
    (old / schema.CARD_NAME).unlink()
    assert schema.manifest_path(old) == old / schema.LEGACY_MANIFEST_PATH
    keys = sorted(r["key"] for r in pq.read_table(schema.manifest_path(old)).to_pylist() if r["status"] == "ok"
                  and r["split"] == "train")
    loader = build_loader(old, "train", LoaderOptions(backend="torch", mode="eval", batch_size=4, num_workers=0))
    assert sorted(k for batch in loader for k in batch["key"]) == keys
    report = run_shard(_config(synth, old))
    assert report["shards_skipped"] == report["shards"] and report["clips_built"] == 0
    assert not (old / schema.LEGACY_MANIFEST_PATH).exists()
    assert schema.manifest_path(old) == old / schema.MANIFEST_PATH
    assert pq.read_table(old / schema.MANIFEST_PATH).num_rows == N_CLIPS + 1
    assert _card(old)[0] == _card(built)[0]


def test_a_readme_avloc_did_not_write_is_kept(synth, built, tmp_path):
    out = tmp_path / "mine"
    shutil.copytree(built, out)
    (out / schema.CARD_NAME).write_text("my notes\n")
    run_shard(_config(synth, out))
    assert (out / "README.user.md").read_text() == "my notes\n"
    assert _card(out)[0] == _card(built)[0]


def _snippets(body: str) -> dict:
    """The card's python code blocks by the line that introduces them (``webdataset``, ``Hugging Face``, ...)."""
    blocks, lines = {}, body.splitlines()
    for i, line in enumerate(lines):
        if line == "```python":
            end = lines.index("```", i + 1)
            blocks[lines[i - 1].split()[0].rstrip(":")] = "\n".join(lines[i + 1:end])
    return blocks


def test_card_snippets_run_as_written(built, tmp_path, monkeypatch):
    import datasets

    blocks = _snippets(_card(built)[1])
    assert set(blocks) == {"webdataset", "Hugging", "NVIDIA", "duckdb"}
    assert all(len(code.splitlines()) <= 7 for code in blocks.values())
    monkeypatch.chdir(built)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    written = _written(built)
    first_split = next(s for s in schema.SPLITS if s in written)
    ns: dict = {}
    exec(blocks["webdataset"], ns)  # noqa: S102 - the card's own snippet
    assert ns["spec"].shape == schema.SPEC_SHAPE and ns["meta"]["split"] == first_split
    ns = {}
    exec(blocks["Hugging"].replace("path/to/this/folder", str(built)), ns)  # noqa: S102
    assert ns["ds"].num_rows == len(written[first_split]) and ns["spec"].shape == schema.SPEC_SHAPE
    assert ns["rows"].num_rows == N_CLIPS + 1
    ns = {}
    exec(blocks["duckdb"], ns)  # noqa: S102
    counts = dict(ns["duckdb"].sql("SELECT split, count(*) FROM '*.parquet' WHERE status = 'ok' GROUP BY split")
                  .fetchall())
    assert counts == {split: len(keys) for split, keys in written.items()}


@pytest.mark.dali
def test_card_dali_snippet_runs_as_written(built, monkeypatch):
    blocks = _snippets(_card(built)[1])
    monkeypatch.chdir(built)
    ns: dict = {}
    exec(blocks["NVIDIA"], ns)  # noqa: S102 - the card's own snippet
    p = ns["pipe"]()
    p.build()
    img, spec, meta = p.run()
    assert np.array(spec[0]).shape == schema.SPEC_SHAPE and np.array(spec[0]).dtype == np.float16
    assert json.loads(np.array(meta[0]).tobytes())["spec_shape"] == list(schema.SPEC_SHAPE)
    assert np.array(img[0]).ndim == 3


def test_only_keep_audio_sets_change_their_job_hashes(tmp_path, monkeypatch):
    """Sets without --keep-audio resume as before; a flac --keep-audio set is refused, never mixed."""
    from avloc.tools.sharding.planning import plan_shards
    from avloc.tools.sharding.sample_builder import BuildOptions, ClipTask

    tasks = [ClipTask(clip_id=f"c{i:010d}_000000", key=f"c{i:010d}_000000", path=f"/x/{i}.mp4", rel_path=f"{i}.mp4",
                      label=None, class_index=-1, split="train", clip_start=0.0, file_size=10) for i in range(5)]

    def hashes(keep_audio: bool) -> list:
        return [j.job_hash for j in plan_shards(tasks, out=tmp_path, samples_per_shard=2, seed=0,
                                                options=BuildOptions(keep_audio=keep_audio))]

    now = {flag: hashes(flag) for flag in (False, True)}
    before = BuildOptions.recipe

    def flac_era_recipe(self):  # the recipe before audio.npy: no audio_member key
        recipe = before(self)
        recipe.pop("audio_member", None)
        return recipe

    monkeypatch.setattr(BuildOptions, "recipe", flac_era_recipe)
    assert hashes(False) == now[False]
    assert not set(hashes(True)) & set(now[True])
