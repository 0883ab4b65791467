"""Trivial heat maps scored beside every model: they show what the protocol gives for free.

With the median threshold at least half the image is always predicted, so a whole-image map
already scores well on benchmarks with large boxes (fnac.md 5, 6).
"""

from __future__ import annotations

import numpy as np
import torch

from avloc.metrics import MAP_SIZE

CENTRE_BOX_SIDE = 160  # 160^2 = 25,600 > 25,088 pixels: the box itself survives the median threshold


def centre_gaussian(size: int = MAP_SIZE, sigma_fraction: float = 0.25) -> np.ndarray:
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    sigma = sigma_fraction * size
    return np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2 * sigma ** 2)).astype(np.float32)


def centre_box(size: int = MAP_SIZE, side: int = CENTRE_BOX_SIDE) -> np.ndarray:
    m = np.zeros((size, size), dtype=np.float32)
    lo = (size - side) // 2
    m[lo:lo + side, lo:lo + side] = 1.0
    return m


def whole_image(size: int = MAP_SIZE) -> np.ndarray:
    return np.ones((size, size), dtype=np.float32)


BASELINES = {"centre_gaussian": centre_gaussian, "centre_box": centre_box, "whole_image": whole_image}


def baseline_maps() -> dict:
    """name -> [224, 224] float32 map (the same map for every sample)."""
    return {name: torch.from_numpy(fn()) for name, fn in BASELINES.items()}
