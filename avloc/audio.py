"""Reading audio and choosing its 3 s window, one way for sharding, the folder loader and evaluate.

Reading: ``read_wav`` gives the int16 samples as stored ([n, channels]) and the rate. Two mono
conversions exist because two recipes differ on stereo and both are kept exactly: the folder
loader (``read_wav_int16_mono``) averages channels in float and truncates back to int16, as the
published training loader did; evaluation (``read_wav_float_mono``) converts to [-1, 1] first
and averages in float (METHOD.md §1, §5).

Windows (METHOD.md §1.1): ``central_window`` is the central 3 s of a track, tiled (repeated and
cut) when shorter; ``window_around`` is the 3 s centred on a time and clamped to the track (an
AVSBench frame's audio); ``audio_window`` picks one of them or the whole track.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from avloc import schema

SR = schema.SAMPLE_RATE


def read_wav(path) -> tuple:
    """(int16 samples [n, channels], sample rate) as stored in the file. Read with soundfile; where
    soundfile is not installed, 16-bit PCM wavs are read with the standard library's wave module."""
    try:
        import soundfile
    except ImportError:
        return _read_pcm16_wav(path)
    data, sr = soundfile.read(str(path), dtype="int16", always_2d=True)
    return data, int(sr)


def _read_pcm16_wav(path) -> tuple:
    import wave

    try:
        with wave.open(str(path), "rb") as fh:
            width, channels, sr = fh.getsampwidth(), fh.getnchannels(), fh.getframerate()
            if width != 2:
                raise ValueError(f"{path}: {8 * width}-bit wav; without the soundfile package only 16-bit PCM "
                                 "wavs can be read (pip install soundfile)")
            frames = fh.readframes(fh.getnframes())
    except wave.Error as exc:
        raise ValueError(f"{path}: {exc} (without the soundfile package only 16-bit PCM wavs can be read)") from None
    return np.frombuffer(frames, dtype="<i2").reshape(-1, channels).astype(np.int16), int(sr)


def read_wav_int16_mono(path) -> tuple:
    """(int16 mono samples, sample rate); stereo averaged in float32, truncated back to int16."""
    data, sr = read_wav(path)
    mono = data[:, 0] if data.shape[1] == 1 else data.astype(np.float32).mean(axis=1).astype(np.int16)
    return mono, sr


def read_wav_float_mono(path) -> tuple:
    """(float32 mono samples in [-1, 1], sample rate): int16 / 32767, channels averaged, clipped."""
    data, sr = read_wav(path)
    if data.shape[0] == 0:
        raise ValueError("empty audio")
    x = data.astype(np.float32) / 32767.0
    x = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)
    return np.clip(x, -1.0, 1.0).astype(np.float32), sr


def to_float_audio(samples: np.ndarray) -> np.ndarray:
    """int16 PCM -> float32 in [-1, 1] the way the recipe does it (divide by 32767, clip)."""
    if samples.dtype == np.int16:
        x = samples.astype(np.float32) / 32767.0
    else:
        x = samples.astype(np.float32)
    return np.clip(x, -1.0, 1.0)


def to_16k(x: np.ndarray, sr: int) -> np.ndarray:
    """Float mono samples at ``sr`` -> at the recipe's 16 kHz (torchaudio's resampler)."""
    if sr == SR:
        return x
    import torch
    import torchaudio

    return torchaudio.functional.resample(torch.from_numpy(x), sr, SR).numpy()


def tile_to(x: np.ndarray, n: int) -> np.ndarray:
    """``x`` repeated and cut to exactly ``n`` samples."""
    return np.tile(x, math.ceil(n / len(x)))[:n]


def central_window(x: np.ndarray, sample_rate: int = SR, seconds: float = schema.WINDOW_SECONDS):
    """The central ``seconds`` of a mono track, tiled when shorter -> (window, start_sample, tiled).

    The window has exactly int(seconds * sample_rate) samples, of the input's dtype.
    """
    n = int(seconds * sample_rate)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio, got shape {x.shape}")
    if len(x) == 0:
        raise ValueError("empty audio")
    if len(x) < n:
        return tile_to(x, n), 0, True
    start = len(x) // 2 - n // 2
    return x[start:start + n], start, False


def window_around(x: np.ndarray, center: float, sample_rate: int = SR, seconds: float = schema.WINDOW_SECONDS):
    """The ``seconds`` centred on ``center`` (seconds), clamped to the track; tiled when shorter."""
    n = int(seconds * sample_rate)
    if len(x) < n:
        return tile_to(x, n)
    start = int(round(center * sample_rate)) - n // 2
    start = min(max(start, 0), len(x) - n)
    return x[start:start + n]


def audio_window(x: np.ndarray, center: Optional[float] = None, whole: bool = False) -> np.ndarray:
    """The samples fed to the spectrogram (x is 16 kHz mono): whole track, around ``center``, or central."""
    n = schema.WINDOW_SAMPLES
    if whole:
        return x if len(x) >= n else tile_to(x, n)
    if center is None:
        return central_window(x, SR)[0]
    return window_around(x, center)
