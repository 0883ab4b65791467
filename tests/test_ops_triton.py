"""The Triton kernels in CI without a GPU: triton_interpret_cases.py under TRITON_INTERPRET=1.

The interpreter must be switched on before triton defines any kernel, so the cases run in a
fresh pytest process rather than in this one.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_kernels_under_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "pytest", "-o", "addopts=", str(HERE / "triton_interpret_cases.py"), "-q", "-p",
           "no:cacheprovider", "--timeout", "300"]
    proc = subprocess.run(cmd, cwd=HERE.parent, env=env, capture_output=True, text=True, timeout=600)
    report = proc.stdout[-6000:] + proc.stderr[-2000:]
    assert proc.returncode == 0, report
    assert " passed" in proc.stdout and "skipped" not in proc.stdout.split("\n")[-2], report
