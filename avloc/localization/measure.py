"""What one instant is made of and what is read off its heat map.

Audio (the training recipe, METHOD.md §1.1, with the code the sharder and evaluate use): the
int16 track -> float in [-1, 1] (``avloc.audio.to_float_audio``) -> the 3 s centred on the
instant, clamped to the track, tiled when the track is shorter (``avloc.audio.window_around``)
-> FNAC log-spectrogram / 12 (``avloc.spectrogram.log_spectrogram``).

Frame: the frame on screen at the instant (the last one whose timestamp is <= t), resized to
S x S like evaluation (``avloc.data.augment.eval_image``).

Read off the map (``avloc.metrics``' protocol: 224 x 224 bicubic, min-max, median threshold):
the peak and the box of the binarised region, both mapped to source pixels. Coordinates are
continuous pixel coordinates of the displayed frame: pixel column i spans [i, i + 1), so the
peak is the centre of the 224-grid cell it falls in and the box's edges are cell edges, each
scaled by (width / 224, height / 224). The confidence is the mean of the top 25 % of the raw
(not normalised) map values, the per-frame confidence the AP benchmarks rank by.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from avloc import metrics, schema
from avloc.audio import to_float_audio, window_around
from avloc.spectrogram import log_spectrogram

DBFS_FLOOR = -120.0  # level recorded for digital silence (log of zero)
TOP_FRACTION = 0.25


def window_bounds(n_samples: int, t: float) -> tuple:
    """(start, end) seconds of the audio window for instant ``t`` (the whole, tiled track when shorter)."""
    n = schema.WINDOW_SAMPLES
    if n_samples < n:
        return 0.0, n_samples / schema.SAMPLE_RATE
    start = min(max(int(round(t * schema.SAMPLE_RATE)) - n // 2, 0), n_samples - n)
    return start / schema.SAMPLE_RATE, (start + n) / schema.SAMPLE_RATE


def audio_windows(audio_int16: np.ndarray, times) -> np.ndarray:
    """float32 [K, 48000]: the training-recipe window around each time."""
    x = to_float_audio(audio_int16)
    return np.stack([window_around(x, float(t)) for t in times]).astype(np.float32, copy=False)


def spectrograms(windows: np.ndarray) -> torch.Tensor:
    """[K, 48000] windows -> [K, 1, 257, 200] network input (log-spectrogram / 12)."""
    spec = log_spectrogram(torch.from_numpy(np.ascontiguousarray(windows)), schema.SAMPLE_RATE)
    return (spec / schema.SPEC_SCALE).unsqueeze(1)


def level_dbfs(window: np.ndarray) -> float:
    """RMS level of a [-1, 1] window in dBFS (a full-scale square wave is 0 dBFS)."""
    rms = float(np.sqrt(np.mean(np.square(window, dtype=np.float64))))
    return DBFS_FLOOR if rms <= 10 ** (DBFS_FLOOR / 20) else max(DBFS_FLOOR, 20.0 * math.log10(rms))


def confidence(raw_map: np.ndarray) -> float:
    """Mean of the top 25 % (at least one) of the raw map's values."""
    values = np.sort(np.asarray(raw_map, dtype=np.float64).ravel())[::-1]
    k = max(1, int(math.ceil(TOP_FRACTION * values.size)))
    return float(values[:k].mean())


def read_map(raw_map: np.ndarray, width: int, height: int, upsample: str = "bicubic") -> dict:
    """Peak and box of one raw map in source pixels (see the module docstring), and the confidence."""
    maps, masks = metrics.prediction_masks(torch.as_tensor(np.asarray(raw_map, np.float32))[None], upsample)
    heat, mask = maps[0].numpy(), masks[0].numpy()
    size = metrics.MAP_SIZE
    sx, sy = width / size, height / size
    py, px = np.unravel_index(int(np.argmax(heat)), heat.shape)
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return {
        "peak_x": float((px + 0.5) * sx), "peak_y": float((py + 0.5) * sy),
        "box_x0": float(cols[0] * sx), "box_y0": float(rows[0] * sy),
        "box_x1": float((cols[-1] + 1) * sx), "box_y1": float((rows[-1] + 1) * sy),
        "box_fraction": float(mask.mean()),
        "confidence": confidence(raw_map),
    }


def display_map(raw_map: np.ndarray, width: int, height: int, upsample: str = "bicubic") -> np.ndarray:
    """float32 [height, width] in [0, 1]: the protocol's normalised 224 map resized to the displayed frame."""
    from avloc.overlay import resize_heat

    heat = metrics.minmax_normalise(metrics.upsample_maps(np.asarray(raw_map, np.float32)[None], upsample))[0]
    return resize_heat(heat.numpy(), height, width)
