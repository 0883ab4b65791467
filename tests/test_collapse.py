"""The collapse monitor: constructed collapsing runs trip it, healthy and untrained ones do not."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from avloc.losses import fnac_losses
from avloc.training.collapse import (CollapseMonitor, contrastive_chance, embedding_spread,
                                     class_structure, same_class_mass,
                                     term_gradient_norms)

B, D, H, W = 16, 32, 4, 4


def _distinct(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    visual = F.normalize(torch.randn(B, D, H, W, generator=g), dim=1)
    audio = F.normalize(torch.randn(B, D, generator=g), dim=1)
    return visual, audio


def _identical():
    visual = F.normalize(torch.ones(B, D, H, W), dim=1)
    audio = F.normalize(torch.ones(B, D), dim=1)
    return visual, audio


def test_spread_of_identical_embeddings_is_total():
    s = embedding_spread(*_identical())
    assert s["audio_cos"] == pytest.approx(1.0, abs=1e-5)
    assert s["visual_cos"] == pytest.approx(1.0, abs=1e-5)
    assert s["audio_std"] == pytest.approx(0.0, abs=1e-6)
    assert s["retrieval_chance"] == pytest.approx(1 / B)


def test_spread_of_random_embeddings_is_small():
    s = embedding_spread(*_distinct())
    assert abs(s["audio_cos"]) < 0.2 and abs(s["visual_cos"]) < 0.3
    assert s["audio_std"] > 0.1


def test_retrieval_is_one_when_each_audio_matches_its_own_frame():
    audio = F.normalize(torch.randn(B, D), dim=1)
    visual = audio[:, :, None, None].expand(B, D, H, W).clone()
    assert embedding_spread(visual, audio)["retrieval_a2i"] == 1.0


def test_identical_embeddings_zero_every_adjacency_term():
    """Why FNAC can collapse: identical embeddings give contrastive = chance and every L1 term 0."""
    out = fnac_losses(*_identical(), impl="reference")
    assert float(out["contrastive"]) == pytest.approx(contrastive_chance(B), rel=1e-5)
    for term in ("fns1", "tns", "fns2"):
        assert float(out[term]) == pytest.approx(0.0, abs=1e-6)


def _feed(monitor, contrastives, spread, grads=None, start=0):
    events = []
    for i, c in enumerate(contrastives):
        ev = monitor.update(start + 10 * i, c, B, spread, grads)
        if ev is not None:
            events.append(ev)
    return events


def test_a_run_that_learned_then_collapsed_trips_the_monitor_and_names_the_term():
    chance = contrastive_chance(B)
    monitor = CollapseMonitor(patience=3)
    healthy = embedding_spread(*_distinct())
    collapsed = embedding_spread(*_identical())
    assert _feed(monitor, [chance, 0.8 * chance, 0.5 * chance], healthy,
                 {"contrastive": 1.0, "fns2": 0.5}) == []
    events = _feed(monitor, [chance * 0.999] * 4, collapsed,
                   {"contrastive": 0.3, "fns1": 2.0, "tns": 1.0, "fns2": 9.0}, start=30)
    assert len(events) == 1  # reported once
    ev = events[0]
    assert ev.onset_step == 30 and ev.detected_step == 50
    assert ev.driving_term == "fns2"
    assert "collapsed at step 30" in ev.message() and "fns2" in ev.message()


def test_an_untrained_model_at_chance_is_not_called_collapsed():
    chance = contrastive_chance(B)
    monitor = CollapseMonitor(patience=2)
    assert _feed(monitor, [chance] * 10, embedding_spread(*_identical())) == []


def test_a_healthy_run_does_not_trip_it():
    chance = contrastive_chance(B)
    monitor = CollapseMonitor(patience=2)
    losses = [chance * f for f in (1.0, 0.9, 0.7, 0.5, 0.45, 0.5, 0.4, 0.42, 0.35, 0.3)]
    assert _feed(monitor, losses, embedding_spread(*_distinct())) == []


def test_noise_back_to_chance_without_collapsed_embeddings_does_not_trip_it():
    chance = contrastive_chance(B)
    monitor = CollapseMonitor(patience=2)
    _feed(monitor, [0.5 * chance], embedding_spread(*_distinct()))
    assert _feed(monitor, [chance] * 5, embedding_spread(*_distinct(1)), start=10) == []


def test_term_gradient_norms_weight_each_term_and_skip_zero_weights():
    visual, audio = _distinct()
    visual.requires_grad_(True)
    audio.requires_grad_(True)
    out = fnac_losses(visual, audio, impl="reference")
    terms = {k: out[k] for k in ("contrastive", "fns1", "tns", "fns2")}
    one = term_gradient_norms(terms, {"fns1": 1.0, "tns": 0.0, "fns2": 1.0}, (visual, audio))
    hundred = term_gradient_norms(terms, {"fns1": 100.0, "tns": 0.0, "fns2": 100.0}, (visual, audio))
    assert set(one) == {"contrastive", "fns1", "fns2"}
    assert hundred["fns1"] == pytest.approx(100 * one["fns1"], rel=1e-4)
    assert hundred["contrastive"] == pytest.approx(one["contrastive"], rel=1e-6)
    assert math.isfinite(one["fns2"]) and one["fns2"] > 0


N_CLASSES, MAP_H, MAP_W = 4, 8, 8


def _collected(n_items: int, object_map):
    """Validation collected from a constructed model over ``n_items`` (class i % 4, one-hot audio, the
    sounding object's box the left half): ``object_map(cls)`` gives the visual map [4, h, w] of an item."""
    from avloc.training.validation import _Collected

    got = _Collected()
    for i in range(n_items):
        cls = i % N_CLASSES
        got.visual.append(object_map(cls))
        got.audio.append(F.one_hot(torch.tensor(cls), N_CLASSES).float())
        got.labels.append(cls)
        gt = torch.zeros(224, 224)
        gt[:, :112] = 1.0
        got.gts.append(gt)
    return got


def test_validation_rows_fall_when_the_audio_is_silenced_or_shuffled():
    """A constructed model that localises the sound: its map follows the audio's class, so the
    real row scores and the silence and other-class rows do not."""
    from avloc.training.validation import _localisation_rows

    def object_map(cls):
        visual = torch.ones(N_CLASSES, MAP_H, MAP_W)  # everything else looks like the other classes
        visual[cls] = 0.0
        visual[:, :, : MAP_W // 2] = 0.0
        visual[cls, :, : MAP_W // 2] = 1.0  # the sounding object: the left half
        return visual

    got = _collected(8, object_map)
    got.silence = torch.ones(N_CLASSES)  # silence resembles every class a little: the larger area wins
    rows = _localisation_rows(got, "bicubic", ("silence", "shuffled"))
    assert rows["val_ap50"] == 1.0
    assert rows["val_shuffled_ap50"] == 0.0
    assert rows["val_silence_ap50"] == 0.0
    # the peak: on the sounding half with the right audio, on the other half with the wrong one
    assert (rows["val_pointing"], rows["val_shuffled_pointing"], rows["val_silence_pointing"]) == (1.0, 0.0, 0.0)
    assert rows["val_uses_sound"] is True and "keeps" in rows["val_audio_verdict"]
    assert rows["val_ap50_by_class"] == {"0": 1.0, "1": 1.0, "2": 1.0, "3": 1.0} and rows["val_weakest_class_ap50"] == 1.0


def test_validation_names_a_class_the_model_never_localises():
    """Three classes found, one whose map always lights the wrong half: the average (0.75) hides it, the
    per-class rows do not."""
    from avloc.training.validation import _localisation_rows

    def object_map(cls):
        visual = torch.zeros(N_CLASSES, MAP_H, MAP_W)
        half = slice(MAP_W // 2, None) if cls == 2 else slice(None, MAP_W // 2)  # class 2 looks in the wrong place
        visual[cls, :, half] = 1.0
        return visual

    rows = _localisation_rows(_collected(12, object_map), "bicubic", ())
    assert rows["val_ap50"] == 0.75
    assert rows["val_ap50_by_class"] == {"0": 1.0, "1": 1.0, "2": 0.0, "3": 1.0}
    assert rows["val_weakest_class"] == "2" and rows["val_weakest_class_ap50"] == 0.0


def test_same_class_mass_reads_class_structure_against_chance():
    g = torch.Generator().manual_seed(3)
    labels = [i % 4 for i in range(16)]  # 4 clips per class: 3 same-class others of 15
    centres = F.normalize(torch.randn(4, D, generator=g), dim=1)
    clustered = F.normalize(centres[labels] + 0.05 * torch.randn(16, D, generator=g), dim=1)
    tight = class_structure(clustered[:, :, None, None].expand(16, D, H, W), clustered, labels, tau=0.03)
    assert tight["audio_same_class_chance"] == pytest.approx(3 / 15)
    assert tight["audio_same_class_mass"] > 0.99 and tight["logits_same_class_mass"] > 0.99
    # identical embeddings (a collapse): every row is uniform over the other clips, so exactly chance
    flat = class_structure(*_identical(), labels, tau=0.03)
    assert flat["audio_same_class_mass"] == pytest.approx(3 / 15, abs=1e-5)
    assert flat["logits_same_class_mass"] == pytest.approx(3 / 15, abs=1e-5)
    # audio that knows the classes while every frame matches only its own clip: the adjacency carries
    # the structure and the pair logits do not (what the FNS1 term is there to change)
    own = F.normalize(torch.randn(16, D, generator=g), dim=1)
    visual = own[:, :, None, None].expand(16, D, H, W)
    split = class_structure(visual, clustered, labels, tau=0.03)
    assert split["audio_same_class_mass"] > 0.99 and abs(split["logits_same_class_mass"] - 3 / 15) < 0.2
    # the self entry never counts, unlabelled clips are left out
    assert same_class_mass(torch.eye(4) * 100, [0, 0, 1, 1])["mass"] == pytest.approx(1 / 3)
    assert same_class_mass(torch.zeros(16, 16), [None] * 15 + [0]) == {}
    assert same_class_mass(torch.zeros(4, 4), [0, 1, 2, 3]) == {}
