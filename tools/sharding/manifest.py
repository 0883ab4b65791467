"""Manifest rows (one per input clip file), per-shard parquet files, the manifest, dataset.json.

Every parquet file carries key-value metadata (``avloc.*``, see ``KV_METADATA``): schema version,
recipe hash and how to read a sample's ``spec.f16`` bytes (dtype, shape, axes, scale).

``status`` of a row: ``ok`` (in a shard), ``failed`` (decoding/building failed: ``reason``),
``duplicate`` (another file has the same id and was kept: ``detail`` names it), ``excluded``
(in an ``--exclude`` list), ``not_in_subset`` (not in the ``--subset`` list).
"""

from __future__ import annotations

import json
from typing import Iterable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from avloc import schema
from avloc.utils.atomic import atomic_write_bytes, atomic_write_with

MANIFEST_SCHEMA = pa.schema([
    ("clip_id", pa.string()),
    ("key", pa.string()),
    ("source_path", pa.string()),
    ("file_size", pa.int64()),
    ("status", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("flags", pa.list_(pa.string())),
    ("split", pa.string()),
    ("label", pa.string()),
    ("class_index", pa.int32()),
    ("shard", pa.string()),
    ("shard_position", pa.int32()),
    ("in_test_ids", pa.bool_()),
    ("duration", pa.float64()),
    ("frame_time", pa.float64()),
    ("fps", pa.float64()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("rotation", pa.int32()),
    ("video_codec", pa.string()),
    ("audio_codec", pa.string()),
    ("source_sample_rate", pa.int32()),
    ("audio_seconds", pa.float64()),
    ("window_start", pa.float64()),
    ("decode_s", pa.float64()),
    ("spec_s", pa.float64()),
    ("encode_s", pa.float64()),
    ("total_s", pa.float64()),
])
COLUMNS = MANIFEST_SCHEMA.names


def _kv_value(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


KV_METADATA = {f"avloc.{name}": _kv_value(value) for name, value in {
    "schema_version": schema.SCHEMA_VERSION, "recipe_hash": schema.RECIPE_HASH, "spec_member": schema.EXT_SPEC,
    **schema.SPEC_LAYOUT}.items()}


def row(**fields) -> dict:
    """A manifest row with every column present (missing ones None; flags [])."""
    out = {name: None for name in COLUMNS}
    out["flags"] = []
    unknown = set(fields) - set(out)
    if unknown:
        raise KeyError(f"unknown manifest columns: {sorted(unknown)}")
    out.update(fields)
    return out


def table(rows: Iterable[dict]) -> pa.Table:
    rows = list(rows)
    return pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA) if rows else MANIFEST_SCHEMA.empty_table()


def write_parquet(path, rows: Iterable[dict]) -> None:
    """Write rows atomically (tmp file, rename). No fsync: a rename is atomic against a killed
    process; after a power loss a damaged file is caught by the resume check (magic bytes)."""
    write_table(path, table(rows))


def write_table(path, tab: pa.Table) -> None:
    """Write an Arrow table atomically (tmp file, rename), with the ``avloc.*`` key-value metadata."""
    tab = tab.replace_schema_metadata({**(tab.schema.metadata or {}), **{k.encode(): v.encode()
                                                                        for k, v in KV_METADATA.items()}})
    atomic_write_with(path, lambda tmp: pq.write_table(tab, str(tmp), compression="zstd"))


def concat(parquet_paths: Iterable, extra_rows: Iterable[dict] = ()) -> pa.Table:
    """The manifest: per-shard parquet files plus rows of files not built, sorted by (key, source_path)."""
    tables = [pq.read_table(p, schema=MANIFEST_SCHEMA) for p in parquet_paths]
    tables.append(table(extra_rows))
    return pa.concat_tables(tables).sort_by([("key", "ascending"), ("source_path", "ascending")])


def write_json(path, data: dict, *, durable: bool = True) -> None:
    """Atomic json write; ``durable`` also fsyncs before the rename."""
    payload = (json.dumps(data, indent=1, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8")
    atomic_write_bytes(path, payload, fsync=durable)


def dataset_json(*, classes: list, shards: dict, counts: dict, frame: dict, build: Optional[dict] = None) -> dict:
    """``dataset.json``: schema version, recipe (+ hash), classes (index = class_index), counts and
    shards per split (only shards holding at least one sample are listed)."""
    return schema.dataset_summary(
        classes=list(classes),
        counts={split: int(counts.get(split, 0)) for split in schema.SPLITS},
        shards={split: [{"name": f"{stem}.tar", "samples": int(n)} for stem, n in shards.get(split, []) if n > 0]
                for split in schema.SPLITS},
        frame=frame,
        build=build or {},
    )
