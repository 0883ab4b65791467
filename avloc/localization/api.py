"""``localize``: one video (or an image and its sound) -> heat maps over time and their table.

    >>> import avloc
    >>> result = avloc.localize("street.mp4", checkpoint="run/checkpoints/best.pt", every=1.0)
    >>> result.table()            # pyarrow table: time, peak (x, y), box, confidence, dBFS, silent
    >>> result.maps.shape         # raw similarity maps, [instants, h, w]
    >>> result.heatmap(3)         # instant 3's map at the video's displayed size, in [0, 1]

With ``out``, the overlay video, contact sheet and tables are written into that folder (see
``avloc.localization.outputs``); ``json_only`` writes the JSON table alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from avloc.errors import InputError
from avloc.localization import outputs, render
from avloc.localization.engine import EngineSettings, LocalizeResult, run_source
from avloc.localization.source import SourceError, open_source
from avloc.utils.atomic import remove_stale_temps


def load_model(checkpoint, device):
    """An avloc checkpoint or a released FNAC / EZ-VSL one -> model in eval mode on ``device``."""
    from avloc.evaluation.model_loading import model_from_checkpoint

    model, _ = model_from_checkpoint(checkpoint, device)
    return model


def input_record(path, audio=None, checkpoint=None) -> dict:
    """What a finished output was made from (files by path, size and modification time)."""
    record = {"input": outputs.file_signature(path)}
    if audio is not None:
        record["audio"] = outputs.file_signature(audio)
    if checkpoint is not None:
        record["checkpoint"] = outputs.file_signature(checkpoint)
    return record


def settings_record(settings: EngineSettings, json_only: bool) -> dict:
    return {"every": settings.every, "image_size": settings.image_size, "silence_db": settings.silence_db,
            "upsample": settings.upsample, "json_only": bool(json_only)}


def localize_into(path, model, *, device, settings: EngineSettings, out: Optional[Path] = None, audio=None,
                  json_only: bool = False, progress: bool = False, inputs: Optional[dict] = None) -> LocalizeResult:
    """Localise one input with a loaded model; write its outputs into ``out`` when given.

    Raises SourceError (reason + one line) for an input that cannot be read.
    """
    with open_source(path, audio) as source:
        if out is None or json_only:
            result = run_source(source, model, device=device, settings=settings, progress=progress)
            files = []
        else:
            out = Path(out)
            if out.is_dir():
                remove_stale_temps(out)  # left by a killed run
            name = render.video_name(source.facts)
            with render.OverlayVideoWriter(out / name, source.facts) as writer:
                result = run_source(source, model, device=device, settings=settings, renderer=writer,
                                    progress=progress)
            render.write_png(out / outputs.SHEET_PNG,
                             render.contact_sheet(result, title=f"{Path(path).name}  (every {settings.every:g} s)"))
            files = [name, outputs.SHEET_PNG, outputs.TABLE_PARQUET]
    if out is not None:
        record = outputs.record_of(result, inputs=inputs or input_record(path, audio),
                                   settings=settings_record(settings, json_only), files=files)
        outputs.write_tables(Path(out), result, record, parquet=not json_only)
    return result


def localize(input, checkpoint=None, *, model=None, audio=None, out=None, every: float = 0.5,
             image_size: int = 224, batch_size: int = 16, device: str = "auto", silence_db: float = -60.0,
             upsample: str = "bicubic", json_only: bool = False, progress: bool = False) -> LocalizeResult:
    """Where the sound comes from in ``input`` (a video file, or an image with ``audio``), every ``every`` s.

    Give ``checkpoint`` (avloc or released FNAC / EZ-VSL) or an already loaded ``model`` (anything
    with ``visual(images) -> [B, D, h, w]`` and ``audio(specs) -> [B, D]``). Returns a
    LocalizeResult (``maps``, ``rows``, ``table()``, ``heatmap(k)``); writes the overlay video,
    contact sheet and tables into ``out`` when given.
    """
    from avloc.utils.system import resolve_device

    if (checkpoint is None) == (model is None):
        raise InputError("give either checkpoint or model")
    torch_device = resolve_device(device)
    if model is None:
        model = load_model(checkpoint, torch_device)
    settings = EngineSettings(every=float(every), image_size=int(image_size), batch_size=int(batch_size),
                              silence_db=float(silence_db), upsample=upsample)
    try:
        return localize_into(input, model, device=torch_device, settings=settings, out=out, audio=audio,
                             json_only=json_only, progress=progress,
                             inputs=input_record(input, audio, checkpoint) if out is not None else None)
    except SourceError as exc:
        raise InputError(f"{input}: {exc}") from None
