"""`avloc shard`: raw clips -> WebDataset shards (a thin layer over avloc.tools.sharding.run_shard)."""

from __future__ import annotations

from pathlib import Path

import click

from avloc.utils.options import example_epilog

from avloc import schema
from avloc.tools.sharding.decode import DECODERS, DEFAULT_DECODER
from avloc.tools.sharding.distributors import DISTRIBUTORS
from avloc.tools.sharding.sample_builder import MIN_FRAME_SIDE

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
@click.option("--keep-audio", is_flag=True, help="Also store the 3 s 16 kHz mono window (int16, <key>.audio.npy).")
@click.option("--frame-size", type=int, default=schema.FRAME_SHORT_SIDE, show_default=True,
              help="Shorter side of the stored frame (pixels), resized once from the source frame. The default is "
                   "the training scale int(1.1 x 224): training then only crops and flips. 256: the layout of "
                   "earlier versions (loaders resize it every epoch); for another --image-size use int(1.1 x size).")
@click.option("--jpeg-quality", type=int, default=schema.JPEG_QUALITY, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the shuffle across shards.")
@click.option("--overwrite", is_flag=True, help="Rebuild every shard instead of resuming.")
@click.option("--decoder", default=DEFAULT_DECODER, show_default=True, metavar=f"[{'|'.join(DECODERS)}]",
              help="pyav: in-process decoding (fastest); ffmpeg: one ffmpeg process per clip. Both give the same "
                   "set (same clips kept, same flags; pixels and spectrograms within rounding).")
@click.option("--decoder-threads", type=int, default=None,
              help="Threads per video decoder in each worker (frame threading; results are identical). "
                   "Default: usable cores / workers (1 when every core runs a worker).")
@click.option("--distributor", default="local", show_default=True, metavar=f"[{'|'.join(DISTRIBUTORS)}]",
              help="local process pool, or Ray tasks (pip install 'avloc[ray]'; RAY_ADDRESS picks the cluster).")
@click.option("--clip-timeout", type=float, default=120.0, show_default=True,
              help="Seconds one clip may take (open, probe, decode); a clip over it is recorded as failed "
                   "(clip_timeout) and its worker replaced.")
@click.option("--clip-memory", type=int, default=2048, show_default=True, metavar="MB",
              help="Memory (address space, MB) one clip may add to its worker; a clip over it is recorded as "
                   "failed (memory_limit). 0: no bound.")
@click.option("--min-frame-side", type=int, default=MIN_FRAME_SIDE, show_default=True,
              help="Refuse a clip whose decoded frame has a side below this many pixels (frame_too_small); "
                   "1 accepts every size (small frames are then only flagged frame_upscaled).")
@click.option("--no-progress", is_flag=True, help="No progress bar or progress lines.")
@click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write the report as JSON here.")
def command(clips, out, csv_path, subset, exclude, test_ids, boxes, val_fraction, val_list, workers,
            samples_per_shard, keep_audio, frame_size, jpeg_quality, seed, overwrite, decoder, decoder_threads, distributor,
            clip_timeout, clip_memory, min_frame_side, no_progress, json_out):
    """Turn raw clips into WebDataset shards: centre frame (jpg), FNAC log-spectrogram (spec.f16), json,
    DALI index, parquet manifest. Resumable: rerun the same command to finish an interrupted run.
    """
    from avloc.tools.sharding import ShardConfig, format_report, run_shard

    cfg = ShardConfig(clips=clips, out=out, csv=csv_path, subset=subset, exclude=list(exclude) or None,
                      test_ids=list(test_ids) or None, boxes=boxes, val_fraction=val_fraction, val_list=val_list,
                      workers=workers, samples_per_shard=samples_per_shard, keep_audio=keep_audio,
                      frame_size=frame_size, jpeg_quality=jpeg_quality, seed=seed, overwrite=overwrite,
                      decoder=decoder, decoder_threads=decoder_threads, distributor=distributor,
                      progress=not no_progress, report_json=json_out, clip_timeout_s=clip_timeout,
                      clip_memory_mb=clip_memory or None, min_frame_side=min_frame_side).checked()
    click.echo(format_report(run_shard(cfg), out))
