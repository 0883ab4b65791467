"""Benchmark name -> reader of its raw layout."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from avloc.errors import InputError
from avloc.evaluation.items import BenchmarkSet

BENCHMARKS = ("avsbench", "avsbench-ms3", "vggss", "vggss-heard", "vggss-unheard", "flickr")


def load_benchmark(benchmark: str, root, *, annotations: Optional[Path] = None, test_list: Optional[Path] = None,
                   whole_clip_audio: bool = False) -> BenchmarkSet:
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--data-root {root} is not a directory")
    if benchmark in ("vggss", "vggss-heard", "vggss-unheard"):
        from avloc.evaluation.vggss import load_vggss

        return load_vggss(root, benchmark, annotations=annotations, test_list=test_list)
    if benchmark == "flickr":
        from avloc.evaluation.flickr import load_flickr

        return load_flickr(root, test_list=test_list)
    if benchmark in ("avsbench", "avsbench-ms3"):
        from avloc.evaluation.avsbench import load_avsbench

        return load_avsbench(root, benchmark, whole_clip_audio=whole_clip_audio)
    raise InputError(f"unknown benchmark {benchmark!r}; choose one of {', '.join(BENCHMARKS)}")
