"""One evaluation end to end: ``evaluate(EvaluateOptions(...)) -> results``.

The pieces, each usable alone (e.g. from a notebook):

* ``loading.load_items`` / ``loading.item_batches`` / ``loading.load_models``: what is read;
* ``scoring.score_items``: batches -> per-sample cIoU of the model, the baselines and OGL;
* ``results.assemble_results``: scores -> the results dict and the per-sample table;
* ``report.write_reports``: results.json, per_sample.parquet, overlays, summary.png.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from avloc.audio_controls import parse_controls
from avloc.errors import InputError
from avloc.evaluation.benchmarks import ALL_AVAILABLE, LEADERBOARD
from avloc.evaluation.options import EvaluateOptions
from avloc.utils.system import first_line, resolve_device


def prepare_out(out: Path) -> None:
    """Create the report folder and prove it takes a file, before any item is scored."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise InputError(f"--out {out} cannot be written: {first_line(exc)}") from None


def evaluate(options: EvaluateOptions) -> dict:
    """Score ``options.checkpoint`` on ``options.benchmark``; returns the results dict (reports written
    to ``options.out`` unless it is None or ``write_reports`` is False)."""
    from avloc.evaluation.loading import item_batches, load_items, load_models
    from avloc.evaluation.results import assemble_results
    from avloc.evaluation.scoring import score_items

    options = options.checked()
    if options.benchmark in LEADERBOARD or options.benchmark == ALL_AVAILABLE:
        from avloc.evaluation.leaderboard_runner import evaluate_all_available, evaluate_leaderboard

        return (evaluate_leaderboard if options.benchmark in LEADERBOARD else evaluate_all_available)(options)
    device = resolve_device(options.device)
    bench, items = load_items(options.benchmark, options.data_root, annotations=options.annotations,
                              test_list=options.test_list, whole_clip_audio=options.whole_clip_audio,
                              limit=options.limit)
    if options.writes_reports:
        prepare_out(options.out)
    model, model_info, saliency = load_models(options.checkpoint, device, ogl=options.ogl,
                                              ogl_weights=options.ogl_weights)
    batches = item_batches(items, options.batch_size, options.workers)
    scores = score_items(items, batches, model, device, upsample=options.upsample,
                         compute_chunk=options.compute_chunk, saliency=saliency, progress=options.progress,
                         benchmark=bench.benchmark, audio_controls=parse_controls(options.audio_controls))
    results = assemble_results(bench, items, scores, data_root=options.data_root, checkpoint=options.checkpoint,
                               model_info=model_info, upsample=options.upsample, limit=options.limit,
                               device=device, batch_size=options.batch_size, compute_chunk=options.compute_chunk)
    if options.writes_reports:
        from avloc.evaluation.report import write_reports

        write_reports(options.out, results, results["_per_sample"], items, scores.raw_maps,
                      upsample=options.upsample, overlays=options.overlays, seed=options.seed)
    return results
