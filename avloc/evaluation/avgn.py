"""The single- and multi-source sets of the AVGN leaderboard, from the layouts its code reads.

* ``vggsound-single`` / ``vggsound-duet``: the VGG-SS layout (``frames/<id>.jpg``,
  ``audio/<id>.wav``, ``vggss.json``) plus ``vggsound_single_test.csv`` (``id,class``) or
  ``vggsound_duet_test.csv`` (``id1,class1,id2,class2``). A duet's source k is clip k's boxes
  on clip k's frame, built from the row itself (never looked up through the partner).
* ``music-solo`` / ``music-duet``: ``frames/<ytid>_<second:03d>_<frame:05d>.jpg``,
  ``audio/<ytid>.wav``, ``music_solo.json`` (``file``, ``class``, ``bbox`` = normalised
  [x, y, w, h]) or ``music_duet.json`` (``class_src1``, ``bbox_src1``, ``class_src2``,
  ``bbox_src2``), with the ``music_*_test.csv`` lists when present. xywh -> corners, checked.
* ``vgginstruments`` / ``vgginstruments-multi``: ``frames/sampleNNNN.jpg``,
  ``audio/sampleNNNN.wav``, masks ``anno/sampleNNNN.{pkl,pickle,npy,png}`` and
  ``vgginstruments_test.csv`` / ``vgginstruments_multi_test.csv``.

Lists and json are looked for in ``<root>/`` and ``<root>/metadata/``. Missing media, malformed
rows, bad boxes and missing partners are counted with their reasons, never fatal.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path
from typing import Optional

from avloc import metrics
from avloc.errors import InputError
from avloc.evaluation.items import BenchmarkSet, find_frame, first_existing, list_names
from avloc.evaluation.masks import MASK_EXTENSIONS
from avloc.evaluation.rows import MUSIC_ID, AudioPart, RowItem, SourceGT, box_problems, read_rows

LISTS = {"vggsound-single": "vggsound_single_test.csv", "vggsound-duet": "vggsound_duet_test.csv",
         "music-solo": "music_solo_test.csv", "music-duet": "music_duet_test.csv",
         "vgginstruments": "vgginstruments_test.csv", "vgginstruments-multi": "vgginstruments_multi_test.csv"}
MUSIC_JSON = {"music-solo": "music_solo.json", "music-duet": "music_duet.json"}
MUSIC_WINDOWS = ("video-centre", "frame-second")
VGGSS_LAYOUT = "<root>/frames/<id>.jpg, <root>/audio/<id>.wav, <root>/[metadata/]vggss.json + {list}"
MUSIC_LAYOUT = ("<root>/frames/<ytid>_<second:03d>_<frame:05d>.jpg, <root>/audio/<ytid>.wav, "
                "<root>/[metadata/]{json}")
INSTR_LAYOUT = "<root>/frames/sampleNNNN.jpg, <root>/audio/sampleNNNN.wav, <root>/anno/sampleNNNN.pkl|npy|png + {list}"


class _Collector:
    """Missing media, defects and items of one reader run."""

    def __init__(self):
        self.missing = {"frame": [], "audio": [], "annotation": []}
        self.defective = collections.Counter()
        self.defective_items: dict = {}
        self.items: list = []

    def defect(self, item_id: str, reason: str, detail: Optional[str] = None) -> None:
        self.defective[reason] += 1
        self.defective_items.setdefault(item_id, []).append(f"{reason}: {detail}" if detail else reason)

    def malformed(self, list_path: Path, bad: list) -> None:
        for line, why in bad:
            self.defect(f"{list_path.name}:{line}", "malformed_row", why)

    def result(self, benchmark, root, layout, expected, source, protocol) -> BenchmarkSet:
        return BenchmarkSet(benchmark=benchmark, root=Path(root), layout=layout, items=self.items, expected=expected,
                            expected_source=source, missing=self.missing, defective=dict(self.defective),
                            defective_items=self.defective_items, protocol=protocol)


def find_meta(root: Path, name: str, override: Optional[Path] = None) -> Optional[Path]:
    if override is not None:
        if not Path(override).is_file():
            raise InputError(f"{override} is not a file")
        return Path(override)
    return first_existing(root / name, root / "metadata" / name)


def _need_folders(root: Path, layout: str, *names) -> list:
    folders = [root / n for n in names]
    if not all(f.is_dir() for f in folders):
        raise InputError(f"{root} does not have this layout: expected {layout}")
    return folders


class _Media:
    """Frame and audio lookup in ``frames/`` and ``audio/`` (listed once)."""

    def __init__(self, root: Path):
        self.frames_dir, self.audio_dir = root / "frames", root / "audio"
        self.frame_names, self.audio_names = list_names(self.frames_dir), list_names(self.audio_dir)

    def frame(self, stem: str) -> Optional[Path]:
        return find_frame(self.frames_dir, stem, self.frame_names)

    def audio(self, stem: str) -> Optional[Path]:
        return self.audio_dir / f"{stem}.wav" if f"{stem}.wav" in self.audio_names else None


def _check_clips(col: _Collector, row_id: str, clips: list, media: _Media, gts: list) -> Optional[tuple]:
    """(frames, audios) when every clip of a row has frame, audio and ground truth; otherwise the
    row is recorded as missing, with ``partner_missing`` when only some of its clips lack something."""
    frames = [media.frame(c) for c in clips]
    audios = [media.audio(c) for c in clips]
    lacking = set()
    for modality, found in (("frame", frames), ("audio", audios), ("annotation", gts)):
        if any(v is None for v in found):
            col.missing[modality].append(row_id)
            lacking.update(c for c, v in zip(clips, found) if v is None)
    if lacking:
        if len(clips) > 1 and len(lacking) < len(clips):
            col.defect(row_id, "partner_missing", f"{', '.join(sorted(lacking))} lacks media or ground truth")
        return None
    return frames, audios


# ---------------------------------------------------------------- VGGSound single / duet

def _vggss_boxes(col: _Collector, by_id: dict, clip: str, row_id: str) -> Optional[list]:
    """The clip's VGG-SS boxes (corner fractions) or None when it has none usable (counted)."""
    entry = by_id.get(clip)
    if entry is None:
        return None
    boxes = []
    for box in entry.get("bbox") or []:
        try:
            defects = metrics.box_defects(box)
        except (TypeError, ValueError):
            defects = ["not_numbers"]
        for d in defects:
            col.defect(row_id, d, clip)
        if not defects or defects == ["out_of_range"]:
            boxes.append([float(v) for v in box])
    if not boxes:
        col.defect(row_id, "no_usable_box", clip)
        return None
    return boxes


def load_vggsound_pairs(root: Path, benchmark: str, annotations: Optional[Path] = None,
                        test_list: Optional[Path] = None) -> BenchmarkSet:
    from avloc.evaluation.vggss import read_vggss_annotations

    root = Path(root)
    layout = VGGSS_LAYOUT.format(list=LISTS[benchmark])
    _need_folders(root, layout, "frames", "audio")
    ann_path = find_meta(root, "vggss.json", annotations)
    list_path = find_meta(root, LISTS[benchmark], test_list)
    if ann_path is None or list_path is None:
        raise InputError(f"{root} does not have the {benchmark} layout: expected {layout} (or pass --annotations / "
                         f"--test-list)")
    by_id = {e["file"]: e for e in read_vggss_annotations(ann_path)}
    duet = benchmark == "vggsound-duet"
    rows, bad = read_rows(list_path, 4 if duet else 2)
    col = _Collector()
    col.malformed(list_path, bad)
    media = _Media(root)
    for row in rows:
        clips, labels = (row[0::2], row[1::2]) if duet else ([row[0]], [row[1]])
        row_id = "+".join(clips)
        if duet and clips[0] == clips[1]:
            col.defect(row_id, "same_clip_twice")
            continue
        gts = [_vggss_boxes(col, by_id, c, row_id) for c in clips]
        found = _check_clips(col, row_id, clips, media, gts)
        if found is None:
            continue
        frames, audios = found
        sources = [SourceGT(label=lab, kind="boxes", gt=g, view=k) for k, (lab, g) in enumerate(zip(labels, gts))]
        col.items.append(RowItem(id=row_id, views=frames, audio=[AudioPart(a) for a in audios], sources=sources,
                                 clips=list(clips), labels=list(labels), flags=col.defective_items.get(row_id, [])))
    expected = len(rows) + len(bad)
    protocol = {"ground_truth": ("source k: the VGG-SS boxes of the row's clip k (corner fractions, clipped, x224, "
                                 "int, union) on clip k's own frame" if duet else
                                 "the union of the clip's VGG-SS boxes (corner fractions, clipped, x224, int)"),
                "audio": ("each clip: mono, 16 kHz, its central 3 s; the two waveforms summed (no rescaling); "
                          "one spectrogram of the sum" if duet else "central 3 s of the wav, 16 kHz mono"),
                "annotations": str(ann_path), "list": str(list_path)}
    return col.result(benchmark, root, layout, expected, f"{list_path.name} ({expected} rows)", protocol)


# ---------------------------------------------------------------- MUSIC solo / duet

def _read_json_list(path: Path, keys: tuple) -> list:
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not isinstance(entries, list):
        raise InputError(f"{path} is not a JSON list of {{{', '.join(keys)}}} objects")
    return entries


def _music_box(col: _Collector, row_id: str, box) -> Optional[list]:
    try:
        corners = metrics.xywh_to_corners(box)
    except (TypeError, ValueError) as exc:
        col.defect(row_id, "bad_xywh_box", str(exc))
        return None
    for d in box_problems(corners):
        col.defect(row_id, d)
    return corners


def load_music(root: Path, benchmark: str, annotations: Optional[Path] = None, test_list: Optional[Path] = None,
               window: str = "video-centre") -> BenchmarkSet:
    root = Path(root)
    duet = benchmark == "music-duet"
    layout = MUSIC_LAYOUT.format(json=MUSIC_JSON[benchmark])
    _need_folders(root, layout, "frames", "audio")
    json_path = find_meta(root, MUSIC_JSON[benchmark], annotations)
    if json_path is None:
        raise InputError(f"{root} does not have the {benchmark} layout: expected {layout} (or pass --annotations)")
    keys = ("file", "class_src1", "bbox_src1", "class_src2", "bbox_src2") if duet else ("file", "class", "bbox")
    col = _Collector()
    by_id = {}
    for k, entry in enumerate(_read_json_list(json_path, keys)):
        if not isinstance(entry, dict) or not all(key in entry for key in keys) or not isinstance(entry["file"], str):
            col.defect(f"{json_path.name}[{k}]", "malformed_entry", f"needs {', '.join(keys)}")
            continue
        by_id[entry["file"]] = entry
    list_path = find_meta(root, LISTS[benchmark], test_list)
    if list_path is not None:
        rows, bad = read_rows(list_path, 1 if duet else 2)
        col.malformed(list_path, bad)
        ids = [r[0] for r in rows]
        expected, source = len(ids) + len(bad), f"{list_path.name} ({len(ids) + len(bad)} rows)"
    else:
        ids = list(by_id)
        expected, source = len(ids), f"{json_path.name} ({len(ids)} entries; no {LISTS[benchmark]} found)"
    media = _Media(root)
    for file_id in ids:
        match = re.match(MUSIC_ID, file_id)
        if match is None:
            col.defect(file_id, "bad_music_id", "expected <ytid>_<second:03d>_<frame:05d>")
            continue
        video, second = match["video"], int(match["second"])
        entry = by_id.get(file_id)
        sources = []
        if entry is None:
            col.missing["annotation"].append(file_id)
        else:
            pairs = [("class_src1", "bbox_src1"), ("class_src2", "bbox_src2")] if duet else [("class", "bbox")]
            for cls_key, box_key in pairs:
                corners = _music_box(col, file_id, entry[box_key])
                if corners is not None:
                    sources.append(SourceGT(label=entry[cls_key], kind="boxes", gt=[corners], view=0))
            if len(sources) < len(pairs):
                continue
        frame, audio = media.frame(file_id), media.audio(video)
        if frame is None:
            col.missing["frame"].append(file_id)
        if audio is None:
            col.missing["audio"].append(file_id)
        if frame is None or audio is None or entry is None:
            continue
        part = AudioPart(audio, second=second if window == "frame-second" else None)
        col.items.append(RowItem(id=file_id, views=[frame], audio=[part], sources=sources, clips=[video],
                                 labels=[s.label for s in sources], flags=col.defective_items.get(file_id, [])))
    protocol = {"ground_truth": ("normalised [x, y, w, h] -> corners [x, y, x + w, y + h], checked x2 > x1 and "
                                 "y2 > y1, clipped, x224, int" + ("; one box per source, both on the one frame"
                                                                  if duet else "")),
                "audio": ("video-centre: the central 3 s of the whole video's audio (AVGN)" if window == "video-centre"
                          else "frame-second: the 1 s of the frame's own second, tiled to 3 s (DSOL)"),
                "music_window": window, "annotations": str(json_path)}
    return col.result(benchmark, root, layout, expected, source, protocol)


# ---------------------------------------------------------------- VGG-Instruments

def _find_mask(anno_dir: Path, names: set, stem: str) -> Optional[Path]:
    for ext in MASK_EXTENSIONS:
        if stem + ext in names:
            return anno_dir / (stem + ext)
    return None


def load_vgginstruments(root: Path, benchmark: str, test_list: Optional[Path] = None) -> BenchmarkSet:
    root = Path(root)
    multi = benchmark == "vgginstruments-multi"
    layout = INSTR_LAYOUT.format(list=LISTS[benchmark])
    _need_folders(root, layout, "frames", "audio", "anno")
    list_path = find_meta(root, LISTS[benchmark], test_list)
    if list_path is None:
        raise InputError(f"{root} does not have the {benchmark} layout: expected {layout} (or pass --test-list)")
    rows, bad = read_rows(list_path, 4 if multi else 2)
    col = _Collector()
    col.malformed(list_path, bad)
    media = _Media(root)
    anno_dir = root / "anno"
    anno_names = list_names(anno_dir)
    for row in rows:
        clips, labels = (row[0::2], row[1::2]) if multi else ([row[0]], [row[1]])
        row_id = "+".join(clips)
        if multi and clips[0] == clips[1]:
            col.defect(row_id, "same_clip_twice")
            continue
        masks = [_find_mask(anno_dir, anno_names, c) for c in clips]
        found = _check_clips(col, row_id, clips, media, masks)
        if found is None:
            continue
        frames, audios = found
        sources = [SourceGT(label=lab, kind="mask", gt=m, view=k) for k, (lab, m) in enumerate(zip(labels, masks))]
        col.items.append(RowItem(id=row_id, views=frames, audio=[AudioPart(a) for a in audios], sources=sources,
                                 clips=list(clips), labels=list(labels)))
    expected = len(rows) + len(bad)
    protocol = {"ground_truth": ("segmentation mask (pickled array read with an array-only unpickler, .npy without "
                                 "pickles, or an image), resized to 224 nearest, > 0" +
                                 ("; source k = mask of the row's clip k on its own frame" if multi else "")),
                "audio": ("each clip: mono, 16 kHz, central 3 s; the two waveforms summed (no rescaling); one "
                          "spectrogram of the sum (the public loader never mixes them)" if multi else
                          "central 3 s of the wav, 16 kHz mono"),
                "list": str(list_path)}
    return col.result(benchmark, root, layout, expected, f"{list_path.name} ({expected} rows)", protocol)
