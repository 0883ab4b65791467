"""Loader throughput: the reference folder loader against the shard loaders, side by side.

Variants (all on the same CPU cores: 2 DataLoader workers or 2 DALI threads each):
* ``folder (reference)``: frames/<id>.jpg at the source resolution (480x360, VGG-Sound's usual
  360p) + audio/<id>.wav (10 s, 16 kHz), as the public recipe extracts them: per sample PIL
  decode, wav read, spectrogram;
* ``torch``: shards built by ``run_shard`` (frame stored at the training scale, shorter side 246,
  spectrogram precomputed), read through the shard indexes, libjpeg-turbo decoding in DataLoader workers;
* ``dali-cpu`` / ``dali-gpu``: the DALI pipelines (GPU: nvJPEG decode; skipped without CUDA);
* ``dali-cpu, 256 frames``: the DALI CPU pipeline on shards of the earlier layout (frames stored
  at 256, resized every epoch), for comparison.

Both data sets hold the same clips: a few synthetic clips (``avloc synth``, with sensor noise so
the frames compress like footage) are extracted by the recipe under many ids (hard links), and
sharded by ``run_shard`` then copied under as many keys (avloc.bench.replicate). Every measurement starts a fresh epoch iterator (so
no variant prefetches while another is timed) and pulls ``k`` training batches; samples/s is
k * batch / (time from the iterator's start to the k-th batch), start-up (worker fork or
pipeline build, also reported on its own) included; the batch latencies are the waits for
each batch, the first one counted from the iterator's start.

Because these epochs are short (2,048-4,096 samples), start-up weighs on that rate far more than on
a 144k-sample epoch. ``loaders-steady`` reports the rate over the second half of each round's
batches: (k/2) batches / (time of batch k - time of batch k/2). With k/2 a multiple of the workers,
both stamps fall at the same phase of the workers' turns and of DALI's prefetch queue, so the
start-up and the first fill cancel out. It can flatter DALI a little: its reader fills the shuffle
buffer before the first batch, so the second half carries less reading than its share. Over 4 (quick)
or 8 batches it is also noisy: compare it across runs with care. The rehearsal's long DALI run is
the sustained reference.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from avloc.bench.harness import BenchContext, Record, skipped, summarize
from avloc.utils.progress import log

SCENARIO = "loaders"
LATENCY_SCENARIO = "loaders-latency"
STEADY_SCENARIO = "loaders-steady"
WORKERS = 2
SOURCE_SIZE = (480, 360)
UNIQUE_CLIPS = 16
LEGACY_VARIANT = "dali-cpu, 256 frames (earlier shard layout: resize every epoch)"


def build_data(root: Path, n: int, *, unique: int = UNIQUE_CLIPS, samples_per_shard: int = 256,
               progress: bool = False) -> tuple:
    """The same n clips as an EZ-VSL folder and as avloc shards. Returns (folder, shards dir, legacy shards
    dir): the shards store frames at the training scale (the default), the legacy ones at 256."""
    from avloc import schema
    from avloc.bench.replicate import link_or_copy, replicate_shards
    from avloc.bench.shard import baseline_recipe
    from avloc.tools.sharding import ShardConfig, run_shard
    from avloc.tools.synth import generate_clips
    from avloc.utils.system import usable_cores

    folder, shards, legacy = root / "folder", root / "shards", root / "shards-256"
    if (shards / "dataset.json").is_file() and (legacy / "dataset.json").is_file():
        return folder, shards, legacy
    unique = min(unique, n)
    log(f"bench: loaders: {unique} synthetic clips as {n} clips, sharded and extracted under {root}")
    # fps only shapes the video stream, which neither loader reads beyond the centre frame
    synth = generate_clips(root / "synth", unique, seed=0, duration=10.0, fps=5, width=SOURCE_SIZE[0],
                           height=SOURCE_SIZE[1], frame_noise=6, test_fraction=0.0, workers=usable_cores(),
                           progress=progress)
    sources = [Path(it["path"]) for it in synth.items]
    baseline_recipe(sources, root / "extracted", usable_cores())
    for sub in (folder / "frames", folder / "audio"):
        sub.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        key = schema.canonical_clip_id(f"bench{i:06d}", 10 * i)
        src = sources[i % unique]
        link_or_copy(root / "extracted" / "frames" / f"{src.stem}.jpg", folder / "frames" / f"{key}.jpg")
        link_or_copy(root / "extracted" / "audio" / f"{src.stem}.wav", folder / "audio" / f"{key}.wav")
    # the unique clips sharded by run_shard, then copied under n keys (every sample a real shard sample)
    for out, frame_size in ((shards, schema.FRAME_SHORT_SIDE), (legacy, schema.LEGACY_FRAME_SHORT_SIDE)):
        unique_shards = root / f"unique-{frame_size}"
        run_shard(ShardConfig(clips=synth.clips_dir, out=unique_shards, samples_per_shard=unique,
                              decoder="pyav", workers=usable_cores(), frame_size=frame_size, progress=progress))
        replicate_shards(unique_shards, out, n, samples_per_shard=samples_per_shard)
    return folder, shards, legacy


class _Measure:
    """One variant at one batch size: each call runs a fresh epoch iterator for ``k`` batches."""

    def __init__(self, loader, k: int, batch_size: int):
        self.loader, self.k, self.batch_size = loader, k, batch_size
        self.epoch = 0
        self.gaps: list[float] = []
        self.startups: list[float] = []
        self.steady: list[float] = []

    def __call__(self) -> float:
        self.loader.set_epoch(self.epoch)
        self.epoch += 1
        t0 = time.perf_counter()
        it = iter(self.loader)
        stamps = []
        for _ in range(self.k):
            batch = next(it)
            if batch["image"].is_cuda:
                import torch

                torch.cuda.synchronize()
            stamps.append(time.perf_counter())
        it.close()  # stops worker processes / DALI threads so they do not run while another variant is timed
        del it
        getattr(self.loader, "close", lambda: None)()
        self.startups.append(stamps[0] - t0)
        self.gaps.extend(np.diff([t0] + stamps).tolist())
        half = self.k // 2
        self.steady.append(half * self.batch_size / (stamps[-1] - stamps[self.k - half - 1]))
        # from the iterator's start: loaders whose workers each build whole batches deliver them in
        # bunches, so first-to-last-batch timing would credit them with work done before the first one
        return self.k * self.batch_size / (stamps[-1] - t0)


def run(ctx: BenchContext) -> list:
    import torch

    from avloc.data import LoaderOptions, build_loader, dali_available

    torch.set_num_threads(1)
    n = 2048 if ctx.quick else 4096
    rounds, warmup = (3, 1) if ctx.quick else (5, 1)
    sizes = ((256, 8), (64, 16)) if ctx.quick else ((256, 16), (64, 32))
    if ctx.shards is not None:
        folder, shards, legacy = None, Path(ctx.shards), None  # the user's shards; no folder copy of them
    else:
        folder, shards, legacy = build_data(ctx.workdir / "loaders-data", n, progress=ctx.progress)
    cuda = torch.cuda.is_available()
    records: list[Record] = []
    for batch_size, k in sizes:
        size = f"batch {batch_size}"
        common = dict(mode="train", batch_size=batch_size, num_workers=WORKERS, seed=0)

        def measure(source, **options):
            return _Measure(build_loader(source, "train", LoaderOptions(**common, **options)), k, batch_size)

        variants = {}
        if folder is not None:
            variants["folder (reference)"] = measure(folder, backend="folder")
        else:
            reason = "skipped: --shards given (no frames/audio copy of them to time)"
            for scenario in (SCENARIO, STEADY_SCENARIO):
                records.append(skipped(scenario, "folder (reference)", size, reason, unit="samples/s", higher_is_better=True))
        variants["torch"] = measure(shards, backend="torch")
        if dali_available():
            variants["dali-cpu"] = measure(shards, backend="dali")
            if legacy is not None:
                variants[LEGACY_VARIANT] = measure(legacy, backend="dali")
            if cuda:
                variants["dali-gpu"] = measure(shards, backend="dali", device="cuda")
        frame = {name: m.loader.shards.frame_short_side for name, m in variants.items() if hasattr(m.loader, "shards")}
        log(f"bench: loaders {size}: {', '.join(variants)}; {rounds} rounds of {k} batches")
        results = ctx.interleave(variants, rounds=rounds, warmup=warmup, desc=f"bench loaders {size}")
        for name, values in results.items():
            m = variants[name]
            base = name.startswith("folder")
            records.append(summarize(SCENARIO, size, name, values, unit="samples/s", higher_is_better=True,
                                     baseline=base, workers=WORKERS, batches_per_round=k,
                                     stored_frame_short_side=frame.get(name),
                                     startup_s_median=float(np.median(m.startups[warmup:]))))
            records.append(summarize(LATENCY_SCENARIO, size, name, [g * 1000 for g in m.gaps[warmup * k:]],
                                     unit="ms/batch", higher_is_better=False, baseline=base, spread="p50/p99"))
            records.append(summarize(STEADY_SCENARIO, size, name, m.steady[warmup:], unit="samples/s",
                                     higher_is_better=True, baseline=base, workers=WORKERS, batches_per_round=k // 2))
        for name in ("dali-cpu", "dali-gpu"):
            if name not in variants:
                reason = "skipped: no CUDA" if name == "dali-gpu" and dali_available() else "skipped: DALI not installed"
                records.append(skipped(SCENARIO, name, size, reason, unit="samples/s", higher_is_better=True))
                records.append(skipped(LATENCY_SCENARIO, name, size, reason, unit="ms/batch", higher_is_better=False))
                records.append(skipped(STEADY_SCENARIO, name, size, reason, unit="samples/s", higher_is_better=True))
    return records
