"""AVSBench S4 (single source) and MS3 (multi-source) test sets from their released trees.

Each of the 5 frames of a test clip is one item, scored against its own mask (> 0), with the
audio window centred on the middle of second k (3 s, clamped to the clip, tiled when the clip
is shorter), or, on request, the whole clip's audio. The pickled log-mels the dataset ships
are never opened: the spectrogram is computed from the wav.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from avloc.errors import InputError
from avloc.evaluation.items import BenchmarkSet, EvalItem

FRAMES_PER_CLIP = 5
S4_LAYOUT = ("Single-source/ with s4_meta_data.csv and s4_data/{visual_frames,gt_masks}/<split>/<category>/<name>/"
             "<name>_<k>.png, s4_data/audio_wav/<split>/<category>/<name>.wav")
MS3_LAYOUT = ("Multi-sources/ with ms3_meta_data.csv, ms3_data/visual_frames/<name>/<name>.mp4_<k>.png, "
              "ms3_data/gt_masks/<split>/<name>/<name>_<k>.png, ms3_data/audio_wav/<split>/<name>.wav")


def _find_root(root: Path, folder: str, meta: str, layout: str) -> Path:
    for candidate in (root, root / folder):
        if (candidate / meta).is_file():
            return candidate
    raise InputError(f"{root} does not have the AVSBench layout: expected {layout} (no {meta} found)")


def read_meta(path: Path, split: str) -> list:
    """Rows of an AVSBench meta csv with ``split`` == split, as dicts with name (column 0 or 'name'),
    category (the 'category' column, if any)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not a UTF-8 csv (byte {exc.start} cannot be decoded)") from None
    except csv.Error as exc:  # e.g. NUL bytes: a binary file
        raise InputError(f"{path} is not a readable csv: {exc}") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not rows:
        raise InputError(f"{path} is empty")
    header = [h.strip().lower() for h in rows[0]]
    if "split" not in header:
        raise InputError(f"{path} has no 'split' column (header: {rows[0]})")
    name_col = header.index("name") if "name" in header else 0
    cat_col = header.index("category") if "category" in header else None
    split_col = header.index("split")
    out = []
    for row in rows[1:]:
        if len(row) <= max(split_col, name_col) or row[split_col].strip() != split:
            continue
        out.append({"name": row[name_col].strip(),
                    "category": row[cat_col].strip() if cat_col is not None and cat_col < len(row) else None})
    return out


def _items(benchmark, root, clips, paths_for, whole_clip_audio, layout, meta_path) -> BenchmarkSet:
    missing = {"frame": [], "audio": [], "annotation": []}
    items = []
    for clip in clips:
        audio = paths_for(clip, "audio", None)
        audio_ok = audio.is_file()
        for k in range(1, FRAMES_PER_CLIP + 1):
            item_id = f"{clip['name']}_{k}"
            frame, mask = paths_for(clip, "frame", k), paths_for(clip, "mask", k)
            ok = True
            for modality, path, exists in (("frame", frame, None), ("annotation", mask, None), ("audio", audio, audio_ok)):
                if not (exists if exists is not None else path.is_file()):
                    missing[modality].append(item_id)
                    ok = False
            if ok:
                items.append(EvalItem(id=item_id, clip=clip["name"], label=clip["category"], frame=frame, audio=audio,
                                      gt_kind="mask", gt=mask, frame_index=k,
                                      audio_center=None if whole_clip_audio else k - 0.5,
                                      audio_whole=bool(whole_clip_audio)))
    audio_rule = ("whole clip audio for every frame" if whole_clip_audio else
                  "3 s window centred on the middle of second k (k - 0.5 s), clamped to the clip, tiled if shorter")
    return BenchmarkSet(
        benchmark=benchmark, root=root, layout=layout, items=items, expected=len(clips) * FRAMES_PER_CLIP,
        expected_source=f"{meta_path.name} split=test ({len(clips)} clips x {FRAMES_PER_CLIP} frames)",
        missing=missing, defective={}, defective_items={},
        protocol={"ground_truth": "each frame k against its own mask, G = mask > 0",
                  "audio": audio_rule, "whole_clip_audio": bool(whole_clip_audio)})


def _open_layout(root: Path, folder: str, meta: str, layout: str, name: str, split: str) -> tuple:
    """(base folder, data folder, the split's clips) of an AVSBench tree, or an InputError naming the layout."""
    base = _find_root(Path(root), folder, meta, layout)
    data = base / meta.replace("_meta_data.csv", "_data")
    if not (data / "visual_frames").is_dir():
        raise InputError(f"{base} does not have the AVSBench {name} layout: expected {layout}")
    return base, data, read_meta(base / meta, split)


def load_avsbench_s4(root: Path, whole_clip_audio: bool = False, split: str = "test") -> BenchmarkSet:
    base, data, clips = _open_layout(root, "Single-source", "s4_meta_data.csv", S4_LAYOUT, "S4", split)
    if any(c["category"] is None for c in clips):
        raise InputError(f"{base / 's4_meta_data.csv'} has no 'category' column, needed for the S4 tree")

    def paths_for(clip, kind, k) -> Path:
        name, cat = clip["name"], clip["category"]
        if kind == "audio":
            return data / "audio_wav" / split / cat / f"{name}.wav"
        folder = "visual_frames" if kind == "frame" else "gt_masks"
        return data / folder / split / cat / name / f"{name}_{k}.png"

    return _items("avsbench-s4", base, clips, paths_for, whole_clip_audio, S4_LAYOUT, base / "s4_meta_data.csv")


def load_avsbench_ms3(root: Path, whole_clip_audio: bool = False, split: str = "test") -> BenchmarkSet:
    base, data, clips = _open_layout(root, "Multi-sources", "ms3_meta_data.csv", MS3_LAYOUT, "MS3", split)

    def paths_for(clip, kind, k) -> Path:
        name = clip["name"]
        if kind == "audio":
            return data / "audio_wav" / split / f"{name}.wav"
        if kind == "frame":
            return data / "visual_frames" / name / f"{name}.mp4_{k}.png"
        return data / "gt_masks" / split / name / f"{name}_{k}.png"

    return _items("avsbench-ms3", base, clips, paths_for, whole_clip_audio, MS3_LAYOUT, base / "ms3_meta_data.csv")


def load_avsbench(root: Path, benchmark: str = "avsbench-s4", whole_clip_audio: bool = False,
                  split: Optional[str] = None) -> BenchmarkSet:
    loader = load_avsbench_ms3 if benchmark == "avsbench-ms3" else load_avsbench_s4
    return loader(root, whole_clip_audio=whole_clip_audio, split=split or "test")
