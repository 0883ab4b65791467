"""What a benchmark reader returns: the scorable items plus the counts users must see.

An item is one (frame, audio, ground truth) triple. ``BenchmarkSet`` also says how many items
the official list expects, which were missing and for which modality, which ground truths are
defective, and the protocol choices a reader made (stated in results.json).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np

from avloc import metrics

MODALITIES = ("frame", "audio", "annotation")
FRAME_EXTENSIONS = (".jpg", ".png", ".jpeg")


@dataclasses.dataclass
class EvalItem:
    """One scorable sample. ``gt`` is boxes (list of 4-lists) or a mask path, per ``gt_kind``."""

    id: str
    clip: str
    label: Optional[str]
    frame: Path
    audio: Path
    gt_kind: str  # "vggss_boxes" | "flickr_boxes" | "mask"
    gt: object
    audio_center: Optional[float] = None  # seconds; None = the clip's central window
    audio_whole: bool = False  # the whole clip's audio instead of a 3 s window
    frame_index: Optional[int] = None
    flags: list = dataclasses.field(default_factory=list)

    def gt_map(self) -> np.ndarray:
        if self.gt_kind == "vggss_boxes":
            return metrics.gt_map_from_boxes(self.gt)
        if self.gt_kind == "flickr_boxes":
            return metrics.gt_map_from_flickr_boxes(self.gt)
        if self.gt_kind == "mask":
            from PIL import Image

            with Image.open(self.gt) as img:
                mask = np.asarray(img)  # palette PNGs give indices, 1-bit PNGs bools
            if mask.ndim == 3:
                mask = mask.max(axis=2)
            if mask.shape != (metrics.MAP_SIZE, metrics.MAP_SIZE):
                mask = np.asarray(Image.fromarray((mask > 0).astype(np.uint8) * 255).resize(
                    (metrics.MAP_SIZE, metrics.MAP_SIZE), Image.NEAREST))
            return metrics.gt_map_from_mask(mask)
        raise ValueError(f"unknown ground-truth kind {self.gt_kind!r}")


@dataclasses.dataclass
class BenchmarkSet:
    benchmark: str
    root: Path
    layout: str  # the layout found, in words
    items: list
    expected: int  # items the official list expects
    expected_source: str  # where the expected count comes from
    missing: dict  # modality -> list of item ids
    defective: dict  # kind of ground-truth defect -> count (boxes / annotations)
    defective_items: dict  # item id -> list of defect names
    protocol: dict  # reader-specific protocol facts (GT, audio window, ...)

    @property
    def found(self) -> int:
        return len(self.items)

    def counts(self) -> dict:
        missing_any = {i for ids in self.missing.values() for i in ids}
        return {
            "expected": self.expected,
            "expected_source": self.expected_source,
            "found": self.found,
            "missing": len(missing_any),
            "missing_by_modality": {m: len(self.missing.get(m, [])) for m in MODALITIES},
            "defective_gt": dict(self.defective),
            "defective_gt_items": len(self.defective_items),
        }


def find_frame(folder: Path, stem: str, names: Optional[set] = None) -> Optional[Path]:
    """``<folder>/<stem>.jpg`` (or .png/.jpeg); ``names`` = a pre-listed set of file names to avoid stat calls."""
    for ext in FRAME_EXTENSIONS:
        name = stem + ext
        if names is not None:
            if name in names:
                return folder / name
        elif (folder / name).is_file():
            return folder / name
    return None


def list_names(folder: Path) -> set:
    try:
        return {p.name for p in folder.iterdir()}
    except OSError:
        return set()


def first_existing(*paths: Path) -> Optional[Path]:
    for p in paths:
        if p is not None and p.is_file():
            return p
    return None


def media_found(missing: dict, clip: str, frame: Optional[Path], has_audio: bool) -> bool:
    """Record a clip's missing frame and/or audio in ``missing``; True when both are there."""
    if frame is None:
        missing["frame"].append(clip)
    if not has_audio:
        missing["audio"].append(clip)
    return frame is not None and has_audio
