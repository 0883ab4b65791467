"""What an evaluation leaves behind: results.json, per_sample.parquet, overlays, a summary page.

Every file is written atomically (``avloc.utils.atomic``) with the modes the user's umask gives.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from avloc import metrics
from avloc.utils.atomic import atomic_write_text, atomic_write_with
from avloc.utils.progress import log

FIGURE_DPI = 110
WEAKEST_CLASSES_SHOWN = 5


def _save_figure(fig, path: Path) -> None:
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=FIGURE_DPI, format="png"))


def public_results(results: dict) -> dict:
    return {k: v for k, v in results.items() if not k.startswith("_")}


def format_counts(results: dict) -> str:
    c = results["counts"]
    miss = c["missing_by_modality"]
    unread = c["unreadable_by_modality"]
    defects = ", ".join(f"{k} {v}" for k, v in sorted(c["defective_gt"].items())) or "none"
    lines = [
        f"{results['benchmark']}: expected {c['expected']} (from {c['expected_source']}), found {c['found']}, "
        f"missing {c['missing']} (frame {miss['frame']}, audio {miss['audio']}, annotation {miss['annotation']})",
        f"unreadable: frame {unread['frame']}, audio {unread['audio']}, annotation {unread['annotation']}; "
        f"scored {c['scored']}" + (f" (limited to {c['limited_to']})" if c.get("limited_to") else ""),
        f"defective ground truth: {defects}; items with defects {c['defective_gt_items']}; "
        f"empty GT maps scored {c['empty_gt_scored']}",
    ]
    if not results["comparable_with_published"]:
        lines.append("note: not the full official set, so not comparable with published numbers")
    return "\n".join(lines)


def format_table(results: dict) -> str:
    if "options" in results:  # a leaderboard set: its own columns and options
        from avloc.evaluation.leaderboard import format_leaderboard_table

        return format_leaderboard_table(results)
    lines = [f"upsample: {results['protocol']['upsample']}; threshold: median; cIoU = AP50 of per-sample cIoU; "
             "pointing = peak inside the ground truth (beside the protocol)",
             "| method | cIoU (AP50) x100 | AUC x100 | mean cIoU | pointing x100 | n |", "|---|---|---|---|---|---|"]
    for r in results["rows"]:
        lines.append(f"| {r['method']} | {r['ciou_x100']:.2f} | {r['auc_x100']:.2f} | {r['mean_ciou']:.4f} | "
                     f"{r['pointing_x100']:.2f} | {r['n']} |")
    if results.get("audio_controls"):
        lines.append(f"audio controls: {results['audio_controls']['verdict']}")
    per_class = results.get("per_class") or []
    if len(per_class) > 1:
        shown = per_class[:WEAKEST_CLASSES_SHOWN]
        lines.append(f"per class AP50 x100, weakest {len(shown)} of {len(per_class)} (all in results.json): "
                     + ", ".join(f"{r['class']} {100 * r['ap50']:.1f} (n {r['n']})" for r in shown))
    return "\n".join(lines)


def write_parquet(path: Path, per_sample: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({k: (list(v) if not isinstance(v, np.ndarray) else v) for k, v in per_sample.items()})
    atomic_write_with(path, lambda tmp: pq.write_table(table, tmp))


def choose_overlays(cious: np.ndarray, n: int, seed: int = 0) -> list:
    """(kind, position) pairs: up to n samples split into best, worst and random picks, no repeats."""
    if n <= 0 or len(cious) == 0:
        return []
    order = np.argsort(-cious, kind="stable")
    k = max(1, n // 3)
    chosen, out = set(), []
    for kind, candidates in (("best", order[:k]), ("worst", order[::-1][:k])):
        for p in candidates:
            if int(p) not in chosen:
                chosen.add(int(p))
                out.append((kind, int(p)))
    rest = [p for p in range(len(cious)) if p not in chosen]
    rng = np.random.default_rng(seed)
    for p in rng.permutation(rest)[: max(0, n - len(out))]:
        out.append(("random", int(p)))
    return out


def write_overlays(out_dir: Path, results: dict, per_sample: dict, items: list, raw_maps: dict, upsample: str,
                   n: int, seed: int = 0) -> list:
    """Frame | heat-map overlay (avloc.overlay) in the frame's own aspect ratio, GT outline (white),
    predicted region outline (dashed), for best/worst/random."""
    import matplotlib.pyplot as plt
    import torch

    from avloc.evaluation import media
    from avloc.overlay import overlay_figure

    id_to_index = {it.id: i for i, it in enumerate(items)}
    cious = np.asarray(per_sample["ciou"])
    written = []
    for rank, (kind, pos) in enumerate(choose_overlays(cious, n, seed)):
        item = items[id_to_index[per_sample["id"][pos]]]
        raw = torch.from_numpy(raw_maps[id_to_index[item.id]][None])
        heat, pred = metrics.prediction_masks(raw, upsample)
        try:
            frame = media.load_frame_rgb(item.frame, size=None)
        except Exception:  # an overlay is illustration only; the item was already scored
            continue
        fig = overlay_figure(frame, heat[0].numpy(), gt=item.gt_map(), pred=pred[0].numpy(),
                             title=f"{kind}: {item.id}  cIoU {cious[pos]:.3f}")
        path = out_dir / f"{rank:02d}_{kind}_{item.id}.png"
        _save_figure(fig, path)
        plt.close(fig)
        written.append(path.name)
    return written


def write_summary_png(path: Path, results: dict, per_sample: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(11, 8.5))
    gs = fig.add_gridspec(2, 2, height_ratios=[1, 1.1])
    ax_bar, ax_curve, ax_hist = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, 0])
    ax_text = fig.add_subplot(gs[1, 1])
    rows = results["rows"]
    names = [r["method"] for r in rows]
    x = np.arange(len(rows))
    ax_bar.bar(x - 0.27, [r["ciou_x100"] for r in rows], 0.27, label="cIoU (AP50)")
    ax_bar.bar(x, [r["auc_x100"] for r in rows], 0.27, label="AUC")
    ax_bar.bar(x + 0.27, [r["pointing_x100"] for r in rows], 0.27, label="pointing (peak in GT)")
    ax_bar.set_xticks(x, [n.replace("baseline: ", "") for n in names], rotation=20, fontsize=7, ha="right")
    ax_bar.set_ylabel("x100")
    ax_bar.legend(fontsize=7)
    ax_bar.set_title("scores (same items, same protocol)", fontsize=9)
    thresholds = np.asarray(metrics.AUC_THRESHOLDS)
    for r in rows:
        values = np.asarray(per_sample[r["column"]])
        if len(values):
            ax_curve.plot(thresholds, [(values >= t).mean() for t in thresholds], label=r["method"], lw=1.2)
    ax_curve.set_xlabel("cIoU threshold t")
    ax_curve.set_ylabel("fraction with cIoU >= t")
    ax_curve.legend(fontsize=6)
    ax_curve.set_title("success curve (AUC = area)", fontsize=9)
    ax_hist.hist(np.asarray(per_sample["ciou"]), bins=20, range=(0, 1), color="#2a9d8f")
    ax_hist.axvline(0.5, color="black", lw=0.8)
    ax_hist.set_xlabel("per-sample cIoU (model)")
    ax_hist.set_title("distribution", fontsize=9)
    ax_text.axis("off")
    text = format_counts(results) + "\n\n" + "\n".join(
        f"{r['method']}: cIoU {r['ciou_x100']:.2f}  AUC {r['auc_x100']:.2f}  mean {r['mean_ciou']:.3f}  "
        f"pointing {r['pointing_x100']:.1f}" for r in rows)
    text += f"\n\nupsample: {results['protocol']['upsample']}\nthreshold: median\ncheckpoint: {results['checkpoint']}"
    ax_text.text(0, 1, text, va="top", fontsize=7, family="monospace", wrap=True)
    fig.suptitle(f"avloc evaluate: {results['benchmark']}", fontsize=12)
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def write_reports(out: Path, results: dict, per_sample: dict, items: list, raw_maps: dict, *, upsample: str,
                  overlays: int, seed: int = 0) -> None:
    """Write every report file into ``out``; ``results["overlays"]`` gets the overlay file names."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / "per_sample.parquet", per_sample)
    written = write_overlays(out / "overlays", results, per_sample, items, raw_maps, upsample, overlays, seed)
    results["overlays"] = written
    write_summary_png(out / "summary.png", results, per_sample)
    atomic_write_text(out / "results.json", json.dumps(public_results(results), indent=1, default=str))
    log(f"wrote {out / 'results.json'}, per_sample.parquet, summary.png and {len(written)} overlay(s)")
