"""avloc.spectrogram (torch) against scipy.signal.spectrogram, the recipe's definition (METHOD.md §1.1),
on random audio and on real audio that went through an AAC encode and our decoders."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from avloc import schema
from avloc.ffmpeg_bin import ffmpeg_exe
from avloc.audio import central_window, to_float_audio
from avloc.spectrogram import fnac_spectrogram_from_samples, log_spectrogram

scipy_signal = pytest.importorskip("scipy.signal")


def scipy_log_spec(x: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray]:
    _, _, s = scipy_signal.spectrogram(x.astype(np.float64), fs=sr, nperseg=512, noverlap=274)
    return np.log(s + 1e-7), s


def assert_close(ours: np.ndarray, x: np.ndarray, sr: int, min_fraction: float = 0.5) -> None:
    ref, power = scipy_log_spec(x, sr)
    assert ours.shape == ref.shape
    meaningful = power >= 1e-6  # below that the log is dominated by the 1e-7 floor
    assert meaningful.mean() > min_fraction, meaningful.mean()
    diff = np.abs(ours.astype(np.float64) - ref)
    assert diff[meaningful].max() < 1e-3, diff[meaningful].max()
    assert diff.max() < 1e-2, diff.max()  # near the floor too, the log of the floor keeps it close


@pytest.mark.parametrize("sr,seconds", [(16000, 3.0), (16000, 1.0), (22050, 3.0), (44100, 3.0), (8000, 2.5)])
def test_random_audio_matches_scipy(sr, seconds):
    rng = np.random.default_rng(sr)
    x = (rng.standard_normal(int(sr * seconds)) * 0.3).clip(-1, 1).astype(np.float32)
    ours = log_spectrogram(x, sr).numpy()
    assert_close(ours, x, sr)


def test_shape_at_recipe_rates():
    for sr, frames in ((16000, 200), (22050, 276), (44100, 554)):
        x = np.zeros(int(3 * sr), dtype=np.float32)
        assert tuple(log_spectrogram(x, sr).shape) == (257, frames)


def test_batched_matches_single():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, schema.WINDOW_SAMPLES)).astype(np.float32) * 0.2
    batched = log_spectrogram(x).numpy()
    for i in range(3):
        np.testing.assert_allclose(batched[i], log_spectrogram(x[i]).numpy(), rtol=0, atol=1e-6)


def test_central_window_and_tiling():
    x = np.arange(100000, dtype=np.float32)
    w, start, tiled = central_window(x)
    assert not tiled and len(w) == schema.WINDOW_SAMPLES and start == 50000 - 24000
    short = np.arange(10000, dtype=np.float32)
    w, start, tiled = central_window(short)
    assert tiled and start == 0 and len(w) == schema.WINDOW_SAMPLES
    np.testing.assert_array_equal(w[10000:20000], short)


@pytest.fixture(scope="module")
def real_clip(shared_dir, tmp_path_factory):
    """The real 16 kHz wav, encoded to AAC in an mp4 next to an H.264 stream."""
    wav = shared_dir / "data" / "audio" / "FwVYUHKoLtQ_000034.wav"
    if not wav.is_file():
        pytest.skip(f"{wav} is absent")
    out = tmp_path_factory.mktemp("real") / "FwVYUHKoLtQ_000034.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                    "-f", "lavfi", "-i", "testsrc=size=96x64:rate=25", "-i", str(wav),
                    "-map", "0:v", "-map", "1:a", "-shortest", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(out)], check=True)
    return out


@pytest.mark.parametrize("decoder", ["ffmpeg", "pyav"])
def test_decoded_real_audio_matches_scipy(real_clip, decoder):
    from avloc.tools.sharding.decode import make_decoder

    decoded = make_decoder(decoder).decode(real_clip)
    assert len(decoded.audio) > schema.WINDOW_SAMPLES
    x = to_float_audio(decoded.audio)
    window, _, tiled = central_window(x)
    assert not tiled and np.abs(window).max() > 0.01  # real sound, not silence
    ours, _, _ = fnac_spectrogram_from_samples(decoded.audio)
    assert ours.shape == schema.SPEC_SHAPE
    # speech-like real audio through AAC has little energy in the top bins: a smaller share is above the floor
    assert_close(ours, window, schema.SAMPLE_RATE, min_fraction=0.05)
    # and what is stored: float16 keeps it within half-precision rounding
    stored = schema.decode_spec(schema.encode_spec(ours)).astype(np.float64)
    ref, power = scipy_log_spec(window, schema.SAMPLE_RATE)
    assert np.abs(stored - ref)[power >= 1e-6].max() < 2e-2
