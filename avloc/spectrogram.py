"""The FNAC log-spectrogram (METHOD.md §1.1), computed with torch.

Numerically this is ``log(scipy.signal.spectrogram(x, fs=sr, nperseg=512, noverlap=274)[2]
+ 1e-7)``: periodic Tukey(0.25) window, hop 238, no padding, per-segment mean removed,
one-sided 512-point FFT, PSD density scaling with the non-edge bins doubled. The audio
window is the central 3 s of the track, tiled when shorter (``avloc.audio.central_window``).
"""

from __future__ import annotations

import numpy as np
import torch

from avloc import schema
from avloc.audio import central_window, to_float_audio


def tukey_window(length: int = schema.NPERSEG, alpha: float = schema.TUKEY_ALPHA, periodic: bool = True) -> np.ndarray:
    """Tukey (tapered cosine) window in float64; periodic = the symmetric one of length+1, truncated."""
    n_points = length + 1 if periodic else length
    if alpha <= 0:
        w = np.ones(n_points)
    else:
        n = np.arange(n_points, dtype=np.float64)
        span = alpha * (n_points - 1) / 2.0
        w = np.ones(n_points)
        rise = n < span
        fall = n > (n_points - 1) - span
        w[rise] = 0.5 * (1 + np.cos(np.pi * (n[rise] / span - 1)))
        w[fall] = 0.5 * (1 + np.cos(np.pi * ((n_points - 1 - n[fall]) / span - 1)))
    return w[:length] if periodic else w


_WINDOW = torch.from_numpy(tukey_window())


def log_spectrogram(audio, sample_rate: int = schema.SAMPLE_RATE) -> torch.Tensor:
    """FNAC log-spectrogram of ``audio`` ([..., N] float) -> [..., 257, T], float32 (not yet / 12)."""
    x = torch.as_tensor(audio)
    if x.shape[-1] < schema.NPERSEG:
        raise ValueError(f"audio has {x.shape[-1]} samples, fewer than one {schema.NPERSEG}-sample segment")
    x = x.to(torch.float64)
    frames = x.unfold(-1, schema.NPERSEG, schema.HOP)  # [..., T, 512]
    frames = frames - frames.mean(dim=-1, keepdim=True)
    window = _WINDOW.to(device=x.device)
    spectrum = torch.fft.rfft(frames * window, n=schema.NPERSEG, dim=-1)
    psd = spectrum.real.square() + spectrum.imag.square()
    psd = psd / (sample_rate * window.square().sum())
    psd[..., 1:-1] *= 2.0  # one-sided: fold the negative frequencies in (not DC, not Nyquist)
    return torch.log(psd + schema.LOG_FLOOR).transpose(-1, -2).to(torch.float32).contiguous()


def fnac_spectrogram_from_samples(samples: np.ndarray, sample_rate: int = schema.SAMPLE_RATE):
    """Raw mono samples (int16 or float) -> (log_spec [257, T] float32, window_start_sample, tiled)."""
    x = to_float_audio(samples)
    window, start, tiled = central_window(x, sample_rate)
    return log_spectrogram(torch.from_numpy(np.ascontiguousarray(window)), sample_rate).numpy(), start, tiled
