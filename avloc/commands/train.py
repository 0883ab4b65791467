"""`avloc train`: train FNAC from shards, in this process, under torchrun, or on N local processes (--nproc)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

import click

from avloc.errors import ConfigError
from avloc.training.config import (PRESETS, TrainConfig, build_config, config_reference, config_yaml,
                                   read_config_file)
from avloc.utils.options import CommandOptions, example_epilog, range_problem, writable_folder_problems


@dataclasses.dataclass(frozen=True)
class TrainOptions(CommandOptions):
    shards: Optional[Path]
    out: Optional[Path]
    config_file: Optional[Path] = None
    overrides: tuple = ()
    resume: bool = False
    nproc: int = 1
    global_negatives: bool = False
    print_config: bool = False
    preset: Optional[str] = None

    def _resolve(self) -> tuple:
        """(the config: defaults <- the run's saved config (--resume) <- --config <- --set, every problem)."""
        problems = range_problem("--nproc", self.nproc, 1)
        if not self.print_config:
            if self.shards is None:
                problems.append("--shards is required")
            elif not self.shards.is_dir():
                problems.append(f"--shards {self.shards} is not a directory")
            if self.out is None:
                problems.append("--out is required")
            else:
                problems += writable_folder_problems("--out", self.out)
                problems += resume_problems(self.out, self.resume)
        base = None
        if self.resume and self.out is not None and (self.out / "config.yaml").is_file():
            base, found = read_config_file(self.out / "config.yaml")
            problems += found
        sets = list(self.overrides) + (["global_negatives=true"] if self.global_negatives else [])
        try:
            return build_config(self.config_file, sets, base=base, preset=None if base else self.preset), problems
        except ConfigError as exc:
            return None, problems + exc.problems

    def problems(self) -> List[str]:
        return self._resolve()[1]

    def config(self) -> TrainConfig:
        """The checked config; a ConfigError lists every problem (options and config keys) at once."""
        cfg, problems = self._resolve()
        if problems:
            raise ConfigError(problems)
        return cfg


def resume_problems(run_dir: Path, resume: bool) -> List[str]:
    """--resume needs the run's checkpoints/latest.pt: a resume that finds nothing to resume never
    starts over in (and so overwrites) the run folder."""
    from avloc.training.loop import nothing_to_resume

    found = nothing_to_resume(run_dir) if resume else None
    return [found] if found else []


HELP = "\n\n".join([
    "Train FNAC on the train split of --shards, validating every epoch on its val split.",
    "Config keys (defaults = the published recipe) come from the defaults, then --preset, then --config FILE "
    "(YAML), then --set KEY=VALUE; --print-config shows the result. Presets: "
    + "; ".join(f"{name}: " + (", ".join(f"{k}={v}" for k, v in values.items()) or "the published recipe")
                for name, values in PRESETS.items()) + ". Every key, its default and meaning:",
    "\b\n" + "\n".join("  " + line for line in config_reference()),
])


@click.command("train", help=HELP, epilog=example_epilog(
    "avloc train --shards shards --out runs/fnac --set batch_size=64 --set image_size=128 --nproc 2",
    "avloc train --shards shards --out runs/scratch --preset from-scratch"))
@click.option("--shards", type=click.Path(path_type=Path), default=None, help="Shards folder written by `avloc shard`.")
@click.option("--out", "run_dir", type=click.Path(path_type=Path), default=None,
              help="Run folder: config.yaml, metrics.jsonl, checkpoints/{latest,best}.pt.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="YAML file of config keys (defaults = the published FNAC recipe).")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=None,
              help="Start from a named config: recipe (the default) or from-scratch (no ImageNet weights).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one config key (repeatable), e.g. --set batch_size=64 --set image_size=128.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoints/latest.pt.")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="Train with N local processes (DDP via torchrun; gloo on CPU, NCCL on GPU).")
@click.option("--global-negatives", is_flag=True, default=False,
              help="All-gather embeddings across ranks so negatives span the global batch.")
@click.option("--print-config", is_flag=True,
              help="Print the resolved config as YAML (loadable with --config) and exit without training.")
def command(shards, run_dir, config_file, preset, overrides, resume, nproc, global_negatives, print_config):
    from avloc.training.launch import TrainJob, launch_local_ranks, under_torchrun

    options = TrainOptions(shards=shards, out=run_dir, config_file=config_file, overrides=tuple(overrides),
                           resume=resume, nproc=nproc, global_negatives=global_negatives, print_config=print_config,
                           preset=preset)
    cfg = options.config()  # every problem reported once, before any launch
    if print_config:
        click.echo(config_yaml(cfg), nl=False)
        return
    job = TrainJob(shards=shards, out=run_dir, config=cfg, resume=resume)
    if nproc > 1 and not under_torchrun():
        launch_local_ranks(nproc, job)
    else:
        job.run()
