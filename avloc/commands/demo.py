"""`avloc demo`: the main job on an embedded synthetic default, end to end."""

from __future__ import annotations

from pathlib import Path

import click

from avloc.utils.options import example_epilog

from avloc.demo import LOADER_CHOICES, DemoOptions

_DEFAULTS = DemoOptions()


@click.command("demo",
               epilog=example_epilog("avloc demo --out demo"))
@click.option("--out", type=click.Path(path_type=Path), default=_DEFAULTS.out, show_default=True,
              help="Folder for clips, shards, the run and the evaluation (rerun resumes).")
@click.option("--n-clips", type=int, default=_DEFAULTS.n_clips, show_default=True, help="Synthetic clips to make.")
# old spelling, kept for one release
@click.option("--clips", "n_clips_old", type=int, default=None, hidden=True)
@click.option("--epochs", type=int, default=_DEFAULTS.epochs, show_default=True,
              help="Training epochs (the from-scratch preset: 3 contrastive-only, then the FNAC terms ramped in).")
@click.option("--image-size", type=int, default=_DEFAULTS.image_size, show_default=True,
              help="Training/eval frame size (the paper uses 224; smaller keeps the CPU demo to minutes).")
@click.option("--loader", default=_DEFAULTS.loader, show_default=True, metavar="|".join(LOADER_CHOICES))
@click.option("--no-progress", is_flag=True, help="No progress bars or progress lines.")
def command(out, n_clips, n_clips_old, epochs, image_size, loader, no_progress):
    """Synthesise VGG-Sound-like clips, shard them, train FNAC and evaluate it on a synthetic VGG-SS copy,
    with the model's score beside the same model given silent and other-class audio.
    """
    from avloc.demo import run_demo
    from avloc.evaluation.object_prior import prior_line
    from avloc.evaluation.report import format_counts, format_table

    options = DemoOptions(out=out, n_clips=n_clips if n_clips_old is None else n_clips_old, epochs=epochs,
                          image_size=image_size, loader=loader, progress=not no_progress).checked()
    result = run_demo(options)
    click.echo(format_counts(result["results"]))
    click.echo(format_table(result["results"]))
    prior = result["results"].get("object_prior")
    if prior:
        click.echo(f"{prior_line(prior)}: a model that finds the objects but ignores the sound scores about "
                   f"'random object'")
    t = result["summary"]["timings"]
    click.echo("\n" + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in t.items()) + f"; everything is in {out}")
