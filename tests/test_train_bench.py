"""The training-throughput benchmark scenario runs end to end on tiny shards and reports both variants."""

from __future__ import annotations

import pytest

from avloc.bench.harness import BenchContext, fill_ratios
from loader_fixtures import write_shards


@pytest.mark.slow
def test_train_scenario_records(tmp_path, monkeypatch):
    import avloc.bench.train as bench_train

    shards = tmp_path / "shards"
    write_shards(shards, {"train": 24}, samples_per_shard=8)
    monkeypatch.setattr(bench_train, "bench_settings",
                        lambda ctx: {"clips": 0, "batch_size": 4, "image_size": 32, "steps": 2, "rounds": 2})
    ctx = BenchContext(workdir=tmp_path / "work", quick=True, shards=shards, progress=False)
    records = fill_ratios(bench_train.run(ctx))
    by_variant = {r.variant: r for r in records if r.size != "GPU"}
    assert by_variant["end-to-end data-wait fraction"].ratio_to_baseline is None
    bound = by_variant["model-only (batches in memory)"]
    e2e = by_variant["end-to-end (loader + step)"]
    wait = by_variant["end-to-end data-wait fraction"]
    assert bound.baseline and bound.value > 0 and bound.n == 2
    assert e2e.value > 0 and e2e.ratio_to_baseline == pytest.approx(e2e.value / bound.value)
    assert 0.0 <= wait.value <= 1.0 and wait.unit == "fraction"
    assert e2e.extra["device"] == "cpu" and e2e.extra["loader"] in ("torch", "dali")
