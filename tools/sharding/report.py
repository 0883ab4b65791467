"""The run's report (counts from the manifest, throughput) and the summary the CLI prints."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

from avloc import schema
from avloc.tools.sharding.output import MANIFEST_NAME, MISSING_NAME, SUMMARY_NAME


@dataclasses.dataclass(frozen=True)
class RunTimes:
    """What the build did and how long it took."""

    shards: int
    shards_skipped: int
    shards_built: int
    clips_built: int
    build_seconds: float
    total_seconds: float
    workers: int


def build_report(cfg, counts: dict, table, times: RunTimes) -> dict:
    """The report: selection counts, outcome counts from the manifest ``table``, and ``times``."""
    cols = {name: table.column(name).to_pylist() for name in ("status", "reason", "split", "in_test_ids", "flags")}
    rows = [dict(zip(cols, values)) for values in zip(*cols.values())]
    ok = [r for r in rows if r["status"] == "ok"]
    failed = Counter(r["reason"] for r in rows if r["status"] == "failed")
    flags = Counter(f for r in ok for f in r["flags"])
    set_overlap = sum(1 for r in ok if r["in_test_ids"] and r["split"] in ("train", "val"))
    n_built, build_seconds = times.clips_built, times.build_seconds
    return {
        **counts,
        "ok": len(ok),
        "failed": sum(failed.values()),
        "failed_by_reason": dict(sorted(failed.items())),
        "flags": dict(sorted(flags.items())),
        "per_split": {s: sum(1 for r in ok if r["split"] == s) for s in schema.SPLITS},
        "set_test_overlap": set_overlap if (cfg.test_ids or cfg.exclude) else None,
        "shards": times.shards,
        "shards_skipped": times.shards_skipped,
        "shards_built": times.shards_built,
        "clips_built": n_built,
        "build_seconds": round(build_seconds, 3),
        "total_seconds": round(times.total_seconds, 3),
        "clips_per_second": round(n_built / build_seconds, 3) if n_built and build_seconds > 0 else None,
        "workers": times.workers,
        "decoder": cfg.decoder,
        "distributor": cfg.distributor,
    }


def _overlap_line(report: dict) -> str:
    line = f"test-id overlap: {report['set_test_overlap']} train/val samples in this set are known test ids"
    if report["listed_from"]:
        line += (f"; {report['listed_test_overlap']} of the {report['listed']} ids in --{report['listed_from']} "
                 "are known test ids")
    return line


def format_report(report: dict, out) -> str:
    """The end-of-run summary the CLI prints."""
    lines = [f"shards in {out}: {report['shards']} ({report['shards_built']} built now, "
             f"{report['shards_skipped']} already done)"]
    lines.append(f"clips: {report['files_found']} files, {report['clip_ids_found']} ids, "
                 f"{report['duplicates']} duplicate files, {report['selected']} selected")
    if report["listed_from"]:
        lines.append(f"listed in --{report['listed_from']}: {report['listed']}, missing (no file): "
                     f"{report['listed_missing']} (ids in {MISSING_NAME})")
    if report["not_in_subset"] or report["excluded"]:
        lines.append(f"left out: {report['not_in_subset']} not in --subset, {report['excluded']} excluded")
    per_split = ", ".join(f"{s} {n}" for s, n in report["per_split"].items() if n)
    lines.append(f"ok: {report['ok']} ({per_split or 'none'}); failed: {report['failed']}")
    for reason, n in report["failed_by_reason"].items():
        lines.append(f"  failed {reason}: {n}")
    if report["flags"]:
        lines.append("flags: " + ", ".join(f"{k} {v}" for k, v in report["flags"].items()))
    if report["set_test_overlap"] is not None:
        lines.append(_overlap_line(report))
    if report["clips_per_second"]:
        lines.append(f"throughput: {report['clips_built']} clips in {report['build_seconds']:.1f} s = "
                     f"{report['clips_per_second']:.2f} clips/s ({report['workers']} workers, {report['decoder']} "
                     f"decoder, {report['distributor']})")
    lines.append(f"manifest: {Path(out) / MANIFEST_NAME}; summary: {Path(out) / SUMMARY_NAME}")
    return "\n".join(lines)
