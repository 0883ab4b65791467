"""bench-throughput's record format, interleaving, skip reporting and the command itself."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from avloc.bench.core import (BenchContext, fill_ratios, interleave, percentile, plot_ratios,
                              skipped, summarize, table, write_json)

REQUIRED = {"scenario", "variant", "size", "baseline", "value", "unit", "higher_is_better", "ratio_to_baseline"}


def test_interleave_alternates_order_and_counts_rounds():
    calls = []
    variants = {name: (lambda n=name: calls.append(n) or float(len(calls))) for name in ("a", "b", "c")}
    out = interleave(variants, rounds=4, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warm-up
    assert calls[3:] == ["a", "b", "c", "c", "b", "a", "a", "b", "c", "c", "b", "a"]
    assert {k: len(v) for k, v in out.items()} == {"a": 4, "b": 4, "c": 4}


def test_percentile_matches_linear_interpolation():
    xs = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentile(xs, 0) == 1.0 and percentile(xs, 100) == 5.0
    assert percentile(xs, 50) == 3.0
    assert percentile(xs, 10) == pytest.approx(1.4)


def test_ratios_are_within_scenario_and_size():
    recs = [
        summarize("s", "small", "base", [2.0, 2.0, 2.0], unit="ms", higher_is_better=False, baseline=True),
        summarize("s", "small", "fast", [1.0, 1.0], unit="ms", higher_is_better=False),
        summarize("s", "big", "base", [10.0], unit="ms", higher_is_better=False, baseline=True),
        summarize("s", "big", "fast", [4.0], unit="ms", higher_is_better=False),
        skipped("s", "gpu", "big", "skipped: no CUDA", unit="ms", higher_is_better=False),
    ]
    fill_ratios(recs)
    assert [r.ratio_to_baseline for r in recs] == [1.0, 0.5, 1.0, 0.4, None]


def test_json_records_have_the_documented_fields(tmp_path):
    recs = fill_ratios([
        summarize("loaders", "batch 64", "folder", [10.0, 12.0], unit="samples/s", higher_is_better=True, baseline=True),
        summarize("loaders", "batch 64", "torch", [30.0, 33.0], unit="samples/s", higher_is_better=True),
        skipped("loaders", "dali-gpu", "batch 64", "skipped: no CUDA", unit="samples/s", higher_is_better=True),
    ])
    path = tmp_path / "out.json"
    write_json(recs, path)
    rows = json.loads(path.read_text())
    machine = [r for r in rows if "machine" in r]
    records = [r for r in rows if "machine" not in r]
    assert len(machine) == 1 and len(records) == 3
    for row in records:
        assert REQUIRED <= set(row)
    assert records[1]["ratio_to_baseline"] == pytest.approx(31.5 / 11.0)
    assert records[2]["value"] is None and records[2]["skipped"] == "skipped: no CUDA"
    info = machine[0]["machine"]
    assert {"cpu", "cores", "gpu", "versions", "commit"} <= set(info)
    assert info["versions"]["torch"]
    assert "| loaders | torch | batch 64 |" in table(recs)
    plot_ratios(recs, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kernels_scenario_reports_missing_gpu_backend_as_skipped(tmp_path):
    import torch

    from avloc.bench.kernels import run_sizes

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the triton variant runs instead of being skipped")
    ctx = BenchContext(quick=True, workdir=tmp_path, log=lambda m: None)
    recs = fill_ratios(run_sizes(ctx, batches=(12,), hws=(49,)))
    triton = [r for r in recs if r.variant == "triton"]
    assert triton and all(r.value is None and "no GPU" in r.skipped for r in triton)
    measured = [r for r in recs if r.variant in ("reference", "torch") and r.value is not None]
    assert {r.variant for r in measured} == {"reference", "torch"}
    assert all(r.ratio_to_baseline is not None for r in measured)


def test_runner_rejects_an_unknown_scenario(tmp_path):
    from avloc.bench import runner
    from avloc.errors import InputError

    ctx = BenchContext(quick=True, workdir=tmp_path, log=lambda m: None)
    with pytest.raises(InputError, match="unknown benchmark scenario"):
        runner.run_scenarios(["no_such_scenario"], ctx)


def test_cli_rejects_a_missing_data_folder(tmp_path):
    r = subprocess.run([sys.executable, "-m", "avloc.cli", "bench-throughput", "--data", str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr


@pytest.mark.slow
def test_quick_run_writes_table_json_and_plot(tmp_path):
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    r = subprocess.run([sys.executable, "-m", "avloc.cli", "bench-throughput", "--quick", "--json", str(out_json),
                        "--plot", str(out_png)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out_json.read_text())
    scenarios = {row["scenario"] for row in rows if "scenario" in row}
    assert {"shard", "kernels", "evaluate"} <= scenarios
    assert any(s.startswith("loaders") for s in scenarios) and any(s.startswith("train") for s in scenarios)
    assert not [row for row in rows if (row.get("skipped") or "").startswith("failed")]
    assert out_png.stat().st_size > 0
