"""One way to report progress and log: a bar on a terminal, timestamped lines everywhere else.

``log(message)`` writes one line to stderr through the ``avloc`` logger (silence it with
``logging.getLogger("avloc").setLevel(logging.WARNING)``).

``Progress(total, desc, unit)`` is used by every long command. On a terminal it draws a tqdm bar
with rate and ETA that stays on screen when done. When stderr is not a terminal (nohup, SLURM,
CI logs) it prints a plain line every ``interval`` seconds (default 30, or
``AVLOC_PROGRESS_INTERVAL``)::

    [2026-12-01 23:10:02] shard: 120/960 (12.5%) 3.20 clip/s ETA 4m22s failed 1

and always a final line at ``close()``. ``enabled=False`` prints nothing (``--no-progress``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime
from typing import Optional

LOGGER_NAME = "avloc"
INTERVAL_ENV = "AVLOC_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 30.0


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at emit time (so pytest's capture and redirections see it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    def emit(self, record):
        # assigned, not setStream(): that flushes the previous stream, which may be closed by now
        self.stream = sys.stderr
        super().emit(record)


def _logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def log(message: str) -> None:
    """One line of news for the user, on stderr."""
    _logger().info(message)


def warn(message: str) -> None:
    """A warning the user must see (also on stderr, marked)."""
    _logger().warning(f"warning: {message}")


def format_duration(seconds: Optional[float]) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _interval_from_env() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


class Progress:
    """Progress over ``total`` units (None when unknown); use as a context manager or call close()."""

    def __init__(self, total: Optional[int], desc: str, unit: str = "item", *, enabled: bool = True,
                 interval: Optional[float] = None, stream=None, tty: Optional[bool] = None):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.enabled = enabled
        self.done = 0
        self.failed = 0
        self.extra: dict = {}
        self._stream = stream
        self._interval = _interval_from_env() if interval is None else float(interval)
        self._start = time.monotonic()
        self._last_line = self._start
        self._closed = False
        is_tty = self._out().isatty() if tty is None else tty
        self._bar = None
        if enabled and is_tty:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self._out(), dynamic_ncols=True, leave=True)

    def _out(self):
        return self._stream if self._stream is not None else sys.stderr

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def update(self, n: int = 1, *, failed: int = 0, **extra) -> None:
        """``n`` more units done (of which ``failed`` failed); ``extra`` shows as key=value (e.g. loss)."""
        self.done += n
        self.failed += failed
        self.extra.update(extra)
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            postfix = dict(self.extra)
            if self.failed:
                postfix["failed"] = self.failed
            if postfix:
                self._bar.set_postfix({k: _short(v) for k, v in postfix.items()}, refresh=False)
            return
        now = time.monotonic()
        if now - self._last_line >= self._interval:
            self._last_line = now
            self._write_line()

    def rate(self) -> float:
        elapsed = time.monotonic() - self._start
        return self.done / elapsed if elapsed > 0 else 0.0

    def eta_seconds(self) -> Optional[float]:
        rate = self.rate()
        if self.total is None or rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def status_line(self, final: bool = False) -> str:
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        if self.total:
            count = f"{self.done}/{self.total} ({100.0 * self.done / self.total:.1f}%)"
        else:
            count = f"{self.done}"
        parts = [f"[{stamp}] {self.desc}: {count}", f"{self.rate():.2f} {self.unit}/s"]
        elapsed = time.monotonic() - self._start
        parts.append(f"done in {format_duration(elapsed)}" if final else f"ETA {format_duration(self.eta_seconds())}")
        if self.failed:
            parts.append(f"failed {self.failed}")
        parts += [f"{k}={_short(v)}" for k, v in self.extra.items()]
        return " ".join(parts)

    def _write_line(self, final: bool = False) -> None:
        out = self._out()
        out.write(self.status_line(final) + "\n")
        out.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            self._write_line(final=True)


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
