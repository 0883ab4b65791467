"""The one result writer: JSON (a list) or JSONL (appended runs), markdown and a PNG, all atomic.

Every record row carries the environment record of its run (``machine``: CPU, cores, GPU,
versions, load, commit, time). The markdown lists every run found in the JSONL, newest first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable, Optional

from avloc.bench.harness import Record, machine_info
from avloc.utils.atomic import atomic_path, atomic_write_text


def _fmt(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.4g}"


def table(records: list) -> str:
    """A markdown table of the records (also fine on a terminal)."""
    lines = ["| scenario | variant | size | value | unit | spread | ratio to baseline | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in records:
        spread = f"{r.spread} {_fmt(r.p_low)}..{_fmt(r.p_high)}" if r.value is not None else ""
        ratio = "baseline" if r.baseline else (f"{r.ratio_to_baseline:.2f}x" if r.ratio_to_baseline else "-")
        note = r.skipped or ("higher is better" if r.higher_is_better else "lower is better")
        lines.append(f"| {r.scenario} | {r.variant} | {r.size} | {_fmt(r.value)} | {r.unit} | {spread} | {ratio} | {note} |")
    return "\n".join(lines)


def machine_line(machine: dict) -> str:
    v = machine.get("versions", {})
    load = (f"; load average (1 min) {machine.get('load_average_1min_start')} -> {machine.get('load_average_1min_end')}"
            if "load_average_1min_end" in machine else "")
    return (f"machine: {machine.get('cpu')}, {machine.get('cores_usable')} usable cores, GPU: {machine.get('gpu') or 'none'}; "
            f"commit {machine.get('commit')}; torch {v.get('torch')}, DALI {v.get('nvidia-dali-cuda120')}, "
            f"triton {v.get('triton')}, webdataset {v.get('webdataset')}, av {v.get('av')}{load}")


def plot_ratios(records: list, path) -> None:
    """Horizontal bars of ratio-to-baseline per (scenario, size, variant); skipped rows are listed as such.
    Rows that have no baseline to compare with (absolute figures such as the rehearsal's) are left to
    the table."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in records if not r.baseline and (r.ratio_to_baseline or r.skipped)]
    labels = [f"{r.scenario} | {r.variant} | {r.size}" for r in rows]
    ratios = [r.ratio_to_baseline if r.ratio_to_baseline else 0.0 for r in rows]
    fig, ax = plt.subplots(figsize=(9, max(2.5, 0.32 * len(rows) + 1.2)))
    colors = []
    for r in rows:
        if r.ratio_to_baseline is None:
            colors.append("#bbbbbb")
        else:
            better = r.ratio_to_baseline >= 1 if r.higher_is_better else r.ratio_to_baseline <= 1
            colors.append("#2a9d8f" if better else "#e76f51")
    ax.barh(range(len(rows)), ratios, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.axvline(1.0, color="black", lw=0.8)
    if any(x > 0 for x in ratios):
        from matplotlib.ticker import NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # a narrow range labels every minor tick, overlapping
        shown = [x for x in ratios if x > 0]
        ax.set_xlim(min(min(shown), 1.0) / 1.5, max(max(shown), 1.0) * 4)  # room for the labels right of the bars
    for i, r in enumerate(rows):
        text = r.skipped or (f"{r.ratio_to_baseline:.2f}x" if r.ratio_to_baseline else "no baseline")
        ax.text(max(ratios[i], 1e-3) if ratios[i] else 1.0, i, " " + text, va="center", fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ratio to the baseline, same run (green: better)")
    ax.set_title("avloc bench-throughput")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def read_runs(jsonl: Path) -> list:
    """[(machine, [Record, ...]), ...] for every run in a JSONL file, newest first."""
    runs: dict = {}
    for line in Path(jsonl).read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        machine = row.pop("machine")
        runs.setdefault(machine["time"], (machine, []))[1].append(Record(**row))
    return [runs[t] for t in sorted(runs, reverse=True)]


_RUN_HEADING = re.compile(r"^## \d{4}-\d{2}-\d{2}T")


def hand_written_sections(text: str, title: str = "") -> str:
    """The sections of a results page (``#`` or ``##`` headings) that are neither a recorded run's nor
    the page's own title with its intro: people's readings of the runs, so that rewriting the page
    from its JSONL keeps them."""
    kept, keep = [], False
    for line in text.splitlines():
        if line.startswith(("# ", "## ")):
            keep = not _RUN_HEADING.match(line) and line.strip() != f"# {title}".strip()
        if keep:
            kept.append(line)
    return "\n".join(kept).strip()


def markdown(runs: list, *, title: str, intro: str = "", notes_for: Optional[Callable[[list], str]] = None,
             readings: str = "") -> str:
    parts = [f"# {title}\n"]
    if intro:
        parts.append(intro.strip() + "\n")
    if readings:
        parts.append(readings.strip() + "\n")
    for machine, records in runs:
        notes = notes_for(records) if notes_for else ""
        parts.append(f"## {machine['time']}\n\n{machine_line(machine)}\n\n{table(records)}\n"
                     + (f"\n{notes.strip()}\n" if notes and notes.strip() else ""))
    return "\n".join(parts)


def write_results(records: list, *, machine: Optional[dict] = None, json_path=None, jsonl_path=None,
                  append: bool = True, md_path=None, title: str = "avloc bench-throughput", intro: str = "",
                  notes_for: Optional[Callable[[list], str]] = None, png_path=None,
                  plot: Callable[[list, Path], None] = plot_ratios) -> dict:
    """Write the records in each format asked for; returns {format: path}.

    ``json_path``: one JSON list, one object per record then ``{"machine": {...}}``.
    ``jsonl_path``: one record per line with its ``machine``; appended to (``append``) or replaced.
    ``md_path``: markdown; with a JSONL, every run in it (newest first), else this run only; the
    hand-written sections of an existing page (``hand_written_sections``) are kept, after the intro.
    ``png_path``: ``plot(records, path)`` (default: bars of the ratios).
    """
    machine = machine or machine_info()
    written = {}
    if json_path:
        rows = [r.to_dict() for r in records] + [{"machine": machine}]
        atomic_write_text(json_path, json.dumps(rows, indent=1))
        written["json"] = Path(json_path)
    if jsonl_path:
        jsonl_path = Path(jsonl_path)
        old = jsonl_path.read_text() if append and jsonl_path.is_file() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        atomic_write_text(jsonl_path, old + "".join(json.dumps({**r.to_dict(), "machine": machine}) + "\n"
                                                    for r in records))
        written["jsonl"] = jsonl_path
    if md_path:
        runs = read_runs(jsonl_path) if jsonl_path else [(machine, records)]
        readings = hand_written_sections(Path(md_path).read_text(), title) if Path(md_path).is_file() else ""
        atomic_write_text(md_path, markdown(runs, title=title, intro=intro, notes_for=notes_for, readings=readings))
        written["md"] = Path(md_path)
    if png_path:
        with atomic_path(png_path) as tmp:
            plot(records, tmp)
        written["png"] = Path(png_path)
    return written
