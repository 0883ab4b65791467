"""`avloc demo`: the main job on an embedded synthetic default, end to end."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo"), show_default=True,
              help="Folder for clips, shards, the run and the evaluation (rerun resumes).")
@click.option("--clips", type=click.IntRange(min=8), default=960, show_default=True, help="Synthetic clips to make.")
@click.option("--epochs", type=click.IntRange(min=1), default=5, show_default=True,
              help="Training epochs (the first 3 contrastive only).")
@click.option("--image-size", type=click.IntRange(min=64), default=128, show_default=True,
              help="Training/eval frame size (the paper uses 224; smaller keeps the CPU demo to minutes).")
@click.option("--loader", type=click.Choice(["auto", "dali", "torch"]), default="auto", show_default=True)
@click.option("--no-progress", is_flag=True)
def command(out, clips, epochs, image_size, loader, no_progress):
    """Synthesise VGG-Sound-like clips, shard them, train FNAC and evaluate it on a synthetic VGG-SS copy."""
    from avloc.demo import DemoConfig, run_demo
    from avloc.evaluation.report import format_counts, format_table

    result = run_demo(DemoConfig(out=out, clips=clips, epochs=epochs, image_size=image_size, loader=loader,
                                 progress=not no_progress), log=lambda m: click.echo(m, err=True))
    click.echo(format_counts(result["results"]))
    click.echo(format_table(result["results"]))
    t = result["summary"]["timings"]
    click.echo("\n" + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in t.items()) + f"; everything is in {out}")
