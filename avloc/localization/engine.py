"""One input, one pass: frames streamed in, heat maps computed in batches, frames streamed out.

The video is decoded once, front to back. Instants are t_k = k * every (k = 0, 1, ... while
t_k < duration). The frame on screen at t_k (the last frame with timestamp <= t_k) and the
3 s of audio centred on t_k (``measure``) go into a pending batch; a batch runs through the
model when it holds ``batch_size`` instants, when the frames waiting to be drawn pass the
memory budget, and at the end.

When a renderer is given (the overlay video), each decoded frame waits until the maps of the
instants on both sides of it exist, then is drawn with the two maps blended linearly by its
time (display only: the table holds the computed instants alone) and handed on. Memory stays
bounded by ``max_buffer_mb`` of waiting frames (at least the frames between two instants);
past it, waiting frames are drawn with the map of the instant before them (counted as
``held_frames``) rather than buffered further.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np
import torch

from avloc import schema
from avloc.localization import measure
from avloc.localization.source import MediaSource, SourceFacts
from avloc.utils.progress import Progress

SHEET_CELLS = 12
SHEET_THUMB_WIDTH = 360
_EPS = 1e-6

TABLE_COLUMNS = ("time", "frame_time", "window_start", "window_end", "peak_x", "peak_y", "box_x0", "box_y0",
                 "box_x1", "box_y1", "box_fraction", "confidence", "audio_dbfs", "silent", "tiled")


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    every: float = 0.5
    image_size: int = 224
    batch_size: int = 16
    silence_db: float = -60.0
    upsample: str = "bicubic"
    max_buffer_mb: float = 512.0


@dataclasses.dataclass
class LocalizeResult:
    """Everything computed for one input. ``maps`` are the raw similarity maps [K, h, w] (model
    resolution, displayed orientation); ``rows`` the table, one dict per instant (TABLE_COLUMNS)."""

    facts: SourceFacts
    settings: EngineSettings
    times: np.ndarray
    maps: np.ndarray
    rows: list
    flags: list
    sheet: list  # (instant index, thumbnail uint8 [h, w, 3]) for the contact sheet
    frames_decoded: int = 0
    held_frames: int = 0

    def table(self):
        """The rows as a pyarrow Table (columns in TABLE_COLUMNS order)."""
        import pyarrow as pa

        return pa.table({name: [row[name] for row in self.rows] for name in TABLE_COLUMNS})

    def heatmap(self, k: int) -> np.ndarray:
        """Instant ``k``'s map, min-max normalised, at the displayed frame's size (float32 [H, W])."""
        return measure.display_map(self.maps[k], self.facts.width, self.facts.height, self.settings.upsample)


def instant_times(duration: float, every: float) -> np.ndarray:
    n = max(1, int(math.ceil(duration / every - 1e-9)))
    return np.arange(n, dtype=np.float64) * every


def _sheet_indices(n: int) -> set:
    return set(np.unique(np.round(np.linspace(0, n - 1, min(n, SHEET_CELLS))).astype(int)).tolist())


def _thumbnail(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    if w <= SHEET_THUMB_WIDTH:
        return rgb.copy()
    size = (SHEET_THUMB_WIDTH, max(1, int(round(h * SHEET_THUMB_WIDTH / w))))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))


class _Run:
    def __init__(self, source: MediaSource, model, device, settings: EngineSettings, renderer, progress):
        self.source, self.model, self.device, self.s = source, model, device, settings
        self.renderer, self.progress = renderer, progress
        self.times = instant_times(source.facts.duration, settings.every)
        self.audio_float_n = len(source.audio)
        self.pending = []  # (k, model image tensor, frame time)
        self.maps, self.rows = [], []
        self.sheet_k = _sheet_indices(len(self.times))
        self.sheet = []
        self.waiting = collections.deque()  # (time, rgb) frames to draw
        self.waiting_bytes = 0
        self.display = {}  # k -> displayed map (float32 [H, W])
        self.held = 0
        self.decoded = 0

    # -- instants
    def assign(self, k: int, rgb: np.ndarray, frame_time: float) -> None:
        from PIL import Image

        from avloc.data.augment import eval_image

        self.pending.append((k, eval_image(Image.fromarray(rgb), self.s.image_size), frame_time))
        if k in self.sheet_k:
            self.sheet.append((k, _thumbnail(rgb)))

    @torch.no_grad()
    def run_batch(self) -> None:
        if not self.pending:
            return
        ks = [p[0] for p in self.pending]
        times = self.times[ks]
        windows = measure.audio_windows(self.source.audio, times)
        images = torch.stack([p[1] for p in self.pending]).to(self.device)
        specs = measure.spectrograms(windows).to(self.device)
        visual = self.model.visual(images)
        audio = self.model.audio(specs)
        raw = torch.einsum("nchw,nc->nhw", visual.float(), audio.float()).cpu().numpy()
        facts = self.source.facts
        tiled = self.audio_float_n < schema.WINDOW_SAMPLES
        for (k, _, frame_time), t, window, m in zip(self.pending, times, windows, raw):
            start, end = measure.window_bounds(self.audio_float_n, float(t))
            level = measure.level_dbfs(window)
            row = {"time": float(t), "frame_time": float(frame_time), "window_start": start, "window_end": end,
                   **measure.read_map(m, facts.width, facts.height, self.s.upsample),
                   "audio_dbfs": level, "silent": bool(level < self.s.silence_db), "tiled": tiled}
            self.rows.append(row)
            self.maps.append(m)
        self.pending = []

    # -- drawing
    def heat_at(self, k: int) -> np.ndarray:
        """Instant k's displayed map as uint8 levels (avloc.overlay.heat_levels), cached while frames need it."""
        if k not in self.display:
            from avloc.overlay import heat_levels

            facts = self.source.facts
            heat = measure.display_map(self.maps[k], facts.width, facts.height, self.s.upsample)
            self.display[k] = heat_levels(heat).astype(np.uint16)
        return self.display[k]

    def blended(self, k0: int, k1: int, w: float) -> np.ndarray:
        """Levels of the two instants' maps mixed linearly (weight w on k1), in 8.8 fixed point."""
        if k1 == k0 or w <= 0.0:
            return self.heat_at(k0).astype(np.uint8)
        w8 = int(round(w * 256))
        mixed = self.heat_at(k0) * (256 - w8)
        mixed += self.heat_at(k1) * w8
        mixed += 128
        return (mixed >> 8).astype(np.uint8)

    def flush(self, final: bool = False) -> None:
        if self.renderer is None:
            return
        every, last = self.s.every, len(self.times) - 1
        while self.waiting:
            t, rgb = self.waiting[0]
            k0 = min(last, max(0, int(math.floor((t + _EPS) / every))))
            k1 = min(k0 + 1, last)
            done = len(self.maps)
            if done > k1:
                w = 0.0 if k1 == k0 else min(1.0, max(0.0, (t - self.times[k0]) / every))
                heat = self.blended(k0, k1, w)
            elif done > k0 and (final or self.waiting_bytes > self.s.max_buffer_mb * 2**20):
                heat = self.blended(k0, k0, 0.0)
                self.held += 1
            else:
                return
            nearest = min(last, max(0, int(round(t / every))), len(self.rows) - 1)
            self.renderer.write(t, rgb, heat, self.rows[nearest])
            self.waiting.popleft()
            self.waiting_bytes -= rgb.nbytes
            for old in [k for k in self.display if k < k0]:
                del self.display[old]

    # -- the pass
    def go(self) -> None:
        k, previous = 0, None
        budget = self.s.max_buffer_mb * 2**20
        for t, rgb in self.source.frames():
            self.decoded += 1
            while k < len(self.times) and self.times[k] < t - _EPS:
                chosen = previous if previous is not None else (t, rgb)
                self.assign(k, chosen[1], chosen[0])
                k += 1
            previous = (t, rgb)
            if self.renderer is not None:
                self.waiting.append((t, rgb))
                self.waiting_bytes += rgb.nbytes
            if len(self.pending) >= self.s.batch_size or (self.pending and self.waiting_bytes > budget):
                self.run_batch()
            self.flush()
            if self.progress is not None:
                self.progress.update(1)
        if previous is None:
            from avloc.localization.source import SourceError

            raise SourceError("no_frame_decoded", "the video stream decoded to 0 frames")
        while k < len(self.times):
            self.assign(k, previous[1], previous[0])
            k += 1
        self.run_batch()
        self.flush(final=True)


def run_source(source: MediaSource, model, *, device="cpu", settings: EngineSettings = EngineSettings(),
               renderer=None, progress: bool = False) -> LocalizeResult:
    """Localise one opened source; ``renderer.write(t, rgb, heat_levels, row)`` gets every frame when given
    (``heat_levels``: the displayed map as uint8 levels, ``avloc.overlay.heat_levels``)."""
    facts = source.facts
    bar = Progress(source.expected_frames(), f"localize {facts.path}", "frame") if progress else None
    run = _Run(source, model, torch.device(device), settings, renderer, bar)
    try:
        run.go()
    finally:
        if bar is not None:
            bar.close()
    facts = source.facts  # the decoded frames may have corrected the probed rotation
    flags = []
    n_audio = len(source.audio)
    if n_audio < schema.WINDOW_SAMPLES:
        flags.append("short_audio_tiled")
    if facts.duration < 1.0 or n_audio < schema.SAMPLE_RATE:
        flags.append("very_short_clip")
    if run.rows and all(r["silent"] for r in run.rows):
        flags.append("silent_audio")
    elif any(r["silent"] for r in run.rows):
        flags.append("silent_windows")
    if facts.rotation:
        flags.append("rotated")
    if facts.variable_frame_rate:
        flags.append("variable_frame_rate")
    if facts.width % 2 or facts.height % 2:
        flags.append("odd_resolution")
    if run.held:
        flags.append("held_frames")
    maps = np.stack(run.maps).astype(np.float32) if run.maps else np.zeros((0, 0, 0), np.float32)
    return LocalizeResult(facts=source.facts, settings=settings, times=run.times, maps=maps, rows=run.rows,
                          flags=flags, sheet=sorted(run.sheet, key=lambda kv: kv[0]), frames_decoded=run.decoded,
                          held_frames=run.held)
