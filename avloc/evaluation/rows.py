"""Items of the single- and multi-source leaderboards: one row of a test list, any number of sources.

A ``RowItem`` is what one row of a list names: the pictures the model looks at (``views``: one
frame, or the two frames of a synthetic duet), the audio tracks summed into its soundtrack
(``audio``: one, or both clips of a duet) and one ground truth per sounding source
(``sources``, each on one view; none for a non-sounding pair). ``read_rows`` reads the
comma-separated lists these sets ship, counting malformed rows instead of failing.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import Optional

import numpy as np

from avloc import metrics
from avloc.errors import InputError

MUSIC_ID = r"^(?P<video>.+)_(?P<second>\d{3})_(?P<frame>\d{5})$"


@dataclasses.dataclass
class SourceGT:
    """One sounding source: its class, its ground truth on view ``view``.

    ``kind``: "boxes" (corner fractions [[x1, y1, x2, y2], ...], union), "flickr_boxes" (pixels
    of a 256 x 256 canvas, soft consensus), "mask" (a mask file, see ``masks``)."""

    label: Optional[str]
    kind: str
    gt: object
    view: int = 0

    def gt_map(self) -> np.ndarray:
        if self.kind == "boxes":
            return metrics.gt_map_from_boxes(self.gt)
        if self.kind == "flickr_boxes":
            return metrics.gt_map_from_flickr_boxes(self.gt)
        if self.kind == "mask":
            from avloc.evaluation.masks import mask_gt_map

            return mask_gt_map(self.gt)
        raise ValueError(f"unknown ground-truth kind {self.kind!r}")


@dataclasses.dataclass
class AudioPart:
    """One track of a row's soundtrack: the central 3 s (``second`` None) or, for MUSIC's
    ``frame-second`` window, the 1 s starting at ``second`` tiled to 3 s."""

    path: Path
    second: Optional[int] = None


@dataclasses.dataclass
class RowItem:
    id: str
    views: list  # frame paths
    audio: list  # AudioPart per track; the soundtrack is their sum
    sources: list  # SourceGT per sounding source (empty: a non-sounding pair)
    clips: list  # clip id of each view (shuffled-audio partners come from other clips)
    labels: list  # class of each source (None when unknown)
    flags: list = dataclasses.field(default_factory=list)

    @property
    def clip(self) -> str:
        return "+".join(self.clips)

    @property
    def label(self) -> Optional[str]:
        known = [lab for lab in self.labels if lab]
        return "+".join(sorted(known)) if known else None

    @property
    def sounding(self) -> bool:
        return bool(self.sources)


def read_rows(path: Path, n_columns: int, header: Optional[tuple] = None) -> tuple:
    """(rows of exactly ``n_columns`` stripped non-empty fields, [(line number, reason)] of the others).

    A first row equal to ``header`` (case-insensitive) is skipped; so is a first row naming
    columns (``file``/``id``/``video``). Blank lines are ignored. An unreadable file is an InputError."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read list {path}: {exc}") from None
    rows, bad = [], []
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        fields = [f.strip() for f in row]
        if not any(fields):
            continue
        if number == 1 and (header and [f.lower() for f in fields] == list(header)
                            or fields[0].lower() in ("file", "id", "video", "name")):
            continue
        if len(fields) != n_columns or not all(fields):
            bad.append((number, f"expected {n_columns} non-empty fields, got {len(fields)}: {','.join(fields)[:80]}"))
            continue
        rows.append(fields)
    return rows, bad


def box_problems(corners) -> list:
    """Defect names of corner fractions that are kept (clipped) but worth counting."""
    found = []
    if any(not math.isfinite(float(v)) for v in corners):
        return ["non_finite"]
    if any(float(v) < -1e-6 or float(v) > 1 + 1e-6 for v in corners):
        found.append("out_of_range")
    return found
