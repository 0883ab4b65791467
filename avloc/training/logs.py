"""Where training reports go: metrics.jsonl rows and optional TensorBoard (the status line is avloc.utils.progress)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from avloc.utils.atomic import atomic_write_text


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
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

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
