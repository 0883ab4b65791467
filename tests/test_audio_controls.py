"""Audio controls: silence input, seeded other-class partners, the verdict on using the sound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from avloc.audio_controls import parse_controls, shuffled_partners, silence_like, verdict
from avloc.spectrogram import log_spectrogram


def test_silence_equals_the_spectrogram_of_digital_silence_scaled_for_the_network():
    spec = log_spectrogram(torch.zeros(48000)) / 12
    silent = silence_like(spec)
    assert torch.allclose(silent, spec, atol=1e-6)
    assert silent.shape == spec.shape


def test_partners_have_another_class_and_are_seeded():
    labels = ["dog"] * 5 + ["cat"] * 3 + ["bell"] * 2
    p = shuffled_partners(len(labels), labels, seed=3)
    assert all(labels[j] != labels[i] for i, j in enumerate(p))
    assert np.array_equal(p, shuffled_partners(len(labels), labels, seed=3))
    assert not np.array_equal(p, shuffled_partners(len(labels), labels, seed=4))


def test_partners_come_from_earlier_items_and_other_clips():
    labels = ["a", "b", "a", "b", "c", "a", "c", "b"]
    clips = ["x", "y", "z", "y", "w", "x", "v", "u"]
    p = shuffled_partners(8, labels, clips, seed=1)
    for i, j in enumerate(p):
        assert labels[j] != labels[i] and clips[j] != clips[i]
        if i >= 2:  # from the second class on, an earlier item of another class exists
            assert j < i


def test_partners_without_classes_or_with_one_class_are_other_items():
    for labels in (None, ["x"] * 6, [None, "a", None, "a", None, "a"]):
        p = shuffled_partners(6, labels)
        assert all(j != i for i, j in enumerate(p))
    assert list(shuffled_partners(1)) == [0]


def test_parse_controls():
    assert parse_controls("silence,shuffled") == ("silence", "shuffled")
    assert parse_controls("none") == ()
    with pytest.raises(ValueError, match="loud"):
        parse_controls("silence,loud")


def test_verdict_flags_a_score_that_survives_without_the_sound():
    demo = verdict(0.86, {"silence": 0.48, "shuffled": 0.45})
    assert demo["uses_sound"] is False and "NOT USING THE SOUND" in demo["message"]
    assert demo["kept"]["silence"] == pytest.approx(0.48 / 0.86)
    good = verdict(0.85, {"silence": 0.05, "shuffled": 0.1})
    assert good["uses_sound"] is True
    assert verdict(0.0, {"silence": 0.0})["uses_sound"] is None
    assert math.isnan(verdict(0.0, {"silence": 0.0})["kept"]["silence"])
