"""Encoding a rendered clip with ffmpeg: frames streamed on stdin, audio from a temp file.

``CONTAINERS`` and their default codec pairs (mp4/mkv: H.264 + AAC; webm: VP9 + Opus); bitexact
flags so a seed gives identical bytes; the file appears under its name only when complete.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional

import numpy as np

from avloc.errors import AvlocError
from avloc.ffmpeg_bin import ffmpeg_exe
from avloc.tools.synth.audio import to_pcm16
from avloc.tools.synth.render import SceneRenderer
from avloc.utils.atomic import atomic_path

CONTAINERS = {"mp4": "mp4", "webm": "webm", "mkv": "matroska"}  # --container -> ffmpeg's format name
DEFAULT_CODECS = {"mp4": ("libx264", "aac"), "mkv": ("libx264", "aac"), "webm": ("libvpx-vp9", "libopus")}
WEBM_VIDEO = {"libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1"}
WEBM_AUDIO = {"libopus", "opus", "libvorbis", "vorbis"}
OPUS_RATES = {8000, 12000, 16000, 24000, 48000}


@dataclasses.dataclass
class EncodeSettings:
    container: str
    video_codec: str
    audio_codec: str
    width: int
    height: int
    fps: float
    duration: float
    sample_rate: int
    channels: int
    threads: int = 0  # 0: ffmpeg's choice
    frame_noise: float = 0.0  # std (8-bit levels) of per-frame sensor noise; 0: none


def _video_args(s: EncodeSettings) -> list:
    even = s.width % 2 == 0 and s.height % 2 == 0
    if s.video_codec == "libx264":
        # 4:2:0 needs even sizes; odd sizes fall back to 4:4:4 which x264 also supports.
        return ["-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p" if even else "yuv444p"]
    if s.video_codec == "libvpx-vp9":
        return ["-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1", "-b:v", "0", "-crf", "30",
                "-pix_fmt", "yuv420p" if even else "yuv444p"]
    if s.video_codec == "libvpx":
        return ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M", "-pix_fmt", "yuv420p"]
    if s.video_codec in ("mpeg4", "libxvid"):
        return ["-q:v", "3", "-pix_fmt", "yuv420p"]
    return []


def _audio_args(s: EncodeSettings) -> list:
    if s.audio_codec == "aac":
        return ["-b:a", "96k"]
    if s.audio_codec in ("libopus", "opus"):
        args = ["-b:a", "64k"]
        if s.sample_rate not in OPUS_RATES:  # Opus only codes these rates
            args += ["-ar", "48000"]
        return args
    if s.audio_codec in ("libvorbis", "vorbis"):
        return ["-q:a", "4"]
    return []


class FrameNoise:
    """Per-frame sensor noise from a small bank of fields, so every frame differs (and the
    clip costs what real footage costs to code and decode) at little rendering cost."""

    BANK = 7

    def __init__(self, std: float, height: int, width: int, seed: int):
        rng = np.random.default_rng([seed, 99])
        self.fields = [np.round(rng.normal(0, std, (height, width, 1))).astype(np.int16) for _ in range(self.BANK)]

    def apply(self, frame: np.ndarray, index: int) -> np.ndarray:
        return np.clip(frame.astype(np.int16) + self.fields[index % self.BANK], 0, 255).astype(np.uint8)


def _command(s: EncodeSettings, pcm: Path, out_path: Path) -> list:
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{s.width}x{s.height}", "-framerate", f"{s.fps:g}",
           "-i", "pipe:0",
           "-f", "s16le", "-ar", str(s.sample_rate), "-ac", str(s.channels), "-i", str(pcm),
           "-map", "0:v:0", "-map", "1:a:0", "-c:v", s.video_codec, *_video_args(s),
           "-c:a", s.audio_codec, *_audio_args(s)]
    if s.threads:
        cmd += ["-threads", str(s.threads)]
    # bitexact: no encoder version strings or timestamps, so a seed gives identical bytes
    return cmd + ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
                  "-f", CONTAINERS[s.container], str(out_path.resolve())]


def _feed_frames(proc, renderer: SceneRenderer, s: EncodeSettings, noise: Optional[FrameNoise]) -> None:
    n_frames = int(round(s.duration * s.fps))
    try:
        previous_key, frame = None, None
        for i in range(n_frames):
            # Drift is slow, so most frames repeat the previous one: render only on change.
            key = renderer.offsets(i / s.fps)
            if key != previous_key:
                frame, previous_key = renderer.render(i / s.fps), key
            proc.stdin.write((noise.apply(frame, i) if noise else frame).tobytes())
        proc.stdin.close()
    except BrokenPipeError:
        pass


def encode_clip(path: Path, renderer: SceneRenderer, audio: np.ndarray, s: EncodeSettings, noise_seed: int = 0) -> None:
    """Stream rendered frames into ffmpeg (raw RGB on stdin, raw PCM from a temp file); the clip
    appears under ``path`` only when ffmpeg succeeded."""
    noise = FrameNoise(s.frame_noise, s.height, s.width, noise_seed) if s.frame_noise > 0 else None
    with tempfile.TemporaryDirectory(prefix="avloc-synth-") as tmp, atomic_path(path) as tmp_out:
        pcm = Path(tmp) / "audio.s16le"
        pcm.write_bytes(to_pcm16(audio))
        errlog = Path(tmp) / "ffmpeg.log"
        with open(errlog, "wb") as err:
            proc = subprocess.Popen(_command(s, pcm, tmp_out), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                    stderr=err)
            _feed_frames(proc, renderer, s, noise)
            rc = proc.wait()
        if rc != 0 or tmp_out.stat().st_size == 0:
            lines = errlog.read_text(errors="replace").strip().splitlines()
            raise AvlocError(f"ffmpeg failed on {path.name} (exit {rc}): {lines[-1] if lines else 'no message'}")


_encoders_cache: Optional[str] = None


def _available_encoders() -> str:
    global _encoders_cache
    if _encoders_cache is None:
        out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True)
        _encoders_cache = out.stdout
    return _encoders_cache


def resolve_codecs(container: str, video_codec: Optional[str], audio_codec: Optional[str]) -> tuple[str, str]:
    """The container's default pair where a codec is not given (the container must be known)."""
    default_v, default_a = DEFAULT_CODECS[container]
    return video_codec or default_v, audio_codec or default_a


def codec_problems(container: str, video_codec: Optional[str], audio_codec: Optional[str],
                   flags: tuple = ("container", "video codec", "audio codec")) -> List[str]:
    """Why this container/codec choice cannot be written (empty when it can); ``flags`` name the options."""
    if container not in CONTAINERS:
        return [f"{flags[0]} must be one of {', '.join(CONTAINERS)}; got {container!r}"]
    video_codec, audio_codec = resolve_codecs(container, video_codec, audio_codec)
    if container == "webm" and (video_codec not in WEBM_VIDEO or audio_codec not in WEBM_AUDIO):
        return [f"webm holds VP8/VP9/AV1 video and Opus/Vorbis audio, not {video_codec}/{audio_codec}"]
    encoders = _available_encoders()
    return [f"this ffmpeg ({ffmpeg_exe()}) has no encoder named {codec!r} ({flag})"
            for codec, flag in ((video_codec, flags[1]), (audio_codec, flags[2])) if f" {codec} " not in encoders]
