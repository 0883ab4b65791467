"""Command options as one frozen object, checked once: ``problems()`` lists every problem.

Subclass ``CommandOptions`` with a frozen dataclass; implement ``problems()`` returning a list
of one-line strings; call ``.checked()`` to get the object back or a ConfigError naming all
of them at once (exit code 2).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Iterable, List

from avloc.errors import ConfigError


def example_epilog(*command_lines: str) -> str:
    """The closing "Example:" block of a command's --help (click keeps the lines as written)."""
    return "\b\nExample:\n" + "\n".join(f"  {line}" for line in command_lines)


def choice_problem(name: str, value, choices: Iterable) -> List[str]:
    choices = tuple(choices)
    return [] if value in choices else [f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}"]


def range_problem(name: str, value, low=None, high=None) -> List[str]:
    if value is None:
        return []
    if low is not None and value < low:
        return [f"{name} must be >= {low}; got {value!r}"]
    if high is not None and value > high:
        return [f"{name} must be <= {high}; got {value!r}"]
    return []


def _refuses_files(folder: Path) -> str:
    """Why a file cannot be made in the existing ``folder`` (tried, then removed), or ''. The permission
    bits alone miss read-only mounts, /proc-like file systems and root's view of them."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return ""


def writable_folder_problems(option: str, folder) -> List[str]:
    """Why ``folder`` cannot be written or created, or nothing. Nothing is left behind: the check
    makes and removes one empty file in ``folder`` or in its nearest existing parent."""
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            return [f"{option} {folder} is a file, not a folder"]
        if not os.access(folder, os.W_OK | os.X_OK):
            return [f"{option} {folder} is not writable"]
        why = _refuses_files(folder)
        return [f"{option} {folder} is not writable ({why})"] if why else []
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return [f"{option} {folder} cannot be created: {parent} is a file"]
    if not os.access(parent, os.W_OK | os.X_OK):
        return [f"{option} {folder} cannot be created: {parent} is not writable"]
    why = _refuses_files(parent)
    return [f"{option} {folder} cannot be created: {parent} is not writable ({why})"] if why else []


@dataclasses.dataclass(frozen=True)
class CommandOptions:
    def problems(self) -> List[str]:
        return []

    def checked(self):
        found = self.problems()
        if found:
            raise ConfigError(found)
        return self

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
