"""Real media and a model whose heat map is known, for the localize tests.

``RedModel``: the heat map is the redness (R - (G + B) / 2) of the model's input frame averaged
over a 28 x 28 grid, whatever the sound: the peak is on the red square. ``LoudRedModel``: the
same map scaled by the audio window's level, so silent windows give a flat, zero map.
``make_video`` encodes frames and audio with the real ffmpeg (H.264 + AAC mp4 by default).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from avloc.data.augment import IMAGENET_MEAN, IMAGENET_STD
from avloc.ffmpeg_bin import ffmpeg_exe

GRID = 28
SR = 16000


class RedModel(nn.Module):
    def visual(self, images: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        rgb = images * std + mean
        red = rgb[:, 0] - (rgb[:, 1] + rgb[:, 2]) / 2
        return F.adaptive_avg_pool2d(red[:, None], GRID)

    def audio(self, specs: torch.Tensor) -> torch.Tensor:
        return torch.ones(specs.shape[0], 1)


class LoudRedModel(RedModel):
    def audio(self, specs: torch.Tensor) -> torch.Tensor:
        # log-spectrogram / 12: digital silence sits at log(1e-7) / 12 ~ -1.34 everywhere
        return (specs.flatten(1).amax(dim=1, keepdim=True) + 1.3).clamp(min=0.0)


def square_frames(width: int, height: int, n: int, box_at, background=(40, 90, 40)) -> list:
    """n frames (uint8 [H, W, 3]) with a red square at box_at(i) = (x0, y0, x1, y1) pixels."""
    frames = []
    for i in range(n):
        f = np.empty((height, width, 3), np.uint8)
        f[:] = background
        x0, y0, x1, y1 = box_at(i)
        f[y0:y1, x0:x1] = (230, 20, 20)
        frames.append(f)
    return frames


def tone(seconds: float, sr: int = SR, freq: float = 440.0, level: float = 0.3, silent_spans=()) -> np.ndarray:
    """float32 mono sine with digital silence over ``silent_spans`` [(start_s, end_s)]."""
    t = np.arange(int(round(seconds * sr))) / sr
    x = (level * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    for a, b in silent_spans:
        x[int(a * sr):int(b * sr)] = 0.0
    return x


def make_video(path: Path, frames: list, fps: float, audio=None, *, sr: int = SR, audio_codec: str = "aac",
               rotate: int = 0, extra: tuple = ()) -> Path:
    """Encode ``frames`` at ``fps`` (+ ``audio`` float mono, if any) into ``path`` with the real ffmpeg.

    ``rotate``: a display-matrix rotation (degrees counter-clockwise) stored in the file.
    """
    path = Path(path)
    h, w = frames[0].shape[:2]
    even = w % 2 == 0 and h % 2 == 0
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", f"{fps:g}", "-i", "pipe:0"]
    wav = None
    if audio is not None:
        wav = path.with_suffix(".src.s16le")
        wav.write_bytes((np.clip(audio, -1, 1) * 32767).round().astype("<i2").tobytes())
        cmd += ["-f", "s16le", "-ar", str(sr), "-ac", "1", "-i", str(wav), "-c:a", audio_codec]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p" if even else "yuv444p",
            *extra, str(path if not rotate else path.with_suffix(".norot" + path.suffix))]
    subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True, capture_output=True)
    if wav is not None:
        wav.unlink()
    if rotate:
        src = path.with_suffix(".norot" + path.suffix)
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                        "-display_rotation", str(rotate), "-i", str(src), "-c", "copy", str(path)],
                       check=True, capture_output=True)
        src.unlink()
    return path


def decoded_first_frame(path: Path, width: int, height: int) -> np.ndarray:
    """The first frame as the ffmpeg command line shows it (display matrix applied), uint8 [height, width, 3]."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
                          "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(out, np.uint8).reshape(height, width, 3)


def red_box(frame: np.ndarray) -> tuple:
    """(x0, y0, x1, y1) of the red pixels (exclusive edges)."""
    red = (frame[..., 0] > 150) & (frame[..., 1] < 90) & (frame[..., 2] < 90)
    ys, xs = np.nonzero(red)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def audio_md5(path: Path) -> str:
    """md5 of the first audio stream's packets, copied out without decoding."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
                          "-map", "0:a:0", "-c", "copy", "-f", "md5", "-"], check=True, capture_output=True)
    return out.stdout.decode().strip()
