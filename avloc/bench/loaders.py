"""Loader throughput: the reference folder loader against the shard loaders, side by side.

Variants (all on the same CPU cores: 2 DataLoader workers or 2 DALI threads each):
* ``folder (reference)``: frames/<id>.jpg at the source resolution (480x360, VGG-Sound's usual
  360p) + audio/<id>.wav (10 s, 16 kHz): per sample PIL decode, wav read, spectrogram;
* ``torch``: shards (frame stored at shorter side 256, spectrogram precomputed), webdataset +
  PIL in DataLoader workers;
* ``dali-cpu`` / ``dali-gpu``: the DALI pipelines (GPU: nvJPEG decode; skipped without CUDA).

Both data sets hold the same clips. Every measurement starts a fresh epoch iterator (so no
variant prefetches while another is timed) and pulls ``k`` training batches; samples/s is
k * batch / (time from the iterator's start to the k-th batch), start-up (worker fork or
pipeline build, also reported on its own) included; the batch latencies are the waits for
each batch, the first one counted from the iterator's start.
Run as ``python -m avloc.bench.loaders --out benchmarks/results`` to record the results files.
"""

from __future__ import annotations

import io
import json
import os
import time
import wave
from pathlib import Path

import numpy as np

from avloc.bench.core import BenchContext, Record, interleave, skipped, summarize

SCENARIO = "loaders"
LATENCY_SCENARIO = "loaders-latency"
WORKERS = 2
SOURCE_SIZE = (480, 360)


def _frame(i: int, size: tuple) -> np.ndarray:
    """A natural-looking frame: smooth colour field, a few blobs, mild sensor noise."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(i)
    w, h = size
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
    arr = np.asarray(small.filter(ImageFilter.GaussianBlur(3)), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(15, 70)
        arr[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    arr += rng.normal(0, 6, arr.shape)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _jpeg(img, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _audio(i: int, seconds: float = 10.0, sr: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(10_000 + i)
    t = np.arange(int(seconds * sr)) / sr
    x = 6000 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    return np.clip(x + rng.normal(0, 800, t.shape), -32768, 32767).astype(np.int16)


def build_data(root: Path, n: int, *, samples_per_shard: int = 256, log=print) -> tuple:
    """The same n clips as an EZ-VSL folder and as avloc shards. Returns (folder, shards dir)."""
    from PIL import Image

    from avloc import schema
    from avloc.spectrogram import fnac_spectrogram_from_samples
    from avloc.tools.shard_writer import ShardWriter, atomic_write_bytes

    folder, shards = root / "folder", root / "shards"
    if (shards / "dataset.json").is_file():
        return folder, shards
    log(f"[bench] writing {n} clips as a folder and as shards under {root}")
    (folder / "frames").mkdir(parents=True, exist_ok=True)
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    shards.mkdir(parents=True, exist_ok=True)
    entries, writer, in_shard = [], None, 0
    for i in range(n):
        key = schema.canonical_clip_id(f"bench{i:06d}", 10 * i)
        img = Image.fromarray(_frame(i, SOURCE_SIZE))
        (folder / "frames" / f"{key}.jpg").write_bytes(_jpeg(img))
        audio = _audio(i)
        with wave.open(str(folder / "audio" / f"{key}.wav"), "wb") as fh:
            fh.setnchannels(1)
            fh.setsampwidth(2)
            fh.setframerate(schema.SAMPLE_RATE)
            fh.writeframes(audio.tobytes())
        short = schema.FRAME_SHORT_SIDE
        stored = img.resize((round(img.width * short / img.height), short), Image.BICUBIC)
        spec, start, tiled = fnac_spectrogram_from_samples(audio, schema.SAMPLE_RATE)
        meta = schema.SampleMeta(key=key, clip_id=key, label=None, class_index=-1, split="train",
                                 source_path=f"{key}.mp4", clip_start=10.0 * i, duration=10.0, frame_time=5.0,
                                 fps=25.0, width=img.width, height=img.height, video_codec="h264", audio_codec="aac",
                                 source_sample_rate=16000, audio_seconds=10.0,
                                 window_start=start / schema.SAMPLE_RATE, flags=[])
        if writer is None:
            stem = schema.shard_stem("train", len(entries))
            writer = ShardWriter(shards / f"{stem}.tar")
        writer.write(key, schema.encode_sample(meta, _jpeg(stored, schema.JPEG_QUALITY), spec))
        in_shard += 1
        if in_shard == samples_per_shard or i == n - 1:
            writer.close()
            entries.append({"name": f"{stem}.tar", "samples": in_shard})
            atomic_write_bytes(shards / f"{stem}_stats.json", json.dumps({"samples": in_shard}).encode())
            writer, in_shard = None, 0
    summary = schema.dataset_summary(classes=[], counts={"train": n}, shards={"train": entries})
    atomic_write_bytes(shards / "dataset.json", json.dumps(summary, indent=1).encode())
    return folder, shards


class _Measure:
    """One variant at one batch size: each call runs a fresh epoch iterator for ``k`` batches."""

    def __init__(self, loader, k: int, batch_size: int):
        self.loader, self.k, self.batch_size = loader, k, batch_size
        self.epoch = 0
        self.gaps: list[float] = []
        self.startups: list[float] = []

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
        # from the iterator's start: loaders whose workers each build whole batches deliver them in
        # bunches, so first-to-last-batch timing would credit them with work done before the first one
        return self.k * self.batch_size / (stamps[-1] - t0)


def run(ctx: BenchContext) -> list:
    import torch

    from avloc.data import LoaderOptions, build_loader, dali_available

    torch.set_num_threads(1)
    n = 1024 if ctx.quick else 2048
    rounds, warmup = (3, 1) if ctx.quick else (5, 1)
    if ctx.data is not None and (Path(ctx.data) / "dataset.json").is_file():
        folder, shards = None, Path(ctx.data)  # the user's shards; no folder copy of them to compare with
    else:
        folder, shards = build_data(ctx.workdir / "loaders-data", n, log=ctx.log)
    cuda = torch.cuda.is_available()
    records: list[Record] = []
    for batch_size, k in ((256, 4), (64, 12)):
        size = f"batch {batch_size}"
        common = dict(mode="train", batch_size=batch_size, num_workers=WORKERS, seed=0)

        def measure(source, **options):
            return _Measure(build_loader(source, "train", LoaderOptions(**common, **options)), k, batch_size)

        variants = {}
        if folder is not None:
            variants["folder (reference)"] = measure(folder, backend="folder")
        else:
            reason = "skipped: --data is a shards folder (no frames/audio copy to time)"
            records.append(skipped(SCENARIO, "folder (reference)", size, reason, unit="samples/s", higher_is_better=True))
        variants["torch"] = measure(shards, backend="torch")
        if dali_available():
            variants["dali-cpu"] = measure(shards, backend="dali")
            if cuda:
                variants["dali-gpu"] = measure(shards, backend="dali", device="cuda")
        ctx.log(f"[bench] loaders {size}: {', '.join(variants)}; {rounds} rounds of {k} batches")
        results = interleave(variants, rounds=rounds, warmup=warmup,
                             on_round=lambda r, total: ctx.log(f"[bench]   round {r}/{total}"))
        for name, values in results.items():
            m = variants[name]
            base = name.startswith("folder")
            records.append(summarize(SCENARIO, size, name, values, unit="samples/s", higher_is_better=True,
                                     baseline=base, workers=WORKERS, batches_per_round=k,
                                     startup_s_median=float(np.median(m.startups[warmup:]))))
            records.append(summarize(LATENCY_SCENARIO, size, name, [g * 1000 for g in m.gaps[warmup * k:]],
                                     unit="ms/batch", higher_is_better=False, baseline=base, spread="p50/p99"))
        for name in ("dali-cpu", "dali-gpu"):
            if name not in variants:
                reason = "skipped: no CUDA" if name == "dali-gpu" and dali_available() else "skipped: DALI not installed"
                records.append(skipped(SCENARIO, name, size, reason, unit="samples/s", higher_is_better=True))
                records.append(skipped(LATENCY_SCENARIO, name, size, reason, unit="ms/batch", higher_is_better=False))
    return records


def main(argv=None) -> None:
    import argparse
    import shutil
    import tempfile

    from avloc.bench.core import append_jsonl, fill_ratios, machine_info, table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default=None, help="results file stem (default loaders-cpu / loaders-gpu)")
    parser.add_argument("--full", action="store_true")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="avloc-bench-loaders-"))
    load_before = os.getloadavg()[0]
    try:
        ctx = BenchContext(quick=not args.full, workdir=workdir)
        records = fill_ratios(run(ctx))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    machine = machine_info()
    stem = args.name or ("loaders-gpu" if machine["gpu"] else "loaders-cpu")
    append_jsonl(records, args.out / f"{stem}.jsonl", machine)
    text = table(records)
    md = args.out / f"{stem}.md"
    header = (f"# Loader throughput ({machine['time']})\n\n"
              f"machine: {machine['cpu']}, {machine['cores_usable']} usable cores, GPU: {machine['gpu'] or 'none'}; "
              f"commit {machine['commit']}; torch {machine['versions']['torch']}, "
              f"DALI {machine['versions']['nvidia-dali-cuda120']}, webdataset {machine['versions']['webdataset']}\n\n"
              f"Every variant uses {WORKERS} DataLoader workers / DALI threads on the same cores. Training-mode "
              f"batches (resize, crop, flip, SpecAugment). samples/s = k batches per round / time to the k-th "
              f"batches from the iterator's start (start-up included); latency = wait for each batch "
              f"(p50 value, p50..p99 spread). "
              f"1-minute load average before / after the run: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
              f"(a shared machine: absolute numbers move with the load, ratios within one run less so).\n\n")
    goal_lines = []
    for size in ("batch 256", "batch 64"):
        rows = [r for r in records if r.scenario == SCENARIO and r.size == size and not r.baseline and r.ratio_to_baseline]
        if rows:
            best = max(rows, key=lambda r: r.ratio_to_baseline)
            verdict = "met" if best.ratio_to_baseline >= 5 else "not met"
            goal_lines.append(f"* {size}: fastest shard loader {best.variant}, {best.value:.0f} samples/s = "
                              f"{best.ratio_to_baseline:.2f}x the folder loader (goal >= 5x on 2 CPU cores: {verdict})")
    tmp = md.with_name(md.name + ".tmp")
    tmp.write_text(header + text + "\n\n" + "\n".join(goal_lines) + "\n")
    os.replace(tmp, md)
    print(text)


if __name__ == "__main__":
    main()
