"""Training quality on synthetic clips: does a short CPU training localise the sounding *sound*?

Shortcut-free synthetic clips (every object in a frame looks like a class of the set; one of them
sounds) -> shards with a val split and boxes (``run_shard``) -> a short training with the
``from-scratch`` preset (``run_training``; bf16 autocast where the CPU has it natively, as the demo
trains) -> validation AP50/AUC with the real audio, with
silent audio and with another class's audio, next to the trivial baselines (centre prior, whole
image, untrained model) scored on the same val maps, and the object prior (a blind pick among each
val frame's objects, from their true boxes), with the curves (PNG).

    python benchmarks/train_quality.py WORK --png benchmarks/results/train-quality-cpu.png
    python benchmarks/train_quality.py --table WORK/run        # the validation table of a run
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Optional

from avloc.evaluation.object_prior import clip_set_items, object_prior_ap50, prior_line

# The from-scratch preset (avloc.training.config.PRESETS) plus bookkeeping for a recorded run.
QUALITY_SETS = ("num_workers=1", "loader=torch", "log_every=3", "checkpoint_every=30", "val_batch_size=43",
                "val_at_start=true", "progress=false")


def quality(out: Path, *, n_clips: int = 960, n_classes: int = 8, seed: int = 2, distractor_looks: str = "class",
            sets=()) -> dict:
    """Synthetic clips -> shards (val split + boxes) -> short CPU training; returns the summary."""
    from avloc.data.augment import resize_shorter_size
    from avloc.tools.sharding import ShardConfig, run_shard
    from avloc.tools.synth import generate_clips
    from avloc.training.config import build_config, from_scratch_precision
    from avloc.training.loop import run_training

    out = Path(out)
    t0 = time.perf_counter()
    # Every scene shows the sounding object plus 1-3 distractors (mostly 2) wearing the set's other
    # classes' looks: only the audio says which object sounds.
    clips = generate_clips(out / "clips", n_clips, seed=seed, n_classes=n_classes, duration=4.0, width=192,
                           height=144, workers=2, test_fraction=0.0, distractor_looks=distractor_looks)
    # bf16 autocast where the CPU has it natively, as the demo trains (a --set precision=... overrides it)
    cfg = build_config(None, list(QUALITY_SETS) + [f"precision={from_scratch_precision()}"] + list(sets),
                       preset="from-scratch")
    shards = out / "shards"
    # frames stored at the run's training scale, int(1.1 x image_size): training only crops and flips
    run_shard(ShardConfig(clips=clips.clips_dir, out=shards, csv=clips.csv_path, boxes=clips.boxes_path,
                          val_fraction=0.2, samples_per_shard=64, frame_size=resize_shorter_size(cfg.image_size),
                          workers=2, progress=False))
    prep_s = time.perf_counter() - t0
    prior = val_object_prior(clips.clips_dir.parent / "synth.json", shards)
    print(prior_line(prior) + " on the val split: silent or other-class audio near 'random object' means "
          "the model finds objects but not which one sounds", flush=True)
    t1 = time.perf_counter()
    summary = run_training(shards, out / "run", config=cfg, resume=(out / "run" / "config.yaml").exists())
    summary["train_seconds"] = time.perf_counter() - t1
    summary["prep_seconds"] = prep_s
    summary["val_object_prior"] = prior
    return summary


def val_object_prior(synth_json: Path, shards: Path) -> dict:
    """AP50 of blind picks among each val frame's objects (true boxes): the level audio-control rows sit at."""
    import pyarrow.parquet as pq

    rows = pq.read_table(shards / "_manifest" / "manifest.parquet", columns=["clip_id", "split", "status"]).to_pylist()
    keys = [r["clip_id"] for r in rows if r["split"] == "val" and r["status"] == "ok"]
    return object_prior_ap50(clip_set_items(synth_json, keys))


def plot_curves(run_dir: Path, png: Path, object_prior: Optional[dict] = None) -> None:
    """Training loss and validation AP50 (model, audio controls, baselines and, when given, a blind pick
    among each val frame's objects) against optimiser steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from avloc.training.logs import read_metrics
    from avloc.utils.atomic import atomic_write_with

    rows = read_metrics(Path(run_dir) / "metrics.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    val = [r for r in rows if r["kind"] == "val"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot([r["step"] for r in train], [r["contrastive"] for r in train], label="contrastive")
    for term in ("fns1", "tns", "fns2"):
        ax1.plot([r["step"] for r in train], [100 * r[term] for r in train], label=f"100 x {term}", lw=0.8)
    if train:
        ax1.axhline(2 * math.log(_batch(run_dir)), color="grey", ls=":", lw=0.8,
                    label="chance (2 ln B)")
    ax1.set_xlabel("optimiser step")
    ax1.set_title("training loss terms")
    ax1.legend(fontsize=8)
    steps = [r["step"] for r in val]
    for key, label, style in (("val_ap50", "AP50, real audio", "-o"), ("val_silence_ap50", "AP50, silent audio", "--o"),
                              ("val_shuffled_ap50", "AP50, other-class audio", ":o"),
                              ("baseline_centre_ap50", "centre prior AP50", "--x"),
                              ("baseline_whole_ap50", "whole image AP50", ":+"),
                              ("val_retrieval_a2i", "audio->image top-1", "-^")):
        if val and key in val[0]:
            ax2.plot(steps, [r[key] for r in val], style, label=label, ms=4)
    if object_prior:
        ax2.axhline(object_prior["random_object"], color="grey", ls="-.", lw=0.8, label="blind pick among objects")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("optimiser step")
    ax2.set_title("validation (held-out val split)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    atomic_write_with(png, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def _batch(run_dir: Path) -> int:
    import yaml

    return int(yaml.safe_load((Path(run_dir) / "config.yaml").read_text())["batch_size"])


def quality_table(run_dir: Path) -> str:
    """Markdown rows: per validation, the model's AP50/AUC next to the trivial baselines."""
    from avloc.training.logs import read_metrics

    rows = [r for r in read_metrics(Path(run_dir) / "metrics.jsonl") if r["kind"] == "val"]
    nan = float("nan")
    lines = ["| epoch | step | val AP50 real audio | silent audio | other-class audio | verdict "
             "| pointing real / silent / other / centre | val AUC "
             "| centre prior AP50 | whole image AP50 | audio->image top-1 (chance) | val contrastive | audio cos "
             "| audio adjacency on same class (chance) | pair logits on same class | weakest class AP50 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        epoch = str(r["epoch"] + 1) if r["epoch"] >= 0 else "0 (untrained)"
        uses = {True: "uses the sound", False: "NOT using the sound", None: "-"}[r.get("val_uses_sound")]
        lines.append(f"| {epoch} | {r['step']} | {r.get('val_ap50', nan):.3f} | {r.get('val_silence_ap50', nan):.3f} "
                     f"| {r.get('val_shuffled_ap50', nan):.3f} | {uses} "
                     f"| {r.get('val_pointing', nan):.2f} / {r.get('val_silence_pointing', nan):.2f} / "
                     f"{r.get('val_shuffled_pointing', nan):.2f} / {r.get('baseline_centre_pointing', nan):.2f} "
                     f"| {r.get('val_auc', nan):.3f} "
                     f"| {r.get('baseline_centre_ap50', nan):.3f} | {r.get('baseline_whole_ap50', nan):.3f} "
                     f"| {r.get('val_retrieval_a2i', nan):.3f} ({r.get('val_retrieval_chance', nan):.3f}) "
                     f"| {r.get('val_contrastive', nan):.3f} | {r.get('val_audio_cos', nan):.3f} "
                     f"| {r.get('val_audio_same_class_mass', nan):.3f} ({r.get('val_audio_same_class_chance', nan):.3f}) "
                     f"| {r.get('val_logits_same_class_mass', nan):.3f} "
                     f"| {r.get('val_weakest_class_ap50', nan):.3f} ({r.get('val_weakest_class', '-')}) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     epilog="example: python benchmarks/train_quality.py /tmp/quality --png curve.png")
    parser.add_argument("work", type=Path, nargs="?", help="work folder: clips, shards and the run")
    parser.add_argument("--n-clips", "--clips", dest="n_clips", type=int, default=960)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--data-seed", type=int, default=2,
                        help="seed of the synthetic clips (2: the set every recorded row used); the training "
                             "seed is --set seed=S")
    parser.add_argument("--distractors", choices=["class", "silent"], default="class",
                        help="class: shortcut-free (default); silent: the visual-shortcut set")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra training config KEY=VALUE")
    parser.add_argument("--png", type=Path, default=None, help="write the training/validation curves here")
    parser.add_argument("--table", type=Path, default=None, help="print the validation table of this run folder")
    args = parser.parse_args(argv)
    if args.table:
        print(quality_table(args.table))
        if args.png:
            work = Path(args.table).parent  # the run's work folder, when it still holds its clips and shards
            clip_set = work / "clips" / "synth.json"
            prior = val_object_prior(clip_set, work / "shards") if clip_set.is_file() else None
            plot_curves(args.table, args.png, prior)
        return 0
    if args.work is None:
        parser.error("give a work folder (or --table RUN)")
    summary = quality(args.work, n_clips=args.n_clips, n_classes=args.classes, seed=args.data_seed,
                      distractor_looks=args.distractors, sets=args.sets)
    if args.png:
        plot_curves(args.work / "run", args.png, summary["val_object_prior"])
    print(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
