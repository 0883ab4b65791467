"""Importing avloc before torch maps torch's large CPU tensors in transparent huge pages (avloc/__init__.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")

# a 64 MiB tensor, touched, then the process's anonymous huge-page total
PROBE = """
import avloc, torch
x = torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
print([int(l.split()[1]) for l in open("/proc/self/smaps_rollup") if l.startswith("AnonHugePages")][0])
"""


def _thp_mode() -> str:
    try:
        text = THP_MODE.read_text()
    except OSError:
        return ""
    return text[text.find("[") + 1:text.find("]")] if "[" in text else ""


def _huge_kib(env_value):
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    if env_value is not None:
        env["THP_MEM_ALLOC_ENABLE"] = env_value
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc/self/smaps_rollup")
def test_large_tensors_get_huge_pages_unless_turned_off():
    mode = _thp_mode()
    if mode not in ("madvise", "always"):
        pytest.skip(f"transparent huge pages are {mode or 'not available'} on this kernel")
    assert _huge_kib(None) >= 32 * 1024  # most of the 64 MiB tensor
    if mode == "madvise":  # only there does the opt-out show: 'always' maps huge pages regardless
        assert _huge_kib("0") == 0


def test_a_user_setting_is_kept():
    env = dict(os.environ, THP_MEM_ALLOC_ENABLE="0")
    out = subprocess.run([sys.executable, "-c", "import avloc, os; print(os.environ['THP_MEM_ALLOC_ENABLE'])"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert out.stdout.strip() == "0", out.stderr
