"""Record one benchmark scenario into benchmarks/results/: <stem>.jsonl (runs appended),
<stem>.md (every recorded run, newest first) and <stem>.png, through the harness and the one
result writer of ``avloc bench-throughput``.

    python benchmarks/record.py loaders                      # quick sizes -> loaders-cpu.*
    python benchmarks/record.py evaluate --full              # 5,158 VGG-SS-layout items
    python benchmarks/record.py kernels --full --batches 4096 8192 --hw 49 --name cpu-1thread
    python benchmarks/record.py train --shards /data/vggsound-shards
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import shutil
import sys
import tempfile
from pathlib import Path

STEMS = {"shard": "shard", "loaders": "loaders", "kernels": "kernels", "train": "train-throughput",
         "evaluate": "evaluate", "rehearsal": "rehearsal-144k"}
TITLES = {"shard": "Shard throughput", "loaders": "Loader throughput",
          "kernels": "fnac_losses kernels", "train": "Training throughput", "evaluate": "Evaluation throughput",
          "rehearsal": "144k dress rehearsal"}
LOADER_GOALS = {"fastest shard loader": 10.0, "torch": 4.0}  # x the folder loader, same 2 CPU cores, batch 256


def loaders_goal(records: list) -> str:
    """The loaders goals: fastest shard loader >= 10x and the torch loader >= 4x the folder loader (batch 256)."""
    lines = []
    for size in ("batch 256", "batch 64"):
        rows = [r for r in records if r.scenario == "loaders" and r.size == size and not r.baseline
                and r.ratio_to_baseline]
        if not rows:
            continue
        best = max(rows, key=lambda r: r.ratio_to_baseline)
        torch_rows = [r for r in rows if r.variant == "torch"]
        for label, row in (("fastest shard loader", best), ("torch", torch_rows[0] if torch_rows else None)):
            if row is None:
                continue
            goal = LOADER_GOALS[label]
            steady = next((r for r in records if r.scenario == "loaders-steady" and r.size == size
                           and r.variant == row.variant and r.ratio_to_baseline), None)

            def verdict(ratio: float) -> str:
                return ("met" if ratio >= goal else "not met") if size == "batch 256" else "no goal"

            steady_text = (f"; steady state {steady.value:.0f} samples/s = {steady.ratio_to_baseline:.2f}x: "
                           f"{verdict(steady.ratio_to_baseline)}" if steady else "")
            lines.append(f"* {size}: {label} {row.variant}, {row.value:.0f} samples/s = {row.ratio_to_baseline:.2f}x the "
                         f"folder loader over whole epochs (goal at batch 256 >= {goal:g}x on 2 CPU cores: "
                         f"{verdict(row.ratio_to_baseline)}{steady_text})")
    return "\n".join(lines)


def kernels_cpu_time(records: list) -> str:
    """Process CPU time of the timed steps (less sensitive to other load than wall time)."""
    rows = [r for r in records if r.scenario == "kernels.time" and r.value is not None
            and (r.extra.get("cpu_ms_median") is not None or r.extra.get("cpu_ms") is not None)]
    if not rows:
        return ""
    lines = ["Process CPU time of the same steps (all threads; less sensitive to other load on a shared machine):",
             "", "| variant | size | CPU ms |", "|---|---|---|"]
    lines += [f"| {r.variant} | {r.size} | {r.extra.get('cpu_ms_median', r.extra.get('cpu_ms')):,.0f} |" for r in rows]
    return "\n".join(lines)


def plot_kernels(records: list, path) -> None:
    """Time and workspace memory against B, one line per (impl, HW); skipped points are absent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from avloc.bench.kernels import SCENARIO_MEM, SCENARIO_TIME

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, scenario, unit, title in ((axes[0], SCENARIO_TIME, "ms", "forward+backward time"),
                                      (axes[1], SCENARIO_MEM, "MiB", "peak extra memory (workspace)")):
        lines: dict = {}
        for r in records:
            if r.scenario != scenario or r.value is None or "[total]" in r.size:
                continue
            b, hw = (int(part.split("=")[1]) for part in r.size.split()[:2])
            kind = r.size.split("[")[1].rstrip("]") if "[" in r.size else ""
            lines.setdefault((r.variant, hw, kind), []).append((b, r.value))
        for (impl, hw, kind), pts in sorted(lines.items()):
            pts.sort()
            label = f"{impl} HW={hw}" + (f" ({'RSS' if kind == 'workspace' else 'live tensors'})" if kind else "")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="s" if kind == "tensors" else "o",
                    ls="-" if hw == 49 else "--", label=label)
        if scenario == SCENARIO_MEM:
            ax.axhline(1024, color="grey", lw=0.8, ls=":", label="1 GiB goal")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch B (D=512)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def plot_rehearsal(records: list, path) -> None:
    """Resident memory over the sustained read, and the read rate per 10 s window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory = next((r for r in records if r.variant.startswith("resident memory") and r.value is not None), None)
    rate = next((r for r in records if r.variant.startswith("dali-cpu sustained") and r.value is not None), None)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if memory is not None:
        series = memory.extra.get("series") or []
        axes[0].plot([t for t, _ in series], [m for _, m in series], marker=".")
        axes[0].set_ylim(0, max(m for _, m in series) * 1.2 if series else 1)
        axes[0].set_title(f"{memory.variant}: {memory.extra.get('growth_mib_per_min_second_half')} MiB/min in the "
                          "2nd half", fontsize=9)
    axes[0].set_xlabel("seconds")
    axes[0].set_ylabel("MiB")
    if rate is not None:
        windows = rate.extra.get("raw") or [rate.extra.get("rate_over_stretch") or rate.value]
        starts = [10 * i for i in range(len(windows))]
        axes[1].bar(starts, windows, width=8, align="edge")
        axes[1].set_title(f"{rate.variant}: {rate.size}", fontsize=9)
    axes[1].set_xlabel("seconds (one bar per 10 s window)")
    axes[1].set_ylabel("samples/s")
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


NOTES = {"loaders": loaders_goal, "kernels": kernels_cpu_time}
PLOTS = {"kernels": plot_kernels, "rehearsal": plot_rehearsal}


def measure(scenario: str, ctx, *, items=None, batches=None, hws=None, read_seconds=None) -> list:
    module = importlib.import_module(f"avloc.bench.{scenario}")
    if scenario == "rehearsal" and read_seconds:
        scale = module.QUICK if ctx.quick else module.FULL
        return module.run_rehearsal(ctx, dataclasses.replace(scale, sustained_s=float(read_seconds)))
    if scenario == "evaluate" and items:
        return module.run(ctx, n=items)
    if scenario == "kernels" and (batches or hws):
        return module.run_sizes(ctx, tuple(batches) if batches else None, tuple(hws or (49, 196)))
    return module.run(ctx)


def record(args) -> dict:
    """Run the scenario in a scratch folder (always removed) and write its results files."""
    from avloc.bench.harness import BenchContext, fill_ratios, load_average, machine_info
    from avloc.bench.results import plot_ratios, table, write_results
    from avloc.bench.runner import WORKDIR_PREFIX, BenchOptions, default_device, sigterm_unwinds

    BenchOptions(scenario=args.scenario, shards=args.shards).checked()
    module = importlib.import_module(f"avloc.bench.{args.scenario}")
    load_at_start = load_average()
    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    try:
        with sigterm_unwinds():
            ctx = BenchContext(workdir=workdir, quick=not args.full, shards=args.shards,
                               device=args.device or default_device(), progress=not args.no_progress)
            records = fill_ratios(measure(args.scenario, ctx, items=args.items, batches=args.batches, hws=args.hw,
                                          read_seconds=args.read_seconds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    machine = machine_info(load_at_start)
    stem = f"{STEMS[args.scenario]}-{args.name or ('gpu' if machine['gpu'] else 'cpu')}"
    out = Path(args.out)
    intro = (module.__doc__ or "").strip() + (f"\n\n{args.notes}" if args.notes else "")
    intro += f"\n\nRecorded by `python benchmarks/record.py {args.scenario}` (see benchmarks/README.md)."
    paths = write_results(records, machine=machine, jsonl_path=out / f"{stem}.jsonl", md_path=out / f"{stem}.md",
                          png_path=out / f"{stem}.png", title=TITLES[args.scenario], intro=intro,
                          notes_for=NOTES.get(args.scenario),
                          plot=PLOTS.get(args.scenario, plot_ratios))
    print(table(records))
    return paths


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                epilog="example: python benchmarks/record.py loaders --out benchmarks/results")
    p.add_argument("scenario", choices=tuple(STEMS))
    p.add_argument("--full", action="store_true", help="full sizes and rounds (default: the quick ones)")
    p.add_argument("--shards", type=Path, default=None, help="a shards folder for loaders/train (default: synthesise)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="results folder")
    p.add_argument("--name", default=None, help="file stem suffix (default cpu or gpu)")
    p.add_argument("--notes", default="", help="a sentence added to the markdown's introduction")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--items", type=int, default=None, help="evaluate: number of items (default 16, --full 5,158)")
    p.add_argument("--batches", type=int, nargs="+", help="kernels: only these B")
    p.add_argument("--hw", type=int, nargs="+", help="kernels: only these HW (perfect squares)")
    p.add_argument("--read-seconds", type=float, default=None,
                   help="rehearsal: how long the DALI CPU loader reads the 144k set (default 120, quick 10)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    from avloc.errors import AvlocError

    args = parser().parse_args(argv)
    try:
        paths = record(args)
    except AvlocError as err:
        print(f"record.py: error: {err}", file=sys.stderr)
        return err.exit_code
    print("\n".join(f"{kind}: {path}" for kind, path in paths.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
