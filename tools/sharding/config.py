"""``avloc shard``'s options as one frozen object; ``problems()`` lists every wrong one at once."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import List, Optional

from avloc import schema
from avloc.tools.sharding.decode import DECODERS, DEFAULT_DECODER
from avloc.tools.sharding.distributors import DISTRIBUTORS
from avloc.tools.sharding.sample_builder import MIN_FRAME_SIDE
from avloc.utils.options import CommandOptions, choice_problem


def as_path_list(value) -> list:
    """None, one path or a list of paths -> a list of Paths."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [Path(v) for v in value]
    return [Path(value)]


def _between(flag: str, value, low, high, upper_open: bool = False) -> List[str]:
    inside = low <= value < high if upper_open else low <= value <= high
    if inside:
        return []
    interval = f"[{low}, {high})" if upper_open else f"[{low}, {high}]"
    return [f"{flag} must be in {interval}, got {value}"]


def _json_path_problems(path: Path) -> List[str]:
    """``--json``'s folder must exist and be writable, and the path must not be a folder."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        return [f"--json {path} is a folder"]
    if not folder.is_dir():
        return [f"--json {path}: folder {folder} does not exist"]
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return [f"--json {path} is not writable"]
    return []


@dataclasses.dataclass(frozen=True)
class ShardConfig(CommandOptions):
    clips: Path
    out: Path
    csv: Optional[Path] = None
    subset: Optional[Path] = None
    exclude: Optional[list] = None  # one path or a list of paths
    test_ids: Optional[list] = None  # one path or a list of paths
    boxes: Optional[Path] = None
    val_fraction: float = 0.0
    val_list: Optional[Path] = None
    workers: Optional[int] = None  # None: all usable cores
    samples_per_shard: int = 1000
    keep_audio: bool = False
    frame_size: int = schema.FRAME_SHORT_SIDE
    jpeg_quality: int = schema.JPEG_QUALITY
    seed: int = 0
    overwrite: bool = False
    decoder: str = DEFAULT_DECODER
    decoder_threads: Optional[int] = None  # threads per video decoder in every worker; None: cores / workers
    distributor: str = "local"
    progress: bool = True
    report_json: Optional[Path] = None  # also write the report here
    clip_timeout_s: float = 120.0  # one clip (open, probe, decode, build); its worker is killed after it
    clip_memory_mb: Optional[int] = 2048  # address space one clip may add to its worker; None: no bound
    min_frame_side: int = MIN_FRAME_SIDE  # frames with a shorter side below it are refused; 1: accept all

    def problems(self) -> List[str]:
        """Every problem with the arguments, found before any work."""
        found = []
        if not Path(self.clips).is_dir():
            found.append(f"--clips {self.clips} is not a folder")
        for flag, value in (("--csv", self.csv), ("--subset", self.subset), ("--exclude", self.exclude),
                            ("--test-ids", self.test_ids), ("--boxes", self.boxes), ("--val-list", self.val_list)):
            found += [f"{flag} {p} is not a file" for p in as_path_list(value) if not p.is_file()]
        if self.workers is not None and self.workers < 1:
            found.append(f"--workers must be >= 1, got {self.workers}")
        if self.samples_per_shard < 1:
            found.append(f"--samples-per-shard must be >= 1, got {self.samples_per_shard}")
        found += _between("--val-fraction", self.val_fraction, 0.0, 1.0, upper_open=True)
        found += _between("--frame-size", self.frame_size, 16, 4096)
        found += _between("--jpeg-quality", self.jpeg_quality, 1, 100)
        if self.decoder_threads is not None:
            found += _between("--decoder-threads", self.decoder_threads, 1, 64)
        found += choice_problem("--decoder", self.decoder, DECODERS)
        found += choice_problem("--distributor", self.distributor, DISTRIBUTORS)
        if not self.clip_timeout_s > 0:
            found.append(f"--clip-timeout must be > 0 seconds, got {self.clip_timeout_s}")
        if self.clip_memory_mb is not None and self.clip_memory_mb < 64:
            found.append(f"--clip-memory must be >= 64 MB, got {self.clip_memory_mb}")
        found += _between("--min-frame-side", self.min_frame_side, 1, 4096)
        if self.report_json is not None:
            found += _json_path_problems(Path(self.report_json))
        if not found and Path(self.out).resolve() == Path(self.clips).resolve():
            found.append("--out must not be the --clips folder")
        return found
