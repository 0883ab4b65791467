"""What localising one input leaves in its folder, and how a rerun knows it is complete.

Per input folder: ``overlay.mp4`` (or ``.mkv``), ``sheet.png``, ``table.parquet`` and, written
last, ``table.json`` (the rows, the source's facts, the flags, the settings, and the input's
size and modification time). An input is complete when ``table.json`` exists, records the same
input file and settings, and every file it lists is present; a rerun skips it. Every file is
written atomically, so a crash or Ctrl-C leaves finished files whole and no half-written ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from avloc.localization.engine import TABLE_COLUMNS, LocalizeResult
from avloc.utils.atomic import atomic_write_text, atomic_write_with

TABLE_JSON = "table.json"
TABLE_PARQUET = "table.parquet"
SHEET_PNG = "sheet.png"
FORMAT = "avloc-localize/1"


def file_signature(path) -> dict:
    st = Path(path).stat()
    return {"path": str(Path(path).absolute()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def record_of(result: LocalizeResult, *, inputs: dict, settings: dict, files: list) -> dict:
    return {
        "format": FORMAT, "inputs": inputs, "settings": settings, "files": files,
        "facts": result.facts.as_dict(), "flags": result.flags, "frames_decoded": result.frames_decoded,
        "display": "heat maps between two computed instants are blended linearly in the overlay video "
                   "(display only); this table holds the computed instants",
        "columns": list(TABLE_COLUMNS), "rows": result.rows,
    }


def write_tables(folder: Path, result: LocalizeResult, record: dict, *, parquet: bool = True) -> None:
    """``table.parquet`` (unless ``parquet`` is False) then ``table.json``, the completion mark."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    if parquet:
        table = result.table()
        atomic_write_with(folder / TABLE_PARQUET, lambda tmp: pq.write_table(table, tmp))
    atomic_write_text(folder / TABLE_JSON, json.dumps(record, indent=1))


def completed_record(folder: Path, inputs: dict, settings: dict) -> Optional[dict]:
    """The record of a finished localisation of the same input(s) with the same settings, or None."""
    path = Path(folder) / TABLE_JSON
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if record.get("format") != FORMAT or record.get("inputs") != inputs or record.get("settings") != settings:
        return None
    if not all((Path(folder) / name).is_file() for name in record.get("files", [])):
        return None
    return record
