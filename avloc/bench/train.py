"""Training throughput: end to end (shards -> loader -> step) vs the same model fed from memory.

Variants, measured interleaved in one process on the same Trainer (same model, optimiser, device,
precision):
* ``model-only (batches in memory)`` (baseline): the step alone, cycling over batches that were
  read once and kept on the device: the bound the input pipeline can at best reach;
* ``end-to-end (loader + step)``: the real loader feeding the step (its background workers keep
  running between measurements, as in training).
Each measurement is ``steps`` optimiser steps -> samples/s. The end-to-end data-wait fraction
(time blocked waiting for the next batch / wall time) is reported as its own record.

``python -m avloc.bench.train --quality OUT`` runs the quality benchmark instead: synthetic
clips -> shards with a val split and boxes -> a short training -> validation AP50/AUC next to
the trivial baselines, with the curve (PNG) and a markdown summary.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

from avloc.bench.core import BenchContext, interleave, skipped, summarize

SCENARIO = "train"


def _shards(ctx: BenchContext, n: int) -> Path:
    if ctx.data is not None and (Path(ctx.data) / "dataset.json").is_file():
        return Path(ctx.data)
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
    ctx.log(f"[bench] train: {size}, device {trainer.device}, precision {trainer.precision}, "
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
    results = interleave(variants, rounds=s["rounds"], warmup=1,
                         on_round=lambda r, n: ctx.log(f"[bench] train round {r}/{n}"))
    wait_fractions = wait_fractions[1:]  # drop the warm-up call
    common = dict(load_average_1min=round(os.getloadavg()[0], 2), cores=os.cpu_count(), device=str(trainer.device), precision=trainer.precision, loader=trainer.loader.backend,
                  kernel=trainer.kernel, steps_per_measurement=s["steps"], num_workers=cfg.num_workers)
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


# ---------------------------------------------------------------------------------------- quality

def quality(out: Path, *, n_clips: int = 960, n_classes: int = 8, seed: int = 2, distractor_looks: str = "silent",
            sets=(), log=print) -> dict:
    """Synthetic clips -> shards (val split + boxes) -> short CPU training; returns the summary."""
    from avloc.tools.sharding import ShardConfig, run_shard
    from avloc.tools.synth import generate_clips
    from avloc.training.config import build_config
    from avloc.training.loop import run_training

    out = Path(out)
    t0 = time.perf_counter()
    # Every scene shows the sounding object plus 2-3 distractors wearing silent looks (classes
    # outside the set), so an image matches only its own class's sound.
    clips = generate_clips(out / "clips", n_clips, seed=seed, n_classes=n_classes, duration=4.0, width=192,
                           height=144, workers=2, test_fraction=0.0, distractor_looks=distractor_looks)
    shards = out / "shards"
    run_shard(ShardConfig(clips=clips.clips_dir, out=shards, csv=clips.csv_path, boxes=clips.boxes_path,
                          val_fraction=0.2, samples_per_shard=64, frame_size=160, workers=2, progress=False))
    prep_s = time.perf_counter() - t0
    cfg = build_config(None, list(QUALITY_SETS) + list(sets))
    t1 = time.perf_counter()
    summary = run_training(shards, out / "run", config=cfg, resume=(out / "run" / "config.yaml").exists())
    summary["train_seconds"] = time.perf_counter() - t1
    summary["prep_seconds"] = prep_s
    return summary


# The recipe's values except: smaller batch and image, no ImageNet weights (no download), no visual
# dropout (a from-scratch run of a few hundred steps) and SpecAugment masks filled with silence
# instead of zero (with zero fill the from-scratch audio encoder collapses on these clips; see
# benchmarks/results/train-quality-cpu.md). These are the settings of the recorded CPU run.
QUALITY_SETS = ("batch_size=16", "image_size=128", "visual_weights=none", "visual_dropout=0", "epochs=10",
                "warmup_epochs=3", "lr=1e-4", "num_workers=1", "loader=torch", "log_every=3", "checkpoint_every=30",
                "val_batch_size=43", "val_at_start=true", "progress=false", "spec_mask_fill=silence")


def plot_curves(run_dir: Path, png: Path) -> None:
    """Training loss and validation AP50/AUC (model vs baselines) against optimiser steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from avloc.training.logs import read_metrics

    rows = read_metrics(Path(run_dir) / "metrics.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "val"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([r["step"] for r in train], [r["contrastive"] for r in train], label="contrastive")
    for term in ("fns1", "tns", "fns2"):
        ax1.plot([r["step"] for r in train], [100 * r[term] for r in train], label=f"100 x {term}", lw=0.8)
    ax1.set_xlabel("optimiser step")
    ax1.set_title("training loss terms")
    ax1.legend(fontsize=8)
    steps = [r["step"] for r in val]
    for key, label, style in (("val_ap50", "model AP50", "-o"), ("val_auc", "model AUC", "-s"),
                              ("baseline_centre_ap50", "centre prior AP50", "--x"),
                              ("baseline_whole_ap50", "whole image AP50", ":+"),
                              ("baseline_centre_auc", "centre prior AUC", "-.d"),
                              ("val_retrieval_a2i", "audio->image top-1", "-^")):
        if val and key in val[0]:
            ax2.plot(steps, [r[key] for r in val], style, label=label, ms=4)
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("optimiser step")
    ax2.set_title("validation (held-out val split)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def quality_table(run_dir: Path) -> str:
    """Markdown rows: per validation, the model's AP50/AUC next to the trivial baselines."""
    from avloc.training.logs import read_metrics

    rows = [r for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r["kind"] == "val"]
    lines = ["| epoch | step | samples seen | val AP50 (cIoU>=0.5) | val AUC | mean cIoU | centre prior AP50 / AUC "
             "| whole image AP50 / AUC | audio->image top-1 (chance) | val contrastive |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        epoch = str(r["epoch"] + 1) if r["epoch"] >= 0 else "0 (untrained)"
        lines.append(f"| {epoch} | {r['step']} | {r['samples_seen']} | {r.get('val_ap50', float('nan')):.3f} "
                     f"| {r.get('val_auc', float('nan')):.3f} | {r.get('val_mean_ciou', float('nan')):.3f} "
                     f"| {r.get('baseline_centre_ap50', float('nan')):.3f} / {r.get('baseline_centre_auc', float('nan')):.3f} "
                     f"| {r.get('baseline_whole_ap50', float('nan')):.3f} / {r.get('baseline_whole_auc', float('nan')):.3f} "
                     f"| {r.get('val_retrieval_a2i', float('nan')):.3f} ({r.get('val_retrieval_chance', float('nan')):.3f}) "
                     f"| {r.get('val_contrastive', float('nan')):.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quality", type=Path, help="work folder for the quality benchmark")
    parser.add_argument("--clips", type=int, default=960)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--distractors", choices=["silent", "class"], default="silent")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--png", type=Path, default=None)
    parser.add_argument("--table", type=Path, default=None, help="print the validation table of this run folder")
    parser.add_argument("--data", type=Path, default=None, help="existing shards folder for the throughput run")
    parser.add_argument("--full", action="store_true", help="throughput: larger sizes and more rounds")
    parser.add_argument("--out", type=Path, default=None, help="throughput: results folder (md + jsonl appended)")
    args = parser.parse_args(argv)
    if args.table:
        print(quality_table(args.table))
        if args.png:
            plot_curves(args.table, args.png)
        return 0
    if args.quality:
        summary = quality(args.quality, n_clips=args.clips, n_classes=args.classes, distractor_looks=args.distractors,
                          sets=args.sets)
        if args.png:
            plot_curves(args.quality / "run", args.png)
        print(json.dumps(summary, indent=1, default=str))
        return 0
    from avloc.bench.core import table

    import torch

    from avloc.bench.core import fill_ratios

    ctx = BenchContext(quick=not args.full, data=args.data, device="cuda" if torch.cuda.is_available() else "cpu")
    records = fill_ratios(run(ctx))
    print(table(records))
    if args.out:
        write_throughput_results(records, args.out, ctx.device)
    return 0


THROUGHPUT_INTRO = """# Training throughput

End-to-end training samples/s (shards -> loader -> FNAC step: forward, fnac_losses, backward, Adam) vs
the same Trainer fed batches kept in memory (the model-only bound; the baseline). Interleaved
rounds in one process (avloc.bench.core.interleave); each measurement = a few optimiser steps.
The data-wait fraction is the share of wall time the step loop spent blocked on the loader.
Produced by `python -m avloc.bench.train [--data SHARDS] [--full] --out benchmarks/results`
(or `avloc bench-throughput --scenario train`). Shared, noisy machines: the 1-minute load
average at measurement time is in each record's extra; compare ratios within one run only.
"""


def write_throughput_results(records: list, out: Path, device: str) -> None:
    from avloc.bench.core import append_jsonl, machine_info, table

    out = Path(out)
    machine = machine_info()
    kind = "gpu" if device == "cuda" else "cpu"
    append_jsonl(records, out / f"train-throughput-{kind}.jsonl", machine)
    md = out / f"train-throughput-{kind}.md"
    old = md.read_text() if md.is_file() else THROUGHPUT_INTRO
    head, _, rest = old.partition("\n## ")
    extra = next((r.extra for r in records if r.extra), {})
    section = (f"## {machine['time']}\n\nmachine: {machine['cpu']}, {machine['cores_usable']} usable cores, GPU: "
               f"{machine['gpu'] or 'none'}; commit {machine['commit']}; torch {machine['versions']['torch']}; "
               f"load average (1 min) {extra.get('load_average_1min')}; loader {extra.get('loader')}, "
               f"precision {extra.get('precision')}, kernel {extra.get('kernel')}\n\n{table(records)}\n")
    md.write_text(head.rstrip("\n") + "\n\n" + section + ("\n## " + rest if rest else ""))


if __name__ == "__main__":
    raise SystemExit(main())
