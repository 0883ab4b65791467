"""`avloc train`: train FNAC from shards, in this process, under torchrun, or on N local processes (--nproc)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from avloc.errors import AvlocError, InputError


def _launch_local_ranks(nproc: int, argv: list) -> None:
    """Run ``torchrun --standalone --nproc-per-node N -m avloc.train ...`` (torchrun's launcher, in-process)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    launch = ["--standalone", f"--nproc-per-node={nproc}", "-m", "avloc.train", *argv]
    click.echo(f"avloc train: launching {nproc} processes: torchrun {' '.join(launch)}", err=True)
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    try:
        run(get_args_parser().parse_args(launch))
    except ChildFailedError as exc:
        codes = sorted({f.exitcode for f in exc.failures.values()})
        error = InputError if codes == [InputError.exit_code] else AvlocError
        raise error(f"training failed on {len(exc.failures)} of {nproc} rank(s) (exit code(s) "
                    f"{', '.join(map(str, codes))}); the ranks' messages are above") from None


@click.command("train")
@click.option("--shards", type=click.Path(path_type=Path), required=True, help="Shards folder written by `avloc shard`.")
@click.option("--out", "run_dir", type=click.Path(path_type=Path), required=True,
              help="Run folder: config.yaml, metrics.jsonl, checkpoints/{latest,best}.pt.")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="YAML file of config keys (defaults = the published FNAC recipe).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one config key (repeatable), e.g. --set batch_size=64 --set image_size=128.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoints/latest.pt.")
@click.option("--nproc", type=int, default=1, show_default=True,
              help="Train with N local processes (DDP via torchrun; gloo on CPU, NCCL on GPU).")
@click.option("--global-negatives", is_flag=True, default=None,
              help="All-gather embeddings across ranks so negatives span the global batch.")
def command(shards, run_dir, config_file, overrides, resume, nproc, global_negatives):
    """Train FNAC on the train split of --shards, validating every epoch on its val split."""
    from avloc.training.config import build_config, load_saved_config

    if nproc < 1:
        raise InputError(f"--nproc must be >= 1, got {nproc}")
    if not shards.is_dir():
        raise InputError(f"--shards {shards} is not a directory")
    base = None
    saved = run_dir / "config.yaml"
    if resume and saved.is_file():
        base = load_saved_config(saved)
    sets = list(overrides) + (["global_negatives=true"] if global_negatives else [])
    cfg = build_config(config_file, sets, base=base)  # config problems are reported once, before any launch

    if nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        argv = ["--shards", str(shards), "--out", str(run_dir)]
        argv += ["--config", str(config_file)] if config_file else []
        argv += [arg for item in overrides for arg in ("--set", item)]
        argv += ["--resume"] if resume else []
        argv += ["--global-negatives"] if global_negatives else []
        _launch_local_ranks(nproc, argv)
        return

    from avloc.training.loop import run_training

    run_training(shards, run_dir, config=cfg, resume=resume)
