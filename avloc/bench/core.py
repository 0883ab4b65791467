"""Benchmark records and side-by-side timing shared by every scenario.

A scenario is a module ``avloc.bench.<name>`` with ``run(ctx: BenchContext) -> list[Record]``.
Variants of a scenario are measured interleaved in one process (A B A B ... after a warm-up)
so that a noisy, shared machine affects them alike; ratios are taken within one run and one
size only.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional


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


def interleave(variants: dict, *, rounds: int, warmup: int = 1, on_round: Optional[Callable] = None) -> dict:
    """Call each variant's measurement function in turn, ``rounds`` times, after ``warmup`` calls each.

    ``variants`` maps name -> zero-argument callable returning one measurement (a float).
    The order alternates every round (A B, B A, ...) so neither side always runs first.
    Returns name -> list of measurements.
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
        if on_round:
            on_round(r + 1, rounds)
    return results


def timed(fn: Callable, *args, **kwargs) -> float:
    """Seconds taken by one call."""
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def fill_ratios(records: Iterable[Record]) -> list:
    """Set ratio_to_baseline = value / baseline value within each (scenario, size)."""
    records = list(records)
    base = {(r.scenario, r.size): r for r in records if r.baseline and r.value is not None}
    for r in records:
        b = base.get((r.scenario, r.size))
        if b is not None and r.value is not None and b.value:
            r.ratio_to_baseline = r.value / b.value
    return records


def _version(module: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def machine_info() -> dict:
    """CPU model, cores, GPU, library versions and the git commit, for every results file."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except Exception:
        pass
    commit = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip() or None
    except Exception:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {m: _version(m) for m in ("avloc", "torch", "torchvision", "torchaudio", "nvidia-dali-cuda120",
                                              "triton", "webdataset", "av", "imageio-ffmpeg", "numpy")},
        "commit": commit,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@dataclasses.dataclass
class BenchContext:
    """What a scenario gets: whether to be quick, where user data is, where to write scratch files."""

    quick: bool = True
    data: Optional[Path] = None  # user-provided clips or shards dir; None -> synthesise
    workdir: Path = dataclasses.field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="avloc-bench-")))
    device: str = "cpu"
    log: Callable[[str], None] = print
    _cache: dict = dataclasses.field(default_factory=dict)

    def synthetic_clips(self, n: int, *, duration: float = 10.0, width: int = 320, height: int = 240):
        """Synthetic VGG-Sound-like clips (generated once per context and size)."""
        key = ("clips", n, duration, width, height)
        if key not in self._cache:
            from avloc.tools.synth import generate_clips

            out = self.workdir / f"clips-{n}-{int(duration)}s-{width}x{height}"
            self.log(f"[bench] synthesising {n} clips ({duration:g} s, {width}x{height}) in {out}")
            self._cache[key] = generate_clips(out, n, seed=0, duration=duration, width=width, height=height,
                                              workers=os.cpu_count() or 1)
        return self._cache[key]

    def synthetic_shards(self, n: int, *, duration: float = 10.0, width: int = 320, height: int = 240,
                         samples_per_shard: int = 64) -> Path:
        """Shards built by avloc shard from synthetic clips (once per context and size)."""
        key = ("shards", n, duration, width, height, samples_per_shard)
        if key not in self._cache:
            from avloc.tools.sharding import ShardConfig, run_shard

            clips = self.synthetic_clips(n, duration=duration, width=width, height=height)
            out = self.workdir / f"shards-{n}"
            self.log(f"[bench] sharding {n} clips into {out}")
            run_shard(ShardConfig(clips=clips.clips_dir, out=out, csv=clips.csv_path, boxes=clips.boxes_path,
                                  samples_per_shard=samples_per_shard, val_fraction=0.0, progress=False))
            self._cache[key] = out
        return self._cache[key]


def write_json(records: list, path, machine: Optional[dict] = None) -> None:
    """A JSON list: one object per record, then one {"machine": {...}} object."""
    rows = [r.to_dict() for r in records] + [{"machine": machine or machine_info()}]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, path)


def append_jsonl(records: list, path, machine: Optional[dict] = None) -> None:
    machine = machine or machine_info()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        for r in records:
            fh.write(json.dumps({**r.to_dict(), "machine": machine}) + "\n")


def _fmt(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.4g}"


def table(records: list) -> str:
    """A markdown table of the records (also fine on a terminal)."""
    head = "| scenario | variant | size | value | unit | spread | ratio to baseline | note |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in records:
        spread = f"{r.spread} {_fmt(r.p_low)}..{_fmt(r.p_high)}" if r.value is not None else ""
        ratio = "baseline" if r.baseline else (f"{r.ratio_to_baseline:.2f}x" if r.ratio_to_baseline else "-")
        note = r.skipped or ("higher is better" if r.higher_is_better else "lower is better")
        lines.append(f"| {r.scenario} | {r.variant} | {r.size} | {_fmt(r.value)} | {r.unit} | {spread} | {ratio} | {note} |")
    return "\n".join(lines)


def plot_ratios(records: list, path) -> None:
    """Horizontal bars of ratio-to-baseline per (scenario, size, variant); skipped rows are listed as such."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in records if not r.baseline]
    labels = [f"{r.scenario} | {r.variant} | {r.size}" for r in rows]
    ratios = [r.ratio_to_baseline if r.ratio_to_baseline else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.32 * len(rows) + 1.2)))
    colors = []
    for r in rows:
        if r.ratio_to_baseline is None:
            colors.append("#bbbbbb")
        else:
            better = r.ratio_to_baseline >= 1 if r.higher_is_better else r.ratio_to_baseline <= 1
            colors.append("#2a9d8f" if better else "#e76f51")
    ax.barh(range(len(rows)), ratios, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.set_xscale("log") if any(x > 0 for x in ratios) else None
    for i, r in enumerate(rows):
        text = r.skipped or (f"{r.ratio_to_baseline:.2f}x" if r.ratio_to_baseline else "no baseline")
        ax.text(max(ratios[i], 1e-3) if ratios[i] else 1.0, i, " " + text, va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ratio to the scenario's baseline, same run (green = better than baseline)")
    ax.set_title("avloc bench-throughput")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
