"""The largest frame a loader decodes, read from the JPEG header before any pixel is decoded.

A shard's frame has its shorter side at 256; a header claiming 30000 x 30000 (a ~600-byte file)
would make a decoder allocate gigabytes. Every loader applies the same limit: the shard set
checks each frame's header when it opens the shards (so the DALI and torch loaders leave out
the same samples), and the PIL-based loaders check ``Image.size`` before ``load()``.
"""

from __future__ import annotations

from typing import Callable, Optional

MAX_FRAME_PIXELS = 1 << 25  # 33.5 million: an 8K UHD frame (7680 x 4320) fits, ~100 MB decoded
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame (not DHT, JPG, DAC)
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01, 0xD8}
_HEAD_BYTES = 1024  # where the frame header of an ordinary JPEG lies (~20 bytes after two quant tables)


def jpeg_frame_size(read_at: Callable[[int, int], bytes], size: int) -> Optional[tuple]:
    """(height, width) from a JPEG's start-of-frame header, or None when the segments before image
    data hold none (a damaged file: the decoder then decides). ``read_at(pos, n)`` reads the JPEG's
    bytes; segments are skipped by their lengths, so only a few bytes are read wherever they are."""
    head = read_at(0, min(size, _HEAD_BYTES))

    def read(pos: int, n: int) -> bytes:
        if pos + n <= len(head):
            return head[pos:pos + n]
        return read_at(pos, n) if pos + n <= size else b""

    pos = 2  # after SOI
    while pos + 4 <= size:
        chunk = read(pos, 4)
        if len(chunk) < 2 or chunk[0] != 0xFF:
            return None
        marker = chunk[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA) or len(chunk) < 4:  # end of image / start of scan before any frame header
            return None
        length = int.from_bytes(chunk[2:4], "big")
        if marker in _SOF_MARKERS:
            sof = read(pos + 4, 5)  # precision, height, width
            return (int.from_bytes(sof[1:3], "big"), int.from_bytes(sof[3:5], "big")) if len(sof) == 5 else None
        if length < 2:
            return None
        pos += 2 + length
    return None


def frame_size_problem(height: int, width: int) -> Optional[str]:
    """Why a frame of this size is not decoded (None when it is fine)."""
    if height <= 0 or width <= 0:
        return f"the JPEG header gives a frame of {width} x {height} pixels"
    if height * width > MAX_FRAME_PIXELS:
        return (f"the JPEG header claims {width} x {height} pixels, above the {MAX_FRAME_PIXELS:,}-pixel limit "
                "(decoding it would take gigabytes)")
    return None


def check_pil_frame_size(img) -> None:
    """Raise ValueError for an opened (not yet loaded) PIL image above the limit."""
    width, height = img.size
    problem = frame_size_problem(height, width)
    if problem:
        raise ValueError(problem.replace("the JPEG header", "the image header"))
