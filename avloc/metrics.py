"""Localisation metrics with the exact published protocol (METHOD.md §5).

Per sample: heat map -> upsample to 224 x 224 (bicubic, align_corners=False by default; the
reference test script's bilinear, align_corners=True, on request) -> min-max to [0, 1] (left
unchanged when max == min) -> threshold t = the value at index 25,088 of the 50,176 values
sorted ascending -> P = map >= t -> cIoU = sum(P*G) / (sum(G) + sum(P*[G == 0])).
Over a set: "ciou" = fraction of samples with cIoU >= 0.5 (an AP50, the number papers call
cIoU), "auc" = trapezoid area under success(t) for t = 0.05 * i, i = 0..20, and "mean_ciou".
Beside the protocol, not part of it: "pointing", the fraction of samples whose normalised map peaks
inside the ground truth (does the map find the sounding object, whatever the extent of its
median-threshold region).

Ground-truth maps: VGG-SS boxes (fractions), Flickr-SoundNet boxes (pixels of a 256 x 256
canvas, soft consensus of up to 3 annotators), AVSBench masks (> 0).

torch is imported inside the functions that need it, so option checks and ``--help`` can read
the constants (``UPSAMPLE_MODES``) without loading it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

MAP_SIZE = 224
N_PIXELS = MAP_SIZE * MAP_SIZE  # 50,176
MEDIAN_INDEX = N_PIXELS // 2  # 25,088: the reference's sort(...)[int(h * w / 2)]
UPSAMPLE_MODES = ("bicubic", "bilinear")
AP_THRESHOLD = 0.5
AUC_THRESHOLDS = tuple(0.05 * i for i in range(21))  # computed as the reference does (0.05 * i)
FLICKR_CANVAS = 256

PROTOCOL = {
    "map_size": MAP_SIZE,
    "upsample": {"bicubic": "bicubic, align_corners=False", "bilinear": "bilinear, align_corners=True"},
    "normalise": "min-max per sample to [0, 1], unchanged when max == min",
    "threshold": f"median: sorted ascending, value at index {MEDIAN_INDEX} of {N_PIXELS}; P = map >= t",
    "per_sample": "cIoU = sum(P*G) / (sum(G) + sum(P*[G==0]))",
    "ciou": "fraction of samples with cIoU >= 0.5 (AP50, the number papers call cIoU)",
    "auc": "trapezoid area under success(t) = fraction with cIoU >= t, t = 0.05*i, i = 0..20",
    "mean_ciou": "mean per-sample cIoU",
    "pointing": "fraction of samples whose normalised map peaks where G > 0 (a flat top: the centre of its "
                "bounding rectangle); not part of the published protocol, reported beside it",
}


def _as_float_tensor(maps) -> torch.Tensor:
    import torch

    t = maps if isinstance(maps, torch.Tensor) else torch.from_numpy(np.asarray(maps))
    return t.detach().to(torch.float32)


def upsample_maps(heatmaps, upsample: str = "bicubic", size: int = MAP_SIZE) -> torch.Tensor:
    """[N, h, w] raw maps -> [N, size, size] float32 on the same device."""
    if upsample not in UPSAMPLE_MODES:
        raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
    import torch.nn.functional as F

    maps = _as_float_tensor(heatmaps)
    if maps.ndim != 3:
        raise ValueError(f"heat maps must be [N, h, w], got shape {tuple(maps.shape)}")
    align = upsample == "bilinear"  # bicubic as in validation (False), bilinear as in the test script (True)
    return F.interpolate(maps.unsqueeze(1), size=(size, size), mode=upsample, align_corners=align).squeeze(1)


def minmax_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Per-sample (x - min) / (max - min); samples with max == min are returned unchanged."""
    import torch

    flat = maps.reshape(maps.shape[0], -1)
    lo = flat.min(dim=1).values.view(-1, *([1] * (maps.ndim - 1)))
    hi = flat.max(dim=1).values.view(-1, *([1] * (maps.ndim - 1)))
    span = hi - lo
    flat_ok = span != 0
    return torch.where(flat_ok, (maps - lo) / torch.where(flat_ok, span, torch.ones_like(span)), maps)


def median_thresholds(maps: torch.Tensor) -> torch.Tensor:
    """[N] the value at index N_PIXELS // 2 of each map's values sorted ascending."""
    flat = maps.reshape(maps.shape[0], -1)
    return flat.sort(dim=1).values[:, flat.shape[1] // 2]


def threshold_masks(maps: torch.Tensor) -> torch.Tensor:
    """Normalised [N, 224, 224] maps -> boolean predicted masks P = map >= its median threshold."""
    return maps >= median_thresholds(maps).view(-1, 1, 1)


def prediction_masks(heatmaps, upsample: str = "bicubic") -> tuple:
    """Raw maps -> (normalised 224 x 224 maps, boolean predicted masks P)."""
    maps = minmax_normalise(upsample_maps(heatmaps, upsample))
    return maps, threshold_masks(maps)


def ciou_from_masks(pred: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """Per-sample cIoU of boolean P [N,224,224] against G [N,224,224] in [0, 1] (float64 sums)."""
    import torch

    p = pred.to(torch.float64)
    g = gt.to(device=pred.device, dtype=torch.float64)
    inter = (p * g).sum(dim=(1, 2))
    false_pos = (p * (g == 0)).sum(dim=(1, 2))
    denom = g.sum(dim=(1, 2)) + false_pos
    return (inter / denom).cpu().numpy()


def peak_points(maps: torch.Tensor) -> torch.Tensor:
    """[N, 2] (row, column) of each [N, H, W] map's maximum. Where several pixels share it (a flat top, a
    constant map), the centre of the rectangle bounding them, so a constant map points at its centre."""
    import torch

    top = maps >= maps.amax(dim=(1, 2), keepdim=True)

    def middle(present: torch.Tensor) -> torch.Tensor:  # [N, L] bool -> [N] middle index of the True span
        length = present.shape[1]
        index = torch.arange(length, device=present.device)
        first = torch.where(present, index, length).amin(dim=1)
        last = torch.where(present, index, -1).amax(dim=1)
        return torch.where(first <= last, (first + last) // 2, torch.full_like(first, (length - 1) // 2))

    return torch.stack([middle(top.any(dim=2)), middle(top.any(dim=1))], dim=1)


def pointing_hits(maps: torch.Tensor, gt: torch.Tensor) -> np.ndarray:
    """Per sample: does the map's peak (``peak_points``) fall on the ground truth (G > 0)? The pointing
    game: it asks whether the map finds the sounding object at all, where cIoU also asks how well the
    median-threshold region fits the box, which a correctly peaked map can fail on small boxes."""
    import torch

    rows, cols = peak_points(maps).unbind(dim=1)
    g = gt.to(maps.device)
    return (g[torch.arange(g.shape[0], device=g.device), rows, cols] > 0).cpu().numpy()


def summarise_cious(per_sample) -> dict:
    """AP50 ("ciou"), AUC over 21 thresholds and the mean, from per-sample cIoUs."""
    cious = np.asarray(per_sample, dtype=np.float64)
    n = len(cious)
    if n == 0:
        return {"ciou": math.nan, "auc": math.nan, "mean_ciou": math.nan, "n": 0}
    success = [float(np.sum(cious >= t)) / n for t in AUC_THRESHOLDS]
    auc = np.trapezoid(np.asarray(success), np.asarray(AUC_THRESHOLDS))  # what sklearn.metrics.auc computes
    return {"ciou": float(np.sum(cious >= AP_THRESHOLD)) / n, "auc": float(auc), "mean_ciou": float(np.mean(cious)),
            "n": n}


def _scored_maps(heatmaps, gt_maps, upsample: str) -> tuple:
    """(normalised maps, predicted masks, ground truth as float32), shapes checked."""
    maps, pred = prediction_masks(heatmaps, upsample)
    gt = _as_float_tensor(gt_maps)
    if gt.shape != pred.shape:
        raise ValueError(f"ground-truth maps must be [N, {MAP_SIZE}, {MAP_SIZE}] matching the heat maps, "
                         f"got {tuple(gt.shape)} for {pred.shape[0]} heat maps")
    return maps, pred, gt


def per_sample_cious(heatmaps, gt_maps, upsample: str = "bicubic") -> np.ndarray:
    _, pred, gt = _scored_maps(heatmaps, gt_maps, upsample)
    return ciou_from_masks(pred, gt)


def localization_scores(heatmaps, gt_maps, upsample: str = "bicubic") -> dict:
    """heatmaps [N, h, w] (raw), gt_maps [N, 224, 224] in [0, 1] ->
    {"ciou", "auc", "mean_ciou", "pointing", "per_sample" (cIoU), "per_sample_pointing"}."""
    maps, pred, gt = _scored_maps(heatmaps, gt_maps, upsample)
    cious = ciou_from_masks(pred, gt)
    hits = pointing_hits(maps, gt)
    scores = summarise_cious(cious)
    scores.pop("n")
    scores["pointing"] = float(hits.mean()) if len(hits) else math.nan
    scores["per_sample"] = cious
    scores["per_sample_pointing"] = hits
    return scores


# ---------------------------------------------------------------- ground-truth maps

def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def usable_box(box):
    """A box's four coordinates as floats, or None when it cannot be drawn at all (not a list of four
    numbers, or a NaN among them); such boxes are counted as defective and left out of the map."""
    if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(_is_number(v) for v in box):
        return None
    vals = tuple(float(v) for v in box)
    return None if any(math.isnan(v) for v in vals) else vals


def gt_map_from_boxes(boxes, size: int = MAP_SIZE) -> np.ndarray:
    """VGG-SS boxes [[x1, y1, x2, y2], ...] as fractions -> binary union map [size, size] float32.

    Each coordinate is clipped to [0, 1], scaled by ``size`` and truncated to int; a box fills
    rows y1:y2 and columns x1:x2 (empty when x2 <= x1 or y2 <= y1, as the formula gives). Boxes
    that are not four numbers (``usable_box``) draw nothing.
    """
    gt = np.zeros((size, size), dtype=np.float32)
    for box in boxes if isinstance(boxes, (list, tuple)) else ():
        vals = usable_box(box)
        if vals is None:
            continue
        x1, y1, x2, y2 = (int(min(max(v, 0.0), 1.0) * size) for v in vals)
        gt[y1:y2, x1:x2] = 1.0
    return gt


def flickr_box_to_map_coords(box, size: int = MAP_SIZE, canvas: int = FLICKR_CANVAS) -> tuple:
    """Canvas pixels -> map pixels, int(size * v / canvas), held to [0, size]: a negative coordinate
    would otherwise count from the far edge when used as an index (such boxes are flagged by
    ``flickr_box_defects``)."""
    return tuple(min(max(int(size * int(v) / canvas), 0), size) for v in box)


def gt_map_from_flickr_boxes(boxes, size: int = MAP_SIZE, canvas: int = FLICKR_CANVAS) -> np.ndarray:
    """Flickr boxes (xmin, ymin, xmax, ymax) in pixels of a 256 x 256 canvas, one per annotator box ->
    soft consensus map: sum of box indicators / 2, clipped at 1."""
    gt = np.zeros((size, size), dtype=np.float32)
    for box in boxes:
        x1, y1, x2, y2 = flickr_box_to_map_coords(box, size, canvas)
        gt[y1:y2, x1:x2] += 1.0
    gt /= 2.0
    np.minimum(gt, 1.0, out=gt)
    return gt


def flickr_box_defects(box, canvas: int = FLICKR_CANVAS) -> list:
    """Names of the defects of one Flickr box in canvas pixels (empty list when it is well-formed)."""
    x1, y1, x2, y2 = box
    defects = []
    if min(box) < 0:
        defects.append("negative_coordinate")
    if max(box) > canvas:
        defects.append("beyond_canvas")
    if x2 < x1 or y2 < y1:
        defects.append("inverted")
    elif x2 == x1 or y2 == y1:
        defects.append("zero_area")
    return defects


def gt_map_from_mask(mask) -> np.ndarray:
    """AVSBench mask (any integer/bool array, palette indices included) -> binary float32 map (> 0)."""
    return (np.asarray(mask) > 0).astype(np.float32)


def box_defects(box) -> list:
    """Names of the defects of one VGG-SS box (empty list when it is well-formed). ``not_a_box``,
    ``not_4_values``, ``non_numeric`` and ``nan`` boxes cannot be drawn (``usable_box``)."""
    if not isinstance(box, (list, tuple)):
        return ["not_a_box"]
    if len(box) != 4:
        return ["not_4_values"]
    if not all(_is_number(v) for v in box):
        return ["non_numeric"]
    vals = [float(v) for v in box]
    if any(math.isnan(v) for v in vals):
        return ["nan"]
    defects = []
    if any(not math.isfinite(v) or abs(v) > 1e6 for v in vals):
        defects.append("placeholder")
    if vals[2] < vals[0]:
        defects.append("x2_lt_x1")
    elif vals[2] == vals[0]:
        defects.append("x1_eq_x2")
    if vals[3] < vals[1]:
        defects.append("y2_lt_y1")
    elif vals[3] == vals[1]:
        defects.append("y1_eq_y2")
    if not defects and any(v < 0 or v > 1 for v in vals):
        defects.append("out_of_range")
    return defects


# ---------------------------------------------------------------- leaderboard metrics (benchmarks-more)
#
# The single- and multi-source leaderboards (VGGSound-Single/Duet, MUSIC-Solo/Duet,
# VGG-Instruments, SLAVC's extended sets) score with these. A "unit" is what one success
# counts: an item (single source) or one source of a duet.

THRESHOLD_RULES = ("median", "relmax:F", "fixed:T")
SUCCESS_COMPARES = (">", ">=")
TOP_CONFIDENCE_FRACTION = 0.25
AP_MAX_THRESHOLDS = 200
F1_THRESHOLD_STEPS = 10


def parse_threshold_rule(rule: str) -> tuple:
    """'median' -> ("median", None); 'relmax:0.1' -> ("relmax", 0.1); 'fixed:0.5' -> ("fixed", 0.5).

    Raises ValueError naming the accepted forms (F and T must lie in [0, 1])."""
    text = str(rule).strip()
    if text == "median":
        return "median", None
    kind, _, value = text.partition(":")
    if kind in ("relmax", "fixed") and value:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if 0.0 <= number <= 1.0:
            return kind, number
    raise ValueError(f"threshold rule must be median, relmax:F or fixed:T with F, T in [0, 1]; got {rule!r}")


def threshold_rule_text(rule: str) -> str:
    """The rule in words, with its comparison (what results.json records)."""
    kind, value = parse_threshold_rule(rule)
    if kind == "median":
        return "median: min-max map, keep pixels >= the value at index n // 2 of the sorted values"
    if kind == "relmax":
        return f"relmax:{value:g}: min-max map, keep pixels > {value:g} x max"
    return f"fixed:{value:g}: min-max map, keep pixels >= {value:g}"


def rule_masks(maps: torch.Tensor, rule: str = "median") -> torch.Tensor:
    """Min-max normalised maps [N, H, W] (any H, W: a 224 x 448 canvas too) -> boolean masks by ``rule``.

    * ``median``: P = map >= sorted(map)[n // 2] (n = H * W; the VGG-SS rule);
    * ``relmax:F``: P = map > F * max(map) (DSOL);
    * ``fixed:T``: P = map >= T.
    """
    kind, value = parse_threshold_rule(rule)
    if kind == "median":
        return maps >= median_thresholds(maps).view(-1, 1, 1)
    if kind == "relmax":
        top = maps.reshape(maps.shape[0], -1).max(dim=1).values.view(-1, 1, 1)
        return maps > value * top
    return maps >= value


def success_rate(cious, t: float, compare: str = ">") -> float:
    """"IoU@t" / "CIoU@t" as leaderboards print it: 100 x the share of units whose cIoU exceeds t.

    ``compare`` ">" (AVGN's code) or ">=" (EZ-VSL's AP50); NaN when there is no unit."""
    if compare not in SUCCESS_COMPARES:
        raise ValueError(f"compare must be one of {SUCCESS_COMPARES}, got {compare!r}")
    c = np.asarray(cious, dtype=np.float64)
    if len(c) == 0:
        return math.nan
    hits = c > t if compare == ">" else c >= t
    return 100.0 * float(hits.sum()) / len(c)


def top_confidence(raw_maps, fraction: float = TOP_CONFIDENCE_FRACTION) -> np.ndarray:
    """Per map: the mean of its top ``fraction`` of raw (not min-max) values (at least one value)."""
    import torch

    flat = _as_float_tensor(raw_maps).reshape(len(raw_maps), -1).to(torch.float64)
    k = max(1, int(flat.shape[1] * fraction))
    return flat.topk(k, dim=1).values.mean(dim=1).cpu().numpy()


def _pr_curve(confidence, true_positive, n_positive: int, thresholds) -> tuple:
    conf = np.asarray(confidence, dtype=np.float64)
    tp = np.asarray(true_positive, dtype=bool)
    precision, recall = [], []
    for thr in thresholds:
        kept = conf >= thr
        n_kept = int(kept.sum())
        hits = int((kept & tp).sum())
        precision.append(hits / n_kept if n_kept else 1.0)
        recall.append(hits / n_positive if n_positive else 0.0)
    return np.asarray(precision), np.asarray(recall)


def average_precision(confidence, cious, sounding=None, iou: float = AP_THRESHOLD,
                      max_thresholds: int = AP_MAX_THRESHOLDS) -> float:
    """AP of a ranking by confidence (single source; SLAVC's extended sets).

    A unit is a true positive when it is sounding and its cIoU >= ``iou``; a non-sounding unit
    (``sounding`` False, empty ground truth) is never one, so a confident prediction on it is a
    false positive. Thresholds: the distinct confidences, descending (evenly sub-sampled by rank
    to at most ``max_thresholds``). At each: precision = TP / kept, recall = TP / sounding units.
    Precision is made monotone (max over higher recall); AP = sum over the thresholds of
    precision x (recall - previous recall), starting from recall 0. NaN when nothing sounds."""
    conf, tp, n_pos = _confident_hits(confidence, cious, sounding, iou)
    if len(conf) == 0 or n_pos == 0:
        return math.nan
    thresholds = np.unique(conf)[::-1]
    if len(thresholds) > max_thresholds:
        thresholds = thresholds[np.linspace(0, len(thresholds) - 1, max_thresholds).round().astype(int)]
    precision, recall = _pr_curve(conf, tp, n_pos, thresholds)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(precision * steps))


def _confident_hits(confidence, cious, sounding, iou: float):
    """(confidences, true-positive mask = sounding and cIoU >= ``iou``, number of sounding units)."""
    conf = np.asarray(confidence, dtype=np.float64)
    c = np.asarray(cious, dtype=np.float64)
    sound = np.ones(len(conf), bool) if sounding is None else np.asarray(sounding, dtype=bool)
    return conf, sound & (np.nan_to_num(c, nan=-1.0) >= iou), int(sound.sum())


def max_f1(confidence, cious, sounding=None, iou: float = AP_THRESHOLD, steps: int = F1_THRESHOLD_STEPS) -> float:
    """The best F1 over the confidence thresholds at every tenth of the sorted confidences.

    Thresholds: sorted ascending confidences at positions floor(k * n / ``steps``), k = 0..steps-1.
    At each: kept = confidence >= threshold; TP = kept, sounding and cIoU >= ``iou``;
    precision = TP / kept; recall = TP / sounding units (an unconfident sounding unit is a false
    negative, a confident non-sounding one a false positive); F1 = 2PR / (P + R), 0 when P + R = 0."""
    conf, tp, n_pos = _confident_hits(confidence, cious, sounding, iou)
    if len(conf) == 0 or n_pos == 0:
        return math.nan
    ordered = np.sort(conf)
    thresholds = ordered[[(k * len(ordered)) // steps for k in range(steps)]]
    precision, recall = _pr_curve(conf, tp, n_pos, thresholds)
    denom = precision + recall
    f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)
    return float(f1.max())


CAP_DEFINITION = ("CAP = mean over units (sources) of the pixel average precision of the continuous min-max map "
                  "against the source's ground-truth pixels (G > 0): pixels ranked by map value, AP = sum over "
                  "distinct values of precision x recall step (ties scored together); units with empty GT excluded")


def pixel_average_precision(score_map, gt_map) -> float:
    """Average precision of one continuous map's pixels against a binary ground truth (see CAP_DEFINITION);
    NaN when the ground truth is empty."""
    s = np.asarray(score_map, dtype=np.float64).ravel()
    g = np.asarray(gt_map).ravel() > 0
    n_pos = int(g.sum())
    if n_pos == 0:
        return math.nan
    order = np.argsort(-s, kind="stable")
    s, g = s[order], g[order]
    tp = np.cumsum(g)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # end of each group of equal scores
    precision = tp[last] / (last + 1.0)
    recall = tp[last] / n_pos
    return float(np.sum(precision * np.diff(np.r_[0.0, recall])))


def xywh_to_corners(box) -> list:
    """Normalised [x, y, w, h] (MUSIC boxes) -> [x1, y1, x2, y2] = [x, y, x + w, y + h].

    Raises ValueError when a value is not finite or the box is empty after conversion
    (x2 <= x1 or y2 <= y1 once clipped to [0, 1])."""
    vals = [float(v) for v in box]
    if len(vals) != 4:
        raise ValueError(f"expected 4 values [x, y, w, h], got {len(vals)}")
    if not all(math.isfinite(v) for v in vals):
        raise ValueError("non-finite value")
    x, y, w, h = vals
    x1, y1, x2, y2 = x, y, x + w, y + h
    c = [min(max(v, 0.0), 1.0) for v in (x1, y1, x2, y2)]
    if not (c[2] > c[0] and c[3] > c[1]):
        raise ValueError(f"empty box after conversion: [{x1:g}, {y1:g}, {x2:g}, {y2:g}]")
    return [x1, y1, x2, y2]
