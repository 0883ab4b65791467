"""Pictures of a localisation: the overlay video and the contact sheet (drawn with avloc.overlay).

The overlay video has the displayed frame's size and the source's frame rate; frames go to
ffmpeg as raw RGB on stdin and are coded with libx264 (4:2:0, or 4:4:4 for odd sizes, which
4:2:0 cannot hold); the source's first audio stream is muxed in with ``-c:a copy``: its packets
are the source's, byte for byte. The container is mp4 when it can hold that audio codec, else
Matroska. The file appears under its name only when ffmpeg succeeded (avloc.utils.atomic).
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from avloc.errors import AvlocError
from avloc.localization.source import SourceFacts
from avloc.overlay import annotate, blend_heatmap, draw_overlay
from avloc.utils.atomic import atomic_path, atomic_write_with

MP4_AUDIO = {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"}


def video_name(facts: SourceFacts) -> str:
    return "overlay.mp4" if facts.audio_codec in MP4_AUDIO else "overlay.mkv"


def frame_label(t: float, row: dict) -> str:
    return f"{t:7.2f} s" + ("  silent" if row.get("silent") else "")


class OverlayVideoWriter:
    """``with OverlayVideoWriter(path, facts) as w: w.write(t, rgb, heat, row)``; finished on a clean exit only."""

    def __init__(self, path, facts: SourceFacts, *, crf: int = 20, preset: str = "veryfast", threads: int = 0):
        self.path, self.facts = Path(path), facts
        self.crf, self.preset, self.threads = crf, preset, threads
        self._stack = contextlib.ExitStack()
        self.proc = None
        self.frames = 0

    def command(self, tmp_out: Path, width: int, height: int) -> list:
        from avloc.ffmpeg_bin import ffmpeg_exe

        f = self.facts
        even = width % 2 == 0 and height % 2 == 0
        fmt = "mp4" if self.path.suffix == ".mp4" else "matroska"
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-framerate", f"{f.fps.numerator}/{f.fps.denominator}", "-i", "pipe:0",
               "-i", "file:" + str(Path(f.audio_path).absolute()),
               "-map", "0:v:0", "-map", "1:a:0", "-c:v", "libx264", "-preset", self.preset, "-crf", str(self.crf),
               "-pix_fmt", "yuv420p" if even else "yuv444p", "-c:a", "copy"]
        if self.threads:
            cmd += ["-threads", str(self.threads)]
        return cmd + ["-f", fmt, str(tmp_out)]

    def __enter__(self):
        return self

    def _start(self, width: int, height: int) -> None:
        """ffmpeg starts with the first frame, whose size is the displayed one (rotation as decoded)."""
        tmp_out = self._stack.enter_context(atomic_path(self.path))
        self._log = self._stack.enter_context(tempfile.TemporaryFile())
        self.proc = subprocess.Popen(self.command(tmp_out, width, height), stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=self._log)
        self.size = (width, height)

    def write(self, t: float, rgb: np.ndarray, heat: np.ndarray, row: dict) -> None:
        if self.proc is None:
            self._start(rgb.shape[1], rgb.shape[0])
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            raise AvlocError(f"frame size changed mid-stream ({self.size[0]}x{self.size[1]} -> "
                             f"{rgb.shape[1]}x{rgb.shape[0]}); not supported in {self.path.name}")
        frame = draw_overlay(rgb, heat, text=frame_label(t, row), marker=(row["peak_x"], row["peak_y"]))
        try:
            self.proc.stdin.write(frame.tobytes())
        except BrokenPipeError:
            raise AvlocError(f"ffmpeg stopped while writing {self.path}: {self._last_error()}") from None
        self.frames += 1

    def _last_error(self) -> str:
        self._log.seek(0)
        lines = [ln for ln in self._log.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "no message"

    def __exit__(self, exc_type, exc, tb):
        if self.proc is None and exc_type is None:
            raise AvlocError(f"no frame to write into {self.path}")
        try:
            if self.proc is not None:
                if exc_type is None:
                    with contextlib.suppress(BrokenPipeError):
                        self.proc.stdin.close()
                    rc = self.proc.wait(timeout=600)
                    if rc != 0:
                        raise AvlocError(f"ffmpeg failed writing {self.path} (exit {rc}): {self._last_error()}")
                else:
                    self.proc.kill()
                    self.proc.wait()
        except BaseException as err:
            self._stack.__exit__(type(err), err, err.__traceback__)
            raise
        return self._stack.__exit__(exc_type, exc, tb)


def contact_sheet(result, *, columns: int = 4, title: str = "") -> np.ndarray:
    """uint8 picture: a grid of the chosen instants' frames with their overlays and times."""
    from PIL import Image, ImageDraw

    cells = []
    for k, thumb in result.sheet:
        row = result.rows[k]
        heat = result.heatmap(k)
        overlay = blend_heatmap(thumb, heat)
        scale = thumb.shape[1] / result.facts.width
        cells.append(annotate(overlay, text=frame_label(row["time"], row).strip(), colour_bar=not cells,
                              marker=(row["peak_x"] * scale, row["peak_y"] * scale)))
    if not cells:
        raise AvlocError("nothing to draw: no instant was computed")
    h, w = cells[0].shape[:2]
    cols = min(columns, len(cells))
    rows = (len(cells) + cols - 1) // cols
    pad, head = 4, 22
    sheet = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad + head), (24, 24, 24))
    for i, cell in enumerate(cells):
        sheet.paste(Image.fromarray(cell), (pad + (i % cols) * (w + pad), head + pad + (i // cols) * (h + pad)))
    ImageDraw.Draw(sheet).text((pad, 4), title, fill=(235, 235, 235))
    return np.asarray(sheet)


def write_png(path, picture: np.ndarray) -> None:
    from PIL import Image

    atomic_write_with(path, lambda tmp: Image.fromarray(picture).save(tmp, format="PNG"))


__all__ = ["OverlayVideoWriter", "contact_sheet", "draw_overlay", "video_name", "write_png"]
