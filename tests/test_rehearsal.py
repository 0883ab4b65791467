"""The dress rehearsal at a small scale: selection over placeholder files with id lists, reading a
replicated + hard-linked shard set with the DALI CPU loader, the projection."""

from __future__ import annotations

import os

import pytest

import loader_fixtures as lf
from loader_fixtures import collect_dali_pipelines  # noqa: F401  (autouse)
from avloc.bench import rehearsal
from avloc.bench.harness import BenchContext
from avloc.data.shards import ShardSet

SMALL = rehearsal.Scale(placeholder_files=1500, samples=1200, samples_per_shard=150, batch_size=16, sustained_s=2.0,
                        ranks=(1, 8), workers=1)


def by_variant(records: list, prefix: str):
    found = [r for r in records if r.variant.startswith(prefix)]
    assert len(found) == 1, (prefix, [r.variant for r in records])
    return found[0]


def test_selection_over_placeholder_files_reports_the_overlap(tmp_path, monkeypatch):
    lists = tmp_path / "lists"
    lists.mkdir()
    train_ids = [f"train{i:06d}xx_{i % 300:06d}" for i in range(1000)]
    test_ids = train_ids[:37] + [f"test{i:07d}xx_000010" for i in range(200)]  # 37 listed train ids are test ids
    (lists / "vggss_144k.txt").write_text("".join(i + "\n" for i in train_ids))
    (lists / "vggss_test.csv").write_text("".join(i + "\n" for i in test_ids))
    monkeypatch.setenv("AVLOC_REHEARSAL_LISTS", str(lists))
    records = rehearsal.selection_records(BenchContext(workdir=tmp_path, progress=False), SMALL)
    clips = tmp_path / "rehearsal-clips"
    assert sum(len(files) for _, _, files in os.walk(clips)) == 1500 + 1  # + the completion marker
    overlap = by_variant(records, "test-id overlap")
    assert overlap.value == 37 and overlap.extra["selected_train_val_known_test"] == 37
    timing = by_variant(records, "selection: discover")
    assert timing.value > 0 and timing.extra["files_found"] == 1500 and timing.extra["selected"] == 1000
    peak = by_variant(records, "selection: peak")
    assert peak.value >= timing.extra["rss_before_mib"] > 0


def test_selection_is_skipped_with_a_reason_without_the_lists(tmp_path, monkeypatch):
    monkeypatch.setattr(rehearsal, "find_lists", lambda: None)
    (record,) = rehearsal.selection_records(BenchContext(workdir=tmp_path, progress=False), SMALL)
    assert record.value is None and "vggss_144k.txt" in record.skipped


@pytest.mark.dali
def test_reading_a_replicated_set_and_the_projection(tmp_path):
    base = tmp_path / "base"
    lf.write_shards(base, {"train": 10}, samples_per_shard=10, width=328, height=246)
    ctx = BenchContext(workdir=tmp_path, progress=False)
    records, per_core = rehearsal.reading_records(ctx, SMALL, base)
    big = ShardSet(tmp_path / "rehearsal-shards" / "set", "train")
    assert len(big.shards) == 8 and big.num_samples == 1200 and big.frame_short_side == 246
    # hard links of one shard, each with its own index
    assert len({os.stat(s.tar).st_ino for s in big.shards}) == 1 and len({s.index for s in big.shards}) == 8
    assert by_variant(records, "epoch plan, 1 rank").extra["samples_rank0"] == 1200
    assert by_variant(records, "epoch plan, 8 ranks").extra["samples_rank0"] == 150
    rate = by_variant(records, "dali-cpu sustained")
    assert rate.value > 0 and rate.extra["samples"] > 0 and per_core == pytest.approx(rate.extra["samples_per_cpu_second"], rel=0.01)
    memory = by_variant(records, "resident memory")
    assert memory.extra["n_samples"] >= 2 and memory.value > 100
    projection = rehearsal.projection_records(per_core)
    assert [r.variant.split("-")[0] for r in projection] == ["8", "16", "32"]
    hours = [r.value for r in projection]
    assert hours[0] == pytest.approx(2 * hours[1]) == pytest.approx(4 * hours[2])
    assert hours[0] == pytest.approx(144_000 * 30 / (per_core * 8) / 3600)
    assert all(r.extra["gpu_model_only"] == "not measured" for r in projection)


def test_memory_growth_is_the_slope_of_the_second_half():
    flat = [(t, 500.0) for t in range(20)]
    growing = [(t, 500.0 + 2.0 * t) for t in range(20)]  # 2 MiB per second
    assert rehearsal.growth_mib_per_min(flat) == 0.0
    assert rehearsal.growth_mib_per_min(growing) == pytest.approx(120.0)
