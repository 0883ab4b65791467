"""Trivial heat maps scored beside every model: they show what the protocol gives for free.

With the median threshold at least half the image is always predicted, so a whole-image map
already scores well on benchmarks with large boxes (METHOD.md §5, §6). The same maps serve
``avloc evaluate`` and training's validation.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from avloc import metrics
from avloc.metrics import MAP_SIZE

CENTRE_BOX_SIDE = 160  # 160^2 = 25,600 > 25,088 pixels: the box itself survives the median threshold
PROTOCOL_NOTE = ("same items, same protocol; centre gaussian sigma = 56 px, centre box 160x160 px, "
                 "whole image = constant map")


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


def baseline_batch(name: str, n: int) -> torch.Tensor:
    """[n, 224, 224]: baseline ``name``'s map for each of n samples (to score with ``metrics``)."""
    return torch.from_numpy(BASELINES[name]()).expand(n, -1, -1)


def baseline_masks(upsample: str) -> dict:
    """name -> [1, 224, 224] predicted mask, through the same protocol as a model's map."""
    return {name: metrics.threshold_masks(metrics.minmax_normalise(metrics.upsample_maps(m.unsqueeze(0), upsample)))
            for name, m in baseline_maps().items()}


def baseline_cious(masks: dict, gt: torch.Tensor) -> dict:
    """name -> per-sample cIoU of that baseline's mask against each ground truth of ``gt`` [N, 224, 224]."""
    return {name: metrics.ciou_from_masks(mask.expand(gt.shape[0], -1, -1), gt) for name, mask in masks.items()}


@functools.lru_cache(maxsize=1)
def baseline_peaks() -> dict:
    """name -> (row, column) each baseline's map points at (its peak, or the centre of its flat top);
    the maps never change, so this is computed once, not per scored batch."""
    return {name: tuple(int(v) for v in metrics.peak_points(m.unsqueeze(0))[0]) for name, m in baseline_maps().items()}


def baseline_pointing(gt: torch.Tensor) -> dict:
    """name -> per-sample pointing hit of that baseline's map against each ground truth of ``gt``."""
    return {name: (gt[:, row, col] > 0).cpu().numpy() for name, (row, col) in baseline_peaks().items()}
