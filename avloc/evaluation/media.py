"""Reading one evaluation item's frame and audio the way the test-time recipe does.

Frame: resized to exactly 224 x 224 (bicubic, aspect not kept), ImageNet-normalised.
Audio: wav -> mono (channel mean) -> float in [-1, 1] (int16 / 32767) -> 16 kHz (resampled if
the file is not) -> a 3 s window (central, or centred on a given time and clamped to the clip;
tiled when the clip is shorter) or the whole clip -> FNAC log-spectrogram / 12.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from avloc import schema
from avloc.data import augment
from avloc.spectrogram import central_window, log_spectrogram

SR = schema.SAMPLE_RATE


def read_audio(path) -> tuple:
    """(float32 mono samples in [-1, 1], sample rate)."""
    import soundfile

    data, sr = soundfile.read(str(path), dtype="int16", always_2d=True)
    if data.shape[0] == 0:
        raise ValueError("empty audio")
    x = data.astype(np.float32) / 32767.0
    x = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)
    return np.clip(x, -1.0, 1.0).astype(np.float32), int(sr)


def to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    if sr == SR:
        return x
    import torchaudio

    return torchaudio.functional.resample(torch.from_numpy(x), sr, SR).numpy()


def _tile(x: np.ndarray, n: int) -> np.ndarray:
    return np.tile(x, math.ceil(n / len(x)))[:n]


def audio_window(x: np.ndarray, center: float = None, whole: bool = False) -> np.ndarray:
    """The samples fed to the spectrogram (x is 16 kHz mono)."""
    n = schema.WINDOW_SAMPLES
    if whole:
        return x if len(x) >= n else _tile(x, n)
    if center is None:
        return central_window(x, SR)[0]
    if len(x) < n:
        return _tile(x, n)
    start = int(round(center * SR)) - n // 2
    start = min(max(start, 0), len(x) - n)
    return x[start:start + n]


def load_spec(path, center: float = None, whole: bool = False) -> torch.Tensor:
    """[1, 257, T] float32, already divided by 12."""
    x, sr = read_audio(path)
    window = np.ascontiguousarray(audio_window(to_16k(x, sr), center, whole))
    return (log_spectrogram(torch.from_numpy(window), SR) / schema.SPEC_SCALE).unsqueeze(0)


def load_frame(path, image_size: int = 224) -> torch.Tensor:
    """[3, S, S] ImageNet-normalised."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return augment.eval_image(img, image_size)


def load_frame_rgb(path, size: int = 224) -> np.ndarray:
    """uint8 [size, size, 3] for overlays (same resize as the model input)."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((size, size), Image.BICUBIC))
