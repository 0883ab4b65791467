"""Small real file systems for fault tests: a size-limited tmpfs (a disk that fills up) or a
read-only one. Mounting needs root (or CAP_SYS_ADMIN); without it the test is skipped with the
reason, never faked."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(path: Path, size_bytes: int, *, read_only: bool = False):
    """Mount a tmpfs of ``size_bytes`` at ``path`` (created) for the block; unmounted after."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={max(int(size_bytes), 4096)}" + (",ro" if read_only else "")
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                          text=True, timeout=30)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)
