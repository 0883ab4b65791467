"""Reading one evaluation item's frame and audio the way the test-time recipe does.

Frame: resized to exactly 224 x 224 (bicubic, aspect not kept), ImageNet-normalised.
Audio: wav -> mono (channel mean) -> float in [-1, 1] (int16 / 32767) -> 16 kHz (resampled if
the file is not) -> a 3 s window (central, or centred on a given time and clamped to the clip;
tiled when the clip is shorter) or the whole clip -> FNAC log-spectrogram / 12.
"""

from __future__ import annotations

import numpy as np
import torch

from avloc import schema
from avloc.data import augment
from avloc.audio import audio_window, read_wav_float_mono, to_16k
from avloc.spectrogram import log_spectrogram

SR = schema.SAMPLE_RATE


def load_spec(path, center: float = None, whole: bool = False) -> torch.Tensor:
    """[1, 257, T] float32, already divided by 12."""
    x, sr = read_wav_float_mono(path)
    window = np.ascontiguousarray(audio_window(to_16k(x, sr), center, whole))
    return (log_spectrogram(torch.from_numpy(window), SR) / schema.SPEC_SCALE).unsqueeze(0)


def load_frame(path, image_size: int = 224) -> torch.Tensor:
    """[3, S, S] ImageNet-normalised."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        return augment.eval_image(img, image_size)


def load_frame_rgb(path, size=224) -> np.ndarray:
    """uint8 [size, size, 3] (same resize as the model input), or the frame as stored when ``size`` is None."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = img.convert("RGB")
        return np.asarray(rgb if size is None else rgb.resize((size, size), Image.BICUBIC))
