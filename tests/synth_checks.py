"""Pixel checks shared by the synthetic-set tests: find an object by its colour, compare it with its box."""

from __future__ import annotations

import wave

import numpy as np
from scipy.ndimage import binary_opening


def read_wav(path):
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
        return data.reshape(-1, w.getnchannels()), w.getframerate()


def colour_mask(frame, colour, tol=60.0, opened=True):
    """Pixels near the colour; opened (lossy frames) so that blended edges between two other
    objects, whose mix can pass near a third colour, do not count."""
    diff = np.asarray(frame, np.float32)[..., :3] - np.asarray(colour, np.float32)
    mask = np.sqrt((diff ** 2).sum(-1)) < tol
    return binary_opening(mask, structure=np.ones((5, 5))) if opened else mask


def iou(a, b):
    return (a & b).sum() / (a | b).sum()


def box_map(box, w, h):
    m = np.zeros((h, w), bool)
    x1, y1, x2, y2 = (int(round(v * s)) for v, s in zip(box, (w, h, w, h)))
    m[y1:y2, x1:x2] = True
    return m


def assert_object_in_box(seen, box):
    """The object's visible pixels ``seen`` [H, W] lie in its box and fill a good part of it. The box
    holds the whole silhouette, part of which objects drawn over it may hide, so the visible pixels'
    own box can be smaller than it."""
    h, w = seen.shape
    inside = box_map(box, w, h)
    assert seen.sum() > 0
    assert (seen & inside).sum() / seen.sum() > 0.97
    assert seen[inside].mean() > 0.2
