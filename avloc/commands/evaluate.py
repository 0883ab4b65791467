"""`avloc evaluate`: score a checkpoint on a benchmark read from its raw layout."""

from __future__ import annotations

from pathlib import Path

import click

from avloc.utils.options import example_epilog

from avloc.evaluation.benchmarks import BENCHMARK_CHOICES
from avloc.evaluation.options import COMPUTE_CHUNK
from avloc.metrics import UPSAMPLE_MODES


@click.command("evaluate",
               epilog=example_epilog("avloc evaluate --benchmark vggss --data-root data/vggss --checkpoint run/checkpoints/best.pt --out eval-vggss"))
@click.option("--benchmark", type=click.Choice(BENCHMARK_CHOICES), required=True,
              help="avsbench-s4 = AVSBench S4 test (avsbench is the same); avsbench-ms3 = MS3 test; the names "
                   "`avloc synth --benchmark` writes; all-available = every set found under --data-root, one "
                   "summary.")
@click.option("--data-root", type=click.Path(path_type=Path), required=True,
              help="The benchmark's folder in its released layout.")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True,
              help="An avloc checkpoint or a released FNAC / EZ-VSL one.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: eval-<benchmark>); checked before anything is scored.")
@click.option("--upsample", type=click.Choice(UPSAMPLE_MODES), default="bicubic", show_default=True,
              help="Heat map upsampling: bicubic (align_corners=False) or the reference test script's bilinear "
                   "(align_corners=True).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Items loaded per step (scores do not depend on it).")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="Loading processes.")
@click.option("--ogl", is_flag=True, help="Add the object-guided (OGL, alpha 0.4) row; needs ImageNet ResNet-18 weights.")
@click.option("--ogl-weights", type=click.Path(path_type=Path), default=None,
              help="Local torchvision resnet18 state dict for --ogl (default: torchvision's cache).")
@click.option("--overlays", type=click.IntRange(min=0), default=6, show_default=True,
              help="Heat-map overlay PNGs to write (best, worst, random).")
@click.option("--whole-clip-audio", is_flag=True,
              help="AVSBench: pair every frame with the whole clip's audio instead of a 3 s window around it.")
@click.option("--annotations", type=click.Path(path_type=Path), default=None,
              help="vggss.json (VGG-SS, vggsound-*, vggss-extended) or music_*.json (music-*) if not in the data "
                   "root.")
@click.option("--test-list", type=click.Path(path_type=Path), default=None,
              help="The official id list if not in the data root (vggss_test.csv, flickr_test.csv, ...).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score only the first N items found.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--compute-chunk", type=click.IntRange(min=1), default=COMPUTE_CHUNK, hidden=True,
              help="Samples per network call (padded); keep the default for comparable runs.")
@click.option("--audio-control", "audio_controls", default="silence,shuffled", show_default=True,
              help="Rows scored again with the audio replaced: silence, shuffled (another class's audio), "
                   "comma-separated, or none.")
@click.option("--threshold", "threshold_rule", default=None, metavar="median|relmax:F|fixed:T",
              help="Leaderboard sets: how a map is binarised [default: median].")
@click.option("--success-compare", default=None, metavar="'>'|'>='",
              help="Leaderboard sets: IoU@t / CIoU@t counts cIoU > t or >= t [default: > (AVGN), >= for the "
                   "extended sets].")
@click.option("--duet-geometry", default=None, metavar="source|canvas",
              help="vggsound-duet, vgginstruments-multi: score each source on its own frame, or on the two frames "
                   "side by side [default: source].")
@click.option("--music-window", default=None, metavar="video-centre|frame-second",
              help="music-*: the video's central 3 s, or the frame's own second tiled to 3 s [default: video-centre].")
@click.option("--duet-average", default=None, metavar="source|frame",
              help="Duets: CIoU@t over sources, or over frames of the per-frame mean [default: source].")
@click.option("--no-progress", is_flag=True,
              help="No progress bar (and no progress lines when stderr is not a terminal).")
def command(benchmark, data_root, checkpoint, out, upsample, batch_size, workers, ogl, ogl_weights, overlays,
            whole_clip_audio, annotations, test_list, limit, device, compute_chunk, audio_controls, threshold_rule,
            success_compare, duet_geometry, music_window, duet_average, no_progress):
    """Score a checkpoint with the exact published protocol, beside trivial baselines on the same items.
    """
    from avloc.evaluation.options import EvaluateOptions
    from avloc.evaluation.report import format_counts, format_table
    from avloc.evaluation.runner import evaluate

    options = EvaluateOptions(benchmark=benchmark, data_root=data_root, checkpoint=checkpoint,
                              out=out or Path(f"eval-{benchmark}"), upsample=upsample, batch_size=batch_size,
                              workers=workers, device=device, ogl=ogl, ogl_weights=ogl_weights, overlays=overlays,
                              whole_clip_audio=whole_clip_audio, annotations=annotations, test_list=test_list,
                              limit=limit, compute_chunk=compute_chunk, audio_controls=audio_controls,
                              threshold_rule=threshold_rule, success_compare=success_compare,
                              duet_geometry=duet_geometry, music_window=music_window, duet_average=duet_average,
                              progress=not no_progress).checked()
    results = evaluate(options)
    if results.get("schema") == "avloc-evaluate-summary/1":
        from avloc.evaluation.leaderboard_report import format_summary

        click.echo(format_summary(results) + f"\nresults in {options.out}")
        return
    click.echo(format_counts(results))
    click.echo("")
    click.echo(format_table(results))
    rate = results["samples_per_s"]
    click.echo(f"\n{results['counts']['scored']} items in {results['seconds']:.1f} s"
               + (f" ({rate:.1f} items/s)" if rate else "") + f" on {results['device']}; results in {options.out}")
