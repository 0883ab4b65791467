"""`avloc evaluate` end to end on synthetic copies of the real layouts, checkpoint import, bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from avloc import metrics
from avloc.checkpoint import save_checkpoint
from avloc.cli import cli
from avloc.errors import ConfigError, InputError, run_click_command
from avloc.evaluation.model_loading import model_from_checkpoint
from avloc.evaluation.options import EvaluateOptions
from avloc.evaluation.runner import evaluate
from avloc.model import FNACModel

torch.set_num_threads(2)
TRUNK_NAMES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return FNACModel(dim=8).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model_state=tiny_model.state_dict(), model_config=tiny_model.model_config())
    return path


@pytest.fixture(scope="module")
def vggss_root(tmp_path_factory):
    from avloc.tools.synth import write_benchmark

    return write_benchmark(tmp_path_factory.mktemp("vggss") / "v", "vggss", 5, seed=11, frame_size=(64, 48))


def _run(args):
    """(exit code, stdout + stderr) of ``avloc ARGS``, errors mapped to exit codes as ``avloc`` does."""
    with CliRunner().isolation() as (_, _, output):
        code = run_click_command(cli, args, "avloc")
    return code, output.getvalue().decode()


def to_reference_layout(model: FNACModel) -> dict:
    """avloc's FNACModel state renamed into the released FNAC / EZ-VSL key layout."""
    out = {}
    for key, value in model.state_dict().items():
        part, rest = key.split(".", 1)
        kind, rest = rest.split(".", 1)
        if kind == "trunk":
            index, tail = rest.split(".", 1)
            name = f"{'imgnet' if part == 'visual' else 'audnet'}.{TRUNK_NAMES[int(index)]}.{tail}"
        else:
            name = f"{'img_proj' if part == 'visual' else 'aud_proj'}.{rest}"
        out[name] = value.clone()
    return out


# ------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("wrap", ["plain", "module", "model_key", "module_in_model_key"])
def test_released_checkpoint_import(tmp_path, tiny_model, wrap):
    state = to_reference_layout(tiny_model)
    assert any(k.startswith("imgnet.layer4.") for k in state) and "aud_proj.weight" in state
    if wrap in ("module", "module_in_model_key"):
        state = {f"module.{k}": v for k, v in state.items()}
    obj = {"model": state, "epoch": 3} if wrap in ("model_key", "module_in_model_key") else state
    path = tmp_path / "released.pth"
    torch.save(obj, path)
    model, info = model_from_checkpoint(path)
    assert info["kind"] == "released" and info["model_config"]["dim"] == 8
    ours = tiny_model.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(value, ours[key]), key
    img, spec = torch.randn(2, 3, 64, 64), torch.randn(2, 1, 257, 50)
    with torch.no_grad():
        for a, b in zip(model(img, spec), tiny_model(img, spec)):
            assert torch.equal(a, b)


def test_checkpoint_errors_are_one_line_input_errors(tmp_path, tiny_model):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="cannot read checkpoint"):
        model_from_checkpoint(garbage)
    state = to_reference_layout(tiny_model)
    state["img_proj.weight"] = torch.zeros(8, 256, 1, 1)
    torch.save(state, tmp_path / "bad_shape.pth")
    with pytest.raises(InputError, match=r"visual.proj.weight has shape \(8, 256, 1, 1\)") as err:
        model_from_checkpoint(tmp_path / "bad_shape.pth")
    assert "\n" not in str(err.value)
    wrong = dict(tiny_model.state_dict())
    wrong["audio.proj.weight"] = torch.zeros(8, 100)
    save_checkpoint(tmp_path / "avloc_bad.pt", model_state=wrong, model_config=tiny_model.model_config())
    with pytest.raises(InputError, match="does not fit the FNAC model"):
        model_from_checkpoint(tmp_path / "avloc_bad.pt")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(InputError, match="neither an avloc checkpoint nor a released"):
        model_from_checkpoint(tmp_path / "foreign.pt")


# ------------------------------------------------------------------------- end to end

def test_results_do_not_depend_on_batch_size(vggss_root, checkpoint):
    runs = [evaluate(EvaluateOptions(benchmark="vggss", data_root=vggss_root.root, checkpoint=checkpoint,
                                     batch_size=bs, device="cpu", progress=False, write_reports=False,
                                     compute_chunk=2)) for bs in (1, 5)]
    first = runs[0]["_per_sample"]
    assert len(first["ciou"]) == 5
    for other in runs[1:]:
        assert other["_per_sample"]["id"] == first["id"]
        assert np.array_equal(other["_per_sample"]["ciou"], first["ciou"])
        assert other["rows"] == runs[0]["rows"]


def test_model_heatmaps_match_the_metric_api(vggss_root, checkpoint, tiny_model):
    """The runner's per-sample cIoU = localization_scores on maps computed here, one sample at a time."""
    from avloc.evaluation import media
    from avloc.evaluation.benchmarks import load_benchmark

    res = evaluate(EvaluateOptions(benchmark="vggss", data_root=vggss_root.root, checkpoint=checkpoint,
                                   batch_size=2, device="cpu", progress=False, write_reports=False,
                                   upsample="bilinear", compute_chunk=2, limit=2))
    items = load_benchmark("vggss", vggss_root.root).items[:2]
    heat, gts = [], []
    with torch.no_grad():
        for it in items:
            v, a = tiny_model(media.load_frame(it.frame)[None], media.load_spec(it.audio)[None])
            heat.append(torch.einsum("nchw,nc->nhw", v, a)[0])
            gts.append(metrics.gt_map_from_boxes(it.gt))
    expected = metrics.localization_scores(torch.stack(heat), np.stack(gts), upsample="bilinear")
    np.testing.assert_allclose(res["_per_sample"]["ciou"], expected["per_sample"], atol=1e-3)
    assert res["_per_sample"]["pointing"].tolist() == expected["per_sample_pointing"].astype(float).tolist()
    assert res["rows"][0]["pointing"] == pytest.approx(expected["pointing"])
    assert res["upsample"] == "bilinear" and "align_corners=True" in res["protocol"]["upsample"]


def test_cli_vggss_with_missing_media_and_defective_box(vggss_root, checkpoint, tmp_path):
    root = Path(shutil.copytree(vggss_root.root, tmp_path / "v"))
    ids = [it["id"] for it in vggss_root.items]
    (root / "audio" / f"{ids[0]}.wav").unlink()
    entries = json.loads((root / "vggss.json").read_text())
    entries[1]["bbox"] = [[0.396875, 0.6625, -2.8823037615171176e+16, 0.984375]]  # the real file's kind of defect
    (root / "vggss.json").write_text(json.dumps(entries))
    (root / "frames" / f"{ids[2]}.jpg").write_bytes(b"broken jpeg")
    out = tmp_path / "out"
    code, output = _run(["evaluate", "--benchmark", "vggss", "--data-root", str(root), "--checkpoint", str(checkpoint),
                         "--out", str(out), "--overlays", "2", "--device", "cpu", "--batch-size", "2", "--compute-chunk", "2"])
    assert code == 0, output
    assert "expected 5" in output and "found 4" in output and "audio 1" in output
    assert "unreadable: frame 1" in output
    assert "placeholder 1" in output and "empty GT maps scored 1" in output
    for method in ("model", "model, silent audio", "model, other-class audio", "baseline: centre gaussian",
                   "baseline: centre box", "baseline: whole image"):
        assert f"| {method} |" in output
    assert "audio controls:" in output
    results = json.loads((out / "results.json").read_text())
    assert results["upsample"] == "bicubic" and results["protocol"]["threshold"].startswith("median")
    assert results["counts"]["scored"] == 3 and results["counts"]["missing_by_modality"]["audio"] == 1
    assert results["empty_gt_ids"] == [ids[1]]
    table = pq.read_table(out / "per_sample.parquet").to_pydict()
    assert sorted(table["id"]) == sorted([ids[1], ids[3], ids[4]])
    row = table["id"].index(ids[1])
    assert table["empty_gt"][row] and table["ciou"][row] == 0.0 and "placeholder" in table["gt_defects"][row]
    assert all(0 <= c <= 1 for c in table["ciou"])
    assert all(a >= 0.5 for a in table["pred_area"])  # the median threshold predicts at least half
    assert all(0 <= c <= 1 for c in table["ciou_silence"] + table["ciou_shuffled"])
    controls = results["audio_controls"]
    assert set(controls["controls"]) == {"silence", "shuffled"} and "uses_sound" in controls
    assert (out / "summary.png").stat().st_size > 0
    assert len(list((out / "overlays").glob("*.png"))) == 2
    # per class: the scored items' classes, n summing to the scored count, each AP50 from its own items
    per_class = results["per_class"]
    assert sum(r["n"] for r in per_class) == 3
    for r in per_class:
        mine = [c for c, k in zip(table["ciou"], table["class"]) if k == r["class"]]
        assert r["n"] == len(mine) and r["ap50"] == sum(c >= 0.5 for c in mine) / len(mine)
        assert set(r) == {"class", "n", "ap50", "ap50_silence", "ap50_shuffled"}
    assert [r["ap50"] for r in per_class] == sorted(r["ap50"] for r in per_class)
    if len(per_class) > 1:
        assert "per class AP50 x100, weakest" in output


@pytest.mark.parametrize("benchmark,synth_name", [("avsbench-s4", "avsbench-s4"), ("avsbench", "avsbench-s4"),
                                                  ("avsbench-ms3", "avsbench-ms3"), ("flickr", "flickr")])
def test_cli_other_benchmarks_end_to_end(tmp_path, checkpoint, benchmark, synth_name):
    from avloc.tools.synth import write_benchmark

    bset = write_benchmark(tmp_path / "data", synth_name, 1, seed=21, frame_size=(64, 48))
    out = tmp_path / "out"
    code, output = _run(["evaluate", "--benchmark", benchmark, "--data-root", str(tmp_path / "data"),
                         "--checkpoint", str(checkpoint), "--out", str(out), "--overlays", "1", "--device", "cpu",
                         "--upsample", "bilinear", "--compute-chunk", "5"])
    assert code == 0, output
    n = 5 if benchmark.startswith("avsbench") else 1
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["expected"] == n and results["counts"]["scored"] == n
    assert results["rows"][0]["method"] == "model" and results["rows"][0]["n"] == n
    assert results["upsample"] == "bilinear"
    assert results["benchmark"] == synth_name  # the alias avsbench reads and reports as avsbench-s4
    assert bset.root.exists()


def test_cli_bad_inputs_exit_2_with_one_line(vggss_root, checkpoint, tmp_path):
    garbage = tmp_path / "g.pt"
    garbage.write_bytes(b"\x00" * 10)
    cases = [
        (["--data-root", str(vggss_root.root), "--checkpoint", str(garbage)], "cannot read checkpoint"),
        (["--data-root", str(tmp_path), "--checkpoint", str(checkpoint)], "expected <root>/frames/<id>.jpg"),
        (["--data-root", str(vggss_root.root), "--checkpoint", str(tmp_path / "none.pt")], "checkpoint not found"),
    ]
    for extra, message in cases:
        code, output = _run(["evaluate", "--benchmark", "vggss", "--out", str(tmp_path / "o"), "--device", "cpu",
                             *extra])
        assert code == 2, output
        lines = [line for line in output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("avloc: error:") and message in lines[0], output
        assert "Traceback" not in output


def test_ogl_row_with_local_weights(vggss_root, checkpoint, tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(1)
    weights = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), weights)
    res = evaluate(EvaluateOptions(benchmark="vggss", data_root=vggss_root.root, checkpoint=checkpoint, ogl=True,
                                   ogl_weights=weights, limit=2, device="cpu", progress=False, write_reports=False,
                                   compute_chunk=2))
    ogl = [r for r in res["rows"] if r["method"].startswith("model + OGL")]
    assert len(ogl) == 1 and ogl[0]["n"] == 2
    assert len(res["_per_sample"]["ciou_ogl"]) == 2 and res["counts"]["limited_to"] == 2


# ------------------------------------------------------------------------- options, names, progress, files

def test_benchmark_names_match_what_synth_writes():
    from avloc.evaluation.benchmarks import BENCHMARK_CHOICES, canonical_benchmark

    for name in ("vggss", "flickr", "avsbench-s4", "avsbench-ms3"):  # `avloc synth --benchmark` choices
        assert name in BENCHMARK_CHOICES and canonical_benchmark(name) == name
    assert canonical_benchmark("avsbench") == "avsbench-s4"
    with pytest.raises(InputError, match="unknown benchmark 'avsbench-s5'"):
        canonical_benchmark("avsbench-s5")


def test_options_list_every_problem_at_once(tmp_path, checkpoint):
    options = EvaluateOptions(benchmark="imagenet", data_root=tmp_path / "nope", checkpoint=checkpoint,
                              upsample="nearest", batch_size=0, device="tpu", limit=0)
    found = options.problems()
    assert len(found) == 6
    for name in ("--benchmark", "--upsample", "--batch-size", "--device", "--limit", "--data-root"):
        assert sum(p.startswith(name) for p in found) == 1, (name, found)
    with pytest.raises(ConfigError) as err:
        evaluate(options)
    assert err.value.exit_code == 2 and err.value.problems == found
    ok = EvaluateOptions(benchmark="avsbench", data_root=str(tmp_path), checkpoint=str(checkpoint))
    assert ok.checked() is ok and ok.data_root == tmp_path  # str paths become Paths


def test_cli_two_wrong_options_give_one_error_naming_both(checkpoint, tmp_path):
    out_file = tmp_path / "results.txt"
    out_file.write_text("not a folder")
    code, output = _run(["evaluate", "--benchmark", "vggss", "--data-root", str(tmp_path / "missing"),
                         "--checkpoint", str(checkpoint), "--out", str(out_file), "--device", "cpu"])
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("avloc: error:"), output
    assert "--data-root" in lines[0] and f"--out {out_file} is a file" in lines[0]


def test_cli_out_is_checked_before_scoring(vggss_root, checkpoint, tmp_path, monkeypatch):
    from avloc.evaluation import scoring
    from avloc.evaluation.runner import prepare_out

    def never(*args, **kwargs):
        raise AssertionError("scored although --out cannot be written")

    monkeypatch.setattr(scoring, "score_items", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out, message in ((blocker, "is a file, not a folder"), (blocker / "eval", f"{blocker} is a file")):
        code, output = _run(["evaluate", "--benchmark", "vggss", "--data-root", str(vggss_root.root),
                             "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"])
        lines = [line for line in output.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], output
    with pytest.raises(InputError, match="cannot be written"):  # what problems() cannot foresee
        prepare_out(blocker / "eval")
    fresh = tmp_path / "a" / "b"
    prepare_out(fresh)
    assert fresh.is_dir() and not list(fresh.iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes whatever the permission bits")
def test_cli_unwritable_out_exits_2(vggss_root, checkpoint, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, output = _run(["evaluate", "--benchmark", "vggss", "--data-root", str(vggss_root.root),
                             "--checkpoint", str(checkpoint), "--out", str(locked / "eval"), "--device", "cpu"])
    finally:
        locked.chmod(0o700)
    assert code == 2 and "not writable" in output, output


def test_cli_progress_lines_without_a_terminal_and_umask_modes(vggss_root, checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("AVLOC_PROGRESS_INTERVAL", "0")
    args = ["evaluate", "--benchmark", "vggss", "--data-root", str(vggss_root.root), "--checkpoint", str(checkpoint),
            "--overlays", "1", "--device", "cpu", "--batch-size", "2", "--compute-chunk", "2"]
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        old = os.umask(umask)
        try:
            code, output = _run([*args, "--out", str(tmp_path / f"out{umask:o}")])
        finally:
            os.umask(old)
        assert code == 0, output
        progress = [line for line in output.splitlines() if "] evaluate vggss: " in line]
        assert len(progress) >= 3 and "5/5 (100.0%)" in progress[-1] and "done in" in progress[-1], output
        assert "2/5 (40.0%)" in progress[0] and "ETA" in progress[0]
        written = [tmp_path / f"out{umask:o}" / name for name in ("results.json", "per_sample.parquet", "summary.png")]
        written += list((tmp_path / f"out{umask:o}" / "overlays").glob("*.png"))
        assert len(written) >= 4
        for path in written:
            assert path.stat().st_mode & 0o777 == mode, (path, oct(path.stat().st_mode))
    code, output = _run([*args, "--out", str(tmp_path / "quiet"), "--no-progress"])
    assert code == 0 and "] evaluate vggss" not in output, output
    assert "wrote " in output  # the log line still comes


def test_baselines_score_the_same_through_the_metric_api():
    """One copy of the baselines: training's validation scores baseline_batch with localization_scores,
    evaluate scores baseline_masks; both give the same per-sample cIoU."""
    from avloc.evaluation.baselines import BASELINES, baseline_batch, baseline_cious, baseline_masks

    rng = np.random.default_rng(0)
    boxes = [(sorted(rng.random(2)), sorted(rng.random(2))) for _ in range(4)]
    gts = torch.from_numpy(np.stack([metrics.gt_map_from_boxes([[x1, y1, x2, y2]]) for (x1, x2), (y1, y2) in boxes]))
    for upsample in metrics.UPSAMPLE_MODES:
        by_mask = baseline_cious(baseline_masks(upsample), gts)
        for name in BASELINES:
            via_api = metrics.localization_scores(baseline_batch(name, 4), gts, upsample=upsample)["per_sample"]
            assert np.array_equal(via_api, by_mask[name]), (upsample, name)


def test_audio_controls_score_the_same_items_and_can_be_turned_off(vggss_root, checkpoint, tiny_model):
    """Silence row = the model's maps with the embedding of digital silence; 'none' drops the rows."""
    from avloc.audio_controls import silence_like
    from avloc.evaluation import media

    common = dict(benchmark="vggss", data_root=vggss_root.root, checkpoint=checkpoint, device="cpu",
                  progress=False, write_reports=False, compute_chunk=2)
    with_controls = evaluate(EvaluateOptions(**common))
    without = evaluate(EvaluateOptions(**common, audio_controls="none"))
    assert [r["method"] for r in without["rows"]] == [r["method"] for r in with_controls["rows"]
                                                      if "audio" not in r["method"]]
    assert without["audio_controls"] is None
    per = with_controls["_per_sample"]
    assert np.array_equal(per["ciou"], without["_per_sample"]["ciou"])  # the real row is untouched
    # recompute the silence row by hand for every item
    items = {it["id"]: it for it in vggss_root.items}
    with torch.no_grad():
        for i, item_id in enumerate(per["id"]):
            image = media.load_frame(vggss_root.root / "frames" / f"{item_id}.jpg")[None]
            spec = media.load_spec(vggss_root.root / "audio" / f"{item_id}.wav", None, False)[None]
            visual = tiny_model.visual(image)
            silent = tiny_model.audio(silence_like(spec))
            raw = torch.einsum("nchw,nc->nhw", visual, silent)
            gt = torch.from_numpy(metrics.gt_map_from_boxes(items[item_id]["bbox"]))[None]
            assert metrics.per_sample_cious(raw, gt)[0] == pytest.approx(per["ciou_silence"][i], abs=1e-6)
            assert metrics.localization_scores(raw, gt)["per_sample_pointing"][0] == per["pointing_silence"][i]
    for row in with_controls["rows"]:  # every row's pointing is the mean of its per-sample hits
        hits = per["pointing" + row["column"][4:]]
        assert row["pointing"] == pytest.approx(float(np.mean(hits))) and row["pointing_x100"] == pytest.approx(100 * row["pointing"])
    with pytest.raises(ConfigError, match="audio-control"):
        EvaluateOptions(**common, audio_controls="silence,noise").checked()


# ------------------------------------------------------------------------- malformed ground truth

MALFORMED_BOXES = {  # what a damaged or hand-edited vggss.json holds -> the reason each is counted under
    "nan": ([[0.1, float("nan"), 0.5, 0.6]], "nan"),
    "null": ([None], "not_a_box"),
    "three_values": ([[0.1, 0.2, 0.5]], "not_4_values"),
    "strings": ([["0.1", "0.2", "0.5", "0.6"]], "non_numeric"),
    "unnested": ([0.1, 0.2, 0.5, 0.6], "unnested_box"),
    "bbox_null": (None, "bbox_not_a_list"),
}


def test_cli_vggss_malformed_boxes_are_counted_not_a_crash(vggss_root, checkpoint, tmp_path):
    root = Path(shutil.copytree(vggss_root.root, tmp_path / "v"))
    entries = json.loads((root / "vggss.json").read_text())
    by_id = {e["file"]: e for e in entries}
    ids = [it["id"] for it in vggss_root.items]
    # item 0: every malformed box kind at once; 1: an unnested box; 2: no box list at all; 3, 4: good
    box_kinds = ["nan", "null", "three_values", "strings"]
    by_id[ids[0]]["bbox"] = [MALFORMED_BOXES[k][0][0] for k in box_kinds]
    by_id[ids[1]]["bbox"] = MALFORMED_BOXES["unnested"][0]
    by_id[ids[2]]["bbox"] = MALFORMED_BOXES["bbox_null"][0]
    expected = {ids[0]: box_kinds, ids[1]: ["unnested"], ids[2]: ["bbox_null"]}
    # json.dumps writes NaN as the bare token NaN, which is what such a file holds
    (root / "vggss.json").write_text(json.dumps(entries))
    out = tmp_path / "out"
    code, output = _run(["evaluate", "--benchmark", "vggss", "--data-root", str(root), "--checkpoint", str(checkpoint),
                         "--out", str(out), "--overlays", "0", "--device", "cpu", "--audio-control", "none"])
    assert code == 0 and "Traceback" not in output, output
    results = json.loads((out / "results.json").read_text())
    assert results["counts"]["scored"] == len(ids) and results["counts"]["defective_gt_items"] == 3
    for clip, kinds in expected.items():
        for kind in kinds:
            reason = MALFORMED_BOXES[kind][1]
            assert results["counts"]["defective_gt"][reason] == 1, (kind, results["counts"]["defective_gt"])
            assert reason in results["defective_gt_ids"][clip]
            assert f"{reason} 1" in output  # the printed counts name it
    # the unnested box is the one box it evidently is, so it is drawn; malformed boxes draw nothing
    table = pq.read_table(out / "per_sample.parquet").to_pydict()
    empty = dict(zip(table["id"], table["empty_gt"]))
    assert empty == {ids[0]: True, ids[1]: False, ids[2]: True, ids[3]: False, ids[4]: False}


def test_malformed_box_kinds_each_have_their_reason():
    for kind, (boxes, reason) in MALFORMED_BOXES.items():
        from avloc.evaluation.vggss import vggss_defects

        counts, per_clip = vggss_defects([{"file": "a", "bbox": boxes}])
        assert reason in counts and reason in per_clip["a"], kind
    assert metrics.gt_map_from_boxes([[0.1, float("nan"), 0.5, 0.6], [0, 0, 0.5, 0.5]]).sum() == 112 * 112


def test_cli_unreadable_lists_and_meta_csv_are_one_line(vggss_root, checkpoint, tmp_path):
    from avloc.tools.synth import write_benchmark

    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 400, dtype=np.uint8)) + b"\xff\xfe")
    (tmp_path / "folder.csv").mkdir()
    base = ["evaluate", "--out", str(tmp_path / "o"), "--device", "cpu", "--checkpoint", str(checkpoint)]
    vggss = base + ["--benchmark", "vggss", "--data-root", str(vggss_root.root)]
    avs = write_benchmark(tmp_path / "avs", "avsbench-s4", 1, seed=3, frame_size=(64, 48)).root
    meta = next(Path(avs).rglob("s4_meta_data.csv"))
    meta.write_bytes(binary.read_bytes())
    cases = [
        (vggss + ["--test-list", str(tmp_path / "absent.csv")], "No such file"),
        (vggss + ["--test-list", str(tmp_path / "folder.csv")], "Is a directory"),
        (vggss + ["--test-list", str(binary)], "cannot read id list"),
        (base + ["--benchmark", "avsbench-s4", "--data-root", str(avs)], "is not a UTF-8 csv"),
    ]
    for args, message in cases:
        code, output = _run(args)
        lines = [line for line in output.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in output, (args, output)


def test_unsafe_and_forged_checkpoints_are_refused_in_avlocs_words(tmp_path, tiny_model):
    import argparse

    unsafe = tmp_path / "unsafe.pt"
    torch.save({"model": tiny_model.state_dict(), "args": argparse.Namespace(lr=1)}, unsafe)
    with pytest.raises(InputError) as err:
        model_from_checkpoint(unsafe)
    text = str(err.value)
    assert "not a checkpoint avloc can load safely" in text and "argparse.Namespace" in text
    assert "weights_only" not in text and "\n" not in text
    truncated = tmp_path / "truncated.pt"
    save_checkpoint(truncated, model_state=tiny_model.state_dict(), model_config=tiny_model.model_config())
    truncated.write_bytes(truncated.read_bytes()[:5000])
    with pytest.raises(InputError, match="damaged/truncated") as err:
        model_from_checkpoint(truncated)
    assert "\n" not in str(err.value) and "high likelihood" not in str(err.value)

    forged = tmp_path / "forged.pt"  # a model_config that would allocate terabytes
    save_checkpoint(forged, model_state=tiny_model.state_dict(), model_config={**tiny_model.model_config(),
                                                                               "dim": 2 ** 40})
    with pytest.raises(InputError, match=r"model_config .*dim must be an integer in \[1, 65536\], got 1099511627776"):
        model_from_checkpoint(forged)
    for bad in ({"dim": "8"}, {"dim": True}, {"visual_dropout": float("nan")}, {"layers": 99}):
        save_checkpoint(forged, model_state=tiny_model.state_dict(), model_config={**tiny_model.model_config(), **bad})
        with pytest.raises(InputError, match="is refused"):
            model_from_checkpoint(forged)


def test_nan_weights_are_refused_and_nan_heat_maps_warned(vggss_root, tiny_model, tmp_path, capsys):
    from avloc.evaluation.loading import item_batches, load_items
    from avloc.evaluation.scoring import score_items

    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    state["audio.proj.weight"][0, 0] = float("nan")
    nan_ckpt = tmp_path / "nan.pt"
    save_checkpoint(nan_ckpt, model_state=state, model_config=tiny_model.model_config())
    code, output = _run(["evaluate", "--benchmark", "vggss", "--data-root", str(vggss_root.root), "--checkpoint",
                         str(nan_ckpt), "--out", str(tmp_path / "o"), "--device", "cpu"])
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "non-finite weights" in lines[0] and "audio.proj.weight" in lines[0]
    assert not (tmp_path / "o" / "results.json").exists()

    # a model that gives NaN maps by other means (scored through the library) is warned about and counted
    model = FNACModel(dim=8).eval()
    model.load_state_dict(state)
    _, items = load_items("vggss", vggss_root.root, limit=2)
    scores = score_items(items, item_batches(items, 2, 0), model, torch.device("cpu"), progress=False,
                         audio_controls=())
    assert scores.nonfinite_maps == [0, 1]
    assert "2 of 2 heat maps hold NaN or inf" in capsys.readouterr().err


def test_cli_out_on_proc_or_a_read_only_mount_is_refused_before_scoring(vggss_root, checkpoint, tmp_path,
                                                                       monkeypatch):
    from avloc.evaluation import scoring
    from mounts import tmpfs

    def never(*args, **kwargs):
        raise AssertionError("scored although --out cannot be written")

    monkeypatch.setattr(scoring, "score_items", never)
    with tmpfs(tmp_path / "ro", 1 << 20, read_only=True) as read_only:
        for out, message in ((Path("/proc/avloc-eval"), "/proc is not writable"),
                             (read_only / "eval", f"{read_only} is not writable"),
                             (read_only, f"{read_only} is not writable")):
            code, output = _run(["evaluate", "--benchmark", "vggss", "--data-root", str(vggss_root.root),
                                 "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"])
            lines = [line for line in output.splitlines() if line.strip()]
            assert code == 2 and len(lines) == 1 and message in lines[0], (out, output)


def test_per_class_rows_find_a_class_the_average_hides():
    from avloc.evaluation.results import per_class_rows

    # 3 classes of 4 items: two localised every time, one never: the average (0.67) hides the dead class
    per_sample = {"class": ["a"] * 4 + ["b"] * 4 + ["c"] * 4 + [None],
                  "ciou": [0.9] * 8 + [0.1] * 4 + [0.9],
                  "ciou_silence": [0.2] * 12 + [0.9],
                  "ciou_centre_gaussian": [0.3] * 13}
    rows = per_class_rows(per_sample)
    assert [r["class"] for r in rows] == ["c", "a", "b"]
    assert rows[0] == {"class": "c", "n": 4, "ap50": 0.0, "ap50_silence": 0.0}
    assert rows[1]["ap50"] == 1.0 and rows[2]["ap50"] == 1.0
    assert per_class_rows({"class": [], "ciou": []}) == []
