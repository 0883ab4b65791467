"""Leaderboard metrics against hand-computed cases: success rates (> vs >= ties), threshold rules,
AP with top-25 % confidence, max-F1 with non-sounding items, CAP, xywh boxes, and per-source
scoring in source vs canvas geometry (avloc.metrics, avloc.evaluation.rowscoring)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avloc import metrics
from avloc.evaluation.rowscoring import other_source_cious, score_sources


def test_success_rate_ties_strict_and_inclusive():
    cious = [0.5, 0.5, 0.7, 0.2]
    assert metrics.success_rate(cious, 0.5, ">") == 25.0  # only 0.7 exceeds 0.5
    assert metrics.success_rate(cious, 0.5, ">=") == 75.0  # the two ties count
    assert metrics.success_rate([0.3], 0.3, ">") == 0.0 and metrics.success_rate([0.3], 0.3, ">=") == 100.0
    assert math.isnan(metrics.success_rate([], 0.5))
    with pytest.raises(ValueError):
        metrics.success_rate(cious, 0.5, "=>")


def test_threshold_rules_keep_the_pixels_they_say():
    m = torch.tensor([[[0.0, 0.1, 0.2, 0.3], [0.4, 0.5, 0.6, 1.0]]])  # 8 values, already min-max
    # median: sorted[4] = 0.4 -> keep >= 0.4: 4 pixels
    assert metrics.rule_masks(m, "median").sum().item() == 4
    # relmax:0.2 keeps > 0.2 x 1.0: 0.3, 0.4, 0.5, 0.6, 1.0 (0.2 itself is not kept: strict)
    assert metrics.rule_masks(m, "relmax:0.2").sum().item() == 5
    # fixed:0.2 keeps >= 0.2: 6 pixels (inclusive)
    assert metrics.rule_masks(m, "fixed:0.2").sum().item() == 6
    for bad in ("mean", "relmax:", "relmax:2", "fixed:x"):
        with pytest.raises(ValueError, match="median, relmax:F or fixed:T"):
            metrics.parse_threshold_rule(bad)
    assert "> 0.1 x max" in metrics.threshold_rule_text("relmax:0.1")


def test_top_confidence_is_the_mean_of_the_top_quarter_of_raw_values():
    raw = torch.arange(8, dtype=torch.float32).reshape(1, 2, 4) - 3.0  # -3..4, not min-maxed
    assert metrics.top_confidence(raw)[0] == pytest.approx((4 + 3) / 2)  # top 2 of 8


def test_average_precision_by_hand():
    # ranked by confidence: A(tp) B(fp) C(tp) D(fp); all 4 items sound, so recall = TP / 4
    conf = [0.9, 0.8, 0.7, 0.6]
    cious = [0.6, 0.1, 0.5, 0.4]  # C ties at 0.5: a true positive (cIoU >= 0.5)
    # thresholds 0.9: P=1, R=.25; 0.8: P=.5, R=.25; 0.7: P=2/3, R=.5; 0.6: P=.5, R=.5
    # monotone precision: 1, 2/3, 2/3, .5 -> AP = 1 x .25 + 2/3 x .25 = 0.41667
    assert metrics.average_precision(conf, cious) == pytest.approx(0.25 + (2 / 3) * 0.25)
    assert metrics.average_precision(conf, [0.1] * 4) == 0.0
    assert math.isnan(metrics.average_precision([], []))


def test_average_precision_and_max_f1_with_non_sounding_items():
    conf = [0.9, 0.8, 0.7, 0.6]
    cious = [0.0, 0.9, 0.8, 0.0]
    sounding = [False, True, True, True]  # A: a confident non-sounding item, a false positive
    # 0.9: P=0, R=0; 0.8: P=.5, R=1/3; 0.7: P=2/3, R=2/3; 0.6: P=.5, R=2/3
    # monotone: 2/3, 2/3, 2/3, .5 -> AP = 2/3 x 1/3 + 2/3 x 1/3 = 4/9
    assert metrics.average_precision(conf, cious, sounding) == pytest.approx(4 / 9)
    # max-F1 thresholds at every tenth of the sorted confidences [0.6, 0.7, 0.8, 0.9]:
    # positions 0,0,0,1,1,2,2,2,3,3 -> 0.6 (P .5 R 2/3 F .5714), 0.7 (P 2/3 R 2/3 F 2/3), 0.8, 0.9
    assert metrics.max_f1(conf, cious, sounding) == pytest.approx(2 / 3)
    # nothing sounds: undefined
    assert math.isnan(metrics.max_f1(conf, cious, [False] * 4))


def test_cap_pixel_average_precision_by_hand():
    score = np.array([[0.9, 0.8], [0.3, 0.1]])
    gt = np.array([[1, 0], [1, 0]])
    # ranked: 0.9 (tp) 0.8 (fp) 0.3 (tp) 0.1 (fp): P@R=.5 is 1, P@R=1 is 2/3 -> .5 + 1/3
    assert metrics.pixel_average_precision(score, gt) == pytest.approx(0.5 + 1 / 3)
    # ties are scored together: a constant map gives the positive share
    assert metrics.pixel_average_precision(np.ones((2, 2)), gt) == pytest.approx(0.5)
    assert math.isnan(metrics.pixel_average_precision(score, np.zeros((2, 2))))


def test_xywh_conversion_and_empty_boxes():
    assert metrics.xywh_to_corners([0.1, 0.2, 0.3, 0.4]) == pytest.approx([0.1, 0.2, 0.4, 0.6])
    gt = metrics.gt_map_from_boxes([metrics.xywh_to_corners([0.25, 0.5, 0.5, 0.25])])
    # x 56..168, y 112..168: 112 x 56 pixels (read as corners it would be x 56..112, y 112..56: empty)
    assert gt.sum() == 112 * 56 and gt[112:168, 56:168].all()
    for bad, why in (([0.5, 0.5, 0.0, 0.2], "empty box"), ([1.2, 0.1, 0.3, 0.3], "empty box"),
                     ([0.1, float("nan"), 0.2, 0.2], "non-finite"), ([0.1, 0.2, 0.3], "4 values")):
        with pytest.raises(ValueError, match=why):
            metrics.xywh_to_corners(bad)


def _box(x1, y1, x2, y2, size=224):
    g = torch.zeros(size, size)
    g[y1:y2, x1:x2] = 1
    return g


def test_score_sources_source_vs_canvas_geometry():
    # view 0's map is hot on the left half, view 1's map is flat (a model that sees nothing there)
    m0 = torch.zeros(224, 224)
    m0[:, :112] = 1.0
    maps = torch.stack([m0, torch.zeros(224, 224)])
    gts = torch.stack([_box(0, 0, 112, 224), _box(0, 0, 112, 224)])  # each source: left half of its frame
    src = score_sources(maps, gts, [0, 1], geometry="source", rule="median")
    # source geometry: view 0 -> P = left half = G: cIoU 1; view 1 flat -> P = everything: 112*224/(224*224)
    assert src["ciou"] == pytest.approx([1.0, 0.5])
    can = score_sources(maps, gts, [0, 1], geometry="canvas", rule="median")
    # canvas 224 x 448: median of (1 on a quarter, 0 elsewhere) is 0, so P = the whole canvas;
    # source 0: 112*224 / (112*224 + 3*112*224) = 0.25; source 1 the same
    assert can["ciou"] == pytest.approx([0.25, 0.25])
    can_rel = score_sources(maps, gts, [0, 1], geometry="canvas", rule="relmax:0.5")
    # relmax keeps only view 0's hot half: source 0 exact (1.0), source 1's region untouched (0.0)
    assert can_rel["ciou"] == pytest.approx([1.0, 0.0])
    assert src["pred_area"][0] == pytest.approx(0.5) and can_rel["pred_area"][0] == pytest.approx(0.25)


def test_one_map_against_each_source_and_class_aware_maps():
    m = torch.zeros(1, 224, 224)
    m[0, :, :112] = 1.0
    gts = torch.stack([_box(0, 0, 112, 224), _box(112, 0, 224, 224)])  # two players in one frame
    agnostic = score_sources(m, gts, [0, 0])
    assert agnostic["ciou"] == pytest.approx([1.0, 0.0])  # the one map finds the left player only
    per_source = torch.stack([m, torch.flip(m, dims=[2])])  # [S, V, H, W]: a map per source
    aware = score_sources(m, gts, [0, 0], class_maps=per_source)
    assert aware["ciou"] == pytest.approx([1.0, 1.0])


def test_empty_ground_truth_and_the_other_source_baseline():
    m = torch.zeros(1, 224, 224)
    m[0, :10, :10] = 1.0
    empty = score_sources(m, torch.zeros(1, 224, 224), [0])
    assert empty["ciou"][0] == 0.0  # a non-sounding item: anything predicted is a false positive
    assert math.isnan(empty["cap"][0])
    gts = torch.stack([_box(0, 0, 100, 100), _box(50, 0, 150, 100)])
    # source 0 predicted by source 1's box: overlap 50x100, false positives 50x100 -> 5000 / (10000 + 5000)
    assert other_source_cious(gts, [0, 0]) == pytest.approx([1 / 3, 1 / 3])
    # canvas: the other source's box sits on the other frame: no overlap at all
    assert other_source_cious(gts, [0, 1], "canvas") == pytest.approx([0.0, 0.0])
