"""Write one WebDataset tar shard and its DALI index, atomically.

Members are written in sample order with fixed metadata (uid/gid 0, mtime 0, mode 0o444) so a
shard's bytes depend only on its samples. The DALI v1.2 index is built from the offsets we
write, so no second pass over the tar is needed. Both files are written under temporary
names (``avloc.utils.atomic``) and renamed into place on ``close()``, the index first; a killed
process leaves only hidden ``.tmp`` files, which the next run deletes.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path
from typing import Optional

from avloc.utils.atomic import atomic_path, atomic_write_bytes

DALI_INDEX_VERSION = "v1.2"


class ShardWriter:
    """``with ShardWriter(tar_path) as w: w.write(key, {ext: bytes, ...})``.

    The index goes to ``tar_path.with_suffix('.idx')``. If the block exits with an exception
    nothing is renamed into place.
    """

    def __init__(self, tar_path, index_path: Optional[os.PathLike] = None):
        self.tar_path = Path(tar_path)
        self.index_path = Path(index_path) if index_path else self.tar_path.with_suffix(".idx")
        self._rename = atomic_path(self.tar_path, fsync=True)
        self._fh = open(self._rename.__enter__(), "wb")
        self._tar = tarfile.open(fileobj=self._fh, mode="w", format=tarfile.USTAR_FORMAT)
        self._index_rows: list[str] = []
        self.keys: list[str] = []
        self.bytes_written = 0

    def write(self, key: str, members: dict) -> None:
        if "." in key or "/" in key:
            raise ValueError(f"sample key must not contain '.' or '/': {key!r}")
        components = []
        for ext, data in members.items():
            name = f"{key}.{ext}"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o444
            info.mtime = 0
            info.uname = info.gname = ""
            header_offset = self._fh.tell()
            self._tar.addfile(info, io.BytesIO(data))
            # USTAR names up to 100 bytes take one 512-byte header block
            data_offset = header_offset + 512
            components.append(f"{ext} {data_offset} {len(data)} {name}")
        self._index_rows.append(" ".join(components))
        self.keys.append(key)

    def close(self) -> None:
        self._tar.close()
        self.bytes_written = self._fh.tell()
        self._fh.close()
        index = f"{DALI_INDEX_VERSION} {len(self._index_rows)}\n" + "".join(r + "\n" for r in self._index_rows)
        try:
            atomic_write_bytes(self.index_path, index.encode("utf-8"), fsync=True)
        except BaseException:
            self._rename.__exit__(*sys.exc_info())
            raise
        self._rename.__exit__(None, None, None)  # fsync, then the tar appears under its name

    def abort(self) -> None:
        try:
            self._tar.close()
        finally:
            self._fh.close()
            self._rename.__exit__(RuntimeError, RuntimeError("shard aborted"), None)  # removes the temp file

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
