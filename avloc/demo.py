"""The end-to-end demo behind `avloc demo`: synth -> shard -> train -> evaluate, on CPU in minutes.

Every stage calls the same library function as its command, writes into one folder, and
resumes when run again (finished clips, shards and training steps are kept).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Callable


@dataclasses.dataclass
class DemoConfig:
    """A CPU-sized version of the measured quality run (benchmarks/results/train-quality-cpu.md):
    short clips, small frames, batch 16, no ImageNet weights (nothing is downloaded), so no
    visual dropout, and SpecAugment masks filled with silence (zero fill makes the from-scratch
    audio encoder collapse on these clips)."""

    out: Path
    clips: int = 960
    classes: int = 8
    duration: float = 4.0
    width: int = 192
    height: int = 144
    val_fraction: float = 0.15
    eval_items: int = 100
    epochs: int = 5
    warmup_epochs: int = 3
    batch_size: int = 16
    image_size: int = 128
    lr: float = 1e-4
    visual_dropout: float = 0.0
    spec_mask_fill: str = "silence"
    loader: str = "auto"
    decoder: str = "pyav"
    seed: int = 0
    workers: int = 0  # 0 = all usable cores
    progress: bool = True


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_demo(cfg: DemoConfig, log: Callable[[str], None] = print) -> dict:
    from avloc.evaluation.options import EvaluateOptions
    from avloc.evaluation.runner import evaluate
    from avloc.tools.sharding import ShardConfig, run_shard
    from avloc.tools.synth import generate_clips, write_benchmark
    from avloc.training.config import build_config
    from avloc.training.loop import run_training

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = cfg.workers or _cores()
    timings = {}

    t0 = time.perf_counter()
    log(f"[1/4] synthesising {cfg.clips} clips ({cfg.duration:g} s, {cfg.width}x{cfg.height}, {cfg.classes} classes)")
    clips = generate_clips(out / "synth", cfg.clips, seed=cfg.seed, n_classes=cfg.classes, duration=cfg.duration,
                           width=cfg.width, height=cfg.height, workers=workers, progress=cfg.progress)
    timings["synth_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log(f"[2/4] sharding into {out / 'shards'} (val fraction {cfg.val_fraction}, decoder {cfg.decoder})")
    shard_report = run_shard(ShardConfig(clips=clips.clips_dir, out=out / "shards", csv=clips.csv_path,
                                         boxes=clips.boxes_path, val_fraction=cfg.val_fraction,
                                         samples_per_shard=64, seed=cfg.seed, workers=workers, decoder=cfg.decoder,
                                         progress=cfg.progress))
    timings["shard_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    run_dir = out / "run"
    overrides = [f"epochs={cfg.epochs}", f"warmup_epochs={min(cfg.warmup_epochs, cfg.epochs)}",
                 f"batch_size={cfg.batch_size}", f"image_size={cfg.image_size}", f"lr={cfg.lr}", "visual_weights=none", f"loader={cfg.loader}",
                 f"visual_dropout={cfg.visual_dropout}", f"spec_mask_fill={cfg.spec_mask_fill}",
                 f"progress={str(cfg.progress).lower()}", "val_at_start=true"]
    train_cfg = build_config(None, overrides)
    resume = (run_dir / "checkpoints" / "latest.pt").is_file()
    log(f"[3/4] training FNAC ({'resuming' if resume else 'from scratch'}) into {run_dir}")
    train_summary = run_training(out / "shards", run_dir, config=train_cfg, resume=resume)
    timings["train_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bench_root = out / "benchmarks" / "vggss"
    if not (bench_root / "vggss.json").is_file():
        write_benchmark(bench_root, "vggss", cfg.eval_items, seed=cfg.seed + 1, n_classes=cfg.classes,
                        workers=workers)
    checkpoint = run_dir / "checkpoints" / "best.pt"
    if not checkpoint.is_file():
        checkpoint = run_dir / "checkpoints" / "latest.pt"
    log(f"[4/4] evaluating {checkpoint.name} on a synthetic VGG-SS copy ({cfg.eval_items} items) with the published protocol")
    results = evaluate(EvaluateOptions(benchmark="vggss", data_root=bench_root, checkpoint=checkpoint,
                                       out=out / "eval-vggss", device="auto", progress=cfg.progress))
    timings["evaluate_s"] = time.perf_counter() - t0

    summary = {"out": str(out), "timings": timings, "shard": shard_report, "train": train_summary,
               "evaluate": {k: results[k] for k in ("rows", "counts") if k in results}}
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return {"summary": summary, "results": results}
