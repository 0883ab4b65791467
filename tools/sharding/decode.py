"""Decode one clip into its centre frame and its mono 16 kHz audio track.

Two backends with the same output (``DecodedClip``):

* ``ffmpeg``: one ffmpeg process per clip, built with ffmpeg-python. The file is
  opened twice inside that one process: input 0 feeds the whole audio track, converted to
  mono s16le at 16 kHz, to stdout; input 1 is seeked (accurately) to the frame nearest the
  clip centre and that frame, rotated as the file's display matrix says, is written as an RGB
  PPM to a temp file. ``showinfo`` reports the frame's timestamp.
* ``pyav`` (default, ~3x the clips/s): the same in-process through PyAV (no process launch); the
  worker supervisor (``supervisor``) bounds each clip's time and memory as a process would. While decoding towards the
  centre it skips non-reference frames (nothing else depends on them, so the centre frame is
  bit-identical to a full decode) and only decodes every frame in the last 0.5 s before it.

Long clips (an audio stream that declares more than ``LONG_CLIP_S``) are not decoded whole:
both backends seek to ``WINDOW_MARGIN_S`` before the central 3 s window, which the declared
duration places, and decode only up to its end (ffmpeg: ``-ss``/``-t`` on the audio input; PyAV:
a seek and an early stop), so memory and time follow the window, not the clip's length. Short
clips (every VGG-Sound clip) decode their whole track, exactly as before.

Both probe the file with PyAV (in-process, headers only; the pyav backend reuses the container
it decodes from) for duration, streams and rates. The rotation is read where each backend sees
it: ffmpeg's stream dump, or the decoded frame's display matrix. Both return the frame at the
source resolution (swscale's default RGB conversion in both: bit-identical); resizing happens
once, in Python, for both. The pyav audio is trimmed to the audio stream's declared duration
(encoder padding removed), as the ffmpeg command line does, and 16 kHz mono float audio is
converted to int16 exactly as libswresample does, so both give the same samples.
Failures raise ``DecodeFailure(reason, detail)`` with a short reason code.
"""

from __future__ import annotations

import dataclasses
import fractions
import os
import re
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Optional

import numpy as np

from avloc import schema
from avloc.utils.processes import mark_pyav_used
from avloc.utils.system import pid_alive

DECODERS = ("ffmpeg", "pyav")
DEFAULT_DECODER = "pyav"  # the faster; the worker supervisor gives it the time limit and memory bound
# frames decoded fully (no skipping) before the target time in the pyav backend
_FULL_DECODE_MARGIN_S = 0.5
_MAX_ASPECT = 16.0
_VFR_TOLERANCE = 0.01
LONG_CLIP_S = 60.0  # audio longer than this is decoded only around the central window
WINDOW_MARGIN_S = 1.0  # decoded (and dropped) before the window: decoder and resampler settle


class DecodeFailure(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass
class ProbeInfo:
    duration: float  # seconds, of the video stream when known, else of the container
    start_time: float  # seconds, the container's first timestamp
    fps: Optional[float]  # average frame rate
    variable_frame_rate: bool
    width: int  # coded size, before rotation
    height: int
    sample_aspect: float
    rotation: int  # degrees counter-clockwise as the display matrix says, in {0, 90, 180, 270}
    video_codec: Optional[str]
    audio_codec: Optional[str]
    source_sample_rate: Optional[int]
    audio_channels: Optional[int]
    time_base: Optional[fractions.Fraction] = None  # of the video stream
    audio_duration: Optional[float] = None  # seconds the audio stream declares, else the container's (None: unknown)

    def display_size(self) -> tuple[int, int]:
        w = max(1, int(round(self.width * self.sample_aspect)))
        return (self.height, w) if self.rotation in (90, 270) else (w, self.height)

    @property
    def centre_time(self) -> float:
        return self.duration / 2.0


@dataclasses.dataclass
class DecodedClip:
    frame: np.ndarray  # H x W x 3 uint8 at the source's resolution, display orientation
    frame_time: float  # seconds from the file's start
    audio: np.ndarray  # int16 mono at schema.SAMPLE_RATE: the whole track, or only the window (long clips)
    info: ProbeInfo
    # long clips: ``audio`` is exactly the central window, which starts at sample ``audio_start``
    # of a track of ``audio_total`` samples; None for a whole track
    audio_total: Optional[int] = None
    audio_start: int = 0


@dataclasses.dataclass(frozen=True)
class AudioWindowPlan:
    """Where the central window of a long clip lies, from the declared audio duration."""

    total: int  # samples of the whole track at schema.SAMPLE_RATE
    start: int  # first sample of the window

    @property
    def end(self) -> int:
        return self.start + schema.WINDOW_SAMPLES

    @property
    def decode_from(self) -> float:
        """Seconds from the track's start where decoding begins (the margin before the window)."""
        return max(0.0, self.start / schema.SAMPLE_RATE - WINDOW_MARGIN_S)

    @property
    def decode_to(self) -> float:
        return self.end / schema.SAMPLE_RATE + 0.25


def audio_window_plan(info: ProbeInfo) -> Optional[AudioWindowPlan]:
    """The window of a long clip (None: decode the whole track)."""
    if info.audio_duration is None or info.audio_duration <= LONG_CLIP_S:
        return None
    total = int(round(info.audio_duration * schema.SAMPLE_RATE))
    return AudioWindowPlan(total=total, start=total // 2 - schema.WINDOW_SAMPLES // 2)


def cut_window(segment: np.ndarray, segment_start: int, plan: AudioWindowPlan) -> np.ndarray:
    """The plan's window out of decoded samples that begin at track sample ``segment_start``."""
    lo = plan.start - segment_start
    window = segment[max(lo, 0):lo + schema.WINDOW_SAMPLES] if lo + schema.WINDOW_SAMPLES > 0 else segment[:0]
    if lo < 0 or len(window) < schema.WINDOW_SAMPLES:
        raise DecodeFailure("no_audio_decoded", f"the audio around the centre ({plan.start / schema.SAMPLE_RATE:.3f}-"
                                                f"{plan.end / schema.SAMPLE_RATE:.3f} s of a declared "
                                                f"{plan.total / schema.SAMPLE_RATE:.3f} s) did not decode")
    return np.ascontiguousarray(window)


def target_size(display_w: int, display_h: int, short_side: int) -> tuple[int, int]:
    """(w, h) with the shorter side = short_side and the aspect kept (rounded)."""
    if display_w <= display_h:
        return short_side, max(1, int(round(display_h * short_side / display_w)))
    return max(1, int(round(display_w * short_side / display_h))), short_side


def _rotation_from_angle(angle: float) -> int:
    """A display-matrix angle (degrees counter-clockwise) -> 0, 90, 180 or 270."""
    return int(round(angle / 90.0)) % 4 * 90


def _rotation_of(stream) -> int:
    """The display-matrix rotation of a video stream (0 when there is none)."""
    angle = 0.0
    side_data = getattr(stream, "side_data", None)
    if side_data:
        for entry in side_data if isinstance(side_data, (list, tuple)) else side_data.values():
            if "DISPLAYMATRIX" in str(getattr(entry, "type", "")).upper():
                angle = float(getattr(entry, "rotation", 0.0) or 0.0)
    rotate_tag = (stream.metadata or {}).get("rotate")
    if rotate_tag:
        try:
            angle = -float(rotate_tag)
        except ValueError:
            pass
    return _rotation_from_angle(angle)


def _first_frame_rotation(container, stream) -> int:
    """Rotation from the first decoded frame's side data (where PyAV exposes it)."""
    try:
        for frame in container.decode(stream):
            return _rotation_from_angle(float(getattr(frame, "rotation", 0) or 0))
    except Exception:
        return 0
    return 0


def open_container(path):
    """Open ``path`` with PyAV; unreadable, empty and unparseable files raise DecodeFailure."""
    import av

    mark_pyav_used()  # children forked from now on could hang in FFmpeg's threads (avloc.utils.processes)

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(1)
    except OSError as exc:
        raise DecodeFailure("unreadable_file", exc.strerror or str(exc)) from None
    if not head:
        raise DecodeFailure("empty_file", "0 bytes")
    try:
        return _av_open(av, str(path))
    except Exception as exc:
        raise DecodeFailure("corrupt_file", _one_line(exc).replace(str(path), path.name)) from None


def _av_open(av, path: str):
    """av.open that tolerates undecodable metadata text: PyAV < 19 needs ``metadata_errors="ignore"``
    for that; PyAV 19 dropped the argument (and no longer raises on such metadata)."""
    if int(av.__version__.split(".")[0]) >= 19:
        return av.open(path)
    return av.open(path, metadata_errors="ignore")


def probe_container(container, *, read_rotation: bool = False) -> ProbeInfo:
    """Stream facts from an open container (headers only unless ``read_rotation``)."""
    video = container.streams.video[0] if container.streams.video else None
    audio = container.streams.audio[0] if container.streams.audio else None
    if video is None:
        raise DecodeFailure("no_video_stream", "the file has no video stream")
    if audio is None:
        raise DecodeFailure("no_audio_stream", "the file has no audio stream")
    cc = video.codec_context
    width, height = int(cc.width or 0), int(cc.height or 0)
    if width <= 0 or height <= 0:
        raise DecodeFailure("bad_resolution", f"video size {width}x{height}")
    duration = None
    if video.duration is not None and video.time_base:
        duration = float(video.duration * video.time_base)
    if not duration and container.duration:
        duration = container.duration / 1_000_000.0
    if not duration or duration <= 0:
        raise DecodeFailure("corrupt_file", "unknown duration")
    start_time = (container.start_time or 0) / 1_000_000.0
    avg = video.average_rate
    base = video.base_rate or video.guessed_rate
    fps = float(avg) if avg else (float(base) if base else None)
    vfr = bool(avg and base and abs(float(avg) - float(base)) > _VFR_TOLERANCE * float(base))
    sar = video.sample_aspect_ratio or cc.sample_aspect_ratio
    sample_aspect = float(sar) if sar and float(sar) > 0 else 1.0
    rotation = _rotation_of(video)
    if read_rotation and rotation == 0:
        rotation = _first_frame_rotation(container, video)
    info = ProbeInfo(
        duration=duration, start_time=start_time, fps=fps, variable_frame_rate=vfr, width=width, height=height,
        sample_aspect=sample_aspect, rotation=rotation, video_codec=cc.name,
        audio_codec=audio.codec_context.name, source_sample_rate=int(audio.codec_context.sample_rate or 0) or None,
        audio_channels=int(audio.codec_context.channels or 0) or None, time_base=video.time_base,
        audio_duration=_declared_seconds(audio) or (container.duration / 1_000_000.0 if container.duration else None))
    dw, dh = info.display_size()
    if max(dw, dh) / min(dw, dh) > _MAX_ASPECT:
        raise DecodeFailure("bad_resolution", f"display size {dw}x{dh} has an aspect ratio above {_MAX_ASPECT:g}")
    return info


FRAME_MEMORY_FACTOR = 8  # decoding one frame holds about this many RGB-sized buffers (reference frames, copies)


def check_frame_memory(info: ProbeInfo, memory_mb: Optional[float]) -> None:
    """Refuse a clip whose frame size alone needs more than ``memory_mb`` to decode (before decoding)."""
    if memory_mb is None:
        return
    need_mb = info.width * info.height * 3 * FRAME_MEMORY_FACTOR / 2**20
    if need_mb > memory_mb:
        raise DecodeFailure("memory_limit", f"a {info.width}x{info.height} video needs about {need_mb:.0f} MB to "
                                            f"decode, above the {memory_mb:g} MB a clip may use (--clip-memory)")


def probe(path, *, read_rotation: bool = False) -> ProbeInfo:
    """Headers-only probe with PyAV. Raises DecodeFailure for unreadable/corrupt/streamless files."""
    container = open_container(path)
    try:
        return probe_container(container, read_rotation=read_rotation)
    finally:
        container.close()


def _one_line(exc) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:300]


def _rotate(frame: np.ndarray, rotation: int) -> np.ndarray:
    """Rotate a decoded (coded-orientation) frame into display orientation (counter-clockwise degrees)."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(frame, k=k)) if k else frame


_PTS_TIME = re.compile(r"Parsed_showinfo.*?\bpts_time:\s*(-?[0-9.eE+-]+)")
_ROTATION = re.compile(r"rotation of (-?[0-9.]+) degrees")


def _declared_seconds(stream) -> Optional[float]:
    if stream.duration is None or not stream.time_base:
        return None
    return float(stream.duration * stream.time_base)


_FRAME_FILE = re.compile(r"^avloc-(\d+)-[0-9a-f]{32}\.ppm$")


def remove_orphan_frames(folder: Optional[str] = None) -> int:
    """Delete frame files whose writing process is gone (a killed run); returns how many."""
    folder = folder or FfmpegDecoder().tmp_dir
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        m = _FRAME_FILE.match(name)
        if not m or pid_alive(int(m.group(1))):
            continue
        try:
            os.unlink(os.path.join(folder, name))
            removed += 1
        except OSError:
            pass
    return removed


def _expected_audio_samples(stream) -> Optional[int]:
    """Samples at 16 kHz that the audio stream declares (None when it declares no duration)."""
    if stream.duration is None or not stream.time_base:
        return None
    return int(round(float(stream.duration * stream.time_base) * schema.SAMPLE_RATE))


class FfmpegDecoder:
    """One ffmpeg process per clip (see the module docstring)."""

    name = "ffmpeg"

    def __init__(self, timeout_s: float = 120.0, threads: int = 2, tmp_dir: Optional[str] = None,
                 memory_mb: Optional[float] = None):
        self.timeout_s = timeout_s
        self.threads = threads
        self.memory_mb = memory_mb
        shm = "/dev/shm"
        self.tmp_dir = tmp_dir or (shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir())

    def command(self, path, info: ProbeInfo, frame_path: str) -> list:
        import ffmpeg

        from avloc.ffmpeg_bin import ffmpeg_exe

        src = "file:" + str(Path(path).absolute())  # "file:" so names with ':' are not read as protocols
        seek = _seek_time(info)
        plan = audio_window_plan(info)
        window_args = {} if plan is None else {"ss": _ffmpeg_time(plan.decode_from),
                                               "t": _ffmpeg_time(plan.decode_to - plan.decode_from)}
        audio = ffmpeg.input(src, threads=self.threads, **window_args).audio.output(
            "pipe:1", format="s16le", acodec="pcm_s16le", ac=1, ar=schema.SAMPLE_RATE)
        video = (ffmpeg.input(src, ss=_ffmpeg_time(seek), threads=self.threads).video
                 .filter("showinfo")
                 .output(frame_path, vframes=1, format="image2", vcodec="ppm", pix_fmt="rgb24", update=1))
        return ffmpeg.merge_outputs(audio, video).global_args("-hide_banner", "-nostdin", "-loglevel", "info").compile(
            cmd=ffmpeg_exe(), overwrite_output=True)

    def decode(self, path, info: Optional[ProbeInfo] = None) -> DecodedClip:
        info = info or probe(path)
        check_frame_memory(info, self.memory_mb)
        frame_path = os.path.join(self.tmp_dir, f"avloc-{os.getpid()}-{uuid.uuid4().hex}.ppm")
        try:
            try:
                proc = subprocess.run(self.command(path, info, frame_path), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, timeout=self.timeout_s)
            except subprocess.TimeoutExpired:
                raise DecodeFailure("decode_timeout", f"ffmpeg ran longer than {self.timeout_s:g} s") from None
            stderr = proc.stderr.decode("utf-8", "replace")
            if proc.returncode != 0:
                raise DecodeFailure("decode_error", _last_error_line(stderr))
            audio = np.frombuffer(proc.stdout, dtype="<i2")
            if audio.size == 0:
                raise DecodeFailure("no_audio_decoded", "the audio stream decoded to 0 samples")
            if not os.path.exists(frame_path) or os.path.getsize(frame_path) == 0:
                raise DecodeFailure("no_frame_decoded", f"no video frame near the centre ({info.centre_time:.3f} s)")
            from PIL import Image

            with Image.open(frame_path) as img:
                frame = np.asarray(img.convert("RGB"))
        finally:
            try:
                os.unlink(frame_path)
            except OSError:
                pass
        match = _PTS_TIME.search(stderr)
        offset = float(match.group(1)) if match else 0.0
        rot = _ROTATION.search(stderr.split("Input #1", 1)[0])  # input 0's stream dump
        if rot:
            info = dataclasses.replace(info, rotation=_rotation_from_angle(float(rot.group(1))))
        plan = audio_window_plan(info)
        if plan is not None:  # the output starts at exactly -ss (accurate seek)
            window = cut_window(audio, int(round(plan.decode_from * schema.SAMPLE_RATE)), plan)
            return DecodedClip(frame=frame, frame_time=_seek_time(info) + offset, audio=window, info=info,
                               audio_total=plan.total, audio_start=plan.start)
        return DecodedClip(frame=frame, frame_time=_seek_time(info) + offset, audio=audio.copy(), info=info)


def _ffmpeg_time(seconds: float) -> str:
    """Seconds as ffmpeg reads them, in whole microseconds rounded down (never past a frame)."""
    us = int(seconds * 1_000_000)
    return f"{us // 1_000_000}.{us % 1_000_000:06d}"


def _seek_time(info: ProbeInfo) -> float:
    """Where to look for the centre frame: the first frame at or after ``duration / 2`` minus half
    a frame, i.e. the frame nearest the centre (frame 125 of a 10.0x s clip at 25 fps, the frame
    the VGG-SS boxes were drawn on). Rounded down to the video time base so that the timestamps
    ffmpeg reports relative to it are exact (e.g. Matroska's 1 ms ticks)."""
    half_frame = 0.5 / info.fps if info.fps else 0.0
    start = max(0.0, info.centre_time - half_frame)
    if info.time_base:
        ticks = int(fractions.Fraction(start).limit_denominator(10**9) / info.time_base)
        return float(ticks * info.time_base)
    return start


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "rror" in ln or "nvalid" in ln]
    return ((errors or lines or ["ffmpeg failed"])[-1])[:300]


def _decode_packet(packet, errors: Optional[list] = None) -> list:
    """The packet's frames; a packet the codec rejects (a file cut mid-packet, a damaged one) gives
    none, as the ffmpeg command line skips it and goes on, so both backends keep the same frames.
    The error is appended to ``errors``. Running out of memory is not skipped."""
    import av

    try:
        return packet.decode()
    except av.error.MemoryError:
        raise
    except av.error.FFmpegError as exc:
        if errors is not None:
            errors.append(_one_line(exc))
        return []


# sample formats of a mono frame whose first plane holds all samples, and their dtypes
_DIRECT_FORMATS = {"flt": np.float32, "fltp": np.float32, "s16": np.int16, "s16p": np.int16}


def _to_s16(x: np.ndarray) -> np.ndarray:
    """Mono samples -> int16 exactly as libswresample converts them (float: lrintf(x * 2^15), clipped)."""
    if x.dtype == np.int16:
        return x
    scaled = np.rint(x.astype(np.float32, copy=False) * np.float32(32768.0))
    return np.clip(scaled, -32768, 32767).astype(np.int16)


class PyAVDecoder:
    """In-process decode through PyAV (see the module docstring)."""

    name = "pyav"

    def __init__(self, threads: int = 2, memory_mb: Optional[float] = None):
        self.threads = threads
        self.memory_mb = memory_mb

    def decode(self, path, info: Optional[ProbeInfo] = None) -> DecodedClip:
        container = open_container(path)
        try:
            info = info or probe_container(container)
            check_frame_memory(info, self.memory_mb)
            plan = audio_window_plan(info)
            audio = self._audio(container) if plan is None else self._audio_window(container, info, plan)
            frame, frame_time, rotation = self._frame(container, info)
        except DecodeFailure:
            raise
        except Exception as exc:
            raise DecodeFailure("decode_error", _one_line(exc)) from None
        finally:
            container.close()
        if rotation != info.rotation:
            info = dataclasses.replace(info, rotation=rotation)
        if plan is not None:
            return DecodedClip(frame=frame, frame_time=frame_time, audio=audio, info=info, audio_total=plan.total,
                               audio_start=plan.start)
        return DecodedClip(frame=frame, frame_time=frame_time, audio=audio, info=info)

    def _audio_window(self, container, info: ProbeInfo, plan: AudioWindowPlan) -> np.ndarray:
        """Only the plan's window: seek before it, decode to its end, place samples by timestamp."""
        import av

        stream = container.streams.audio[0]
        time_base = stream.time_base or fractions.Fraction(1, 1_000_000)
        origin = info.start_time  # the track's sample 0, as in a whole decode
        container.seek(int((origin + plan.decode_from) / time_base), stream=stream, backward=True, any_frame=False)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=schema.SAMPLE_RATE)
        chunks, first_time = [], None
        stop_at = origin + plan.decode_to
        for packet in container.demux(stream):
            done = False
            for frame in _decode_packet(packet):
                if frame.time is None:
                    continue
                if first_time is None:
                    first_time = float(frame.time)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                done = float(frame.time) >= stop_at
            if done:
                break
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
        if first_time is None or not chunks:
            raise DecodeFailure("no_audio_decoded", "the audio stream decoded to 0 samples")
        segment = np.concatenate(chunks).astype("<i2", copy=False)
        return cut_window(segment, int(round((first_time - origin) * schema.SAMPLE_RATE)), plan)

    def _audio(self, container) -> np.ndarray:
        import av

        stream = container.streams.audio[0]
        cc = stream.codec_context
        direct = cc.sample_rate == schema.SAMPLE_RATE and cc.channels == 1
        resampler = None if direct else av.AudioResampler(format="s16", layout="mono", rate=schema.SAMPLE_RATE)
        direct_chunks, chunks = [], []  # direct: mono 16 kHz samples as decoded, converted once at the end
        for packet in container.demux(stream):
            for frame in _decode_packet(packet):
                fmt = frame.format.name
                if resampler is None and fmt in _DIRECT_FORMATS and frame.sample_rate == schema.SAMPLE_RATE:
                    plane = np.frombuffer(frame.planes[0], dtype=_DIRECT_FORMATS[fmt])[:frame.samples]
                    direct_chunks.append(plane)
                    continue
                if resampler is None:  # a stream that changes format midway: resample from here on
                    if direct_chunks:
                        chunks.append(_to_s16(np.concatenate(direct_chunks)))
                        direct_chunks = []
                    resampler = av.AudioResampler(format="s16", layout="mono", rate=schema.SAMPLE_RATE)
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
        if direct_chunks:
            chunks.append(_to_s16(np.concatenate(direct_chunks)))
        if resampler is not None:
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        if not chunks:
            raise DecodeFailure("no_audio_decoded", "the audio stream decoded to 0 samples")
        audio = np.concatenate(chunks).astype("<i2", copy=False)
        expected = _expected_audio_samples(stream)
        if expected and len(audio) > expected:
            audio = audio[:expected]
        return audio

    def _frame(self, container, info: ProbeInfo):
        stream = container.streams.video[0]
        cc = stream.codec_context
        cc.thread_count = self.threads
        cc.thread_type = "AUTO" if self.threads != 1 else "SLICE"
        target = info.start_time + _seek_time(info)
        time_base = stream.time_base or fractions.Fraction(1, 1_000_000)
        container.seek(int(target / time_base), stream=stream, backward=True, any_frame=False)
        cc.skip_frame = "NONREF"
        skipping = True
        full_from_ticks = int((target - _FULL_DECODE_MARGIN_S) / time_base)
        errors: list = []
        for packet in container.demux(stream):
            if skipping and (packet.pts is None or packet.pts >= full_from_ticks):
                cc.skip_frame = "DEFAULT"
                skipping = False
            for frame in _decode_packet(packet, errors):
                if frame.pts is None or frame.time is None:
                    continue
                if frame.time >= target - 1e-6:
                    rotation = _rotation_from_angle(float(getattr(frame, "rotation", 0) or 0))
                    rgb = frame.to_ndarray(format="rgb24")
                    return _rotate(rgb, rotation), float(frame.time) - info.start_time, rotation
        if errors:  # nothing decoded near the centre because the codec failed there
            raise DecodeFailure("decode_error", errors[-1])
        raise DecodeFailure("no_frame_decoded", f"no video frame near the centre ({info.centre_time:.3f} s)")


def make_decoder(name: str, threads: int = 2, timeout_s: float = 120.0, memory_mb: Optional[float] = None):
    if name == "ffmpeg":
        return FfmpegDecoder(timeout_s=timeout_s, threads=threads, memory_mb=memory_mb)
    if name == "pyav":
        return PyAVDecoder(threads=threads, memory_mb=memory_mb)
    raise ValueError(f"unknown decoder {name!r}; choose one of {DECODERS}")
