"""`avloc bench-throughput`: every stage side by side against the baseline a researcher would use."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click

from avloc.errors import InputError


@click.command("bench-throughput")
@click.option("--scenario", type=click.Choice(["shard", "loaders", "kernels", "train", "evaluate", "all"]),
              default="all", show_default=True, help="Which stage to measure.")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Existing clips folder (shard) or shards folder (loaders/train); default: synthesise in a temp dir.")
@click.option("--quick", is_flag=True, help="Small sizes and few rounds (under 5 minutes on 2 CPU cores).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), default=None, help="Write the records as JSON.")
@click.option("--plot", "plot_out", type=click.Path(path_type=Path), default=None, help="Write a PNG of the ratios.")
@click.option("--keep-workdir", is_flag=True, help="Keep the synthesised clips/shards.")
def command(scenario, data, quick, json_out, plot_out, keep_workdir):
    """Measure shard, loaders, kernels, train and evaluate throughput, each against its baseline, in one run."""
    from avloc.bench.core import BenchContext, machine_info, plot_ratios, table, write_json
    from avloc.bench.runner import SCENARIOS, run_scenarios

    if data is not None and not data.exists():
        raise InputError(f"--data {data} does not exist")
    names = SCENARIOS if scenario == "all" else (scenario,)
    ctx = BenchContext(quick=quick, data=data, log=lambda m: click.echo(m, err=True))
    try:
        import torch

        ctx.device = "cuda" if torch.cuda.is_available() else "cpu"
        records = run_scenarios(names, ctx)
    finally:
        if not keep_workdir:
            shutil.rmtree(ctx.workdir, ignore_errors=True)
    machine = machine_info()
    click.echo(table(records))
    click.echo(f"\nmachine: {machine['cpu']} x{machine['cores']} cores, GPU: {machine['gpu'] or 'none'}, "
               f"commit {machine['commit']}")
    if json_out:
        write_json(records, json_out, machine)
        click.echo(f"records: {json_out}")
    if plot_out:
        plot_ratios(records, plot_out)
        click.echo(f"plot: {plot_out}")
    failed = [r for r in records if r.skipped and r.skipped.startswith("failed")]
    if failed:
        sys.exit(1)
