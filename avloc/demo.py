"""The end-to-end demo behind `avloc demo`: synth -> shard -> train -> evaluate, on CPU in minutes.

Every stage calls the same library function as its command, writes into one folder, and
resumes when run again (finished clips, shards and training steps are kept). The clips are the
shortcut-free synthetic set (every object in a frame looks like a class of the set, one of them
sounds), training uses the ``from-scratch`` preset, and the final table shows the model with its
real audio beside the same model with silent and with other-class audio, and the trivial
baselines, so the score says how much of it comes from the sound.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import List

from avloc.utils.options import CommandOptions, range_problem, writable_folder_problems
from avloc.utils.progress import log
from avloc.utils.system import usable_cores

LOADER_CHOICES = ("auto", "dali", "torch")


@dataclasses.dataclass(frozen=True)
class DemoOptions(CommandOptions):
    """The CPU-sized default (measured in benchmarks/results/demo-cpu.md): short clips, small frames,
    the ``from-scratch`` training preset (no ImageNet weights, nothing is downloaded)."""

    out: Path = Path("demo")
    n_clips: int = 960
    classes: int = 8
    duration: float = 4.0
    width: int = 192
    height: int = 144
    val_fraction: float = 0.15
    eval_items: int = 100
    epochs: int = 6
    image_size: int = 160  # the from-scratch preset's; a 10x10 map with its three-stage trunk
    loader: str = "auto"
    decoder: str = "pyav"
    seed: int = 0
    workers: int = 0  # 0 = all usable cores
    progress: bool = True

    def problems(self) -> List[str]:
        found = range_problem("--n-clips", self.n_clips, 8) + range_problem("--epochs", self.epochs, 1)
        found += range_problem("--image-size", self.image_size, 64)
        if self.loader not in LOADER_CHOICES:
            found.append(f"--loader must be one of {', '.join(LOADER_CHOICES)}; got {self.loader!r}")
        return found + writable_folder_problems("--out", self.out)

    def train_overrides(self) -> list:
        from avloc.training.config import PRESETS, from_scratch_precision

        warmup = min(PRESETS["from-scratch"]["warmup_epochs"], self.epochs)
        return [f"epochs={self.epochs}", f"warmup_epochs={warmup}", f"image_size={self.image_size}",
                f"loader={self.loader}", f"progress={str(self.progress).lower()}", "val_at_start=true",
                f"precision={from_scratch_precision()}"]


def _synth_and_shard(opts: DemoOptions, workers: int, timings: dict) -> dict:
    from avloc.data.augment import resize_shorter_size
    from avloc.tools.sharding import ShardConfig, run_shard
    from avloc.tools.synth import generate_clips

    out = Path(opts.out)
    t0 = time.perf_counter()
    log(f"[1/4] synthesising {opts.n_clips} clips ({opts.duration:g} s, {opts.width}x{opts.height}, "
        f"{opts.classes} classes, shortcut-free)")
    clips = generate_clips(out / "synth", opts.n_clips, seed=opts.seed, n_classes=opts.classes,
                           duration=opts.duration, width=opts.width, height=opts.height, workers=workers,
                           progress=opts.progress)
    timings["synth_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    log(f"[2/4] sharding into {out / 'shards'} (val fraction {opts.val_fraction}, decoder {opts.decoder})")
    report = run_shard(ShardConfig(clips=clips.clips_dir, out=out / "shards", csv=clips.csv_path,
                                   boxes=clips.boxes_path, val_fraction=opts.val_fraction, samples_per_shard=64,
                                   seed=opts.seed, workers=workers, decoder=opts.decoder, progress=opts.progress,
                                   frame_size=resize_shorter_size(opts.image_size)))  # training scale: crop + flip only
    timings["shard_s"] = time.perf_counter() - t0
    return report


def _train(opts: DemoOptions, timings: dict) -> dict:
    from avloc.training.config import build_config
    from avloc.training.loop import run_training

    out = Path(opts.out)
    t0 = time.perf_counter()
    run_dir = out / "run"
    train_cfg = build_config(None, opts.train_overrides(), preset="from-scratch")
    resume = (run_dir / "checkpoints" / "latest.pt").is_file()
    log(f"[3/4] training FNAC, preset from-scratch ({'resuming' if resume else 'from random weights'}, precision "
        f"{train_cfg.precision}) into {run_dir}")
    summary = run_training(out / "shards", run_dir, config=train_cfg, resume=resume)
    timings["train_s"] = time.perf_counter() - t0
    return summary


def _evaluate(opts: DemoOptions, workers: int, timings: dict) -> dict:
    from avloc.evaluation.options import EvaluateOptions
    from avloc.evaluation.runner import evaluate
    from avloc.tools.synth import write_benchmark
    from avloc.tools.synth.layouts import MANIFEST_NAME

    out = Path(opts.out)
    t0 = time.perf_counter()
    bench_root = out / "benchmarks" / "vggss"
    if not (bench_root / "vggss.json").is_file():
        write_benchmark(bench_root, "vggss", opts.eval_items, seed=opts.seed + 1, n_classes=opts.classes,
                        workers=workers)
    checkpoint = out / "run" / "checkpoints" / "best.pt"
    if not checkpoint.is_file():
        checkpoint = out / "run" / "checkpoints" / "latest.pt"
    log(f"[4/4] evaluating {checkpoint.name} on a synthetic VGG-SS copy ({opts.eval_items} items): real, silent and "
        "other-class audio, with the published protocol")
    results = evaluate(EvaluateOptions(benchmark="vggss", data_root=bench_root, checkpoint=checkpoint,
                                       out=out / "eval-vggss", device="auto", progress=opts.progress))
    timings["evaluate_s"] = time.perf_counter() - t0
    # what a blind pick among each frame's objects scores: the level the silent/other-class rows sit at
    manifest = json.loads((bench_root / MANIFEST_NAME).read_text())
    results["object_prior"] = manifest.get("object_prior")
    return results


def run_demo(opts: DemoOptions) -> dict:
    """Run (or resume) every stage into ``opts.out``; returns {"summary", "results"}."""
    opts = opts.checked()
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = opts.workers or usable_cores()
    timings: dict = {}
    shard_report = _synth_and_shard(opts, workers, timings)
    train_summary = _train(opts, timings)
    results = _evaluate(opts, workers, timings)
    summary = {"out": str(out), "timings": timings, "shard": shard_report, "train": train_summary,
               "evaluate": {k: results[k] for k in ("rows", "counts", "audio_controls", "object_prior") if k in results}}
    from avloc.utils.atomic import atomic_write_text

    atomic_write_text(out / "demo_summary.json", json.dumps(summary, indent=1, default=str))
    return {"summary": summary, "results": results}
