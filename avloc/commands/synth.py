"""`avloc synth`: synthetic VGG-Sound-like clips and synthetic benchmark copies in the real layouts."""

from __future__ import annotations

from pathlib import Path

import click

from avloc.utils.options import example_epilog

from avloc.tools.synth.encode import CONTAINERS
from avloc.tools.synth.layouts import FLICKR_LAYOUTS
from avloc.tools.synth.options import BENCHMARK_CHOICES, DEFAULT_N_CLIPS
from avloc.tools.synth.scene import DEFAULT_DISTRACTOR_LOOKS, DISTRACTOR_LOOKS, MAX_CLASSES


def _choices(values) -> str:
    return f"[{'|'.join(values)}]"


@click.command("synth",
               epilog=example_epilog("avloc synth --out synth --n-clips 960 --classes 4 --benchmark vggss --workers 8"))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--n-clips", "n_clips", type=int, default=None,
              help=f"Number of clips [default: {DEFAULT_N_CLIPS}; with --benchmark, clips are written only if "
                   "--n-clips is given].")
# old spelling, kept for one release
@click.option("--n", "n_clips_old", type=int, default=None, hidden=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Everything written is a function of the seed.")
@click.option("--classes", "n_classes", type=int, default=4, show_default=True,
              help=f"Number of classes, 1-{MAX_CLASSES} (clips and benchmarks share them, so a model trained on the "
                   "clips can be scored).")
@click.option("--duration", type=float, default=10.0, show_default=True, help="Clip length in seconds (0.5-600).")
@click.option("--fps", type=float, default=25.0, show_default=True, help="Frames per second (1-120).")
@click.option("--size", default="320x240", show_default=True, metavar="WxH", help="Clip frame size WxH.")
@click.option("--container", default="mp4", show_default=True, metavar=_choices(CONTAINERS),
              help="mp4/mkv: H.264 + AAC; webm: VP9 + Opus (override with --video-codec/--audio-codec).")
@click.option("--video-codec", default=None, help="ffmpeg video encoder name.")
@click.option("--audio-codec", default=None, help="ffmpeg audio encoder name.")
@click.option("--sample-rate", type=int, default=16000, show_default=True, help="Audio rate in Hz (8000-96000).")
@click.option("--stereo", is_flag=True, help="Two audio channels instead of one.")
@click.option("--test-fraction", type=float, default=0.2, show_default=True,
              help="Share of clips in the csv's test split.")
@click.option("--frame-noise", type=float, default=0.0, show_default=True,
              help="Per-frame sensor noise (std, 8-bit levels, 0-32): every frame differs, as in real footage.")
@click.option("--benchmark", default=None, metavar=_choices(BENCHMARK_CHOICES),
              help="Also (or only) write synthetic benchmark copies in the real layouts, under "
                   "OUT/<vggss|flickr|avsbench|NAME of a leaderboard set>; the names are those of avloc evaluate --benchmark.")
@click.option("--items", "n_items", type=int, default=16, show_default=True, help="Test items per benchmark.")
@click.option("--flickr-layout", default="flat", show_default=True, metavar=_choices(FLICKR_LAYOUTS),
              help="Flickr: all files in one folder, or frames/ audio/ Annotations/.")
@click.option("--distractors", "distractor_looks", default=DEFAULT_DISTRACTOR_LOOKS, show_default=True,
              metavar=_choices(DISTRACTOR_LOOKS),
              help="class: distractors look like the set's other classes, so only the audio says which object "
                   "sounds (shortcut-free); silent: they look like classes that never sound, a visual shortcut "
                   "(for teaching: appearance alone finds the sounding object).")
@click.option("--workers", type=int, default=1, show_default=True, help="Processes.")
@click.option("--overwrite", is_flag=True, help="Regenerate clips that already exist (other settings allowed).")
@click.option("--no-progress", is_flag=True, help="No progress bar or progress lines.")
def command(out_dir, n_clips, n_clips_old, seed, n_classes, duration, fps, size, container, video_codec, audio_codec,
            sample_rate, stereo, test_fraction, frame_noise, benchmark, n_items, flickr_layout, distractor_looks,
            workers, overwrite, no_progress):
    """Generate synthetic clips (one sounding object whose look and sound follow its class) and,
    with --benchmark, evaluation sets in the VGG-SS, Flickr-SoundNet and AVSBench layouts.
    """
    from avloc.tools.synth import SynthOptions, format_synth_run, run_synth

    options = SynthOptions(
        out=out_dir, n_clips=n_clips if n_clips is not None else n_clips_old, seed=seed, n_classes=n_classes,
        duration=duration, fps=fps, size=size, container=container, video_codec=video_codec, audio_codec=audio_codec,
        sample_rate=sample_rate, stereo=stereo, test_fraction=test_fraction, frame_noise=frame_noise,
        benchmark=benchmark, n_items=n_items, flickr_layout=flickr_layout, distractor_looks=distractor_looks,
        workers=workers, overwrite=overwrite, progress=not no_progress).checked()
    click.echo(format_synth_run(run_synth(options), out_dir))
