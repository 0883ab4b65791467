"""Test tiers: the default run is CPU-only and fast. Marked tests skip with a reason:

* ``slow``: only with ``--run-slow`` or AVLOC_RUN_SLOW=1;
* ``gpu``:  only when torch sees a CUDA device;
* ``dali``: only when nvidia.dali imports;
* ``ray``:  only when the ray extra is installed.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", default=False, help="run tests marked slow")


def _cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def pytest_collection_modifyitems(config, items):
    run_slow = config.getoption("--run-slow") or os.environ.get("AVLOC_RUN_SLOW") == "1"
    reasons = {
        "slow": None if run_slow else "slow test: run with --run-slow or AVLOC_RUN_SLOW=1",
        "gpu": None if _cuda_available() else "needs a CUDA device (none visible)",
        "dali": None if _importable("nvidia.dali") else "needs nvidia-dali-cuda120 importable",
        "ray": None if _importable("ray") else "needs the ray extra: pip install -e '.[ray]'",
    }
    for item in items:
        for marker, reason in reasons.items():
            if reason and item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ../shared folder (real metadata); tests using it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is absent (real metadata files not available)")
    return SHARED


@pytest.fixture(scope="session")
def shared_metadata(shared_dir) -> Path:
    return shared_dir / "data" / "metadata"
