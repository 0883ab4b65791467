"""Atomic file writes: a temporary file in the destination folder, renamed into place.

A reader (or a killed run) sees the old file or the whole new one, never half of one. The new
file gets the modes the user's umask gives (``mkstemp`` alone would leave 0600, which locks
collaborators on a shared server out of checkpoints and results).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from avloc.errors import AvlocError

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    # os.umask can only be read by setting it; restore at once.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file under the current umask."""
    return 0o666 & ~_umask()


def temp_path_for(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (hidden, ends in .tmp) for writing then renaming."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _disk_full_message(path: Path, exc: OSError) -> str:
    try:
        free = shutil.disk_usage(path.parent).free
        room = f"{free / 2**20:.1f} MiB free" if free >= 2**20 else f"{free / 2**10:.0f} KiB free"
    except OSError:
        room = "free space unknown"
    why = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC or "[errno 28]" in why:  # pyarrow words it its own way
        why = os.strerror(errno.ENOSPC)
    return f"cannot write {path}: {why} ({room}); the previous file, if any, is unchanged"


@contextlib.contextmanager
def atomic_path(path, *, fsync: bool = False) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: write(tmp)`` -> ``p`` replaced by the finished ``tmp``.

    On any exception the temporary file is removed and ``p`` is left as it was. A full disk or a
    denied write becomes one AvlocError naming the path (and the free space).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_path_for(path)
    except OSError as exc:
        raise AvlocError(_disk_full_message(path, exc)) from None
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # first, so that the free space reported is what the disk really has
        raise AvlocError(_disk_full_message(path, exc)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def atomic_write_bytes(path, data: bytes, *, fsync: bool = False) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path, text: str, *, fsync: bool = False) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_with(path, writer: Callable[[Path], None], *, fsync: bool = False) -> None:
    """Call ``writer(tmp_path)`` (e.g. ``torch.save``, ``pq.write_table``, ``fig.savefig``) then rename."""
    with atomic_path(path, fsync=fsync) as tmp:
        writer(tmp)


def remove_stale_temps(folder, pattern: str = f".*{TMP_SUFFIX}") -> int:
    """Delete temporary files a killed writer left in ``folder``; returns how many."""
    removed = 0
    for leftover in Path(folder).glob(pattern):
        with contextlib.suppress(OSError):
            leftover.unlink()
            removed += 1
    return removed
