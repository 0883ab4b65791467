"""Run benchmark scenarios and gather their records (the library behind `avloc bench-throughput`)."""

from __future__ import annotations

import importlib
import traceback

from avloc.bench.core import BenchContext, Record, fill_ratios
from avloc.errors import InputError

SCENARIOS = ("shard", "loaders", "kernels", "train", "evaluate")


def run_scenarios(names, ctx: BenchContext) -> list:
    """Run each named scenario; a scenario that cannot run is reported as skipped with its reason."""
    records: list[Record] = []
    for name in names:
        ctx.log(f"[bench] scenario {name} ({'quick' if ctx.quick else 'full'})")
        try:
            module = importlib.import_module(f"avloc.bench.{name}")
            records.extend(module.run(ctx))
        except ImportError as exc:
            if getattr(exc, "name", None) == f"avloc.bench.{name}":
                raise InputError(f"unknown benchmark scenario {name!r}; known: {', '.join(SCENARIOS)}") from exc
            records.append(Record(scenario=name, variant="*", size="-", value=None, unit="-",
                                  higher_is_better=True, skipped=f"skipped: missing dependency ({exc})"))
        except Exception as exc:  # one broken scenario must not hide the others' results
            ctx.log("".join(traceback.format_exception_only(type(exc), exc)).strip())
            records.append(Record(scenario=name, variant="*", size="-", value=None, unit="-",
                                  higher_is_better=True, skipped=f"failed: {type(exc).__name__}: {exc}"[:300]))
    return fill_ratios(records)
