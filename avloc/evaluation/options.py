"""What one evaluation is asked to do: ``EvaluateOptions``, checked once, every problem listed.

Cheap to import (no torch): ``avloc evaluate`` builds the options, calls ``.checked()`` and
hands them to ``avloc.evaluation.runner.evaluate``; a notebook does the same.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import List, Optional

from avloc.audio_controls import parse_controls
from avloc.evaluation.benchmarks import ALL_AVAILABLE, BENCHMARK_ALIASES, BENCHMARK_CHOICES, LEADERBOARD
from avloc.metrics import UPSAMPLE_MODES
from avloc.utils.options import CommandOptions, choice_problem, range_problem, writable_folder_problems
from avloc.utils.system import DEVICE_CHOICES

# Samples per network call: every sample goes through kernels of the same shapes whatever the
# loading batch, so scores do not depend on --batch-size. Keep it for comparable runs.
COMPUTE_CHUNK = 16
_PATH_FIELDS = ("data_root", "checkpoint", "out", "ogl_weights", "annotations", "test_list")


@dataclasses.dataclass(frozen=True)
class EvaluateOptions(CommandOptions):
    benchmark: str
    data_root: Path
    checkpoint: Path
    out: Optional[Path] = None  # None: no report files (results are still returned)
    upsample: str = "bicubic"
    batch_size: int = 32
    workers: int = 0
    device: str = "cpu"
    ogl: bool = False
    ogl_weights: Optional[Path] = None
    overlays: int = 6
    whole_clip_audio: bool = False
    annotations: Optional[Path] = None
    test_list: Optional[Path] = None
    limit: Optional[int] = None  # score only the first N found items (quick checks, benchmarks)
    seed: int = 0
    compute_chunk: int = COMPUTE_CHUNK
    progress: bool = True
    write_reports: bool = True
    audio_controls: str = "silence,shuffled"  # rows with the audio replaced (avloc.audio_controls); "none"
    # leaderboard sets only (benchmarks.LEADERBOARD); None = the set's default
    threshold_rule: Optional[str] = None  # median | relmax:F | fixed:T (default median)
    success_compare: Optional[str] = None  # ">" | ">=" for IoU@t / CIoU@t (default per set)
    duet_geometry: Optional[str] = None  # source | canvas (synthetic duets; default source)
    music_window: Optional[str] = None  # video-centre | frame-second (MUSIC; default video-centre)
    duet_average: Optional[str] = None  # source | frame (duets; default source)

    def __post_init__(self):
        for name in _PATH_FIELDS:  # accept str paths from notebooks
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(value))

    @property
    def writes_reports(self) -> bool:
        return self.write_reports and self.out is not None

    def problems(self) -> List[str]:
        found = choice_problem("--benchmark", self.benchmark, BENCHMARK_CHOICES)
        found += choice_problem("--upsample", self.upsample, UPSAMPLE_MODES)
        found += device_problems(self.device)
        for name, value, low in (("--batch-size", self.batch_size, 1), ("--workers", self.workers, 0),
                                 ("--overlays", self.overlays, 0), ("--limit", self.limit, 1),
                                 ("--compute-chunk", self.compute_chunk, 1)):
            found += range_problem(name, value, low)
        try:
            parse_controls(self.audio_controls)
        except ValueError as exc:
            found.append(f"--audio-control: {exc}")
        found += leaderboard_option_problems(self)
        if not self.data_root.is_dir():
            found.append(f"--data-root {self.data_root} is not a directory")
        if not self.checkpoint.is_file():
            found.append(f"--checkpoint: checkpoint not found: {self.checkpoint}")
        if self.writes_reports:
            found += writable_folder_problems("--out", self.out)
        return found


def device_problems(device: str) -> List[str]:
    if device in DEVICE_CHOICES or re.fullmatch(r"cuda:\d+", str(device)):
        return []
    return [f"--device must be one of {', '.join(DEVICE_CHOICES)} or cuda:N; got {device!r}"]


LEADERBOARD_CHOICES = {"threshold_rule": None, "success_compare": (">", ">="), "duet_geometry": ("source", "canvas"),
                       "music_window": ("video-centre", "frame-second"), "duet_average": ("source", "frame")}
LEADERBOARD_FLAGS = {"threshold_rule": "--threshold", "success_compare": "--success-compare",
                     "duet_geometry": "--duet-geometry", "music_window": "--music-window",
                     "duet_average": "--duet-average"}


def _applies(field: str, benchmark: str) -> bool:
    info = LEADERBOARD.get(benchmark)
    if benchmark == ALL_AVAILABLE:
        return True
    if info is None:
        return False
    if field == "duet_geometry":
        return info.two_frames
    if field == "music_window":
        return info.music
    if field == "duet_average":
        return info.kind == "duet"
    return True


def leaderboard_option_problems(options) -> List[str]:
    """Bad values of the leaderboard options, and options given for a benchmark they do not apply to."""
    from avloc.metrics import parse_threshold_rule

    found = []
    benchmark = BENCHMARK_ALIASES.get(options.benchmark, options.benchmark)
    for field, choices in LEADERBOARD_CHOICES.items():
        value, flag = getattr(options, field), LEADERBOARD_FLAGS[field]
        if value is None:
            continue
        if field == "threshold_rule":
            try:
                parse_threshold_rule(value)
            except ValueError as exc:
                found.append(f"{flag}: {exc}")
                continue
        elif value not in choices:
            found += choice_problem(flag, value, choices)
            continue
        if benchmark in BENCHMARK_CHOICES and not _applies(field, benchmark):
            found.append(f"{flag} does not apply to --benchmark {options.benchmark}")
    return found
