"""Benchmark names and the reader of each one's raw layout.

The names are the ones ``avloc synth --benchmark`` writes (``avsbench-s4``, ``avsbench-ms3``,
``vggss``, ``flickr``), plus the VGG-SS heard/unheard subsets; ``avsbench`` is kept as an
alias of ``avsbench-s4``. Importing this module loads no torch (the CLI reads the choices).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from avloc.errors import InputError

if TYPE_CHECKING:
    from avloc.evaluation.items import BenchmarkSet

# The single- and multi-source leaderboard sets (benchmarks-more): read by ``avgn`` / ``slavc``,
# scored per source by ``rowscoring``. What each reports, its defaults and the published FNAC
# figure live in LEADERBOARD below.
LEADERBOARD_BENCHMARKS = ("vggsound-single", "vggsound-duet", "music-solo", "music-duet", "vgginstruments",
                          "vgginstruments-multi", "flickr-extended", "vggss-extended")
BENCHMARKS = ("avsbench-s4", "avsbench-ms3", "vggss", "vggss-heard", "vggss-unheard", "flickr") + LEADERBOARD_BENCHMARKS
BENCHMARK_ALIASES = {"avsbench": "avsbench-s4"}  # the S4 set's name before it matched `avloc synth`'s
ALL_AVAILABLE = "all-available"  # every benchmark found under --data-root, one summary
BENCHMARK_CHOICES = BENCHMARKS + tuple(BENCHMARK_ALIASES) + (ALL_AVAILABLE,)
# Items in the complete official test lists: only a run scoring all of them compares with papers.
FULL_SET_SIZES = {"vggss": 5158, "flickr": 249, "vggsound-single": 5158, "vggsound-duet": 5158, "music-solo": 2124,
                  "music-duet": 1020, "vgginstruments": 446, "vgginstruments-multi": 446,
                  "flickr-extended": 249 + 250, "vggss-extended": 5158 + 5158}


@dataclasses.dataclass(frozen=True)
class LeaderboardInfo:
    """What one leaderboard set reports and how, by default.

    ``kind``: "single" (one source per item), "duet" (two sources; ``two_frames``: each on its
    own frame, a synthetic duet) or "extended" (single source plus non-sounding pairs).
    ``headline``: (metric, t) where metric is "success" (IoU@t / CIoU@t), "ap" or "max_f1".
    ``compare``: the default comparison of the success rate. ``published``: FNAC's leaderboard
    figure as (label, value) or None."""

    kind: str
    headline: tuple
    thresholds: tuple
    compare: str
    published: Optional[tuple]
    two_frames: bool = False
    music: bool = False


_AVGN = ">"  # AVGN's evaluation code counts cIoU > t
LEADERBOARD = {
    "vggsound-single": LeaderboardInfo("single", ("success", 0.5), (0.5,), _AVGN, ("IoU@0.5", 48.4)),
    "vggsound-duet": LeaderboardInfo("duet", ("success", 0.3), (0.3,), _AVGN, ("CIoU@0.3", 35.1), two_frames=True),
    "music-solo": LeaderboardInfo("single", ("success", 0.5), (0.5,), _AVGN, ("IoU@0.5", 64.5), music=True),
    "music-duet": LeaderboardInfo("duet", ("success", 0.3), (0.3,), _AVGN, ("CIoU@0.3", 37.9), music=True),
    "vgginstruments": LeaderboardInfo("single", ("success", 0.3), (0.3,), _AVGN, ("IoU@0.3", 63.2)),
    "vgginstruments-multi": LeaderboardInfo("duet", ("success", 0.1), (0.1, 0.3), _AVGN, ("CIoU@0.1", 84.1),
                                            two_frames=True),
    "flickr-extended": LeaderboardInfo("extended", ("ap", None), (0.5,), ">=", None),
    "vggss-extended": LeaderboardInfo("extended", ("ap", None), (0.5,), ">=", None),
}


def canonical_benchmark(name: str) -> str:
    """``avsbench`` -> ``avsbench-s4``; every other known name unchanged."""
    name = BENCHMARK_ALIASES.get(name, name)
    if name not in BENCHMARKS:
        raise InputError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARK_CHOICES)}")
    return name


def load_benchmark(benchmark: str, root, *, annotations: Optional[Path] = None, test_list: Optional[Path] = None,
                   whole_clip_audio: bool = False, music_window: str = "video-centre") -> "BenchmarkSet":
    benchmark = canonical_benchmark(benchmark)
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--data-root {root} is not a directory")
    if benchmark in LEADERBOARD_BENCHMARKS:
        return _load_leaderboard(benchmark, root, annotations, test_list, music_window)
    if benchmark in ("vggss", "vggss-heard", "vggss-unheard"):
        from avloc.evaluation.vggss import load_vggss

        return load_vggss(root, benchmark, annotations=annotations, test_list=test_list)
    if benchmark == "flickr":
        from avloc.evaluation.flickr import load_flickr

        return load_flickr(root, test_list=test_list)
    from avloc.evaluation.avsbench import load_avsbench

    return load_avsbench(root, benchmark, whole_clip_audio=whole_clip_audio)


def _load_leaderboard(benchmark, root, annotations, test_list, music_window) -> "BenchmarkSet":
    from avloc.evaluation import avgn, slavc

    if benchmark.startswith("vggsound-"):
        return avgn.load_vggsound_pairs(root, benchmark, annotations=annotations, test_list=test_list)
    if benchmark.startswith("music-"):
        return avgn.load_music(root, benchmark, annotations=annotations, test_list=test_list, window=music_window)
    if benchmark.startswith("vgginstruments"):
        return avgn.load_vgginstruments(root, benchmark, test_list=test_list)
    return slavc.load_extended(root, benchmark, annotations=annotations, test_list=test_list)
