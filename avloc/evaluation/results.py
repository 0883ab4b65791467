"""Scores -> the results dict (what results.json holds) and the per-sample table.

Rows: the model, OGL when asked, then each baseline, all over the same scored items. Counts say
what was expected, found, missing, unreadable and scored, so a number is never read without
knowing which items it covers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from avloc import metrics
from avloc.audio_controls import CONTROL_LABELS, verdict
from avloc.evaluation.baselines import PROTOCOL_NOTE as BASELINES_NOTE
from avloc.evaluation.benchmarks import FULL_SET_SIZES
from avloc.evaluation.items import BenchmarkSet
from avloc.evaluation.scoring import Scores

RESULTS_SCHEMA = "avloc-evaluate/1"
LISTED_IDS = 50  # ids kept per list in results.json (counts are complete)
FRAME_NOTE = "resized to exactly 224x224 (bicubic, aspect not kept), ImageNet normalisation"
HEAT_MAP_NOTE = "<V[:, p], a> per position (eval mode), no temperature"
CONTROLS_NOTE = ("each item scored again with its audio replaced: by digital silence; by the audio of another "
                 "item of a different class and clip (seeded, from earlier items where possible)")
OGL_NOTE = "minmax(0.4 * AV + 0.6 * OBJ), OBJ = ImageNet ResNet-18 layer4 mean |.|, bilinear align_corners=True"


def summary_rows(scores: Scores) -> list:
    """One row per method: AP50 ("ciou"), AUC, mean cIoU, pointing and n, plus the x100 columns."""
    done = scores.done
    rows = [{"method": "model", "column": "ciou", **metrics.summarise_cious(scores.ciou[done])}]
    for name, values in scores.controls.items():
        scored = done & ~np.isnan(values)
        rows.append({"method": f"model, {CONTROL_LABELS[name]}", "column": f"ciou_{name}",
                     **metrics.summarise_cious(values[scored])})
    if scores.ogl is not None:
        rows.append({"method": "model + OGL (alpha 0.4)", "column": "ciou_ogl",
                     **metrics.summarise_cious(scores.ogl[done])})
    for name, values in scores.baselines.items():
        rows.append({"method": f"baseline: {name.replace('_', ' ')}", "column": f"ciou_{name}",
                     **metrics.summarise_cious(values[done])})
    for row in rows:
        hits = scores.pointing.get(row["column"])
        hits = hits[done & ~np.isnan(hits)] if hits is not None else np.array([])
        row["pointing"] = float(hits.mean()) if len(hits) else float("nan")
        row["ciou_x100"] = 100.0 * row["ciou"]
        row["auc_x100"] = 100.0 * row["auc"]
        row["pointing_x100"] = 100.0 * row["pointing"]
    return rows


def empty_gt_ids(items: list, scores: Scores) -> list:
    return [items[i].id for i in scores.scored_index if scores.gt_area[i] == 0]


def result_counts(bench: BenchmarkSet, scores: Scores, limit: Optional[int], n_empty_gt: int) -> dict:
    counts = bench.counts()
    counts["unreadable_by_modality"] = {m: len(v) for m, v in scores.unreadable.items()}
    counts["scored"] = int(scores.done.sum())
    counts["limited_to"] = limit
    counts["empty_gt_scored"] = n_empty_gt
    counts["nonfinite_heatmaps"] = len(scores.nonfinite_maps)
    return counts


def is_comparable(bench: BenchmarkSet, scored: int) -> bool:
    """True only when the complete official list was expected and every item of it was scored."""
    full_set = FULL_SET_SIZES.get(bench.benchmark)
    return bool(full_set and bench.expected == full_set and scored == full_set)


def per_sample_table(items: list, scores: Scores) -> dict:
    """Column name -> values over the scored items (what per_sample.parquet holds)."""
    idx = scores.scored_index
    table = {
        "id": [items[i].id for i in idx],
        "clip": [items[i].clip for i in idx],
        "class": [items[i].label for i in idx],
        "frame_index": [items[i].frame_index for i in idx],
        "ciou": scores.ciou[idx],
        "pred_area": scores.pred_area[idx],
        "gt_area": scores.gt_area[idx],
        "empty_gt": scores.gt_area[idx] == 0,
        "gt_defects": [",".join(items[i].flags) for i in idx],
        **{f"ciou_{name}": v[idx] for name, v in scores.baselines.items()},
    }
    if scores.ogl is not None:
        table["ciou_ogl"] = scores.ogl[idx]
    for name, values in scores.controls.items():
        table[f"ciou_{name}"] = values[idx]
    for column, hits in scores.pointing.items():
        table["pointing" + column[4:]] = hits[idx]  # "ciou" -> "pointing", "ciou_silence" -> "pointing_silence"
    return table


def per_class_rows(per_sample: dict) -> list:
    """Per class (items that have one), the model's AP50 beside its audio-control rows, weakest first:
    an average over classes can hide a class the model never localises."""
    classes = per_sample.get("class") or []
    columns = ["ciou"] + [c for c in per_sample if c.startswith("ciou_") and c[5:] in CONTROL_LABELS]
    by_class: dict = {}
    for i, label in enumerate(classes):
        if label is not None and label != "":
            by_class.setdefault(label, []).append(i)
    rows = []
    for label, index in by_class.items():
        row = {"class": label, "n": len(index)}
        for column in columns:
            values = np.asarray(per_sample[column], dtype=float)[index]
            values = values[~np.isnan(values)]
            row["ap50" if column == "ciou" else f"ap50_{column[5:]}"] = (
                metrics.summarise_cious(values)["ciou"] if len(values) else None)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["ap50"], r["class"]))


def audio_control_summary(rows: list) -> Optional[dict]:
    """The model's AP50 beside its audio-control rows, and the verdict on whether it uses the sound."""
    by_column = {row["column"]: row for row in rows}
    controls = {name: by_column[f"ciou_{name}"]["ciou"] for name in CONTROL_LABELS if f"ciou_{name}" in by_column}
    if not controls:
        return None
    judged = verdict(by_column["ciou"]["ciou"], controls)
    return {"ap50": by_column["ciou"]["ciou"], "controls": controls, "kept": judged["kept"],
            "uses_sound": judged["uses_sound"], "verdict": judged["message"], "note": CONTROLS_NOTE}


def protocol(bench: BenchmarkSet, upsample: str, ogl: bool) -> dict:
    return {**metrics.PROTOCOL, "upsample": metrics.PROTOCOL["upsample"][upsample], **bench.protocol,
            "frame": FRAME_NOTE, "heat_map": HEAT_MAP_NOTE, "baselines": BASELINES_NOTE,
            "ogl": OGL_NOTE if ogl else None}


def assemble_results(bench: BenchmarkSet, items: list, scores: Scores, *, data_root: Path, checkpoint: Path,
                     model_info: dict, upsample: str, limit: Optional[int], device, batch_size: int,
                     compute_chunk: int) -> dict:
    """The results dict; ``results["_per_sample"]`` is the per-sample table (not written to JSON)."""
    empty_gt = empty_gt_ids(items, scores)
    rows = summary_rows(scores)
    counts = result_counts(bench, scores, limit, len(empty_gt))
    elapsed = scores.seconds
    results = {
        "schema": RESULTS_SCHEMA,
        "benchmark": bench.benchmark,
        "data_root": str(data_root),
        "layout": bench.layout,
        "checkpoint": str(checkpoint),
        "checkpoint_kind": model_info["kind"],
        "model_config": model_info["model_config"],
        "upsample": upsample,
        "protocol": protocol(bench, upsample, scores.ogl is not None),
        "comparable_with_published": is_comparable(bench, counts["scored"]),
        "counts": counts,
        "missing_ids": {m: v[:LISTED_IDS] for m, v in bench.missing.items()},
        "unreadable": {m: v[:LISTED_IDS] for m, v in scores.unreadable.items()},
        "defective_gt_ids": dict(list(bench.defective_items.items())[:LISTED_IDS]),
        "empty_gt_ids": empty_gt[:LISTED_IDS],
        "rows": rows,
        "audio_controls": audio_control_summary(rows),
        "device": str(device),
        "batch_size": batch_size,
        "compute_chunk": compute_chunk,
        "seconds": elapsed,
        "samples_per_s": counts["scored"] / elapsed if elapsed > 0 else None,
    }
    results["_per_sample"] = per_sample_table(items, scores)
    results["per_class"] = per_class_rows(results["_per_sample"])
    return results
