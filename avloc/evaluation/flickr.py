"""Flickr-SoundNet test pairs, flat or with ``frames/`` + ``audio/`` subfolders.

Accepted layouts (frames may be .jpg or .png):
* subfolders: ``<root>/frames/<id>.jpg``, ``<root>/audio/<id>.wav``;
* flat: ``<root>/<id>.jpg`` and ``<root>/<id>.wav`` side by side.
Annotations ``<id>.xml`` in ``<root>/Annotations/`` (or ``annotations/``) or beside the frames.
The official list is ``flickr_test.csv`` (``id,<unused>``, 249 rows) in ``<root>/`` or
``<root>/metadata/``; without it every annotated id is expected.
"""

from __future__ import annotations

import collections
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

from avloc import metrics
from avloc.errors import InputError
from avloc.evaluation.items import BenchmarkSet, EvalItem, find_frame, first_existing, list_names, media_found
from avloc.idlists import read_id_list

LAYOUT = ("<root>/frames/<id>.jpg + <root>/audio/<id>.wav, or flat <root>/<id>.jpg + <root>/<id>.wav; "
          "annotations <root>/Annotations/<id>.xml or <root>/<id>.xml")
COORD_TAGS = ("xmin", "ymin", "xmax", "ymax")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1].strip().lower()


def _int(text: Optional[str]) -> int:
    text = (text or "").strip()
    try:
        return int(text)
    except ValueError:
        return int(float(text))  # "12.0" occurs in re-exported copies; anything else raises ValueError


def parse_flickr_xml(path: Path) -> list:
    """Boxes (xmin, ymin, xmax, ymax) in pixels of the 256 x 256 canvas, one per annotator box.

    For each child of the root, each grandchild tagged ``bbox`` holds the four coordinates: by
    tag name when it has xmin/ymin/xmax/ymax children, else positionally after its first element.
    Raises ValueError on unreadable or malformed files.
    """
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ValueError(f"unreadable XML: {exc}") from exc
    boxes = []
    for child in root:
        for grandchild in child:
            if _local(grandchild.tag) != "bbox":
                continue
            elements = list(grandchild)
            named = {_local(e.tag): e.text for e in elements}
            if all(t in named for t in COORD_TAGS):
                box = [_int(named[t]) for t in COORD_TAGS]
            else:
                values = [_int(e.text) for e in elements[1:]]
                if len(values) != 4:
                    raise ValueError(f"a bbox element has {len(values)} values after its first element, expected 4")
                box = values
            boxes.append(tuple(box))
    return boxes


def _detect_layout(root: Path) -> tuple:
    if (root / "frames").is_dir() and (root / "audio").is_dir():
        return root / "frames", root / "audio", "subfolders (frames/ + audio/)"
    names = list_names(root)
    if any(n.endswith(".wav") for n in names) and any(n.endswith((".jpg", ".png")) for n in names):
        return root, root, "flat (frames and wavs in one folder)"
    raise InputError(f"{root} does not have a Flickr-SoundNet layout: expected {LAYOUT}")


def load_flickr(root: Path, test_list: Optional[Path] = None) -> BenchmarkSet:
    root = Path(root)
    frames_dir, audio_dir, layout = _detect_layout(root)
    ann_dir = next((d for d in (root / "Annotations", root / "annotations") if d.is_dir()), frames_dir)
    ann_names = list_names(ann_dir)
    list_path = Path(test_list) if test_list else first_existing(root / "flickr_test.csv", root / "metadata" / "flickr_test.csv")
    if list_path is not None:
        ids = read_id_list(list_path)
        source = f"{list_path.name} ({len(ids)} ids)"
    else:
        ids = sorted(n[:-4] for n in ann_names if n.endswith(".xml"))
        source = f"annotation files ({len(ids)}; no flickr_test.csv found)"
        if not ids:
            raise InputError(f"{root} has no flickr_test.csv and no <id>.xml annotations: expected {LAYOUT}")

    frame_names = list_names(frames_dir)
    audio_names = frame_names if audio_dir == frames_dir else list_names(audio_dir)
    missing = {"frame": [], "audio": [], "annotation": []}
    defective = collections.Counter()
    defective_items = {}
    items = []
    for clip in ids:
        frame = find_frame(frames_dir, clip, frame_names)
        has_audio = f"{clip}.wav" in audio_names
        boxes = None
        if f"{clip}.xml" not in ann_names:
            missing["annotation"].append(clip)
        else:
            try:
                boxes = parse_flickr_xml(ann_dir / f"{clip}.xml")
            except ValueError as exc:
                defective["unreadable_annotation"] += 1
                defective_items[clip] = [f"unreadable_annotation: {exc}"]
                missing["annotation"].append(clip)
            else:
                found = [d for box in boxes for d in metrics.flickr_box_defects(box)] if boxes else ["no_boxes"]
                if found:
                    defective.update(found)
                    defective_items[clip] = found
        if not media_found(missing, clip, frame, has_audio) or boxes is None:
            continue
        items.append(EvalItem(id=clip, clip=clip, label=None, frame=frame, audio=audio_dir / f"{clip}.wav",
                              gt_kind="flickr_boxes", gt=[list(b) for b in boxes],
                              flags=list(defective_items.get(clip, []))))
    return BenchmarkSet(
        benchmark="flickr", root=root, layout=layout, items=items, expected=len(ids), expected_source=source,
        missing=missing, defective=dict(defective), defective_items=defective_items,
        protocol={"ground_truth": "Flickr boxes on a 256x256 canvas, int(224*v/256) held to [0, 224] (negative, inverted and off-canvas boxes are counted as defective), "
                                "sum of boxes / 2 clipped at 1",
                  "audio": "central 3 s of the wav (tiled if shorter), 16 kHz mono",
                  "annotations": str(ann_dir)})
