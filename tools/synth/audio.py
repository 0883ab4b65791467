"""Class-specific sounds for synthetic clips.

Class i has a fundamental ``class_frequency(i)`` (geometric ladder, 18% apart, 250 Hz to
~3.1 kHz) that is always the strongest spectral peak, two weaker harmonics, and a temporal
pattern (amplitude modulation, pulses or vibrato) at a class-specific rate. Each clip detunes
slightly, randomises phases and adds mild noise, so clips of a class differ but the class is
identifiable from the dominant frequency or the spectrogram.
"""

from __future__ import annotations

import dataclasses
import io
import wave

import numpy as np

BASE_FREQUENCY = 250.0
FREQUENCY_RATIO = 1.18
HARMONIC_GAINS = (1.0, 0.35, 0.15)
PATTERNS = ("am", "pulses", "vibrato")


def class_frequency(class_index: int) -> float:
    return BASE_FREQUENCY * FREQUENCY_RATIO ** class_index


def class_pattern(class_index: int) -> tuple[str, float]:
    """(pattern, rate in Hz) of a class."""
    return PATTERNS[class_index % len(PATTERNS)], 1.5 + 1.25 * (class_index % 4)


@dataclasses.dataclass
class SoundSpec:
    """Everything that determines one source's waveform (picklable, resolution-free)."""

    class_index: int
    detune: float  # multiplicative, close to 1
    phase_seed: int
    gain: float


def sample_sound(rng: np.random.Generator, class_index: int) -> SoundSpec:
    return SoundSpec(class_index, detune=float(rng.uniform(0.985, 1.015)), phase_seed=int(rng.integers(0, 2**31 - 1)),
                     gain=float(rng.uniform(0.3, 0.45)))


def render_source(spec: SoundSpec, duration: float, sample_rate: int) -> np.ndarray:
    """float32 mono waveform of one sounding object."""
    n = int(round(duration * sample_rate))
    t = np.arange(n, dtype=np.float64) / sample_rate
    rng = np.random.default_rng(spec.phase_seed)
    f0 = class_frequency(spec.class_index) * spec.detune
    pattern, rate = class_pattern(spec.class_index)
    mod_phase = rng.uniform(0, 2 * np.pi)
    if pattern == "vibrato":
        # Instantaneous frequency f0 * (1 + 0.025 sin(2 pi rate t)), integrated for the phase.
        inst_phase = 2 * np.pi * f0 * (t - 0.025 * np.cos(2 * np.pi * rate * t + mod_phase) / (2 * np.pi * rate))
    else:
        inst_phase = 2 * np.pi * f0 * t
    signal = np.zeros(n)
    nyquist = sample_rate / 2
    for k, gain in enumerate(HARMONIC_GAINS, start=1):
        if k * f0 < 0.9 * nyquist:
            signal += gain * np.sin(k * inst_phase + rng.uniform(0, 2 * np.pi))
    if pattern == "am":
        envelope = 0.6 + 0.4 * np.sin(2 * np.pi * rate * t + mod_phase)
    elif pattern == "pulses":
        on = (np.sin(2 * np.pi * rate * t + mod_phase) > -0.3).astype(np.float64)
        # 10 ms ramps avoid clicks that would smear the spectrum
        ramp = max(int(0.01 * sample_rate), 1)
        envelope = np.convolve(on, np.ones(ramp) / ramp, mode="same") * 0.9 + 0.1
    else:
        envelope = np.ones(n)
    signal *= envelope
    peak = np.max(np.abs(signal)) or 1.0
    return (spec.gain * signal / peak).astype(np.float32)


def render_mix(specs: list, duration: float, sample_rate: int, noise_seed: int, noise_level: float = 0.02,
               channels: int = 1) -> np.ndarray:
    """Sum of sources plus white noise; float32 [n] (mono) or [n, channels]."""
    n = int(round(duration * sample_rate))
    mix = np.zeros(n, np.float32)
    for spec in specs:
        mix += render_source(spec, duration, sample_rate)
    rng = np.random.default_rng(noise_seed)
    mix += (noise_level * rng.standard_normal(n)).astype(np.float32)
    peak = float(np.max(np.abs(mix)))
    if peak > 0.95:
        mix *= 0.95 / peak
    if channels == 1:
        return mix
    # Slightly different levels per channel, like a real stereo recording of one scene.
    gains = np.linspace(1.0, 0.8, channels, dtype=np.float32)
    return mix[:, None] * gains[None, :]


def to_pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).round().astype("<i2").tobytes()


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    channels = 1 if audio.ndim == 1 else audio.shape[1]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(to_pcm16(audio))
    return buf.getvalue()


def identify_class(audio: np.ndarray, sample_rate: int, n_classes: int) -> int:
    """The class whose fundamental is nearest (in log frequency) to the dominant peak."""
    mono = audio if audio.ndim == 1 else audio.mean(axis=1)
    spectrum = np.abs(np.fft.rfft(mono.astype(np.float64) * np.hanning(len(mono))))
    freqs = np.fft.rfftfreq(len(mono), 1.0 / sample_rate)
    spectrum[freqs < 100] = 0
    peak = freqs[int(np.argmax(spectrum))]
    ladder = np.array([class_frequency(i) for i in range(n_classes)])
    return int(np.argmin(np.abs(np.log(ladder / peak))))
