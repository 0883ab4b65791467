"""The scale frames are stored at in a shard set, and whether training can skip its resize.

``avloc shard`` stores every frame with its shorter side resized (bicubic, from the source
frame) to ``--frame-size``; dataset.json records it under ``frame.short_side``. When that size
is the training scale, int(1.1 x image_size) (METHOD.md §1.2), the stored frame already is the
recipe's resized frame and a training loader only crops and flips it. Any other size (256, the
layout of earlier versions) keeps the per-sample resize.

Every shard of a set was built with one frame size (it is part of each shard's job hash), so one
sample per shard says the shard's size: the first sample's JPEG header (its SOF segment). A
split whose shards disagree, or disagree with dataset.json, is refused: the crop would mean a
different scale in different shards.
"""

from __future__ import annotations

from typing import Optional

from avloc.data.augment import resize_shorter_size
from avloc.data.frame_limits import jpeg_frame_size
from avloc.errors import InputError

def jpeg_size(data: bytes) -> Optional[tuple]:
    """(width, height) from a JPEG's start-of-frame segment; None when ``data`` holds none."""
    if data[:2] != b"\xff\xd8":
        return None
    found = jpeg_frame_size(lambda pos, n: data[pos:pos + n], len(data))
    return (found[1], found[0]) if found else None


def read_jpeg_size(fh, offset: int, size: int) -> Optional[tuple]:
    """The (width, height) of the JPEG member at ``offset`` (``size`` bytes) of an open tar."""
    def read_at(pos: int, n: int) -> bytes:
        fh.seek(offset + pos)
        return fh.read(n)

    if read_at(0, 2) != b"\xff\xd8":
        return None
    found = jpeg_frame_size(read_at, size)
    return (found[1], found[0]) if found else None


def common_short_side(per_shard: dict, declared: Optional[int], where: str) -> Optional[int]:
    """The one stored shorter side of a split's shards (name -> short side or None when empty).

    Raises InputError naming two shards that differ, or the shard that differs from dataset.json.
    """
    sizes = {name: side for name, side in per_shard.items() if side is not None}
    by_size: dict = {}
    for name, side in sizes.items():
        by_size.setdefault(side, name)
    if len(by_size) > 1:
        (a, name_a), (b, name_b) = sorted(by_size.items())[:2]
        raise InputError(f"{where} mixes frame sizes: shard {name_a} stores frames of shorter side {a}, shard {name_b} "
                         f"of {b}; a set must be sharded with one --frame-size (rebuild it with avloc shard --overwrite)")
    if not by_size:
        return declared
    side = next(iter(by_size))
    if declared is not None and declared != side:
        raise InputError(f"{where}: dataset.json says frames have shorter side {declared}, but shard {by_size[side]} "
                         f"stores {side}; the set mixes shards of two builds (rebuild it with avloc shard --overwrite)")
    return side


def crop_only(stored_short_side: Optional[int], image_size: int) -> bool:
    """Whether training frames need only crop + flip: stored at int(1.1 x image_size) already."""
    return stored_short_side is not None and stored_short_side == resize_shorter_size(image_size)
