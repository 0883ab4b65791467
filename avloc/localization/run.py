"""``avloc localize`` over many inputs: ``run_localize(LocalizeOptions(...)) -> summary``.

Inputs are video files, folders (searched recursively for the clip extensions the sharder
reads) or one image with ``--audio``. Each input gets its own folder under ``--out``, named
after its path relative to the folder it was found in, with the extension's dot made an
underscore (``clips/a/b.mp4`` given as ``clips`` -> ``OUT/a/b_mp4/``). The output folder is
checked before any work; the model is loaded once; inputs whose outputs are complete are
skipped (a rerun resumes); a bad input costs one warning line and is listed in
``localize_summary.json``, and the others are processed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from avloc.errors import AvlocError, InputError
from avloc.localization import outputs
from avloc.localization.api import input_record, load_model, localize_into, settings_record
from avloc.localization.engine import EngineSettings
from avloc.localization.options import LocalizeOptions
from avloc.localization.source import SourceError
from avloc.schema import CLIP_EXTENSIONS
from avloc.utils.atomic import atomic_write_text
from avloc.utils.progress import Progress, log, warn

SUMMARY_JSON = "localize_summary.json"


def _folder_name(rel: Path) -> Path:
    return rel.with_name(rel.name.replace(".", "_"))


def discover(inputs, out: Path) -> list:
    """[(input path, output folder)] in a stable order; folders searched recursively."""
    found = []
    for given in map(Path, inputs):
        if given.is_dir():
            videos = sorted(p for p in given.rglob("*") if p.is_file() and p.suffix.lower() in CLIP_EXTENSIONS)
            found += [(p, out / _folder_name(p.relative_to(given))) for p in videos
                      if not _inside(p, out)]
        else:
            found.append((given, out / _folder_name(Path(given.name))))
    seen = {}
    for path, folder in found:
        if folder in seen and seen[folder] != path:
            raise InputError(f"{seen[folder]} and {path} would both write to {folder}; give them separately")
        seen[folder] = path
    return list(dict.fromkeys(found))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def run_localize(options: LocalizeOptions) -> dict:
    """Localise every input; returns the summary (also written to OUT/localize_summary.json)."""
    from avloc.evaluation.runner import prepare_out
    from avloc.utils.system import resolve_device

    opts = options.checked()
    out = Path(opts.out)
    todo = discover(opts.inputs, out)
    if not todo:
        raise InputError(f"no video files ({', '.join(CLIP_EXTENSIONS)}) in {', '.join(map(str, opts.inputs))}")
    prepare_out(out)
    device = resolve_device(opts.device)
    model = load_model(opts.checkpoint, device)
    settings = EngineSettings(every=opts.every, image_size=opts.image_size, batch_size=opts.batch_size,
                              silence_db=opts.silence_db, upsample=opts.upsample, max_buffer_mb=opts.max_buffer_mb)
    wanted = settings_record(settings, opts.json_only)
    summary = {"out": str(out), "checkpoint": str(opts.checkpoint), "settings": wanted, "done": [], "skipped": [],
               "failed": []}
    t0 = time.perf_counter()
    with Progress(len(todo), "localize", "input", enabled=opts.progress and len(todo) > 1) as bar:
        for path, folder in todo:
            inputs = input_record(path, opts.audio, opts.checkpoint)
            if not opts.force and outputs.completed_record(folder, inputs, wanted) is not None:
                summary["skipped"].append(str(path))
                bar.update(1)
                continue
            try:
                result = localize_into(path, model, device=device, settings=settings, out=folder, audio=opts.audio,
                                       json_only=opts.json_only, progress=opts.progress, inputs=inputs)
            except SourceError as exc:
                warn(f"{path}: {exc}")
                summary["failed"].append({"input": str(path), "reason": exc.reason, "detail": exc.detail})
                bar.update(1, failed=1)
                continue
            summary["done"].append({"input": str(path), "folder": str(folder), "instants": len(result.rows),
                                    "flags": result.flags})
            bar.update(1)
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    atomic_write_text(out / SUMMARY_JSON, json.dumps(summary, indent=1))
    n_failed = len(summary["failed"])
    log(f"localize: {len(summary['done'])} done, {len(summary['skipped'])} already complete (skipped), "
        f"{n_failed} failed; outputs in {out}")
    if n_failed:
        if len(todo) == 1:
            failure = summary["failed"][0]
            raise InputError(f"{failure['input']}: {failure['reason']}: {failure['detail']}".rstrip(": "))
        raise AvlocError(f"{n_failed} of {len(todo)} inputs failed (listed in {out / SUMMARY_JSON})")
    return summary
