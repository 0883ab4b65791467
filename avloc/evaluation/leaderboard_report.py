"""Report files of a leaderboard set (results.json, per_unit.parquet, summary.png) and the
``all-available`` summary (summary.md, summary.json, summary.png). Atomic writes throughout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from avloc.evaluation.report import _save_figure, public_results, write_parquet
from avloc.utils.atomic import atomic_write_text
from avloc.utils.progress import log


def _nan_to_none(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(_nan_to_none(obj), indent=1, default=str))


def _bars(ax, labels: list, groups: dict, title: str) -> None:
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(groups))
    for k, (name, values) in enumerate(groups.items()):
        ax.bar(x + (k - (len(groups) - 1) / 2) * width, [v if v is not None else 0 for v in values], width,
               label=name)
    ax.set_xticks(x, labels, rotation=20, fontsize=7, ha="right")
    ax.set_ylabel("x100")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)


def write_leaderboard_figure(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from avloc.evaluation.leaderboard import _label, metric_columns

    keys = [k for k in metric_columns(results) if k != "mean_ciou"]
    rows = results["rows"]
    fig, ax = plt.subplots(figsize=(10, 5))
    _bars(ax, [r["method"].replace("baseline: ", "") for r in rows],
          {_label(k, results): [r.get(k) for r in rows] for k in keys},
          f"{results['benchmark']}: same units, same protocol ({results['options']['threshold_rule']})")
    fig.tight_layout()
    _save_figure(fig, path)
    plt.close(fig)


def write_leaderboard_reports(out: Path, results: dict) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / "per_unit.parquet", results["_per_sample"])
    write_leaderboard_figure(out / "summary.png", results)
    write_json(out / "results.json", public_results(results))
    log(f"wrote {out / 'results.json'}, per_unit.parquet and summary.png")


# ---------------------------------------------------------------- all-available summary

def summary_entry(results: dict, root: Path) -> dict:
    """One benchmark's line of the summary: headline metric of the model, its best baseline and controls."""
    rows = results["rows"]
    if "options" in results:
        key = results["options"]["headline"]
        from avloc.evaluation.leaderboard import _label

        label = _label(key, results)
    else:
        key, label = "ciou_x100", "cIoU (AP50, >=)"
    model = rows[0].get(key)
    baselines = [r.get(key) for r in rows if r["method"].startswith("baseline")]
    baselines = [b for b in baselines if b is not None and not math.isnan(b)]
    controls = {r["column"].replace("ciou_", ""): r.get(key) for r in rows
                if r["column"] in ("ciou_silence", "ciou_shuffled")}
    pub = results.get("published_fnac")
    return {"benchmark": results["benchmark"], "root": str(root), "metric": label, "model": model,
            "best_baseline": max(baselines) if baselines else None, "controls": controls,
            "published_fnac": pub["fnac"] if pub else None,
            "comparable_with_published": results["comparable_with_published"],
            "scored": results["counts"]["scored"], "expected": results["counts"]["expected"]}


def _cell(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def format_summary(summary: dict) -> str:
    lines = [f"checkpoint: {summary['checkpoint']}; data root: {summary['data_root']}",
             "| benchmark | metric | model | best baseline | silent audio | other-class audio | published FNAC | "
             "comparable | scored / expected |", "|---|---|---|---|---|---|---|---|---|"]
    for e in summary["scored"]:
        lines.append(f"| {e['benchmark']} | {e['metric']} | {_cell(e['model'])} | {_cell(e['best_baseline'])} | "
                     f"{_cell(e['controls'].get('silence'))} | {_cell(e['controls'].get('shuffled'))} | "
                     f"{_cell(e['published_fnac'])} | {'yes' if e['comparable_with_published'] else 'no'} | "
                     f"{e['scored']} / {e['expected']} |")
    for name, why in summary["failed"].items():
        lines.append(f"failed: {name}: {why}")
    if summary["not_found"]:
        lines.append("not found: " + ", ".join(sorted(summary["not_found"])))
    return "\n".join(lines)


def write_all_available_summary(out: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    entries = summary["scored"]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(entries) + 2), 4.5))
    _bars(ax, [f"{e['benchmark']}\n{e['metric']}" for e in entries],
          {"model": [e["model"] for e in entries], "best baseline": [e["best_baseline"] for e in entries],
           "silent audio": [e["controls"].get("silence") for e in entries],
           "other-class audio": [e["controls"].get("shuffled") for e in entries]},
          "every benchmark found: headline metric, model vs baselines and audio controls")
    fig.tight_layout()
    _save_figure(fig, out / "summary.png")
    plt.close(fig)
    atomic_write_text(out / "summary.md", format_summary(summary) + "\n")
    write_json(out / "summary.json", summary)
    log(f"wrote {out / 'summary.md'}, summary.json and summary.png")
