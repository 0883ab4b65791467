"""Where training reports go: metrics.jsonl rows, optional TensorBoard, and the live progress line."""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no nan/inf
    return value


class MetricsLog:
    """Append-only ``metrics.jsonl`` (one JSON object per line, flushed per row) + TensorBoard if wanted."""

    def __init__(self, run_dir: Path, tensorboard: str = "auto"):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.tb = None
        self.tb_status = "off"
        if tensorboard != "off":
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
                self.tb_status = "on"
            except Exception:  # tensorboard not installed
                self.tb_status = "not installed" if tensorboard == "auto" else "requested but not installed"

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (from a run killed past its last checkpoint), atomically."""
        if not self.path.is_file():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the kill
            if row.get("step", 0) <= step:
                kept.append(line)
        fd, tmp = tempfile.mkstemp(prefix=".metrics.", dir=self.path.parent)
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(line + "\n" for line in kept))
        os.replace(tmp, self.path)

    def write(self, kind: str, **row) -> None:
        row = {"kind": kind, "time": round(time.time(), 3), **{k: _plain(v) for k, v in row.items()}}
        with open(self.path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        if self.tb is not None and "step" in row:
            for key, value in row.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "time"):
                    self.tb.add_scalar(f"{kind}/{key}", value, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def read_metrics(path) -> list:
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def format_terms(terms: dict) -> str:
    return " ".join(f"{k} {v:.4g}" for k, v in terms.items())


class ProgressLine:
    """A live status line on stderr (rewritten in place on a TTY; one line per log step otherwise)."""

    def __init__(self, enabled: bool = True, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.live = enabled and hasattr(self.stream, "isatty") and self.stream.isatty()
        self._width = 0

    def update(self, text: str, *, final: bool = False) -> None:
        if not self.enabled:
            return
        if self.live:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
            self._width = 0 if final else len(text)
        elif final:
            self.stream.write(text + "\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A permanent line (start-up choices, validation results), above the live line."""
        if self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()


def status_text(*, epoch: int, epochs: int, step_in_epoch: int, steps_per_epoch: int, step: int,
                samples_per_s: float, data_wait: float, terms: dict, loss: Optional[float]) -> str:
    loss_text = f"loss {loss:.4f}" if loss is not None else "loss -"
    return (f"epoch {epoch + 1}/{epochs} step {step_in_epoch}/{steps_per_epoch} (total {step}) | "
            f"{samples_per_s:.1f} samples/s | data-wait {100 * data_wait:.0f}% | {loss_text} | {format_terms(terms)}")
