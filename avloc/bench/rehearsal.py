"""The 144k dress rehearsal: the bookkeeping and the reading of a VGG-Sound-144k-sized run, on a CPU,
in minutes (``avloc bench-throughput --scenario rehearsal``; ``--quick`` is a smaller version, see QUICK).

* Selection at scale: ``avloc shard``'s discovery + selection + test-id leakage count over
  200,000 placeholder clip files (zero bytes: what is timed is the bookkeeping, not decoding)
  named after the real ``vggss_144k.txt`` ids, the ``vggss_test.csv`` ids and filler ids, with
  the real lists as --subset and --test-ids. Run in a child process, so that its peak resident
  memory (VmHWM) is its own; the lists are looked for in ``AVLOC_REHEARSAL_LISTS`` or the
  project's ``../shared/data/metadata`` and the part is reported as skipped without them.
* Reading at scale: a 144,000-sample shard set made cheaply (real shard samples copied into one
  1,000-sample shard, hard-linked as 144 shards with real indexes; avloc.bench.replicate), then
  the DALI CPU loader's start-up (open + first batch), the epoch plan for 1 and 8 ranks, the
  sustained samples/s over a long stretch and the resident memory sampled over it.
* A projection: 144k x 30 epochs on 8/16/32-core GPU hosts from the measured per-core rate,
  beside the GPU model-only rate from a recorded GPU benchmark ("not measured" without one).

Everything is in the page cache (the shard files repeat): disk reads are not measured.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from avloc.bench.harness import BenchContext, skipped, summarize
from avloc.utils.progress import log

SCENARIO = "rehearsal"
PROJECTION = "rehearsal projection"
RECIPE_SAMPLES, RECIPE_EPOCHS = 144_000, 30
HOST_CORES = (8, 16, 32)
LIST_NAMES = ("vggss_144k.txt", "vggss_test.csv")
SELECTION_TIMEOUT_S = 1800


@dataclasses.dataclass(frozen=True)
class Scale:
    placeholder_files: int = 200_000
    samples: int = 144_000
    samples_per_shard: int = 1000
    batch_size: int = 256
    sustained_s: float = 120.0
    ranks: tuple = (1, 8)
    workers: int = 2

    @property
    def shards(self) -> int:
        return -(-self.samples // self.samples_per_shard)


FULL = Scale()
# --quick (inside the 5-minute quick run): a tenth of the placeholder files (the first 20,000 ids of the
# list, so the overlap reported is theirs, not the 3,715 of the whole list) and a 10 s read of the 144k set
QUICK = Scale(placeholder_files=20_000, sustained_s=10.0)


def find_lists() -> Optional[Path]:
    """The folder holding the real id lists (None when absent: that part is skipped)."""
    candidates = [os.environ.get("AVLOC_REHEARSAL_LISTS"),
                  Path(__file__).resolve().parents[2].parent / "shared" / "data" / "metadata"]
    for c in candidates:
        if c and all((Path(c) / name).is_file() for name in LIST_NAMES):
            return Path(c)
    return None


def record(scenario: str, variant: str, size: str, values: list, **kw):
    """harness.summarize with the variant before the size, as ``skipped`` takes them."""
    return summarize(scenario, size, variant, values, **kw)


# ------------------------------------------------------------------------------ selection at scale

def placeholder_clips(root: Path, ids: list, total: int) -> Path:
    """``total`` zero-byte .mp4 files under ``root`` (1,000 per folder): ``ids`` first, then filler ids."""
    root = Path(root)
    marker = root / ".complete"
    if marker.is_file() and marker.read_text() == str(total):
        return root
    names = list(dict.fromkeys(ids))[:total]
    names += [f"filler{i:05d}xx_{i % 1000:06d}" for i in range(total - len(names))]
    for start in range(0, len(names), 1000):
        folder = root / f"{start // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name in names[start:start + 1000]:
            os.close(os.open(folder / f"{name}.mp4", os.O_CREAT | os.O_WRONLY, 0o644))
    marker.write_text(str(total))
    return root


_SELECT_CHILD = r"""
import json, resource, sys, time
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024.0
from avloc.tools.sharding.config import ShardConfig
from avloc.tools.sharding.selection import select
clips, subset, test_ids, out = sys.argv[1:5]
base = status("VmRSS:")
t0, c0 = time.perf_counter(), cpu()
sel = select(ShardConfig(clips=clips, out=out, subset=subset, test_ids=[test_ids], progress=False))
seconds, cpu_seconds = time.perf_counter() - t0, cpu() - c0
overlap = sum(1 for t in sel.tasks if t.in_test_ids and t.split in ("train", "val"))
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "rss_before_mib": base, "peak_rss_mib": status("VmHWM:"),
                  "counts": sel.counts, "selected_test_overlap": overlap, "tasks": len(sel.tasks)}))
"""


def time_selection(clips: Path, lists: Path, out: Path) -> dict:
    """Discovery + selection + leakage count in a child process: seconds, peak memory, counts."""
    cmd = [sys.executable, "-c", _SELECT_CHILD, str(clips), str(lists / LIST_NAMES[0]), str(lists / LIST_NAMES[1]),
           str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=SELECTION_TIMEOUT_S)
    if proc.returncode != 0:
        raise RuntimeError(f"selection child failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def selection_records(ctx: BenchContext, scale: Scale) -> list:
    from avloc.idlists import read_id_list

    size = f"{scale.placeholder_files:,} placeholder files"
    lists = find_lists()
    if lists is None:
        reason = f"skipped: the real {' and '.join(LIST_NAMES)} not found (set AVLOC_REHEARSAL_LISTS)"
        return [skipped(SCENARIO, "selection: discover + select + leakage", size, reason, unit="s",
                        higher_is_better=False)]
    ids = read_id_list(lists / LIST_NAMES[0]) + read_id_list(lists / LIST_NAMES[1])
    t0 = time.perf_counter()
    clips = placeholder_clips(ctx.workdir / "rehearsal-clips", ids, scale.placeholder_files)
    made_s = time.perf_counter() - t0
    log(f"bench: rehearsal: {scale.placeholder_files:,} placeholder clip files in {made_s:.1f} s; timing selection")
    got = time_selection(clips, lists, ctx.workdir / "rehearsal-out")
    counts = got["counts"]
    common = dict(cpu_seconds=round(got["cpu_seconds"], 2), files_found=counts["files_found"], selected=counts["selected"], listed=counts["listed"],
                  listed_missing=counts["listed_missing"], rss_before_mib=round(got["rss_before_mib"], 1),
                  placeholder_creation_s=round(made_s, 2))
    return [
        record(SCENARIO, "selection: discover + select + leakage", size, [got["seconds"]], unit="s",
                  higher_is_better=False, **common),
        record(SCENARIO, "selection: peak resident memory (whole child process)", size, [got["peak_rss_mib"]],
                  unit="MiB", higher_is_better=False, **common),
        record(SCENARIO, f"test-id overlap: {LIST_NAMES[0]} ids that are {LIST_NAMES[1]} ids", size,
                  [counts["listed_test_overlap"]], unit="ids", higher_is_better=False,
                  selected_train_val_known_test=got["selected_test_overlap"], test_ids_known=counts["test_ids_known"]),
    ]


# ------------------------------------------------------------------------------ reading at scale

def big_shard_set(ctx: BenchContext, scale: Scale, base_shards: Optional[Path] = None) -> Path:
    """``scale.samples`` samples in ``scale.shards`` shards, hard links of one replicated shard."""
    from avloc.bench.replicate import link_shards, replicate_shards

    root = ctx.workdir / "rehearsal-shards"
    if base_shards is None:  # the loaders scenario's sharded clips when it ran, else synthesise some
        from avloc import schema

        loaders_unique = ctx.workdir / "loaders-data" / f"unique-{schema.FRAME_SHORT_SIDE}"
        base_shards = (loaders_unique if (loaders_unique / "dataset.json").is_file() else
                       ctx.synthetic_shards(16, duration=4.0, width=480, height=360, samples_per_shard=16))
    one = replicate_shards(base_shards, root / "one", scale.samples_per_shard,
                           samples_per_shard=scale.samples_per_shard)
    return link_shards(one, root / "set", scale.shards)


class MemorySampler:
    """Resident memory of this process (DALI's threads included) every ``every_s`` seconds: the
    anonymous part (heap, buffers: what a leak grows) and the file-backed part (pages of mapped
    files, e.g. the shards DALI's reader maps: they are the page cache's, reclaimable)."""

    def __init__(self, every_s: float = 1.0):
        self.every_s = every_s
        self.samples: list = []  # (seconds since start, anonymous MiB)
        self.file_backed: list = []  # (seconds since start, file-backed MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.perf_counter()

    @staticmethod
    def rss_mib() -> tuple:
        """(anonymous, file-backed) resident MiB of this process."""
        found = {}
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                    found[line.split(":")[0]] = int(line.split()[1]) / 1024.0
        return found.get("RssAnon", 0.0), found.get("RssFile", 0.0) + found.get("RssShmem", 0.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter() - self._t0
            anon, file_backed = self.rss_mib()
            self.samples.append((t, anon))
            self.file_backed.append((t, file_backed))
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)


def growth_mib_per_min(samples: list) -> float:
    """Least-squares slope of the second half of the samples (after the warm-up), MiB per minute."""
    half = samples[len(samples) // 2:]
    if len(half) < 2:
        return 0.0
    ts, ms = [t for t, _ in half], [m for _, m in half]
    t_mean, m_mean = sum(ts) / len(ts), sum(ms) / len(ms)
    var = sum((t - t_mean) ** 2 for t in ts)
    return 60.0 * sum((t - t_mean) * (m - m_mean) for t, m in zip(ts, ms)) / var if var else 0.0


def plan_times(loader, ranks: tuple) -> dict:
    """Seconds to plan one epoch (the read plan of rank 0, and the torch loader's shuffled sample order)."""
    import numpy as np

    from avloc.data.shards import buffered_shuffle, rank_plan, rank_samples

    out = {}
    for world in ranks:
        options = dataclasses.replace(loader.options, world_size=world, rank=0)
        t0 = time.perf_counter()
        plan = rank_plan(loader.shards, options, epoch=1)
        picked = rank_samples(loader.shards, plan)
        buffered_shuffle(len(picked), options.shuffle_buffer, np.random.default_rng([options.seed, 1, 0, 7]))
        out[world] = {"seconds": time.perf_counter() - t0, "samples_rank0": len(picked), "batches": plan.num_batches}
    return out


def process_cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads (DALI's included)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sustained(loader, seconds: float) -> dict:
    """Iterate (epoch after epoch) for ``seconds`` after the first batch: samples/s, rates per window,
    samples per CPU-second of this process (what a core gives when it is not shared), memory."""
    samples, windows, epoch = 0, [], 0
    with MemorySampler() as memory:
        t_start = time.perf_counter()
        loader.set_epoch(epoch)
        it = iter(loader)
        first_batch_s = None
        window_t, window_n = None, 0
        while True:
            try:
                batch = next(it)
            except StopIteration:
                epoch += 1
                loader.set_epoch(epoch)
                it = iter(loader)
                continue
            now = time.perf_counter()
            if first_batch_s is None:
                first_batch_s, t0, window_t, cpu0 = now - t_start, now, now, process_cpu_seconds()
                continue
            n = len(batch["key"])
            samples += n
            window_n += n
            if now - window_t >= 10.0:
                windows.append(window_n / (now - window_t))
                window_t, window_n = now, 0
            if now - t0 >= seconds:
                break
        elapsed, cpu_used = time.perf_counter() - t0, process_cpu_seconds() - cpu0
        close = getattr(it, "close", None)
        if close:
            close()
    return {"rate": samples / elapsed, "seconds": elapsed, "samples": samples, "first_batch_s": first_batch_s,
            "per_cpu_second": samples / cpu_used if cpu_used > 0 else None, "cpu_seconds": cpu_used,
            "window_rates": [round(w, 1) for w in windows], "memory": memory.samples,
            "file_backed": memory.file_backed, "epochs_started": epoch + 1}


def reading_records(ctx: BenchContext, scale: Scale, base_shards: Optional[Path] = None) -> tuple:
    """(records, per-core rate or None) of reading the big set with the DALI CPU loader."""
    from avloc.data import LoaderOptions, build_loader, dali_available

    size = f"{scale.samples:,} samples, {scale.shards} shards"
    if not dali_available():
        return [skipped(SCENARIO, "dali-cpu sustained", size, "skipped: DALI not installed", unit="samples/s",
                        higher_is_better=True)], None
    data = big_shard_set(ctx, scale, base_shards)
    options = LoaderOptions(backend="dali", mode="train", batch_size=scale.batch_size, num_workers=scale.workers)
    t0 = time.perf_counter()
    loader = build_loader(data, "train", options)
    open_s = time.perf_counter() - t0
    plans = plan_times(loader, scale.ranks)
    log(f"bench: rehearsal: {size} opened in {open_s:.2f} s; DALI CPU loader for {scale.sustained_s:g} s")
    run = sustained(loader, scale.sustained_s)
    rss = [m for _, m in run["memory"]]
    growth = growth_mib_per_min(run["memory"])
    cores = min(scale.workers, os.cpu_count() or 1)
    common = dict(batch_size=scale.batch_size, threads=scale.workers, stored_frame_short_side=loader.shards.frame_short_side)
    records = [
        record(SCENARIO, "loader open (index check of every sample)", size, [open_s], unit="s",
                  higher_is_better=False, **common),
        record(SCENARIO, "loader start-up: iterator to first batch", size, [run["first_batch_s"]], unit="s",
                  higher_is_better=False, **common),
    ]
    for world, p in plans.items():
        records.append(record(SCENARIO, f"epoch plan, {world} rank{'s' if world > 1 else ''} (rank 0)", size,
                                 [p["seconds"]], unit="s", higher_is_better=False, samples_rank0=p["samples_rank0"],
                                 batches=p["batches"]))
    records += [
        record(SCENARIO, f"dali-cpu sustained ({run['seconds']:.0f} s)", size, run["window_rates"] or [run["rate"]],
                  unit="samples/s", higher_is_better=True, rate_over_stretch=round(run["rate"], 1),
                  raw=run["window_rates"],
                  samples=run["samples"], epochs_started=run["epochs_started"], per_core=round(run["rate"] / cores, 1),
                  samples_per_cpu_second=round(run["per_cpu_second"], 1) if run["per_cpu_second"] else None,
                  cpu_seconds=round(run["cpu_seconds"], 2),
                  **common),
        record(SCENARIO, "resident memory while reading (anonymous)", size, rss or [0.0], unit="MiB",
                  higher_is_better=False,
                  first_mib=round(rss[0], 1) if rss else None, last_mib=round(rss[-1], 1) if rss else None,
                  file_backed_first_last_mib=[round(run["file_backed"][0][1], 1), round(run["file_backed"][-1][1], 1)]
                  if run["file_backed"] else None,
                  growth_mib_per_min_second_half=round(growth, 2), n_samples=len(rss),
                  series=[[round(t, 1), round(m, 1)] for t, m in run["memory"]][::max(1, len(rss) // 60)]),
    ]
    # per core: samples per CPU-second of the loader process when measured (a shared machine's load does
    # not lower it), else the wall rate over the threads' cores
    return records, run["per_cpu_second"] or run["rate"] / cores


# ------------------------------------------------------------------------------ projection

def recorded_gpu_model_rate() -> Optional[tuple]:
    """(samples/s, file) of a recorded GPU training benchmark's model-only rate, or None."""
    results = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    for path in sorted(results.glob("train-throughput-gpu*.jsonl")) if results.is_dir() else []:
        for line in path.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if (row.get("scenario") == "train" and str(row.get("variant", "")).startswith("model-only")
                    and row.get("value") and (row.get("machine") or {}).get("gpu")):
                return float(row["value"]), path.name
    return None


def projection_records(per_core_rate: Optional[float]) -> list:
    gpu = recorded_gpu_model_rate()
    gpu_note = f"{gpu[0]:,.0f} samples/s ({gpu[1]})" if gpu else "not measured"
    total = RECIPE_SAMPLES * RECIPE_EPOCHS
    records = []
    for cores in HOST_CORES:
        variant = f"{cores}-core GPU host, loader on every core"
        size = f"{RECIPE_SAMPLES:,} x {RECIPE_EPOCHS} epochs"
        if per_core_rate is None:
            records.append(skipped(PROJECTION, variant, size, "skipped: no loader rate measured", unit="hours",
                                   higher_is_better=False))
            continue
        loader_rate = per_core_rate * cores
        hours = total / loader_rate / 3600.0
        bound = "loader" if gpu is None or loader_rate < gpu[0] else "GPU"
        if gpu is not None:
            hours = total / min(loader_rate, gpu[0]) / 3600.0
        records.append(record(PROJECTION, variant, size, [hours], unit="hours", higher_is_better=False,
                                 loader_samples_per_s=round(loader_rate), per_core_samples_per_s=round(per_core_rate, 1),
                                 per_core_basis="samples per CPU-second of the DALI CPU loader process, measured",
                                 gpu_model_only=gpu_note, bound_by=bound if gpu else "loader (GPU rate not measured)"))
    return records


def run_rehearsal(ctx: BenchContext, scale: Scale, base_shards: Optional[Path] = None) -> list:
    records = selection_records(ctx, scale)
    reading, per_core = reading_records(ctx, scale, base_shards)
    return records + reading + projection_records(per_core)


def run(ctx: BenchContext) -> list:
    return run_rehearsal(ctx, QUICK if ctx.quick else FULL)
