"""Find clips under a folder and read the csv and boxes that decide their labels and splits.

Clip ids and sample keys follow ``schema.clip_id_for`` and ``schema.sample_key``; id lists
(--subset, --exclude, ...) are read by ``avloc.idlists.read_id_list``.

Duplicates. When two files map to the same id, one is kept by a fixed rule (non-empty file
first, then the canonical ``<ytid>_<start:06d>`` name, then container preference
mp4 > mkv > webm > others, then the path) and the others are reported as duplicates.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path
from typing import Optional

from avloc import schema
from avloc.errors import InputError
from avloc.idlists import strip_media_extension
from avloc.schema import CLIP_EXTENSIONS, clip_id_for

_EXT_RANK = {".mp4": 0, ".mkv": 1, ".webm": 2}


@dataclasses.dataclass
class ClipFile:
    path: Path  # absolute
    rel_path: str  # relative to the clips root, posix separators
    clip_id: str
    key: str
    clip_start: Optional[float]
    size: int
    canonical_name: bool  # the stem already was <ytid>_<start:06d>
    key_rewritten: bool
    mtime_ns: int = 0  # 0 when the file could not be stat'ed


@dataclasses.dataclass
class Discovery:
    clips: list  # ClipFile, one per id, sorted by key
    duplicates: list  # (ClipFile dropped, ClipFile kept)
    n_files: int


def _keep_order(c: ClipFile) -> tuple:
    ext = Path(c.rel_path).suffix.lower()
    return (c.size == 0, not c.canonical_name, _EXT_RANK.get(ext, len(_EXT_RANK)), c.rel_path)


def find_clips(root) -> Discovery:
    """All clip files under ``root`` (recursive, following linked folders once), one per id."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--clips {root} is not a folder")
    found: list[ClipFile] = []
    seen_dirs: set = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # a linked folder seen before (or a link cycle): walk it once
            dirnames[:] = []
            continue
        seen_dirs.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            if not name.lower().endswith(CLIP_EXTENSIONS) or name.startswith("."):
                continue
            path = Path(dirpath) / name
            try:
                st = path.stat()
                size, mtime_ns = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime_ns = -1, 0  # a dangling link or a file that vanished: reported when it is read
            clip_id, start, canonical = clip_id_for(path.stem)
            key = schema.sample_key(clip_id)
            found.append(ClipFile(path=path.absolute(), rel_path=path.relative_to(root).as_posix(), clip_id=clip_id,
                                  key=key, clip_start=start, size=size, canonical_name=canonical,
                                  key_rewritten=key != clip_id, mtime_ns=mtime_ns))
    by_key: dict[str, list] = {}
    for c in found:
        by_key.setdefault(c.key, []).append(c)
    clips, duplicates = [], []
    for key in sorted(by_key):
        group = sorted(by_key[key], key=_keep_order)
        clips.append(group[0])
        duplicates.extend((dropped, group[0]) for dropped in group[1:])
    return Discovery(clips=clips, duplicates=duplicates, n_files=len(found))


@dataclasses.dataclass
class CsvEntry:
    label: str
    split: Optional[str]  # "train" / "test" / None


def read_vggsound_csv(path) -> dict:
    """vggsound.csv (``ytid,start,label,split``, no header, quoted labels) -> {clip_id: CsvEntry}.

    Also reads the two-column ``<id>.mp4,<label>`` form (split unknown). The first row for an id
    wins. Raises InputError naming the first malformed line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read --csv {path}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    entries: dict[str, CsvEntry] = {}
    for line_no, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or not any(cell.strip() for cell in row):
            continue
        cells = [c.strip() for c in row]
        if len(cells) >= 4 and cells[1].isdigit():
            clip_id = schema.canonical_clip_id(cells[0], int(cells[1]))
            split = cells[3].lower() or None
            if split not in (None, "train", "test"):
                raise InputError(f"--csv {path} line {line_no}: split must be train or test, got {cells[3]!r}")
            label = cells[2]
        elif len(cells) == 2:
            clip_id, label, split = clip_id_for(strip_media_extension(cells[0]))[0], cells[1], None
        elif line_no == 1:
            continue  # a header row
        else:
            raise InputError(f"--csv {path} line {line_no}: expected youtube_id,start_seconds,label,split")
        if not label:
            raise InputError(f"--csv {path} line {line_no}: empty label")
        entries.setdefault(clip_id, CsvEntry(label=label, split=split))
    if not entries:
        raise InputError(f"--csv {path} has no rows")
    return entries


def read_boxes(path) -> dict:
    """vggss.json-style boxes -> {clip_id: [[x1, y1, x2, y2], ...]} (fractions, passed through as given)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read --boxes {path}: {exc}") from None
    if not isinstance(data, list):
        raise InputError(f"--boxes {path}: expected a json list of {{'file', 'bbox'}} objects")
    boxes = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "file" not in item or "bbox" not in item:
            raise InputError(f"--boxes {path}: item {i} has no 'file'/'bbox'")
        bbox = item["bbox"]
        if not isinstance(bbox, list) or not all(isinstance(b, list) and len(b) == 4 for b in bbox):
            raise InputError(f"--boxes {path}: item {i} ({item['file']}) bbox is not a list of [x1, y1, x2, y2]")
        boxes[clip_id_for(strip_media_extension(str(item["file"])))[0]] = [[float(v) for v in b] for b in bbox]
    return boxes
