"""Which clips go into the set, and in which split.

Clips are found (``discover``), filtered by ``--subset`` / ``--exclude``, and given a split: the
csv's split column -> ``test``; ``val`` carved from train by a hash of the clip id or listed in
``--val-list``; else ``train``. Files not built (duplicates, excluded, not in the subset) become
manifest rows of their own.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Optional

from avloc.errors import InputError
from avloc.idlists import read_id_list
from avloc.schema import CLIP_EXTENSIONS
from avloc.tools.sharding import discover, manifest
from avloc.tools.sharding.config import ShardConfig, as_path_list
from avloc.tools.sharding.sample_builder import ClipTask


@dataclasses.dataclass
class Selection:
    tasks: list  # ClipTask to build
    side_rows: list  # manifest rows of files not built (duplicate, excluded, not_in_subset)
    classes: list
    counts: dict  # discovery/list counts for the report
    missing_ids: list  # listed (subset, else csv) but not found


@dataclasses.dataclass
class _Lists:
    """What the csv and the id lists say."""

    csv_entries: dict
    subset_list: Optional[list]
    exclude: set
    test_ids: set
    boxes: dict
    val_ids: set

    @property
    def known_test(self) -> set:
        return self.test_ids | self.exclude


def _read_lists(cfg: ShardConfig) -> _Lists:
    csv_entries = discover.read_vggsound_csv(cfg.csv) if cfg.csv else {}
    subset_list = read_id_list(cfg.subset) if cfg.subset else None
    exclude: set = set()
    for p in as_path_list(cfg.exclude):
        exclude.update(read_id_list(p))
    test_ids: set = set()
    for p in as_path_list(cfg.test_ids):
        test_ids.update(read_id_list(p))
    boxes = discover.read_boxes(cfg.boxes) if cfg.boxes else {}
    val_ids = set(read_id_list(cfg.val_list)) if cfg.val_list else set()
    return _Lists(csv_entries, subset_list, exclude, test_ids, boxes, val_ids)


def val_by_hash(clip_id: str, fraction: float) -> bool:
    h = int(hashlib.sha256(clip_id.encode("utf-8")).hexdigest()[:16], 16)
    return h / float(1 << 64) < fraction


def _side_row(clip, status: str, reason: str, in_test_ids: bool, detail: Optional[str] = None) -> dict:
    return manifest.row(clip_id=clip.clip_id, key=clip.key, source_path=clip.rel_path, file_size=clip.size,
                        status=status, reason=reason, detail=detail, in_test_ids=in_test_ids)


def _task(clip, cfg: ShardConfig, lists: _Lists, class_index: dict) -> ClipTask:
    entry = lists.csv_entries.get(clip.clip_id)
    flags = []
    if clip.key_rewritten:
        flags.append("key_rewritten")
    if cfg.csv and entry is None:
        flags.append("not_in_csv")
    if entry is not None and entry.split == "test":
        split = "test"
    elif clip.clip_id in lists.val_ids or (cfg.val_fraction > 0 and val_by_hash(clip.clip_id, cfg.val_fraction)):
        split = "val"
    else:
        split = "train"
    return ClipTask(
        clip_id=clip.clip_id, key=clip.key, path=str(clip.path), rel_path=clip.rel_path,
        label=entry.label if entry else None, class_index=class_index[entry.label] if entry else -1,
        split=split, clip_start=clip.clip_start, bbox=lists.boxes.get(clip.clip_id), flags=tuple(flags),
        file_size=clip.size, in_test_ids=clip.clip_id in lists.known_test, mtime_ns=clip.mtime_ns)


def select(cfg: ShardConfig) -> Selection:
    found = discover.find_clips(cfg.clips)
    if found.n_files == 0:
        raise InputError(f"no clips under {cfg.clips} (looked for {', '.join(CLIP_EXTENSIONS)}, recursively)")
    lists = _read_lists(cfg)
    classes = sorted({e.label for e in lists.csv_entries.values()})
    class_index = {label: i for i, label in enumerate(classes)}
    known_test = lists.known_test
    subset = set(lists.subset_list) if lists.subset_list is not None else None

    side_rows = [_side_row(dropped, "duplicate", "duplicate_clip_id", dropped.clip_id in known_test,
                           detail=f"kept {kept.rel_path}") for dropped, kept in found.duplicates]
    tasks, n_not_in_subset, n_excluded = [], 0, 0
    for clip in found.clips:
        if subset is not None and clip.clip_id not in subset:
            n_not_in_subset += 1
            side_rows.append(_side_row(clip, "not_in_subset", "not_in_subset", clip.clip_id in known_test))
        elif clip.clip_id in lists.exclude:
            n_excluded += 1
            side_rows.append(_side_row(clip, "excluded", "excluded", True))
        else:
            tasks.append(_task(clip, cfg, lists, class_index))
    if not tasks:
        raise InputError(f"none of the {len(found.clips)} clips under {cfg.clips} is selected "
                         f"({n_not_in_subset} not in --subset, {n_excluded} excluded)")

    found_ids = {c.clip_id for c in found.clips}
    listed = lists.subset_list if lists.subset_list is not None else list(lists.csv_entries)
    missing = [i for i in listed if i not in found_ids]
    counts = {
        "files_found": found.n_files,
        "clip_ids_found": len(found.clips),
        "duplicates": len(found.duplicates),
        "listed": len(listed),
        "listed_from": "subset" if cfg.subset else ("csv" if cfg.csv else None),
        "listed_missing": len(missing),
        "not_in_subset": n_not_in_subset,
        "excluded": n_excluded,
        "selected": len(tasks),
        "listed_test_overlap": len(set(listed) & known_test) if lists.test_ids or lists.exclude else None,
        "test_ids_known": len(known_test),
    }
    return Selection(tasks=tasks, side_rows=side_rows, classes=classes, counts=counts, missing_ids=missing)
