"""Audio controls: score a model again with the sound taken away or replaced.

A sound-localisation score means something only beside the same model's score without the
right sound. Every place that scores a model (validation during training, ``avloc evaluate``,
the demo) adds these rows:

* ``silence``: every item's spectrogram replaced by that of digital silence (log 1e-7 in every
  bin, METHOD.md §1.1);
* ``shuffled``: every item's audio replaced by another item's, drawn with a fixed seed from the
  items of a different class when classes are known (any other item otherwise).

A model that localises the sound loses most of its score under both; a model whose score
survives has learned where things that usually sound are, not where this sound is. ``verdict``
states which, with the threshold written beside it.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

from avloc import schema

AUDIO_CONTROLS = ("silence", "shuffled")
CONTROL_LABELS = {"silence": "silent audio", "shuffled": "other-class audio"}
CONTROL_SEED = 20231
# A control that keeps this fraction of the real-audio score or more means the model is not
# using the sound for that part of its score.
KEEP_FRACTION_LIMIT = 0.5
SPEC_SCALE = 12.0  # the network sees log-spectrogram / 12 (METHOD.md §1.2)


def silence_log_spectrogram_value() -> float:
    """The log-spectrogram value of digital silence in every bin (the network input is this / 12)."""
    return math.log(schema.LOG_FLOOR)


def silence_like(spec):
    """A network-input spectrogram batch of digital silence shaped like ``spec`` (torch tensor)."""
    return spec.new_full(spec.shape, silence_log_spectrogram_value() / SPEC_SCALE)


def parse_controls(text: str) -> tuple:
    """'silence,shuffled' -> ('silence', 'shuffled'); 'none' or '' -> (). Raises ValueError naming bad names."""
    names = tuple(n.strip() for n in str(text).split(",") if n.strip() and n.strip() != "none")
    bad = [n for n in names if n not in AUDIO_CONTROLS]
    if bad:
        raise ValueError(f"audio controls must be among {', '.join(AUDIO_CONTROLS)} (or 'none'); got {', '.join(bad)}")
    return tuple(dict.fromkeys(names))


def shuffled_partners(n: int, labels: Optional[Sequence] = None, groups: Optional[Sequence] = None,
                      seed: int = CONTROL_SEED) -> np.ndarray:
    """For each of ``n`` items (in scoring order), the index of the item whose audio replaces its own.

    A partner has a different known class when classes are known (``labels``, None = unknown) and
    belongs to another clip (``groups``, e.g. the clip id of a benchmark's frames). It is drawn
    with a fixed seed from the EARLIER items when one qualifies, so a streaming scorer already has
    its audio; the first items fall back to later ones. Deterministic for given inputs; with no
    qualifying item at all, any other item; with n == 1 the item keeps its own audio.
    """
    rng = np.random.default_rng(seed)
    if n <= 1:
        return np.zeros(n, dtype=np.int64)
    labels = list(labels) if labels is not None else [None] * n
    groups = list(groups) if groups is not None else list(range(n))
    if len(labels) != n or len(groups) != n:
        raise ValueError(f"{len(labels)} labels and {len(groups)} groups for {n} items")
    codes: dict = {}
    label_code = np.array([-1 if lab is None else codes.setdefault(str(lab), len(codes)) for lab in labels])
    group_codes: dict = {}
    group_code = np.array([group_codes.setdefault(str(g), len(group_codes)) for g in groups])
    idx = np.arange(n)
    partners = np.empty(n, dtype=np.int64)
    for i in range(n):
        ok = group_code != group_code[i]
        if label_code[i] >= 0:
            other_class = ok & (label_code != label_code[i]) & (label_code >= 0)
            ok = other_class if other_class.any() else ok
        if not ok.any():
            ok = idx != i
        earlier = ok & (idx < i)
        partners[i] = rng.choice(idx[earlier] if earlier.any() else idx[ok])
    return partners


def verdict(real: float, controls: dict, limit: float = KEEP_FRACTION_LIMIT) -> dict:
    """Whether the score depends on the sound: ``controls`` maps control name -> the same score.

    Returns ``{"uses_sound": bool | None, "kept": {name: fraction of the real score kept},
    "message": str}``; ``uses_sound`` is None when the real score is 0 (nothing to explain).
    """
    kept = {name: (value / real if real > 0 else float("nan")) for name, value in controls.items()}
    if not controls or real <= 0:
        return {"uses_sound": None, "kept": kept, "message": "no score to check against audio controls"}
    worst_name = max(kept, key=kept.get)
    worst = kept[worst_name]
    if worst >= limit:
        message = (f"NOT USING THE SOUND: with {CONTROL_LABELS.get(worst_name, worst_name)} the model keeps "
                   f"{100 * worst:.0f}% of its score "
                   f"(limit {100 * limit:.0f}%): it finds likely-sounding things, not this sound")
        return {"uses_sound": False, "kept": kept, "message": message}
    parts = ", ".join(f"{CONTROL_LABELS.get(name, name)} keeps {100 * k:.0f}%" for name, k in kept.items())
    return {"uses_sound": True, "kept": kept, "message": f"uses the sound ({parts}; limit {100 * limit:.0f}%)"}
