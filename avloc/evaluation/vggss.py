"""VGG-SS (and its heard / unheard halves) from the layout every public loader uses.

``<root>/frames/<id>.jpg`` (or .png), ``<root>/audio/<id>.wav``, the boxes in ``vggss.json``
and the official id lists (``vggss_test.csv``, ``vggss_heard_test.csv``,
``vggss_unheard_test.csv``), each in ``<root>/`` or ``<root>/metadata/``.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Optional

from avloc import metrics
from avloc.errors import InputError
from avloc.evaluation.items import BenchmarkSet, EvalItem, find_frame, first_existing, list_names, media_found
from avloc.idlists import read_id_list

LAYOUT = "<root>/frames/<id>.jpg|png, <root>/audio/<id>.wav, <root>/[metadata/]vggss.json"
LISTS = {"vggss": "vggss_test.csv", "vggss-heard": "vggss_heard_test.csv", "vggss-unheard": "vggss_unheard_test.csv"}


def read_vggss_annotations(path: Path) -> list:
    """The vggss.json list of {"file", "class", "bbox": [[x1, y1, x2, y2], ...]} (fractions)."""
    try:
        with open(path, encoding="utf-8") as fh:
            entries = json.load(fh)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read VGG-SS annotations {path}: {exc}") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "file" in e and "bbox" in e for e in entries):
        raise InputError(f"{path} is not a VGG-SS annotation file (a JSON list of {{'file', 'class', 'bbox'}})")
    return entries


def entry_boxes(entry: dict) -> tuple:
    """(the entry's boxes as a list of boxes, entry-level defects). A bare [x1, y1, x2, y2] is read as
    the one box it is (flagged ``unnested_box``); a ``bbox`` that is not a list gives no boxes."""
    boxes = entry.get("bbox")
    if not isinstance(boxes, list):
        return [], ["bbox_not_a_list"]
    if len(boxes) == 4 and not any(isinstance(b, (list, tuple, dict)) for b in boxes):
        return [boxes], ["unnested_box"]
    return boxes, []


def vggss_defects(entries: list) -> tuple:
    """(counts by defect kind over all boxes, plus "empty_map" clips; {clip id: [defects]})."""
    counts = collections.Counter()
    per_clip = {}
    for entry in entries:
        boxes, found = entry_boxes(entry)
        for box in boxes:
            found.extend(metrics.box_defects(box))
        if not boxes:
            found.append("no_boxes")
        elif metrics.gt_map_from_boxes(boxes).sum() == 0:
            found.append("empty_map")
        counts.update(found)
        if found:
            per_clip[entry["file"]] = found
    return dict(counts), per_clip


def load_vggss(root: Path, benchmark: str = "vggss", annotations: Optional[Path] = None,
               test_list: Optional[Path] = None) -> BenchmarkSet:
    root = Path(root)
    frames_dir, audio_dir = root / "frames", root / "audio"
    ann_path = Path(annotations) if annotations else first_existing(root / "vggss.json", root / "metadata" / "vggss.json")
    if not frames_dir.is_dir() or not audio_dir.is_dir() or ann_path is None:
        raise InputError(f"{root} does not have the VGG-SS layout: expected {LAYOUT} (or pass --annotations)")
    entries = read_vggss_annotations(ann_path)
    by_id = {e["file"]: e for e in entries}

    list_name = LISTS[benchmark]
    list_path = Path(test_list) if test_list else first_existing(root / list_name, root / "metadata" / list_name)
    if list_path is not None:
        ids = read_id_list(list_path)
        source = f"{list_path.name} ({len(ids)} ids)"
    elif benchmark == "vggss":
        ids = [e["file"] for e in entries]
        source = f"{ann_path.name} ({len(ids)} entries; no vggss_test.csv found)"
    else:
        raise InputError(f"{benchmark} needs its id list {list_name} in {root} or {root / 'metadata'} (or --test-list)")

    counts, per_clip = vggss_defects([by_id[i] for i in ids if i in by_id])
    frame_names, audio_names = list_names(frames_dir), list_names(audio_dir)
    missing = {"frame": [], "audio": [], "annotation": []}
    items = []
    for clip in ids:
        entry = by_id.get(clip)
        frame = find_frame(frames_dir, clip, frame_names)
        has_audio = f"{clip}.wav" in audio_names
        if entry is None:
            missing["annotation"].append(clip)
        if not media_found(missing, clip, frame, has_audio) or entry is None:
            continue
        items.append(EvalItem(id=clip, clip=clip, label=entry.get("class"), frame=frame, audio=audio_dir / f"{clip}.wav",
                              gt_kind="vggss_boxes", gt=entry_boxes(entry)[0], flags=list(per_clip.get(clip, []))))
    return BenchmarkSet(
        benchmark=benchmark, root=root, layout=LAYOUT, items=items, expected=len(ids), expected_source=source,
        missing=missing, defective=counts, defective_items={k: v for k, v in per_clip.items()},
        protocol={"ground_truth": "VGG-SS boxes: clip to [0, 1], x224, truncate to int, binary union",
                  "audio": "central 3 s of the wav (tiled if shorter), 16 kHz mono",
                  "annotations": str(ann_path)})
