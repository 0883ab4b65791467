"""The object-prior reference: what picking one of a frame's objects, without the sound, scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from avloc import metrics
from avloc.evaluation.object_prior import (clip_set_items, misses_by_hidden, object_map, object_prior_ap50,
                                          synth_copy_items)

LEFT = [0.0, 0.0, 0.55, 0.6]      # 33% of the frame
RIGHT = [0.6, 0.4, 1.0, 1.0]      # 24%: below a quarter, so even a perfect map cannot reach cIoU 0.5
TOP_RIGHT = [0.55, 0.0, 1.0, 0.7]  # 31.5%


def test_object_map_keeps_its_box_through_the_median_threshold():
    m = torch.from_numpy(object_map(LEFT))[None]
    pred = metrics.threshold_masks(metrics.minmax_normalise(m))[0]
    box = torch.from_numpy(metrics.gt_map_from_boxes([LEFT])).bool()
    assert pred[box].all() and abs(pred.float().mean().item() - 0.5) < 0.01
    # cIoU of a map on its own box = box share / 0.5 under the median rule
    assert metrics.ciou_from_masks(pred[None], box[None].float())[0] == pytest.approx(0.33 / 0.5, abs=0.01)


def test_priors_on_constructed_frames():
    # frame 1: sounding LEFT, the largest of three; frame 2: sounding TOP_RIGHT, the smaller of two
    scores = object_prior_ap50([([LEFT], [RIGHT, [0.0, 0.7, 0.3, 1.0]]), ([TOP_RIGHT], [LEFT])])
    assert scores["n"] == 2
    assert scores["sounding_object"] == 1.0
    assert scores["random_object"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert scores["largest_object"] == 0.5 and scores["smallest_object"] == 0.5
    # a sounding object under a quarter of the frame is out of reach for any map; a frame without a
    # usable sounding box is left out
    small = object_prior_ap50([([RIGHT], [LEFT]), ([[float("nan")] * 4], [LEFT])])
    assert small["n"] == 1 and small["sounding_object"] == 0.0 and small["random_object"] == 0.0


def test_readers_take_boxes_from_a_synth_copy_and_a_clip_set(tmp_path):
    copy = tmp_path / "synth_benchmark.json"
    copy.write_text(json.dumps({"items": [
        {"id": "a", "bbox": [LEFT], "distractor_boxes": [[RIGHT, None]]},
        {"id": "b", "bbox": [LEFT], "role": "train", "distractor_boxes": [[RIGHT]]},
        {"id": "c", "bbox": [LEFT]}]}))
    assert synth_copy_items(copy) == [([LEFT], [RIGHT, None])]
    clips = tmp_path / "synth.json"
    clips.write_text(json.dumps({"items": [
        {"id": "x", "bbox": [LEFT], "distractors": [{"class_index": 1, "bbox": RIGHT}]},
        {"id": "y", "bbox": [TOP_RIGHT], "distractors": []}]}))
    assert clip_set_items(clips, keys=["x"]) == [([LEFT], [RIGHT])]
    assert len(clip_set_items(clips)) == 2


def test_a_synthetic_copy_gives_every_object_the_same_chance(tmp_path):
    """On ``avloc synth``'s VGG-SS copy no single rule beats a blind pick by much: the sounding object
    is not the largest nor the smallest more often than any object, and a map on it always can pass."""
    from avloc.tools.synth import write_benchmark

    write_benchmark(tmp_path, "vggss", 60, seed=3, n_classes=8, frame_size=(96, 72))
    scores = object_prior_ap50(synth_copy_items(tmp_path / "synth_benchmark.json"))
    assert scores["n"] == 60 and scores["sounding_object"] >= 0.95
    assert 0.15 <= scores["random_object"] <= 0.4
    for rule in ("largest_object", "smallest_object"):
        assert scores[rule] <= scores["random_object"] + 0.15, scores
    manifest = json.loads((tmp_path / "synth_benchmark.json").read_text())
    assert manifest["object_prior"]["n"] == 60
    assert np.isclose(manifest["object_prior"]["random_object"], scores["random_object"])
    # how much of the sounding silhouette others cover, from the pixels: often none, sometimes some
    shares = np.array([it["hidden_shares"][0] for it in manifest["items"]])
    assert ((shares >= 0) & (shares < 1)).all() and 0 < np.mean(shares > 0.02) < 0.8


def test_misses_by_hidden_groups_items_by_the_covered_share():
    items = [{"id": "a", "hidden_shares": [0.0]}, {"id": "b", "hidden_shares": [0.05]},
             {"id": "c", "hidden_shares": [0.5]}, {"id": "d", "hidden_shares": [0.6]}, {"id": "e"}]
    per_sample = {"id": ["a", "b", "c", "d", "e"], "ciou": [0.7, 0.6, 0.3, 0.55, 0.9],
                  "pointing": [1.0, 1.0, 1.0, 0.0, 1.0]}
    rows = misses_by_hidden(per_sample, items)
    assert rows == [{"hidden": "0-0.02", "n": 1, "ap50": 1.0, "pointing": 1.0},
                    {"hidden": "0.02-0.1", "n": 1, "ap50": 1.0, "pointing": 1.0},
                    {"hidden": "0.3-1", "n": 2, "ap50": 0.5, "pointing": 0.5}]  # "e" records no share: left out
