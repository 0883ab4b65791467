"""Opening one input: a video file, or a still image with a separate audio file.

A ``MediaSource`` gives what localisation needs and nothing more:

* ``facts``: the displayed size (rotation and non-square pixels applied), frame rate, duration,
  codecs, rotation;
* ``audio``: the whole audio track as int16 mono at 16 kHz, decoded by ffmpeg with exactly the
  command line the sharder's default decoder uses (``-ac 1 -ar 16000``, s16le), so a window
  here holds the samples a shard of the same clip would hold (~1.9 MB per minute);
* ``frames()``: the video decoded once, front to back (PyAV, threaded), one frame at a time in
  displayed orientation: memory holds one frame, whatever the video's length or size.

The probe is the sharder's (``avloc.tools.sharding.decode``): the same failures (unreadable,
empty or corrupt file, no video stream, no audio stream, bad resolution) with the same reasons.
"""

from __future__ import annotations

import dataclasses
import fractions
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from avloc import schema

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
STILL_FPS = fractions.Fraction(10)  # frame rate of the overlay video made for a still image
AUDIO_TIMEOUT_FLOOR_S = 60.0


class SourceError(Exception):
    """An input that cannot be localised: ``reason`` is a short code, the message one line."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass
class SourceFacts:
    path: str
    kind: str  # "video" | "image"
    width: int  # displayed size, what the maps and the overlay video use
    height: int
    fps: fractions.Fraction
    duration: float  # seconds of the video stream (of the audio for a still image)
    rotation: int  # degrees counter-clockwise applied to the coded frames
    video_codec: Optional[str]
    audio_codec: Optional[str]
    audio_path: str  # the file whose first audio stream is copied into the overlay video
    variable_frame_rate: bool = False
    sample_aspect: float = 1.0

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["fps"] = float(self.fps)
        out["fps_exact"] = f"{self.fps.numerator}/{self.fps.denominator}"
        return out


def to_display(rgb: np.ndarray, rotation: int, display_size: tuple) -> np.ndarray:
    """A decoded (coded-orientation) frame -> displayed orientation and size (square pixels).

    ``rotation``: degrees counter-clockwise, as the display matrix says (the sharder's convention).
    """
    k = (rotation // 90) % 4
    if k:
        rgb = np.ascontiguousarray(np.rot90(rgb, k=k))
    w, h = display_size
    if rgb.shape[1] != w or rgb.shape[0] != h:  # non-square pixels: stretched to the displayed width
        from PIL import Image

        rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BICUBIC))
    return rgb


def decode_audio_16k(path, timeout_s: float) -> np.ndarray:
    """The first audio stream of ``path`` as int16 mono 16 kHz (the sharder's ffmpeg conversion)."""
    from avloc.ffmpeg_bin import ffmpeg_exe

    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", "file:" + str(Path(path).absolute()),
           "-map", "0:a:0", "-f", "s16le", "-acodec", "pcm_s16le", "-ac", "1", "-ar", str(schema.SAMPLE_RATE), "pipe:1"]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise SourceError("decode_timeout", f"audio decoding ran longer than {timeout_s:g} s") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        raise SourceError("audio_decode_error", (lines[-1] if lines else f"ffmpeg exit {proc.returncode}")[:300])
    audio = np.frombuffer(proc.stdout, dtype="<i2").copy()
    if audio.size == 0:
        raise SourceError("no_audio_decoded", "the audio stream decoded to 0 samples")
    return audio


class MediaSource:
    """Base: ``facts``, ``audio`` (int16, 16 kHz mono) and ``frames()`` -> (seconds, uint8 [H, W, 3])."""

    facts: SourceFacts
    audio: np.ndarray

    def frames(self) -> Iterator[tuple]:
        raise NotImplementedError

    def expected_frames(self) -> int:
        return max(1, int(round(self.facts.duration * float(self.facts.fps))))

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class VideoSource(MediaSource):
    def __init__(self, path, *, threads: int = 0):
        from avloc.tools.sharding.decode import DecodeFailure, open_container, probe_container

        self.path = Path(path)
        try:
            self._container = open_container(self.path)
        except DecodeFailure as exc:
            raise SourceError(exc.reason, exc.detail) from None
        try:
            info = probe_container(self._container)
        except DecodeFailure as exc:
            self.close()
            raise SourceError(exc.reason, exc.detail) from None
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.base_rate or stream.guessed_rate
        fps = fractions.Fraction(rate) if rate else fractions.Fraction(25)
        width, height = info.display_size()
        self.facts = SourceFacts(path=str(self.path), kind="video", width=width, height=height, fps=fps,
                                 duration=info.duration, rotation=info.rotation, video_codec=info.video_codec,
                                 audio_codec=info.audio_codec, audio_path=str(self.path),
                                 variable_frame_rate=info.variable_frame_rate, sample_aspect=info.sample_aspect)
        self._start = info.start_time
        self._threads = threads
        self.audio = decode_audio_16k(self.path, AUDIO_TIMEOUT_FLOOR_S + info.duration / 4)

    def frames(self) -> Iterator[tuple]:
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        if self._threads:
            stream.codec_context.thread_count = self._threads
        size = (self.facts.width, self.facts.height)
        rotation_seen = None
        try:
            for frame in self._container.decode(stream):
                if frame.time is None:
                    continue
                if rotation_seen is None:  # the decoded frame's display matrix, where PyAV exposes it
                    rotation_seen = int(round(float(getattr(frame, "rotation", 0) or 0) / 90.0)) % 4 * 90
                    if rotation_seen != self.facts.rotation:
                        self._rotate_facts(rotation_seen)
                        size = (self.facts.width, self.facts.height)
                rgb = frame.to_ndarray(format="rgb24")
                yield float(frame.time) - self._start, to_display(rgb, self.facts.rotation, size)
        except SourceError:
            raise
        except Exception as exc:  # a decode error mid-stream: the frames before it were used
            from avloc.utils.system import first_line

            raise SourceError("decode_error", first_line(exc, 300)) from None

    def _rotate_facts(self, rotation: int) -> None:
        quarter = (rotation - self.facts.rotation) % 180 == 90
        w, h = (self.facts.height, self.facts.width) if quarter else (self.facts.width, self.facts.height)
        self.facts = dataclasses.replace(self.facts, rotation=rotation, width=w, height=h)

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None


class StillSource(MediaSource):
    """A still image (EXIF orientation applied) shown for the whole length of an audio file."""

    def __init__(self, image_path, audio_path):
        from PIL import Image, ImageOps, UnidentifiedImageError

        from avloc.tools.sharding.decode import DecodeFailure, open_container

        self.path = Path(image_path)
        try:
            with Image.open(self.path) as img:
                self.image = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
        except (OSError, UnidentifiedImageError) as exc:
            raise SourceError("unreadable_image", str(exc).splitlines()[0][:300] if str(exc) else "") from None
        try:
            container = open_container(audio_path)
        except DecodeFailure as exc:
            raise SourceError(exc.reason, exc.detail) from None
        try:
            if not container.streams.audio:
                raise SourceError("no_audio_stream", f"{Path(audio_path).name} has no audio stream")
            codec = container.streams.audio[0].codec_context.name
        finally:
            container.close()
        self.audio = decode_audio_16k(audio_path, AUDIO_TIMEOUT_FLOOR_S)
        h, w = self.image.shape[:2]
        self.facts = SourceFacts(path=str(self.path), kind="image", width=w, height=h, fps=STILL_FPS,
                                 duration=len(self.audio) / schema.SAMPLE_RATE, rotation=0, video_codec=None,
                                 audio_codec=codec, audio_path=str(Path(audio_path)))

    def frames(self) -> Iterator[tuple]:
        for i in range(self.expected_frames()):
            yield i / float(self.facts.fps), self.image


def open_source(path, audio=None, *, threads: int = 0) -> MediaSource:
    """A video file, or an image with ``audio``; raises SourceError with a reason for a bad input."""
    path = Path(path)
    if not path.exists():
        raise SourceError("not_found", str(path))
    if audio is not None:
        return StillSource(path, audio)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise SourceError("image_without_audio", "an image needs --audio WAV")
    return VideoSource(path, threads=threads)
