"""`avloc shard`: raw clips -> WebDataset shards (a thin layer over avloc.tools.sharding.run_shard)."""

from __future__ import annotations

from pathlib import Path

import click

from avloc.utils.options import example_epilog

from avloc import schema
from avloc.tools.sharding.decode import DECODERS
from avloc.tools.sharding.distributors import DISTRIBUTORS

_FILE = click.Path(path_type=Path, dir_okay=False)


@click.command("shard",
               epilog=example_epilog("avloc shard --clips vggsound/clips --csv vggsound.csv --exclude vggss_test.csv --out shards"))
@click.option("--clips", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Folder of clips, searched recursively (<ytid>_<start:06d>.mp4/.mkv/.webm/...).")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="Output shards folder.")
@click.option("--csv", "csv_path", type=_FILE, default=None, help="vggsound.csv: labels and train/test split.")
@click.option("--subset", type=_FILE, default=None, help="Only these ids (e.g. vggss_144k.txt); missing ones are counted.")
@click.option("--exclude", type=_FILE, multiple=True, help="Leave these ids out (e.g. VGG-SS test ids). Repeatable.")
@click.option("--test-ids", type=_FILE, multiple=True,
              help="Known test ids (e.g. vggss_test.csv): overlap with the set is reported. Repeatable.")
@click.option("--boxes", type=_FILE, default=None, help="vggss.json-style boxes, stored in each sample's json.")
@click.option("--val-fraction", type=float, default=0.0, show_default=True,
              help="Fraction of train clips carved into val by a hash of the clip id.")
@click.option("--val-list", type=_FILE, default=None, help="Ids that go to val (instead of --val-fraction).")
@click.option("--workers", type=int, default=None, help="Parallel processes (default: all usable cores).")
@click.option("--samples-per-shard", type=int, default=1000, show_default=True)
@click.option("--keep-audio", is_flag=True, help="Also store the 3 s 16 kHz mono window as flac.")
@click.option("--frame-size", type=int, default=schema.FRAME_SHORT_SIDE, show_default=True,
              help="Shorter side of the stored frame (pixels), resized once from the source frame. The default is "
                   "the training scale int(1.1 x 224): training then only crops and flips. 256: the layout of "
                   "earlier versions (loaders resize it every epoch); for another --image-size use int(1.1 x size).")
@click.option("--jpeg-quality", type=int, default=schema.JPEG_QUALITY, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffle across shards.")
@click.option("--overwrite", is_flag=True, help="Rebuild every shard instead of resuming.")
@click.option("--decoder", default="ffmpeg", show_default=True, metavar=f"[{'|'.join(DECODERS)}]",
              help="ffmpeg: one ffmpeg process per clip; pyav: in-process decoding.")
@click.option("--decoder-threads", type=int, default=2, show_default=True,
              help="Threads per video decoder in each worker (frame threading; results are identical).")
@click.option("--distributor", default="local", show_default=True, metavar=f"[{'|'.join(DISTRIBUTORS)}]",
              help="local process pool, or Ray tasks (pip install 'avloc[ray]'; RAY_ADDRESS picks the cluster).")
@click.option("--no-progress", is_flag=True, help="No progress bar or progress lines.")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the report as JSON here.")
def command(clips, out, csv_path, subset, exclude, test_ids, boxes, val_fraction, val_list, workers,
            samples_per_shard, keep_audio, frame_size, jpeg_quality, seed, overwrite, decoder, decoder_threads, distributor,
            no_progress, json_out):
    """Turn raw clips into WebDataset shards: centre frame (jpg), FNAC log-spectrogram (spec.f16), json,
    DALI index, parquet manifest. Resumable: rerun the same command to finish an interrupted run.
    """
    from avloc.tools.sharding import ShardConfig, format_report, run_shard

    cfg = ShardConfig(clips=clips, out=out, csv=csv_path, subset=subset, exclude=list(exclude) or None,
                      test_ids=list(test_ids) or None, boxes=boxes, val_fraction=val_fraction, val_list=val_list,
                      workers=workers, samples_per_shard=samples_per_shard, keep_audio=keep_audio,
                      frame_size=frame_size, jpeg_quality=jpeg_quality, seed=seed, overwrite=overwrite,
                      decoder=decoder, decoder_threads=decoder_threads, distributor=distributor,
                      progress=not no_progress, report_json=json_out).checked()
    click.echo(format_report(run_shard(cfg), out))
