"""Training throughput: end to end (shards -> loader -> step) vs the same model fed from memory.

Variants, measured interleaved in one process on the same Trainer (same model, optimiser, device,
precision):
* ``model-only (batches in memory)`` (baseline): the step alone, cycling over batches that were
  read once and kept on the device: the bound the input pipeline can at best reach;
* ``end-to-end (loader + step)``: the real loader feeding the step (its background workers keep
  running between measurements, as in training).
Each measurement is ``steps`` optimiser steps -> samples/s. The end-to-end data-wait fraction
(time blocked waiting for the next batch / wall time) is reported as its own record.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

from avloc.bench.harness import BenchContext, load_average, skipped, summarize
from avloc.utils.progress import log

SCENARIO = "train"


def _shards(ctx: BenchContext, n: int) -> Path:
    if ctx.shards is not None:
        return Path(ctx.shards)
    return ctx.synthetic_shards(n, duration=4.0, width=192, height=144, samples_per_shard=32)


def bench_settings(ctx: BenchContext) -> dict:
    gpu = ctx.device == "cuda"
    if gpu:
        return {"clips": 512, "batch_size": 128, "image_size": 224, "steps": 8, "rounds": 5}
    if ctx.quick:
        return {"clips": 64, "batch_size": 8, "image_size": 96, "steps": 2, "rounds": 3}
    return {"clips": 192, "batch_size": 32, "image_size": 160, "steps": 4, "rounds": 5}


def run(ctx: BenchContext) -> list:
    import torch

    from avloc.training.config import build_config
    from avloc.training.trainer import Trainer

    s = bench_settings(ctx)
    shards = _shards(ctx, s["clips"])
    size = f"B={s['batch_size']} S={s['image_size']}"
    cfg = build_config(None, [f"batch_size={s['batch_size']}", f"image_size={s['image_size']}", "visual_weights=none",
                              "val_every=0", "progress=false", "warmup_epochs=0", "epochs=1000",
                              f"device={ctx.device}"])
    trainer = Trainer.build(cfg, shards)
    log(f"bench: train: {size}, device {trainer.device}, precision {trainer.precision}, "
        f"loader {trainer.loader.backend}, kernel {trainer.kernel}, {len(trainer.loader)} steps/epoch")
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)

    def epochs():
        for epoch in itertools.count():
            trainer.loader.set_epoch(epoch)
            yield from trainer.loader

    stream = epochs()
    memory = [next(stream) for _ in range(min(4, len(trainer.loader)))]
    wait_fractions = []

    def from_memory() -> float:
        sync()
        t0 = time.perf_counter()
        for i in range(s["steps"]):
            trainer.train_step(memory[i % len(memory)], epoch=1)
        sync()
        return s["steps"] * cfg.batch_size / (time.perf_counter() - t0)

    def end_to_end() -> float:
        sync()
        t0 = time.perf_counter()
        waited = 0.0
        for _ in range(s["steps"]):
            tw = time.perf_counter()
            batch = next(stream)
            waited += time.perf_counter() - tw
            trainer.train_step(batch, epoch=1)
        sync()
        elapsed = time.perf_counter() - t0
        wait_fractions.append(waited / elapsed)
        return s["steps"] * cfg.batch_size / elapsed

    variants = {"model-only (batches in memory)": from_memory, "end-to-end (loader + step)": end_to_end}
    results = ctx.interleave(variants, rounds=s["rounds"], warmup=1, desc="bench train")
    wait_fractions = wait_fractions[1:]  # drop the warm-up call
    common = dict(load_average_1min=load_average(), cores=os.cpu_count(), device=str(trainer.device),
                  precision=trainer.precision, loader=trainer.loader.backend, kernel=trainer.kernel,
                  steps_per_measurement=s["steps"], num_workers=cfg.num_workers)
    records = [
        summarize(SCENARIO, size, "model-only (batches in memory)", results["model-only (batches in memory)"],
                  unit="samples/s", higher_is_better=True, baseline=True, **common),
        summarize(SCENARIO, size, "end-to-end (loader + step)", results["end-to-end (loader + step)"],
                  unit="samples/s", higher_is_better=True, **common),
        # its own scenario name so no ratio to the samples/s baseline is computed for it
        summarize(f"{SCENARIO} (data wait)", size, "end-to-end data-wait fraction", wait_fractions, unit="fraction",
                  higher_is_better=False, **common),
    ]
    if ctx.device != "cuda":
        records.append(skipped(SCENARIO, "end-to-end (loader + step)", "GPU", "skipped: no CUDA",
                               unit="samples/s", higher_is_better=True))
    return records
