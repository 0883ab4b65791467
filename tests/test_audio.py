"""avloc.audio: one reader and one window rule for sharding, the folder loader and evaluate, giving
exactly the samples each of the three private copies it replaced gave (those are written out here
as the reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile

from avloc import audio, schema
from avloc.data.folder import load_folder_sample
from avloc.evaluation import media
from avloc.spectrogram import fnac_spectrogram_from_samples

SR = schema.SAMPLE_RATE
N = schema.WINDOW_SAMPLES


# ---- the replaced copies, verbatim ----------------------------------------------------------

def ref_folder_read_wav(path):
    data, sr = soundfile.read(str(path), dtype="int16", always_2d=True)
    mono = data[:, 0] if data.shape[1] == 1 else data.astype(np.float32).mean(axis=1).astype(np.int16)
    return mono, sr


def ref_eval_read_audio(path):
    data, sr = soundfile.read(str(path), dtype="int16", always_2d=True)
    if data.shape[0] == 0:
        raise ValueError("empty audio")
    x = data.astype(np.float32) / 32767.0
    x = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)
    return np.clip(x, -1.0, 1.0).astype(np.float32), int(sr)


def ref_central_window(x, sample_rate=SR, seconds=schema.WINDOW_SECONDS):
    n = int(seconds * sample_rate)
    if len(x) < n:
        return np.tile(x, math.ceil(n / len(x)))[:n], 0, True
    start = len(x) // 2 - n // 2
    return x[start:start + n], start, False


def ref_eval_audio_window(x, center=None, whole=False):
    def tile(v, n):
        return np.tile(v, math.ceil(n / len(v)))[:n]

    if whole:
        return x if len(x) >= N else tile(x, N)
    if center is None:
        return ref_central_window(x, SR)[0]
    if len(x) < N:
        return tile(x, N)
    start = int(round(center * SR)) - N // 2
    start = min(max(start, 0), len(x) - N)
    return x[start:start + N]


def ref_sample_builder_window(samples, start, tiled):
    if tiled:
        return np.tile(samples, -(-N // len(samples)))[:N]
    return samples[start:start + N]


# ---------------------------------------------------------------------------------------------

def _wav(path, seconds, channels, seed, sr=SR):
    rng = np.random.default_rng(seed)
    data = rng.integers(-32768, 32768, size=(int(seconds * sr), channels), dtype=np.int64).astype(np.int16)
    data[:5] = -32768  # the extremes, where clipping order matters
    data[5:10] = 32767
    if channels == 2:
        data[10:20, 1] = 0
    soundfile.write(str(path), data, sr, subtype="PCM_16")
    return path


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("seconds", [1.3, 5.0, 10.0])
def test_readers_are_bit_identical_to_the_copies_they_replace(tmp_path, channels, seconds):
    path = _wav(tmp_path / "a.wav", seconds, channels, seed=channels * 10 + int(seconds))
    mono16, sr = audio.read_wav_int16_mono(path)
    ref16, ref_sr = ref_folder_read_wav(path)
    assert sr == ref_sr and mono16.dtype == ref16.dtype and np.array_equal(mono16, ref16)
    monof, sr = audio.read_wav_float_mono(path)
    reff, ref_sr = ref_eval_read_audio(path)
    assert sr == ref_sr and monof.dtype == reff.dtype and np.array_equal(monof, reff)
    assert media.read_wav_float_mono is audio.read_wav_float_mono


@pytest.mark.parametrize("length", [1000, N - 1, N, N + 1, 5 * SR, 10 * SR + 7])
def test_windows_are_bit_identical_to_the_copies_they_replace(length):
    x = np.random.default_rng(length).standard_normal(length).astype(np.float32)
    for center in (None, 0.0, 0.4, 2.5, 4.99, 9.9, 30.0):
        for whole in (False, True):
            assert np.array_equal(audio.audio_window(x, center, whole), ref_eval_audio_window(x, center, whole))
    w, start, tiled = audio.central_window(x)
    rw, rstart, rtiled = ref_central_window(x)
    assert (start, tiled) == (rstart, rtiled) and np.array_equal(w, rw)
    pcm = (x * 1000).astype(np.int16)
    w16, start, tiled = audio.central_window(pcm)
    assert w16.dtype == np.int16 and np.array_equal(w16, ref_sample_builder_window(pcm, start, tiled))


def test_eval_and_folder_spectrograms_unchanged(tmp_path):
    """The spectrograms evaluate and the folder loader compute from a stereo wav equal those of the replaced code."""
    path = _wav(tmp_path / "s.wav", 4.2, 2, seed=3)
    spec = media.load_spec(path, center=1.0)
    x, _ = ref_eval_read_audio(path)
    from avloc.spectrogram import log_spectrogram
    import torch

    ref = (log_spectrogram(torch.from_numpy(np.ascontiguousarray(ref_eval_audio_window(x, 1.0))), SR)
           / schema.SPEC_SCALE).unsqueeze(0)
    assert torch.equal(spec, ref)
    from PIL import Image

    Image.new("RGB", (64, 48), (90, 120, 30)).save(tmp_path / "f.jpg")
    from avloc.data import LoaderOptions

    _, folder_spec = load_folder_sample(tmp_path / "f.jpg", path, None, LoaderOptions(mode="eval", image_size=32))
    ref_spec, _, _ = fnac_spectrogram_from_samples(ref_folder_read_wav(path)[0], SR)
    from avloc.data import augment

    assert torch.equal(folder_spec, augment.spec_tensor(ref_spec, None, "zero"))


def test_empty_audio_is_an_error(tmp_path):
    soundfile.write(str(tmp_path / "e.wav"), np.zeros((0, 1), np.int16), SR, subtype="PCM_16")
    with pytest.raises(ValueError, match="empty"):
        audio.read_wav_float_mono(tmp_path / "e.wav")
    with pytest.raises(ValueError, match="empty"):
        audio.central_window(np.zeros(0, np.float32))
