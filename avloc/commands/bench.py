"""`avloc bench-throughput`: every stage side by side against the baseline a researcher would use."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from avloc.utils.options import example_epilog

from avloc.bench.runner import SCENARIO_CHOICES, BenchOptions, run_bench


@click.command("bench-throughput",
               epilog=example_epilog("avloc bench-throughput --quick --json bench.json --plot bench.png"))
@click.option("--scenario", type=click.Choice(SCENARIO_CHOICES), default="all", show_default=True,
              help="Which stage to measure.")
@click.option("--shards", type=click.Path(path_type=Path), default=None,
              help="Existing shards folder (holds dataset.json) for loaders/train; default: synthesise in a temp dir.")
# old spelling, kept for one release
@click.option("--data", "data_alias", type=click.Path(path_type=Path), default=None, hidden=True)
@click.option("--quick", is_flag=True, help="Small sizes and few rounds (under 5 minutes on 2 CPU cores).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the records as JSON.")
@click.option("--plot", "plot_out", type=click.Path(path_type=Path), default=None, help="Write a PNG of the ratios.")
@click.option("--keep-workdir", is_flag=True, help="Keep the synthesised clips/shards.")
@click.option("--no-progress", is_flag=True, help="No progress bar or progress lines.")
def command(scenario, shards, data_alias, quick, json_out, plot_out, keep_workdir, no_progress):
    """Measure shard, loaders, kernels, train and evaluate throughput, each against its baseline, in one run.
    """
    from avloc.bench.results import table

    options = BenchOptions(scenario=scenario, shards=shards if shards is not None else data_alias, quick=quick,
                           json_out=json_out, plot_out=plot_out, keep_workdir=keep_workdir,
                           progress=not no_progress).checked()
    records, machine = run_bench(options)
    click.echo(table(records))
    click.echo(f"\nmachine: {machine['cpu']} x{machine['cores']} cores, GPU: {machine['gpu'] or 'none'}, "
               f"commit {machine['commit']}")
    for label, path in (("records", json_out), ("plot", plot_out)):
        if path:
            click.echo(f"{label}: {path}")
    if any(r.skipped and r.skipped.startswith("failed") for r in records):
        sys.exit(1)

