"""benchmarks/device/: the prepared GPU check and its companion, kept from rotting between GPU runs.

The dry run is the real script (every stage, each in its own guarded process) at tiny sizes on
CPU over a tiny payload from the real companion; the payload of the real run is checked against
the 64 MiB that may travel to the GPU host.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEVICE = ROOT / "benchmarks" / "device"
sys.path.insert(0, str(DEVICE))

import prepare  # noqa: E402

STAGES = ["setup", "environment", "gpu-tests", "kernels", "train", "evaluate"]
MAX_FILES_BACK = 8
NAME_OK = re.compile(r"[A-Za-z0-9._-]+")


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    out = tmp_path_factory.mktemp("device") / "inputs"
    manifest = prepare.prepare(out, tiny=True, wheels=False)
    return out, manifest


def run_script(*args, timeout=1800):
    return subprocess.run([sys.executable, str(DEVICE / "run.py"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_dry_run_runs_every_stage(tiny_inputs, tmp_path):
    inputs, _ = tiny_inputs
    out = tmp_path / "out"
    proc = run_script("--dry-run", "--inputs", str(inputs), "--out", str(out), "--work", str(tmp_path / "work"))
    results = json.loads((out / "results.json").read_text())
    report = proc.stdout[-3000:] + proc.stderr[-3000:] + (out / "log.txt").read_text()[-6000:]
    print(report)  # shown in full when the test fails (an assertion message is cut short)
    assert list(results["stages"]) == STAGES, report
    for name, stage in results["stages"].items():
        assert stage["status"] == "ok", (name, report)
    assert proc.returncode == 0, report
    # the table comes last, one row per stage
    tail = proc.stdout.strip().splitlines()[-len(STAGES):]
    assert [row.split("|")[1].strip() for row in tail] == STAGES, proc.stdout
    kernels = results["stages"]["kernels"]["rows"]
    assert {r["impl"] for r in kernels if r["status"] == "ok"} == {"torch", "reference"}
    assert all(r["status"].startswith("skipped: triton needs CUDA") for r in kernels if r["impl"] == "triton")
    train = results["stages"]["train"]["variants"]
    assert len(train) == 3 and all(v["samples_per_s_median"] > 0 for v in train.values())
    assert results["stages"]["evaluate"]["samples_per_s"] > 0
    # what comes back from the device machine: at most 8 plainly named files, none deeper than 2 folders
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= MAX_FILES_BACK and all(NAME_OK.fullmatch(p.name) for p in files), files


def test_an_overrunning_stage_is_cut_and_the_rest_still_runs(tiny_inputs, tmp_path):
    inputs, _ = tiny_inputs
    out = tmp_path / "out"
    proc = run_script("--dry-run", "--inputs", str(inputs), "--out", str(out), "--work", str(tmp_path / "work"),
                      "--only", "environment,setup", "--limits", "environment=1")
    results = json.loads((out / "results.json").read_text())
    assert results["stages"]["environment"]["status"] == "cut after 1 s", results
    assert results["stages"]["setup"]["status"] == "ok", results
    assert proc.returncode == 1 and "| environment | cut after 1 s |" in proc.stdout


def test_the_real_payload_fits_what_may_travel(tiny_inputs):
    """The real payload, extrapolated from the tiny one per item (and measured where it was prepared),
    plus the repository's files, within the 64 MiB the device machine takes."""
    inputs, manifest = tiny_inputs
    tiny, full = prepare.TINY, prepare.FULL
    vggss_per_item = prepare.folder_bytes(inputs / "vggss") / tiny["vggss_items"]
    shard_per_sample = prepare.folder_bytes(inputs / "shards") / tiny["shard_samples"]
    wheels_allowance = 2 * 2**20  # webdataset + braceexpand are ~0.1 MiB; room for a newer release
    estimate = (vggss_per_item * full["vggss_items"] + shard_per_sample * full["shard_samples"] + wheels_allowance)
    repository = prepare.tracked_bytes() + prepare.untracked_bytes()
    assert estimate + repository <= prepare.PAYLOAD_LIMIT_BYTES * 0.9, (estimate / 2**20, repository / 2**20)
    real = ROOT / "device-inputs"
    if (real / "manifest.json").is_file():
        assert prepare.folder_bytes(real) + repository <= prepare.PAYLOAD_LIMIT_BYTES
    assert manifest["payload_bytes"] == prepare.folder_bytes(inputs) - (inputs / "manifest.json").stat().st_size
