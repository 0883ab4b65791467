"""The benchmark harness: records, side-by-side timing, the environment record and the context.

Variants of a scenario are measured interleaved in one process (A B, B A, ... after a warm-up)
so that a noisy, shared machine affects them alike; ratios are taken within one run and one
size only.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Iterable, Optional

from avloc.utils.progress import Progress, log
from avloc.utils.system import usable_cores


@dataclasses.dataclass
class Record:
    scenario: str
    variant: str
    size: str
    value: Optional[float]  # the median of the measurements (None when skipped)
    unit: str
    higher_is_better: bool
    baseline: bool = False
    p_low: Optional[float] = None  # p10 (or p50 for latencies, see `spread`)
    p_high: Optional[float] = None  # p90 (or p99 for latencies)
    spread: str = "p10/p90"
    ratio_to_baseline: Optional[float] = None
    n: int = 0
    skipped: Optional[str] = None  # reason, e.g. "skipped: no CUDA"
    extra: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def percentile(values: list, q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of a non-empty list."""
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (pos - lo))


def summarize(scenario: str, size: str, variant: str, values: list, *, unit: str, higher_is_better: bool,
              baseline: bool = False, spread: str = "p10/p90", **extra) -> Record:
    lo_q, hi_q = (10, 90) if spread == "p10/p90" else (50, 99)
    return Record(scenario=scenario, variant=variant, size=size, value=float(statistics.median(values)),
                  unit=unit, higher_is_better=higher_is_better, baseline=baseline,
                  p_low=percentile(values, lo_q), p_high=percentile(values, hi_q), spread=spread,
                  n=len(values), extra=extra)


def skipped(scenario: str, variant: str, size: str, reason: str, *, unit: str, higher_is_better: bool) -> Record:
    return Record(scenario=scenario, variant=variant, size=size, value=None, unit=unit,
                  higher_is_better=higher_is_better, skipped=reason)


def interleave(variants: dict, *, rounds: int, warmup: int = 1, progress: Optional[Progress] = None) -> dict:
    """Call each variant's measurement function in turn, ``rounds`` times, after ``warmup`` calls each.

    ``variants`` maps name -> zero-argument callable returning one measurement (a float).
    The order alternates every round (A B, B A, ...) so neither side always runs first.
    Returns name -> list of measurements; ``progress`` (if any) advances once per round.
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    results = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            results[name].append(float(variants[name]()))
        if progress is not None:
            progress.update(1)
    return results


def fill_ratios(records: Iterable[Record]) -> list:
    """Set ratio_to_baseline = value / baseline value within each (scenario, size)."""
    records = list(records)
    base = {(r.scenario, r.size): r for r in records if r.baseline and r.value is not None}
    for r in records:
        b = base.get((r.scenario, r.size))
        if b is not None and r.value is not None and b.value:
            r.ratio_to_baseline = r.value / b.value
    return records


# ------------------------------------------------------------------------------- environment

VERSIONED = ("avloc", "torch", "torchvision", "torchaudio", "nvidia-dali-cuda120", "triton", "webdataset", "av",
             "imageio-ffmpeg", "numpy")


def _version(module: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""


def _gpu_name() -> Optional[str]:
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        return None


def _commit() -> Optional[str]:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip() or None
    except Exception:
        return None


def load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def machine_info(load_at_start: Optional[float] = None) -> dict:
    """CPU model, cores, GPU, library versions, load and the git commit, for every results file."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable_cores(),
        "gpu": _gpu_name(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {m: _version(m) for m in VERSIONED},
        "commit": _commit(),
        "load_average_1min_start": load_at_start,
        "load_average_1min_end": load_average(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ------------------------------------------------------------------------------- context

@dataclasses.dataclass
class BenchContext:
    """What a scenario gets: quick or full sizes, the user's shards (if any), a scratch folder, the device."""

    workdir: Path
    quick: bool = True
    shards: Optional[Path] = None  # a user's shards folder (holds dataset.json); None -> synthesise
    device: str = "cpu"
    progress: bool = True
    _cache: dict = dataclasses.field(default_factory=dict)

    def interleave(self, variants: dict, *, rounds: int, warmup: int = 1, desc: str = "bench") -> dict:
        """``interleave`` with a progress report (one unit per round)."""
        with Progress(rounds, desc, "round", enabled=self.progress) as bar:
            return interleave(variants, rounds=rounds, warmup=warmup, progress=bar)

    def synthetic_clips(self, n: int, *, duration: float = 10.0, width: int = 320, height: int = 240, **synth):
        """Synthetic VGG-Sound-like clips (``avloc synth``), generated once per context and settings."""
        key = ("clips", n, duration, width, height, tuple(sorted(synth.items())))
        if key not in self._cache:
            from avloc.tools.synth import generate_clips

            out = self.workdir / (f"clips-{n}-{duration:g}s-{width}x{height}" + (f"-{len(self._cache)}" if synth else ""))
            log(f"bench: synthesising {n} clips ({duration:g} s, {width}x{height}) in {out}")
            self._cache[key] = generate_clips(out, n, seed=0, duration=duration, width=width, height=height,
                                              workers=usable_cores(), progress=self.progress, **synth)
        return self._cache[key]

    def synthetic_shards(self, n: int, *, duration: float = 10.0, width: int = 320, height: int = 240,
                         samples_per_shard: int = 64) -> Path:
        """Shards built by ``run_shard`` from synthetic clips (once per context and size)."""
        key = ("shards", n, duration, width, height, samples_per_shard)
        if key not in self._cache:
            from avloc.tools.sharding import ShardConfig, run_shard

            clips = self.synthetic_clips(n, duration=duration, width=width, height=height)
            out = self.workdir / f"shards-{n}"
            log(f"bench: sharding {n} clips into {out}")
            run_shard(ShardConfig(clips=clips.clips_dir, out=out, csv=clips.csv_path, boxes=clips.boxes_path,
                                  samples_per_shard=samples_per_shard, val_fraction=0.0, progress=self.progress))
            self._cache[key] = out
        return self._cache[key]
