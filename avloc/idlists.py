"""Clip-id list files, read one way by ``avloc shard`` (--subset, --exclude, ...) and ``avloc evaluate``.

Accepted: one id per line (``vggss_144k.txt``; CRLF, a UTF-8 BOM and ``#`` comments fine), csv
files whose first column is an id or a file name (``vggss_test.csv``, ``vggsound_test.csv``,
``flickr_test.csv``), full vggsound.csv rows (``ytid,start,label,split``) and vggss.json-style
json (a list of ``{"file": id}`` objects or of id strings). Media extensions are dropped and ids
are canonicalised by ``schema.clip_id_for``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from avloc import schema
from avloc.errors import InputError

MEDIA_EXTENSIONS = schema.CLIP_EXTENSIONS + (".wav", ".jpg", ".png", ".flac")


def strip_media_extension(token: str) -> str:
    """``' "abc_000001.mp4" '`` -> ``abc_000001``: quotes, spaces and one media extension removed."""
    token = token.strip().strip('"').strip()
    lower = token.lower()
    for ext in MEDIA_EXTENSIONS:
        if lower.endswith(ext):
            return token[: -len(ext)]
    return token


def _ids_from_json(path: Path, text: str) -> list:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InputError(f"id list {path} is not valid json: {exc}") from None
    if not isinstance(data, list):
        raise InputError(f"id list {path}: expected a json list of ids or of {{'file': id}} objects")
    ids = []
    for item in data:
        ident = item.get("file") if isinstance(item, dict) else item
        if isinstance(ident, str) and ident.strip():
            ids.append(schema.clip_id_for(strip_media_extension(ident))[0])
    return ids


def _ids_from_rows(text: str) -> list:
    ids = []
    for row in csv.reader(text.splitlines()):
        if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
            continue
        first = strip_media_extension(row[0])
        # a vggsound.csv row (ytid,start,label,split); a two-column "id,<number>" row (flickr_test.csv)
        # is an id followed by something else
        if len(row) >= 4 and row[1].strip().isdigit() and schema.parse_clip_id(first) is None:
            ids.append(schema.canonical_clip_id(first, int(row[1])))
        else:
            ids.append(schema.clip_id_for(first)[0])
    return ids


def read_id_list(path) -> list:
    """Clip ids from a list file, in file order (duplicates dropped); see the module docstring."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read id list {path}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    ids = _ids_from_json(path, text) if path.suffix.lower() == ".json" else _ids_from_rows(text)
    return list(dict.fromkeys(ids))
