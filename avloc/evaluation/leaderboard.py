"""Per-source scores of a leaderboard set -> the rows of its table and its results dict.

Every method row is computed over the same units: the model (class-agnostic: its one map per
frame is scored against each source), its audio-control rows, and the trivial baselines (centre
gaussian, centre box, whole image; for duets also "the other source's box"). Columns: the
success rate at each of the set's thresholds (IoU@t / CIoU@t, with the comparison recorded),
AUC, mean cIoU, and AP (single source, extended sets), max-F1 (extended sets) or CAP (duets).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import numpy as np

from avloc import metrics
from avloc.audio_controls import CONTROL_LABELS, verdict
from avloc.evaluation.baselines import PROTOCOL_NOTE as BASELINES_NOTE
from avloc.evaluation.benchmarks import LEADERBOARD
from avloc.evaluation.items import BenchmarkSet
from avloc.evaluation.results import FRAME_NOTE, HEAT_MAP_NOTE, LISTED_IDS, is_comparable
from avloc.evaluation.rowscoring import OTHER_SOURCE, UnitScores

RESULTS_SCHEMA = "avloc-evaluate-leaderboard/1"
AP_NOTE = ("AP: confidence = mean of the top 25 % of the raw 224x224 map; units ranked by it; TP = sounding and "
           "cIoU >= 0.5; precision made monotone; area = sum of precision x recall steps (<= 200 thresholds)")
F1_NOTE = ("max-F1: thresholds at every tenth of the sorted confidences; kept = confidence >= threshold; a confident "
           "non-sounding unit is a false positive, an unconfident sounding unit a false negative")
REMOVAL_LABELS = {"remaining": "one source removed, scored on the remaining source",
                  "removed": "one source removed, scored on the removed source"}


def success_key(t: float) -> str:
    return f"success@{t:g}"


def _grouped(columns: dict, key: str, by_frame: bool) -> np.ndarray:
    """A column per unit, or its per-row mean over sources (DSOL's per-frame average)."""
    values = np.asarray(columns[key], dtype=np.float64)
    if not by_frame:
        return values
    rows = np.asarray(columns["row"])
    order = list(dict.fromkeys(rows.tolist()))
    return np.array([np.nanmean(values[rows == r]) if not np.all(np.isnan(values[rows == r])) else np.nan
                     for r in order])


def summarise_units(cious, info, compare: str, confidence=None, cap=None, sounding=None) -> dict:
    """One table row from per-unit values (NaN units of a control row are left out and counted)."""
    c = np.asarray(cious, dtype=np.float64)
    sound = np.ones(len(c), bool) if sounding is None else np.asarray(sounding, dtype=bool)
    keep = ~np.isnan(c) | ~sound  # a non-sounding unit whose prediction is empty has cIoU 0/0
    c, sound = c[keep], sound[keep]
    scored = c[sound]
    base = metrics.summarise_cious(scored)
    row = {success_key(t): metrics.success_rate(scored, t, compare) for t in info.thresholds}
    row.update({"auc_x100": 100.0 * base["auc"], "mean_ciou": base["mean_ciou"], "n": int(len(c)),
                "n_sounding": int(sound.sum())})
    if confidence is not None and info.kind in ("single", "extended"):
        conf = np.asarray(confidence, dtype=np.float64)[keep]
        row["ap_x100"] = 100.0 * metrics.average_precision(conf, c, sound)
        if info.kind == "extended":
            row["max_f1_x100"] = 100.0 * metrics.max_f1(conf, c, sound)
    if cap is not None and info.kind == "duet":
        caps = np.asarray(cap, dtype=np.float64)[keep]
        row["cap_x100"] = 100.0 * float(np.nanmean(caps)) if np.any(~np.isnan(caps)) else math.nan
    return row


def leaderboard_rows(scores: UnitScores, benchmark: str, compare: str, duet_average: str) -> list:
    info = LEADERBOARD[benchmark]
    col = scores.columns
    by_frame = info.kind == "duet" and duet_average == "frame"
    sounding = None if by_frame else col["sounding"]

    def row(method, key, conf=None, cap=None, note=None) -> dict:
        if key not in col:
            return None
        out = {"method": method, "column": key,
               **summarise_units(_grouped(col, key, by_frame), info, compare,
                                 _grouped(col, conf, by_frame) if conf and conf in col else None,
                                 _grouped(col, cap, by_frame) if cap and cap in col else None, sounding)}
        if note:
            out["note"] = note
        return out

    model_name = "model (class-agnostic)" if info.kind == "duet" else "model"
    rows = [row(model_name, "ciou", "confidence", "cap",
                "one map per frame, scored against each source" if info.kind == "duet" else None)]
    for name in ("silence", "shuffled"):
        rows.append(row(f"model, {CONTROL_LABELS[name]}", f"ciou_{name}", f"confidence_{name}", f"cap_{name}"))
    if info.kind == "duet" and np.any(~np.isnan(np.asarray(col.get("ciou_removed", [np.nan]), dtype=float))):
        for name in ("remaining", "removed"):
            rows.append(row(f"model, {REMOVAL_LABELS[name]}", f"ciou_{name}"))
    for name in ("centre_gaussian", "centre_box", "whole_image"):
        rows.append(row(f"baseline: {name.replace('_', ' ')}", f"ciou_{name}", f"confidence_{name}", f"cap_{name}"))
    if info.kind == "duet" and np.any(~np.isnan(np.asarray(col[f"ciou_{OTHER_SOURCE}"], dtype=float))):
        rows.append(row("baseline: the other source's box", f"ciou_{OTHER_SOURCE}",
                        note="the other source's ground-truth region used directly as the predicted mask"))
    return [r for r in rows if r is not None and r["n"] > 0]


def headline_key(benchmark: str) -> str:
    metric, t = LEADERBOARD[benchmark].headline
    return success_key(t) if metric == "success" else f"{metric}_x100"


def controls_summary(rows: list, benchmark: str) -> Optional[dict]:
    key = headline_key(benchmark)
    by_column = {r["column"]: r for r in rows}
    controls = {name: by_column[f"ciou_{name}"][key] for name in CONTROL_LABELS if f"ciou_{name}" in by_column}
    out = {}
    if controls:
        judged = verdict(by_column["ciou"][key], controls)
        out = {"metric": key, "model": by_column["ciou"][key], "controls": controls, "kept": judged["kept"],
               "uses_sound": judged["uses_sound"], "verdict": judged["message"]}
    if "ciou_remaining" in by_column:
        remaining, removed = by_column["ciou_remaining"][key], by_column["ciou_removed"][key]
        out["removal"] = {"remaining": remaining, "removed": removed,
                          "message": (f"with one source removed from the mixture, {key} on the remaining source "
                                      f"{remaining:.1f} vs on the removed source {removed:.1f}: the map "
                                      + ("follows the sound" if remaining > removed else "does NOT follow the sound"))}
    return out or None


def leaderboard_options(benchmark: str, *, rule: str, compare: str, geometry: str, music_window: Optional[str],
                        duet_average: str) -> dict:
    info = LEADERBOARD[benchmark]
    out = {"threshold_rule": rule, "threshold_rule_text": metrics.threshold_rule_text(rule),
           "success_compare": compare, "success_thresholds": list(info.thresholds),
           "headline": headline_key(benchmark)}
    if info.kind == "duet":
        out["map"] = "class-agnostic: one map per frame, scored against each source"
        out["duet_average"] = duet_average
        if info.two_frames:
            out["duet_geometry"] = geometry
    if info.music:
        out["music_window"] = music_window
    return out


def assemble_leaderboard_results(bench: BenchmarkSet, items: list, scores: UnitScores, *, options: dict,
                                 data_root: Path, checkpoint: Path, model_info: dict, upsample: str,
                                 limit: Optional[int], device, batch_size: int) -> dict:
    info = LEADERBOARD[bench.benchmark]
    rows = leaderboard_rows(scores, bench.benchmark, options["success_compare"], options.get("duet_average", "source"))
    col = scores.columns
    scored_rows = sorted(set(col["row"]))
    counts = bench.counts()
    counts["unreadable_by_modality"] = {m: len(v) for m, v in scores.unreadable.items()}
    counts["scored"] = len(scored_rows)
    counts["units_scored"] = scores.n
    counts["non_sounding_scored"] = int(sum(not s for s in col["sounding"]))
    counts["limited_to"] = limit
    counts["empty_gt_scored"] = int(sum(1 for a, s in zip(col["gt_area"], col["sounding"]) if s and a == 0))
    counts["audio"] = dict(scores.audio_notes)
    published = None
    if info.published:
        published = {"metric": info.published[0], "fnac": info.published[1],
                     "note": "leaderboard value; its training data and schedule are not published with it"}
    results = {
        "schema": RESULTS_SCHEMA,
        "benchmark": bench.benchmark,
        "data_root": str(data_root),
        "layout": bench.layout,
        "checkpoint": str(checkpoint),
        "checkpoint_kind": model_info["kind"],
        "model_config": model_info["model_config"],
        "upsample": upsample,
        "options": options,
        "protocol": {**bench.protocol, "upsample": metrics.PROTOCOL["upsample"][upsample], "frame": FRAME_NOTE,
                     "heat_map": HEAT_MAP_NOTE, "normalise": metrics.PROTOCOL["normalise"],
                     "per_unit": metrics.PROTOCOL["per_sample"] + " (one unit per source)",
                     "success": f"100 x share of units with cIoU {options['success_compare']} t",
                     "auc": metrics.PROTOCOL["auc"], "ap": AP_NOTE, "max_f1": F1_NOTE if info.kind == "extended" else None,
                     "cap": metrics.CAP_DEFINITION if info.kind == "duet" else None, "baselines": BASELINES_NOTE},
        "comparable_with_published": is_comparable(bench, counts["scored"]),
        "published_fnac": published,
        "counts": counts,
        "missing_ids": {m: v[:LISTED_IDS] for m, v in bench.missing.items()},
        "unreadable": {m: v[:LISTED_IDS] for m, v in scores.unreadable.items()},
        "defective_gt_ids": dict(list(bench.defective_items.items())[:LISTED_IDS]),
        "rows": rows,
        "audio_controls": controls_summary(rows, bench.benchmark),
        "device": str(device),
        "batch_size": batch_size,
        "seconds": scores.seconds,
        "samples_per_s": counts["scored"] / scores.seconds if scores.seconds > 0 else None,
    }
    table = {k: list(v) for k, v in col.items()}
    table["id"] = [items[r].id for r in col["row"]]
    results["_per_sample"] = table
    return results


def metric_columns(results: dict) -> list:
    keys = [k for k in results["rows"][0] if k.startswith("success@")]
    for k in ("auc_x100", "ap_x100", "max_f1_x100", "cap_x100", "mean_ciou"):
        if any(k in r for r in results["rows"]):
            keys.append(k)
    return keys


def _label(key: str, results: dict) -> str:
    compare = results["options"]["success_compare"]
    if key.startswith("success@"):
        prefix = "CIoU" if LEADERBOARD[results["benchmark"]].kind == "duet" else "IoU"
        return f"{prefix}@{key.split('@')[1]} ({compare})"
    return {"auc_x100": "AUC", "ap_x100": "AP", "max_f1_x100": "max-F1", "cap_x100": "CAP",
            "mean_ciou": "mean cIoU"}[key]


def format_leaderboard_table(results: dict) -> str:
    """The printed table; its header states every option the numbers depend on."""
    opts = results["options"]
    header = [f"{k}: {v}" for k, v in opts.items() if k not in ("threshold_rule_text", "success_thresholds")]
    lines = [f"upsample: {results['upsample']}; " + "; ".join(header)]
    keys = metric_columns(results)
    lines.append("| method | " + " | ".join(_label(k, results) for k in keys) + " | n |")
    lines.append("|---" * (len(keys) + 2) + "|")
    for r in results["rows"]:
        cells = [("" if k not in r or r[k] is None or (isinstance(r[k], float) and math.isnan(r[k])) else
                  (f"{r[k]:.4f}" if k == "mean_ciou" else f"{r[k]:.2f}")) for k in keys]
        lines.append(f"| {r['method']} | " + " | ".join(cells) + f" | {r['n']} |")
    if LEADERBOARD[results["benchmark"]].kind == "extended":
        lines.append(f"IoU@t, AUC and mean cIoU over the {results['rows'][0]['n_sounding']} sounding items; AP and "
                     f"max-F1 over all {results['rows'][0]['n']}, non-sounding pairs included")
    pub = results.get("published_fnac")
    if pub:
        lines.append(f"published FNAC {pub['metric']}: {pub['fnac']} (comparable: "
                     f"{'yes' if results['comparable_with_published'] else 'no, not the full official set'})")
    ctl = results.get("audio_controls") or {}
    if ctl.get("verdict"):
        lines.append(f"audio controls ({ctl['metric']}): {ctl['verdict']}")
    if ctl.get("removal"):
        lines.append(ctl["removal"]["message"])
    audio = results["counts"].get("audio") or {}
    if any(audio.values()):
        lines.append("audio: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in audio.items()))
    return "\n".join(lines)
