"""bench-throughput's record format, interleaving, skip reporting, the result writer, the command
and the recording scripts in benchmarks/."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from avloc.bench.harness import BenchContext, fill_ratios, interleave, percentile, skipped, summarize
from avloc.bench.results import plot_ratios, read_runs, table, write_results

REQUIRED = {"scenario", "variant", "size", "baseline", "value", "unit", "higher_is_better", "ratio_to_baseline"}
REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records():
    return fill_ratios([
        summarize("loaders", "batch 64", "folder", [10.0, 12.0], unit="samples/s", higher_is_better=True, baseline=True),
        summarize("loaders", "batch 64", "torch", [30.0, 33.0], unit="samples/s", higher_is_better=True),
        skipped("loaders", "dali-gpu", "batch 64", "skipped: no CUDA", unit="samples/s", higher_is_better=True),
    ])


def test_interleave_alternates_order_and_counts_rounds():
    calls = []
    variants = {name: (lambda n=name: calls.append(n) or float(len(calls))) for name in ("a", "b", "c")}
    out = interleave(variants, rounds=4, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warm-up
    assert calls[3:] == ["a", "b", "c", "c", "b", "a", "a", "b", "c", "c", "b", "a"]
    assert {k: len(v) for k, v in out.items()} == {"a": 4, "b": 4, "c": 4}


def test_context_interleave_reports_progress_per_round(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AVLOC_PROGRESS_INTERVAL", "0")
    ctx = BenchContext(workdir=tmp_path)
    out = ctx.interleave({"a": lambda: 1.0, "b": lambda: 2.0}, rounds=3, warmup=0, desc="bench demo")
    assert out == {"a": [1.0] * 3, "b": [2.0] * 3}
    err = capsys.readouterr().err
    assert "bench demo: 3/3 (100.0%)" in err and "round/s" in err
    ctx = BenchContext(workdir=tmp_path, progress=False)
    ctx.interleave({"a": lambda: 1.0}, rounds=2, warmup=0, desc="bench quiet")
    assert "bench quiet" not in capsys.readouterr().err


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
    recs = _records()
    path = tmp_path / "out.json"
    write_results(recs, json_path=path)
    rows = json.loads(path.read_text())
    machine = [r for r in rows if "machine" in r]
    records = [r for r in rows if "machine" not in r]
    assert len(machine) == 1 and len(records) == 3
    for row in records:
        assert REQUIRED <= set(row)
    assert records[1]["ratio_to_baseline"] == pytest.approx(31.5 / 11.0)
    assert records[2]["value"] is None and records[2]["skipped"] == "skipped: no CUDA"
    info = machine[0]["machine"]
    assert {"cpu", "cores", "cores_usable", "gpu", "versions", "commit", "load_average_1min_end"} <= set(info)
    assert info["versions"]["torch"]
    assert "| loaders | torch | batch 64 |" in table(recs)
    plot_ratios(recs, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_writer_appends_runs_and_lists_them_newest_first_with_umask_modes(tmp_path):
    old = os.umask(0o022)
    try:
        first = write_results(_records(), machine={"time": "2026-01-01T00:00:00Z", "cpu": "A"},
                              jsonl_path=tmp_path / "x.jsonl", md_path=tmp_path / "x.md", png_path=tmp_path / "x.png",
                              title="Loader throughput", intro="What is measured.",
                              notes_for=lambda recs: f"{len(recs)} records")
        write_results(_records()[:2], machine={"time": "2026-02-01T00:00:00Z", "cpu": "B"},
                      jsonl_path=tmp_path / "x.jsonl", md_path=tmp_path / "x.md", title="Loader throughput")
    finally:
        os.umask(old)
    assert set(first) == {"jsonl", "md", "png"}
    for path in first.values():
        assert path.stat().st_mode & 0o777 == 0o644, path
    runs = read_runs(tmp_path / "x.jsonl")
    assert [m["cpu"] for m, _ in runs] == ["B", "A"] and [len(r) for _, r in runs] == [2, 3]
    md = (tmp_path / "x.md").read_text()
    assert md.startswith("# Loader throughput\n") and "What is measured." not in md  # second call: no intro
    assert md.index("## 2026-02-01") < md.index("## 2026-01-01")
    assert "machine: A," in md and "| loaders | torch | batch 64 |" in md
    assert not list(tmp_path.glob(".*.tmp"))


def test_rewriting_a_results_page_keeps_its_hand_written_readings(tmp_path):
    paths = dict(jsonl_path=tmp_path / "x.jsonl", md_path=tmp_path / "x.md", title="Loader throughput",
                 intro="What is measured.")
    write_results(_records(), machine={"time": "2026-01-01T00:00:00Z", "cpu": "A"}, **paths)
    page = (tmp_path / "x.md").read_text()
    reading = "## Reading the January run\nThe torch loader was 2.9x.\n\n## Why\nBecause.\n"
    (tmp_path / "x.md").write_text(page.replace("## 2026-01-01", reading + "\n## 2026-01-01"))
    write_results(_records()[:2], machine={"time": "2026-02-01T00:00:00Z", "cpu": "B"}, **paths)
    md = (tmp_path / "x.md").read_text()
    assert md.count("## Reading the January run\nThe torch loader was 2.9x.") == 1 and md.count("## Why") == 1
    assert md.index("What is measured.") < md.index("## Reading") < md.index("## Why") < md.index("## 2026-02-01")
    assert md.index("## 2026-02-01") < md.index("## 2026-01-01") and md.count("## 2026-01-01") == 1
    # a page written by hand under its own first-level headings keeps them too
    (tmp_path / "x.md").write_text("# Loader throughput (January): the torch loader\nIt was 2.9x.\n")
    write_results(_records()[:2], machine={"time": "2026-03-01T00:00:00Z", "cpu": "C"}, **paths)
    md = (tmp_path / "x.md").read_text()
    assert md.startswith("# Loader throughput\n") and "# Loader throughput (January): the torch loader\nIt was 2.9x." in md


def test_kernels_scenario_reports_missing_gpu_backend_as_skipped(tmp_path):
    from avloc.bench.kernels import run_sizes

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the triton variant runs instead of being skipped")
    ctx = BenchContext(workdir=tmp_path, quick=True, progress=False)
    recs = fill_ratios(run_sizes(ctx, batches=(12,), hws=(49,)))
    triton = [r for r in recs if r.variant == "triton"]
    assert triton and all(r.value is None and "no GPU" in r.skipped for r in triton)
    measured = [r for r in recs if r.variant in ("reference", "torch") and r.value is not None]
    assert {r.variant for r in measured} == {"reference", "torch"}
    assert all(r.ratio_to_baseline is not None for r in measured)


def test_runner_rejects_an_unknown_scenario(tmp_path):
    from avloc.bench import runner
    from avloc.errors import InputError

    ctx = BenchContext(workdir=tmp_path, quick=True, progress=False)
    with pytest.raises(InputError, match="unknown benchmark scenario"):
        runner.run_scenarios(["no_such_scenario"], ctx)


def test_options_list_every_problem(tmp_path):
    from avloc.bench.runner import BenchOptions
    from avloc.errors import ConfigError

    (tmp_path / "clips").mkdir()
    assert BenchOptions(shards=None).checked().names == ("shard", "loaders", "kernels", "train", "evaluate",
                                                         "rehearsal")
    with pytest.raises(ConfigError) as err:
        BenchOptions(scenario="nope", shards=tmp_path / "clips").checked()
    assert len(err.value.problems) == 2 and "is not a shards folder" in err.value.problems[1]


@pytest.mark.parametrize("flag", ["--shards", "--data"])  # --data: the old spelling, kept for one release
def test_cli_rejects_a_missing_shards_folder(tmp_path, flag):
    r = subprocess.run([sys.executable, "-m", "avloc.cli", "bench-throughput", flag, str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr


@pytest.mark.parametrize("flag", ["--shards", "--data"])
def test_cli_rejects_a_folder_without_dataset_json(tmp_path, flag):
    r = subprocess.run([sys.executable, "-m", "avloc.cli", "bench-throughput", flag, str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "not a shards folder" in r.stderr


def test_cli_passes_shards_through_either_spelling(tmp_path, monkeypatch):
    from avloc.commands import bench as command

    (tmp_path / "dataset.json").write_text("{}")
    seen = []
    monkeypatch.setattr(command, "run_bench", lambda options: seen.append(options) or ([], {"cpu": "x", "cores": 1,
                                                                                         "gpu": None, "commit": "c"}))
    for flag in ("--shards", "--data"):
        result = CliRunner().invoke(command.command, ["--scenario", "train", flag, str(tmp_path), "--no-progress"])
        assert result.exit_code == 0, result.output
    assert [(o.shards, o.scenario, o.progress) for o in seen] == [(tmp_path, "train", False)] * 2


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_workdir_is_removed_when_the_run_stops(tmp_path, monkeypatch, stop):
    from avloc.bench import runner

    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path))

    def boom(names, ctx):
        (ctx.workdir / "clips").mkdir()
        raise stop()

    monkeypatch.setattr(runner, "run_scenarios", boom)
    with pytest.raises(stop):
        runner.run_bench(runner.BenchOptions(scenario="shard"))
    assert not list(tmp_path.glob(f"{runner.WORKDIR_PREFIX}*"))
    with pytest.raises(stop):
        runner.run_bench(runner.BenchOptions(scenario="shard", keep_workdir=True))
    assert len(list(tmp_path.glob(f"{runner.WORKDIR_PREFIX}*"))) == 1


def test_workdir_is_removed_when_the_run_is_terminated(tmp_path, monkeypatch):
    import signal

    from avloc.bench import runner

    monkeypatch.setattr(runner.tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(runner, "run_scenarios", lambda names, ctx: os.kill(os.getpid(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        runner.run_bench(runner.BenchOptions(scenario="shard"))
    assert stop.value.code == 128 + signal.SIGTERM
    assert not list(tmp_path.glob(f"{runner.WORKDIR_PREFIX}*"))
    assert signal.getsignal(signal.SIGTERM) == before


def _dead_pid() -> int:
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_scratch_folders_of_killed_runs_are_removed_by_the_next(tmp_path):
    from avloc.bench import runner

    dead = tmp_path / f"{runner.WORKDIR_PREFIX}{_dead_pid()}-abc123"
    (dead / "clips").mkdir(parents=True)
    live = tmp_path / f"{runner.WORKDIR_PREFIX}{os.getpid()}-def456"
    live.mkdir()
    kept = tmp_path / f"{runner.WORKDIR_PREFIX}{_dead_pid()}-kept01"
    kept.mkdir()
    (kept / runner.KEEP_MARKER).touch()
    other = tmp_path / "avloc-bench-notours"
    other.mkdir()
    assert runner.remove_stale_workdirs(tmp_path) == 1
    assert not dead.exists() and live.is_dir() and kept.is_dir() and other.is_dir()


@pytest.mark.slow
def test_a_killed_bench_run_leaves_a_folder_the_next_run_removes(tmp_path):
    """SIGKILL gives no chance to clean up: the folder stays until the next run starts."""
    import signal
    import subprocess
    import sys
    import time

    from avloc.bench import runner

    env = dict(os.environ, TMPDIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "avloc.cli", "bench-throughput", "--scenario", "shard", "--quick",
                             "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while not list(tmp_path.glob(f"{runner.WORKDIR_PREFIX}{proc.pid}-*/*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = list(tmp_path.glob(f"{runner.WORKDIR_PREFIX}{proc.pid}-*"))
    assert len(left) == 1
    time.sleep(1.0)  # its shard workers die with it (they get SIGKILL when their parent dies)
    assert runner.remove_stale_workdirs(tmp_path) == 1 and not left[0].exists()


def test_loader_data_folder_and_shards_hold_the_same_clips(tmp_path):
    """The two copies come from the same clips (run_shard and the public recipe): on-the-fly
    spectrograms = stored float16 ones (to fp16 rounding); the shards store training-scale frames,
    the legacy copy 256 frames."""
    from avloc import schema
    from avloc.bench.loaders import _Measure, build_data
    from avloc.data import LoaderOptions, build_loader

    folder, shards, legacy = build_data(tmp_path, 6, unique=2, samples_per_shard=4)
    a = list(build_loader(folder, "train", LoaderOptions(backend="folder", mode="eval", batch_size=3, num_workers=0)))
    b = list(build_loader(shards, "train", LoaderOptions(backend="torch", mode="eval", batch_size=3, num_workers=0)))
    # folder ids are hard links of the recipe's files of one clip; shard keys are r<i>_<that clip's key>
    clip_of = {}
    for frame in (folder / "frames").iterdir():
        for extracted in (tmp_path / "extracted" / "frames").iterdir():
            if os.path.samefile(frame, extracted):
                clip_of[frame.stem] = extracted.stem
    spec_a = {k: batch["spec"][i] for batch in a for i, k in enumerate(batch["key"])}
    spec_b = {k: batch["spec"][i] for batch in b for i, k in enumerate(batch["key"])}
    assert len(spec_a) == len(spec_b) == 6 and len(set(clip_of.values())) == 2
    for key, spec in spec_b.items():  # |log psd| < 20: fp16 step <= 0.016
        same_clip = [k for k in spec_a if clip_of[k] == key.split("_", 1)[1]]
        assert same_clip and all(torch.allclose(spec_a[k], spec, atol=0.02 / schema.SPEC_SCALE) for k in same_clip)
    assert a[0]["image"].shape == b[0]["image"].shape
    sets = [build_loader(s, "train", LoaderOptions(backend="torch", batch_size=2, num_workers=0)) for s in (shards, legacy)]
    assert [s.shards.frame_short_side for s in sets] == [246, 256] and [s.num_samples for s in sets] == [6, 6]
    measure = _Measure(sets[0], 2, 2)
    rate = measure()
    assert rate > 0 and len(measure.steady) == 1 and measure.steady[0] > 0  # batch 2 after batch 1


def test_record_script_writes_the_results_files(tmp_path):
    record = _script("record")
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the kernels script would time the GPU")
    old = os.umask(0o022)
    try:
        rc = record.main(["kernels", "--batches", "12", "--hw", "49", "--out", str(tmp_path), "--name", "t",
                          "--device", "cpu", "--no-progress", "--notes", "a test run"])
    finally:
        os.umask(old)
    assert rc == 0
    files = {p.name: p for p in tmp_path.iterdir()}
    assert set(files) == {"kernels-t.jsonl", "kernels-t.md", "kernels-t.png"}
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in files.values())
    md = files["kernels-t.md"].read_text()
    assert md.startswith("# fnac_losses kernels") and "a test run" in md and "Process CPU time" in md
    assert files["kernels-t.png"].read_bytes()[:4] == b"\x89PNG"
    rows = [json.loads(line) for line in files["kernels-t.jsonl"].read_text().splitlines()]
    assert {r["variant"] for r in rows} == {"reference", "torch", "triton"} and all("machine" in r for r in rows)


def test_record_script_rejects_a_folder_without_dataset_json(tmp_path, capsys):
    record = _script("record")
    assert record.main(["train", "--shards", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "not a shards folder" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_quality_script_prints_the_validation_table_and_curve(tmp_path, capsys):
    quality = _script("train_quality")
    train = {"kind": "train", "step": 3, "contrastive": 4.0, "fns1": 0.01, "tns": 0.02, "fns2": 0.03}
    val = {"kind": "val", "epoch": -1, "step": 0, "samples_seen": 0, "val_ap50": 0.12, "val_auc": 0.3,
           "val_silence_ap50": 0.1, "val_shuffled_ap50": 0.11, "val_uses_sound": False, "baseline_centre_ap50": 0.14,
           "val_pointing": 0.5, "val_silence_pointing": 0.25, "val_shuffled_pointing": 0.2, "baseline_centre_pointing": 0.6}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(train) + "\n" + json.dumps(val) + "\n")
    (tmp_path / "config.yaml").write_text("batch_size: 16\n")
    assert quality.main(["--table", str(tmp_path), "--png", str(tmp_path / "curve.png")]) == 0
    out = capsys.readouterr().out
    assert "| 0 (untrained) | 0 | 0.120 | 0.100 | 0.110 | NOT using the sound | 0.50 / 0.25 / 0.20 / 0.60 | 0.300 | 0.140 |" in out
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    from avloc.training.config import build_config

    cfg = build_config(None, list(quality.QUALITY_SETS), preset="from-scratch")
    assert cfg.spec_mask_fill == "silence" and cfg.visual_weights == "none" and cfg.collapse_risk() is None


@pytest.mark.slow
def test_quick_run_writes_table_json_and_plot(tmp_path):
    out_json, out_png = tmp_path / "b.json", tmp_path / "b.png"
    r = subprocess.run([sys.executable, "-m", "avloc.cli", "bench-throughput", "--quick", "--json", str(out_json),
                        "--plot", str(out_png)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = json.loads(out_json.read_text())
    scenarios = {row["scenario"] for row in rows if "scenario" in row}
    assert {"shard", "shard-marginal", "kernels.time", "kernels.memory", "evaluate", "rehearsal"} <= scenarios
    assert {"loaders", "loaders-steady", "loaders-latency", "train"} <= scenarios
    assert not [row for row in rows if (row.get("skipped") or "").startswith("failed")]
    assert out_png.stat().st_size > 0


def test_ablation_script_renders_a_set_trains_from_a_checkpoint_and_tabulates(tmp_path, capsys):
    ablation = _script("ablation")
    data = tmp_path / "set.pt"
    assert ablation.main(["data", str(data), "--train", "8", "--val", "4", "--classes", "2", "--image-size", "64"]) == 0
    first = tmp_path / "contrastive.jsonl"
    assert ablation.main(["run", str(data), str(first), "--batch", "4", "--epochs", "1", "--weight", "0",
                          "--threads", "1", "--save", str(tmp_path / "c")]) == 0
    second = tmp_path / "w100.jsonl"
    assert ablation.main(["run", str(data), str(second), "--batch", "4", "--epochs", "2", "--warmup", "1",
                          "--threads", "1", "--probe-every", "1", "--load", str(tmp_path / "c-e1.pt")]) == 0
    rows = [json.loads(line) for line in second.read_text().splitlines()]
    train = [r for r in rows if r["kind"] == "train"]
    assert train[0]["step"] == 2 and train[0]["weight"] == 100.0 and set(train[0]["grad"]) == {
        "contrastive", "fns1", "tns", "fns2"}
    capsys.readouterr()
    assert ablation.main(["table", str(first), str(second), "--png", str(tmp_path / "a.png")]) == 0
    out = capsys.readouterr().out
    assert "| contrastive | 1 |" in out and "| w100 | 2 |" in out
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_shard_marginal_rate_removes_the_fixed_cost_per_run():
    from avloc.bench.shard import fixed_seconds, marginal_rates

    # 0.5 s fixed + 0.1 s per clip: 12 clips take 1.7 s, 24 take 2.9 s
    small, large = [1.7, 1.7, 1.7], [2.9, 2.9, 2.7]
    rates = marginal_rates(12, 24, small, large)
    assert rates[:2] == pytest.approx([10.0, 10.0]) and rates[2] == pytest.approx(12.0)
    assert fixed_seconds(12, small, rates) == pytest.approx(0.5)
    # a round where the larger run was not slower carries no rate
    assert marginal_rates(12, 24, [1.0, 1.0], [0.9, 2.0]) == pytest.approx([12.0])


def test_loader_goal_notes_judge_whole_epochs_and_the_steady_state():
    record = _script("record")
    rows = []
    for scenario, torch_rate, dali_rate in (("loaders", 300.0, 600.0), ("loaders-steady", 450.0, 900.0)):
        rows += [summarize(scenario, "batch 256", "folder (reference)", [100.0], unit="samples/s", higher_is_better=True,
                           baseline=True),
                 summarize(scenario, "batch 256", "torch", [torch_rate], unit="samples/s", higher_is_better=True),
                 summarize(scenario, "batch 256", "dali-cpu", [dali_rate], unit="samples/s", higher_is_better=True)]
    text = record.loaders_goal(fill_ratios(rows))
    assert "torch torch, 300 samples/s = 3.00x the folder loader over whole epochs (goal at batch 256 >= 4x on 2 " \
           "CPU cores: not met; steady state 450 samples/s = 4.50x: met)" in text
    assert "fastest shard loader dali-cpu, 600 samples/s = 6.00x" in text and "9.00x: not met" in text
