"""Leaderboard sets end to end, and ``--benchmark all-available``.

``evaluate_leaderboard(options)``: read the set (``avgn`` / ``slavc``), score every row
(``rowscoring``), assemble the table (``leaderboard``) and write the reports.
``evaluate_all_available(options)``: every benchmark found under ``--data-root`` (in a folder
named after it, the folder ``avloc synth`` writes it to, or the root itself), each scored into
``OUT/<benchmark>/``, then one summary: ``summary.md``, ``summary.json`` and ``summary.png``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from avloc.audio_controls import parse_controls
from avloc.errors import InputError
from avloc.evaluation.benchmarks import BENCHMARKS, LEADERBOARD, load_benchmark
from avloc.evaluation.options import LEADERBOARD_CHOICES, EvaluateOptions, _applies
from avloc.utils.progress import log, warn
from avloc.utils.system import first_line, resolve_device

SYNTH_FOLDERS = {"avsbench-s4": "avsbench", "avsbench-ms3": "avsbench"}


def resolved_options(options: EvaluateOptions) -> dict:
    """The leaderboard choices of one run, defaults filled in from the set's registry entry."""
    info = LEADERBOARD[options.benchmark]
    return {"rule": options.threshold_rule or "median", "compare": options.success_compare or info.compare,
            "geometry": options.duet_geometry or "source", "music_window": options.music_window or "video-centre",
            "duet_average": options.duet_average or "source"}


def evaluate_leaderboard(options: EvaluateOptions) -> dict:
    from avloc.evaluation.leaderboard import assemble_leaderboard_results, leaderboard_options
    from avloc.evaluation.loading import load_models
    from avloc.evaluation.rowscoring import score_rows
    from avloc.evaluation.runner import prepare_out

    options = options.checked()
    chosen = resolved_options(options)
    device = resolve_device(options.device)
    bench = load_benchmark(options.benchmark, options.data_root, annotations=options.annotations,
                           test_list=options.test_list, music_window=chosen["music_window"])
    items = bench.items if options.limit is None else bench.items[:options.limit]
    if not items:
        raise InputError(f"no {bench.benchmark} row in {options.data_root} has its frames, audio and ground truth "
                         f"({bench.expected} expected from {bench.expected_source}; layout: {bench.layout})")
    if options.writes_reports:
        prepare_out(options.out)
    model, model_info, _ = load_models(options.checkpoint, device)
    scores = score_rows(items, model, device, upsample=options.upsample, rule=chosen["rule"],
                        geometry=chosen["geometry"], controls=parse_controls(options.audio_controls),
                        batch_size=options.batch_size, workers=options.workers, chunk=options.compute_chunk,
                        progress=options.progress, benchmark=bench.benchmark)
    info = LEADERBOARD[bench.benchmark]
    run_options = leaderboard_options(bench.benchmark, rule=chosen["rule"], compare=chosen["compare"],
                                      geometry=chosen["geometry"],
                                      music_window=chosen["music_window"] if info.music else None,
                                      duet_average=chosen["duet_average"])
    results = assemble_leaderboard_results(bench, items, scores, options=run_options, data_root=options.data_root,
                                           checkpoint=options.checkpoint, model_info=model_info,
                                           upsample=options.upsample, limit=options.limit, device=device,
                                           batch_size=options.batch_size)
    if options.writes_reports:
        from avloc.evaluation.leaderboard_report import write_leaderboard_reports

        write_leaderboard_reports(options.out, results)
    return results


def candidate_roots(root: Path, benchmark: str) -> list:
    names = [benchmark, SYNTH_FOLDERS.get(benchmark)]
    return [root / n for n in dict.fromkeys(n for n in names if n) if (root / n).is_dir()] + [root]


def find_available(root: Path) -> tuple:
    """([(benchmark, root)] of every set with at least one scorable item, {benchmark: why not})."""
    found, absent = [], {}
    for name in BENCHMARKS:
        reasons = []
        for candidate in candidate_roots(Path(root), name):
            try:
                bench = load_benchmark(name, candidate)
            except (InputError, OSError, ValueError) as exc:
                reasons.append(first_line(exc))
                continue
            if bench.items:
                found.append((name, candidate))
                break
            reasons.append(f"{candidate}: no item found")
        else:
            absent[name] = reasons[-1] if reasons else "not found"
    return found, absent


def evaluate_all_available(options: EvaluateOptions) -> dict:
    """Score every benchmark found under ``options.data_root``; returns the summary dict."""
    from avloc.evaluation.leaderboard_report import summary_entry, write_all_available_summary
    from avloc.evaluation.runner import evaluate, prepare_out

    options = options.checked()
    found, absent = find_available(options.data_root)
    if not found:
        raise InputError(f"no benchmark found under {options.data_root}: "
                         + "; ".join(f"{k}: {v}" for k, v in list(absent.items())[:3]))
    if options.writes_reports:
        prepare_out(options.out)
    entries, failed = [], {}
    for name, root in found:
        per_set = {f: (getattr(options, f) if _applies(f, name) else None) for f in LEADERBOARD_CHOICES}
        sub = dataclasses.replace(options, benchmark=name, data_root=root, **per_set,
                                  out=options.out / name if options.out is not None else None)
        log(f"all-available: {name} from {root}")
        try:
            results = evaluate(sub)
        except InputError as exc:  # one unreadable set is that set's problem, reported in the summary
            warn(f"{name}: {first_line(exc)}")
            failed[name] = first_line(exc)
            continue
        entries.append(summary_entry(results, root))
    summary = {"schema": "avloc-evaluate-summary/1", "data_root": str(options.data_root),
               "checkpoint": str(options.checkpoint), "scored": entries, "failed": failed,
               "not_found": absent}
    if options.writes_reports:
        write_all_available_summary(options.out, summary)
    return summary
