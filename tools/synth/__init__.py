"""``avloc synth``: synthetic VGG-Sound-like clips and synthetic copies of the benchmarks.

Modules: ``scene`` (classes, looks, scene layout) and ``render`` (drawing it), ``audio`` (class
sounds), ``encode`` (ffmpeg), ``jobs`` (ids, files, the worker pool), ``clips``
(``generate_clips``), ``layouts`` (``write_benchmark``), ``options`` (the command's options).
"""

from avloc.tools.synth.clips import SynthSet, centre_frame_time, generate_clips, plan_clips
from avloc.tools.synth.layouts import BENCHMARK_FOLDERS, BENCHMARKS, SynthBenchmarkCopy, write_benchmark
from avloc.tools.synth.options import SynthOptions, format_synth_run, run_synth

__all__ = ["BENCHMARKS", "BENCHMARK_FOLDERS", "SynthBenchmarkCopy", "SynthOptions", "SynthSet", "centre_frame_time",
           "format_synth_run", "generate_clips", "plan_clips", "run_synth", "write_benchmark"]
