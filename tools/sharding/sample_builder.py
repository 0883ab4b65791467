"""One clip -> one shard sample (members + SampleMeta), or a failure with a reason.

Nothing here raises for a bad clip: every outcome is a ``SampleOutcome`` whose ``status`` is
``ok`` (possibly with flags) or ``failed`` with a short ``reason`` and a one-line ``detail``.

Reasons (failed): empty_file, unreadable_file, corrupt_file, no_video_stream, no_audio_stream,
bad_resolution (zero size or an aspect ratio above 16), frame_too_small (shorter side below
``min_frame_side``), decode_error, decode_timeout, no_audio_decoded, no_frame_decoded (no frame at
or after the centre), internal_error; the worker supervisor adds clip_timeout, memory_limit and
worker_died (``supervisor``).

Flags (ok): short_audio_tiled (audio < 3 s, tiled as the recipe does), silent_audio (window
peak below -80 dBFS), rotated (display matrix honoured), variable_frame_rate, odd_resolution,
frame_upscaled (shorter side below the frame size), key_rewritten (see schema.sample_key), not_in_csv,
audio_truncated (the audio decoded to less than its stream declares, by more than
``TRUNCATION_TOLERANCE_S``: a cut or damaged file; the window is the central 3 s of what decoded),
audio_after_video (audio longer than the video, and the central audio window starts at or after
the video's end: the frame and the sound do not overlap in time; kept, as the recipe takes the
central window of the audio track whatever the video's length, but flagged so it can be dropped).
"""

from __future__ import annotations

import dataclasses
import io
import time
import traceback
from typing import Optional

import numpy as np

from avloc import schema
from avloc.audio import central_window
from avloc.spectrogram import fnac_spectrogram_from_samples
from avloc.tools.sharding.decode import DEFAULT_DECODER, DecodeFailure, make_decoder, target_size

SILENCE_PEAK = 1e-4  # -80 dBFS on the [-1, 1] scale
_MEMORY_ERROR = "Cannot allocate memory"
_ALLOCATION_FAILED = ("allocate memory", "ArrowMemoryError", "malloc of size", "out of memory")
MIN_FRAME_SIDE = 16
TRUNCATION_TOLERANCE_S = 0.25  # decoded audio this much shorter than the stream declares: audio_truncated  # a decoded frame whose shorter side is below this is refused (frame_too_small)


@dataclasses.dataclass
class ClipTask:
    """What a worker needs to build one sample (picklable)."""

    clip_id: str
    key: str
    path: str  # absolute
    rel_path: str
    label: Optional[str]
    class_index: int
    split: str
    clip_start: Optional[float]
    bbox: Optional[list] = None
    flags: tuple = ()  # flags known before decoding (key_rewritten, not_in_csv)
    file_size: int = 0  # -1 when the file could not be stat'ed
    in_test_ids: bool = False  # the id is in a --test-ids or --exclude list
    mtime_ns: int = 0  # the file's modification time when selected (0: unknown)


@dataclasses.dataclass
class BuildOptions:
    frame_size: int = schema.FRAME_SHORT_SIDE
    jpeg_quality: int = schema.JPEG_QUALITY
    keep_audio: bool = False
    decoder: str = DEFAULT_DECODER
    decoder_threads: int = 2
    min_frame_side: int = MIN_FRAME_SIDE

    def recipe(self) -> dict:
        """What, beyond schema.RECIPE, decides a sample's bytes."""
        recipe = {"frame_short_side": self.frame_size, "jpeg_quality": self.jpeg_quality, "frame_resize": "bicubic",
                  "keep_audio": self.keep_audio, "decoder": self.decoder}  # decoder threads do not change the bytes
        if self.keep_audio:  # sets kept as flac before: rebuilt with --overwrite, never mixed with npy shards
            recipe["audio_member"] = schema.EXT_AUDIO
        if self.min_frame_side != MIN_FRAME_SIDE:  # away from its default only, so older sets still resume
            recipe["min_frame_side"] = self.min_frame_side
        return recipe


@dataclasses.dataclass
class SampleOutcome:
    clip_id: str
    key: str
    status: str  # "ok" | "failed"
    reason: Optional[str] = None
    detail: Optional[str] = None
    flags: list = dataclasses.field(default_factory=list)
    members: Optional[dict] = None  # ext -> bytes (ok only)
    meta: Optional[schema.SampleMeta] = None
    timings: dict = dataclasses.field(default_factory=dict)  # decode_s, spec_s, encode_s, total_s
    rotation: int = 0
    out_of_memory: bool = False  # an allocation failed (not the size check): the process may be damaged


_warm = False


def preload() -> None:
    """Import what building a sample needs and run its first calls once (spectrogram, resize, JPEG,
    parquet: each costs several ms the first time), so that workers forked afterwards share it."""
    global _warm
    import av  # noqa: F401
    import ffmpeg  # noqa: F401
    from PIL import Image, JpegImagePlugin, PpmImagePlugin  # noqa: F401

    if _warm:
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    fnac_spectrogram_from_samples(np.zeros(schema.WINDOW_SAMPLES, np.int16), schema.SAMPLE_RATE)
    encode_jpeg(resize_frame(np.zeros((24, 32, 3), np.uint8), 32), schema.JPEG_QUALITY)
    pq.write_table(pa.table({"warm": [0]}), pa.BufferOutputStream(), compression="zstd")
    _warm = True


def resize_frame(frame: np.ndarray, short_side: int, sample_aspect: float = 1.0, rotation: int = 0):
    """Bicubic resize so the shorter displayed side is ``short_side`` -> PIL image."""
    from PIL import Image

    h, w = frame.shape[:2]
    if sample_aspect != 1.0:  # non-square pixels: stretch the coded width (height after a quarter turn)
        if rotation in (90, 270):
            h = max(1, int(round(h * sample_aspect)))
        else:
            w = max(1, int(round(w * sample_aspect)))
    size = target_size(w, h, short_side)
    img = Image.fromarray(frame)
    return img if img.size == size else img.resize(size, Image.BICUBIC)


def encode_jpeg(img, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class SampleBuilder:
    """Holds one decoder; ``build(task)`` never raises for a bad clip."""

    def __init__(self, options: BuildOptions, timeout_s: float = 120.0, memory_mb: Optional[float] = None):
        self.options = options
        self.decoder = make_decoder(options.decoder, threads=options.decoder_threads, timeout_s=timeout_s,
                                    memory_mb=memory_mb)

    def build(self, task: ClipTask) -> SampleOutcome:
        t0 = time.perf_counter()
        outcome = SampleOutcome(clip_id=task.clip_id, key=task.key, status="failed", flags=list(task.flags))
        try:
            self._build(task, outcome)
        except DecodeFailure as exc:
            outcome.status, outcome.reason, outcome.detail = "failed", exc.reason, exc.detail
            if _MEMORY_ERROR in (exc.detail or ""):  # ffmpeg or libav ran out of the worker's memory bound
                outcome.reason, outcome.out_of_memory = "memory_limit", True
            outcome.members = outcome.meta = None
        except MemoryError as exc:  # the worker's memory bound (``supervisor``) stopped this clip
            outcome.status, outcome.reason, outcome.out_of_memory = "failed", "memory_limit", True
            outcome.detail = f"the clip needed more memory than the worker's bound allows ({type(exc).__name__})"
            outcome.members = outcome.meta = None
        except Exception as exc:  # a bug or an unexpected library error: recorded, the run goes on
            outcome.status, outcome.reason = "failed", "internal_error"
            outcome.detail = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()[-1][:300]
            if any(text in outcome.detail for text in _ALLOCATION_FAILED):  # torch/arrow words for MemoryError
                outcome.reason, outcome.out_of_memory = "memory_limit", True
            outcome.members = outcome.meta = None
        outcome.timings["total_s"] = time.perf_counter() - t0
        return outcome

    def _build(self, task: ClipTask, outcome: SampleOutcome) -> None:
        opts = self.options
        t0 = time.perf_counter()
        decoded = self.decoder.decode(task.path)
        info = decoded.info
        t1 = time.perf_counter()

        frame_h, frame_w = decoded.frame.shape[:2]
        if min(frame_h, frame_w) < opts.min_frame_side:
            raise DecodeFailure("frame_too_small", f"decoded frame {frame_w}x{frame_h} has a side below "
                                                   f"{opts.min_frame_side} pixels (--min-frame-side)")
        audio = decoded.audio
        if audio.size == 0:
            raise DecodeFailure("no_audio_decoded", "the audio stream decoded to 0 samples")
        # a long clip's decoder returns the central window itself (placed at audio_start of the track)
        log_spec, window_start, tiled = fnac_spectrogram_from_samples(audio, schema.SAMPLE_RATE)
        window, _, _ = central_window(audio)  # the int16 samples of the spectrogram's window
        track_samples = len(audio)
        if decoded.audio_total is not None:
            window_start, track_samples = decoded.audio_start, decoded.audio_total
        peak = float(np.abs(window.astype(np.float32)).max()) / 32767.0
        t2 = time.perf_counter()

        img = resize_frame(decoded.frame, opts.frame_size, info.sample_aspect, info.rotation)
        jpeg = encode_jpeg(img, opts.jpeg_quality)
        audio_member = schema.encode_audio(window) if opts.keep_audio else None

        flags = outcome.flags
        if tiled:
            flags.append("short_audio_tiled")
        if peak < SILENCE_PEAK:
            flags.append("silent_audio")
        if info.rotation:
            flags.append("rotated")
        if info.variable_frame_rate:
            flags.append("variable_frame_rate")
        if info.width % 2 or info.height % 2:
            flags.append("odd_resolution")
        if min(decoded.frame.shape[:2]) < opts.frame_size:
            flags.append("frame_upscaled")
        if window_start / schema.SAMPLE_RATE >= info.duration:
            flags.append("audio_after_video")
        if (decoded.audio_total is None and info.audio_duration
                and len(audio) < (info.audio_duration - TRUNCATION_TOLERANCE_S) * schema.SAMPLE_RATE):
            flags.append("audio_truncated")
        display_h, display_w = decoded.frame.shape[:2]
        meta = schema.SampleMeta(
            key=task.key, clip_id=task.clip_id, label=task.label, class_index=task.class_index, split=task.split,
            source_path=task.rel_path, clip_start=task.clip_start, duration=round(info.duration, 6),
            frame_time=round(decoded.frame_time, 6), fps=round(info.fps, 6) if info.fps else None,
            width=int(display_w), height=int(display_h), video_codec=info.video_codec, audio_codec=info.audio_codec,
            source_sample_rate=info.source_sample_rate, audio_seconds=round(track_samples / schema.SAMPLE_RATE, 6),
            window_start=round(window_start / schema.SAMPLE_RATE, 6), flags=sorted(set(flags)), bbox=task.bbox)
        outcome.members = schema.encode_sample(meta, jpeg, log_spec, audio_member)
        outcome.meta = meta
        outcome.flags = meta.flags
        outcome.rotation = info.rotation
        outcome.status = "ok"
        t3 = time.perf_counter()
        outcome.timings.update(decode_s=t1 - t0, spec_s=t2 - t1, encode_s=t3 - t2)

