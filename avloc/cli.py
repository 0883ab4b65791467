"""The ``avloc`` command line: a thin click group whose subcommands load lazily.

Nothing heavy (torch, DALI, triton) is imported until a subcommand runs, so ``avloc --help``
is instant and works on machines without DALI or a GPU.
"""

from __future__ import annotations

import importlib
import sys

import click

from avloc import __version__
from avloc.errors import AvlocError, report_error, run_click_command

# name -> (module exposing `command`, one-line help shown by `avloc --help`)
COMMANDS = {
    "synth": ("avloc.commands.synth", "Generate synthetic VGG-Sound-like clips and benchmark layouts."),
    "shard": ("avloc.commands.shard", "Turn raw clips into WebDataset shards with FNAC spectrograms."),
    "train": ("avloc.commands.train", "Train FNAC from shards (single process, or torchrun/--nproc)."),
    "evaluate": ("avloc.commands.evaluate", "Score a checkpoint on AVSBench, VGG-SS or Flickr-SoundNet."),
    "bench-throughput": ("avloc.commands.bench", "Measure every stage side by side against its baseline."),
    "localize": ("avloc.commands.localize", "Show where the sound comes from in any video, with a trained model."),
    "demo": ("avloc.commands.demo", "Synthesise clips, shard, train and evaluate end to end."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        return module.command

    def format_commands(self, ctx, formatter):
        rows = [(name, help_) for name, (_, help_) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx):
        # Also reached through click's own runners (CliRunner, cli.main in standalone mode).
        try:
            return super().invoke(ctx)
        except (AvlocError, KeyboardInterrupt) as err:
            ctx.exit(report_error(err))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="avloc")
def cli():
    """avloc: audio-visual sound-source localisation (FNAC) with a fast, exact data pipeline."""


def main(argv=None):
    """Entry point: every usage mistake and every AvlocError is one line on stderr plus an exit code."""
    sys.exit(run_click_command(cli, argv, "avloc"))


if __name__ == "__main__":
    sys.exit(main())
