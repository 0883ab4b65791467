"""Benchmark names and the reader of each one's raw layout.

The names are the ones ``avloc synth --benchmark`` writes (``avsbench-s4``, ``avsbench-ms3``,
``vggss``, ``flickr``), plus the VGG-SS heard/unheard subsets; ``avsbench`` is kept as an
alias of ``avsbench-s4``. Importing this module loads no torch (the CLI reads the choices).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from avloc.errors import InputError

if TYPE_CHECKING:
    from avloc.evaluation.items import BenchmarkSet

BENCHMARKS = ("avsbench-s4", "avsbench-ms3", "vggss", "vggss-heard", "vggss-unheard", "flickr")
BENCHMARK_ALIASES = {"avsbench": "avsbench-s4"}  # the S4 set's name before it matched `avloc synth`'s
BENCHMARK_CHOICES = BENCHMARKS + tuple(BENCHMARK_ALIASES)
# Items in the complete official test lists: only a run scoring all of them compares with papers.
FULL_SET_SIZES = {"vggss": 5158, "flickr": 249}


def canonical_benchmark(name: str) -> str:
    """``avsbench`` -> ``avsbench-s4``; every other known name unchanged."""
    name = BENCHMARK_ALIASES.get(name, name)
    if name not in BENCHMARKS:
        raise InputError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARK_CHOICES)}")
    return name


def load_benchmark(benchmark: str, root, *, annotations: Optional[Path] = None, test_list: Optional[Path] = None,
                   whole_clip_audio: bool = False) -> "BenchmarkSet":
    benchmark = canonical_benchmark(benchmark)
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--data-root {root} is not a directory")
    if benchmark in ("vggss", "vggss-heard", "vggss-unheard"):
        from avloc.evaluation.vggss import load_vggss

        return load_vggss(root, benchmark, annotations=annotations, test_list=test_list)
    if benchmark == "flickr":
        from avloc.evaluation.flickr import load_flickr

        return load_flickr(root, test_list=test_list)
    from avloc.evaluation.avsbench import load_avsbench

    return load_avsbench(root, benchmark, whole_clip_audio=whole_clip_audio)
