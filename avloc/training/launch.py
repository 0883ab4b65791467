"""One training job, run here or on N local ranks (``avloc train --nproc N``).

A ``TrainJob`` is what ``avloc train`` resolved once: the shards, the run folder, whether to
resume, and the checked config. For ``--nproc N`` the launcher writes the job to a YAML file and
runs ``torchrun --standalone --nproc-per-node N -m avloc.training.launch JOB``; every rank reads
that file, so every option reaches the ranks exactly as resolved (no command line is rebuilt).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
from pathlib import Path

import click
import yaml

from avloc.errors import AvlocError, InputError, run_click_command
from avloc.training.config import TrainConfig, build_config
from avloc.utils.progress import log
from avloc.utils.system import usable_cores


@dataclasses.dataclass(frozen=True)
class TrainJob:
    shards: Path
    out: Path
    config: TrainConfig
    resume: bool = False

    def run(self) -> dict:
        """Train in this process (the only one, or one rank under torchrun); returns the summary."""
        from avloc.training.loop import run_training

        return run_training(self.shards, self.out, config=self.config, resume=self.resume)

    def to_yaml(self) -> str:
        data = dataclasses.asdict(self)  # the config becomes a plain mapping
        data.update(shards=str(self.shards), out=str(self.out))
        return yaml.safe_dump(data, sort_keys=True)

    @classmethod
    def from_yaml(cls, text: str) -> "TrainJob":
        data = yaml.safe_load(text)
        return cls(shards=Path(data.pop("shards")), out=Path(data.pop("out")),
                   config=build_config(base=data.pop("config")), **data)


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def launch_local_ranks(nproc: int, job: TrainJob) -> None:
    """Run ``job`` on ``nproc`` local ranks with torchrun's launcher, in this process."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    with tempfile.TemporaryDirectory(prefix="avloc-train-") as folder:
        job_file = Path(folder) / "job.yaml"
        job_file.write_text(job.to_yaml())
        launch = ["--standalone", f"--nproc-per-node={nproc}", "-m", "avloc.training.launch", str(job_file)]
        log(f"avloc train: launching {nproc} processes: torchrun {' '.join(launch)}")
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // nproc)))
        try:
            run(get_args_parser().parse_args(launch))
        except ChildFailedError as exc:
            codes = sorted({f.exitcode for f in exc.failures.values()})
            error = InputError if codes == [InputError.exit_code] else AvlocError
            raise error(f"training failed on {len(exc.failures)} of {nproc} rank(s) (exit code(s) "
                        f"{', '.join(map(str, codes))}); the ranks' messages are above") from None


@click.command("avloc.training.launch")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def rank_command(job_file: Path) -> None:
    """One rank of a job written by ``avloc train --nproc N``."""
    TrainJob.from_yaml(job_file.read_text()).run()


if __name__ == "__main__":
    sys.exit(run_click_command(rank_command, None, "avloc.training.launch"))
