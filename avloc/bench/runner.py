"""Run benchmark scenarios and gather their records: the library behind ``avloc bench-throughput``."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import List, Optional

from avloc.bench.harness import BenchContext, Record, fill_ratios, load_average, machine_info
from avloc.errors import InputError
from avloc.utils.options import CommandOptions, choice_problem
from avloc.utils.progress import log
from avloc.utils.system import first_line, pid_alive

SCENARIOS = ("shard", "loaders", "kernels", "train", "evaluate", "rehearsal")
SCENARIO_CHOICES = SCENARIOS + ("all",)
WORKDIR_PREFIX = "avloc-bench-"
KEEP_MARKER = ".kept"  # in a scratch folder kept on purpose (--keep-workdir): never removed as stale


@dataclasses.dataclass(frozen=True)
class BenchOptions(CommandOptions):
    scenario: str = "all"
    shards: Optional[Path] = None  # a shards folder (dataset.json); None -> synthesise
    quick: bool = False
    json_out: Optional[Path] = None
    plot_out: Optional[Path] = None
    keep_workdir: bool = False
    progress: bool = True

    def problems(self) -> List[str]:
        found = choice_problem("--scenario", self.scenario, SCENARIO_CHOICES)
        if self.shards is not None:
            if not Path(self.shards).exists():
                found.append(f"--shards {self.shards} does not exist")
            elif not (Path(self.shards) / "dataset.json").is_file():
                found.append(f"--shards {self.shards} is not a shards folder (no dataset.json; make one with avloc shard)")
        return found

    @property
    def names(self) -> tuple:
        return SCENARIOS if self.scenario == "all" else (self.scenario,)


def run_scenarios(names, ctx: BenchContext) -> list:
    """Run each named scenario; a scenario that cannot run is reported as skipped with its reason."""
    records: list[Record] = []
    for name in names:
        if name not in SCENARIOS:
            raise InputError(f"unknown benchmark scenario {name!r}; known: {', '.join(SCENARIOS)}")
        log(f"bench: scenario {name} ({'quick' if ctx.quick else 'full'})")
        try:
            module = importlib.import_module(f"avloc.bench.{name}")
            records.extend(module.run(ctx))
        except ImportError as exc:
            records.append(Record(scenario=name, variant="*", size="-", value=None, unit="-",
                                  higher_is_better=True, skipped=f"skipped: missing dependency ({exc})"))
        except Exception as exc:  # one broken scenario must not hide the others' results
            log(f"bench: scenario {name} failed: {type(exc).__name__}: {first_line(exc)}")
            records.append(Record(scenario=name, variant="*", size="-", value=None, unit="-",
                                  higher_is_better=True, skipped=f"failed: {type(exc).__name__}: {exc}"[:300]))
    return fill_ratios(records)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@contextlib.contextmanager
def sigterm_unwinds():
    """SIGTERM (kill, a batch scheduler, timeout) unwinds the stack like Ctrl-C, so cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def remove_stale_workdirs(parent=None) -> int:
    """Remove scratch folders of runs that were killed (SIGKILL leaves no chance to clean up): a
    folder is named after its run's process id, and is stale once that process is gone."""
    parent = Path(parent or tempfile.gettempdir())
    removed = 0
    for folder in parent.glob(f"{WORKDIR_PREFIX}*"):
        m = re.match(rf"^{re.escape(WORKDIR_PREFIX)}(\d+)-", folder.name)
        if (m and folder.is_dir() and not folder.is_symlink() and not (folder / KEEP_MARKER).exists()
                and not pid_alive(int(m.group(1)))):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def run_bench(options: BenchOptions) -> tuple:
    """Run the chosen scenarios in a scratch folder (removed afterwards, also on Ctrl-C, SIGTERM or an
    error, unless ``keep_workdir``; one left by a killed run is removed by the next), write the JSON /
    PNG asked for; returns (records, machine)."""
    load_at_start = load_average()
    remove_stale_workdirs()
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))
    try:
        with sigterm_unwinds():
            ctx = BenchContext(workdir=workdir, quick=options.quick, shards=options.shards, device=default_device(),
                               progress=options.progress)
            records = run_scenarios(options.names, ctx)
    finally:
        if options.keep_workdir:
            (workdir / KEEP_MARKER).touch()
            log(f"bench: scratch folder kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    machine = machine_info(load_at_start)
    if options.json_out or options.plot_out:
        from avloc.bench.results import write_results

        write_results(records, machine=machine, json_path=options.json_out, png_path=options.plot_out)
    return records, machine
