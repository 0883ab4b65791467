"""``curves.png`` in the run folder: losses and validation AP50 / AUC beside the baselines.

Redrawn after every validation from ``metrics.jsonl`` (a few hundred rows at most per
validation interval: well under a second), written atomically, so the file is always a whole
picture of the run so far. Drawing uses a figure of its own (no pyplot state), and a failure
to draw is a warning, never the end of a training run.
"""

from __future__ import annotations

from pathlib import Path

from avloc.training.logs import read_metrics
from avloc.utils.atomic import atomic_write_with

CURVES_PNG = "curves.png"
LOSS_TERMS_SHOWN = ("contrastive", "fns1", "tns", "fns2")
# (metric suffix, panel title); each panel: the model, its audio controls, the trivial baselines
SCORE_PANELS = (("ap50", "validation AP50 (cIoU >= 0.5)"), ("auc", "validation AUC"))
SCORE_ROWS = (("val", "model, real audio", "-o"), ("val_silence", "model, silent audio", "--o"),
              ("val_shuffled", "model, other-class audio", ":o"), ("baseline_centre", "centre prior", "--x"),
              ("baseline_whole", "whole image", ":+"))


def draw_curves(rows: list):
    """A matplotlib Figure of the metrics rows (train and val kinds)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [r for r in rows if r.get("kind") == "train"]
    val = [r for r in rows if r.get("kind") == "val"]
    fig = Figure(figsize=(13, 3.8))
    FigureCanvasAgg(fig)
    ax_loss, *ax_scores = fig.subplots(1, 1 + len(SCORE_PANELS))
    if train:
        steps = [r["step"] for r in train]
        ax_loss.plot(steps, [r.get("loss") for r in train], label="train loss", lw=1.2)
        for term in LOSS_TERMS_SHOWN:
            if term in train[0] and term != "loss":
                ax_loss.plot(steps, [r.get(term) for r in train], label=term, lw=0.7)
    val_loss = [r for r in val if isinstance(r.get("val_loss"), (int, float))]
    if val_loss:
        ax_loss.plot([r["step"] for r in val_loss], [r["val_loss"] for r in val_loss], "ks-", ms=3, lw=1,
                     label="val loss")
    ax_loss.set_xlabel("optimiser step")
    ax_loss.set_title("losses", fontsize=10)
    if ax_loss.lines:
        ax_loss.legend(fontsize=7)
    for ax, (suffix, title) in zip(ax_scores, SCORE_PANELS):
        for prefix, label, style in SCORE_ROWS:
            key = f"{prefix}_{suffix}"
            points = [(r["step"], r[key]) for r in val if isinstance(r.get(key), (int, float))]
            if points:
                ax.plot(*zip(*points), style, ms=4, lw=1, label=label)
        ax.set_ylim(0, 1)
        ax.set_xlabel("optimiser step")
        ax.set_title(title, fontsize=10)
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no boxes in the val split", ha="center", va="center", transform=ax.transAxes,
                    fontsize=8, color="grey")
    fig.suptitle(f"training curves ({len(train)} train rows, {len(val)} validations)", fontsize=10)
    fig.tight_layout()
    return fig


def write_curves(run_dir) -> Path:
    """Redraw ``run_dir/curves.png`` from ``run_dir/metrics.jsonl``; returns its path."""
    run_dir = Path(run_dir)
    fig = draw_curves(read_metrics(run_dir / "metrics.jsonl"))
    path = run_dir / CURVES_PNG
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    return path
