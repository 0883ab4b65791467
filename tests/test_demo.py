"""`avloc demo`: the whole chain (synth -> shard -> train -> evaluate) at a tiny size, and its resume."""

from __future__ import annotations

import json

from click.testing import CliRunner

from avloc.cli import cli
from avloc.demo import DemoConfig, run_demo


def test_demo_runs_end_to_end_and_resumes(tmp_path):
    cfg = DemoConfig(out=tmp_path / "demo", clips=24, classes=4, duration=2.0, width=96, height=72, eval_items=6,
                     epochs=1, batch_size=8, image_size=64, loader="torch", workers=2, progress=False)
    lines = []
    first = run_demo(cfg, log=lines.append)
    summary = json.loads((tmp_path / "demo" / "demo_summary.json").read_text())
    assert summary["shard"]["ok"] == 24 if "ok" in summary["shard"] else True
    assert summary["train"]["steps"] >= 1
    rows = {r["method"]: r for r in first["results"]["rows"]}
    assert any("centre" in m for m in rows) and any("whole" in m for m in rows), list(rows)
    assert first["results"]["counts"]["scored"] == 6
    assert (tmp_path / "demo" / "run" / "checkpoints" / "best.pt").is_file()
    assert any(line.startswith("[4/4]") for line in lines)

    # a rerun keeps the clips, the shards and the finished training
    again = run_demo(cfg, log=lambda m: None)
    assert again["summary"]["train"]["steps"] == summary["train"]["steps"]


def test_demo_rejects_bad_arguments():
    res = CliRunner().invoke(cli, ["demo", "--clips", "2"])
    assert res.exit_code == 2 and "Traceback" not in res.output
