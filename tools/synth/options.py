"""``avloc synth``'s options as one frozen object, checked at once, and the run they describe."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List, Optional

from avloc.evaluation.object_prior import prior_line
from avloc.tools.synth.clips import SynthSet, generate_clips, tone_problems
from avloc.tools.synth.encode import codec_problems
from avloc.tools.synth.layouts import BENCHMARK_FOLDERS, BENCHMARKS, FLICKR_LAYOUTS, TWO_CLASS_LAYOUTS, write_benchmark
from avloc.tools.synth.scene import DEFAULT_DISTRACTOR_LOOKS, DISTRACTOR_LOOKS, MAX_CLASSES, distractor_problems
from avloc.utils.options import CommandOptions, choice_problem, range_problem

BENCHMARK_CHOICES = BENCHMARKS + ("all",)
DEFAULT_N_CLIPS = 32


def parse_size(text: str) -> Optional[tuple]:
    """'320x240' -> (320, 240); None when it is not WIDTHxHEIGHT."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        return None
    return w, h


@dataclasses.dataclass(frozen=True)
class SynthOptions(CommandOptions):
    out: Path
    n_clips: Optional[int] = None  # None: DEFAULT_N_CLIPS, or no clips when a benchmark is asked for
    seed: int = 0
    n_classes: int = 4
    duration: float = 10.0
    fps: float = 25.0
    size: str = "320x240"
    container: str = "mp4"
    video_codec: Optional[str] = None
    audio_codec: Optional[str] = None
    sample_rate: int = 16000
    stereo: bool = False
    test_fraction: float = 0.2
    frame_noise: float = 0.0
    benchmark: Optional[str] = None  # one of BENCHMARK_CHOICES
    n_items: int = 16
    flickr_layout: str = "flat"
    distractor_looks: str = DEFAULT_DISTRACTOR_LOOKS
    workers: int = 1
    overwrite: bool = False
    progress: bool = True

    @property
    def writes_clips(self) -> bool:
        return self.benchmark is None or self.n_clips is not None

    @property
    def benchmarks(self) -> list:
        if self.benchmark is None:
            return []
        return list(BENCHMARKS) if self.benchmark == "all" else [self.benchmark]

    def _size_problems(self) -> List[str]:
        dims = parse_size(self.size)
        if dims is None:
            return [f"--size {self.size!r} is not WIDTHxHEIGHT, e.g. 320x240"]
        if not all(16 <= v <= 4096 for v in dims):
            return [f"--size {self.size!r}: width and height must be between 16 and 4096"]
        return []

    def problems(self) -> List[str]:
        found = []
        if Path(self.out).exists() and not Path(self.out).is_dir():
            found.append(f"--out {self.out} exists and is not a folder")
        found += range_problem("--n-clips", self.n_clips, 1)
        found += range_problem("--classes", self.n_classes, 1, MAX_CLASSES)
        found += range_problem("--duration", self.duration, 0.5, 600)
        found += range_problem("--fps", self.fps, 1, 120)
        found += self._size_problems()
        found += range_problem("--sample-rate", self.sample_rate, 8000, 96000)
        found += range_problem("--test-fraction", self.test_fraction, 0, 1)
        found += range_problem("--frame-noise", self.frame_noise, 0, 32)
        found += range_problem("--items", self.n_items, 1)
        found += range_problem("--workers", self.workers, 1)
        found += choice_problem("--flickr-layout", self.flickr_layout, FLICKR_LAYOUTS)
        if self.benchmark is not None:
            found += choice_problem("--benchmark", self.benchmark, BENCHMARK_CHOICES)
        if self.distractor_looks not in DISTRACTOR_LOOKS:
            found += choice_problem("--distractors", self.distractor_looks, DISTRACTOR_LOOKS)
        elif 1 <= self.n_classes <= MAX_CLASSES:
            found += distractor_problems(self.n_classes, self.distractor_looks)
        for name in self.benchmarks:
            if name in TWO_CLASS_LAYOUTS and self.n_classes < 2:
                found.append(f"--benchmark {name} needs between 2 and {MAX_CLASSES} classes (--classes), "
                             f"got {self.n_classes}")
        if self.writes_clips:
            found += self._clip_problems()
        return found

    def _clip_problems(self) -> List[str]:
        found = codec_problems(self.container, self.video_codec, self.audio_codec,
                               flags=("--container", "--video-codec", "--audio-codec"))
        if 1 <= self.n_classes <= MAX_CLASSES and self.sample_rate >= 8000:
            found += tone_problems(self.n_classes, self.sample_rate)
        return found


@dataclasses.dataclass
class SynthRun:
    clips: Optional[SynthSet]
    benchmarks: list  # (name, SynthBenchmarkCopy) per copy written


def run_synth(options: SynthOptions) -> SynthRun:
    """Write what ``options`` asks for: clips, benchmark copies, or both."""
    options.checked()
    out = Path(options.out)
    clips = None
    if options.writes_clips:
        width, height = parse_size(options.size)
        clips = generate_clips(
            out, options.n_clips or DEFAULT_N_CLIPS, seed=options.seed, n_classes=options.n_classes,
            duration=options.duration, fps=options.fps, width=width, height=height, container=options.container,
            video_codec=options.video_codec, audio_codec=options.audio_codec, sample_rate=options.sample_rate,
            channels=2 if options.stereo else 1, test_fraction=options.test_fraction, frame_noise=options.frame_noise,
            distractor_looks=options.distractor_looks, workers=options.workers, progress=options.progress,
            overwrite=options.overwrite)
    copies = []
    for name in options.benchmarks:
        copies.append((name, write_benchmark(out / BENCHMARK_FOLDERS[name], name, options.n_items, seed=options.seed,
                                             n_classes=options.n_classes, layout=options.flickr_layout,
                                             distractor_looks=options.distractor_looks, workers=options.workers,
                                             progress=options.progress)))
    return SynthRun(clips=clips, benchmarks=copies)


def format_synth_run(run: SynthRun, out) -> str:
    """What the CLI prints: where everything went, and how to score a model on each benchmark copy."""
    lines = []
    s = run.clips
    if s is not None:
        n_test = sum(it["split"] == "test" for it in s.items)
        lines.append(f"clips: {len(s.items)} in {s.clips_dir} ({s.generated} written, {len(s.items) - s.generated} "
                     f"already present; {n_test} test), {len(s.classes)} classes")
        lines.append(f"metadata: {s.csv_path}  boxes: {s.boxes_path}")
    for name, b in run.benchmarks:
        n_test = sum(it["split"] == "test" for it in b.items)
        lines.append(f"{name}: {n_test} test items ({len(b.items)} in all) in {b.root}")
        if b.object_prior is not None:
            lines.append(f"  {prior_line(b.object_prior)} (a model that finds objects but ignores the sound "
                         f"scores about 'random object')")
        lines.append(f"  score with: avloc evaluate --benchmark {name} --data-root {Path(out) / BENCHMARK_FOLDERS[name]}")
    return "\n".join(lines)

