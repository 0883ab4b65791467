"""Shard throughput: `avloc shard` vs the public recipe, clips/s on the same cores, interleaved.

Baseline (what the public FNAC/EZ-VSL data preparation does): two ffmpeg calls per clip,
``ffmpeg -ss 5 -i clip -frames:v 1 frames/<id>.jpg`` and ``ffmpeg -i clip -vn -ac 1 -ar 16000
audio/<id>.wav``, run over the same number of parallel workers as avloc. It produces a
full-size jpg and a 10 s wav per clip, and nothing else.

avloc shard (both decoders) produces strictly more: the resized centre frame, the FNAC
spectrogram of the central 3 s, per-sample json, tar shards, DALI index, per-shard parquet,
manifest and dataset.json. Each measurement is a complete run (planning, worker start-up,
writing) into an empty folder.

A complete run of a few dozen clips carries each side's fixed cost (avloc: forking the workers,
the manifest and dataset card; the recipe: nothing beyond its processes), which a 144k-clip run
amortises. So every variant also runs on the first half of the clips, interleaved with the full
runs, and ``shard-marginal`` reports the rate beyond the fixed cost: the extra clips of the full
run over its extra time, per round (wall time and CPU time), with the fixed cost it implies.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from avloc.bench.harness import BenchContext, skipped, summarize
from avloc.utils.progress import log
from avloc.utils.system import usable_cores

SCENARIO = "shard"
MARGINAL_SCENARIO = "shard-marginal"
HALF = " [first half of the clips]"
BASELINE_OUTPUTS = "frames/<id>.jpg (full size) + audio/<id>.wav (whole track)"
AVLOC_OUTPUTS = ("tar shards (jpg short side 256 + spec.f16 257x200 + json) + DALI .idx + per-shard parquet + "
                 "_stats.json + _manifest/manifest.parquet + dataset.json + README.md dataset card")


def _cpu_seconds() -> float:
    """User + system CPU of this process and of every finished child (ffmpeg, pool workers)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _clip_paths(clips_dir: Path) -> list:
    from avloc.tools.sharding.discover import find_clips

    return [c.path for c in find_clips(clips_dir).clips]


def baseline_recipe(clips: list, out: Path, workers: int, frame_time: float = 5.0) -> None:
    """Two ffmpeg processes per clip, ``workers`` clips at a time."""
    from avloc.ffmpeg_bin import ffmpeg_exe

    exe = ffmpeg_exe()
    (out / "frames").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)

    def one(path: Path) -> None:
        stem = path.stem
        subprocess.run([exe, "-loglevel", "error", "-nostdin", "-y", "-ss", f"{frame_time:g}", "-i", str(path),
                        "-frames:v", "1", "-q:v", "2", str(out / "frames" / f"{stem}.jpg")], check=True)
        subprocess.run([exe, "-loglevel", "error", "-nostdin", "-y", "-i", str(path), "-vn", "-ac", "1", "-ar", "16000",
                        str(out / "audio" / f"{stem}.wav")], check=True)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, clips))


def _avloc_run(clips_dir: Path, out: Path, workers: int, decoder: str, n: int) -> None:
    from avloc.tools.sharding import ShardConfig, run_shard

    per_shard = max(1, math.ceil(n / (2 * workers)))  # two shards per worker: balanced load
    report = run_shard(ShardConfig(clips=clips_dir, out=out, workers=workers, decoder=decoder,
                                   samples_per_shard=per_shard, overwrite=True, progress=False))
    if report["ok"] != n:
        raise RuntimeError(f"avloc shard built {report['ok']} of {n} clips: {report['failed_by_reason']}")


def marginal_rates(n_small: int, n_large: int, seconds_small: list, seconds_large: list) -> list:
    """Clips/s beyond a run's fixed cost, one value per round: the larger run's extra clips over its
    extra seconds. Rounds where the larger run was not slower (noise) give no value."""
    return [(n_large - n_small) / (large - small)
            for small, large in zip(seconds_small, seconds_large) if large > small]


def fixed_seconds(n_small: int, seconds_small: list, marginal: list) -> float:
    """The fixed cost per run implied by the median marginal rate (seconds)."""
    import statistics

    return statistics.median(seconds_small) - n_small / statistics.median(marginal)


def _half_folder(clips_dir: Path, clips: list, dest: Path) -> Path:
    """A folder holding the first half of ``clips`` (hard links, same relative paths)."""
    from avloc.bench.replicate import link_or_copy

    for path in clips[:len(clips) // 2]:
        target = dest / Path(path).relative_to(clips_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            link_or_copy(path, target)
    return dest


def run(ctx: BenchContext) -> list:
    # always synthetic clips: a user's --shards are what this scenario produces, not its input
    n_synth = 24 if ctx.quick else 48
    synth = ctx.synthetic_clips(n_synth, duration=10.0, width=320, height=240)
    clips_dir = Path(synth.clips_dir)
    size_note = "synthetic 10 s 320x240 H.264/AAC"
    clips = _clip_paths(clips_dir)
    n = len(clips)
    if n == 0:
        raise RuntimeError(f"no clips found under {clips_dir}")
    workers = usable_cores()
    work = ctx.workdir / "bench-shard"
    size = f"{n} clips, {workers} workers"

    cpu_rates: dict = {}

    def measure(fn, name, count):
        def call():
            out = work / name.split(":")[0].replace(" ", "-")
            shutil.rmtree(out, ignore_errors=True)
            cpu0 = _cpu_seconds()
            t0 = time.perf_counter()
            fn(out)
            wall = time.perf_counter() - t0
            cpu_rates.setdefault(name, []).append(count / max(_cpu_seconds() - cpu0, 1e-9))
            return count / wall
        return call

    half = len(clips) // 2
    half_dir = _half_folder(clips_dir, clips, work / "half-clips")
    half_clips = _clip_paths(half_dir)
    runs = {
        "baseline: 2 ffmpeg calls/clip (jpg + wav)": (lambda o: baseline_recipe(clips, o, workers),
                                                      lambda o: baseline_recipe(half_clips, o, workers)),
        "avloc shard --decoder ffmpeg": (lambda o: _avloc_run(clips_dir, o, workers, "ffmpeg", n),
                                         lambda o: _avloc_run(half_dir, o, workers, "ffmpeg", half)),
        "avloc shard --decoder pyav": (lambda o: _avloc_run(clips_dir, o, workers, "pyav", n),
                                       lambda o: _avloc_run(half_dir, o, workers, "pyav", half)),
    }
    variants = {}
    for name, (full_run, half_run) in runs.items():
        variants[name] = measure(full_run, name, n)
        variants[name + HALF] = measure(half_run, name + HALF, half)
    rounds = 5  # each round is seconds: as many in --quick as in the full run (the median steadies)
    log(f"bench: shard: {n} clips ({size_note}) and the first {half} of them, {workers} workers, "
        f"{rounds} interleaved rounds")
    warmup = 1
    results = ctx.interleave(variants, rounds=rounds, warmup=warmup, desc="bench shard")
    records = []
    for name in runs:
        values = results[name]
        is_base = name.startswith("baseline")
        outputs = BASELINE_OUTPUTS if is_base else AVLOC_OUTPUTS
        records.append(summarize(SCENARIO, size, name, values, unit="clips/s", higher_is_better=True, baseline=is_base,
                                 clips=size_note, workers=workers, outputs=outputs, raw=values))
    # the same runs seen as CPU cost (all processes, children included): on a machine shared with
    # other jobs, wall time depends on their load, CPU seconds much less
    cpu_size = f"{n} clips, {workers} workers, CPU time"
    for name in runs:
        is_base = name.startswith("baseline")
        values = cpu_rates[name][warmup:]
        records.append(summarize(SCENARIO, cpu_size, name, values, unit="clips/CPU-s", higher_is_better=True,
                                 baseline=is_base, clips=size_note, workers=workers, raw=values))
    for kind, unit, rates_of in (("wall", "clips/s", lambda k: results[k]),
                                 ("CPU time", "clips/CPU-s", lambda k: cpu_rates[k][warmup:])):
        marginal_size = f"{n - half} clips beyond a {half}-clip run, {workers} workers, {kind}"
        for name in runs:
            is_base = name.startswith("baseline")
            small, large = [half / r for r in rates_of(name + HALF)], [n / r for r in rates_of(name)]
            values = marginal_rates(half, n, small, large)
            if not values:
                records.append(skipped(MARGINAL_SCENARIO, name, marginal_size, "skipped: the full runs were not "
                                       "slower than the half runs in any round (noise)", unit=unit,
                                       higher_is_better=True))
                continue
            records.append(summarize(MARGINAL_SCENARIO, marginal_size, name, values, unit=unit, higher_is_better=True,
                                     baseline=is_base, workers=workers, rounds_used=len(values),
                                     fixed_s_per_run=round(fixed_seconds(half, small, values), 4), raw=values))
    shutil.rmtree(work, ignore_errors=True)
    return records
