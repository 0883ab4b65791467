"""Where the ffmpeg executable is: a system ffmpeg on PATH if any, else imageio-ffmpeg's static one."""

from __future__ import annotations

import functools
import os
import shutil

from avloc.errors import AvlocError


@functools.lru_cache(maxsize=None)
def ffmpeg_exe() -> str:
    override = os.environ.get("AVLOC_FFMPEG")
    if override:
        return override
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - imageio-ffmpeg is a dependency
        raise AvlocError("no ffmpeg found: install ffmpeg on PATH or `pip install imageio-ffmpeg`") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()
