"""A row's soundtrack: one track, or the sum of a duet's tracks, as the network's spectrogram.

Each track: wav -> mono (channel mean of the [-1, 1] floats) -> 16 kHz (resampled when stored
at another rate) -> its window: the central 3 s (tiled when shorter), or for MUSIC's
``frame-second`` rule the 1 s starting at the frame's second, tiled to 3 s. A mixture is the
plain sum of the tracks' windows (no rescaling), then one spectrogram of the sum.
"""

from __future__ import annotations

import numpy as np
import torch

from avloc import schema
from avloc.audio import audio_window, read_wav, tile_to, to_16k
from avloc.spectrogram import log_spectrogram

SR = schema.SAMPLE_RATE


def track_window(part) -> tuple:
    """(3 s float32 window at 16 kHz, stored rate, stored channels) of one ``rows.AudioPart``."""
    data, sr = read_wav(part.path)
    if data.shape[0] == 0:
        raise ValueError(f"empty audio {part.path.name}")
    channels = int(data.shape[1])
    x = np.clip(data.astype(np.float32) / 32767.0, -1.0, 1.0).mean(axis=1).astype(np.float32)
    x = to_16k(x, sr)
    if part.second is None:
        return np.ascontiguousarray(audio_window(x)), sr, channels
    start = int(part.second) * SR
    second = x[start:start + SR]
    if len(second) == 0:
        raise ValueError(f"second {part.second} is beyond the {len(x) / SR:.1f} s of {part.path.name}")
    return np.ascontiguousarray(tile_to(second, schema.WINDOW_SAMPLES)), sr, channels


def spec_of(wave: np.ndarray) -> torch.Tensor:
    """[1, 257, T] network input (log-spectrogram / 12) of a 16 kHz window."""
    return (log_spectrogram(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), SR)
            / schema.SPEC_SCALE).unsqueeze(0)


def mixture(windows: list, drop: int = None) -> np.ndarray:
    """The sum of the windows (all, or all but index ``drop``)."""
    kept = [w for k, w in enumerate(windows) if k != drop]
    return np.sum(np.stack(kept), axis=0).astype(np.float32)
