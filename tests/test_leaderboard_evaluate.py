"""`avloc evaluate` on every leaderboard set from its synthetic layout, the options recorded in
results.json and the table header, bad options, a hostile mask, and ``--benchmark all-available``."""

from __future__ import annotations

import json
import pickle
import shutil

import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from avloc.checkpoint import save_checkpoint
from avloc.cli import cli
from avloc.errors import ConfigError, run_click_command
from avloc.evaluation.benchmarks import LEADERBOARD, LEADERBOARD_BENCHMARKS
from avloc.evaluation.options import EvaluateOptions
from avloc.evaluation.runner import evaluate
from avloc.model import FNACModel

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = FNACModel(dim=8).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model_state=model.state_dict(), model_config=model.model_config())
    return path


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    """Every leaderboard set, one item or row each (two for the extended sets: one sounding, one not)."""
    from avloc.tools.synth import write_benchmark

    root = tmp_path_factory.mktemp("sets")
    for name in LEADERBOARD_BENCHMARKS:
        write_benchmark(root / name, name, 1, seed=5, frame_size=(48, 32))
    return root


def _run(args):
    with CliRunner().isolation() as (_, _, output):
        code = run_click_command(cli, args, "avloc")
    return code, output.getvalue().decode()


@pytest.mark.parametrize("benchmark", LEADERBOARD_BENCHMARKS)
def test_each_set_scores_end_to_end_from_its_synthetic_layout(synth_root, checkpoint, tmp_path, benchmark):
    out = tmp_path / "out"
    code, output = _run(["evaluate", "--benchmark", benchmark, "--data-root", str(synth_root / benchmark),
                         "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu", "--no-progress",
                         "--compute-chunk", "4"])
    assert code == 0, output
    info = LEADERBOARD[benchmark]
    res = json.loads((out / "results.json").read_text())
    opts = res["options"]
    assert opts["threshold_rule"] == "median" and opts["success_compare"] == info.compare
    assert ("duet_geometry" in opts) == info.two_frames and ("music_window" in opts) == info.music
    header = output.splitlines()[output.splitlines().index("") + 1]
    assert f"threshold_rule: median; success_compare: {info.compare}" in header
    methods = [r["method"] for r in res["rows"]]
    assert methods[0].startswith("model") and "model, silent audio" in methods and "model, other-class audio" in methods
    assert {"baseline: centre gaussian", "baseline: whole image"} <= set(methods)
    n_rows = 2 if info.kind == "extended" else 1
    assert res["counts"]["scored"] == res["counts"]["expected"] == n_rows
    units = {"duet": 2 * n_rows, "single": n_rows, "extended": n_rows}[info.kind]
    assert all(r["n"] == units for r in res["rows"]), res["rows"]
    assert res["published_fnac"] == ({"metric": info.published[0], "fnac": info.published[1],
                                      "note": res["published_fnac"]["note"]} if info.published else None)
    assert res["comparable_with_published"] is False
    if info.kind == "duet":
        assert "baseline: the other source's box" in methods and all("cap_x100" in r for r in res["rows"][:3])
        assert res["rows"][0]["method"] == "model (class-agnostic)"
    if info.two_frames:  # one track per source: the mixture with each source removed
        assert "model, one source removed, scored on the remaining source" in methods
        assert res["counts"]["audio"]["resampled_tracks"] >= 1  # the synthetic pairs mix 16 and 22.05 kHz
    if info.kind == "extended":
        assert res["counts"]["non_sounding_scored"] == 1 and "max_f1_x100" in res["rows"][0]
    if info.kind == "single":
        assert "ap_x100" in res["rows"][0]
    table = pq.read_table(out / "per_unit.parquet").to_pydict()
    assert len(table["ciou"]) == units and (out / "summary.png").stat().st_size > 0


def test_options_change_the_scoring_and_are_recorded(synth_root, checkpoint):
    def run(benchmark, **kw):
        return evaluate(EvaluateOptions(benchmark=benchmark, data_root=synth_root / benchmark, checkpoint=checkpoint,
                                        device="cpu", progress=False, write_reports=False, audio_controls="none",
                                        compute_chunk=4, **kw))

    source = run("vggsound-duet")
    canvas = run("vggsound-duet", duet_geometry="canvas", threshold_rule="relmax:0.2", success_compare=">=",
                 duet_average="frame")
    assert canvas["options"]["duet_geometry"] == "canvas" and canvas["options"]["threshold_rule"] == "relmax:0.2"
    assert canvas["options"]["duet_average"] == "frame" and canvas["rows"][0]["n"] == 1  # one frame, averaged
    assert source["rows"][0]["n"] == 2
    # the same maps on a canvas twice as wide: the predicted share of each source's picture differs
    assert source["_per_sample"]["pred_area"] != canvas["_per_sample"]["pred_area"]
    assert not any(r["method"].startswith("model, ") for r in source["rows"])  # controls off
    second = run("music-solo", music_window="frame-second")
    assert second["options"]["music_window"] == "frame-second"
    assert "frame-second" in second["protocol"]["audio"]


def test_wrong_options_exit_2_with_one_line(synth_root, checkpoint, tmp_path):
    cases = [(["--benchmark", "music-solo", "--duet-geometry", "canvas"], "--duet-geometry does not apply"),
             (["--benchmark", "vggsound-duet", "--threshold", "mean"], "--threshold"),
             (["--benchmark", "vggsound-duet", "--success-compare", "=>"], "--success-compare"),
             (["--benchmark", "vggss", "--music-window", "video-centre"], "--music-window does not apply")]
    for extra, message in cases:
        code, output = _run(["evaluate", "--data-root", str(synth_root / "vggsound-duet"), "--checkpoint",
                             str(checkpoint), "--out", str(tmp_path / "o"), "--device", "cpu", *extra])
        lines = [line for line in output.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], output
    with pytest.raises(ConfigError) as err:
        EvaluateOptions(benchmark="music-duet", data_root=synth_root, checkpoint=checkpoint, duet_geometry="x",
                        threshold_rule="fixed:2").checked()
    assert len(err.value.problems) == 2


def test_a_hostile_mask_is_refused_and_counted_not_fatal(checkpoint, tmp_path):
    from avloc.tools.synth import write_benchmark

    root = write_benchmark(tmp_path / "vim", "vgginstruments-multi", 2, seed=8, frame_size=(48, 32)).root
    next((root / "anno").glob("sample0000.*")).unlink()

    class Hostile:
        def __reduce__(self):
            return (print, ("unpickled",))

    (root / "anno" / "sample0000.pkl").write_bytes(pickle.dumps(Hostile()))
    res = evaluate(EvaluateOptions(benchmark="vgginstruments-multi", data_root=root, checkpoint=checkpoint,
                                   device="cpu", progress=False, write_reports=False, compute_chunk=4,
                                   audio_controls="none"))
    (bad,) = res["unreadable"]["annotation"]
    assert "refused to unpickle builtins.print" in bad["error"] and "sample0000.pkl" in bad["error"]
    assert bad["id"] == "sample0000+sample0001"
    assert res["counts"]["expected"] == 2 and res["counts"]["scored"] == 1  # the other row is still scored


def test_all_available_scores_every_set_found_and_writes_one_summary(synth_root, checkpoint, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("vggsound-duet", "music-solo"):
        shutil.copytree(synth_root / name, data / name)
    out = tmp_path / "out"
    code, output = _run(["evaluate", "--benchmark", "all-available", "--data-root", str(data), "--checkpoint",
                         str(checkpoint), "--out", str(out), "--device", "cpu", "--no-progress",
                         "--audio-control", "silence", "--compute-chunk", "4"])
    assert code == 0, output
    summary = json.loads((out / "summary.json").read_text())
    assert [e["benchmark"] for e in summary["scored"]] == ["vggsound-duet", "music-solo"]
    assert summary["scored"][0]["metric"] == "CIoU@0.3 (>)" and summary["scored"][0]["published_fnac"] == 35.1
    assert "silence" in summary["scored"][0]["controls"] and "vggss" in summary["not_found"]
    assert (out / "summary.png").stat().st_size > 0 and (out / "vggsound-duet" / "results.json").is_file()
    md = (out / "summary.md").read_text()
    assert "| vggsound-duet | CIoU@0.3 (>) |" in md and "| music-solo | IoU@0.5 (>) |" in md
    assert "| vggsound-duet |" in output
