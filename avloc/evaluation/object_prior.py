"""What finding the objects without hearing the sound scores: the level audio-control rows sit at.

In a frame that holds several objects of the set's classes, one of them sounding, a model that finds
every object but ignores the audio can only pick one. Its expected AP50 is what a silent- or
swapped-audio row should be read against; the centre prior does not know where the objects are.
Scored with the frame's true object boxes (an oracle) through the same protocol as a model's map
(min-max normalisation, median threshold, cIoU >= 0.5):

* ``random_object``: the expected AP50 when the map peaks on one of the frame's objects, each equally likely;
* ``largest_object`` / ``smallest_object``: the map peaks on the largest / smallest object (what a
  size shortcut would give);
* ``sounding_object``: the map peaks on the sounding object: the ceiling of an ideal object-shaped map
  under the median threshold (an object under a quarter of the frame cannot reach cIoU 0.5).

Only synthetic sets know their distractors' boxes: ``avloc synth`` records them per item
(``distractor_boxes``), the clip generator per clip (``distractors``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from avloc import metrics
from avloc.metrics import AP_THRESHOLD, MAP_SIZE

PRIORS = ("random_object", "largest_object", "smallest_object", "sounding_object")


def object_map(box, size: int = MAP_SIZE) -> np.ndarray:
    """1 inside ``box`` ([x1, y1, x2, y2] fractions), falling linearly with the distance outside it,
    so the median threshold keeps the box and the pixels nearest to it (as a peaked map would)."""
    x1, y1, x2, y2 = (min(max(float(v), 0.0), 1.0) * size for v in box)
    centres = np.arange(size, dtype=np.float64) + 0.5
    dx = np.maximum(0.0, np.maximum(x1 - centres, centres - x2))
    dy = np.maximum(0.0, np.maximum(y1 - centres, centres - y2))
    distance = np.hypot(dy[:, None], dx[None, :])
    return (1.0 - distance / (size * np.sqrt(2.0))).astype(np.float32)


def _box_area(box) -> float:
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def _hits(object_boxes: list, gt_boxes: list) -> np.ndarray:
    """[objects] bool: does a map peaked on each object reach cIoU >= 0.5 against the sounding boxes."""
    maps = torch.from_numpy(np.stack([object_map(b) for b in object_boxes]))
    pred = metrics.threshold_masks(metrics.minmax_normalise(maps))
    gt = torch.from_numpy(metrics.gt_map_from_boxes(gt_boxes)).expand(len(object_boxes), -1, -1)
    return metrics.ciou_from_masks(pred, gt) >= AP_THRESHOLD


def object_prior_ap50(items) -> dict:
    """``items``: (sounding boxes, distractor boxes) per frame -> {prior: AP50, "n": frames}.

    Frames without a usable sounding box are left out, as the benchmarks leave them out."""
    scores = {name: [] for name in PRIORS}
    for gt_boxes, distractor_boxes in items:
        sounding = [b for b in gt_boxes if metrics.usable_box(b) is not None]
        if not sounding:
            continue
        objects = sounding + [b for b in distractor_boxes if b is not None and metrics.usable_box(b) is not None]
        hits = _hits(objects, sounding)
        scores["random_object"].append(float(hits.mean()))
        areas = [_box_area(b) for b in objects]
        scores["largest_object"].append(float(hits[int(np.argmax(areas))]))
        scores["smallest_object"].append(float(hits[int(np.argmin(areas))]))
        scores["sounding_object"].append(float(hits[:len(sounding)].max()))
    n = len(scores["random_object"])
    out = {name: (float(np.mean(v)) if n else float("nan")) for name, v in scores.items()}
    out["n"] = n
    return out


def copy_items(items: list) -> list:
    """(sounding boxes, distractor boxes) of each scored item of an ``avloc synth`` copy (its first
    frame); items without recorded distractor boxes (older copies, mask layouts) are left out."""
    return [(it["bbox"], it["distractor_boxes"][0]) for it in items
            if it.get("role", "test") == "test" and it.get("distractor_boxes") and it.get("bbox")]


def synth_copy_items(manifest: Path) -> list:
    """``copy_items`` of an ``avloc synth`` copy's manifest (``synth_benchmark.json``)."""
    return copy_items(json.loads(Path(manifest).read_text()).get("items", []))


def clip_set_items(synth_json: Path, keys=None) -> list:
    """(sounding boxes, distractor boxes) of the clips of a generated clip set (``synth.json``),
    restricted to ``keys`` (clip ids) when given."""
    data = json.loads(Path(synth_json).read_text())
    wanted = None if keys is None else set(keys)
    return [(it["bbox"], [d["bbox"] for d in it.get("distractors", [])]) for it in data.get("items", [])
            if wanted is None or it["id"] in wanted]


def prior_line(scores: dict) -> str:
    """One line for a report: the four priors as AP50 x 100."""
    return (f"object prior (oracle boxes, {scores['n']} frames): random object {100 * scores['random_object']:.1f}, "
            f"largest object {100 * scores['largest_object']:.1f}, smallest object {100 * scores['smallest_object']:.1f}, "
            f"sounding object (the ceiling) {100 * scores['sounding_object']:.1f}")


HIDDEN_EDGES = (0.0, 0.02, 0.1, 0.2, 0.3, 1.0)


def misses_by_hidden(per_sample: dict, items: list, edges: tuple = HIDDEN_EDGES) -> list:
    """AP50 and pointing of an evaluation's items grouped by how much of the sounding object other
    objects hide (``hidden_shares`` of an ``avloc synth`` copy, first frame): a map can point at the
    right object and still fail a box drawn around a silhouette that is largely covered.

    ``per_sample``: evaluate's per-sample table ("id", "ciou", "pointing"); ``items``: the copy's
    manifest items. Returns one row per non-empty group: {"hidden": "a-b", "n", "ap50", "pointing"}."""
    share = {it["id"]: it["hidden_shares"][0] for it in items if it.get("hidden_shares")}
    keep = [i for i, item_id in enumerate(per_sample["id"]) if item_id in share]
    hidden = np.array([share[per_sample["id"][i]] for i in keep])
    hit = np.asarray(per_sample["ciou"], dtype=float)[keep] >= AP_THRESHOLD
    pointing = np.asarray(per_sample["pointing"], dtype=float)[keep]
    rows = []
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        group = (hidden > lo) & (hidden <= hi) if k else (hidden <= hi)
        if group.any():
            rows.append({"hidden": f"{lo:g}-{hi:g}", "n": int(group.sum()), "ap50": float(hit[group].mean()),
                         "pointing": float(np.nanmean(pointing[group]))})
    return rows
