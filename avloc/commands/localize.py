"""`avloc localize`: run a trained model on videos (or an image and its sound) and show where the sound comes from."""

from __future__ import annotations

from pathlib import Path

import click

from avloc.localization.options import LocalizeOptions
from avloc.metrics import UPSAMPLE_MODES
from avloc.utils.options import example_epilog

_DEFAULTS = LocalizeOptions()


@click.command("localize", epilog=example_epilog(
    "avloc localize street.mp4 --checkpoint run/checkpoints/best.pt --out where",
    "avloc localize clips/ --checkpoint fnac_vggsound.pth --every 1 --json-only",
    "avloc localize photo.jpg --audio bark.wav --checkpoint run/checkpoints/best.pt"))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True,
              help="An avloc checkpoint or a released FNAC / EZ-VSL one.")
@click.option("--out", type=click.Path(path_type=Path), default=_DEFAULTS.out, show_default=True,
              help="Output folder (one subfolder per input); checked before any work; a rerun skips finished inputs.")
@click.option("--audio", type=click.Path(path_type=Path), default=None,
              help="With one image INPUT: the sound (any file ffmpeg reads) to localise in it.")
@click.option("--every", type=float, default=_DEFAULTS.every, show_default=True,
              help="Seconds between heat maps; each uses the frame at that instant and the 3 s of audio centred on it.")
@click.option("--image-size", type=int, default=_DEFAULTS.image_size, show_default=True,
              help="Model input size (frames resized to size x size, as in evaluation).")
@click.option("--batch-size", type=int, default=_DEFAULTS.batch_size, show_default=True,
              help="Instants per model call.")
@click.option("--device", default=_DEFAULTS.device, show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--silence-db", type=float, default=_DEFAULTS.silence_db, show_default=True,
              help="A window whose RMS level is below this (dBFS) is flagged silent (its map is still made).")
@click.option("--upsample", type=click.Choice(UPSAMPLE_MODES), default=_DEFAULTS.upsample, show_default=True,
              help="Heat map upsampling for the peak, box and pictures (the evaluation protocol's choices).")
@click.option("--json-only", is_flag=True, help="Write table.json only: no video, contact sheet or parquet.")
@click.option("--max-buffer-mb", type=float, default=_DEFAULTS.max_buffer_mb, show_default=True,
              help="Memory for frames waiting for their maps (the overlay video).")
@click.option("--force", is_flag=True, help="Redo inputs whose outputs are already complete.")
@click.option("--no-progress", is_flag=True, help="No progress bars or progress lines.")
def command(inputs, checkpoint, out, audio, every, image_size, batch_size, device, silence_db, upsample, json_only,
            max_buffer_mb, force, no_progress):
    """Show where the sound comes from in INPUT... (video files, folders of them, or one image with --audio).

    Per input: an overlay video (source size and frame rate, the original audio stream copied),
    a contact sheet (sheet.png) and a table (table.parquet, table.json): time, peak and box in
    source pixels, confidence, audio level (dBFS), silent flag.
    """
    from avloc.localization.run import run_localize

    run_localize(LocalizeOptions(inputs=tuple(inputs), checkpoint=checkpoint, out=out, audio=audio, every=every,
                                 image_size=image_size, batch_size=batch_size, device=device, silence_db=silence_db,
                                 upsample=upsample, json_only=json_only, max_buffer_mb=max_buffer_mb,
                                 progress=not no_progress, force=force))
