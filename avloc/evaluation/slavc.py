"""SLAVC's extended sets: the Flickr-SoundNet / VGG-SS test sets plus "non-sounding" pairs.

The sounding part is the base set, read by its own reader (``flickr`` / ``vggss``). The
non-sounding pairs come from ``flickr_test_plus_silent.csv`` / ``vggss_test_plus_silent.csv``
(header ``video,audio,label``): the frame of ``video`` with the audio of ``audio``, whose
correct answer is "no visible source" (empty ground truth). Their frames and audio are looked
up in the base set's folders (the SLAVC extra media go alongside).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from avloc.errors import InputError
from avloc.evaluation.avgn import _Collector, find_meta
from avloc.evaluation.items import BenchmarkSet, find_frame, list_names
from avloc.evaluation.rows import AudioPart, RowItem, SourceGT, read_rows

EXTENDED = {"flickr-extended": ("flickr", "flickr_test_plus_silent.csv"),
            "vggss-extended": ("vggss", "vggss_test_plus_silent.csv")}
HEADER = ("video", "audio", "label")


def _base_rows(base_set) -> list:
    kind = "flickr_boxes" if base_set.benchmark == "flickr" else "boxes"
    return [RowItem(id=it.id, views=[it.frame], audio=[AudioPart(it.audio)],
                    sources=[SourceGT(label=it.label, kind=kind, gt=it.gt, view=0)], clips=[it.clip],
                    labels=[it.label], flags=list(it.flags)) for it in base_set.items]


def load_extended(root: Path, benchmark: str, annotations: Optional[Path] = None,
                  test_list: Optional[Path] = None) -> BenchmarkSet:
    base_name, list_name = EXTENDED[benchmark]
    root = Path(root)
    if base_name == "flickr":
        from avloc.evaluation.flickr import load_flickr

        base = load_flickr(root)
    else:
        from avloc.evaluation.vggss import load_vggss

        base = load_vggss(root, "vggss", annotations=annotations)
    list_path = find_meta(root, list_name, test_list)
    if list_path is None:
        raise InputError(f"{benchmark} needs {list_name} (header video,audio,label) in {root} or {root / 'metadata'} "
                         f"(or --test-list)")
    rows, bad = read_rows(list_path, 3, header=HEADER)
    col = _Collector()
    col.malformed(list_path, bad)
    for modality, ids in base.missing.items():
        col.missing[modality].extend(ids)
    col.defective.update(base.defective)
    col.defective_items.update(base.defective_items)
    col.items = _base_rows(base)
    # frames and audio of the base set's folders (the flat Flickr layout keeps both in the root)
    frames_dir = next((p.parent for it in base.items for p in [it.frame]), root / "frames")
    audio_dir = next((p.parent for it in base.items for p in [it.audio]), root / "audio")
    frame_names, audio_names = list_names(frames_dir), list_names(audio_dir)
    labels = {it.clip: it.label for it in base.items}
    for video, audio, label in rows:
        row_id = f"{video}|{audio}"
        if label.lower() != "non-sounding":
            col.defect(row_id, "unexpected_label", label)
        frame = find_frame(frames_dir, video, frame_names)
        has_audio = f"{audio}.wav" in audio_names
        if frame is None:
            col.missing["frame"].append(row_id)
        if not has_audio:
            col.missing["audio"].append(row_id)
        if frame is None or not has_audio:
            continue
        col.items.append(RowItem(id=row_id, views=[frame], audio=[AudioPart(audio_dir / f"{audio}.wav")], sources=[],
                                 clips=[video] if video == audio else [video, audio],
                                 labels=[labels.get(audio)], flags=["non-sounding"]))
    expected = base.expected + len(rows) + len(bad)
    protocol = {**base.protocol,
                "non_sounding": "frame of `video` with the audio of `audio`; empty ground truth; a confident "
                                "prediction on it is a false positive",
                "list": str(list_path)}
    source = f"{base.expected_source} + {list_path.name} ({len(rows) + len(bad)} non-sounding rows)"
    return col.result(benchmark, root, f"{base.layout}; plus {list_name}", expected, source, protocol)
