"""`avloc demo`: the whole chain (synth -> shard -> train -> evaluate) at a tiny size, and its resume."""

from __future__ import annotations

import json

from click.testing import CliRunner

from avloc.cli import cli
from avloc.demo import DemoOptions, run_demo


def test_demo_runs_end_to_end_shows_audio_controls_and_resumes(tmp_path, capsys):
    opts = DemoOptions(out=tmp_path / "demo", n_clips=40, classes=4, duration=2.0, width=96, height=72, eval_items=6,
                       epochs=1, image_size=64, loader="torch", workers=2, progress=False)
    first = run_demo(opts)
    summary = json.loads((tmp_path / "demo" / "demo_summary.json").read_text())
    assert summary["shard"]["ok"] == 40
    assert summary["train"]["steps"] >= 1
    rows = {r["method"]: r for r in first["results"]["rows"]}
    assert {"model", "model, silent audio", "model, other-class audio"} <= set(rows)
    assert any("centre" in m for m in rows) and any("whole" in m for m in rows), list(rows)
    assert all(rows[m]["n"] == 6 for m in ("model", "model, silent audio", "model, other-class audio"))
    assert summary["evaluate"]["audio_controls"]["controls"].keys() == {"silence", "shuffled"}
    assert first["results"]["counts"]["scored"] == 6
    prior = summary["evaluate"]["object_prior"]  # blind picks among each frame's objects, 6 frames
    assert prior["n"] == 6 and prior["sounding_object"] >= 0.5 and 0.0 <= prior["random_object"] <= 0.6
    assert (tmp_path / "demo" / "run" / "checkpoints" / "best.pt").is_file()
    config = (tmp_path / "demo" / "run" / "config.yaml").read_text()
    assert "visual_weights: none" in config and "loss_weight_scaling: batch" in config  # the from-scratch preset
    assert "[4/4]" in capsys.readouterr().err

    # a rerun keeps the clips, the shards and the finished training
    again = run_demo(opts)
    assert again["summary"]["train"]["steps"] == summary["train"]["steps"]


def test_demo_rejects_bad_arguments_with_every_problem_at_once(tmp_path):
    (tmp_path / "file").write_text("x")
    res = CliRunner().invoke(cli, ["demo", "--n-clips", "2", "--epochs", "0", "--out", str(tmp_path / "file")])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "--n-clips" in res.output and "--epochs" in res.output and "is a file" in res.output
    old = CliRunner().invoke(cli, ["demo", "--clips", "2", "--out", str(tmp_path / "d")])  # old spelling still works
    assert old.exit_code == 2 and "--n-clips must be >= 8" in old.output
    help_text = CliRunner().invoke(cli, ["demo", "--help"]).output
    assert "avloc demo --out demo" in help_text and "--clips" not in help_text.replace("--n-clips", "")


def test_demo_unusable_out_is_one_line_before_any_work(tmp_path):
    from avloc.errors import run_click_command
    from mounts import tmpfs

    (tmp_path / "file").write_text("x")
    with tmpfs(tmp_path / "ro", 1 << 20, read_only=True) as read_only:
        for out, message in ((tmp_path / "file", "is a file, not a folder"),
                             ("/proc/avloc-demo", "/proc is not writable"),
                             (read_only / "demo", f"{read_only} is not writable"),
                             (read_only, f"{read_only} is not writable")):
            with CliRunner().isolation() as (_, _, output):
                code = run_click_command(cli, ["demo", "--out", str(out)], "avloc")
            text = output.getvalue().decode()
            lines = [line for line in text.splitlines() if line.strip()]
            assert code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in text, (out, text)
        assert not list(read_only.iterdir())
