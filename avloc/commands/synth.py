"""`avloc synth`: synthetic VGG-Sound-like clips and synthetic benchmark sets in the real layouts."""

from __future__ import annotations

from pathlib import Path

import click

from avloc.errors import InputError

BENCHMARK_CHOICES = ("vggss", "flickr", "avsbench-s4", "avsbench-ms3", "all")
# Sub-folder of --out each benchmark goes to (AVSBench's two roots share one folder, as in
# the real download).
BENCHMARK_FOLDERS = {"vggss": "vggss", "flickr": "flickr", "avsbench-s4": "avsbench", "avsbench-ms3": "avsbench"}


class FrameSize(click.ParamType):
    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            w, h = (int(v) for v in str(value).lower().split("x"))
        except ValueError:
            self.fail(f"{value!r} is not WIDTHxHEIGHT, e.g. 320x240", param, ctx)
        if w < 16 or h < 16 or w > 4096 or h > 4096:
            self.fail(f"{value!r}: width and height must be between 16 and 4096", param, ctx)
        return w, h


@click.command("synth")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder.")
@click.option("--n", "n_clips", type=click.IntRange(min=1), default=None,
              help="Number of clips [default: 32; with --benchmark, clips are written only if --n is given].")
@click.option("--seed", type=int, default=0, show_default=True, help="Everything written is a function of the seed.")
@click.option("--classes", "n_classes", type=click.IntRange(1, 16), default=4, show_default=True,
              help="Number of classes (clips and benchmarks share them, so a model trained on the clips can be scored).")
@click.option("--duration", type=click.FloatRange(min=0.5, max=600), default=10.0, show_default=True,
              help="Clip length in seconds.")
@click.option("--fps", type=click.FloatRange(min=1, max=120), default=25.0, show_default=True)
@click.option("--size", type=FrameSize(), default="320x240", show_default=True, help="Clip frame size WxH.")
@click.option("--container", type=click.Choice(["mp4", "webm", "mkv"]), default="mp4", show_default=True,
              help="mp4/mkv: H.264 + AAC; webm: VP9 + Opus (override with --video-codec/--audio-codec).")
@click.option("--video-codec", default=None, help="ffmpeg video encoder name.")
@click.option("--audio-codec", default=None, help="ffmpeg audio encoder name.")
@click.option("--sample-rate", type=click.IntRange(min=8000, max=96000), default=16000, show_default=True)
@click.option("--stereo", is_flag=True, help="Two audio channels instead of one.")
@click.option("--test-fraction", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Share of clips in the csv's test split.")
@click.option("--frame-noise", type=click.FloatRange(0, 32), default=0.0, show_default=True,
              help="Per-frame sensor noise (std, 8-bit levels): every frame differs, as in real footage.")
@click.option("--benchmark", type=click.Choice(BENCHMARK_CHOICES), default=None,
              help="Also (or only) write synthetic benchmark sets in the real layouts, under OUT/<vggss|flickr|avsbench>.")
@click.option("--items", "n_items", type=click.IntRange(min=1), default=16, show_default=True,
              help="Test items per benchmark.")
@click.option("--flickr-layout", type=click.Choice(["flat", "split"]), default="flat", show_default=True,
              help="Flickr: all files in one folder, or frames/ audio/ Annotations/.")
@click.option("--distractors", "distractor_looks", type=click.Choice(["silent", "class"]), default="silent",
              show_default=True, help="Distractor objects look like classes outside the set (silent) or like "
                                      "the set's other classes (class: harder, partly ambiguous).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Processes.")
@click.option("--overwrite", is_flag=True, help="Regenerate clips that already exist (other settings allowed).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def command(out_dir, n_clips, seed, n_classes, duration, fps, size, container, video_codec, audio_codec,
            sample_rate, stereo, test_fraction, frame_noise, benchmark, n_items, flickr_layout, distractor_looks,
            workers, overwrite, no_progress):
    """Generate synthetic clips (one sounding object whose look and sound follow its class) and,
    with --benchmark, evaluation sets in the VGG-SS, Flickr-SoundNet and AVSBench layouts."""
    from avloc.tools.synth import generate_clips
    from avloc.tools.synth_layouts import write_benchmark

    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a folder")
    progress = not no_progress
    if benchmark is None or n_clips is not None:
        width, height = size
        s = generate_clips(out_dir, n_clips or 32, seed=seed, n_classes=n_classes, duration=duration, fps=fps,
                           width=width, height=height, container=container, video_codec=video_codec,
                           audio_codec=audio_codec, sample_rate=sample_rate, channels=2 if stereo else 1,
                           test_fraction=test_fraction, frame_noise=frame_noise, distractor_looks=distractor_looks,
                           workers=workers, progress=progress,
                           overwrite=overwrite)
        n_test = sum(it["split"] == "test" for it in s.items)
        click.echo(f"clips: {len(s.items)} in {s.clips_dir} ({s.generated} written, {len(s.items) - s.generated} "
                   f"already present; {n_test} test), {len(s.classes)} classes")
        click.echo(f"metadata: {s.csv_path}  boxes: {s.boxes_path}")
    if benchmark is not None:
        names = BENCHMARK_FOLDERS if benchmark == "all" else [benchmark]
        for name in names:
            b = write_benchmark(out_dir / BENCHMARK_FOLDERS[name], name, n_items, seed=seed,
                                n_classes=n_classes, layout=flickr_layout, distractor_looks=distractor_looks,
                                workers=workers,
                                progress=progress)
            n_test = sum(it["split"] == "test" for it in b.items)
            click.echo(f"{name}: {n_test} test items ({len(b.items)} in all) in {b.root}")
