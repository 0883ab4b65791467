"""avloc: self-supervised audio-visual sound-source localisation (FNAC)."""

import os as _os

__version__ = "0.1.0"

# Batches are tensors of 100+ MB allocated afresh at every step. With this torch maps its large CPU
# allocations in transparent huge pages, which makes their first touch ~4x cheaper (a fresh 154 MB
# float batch: 0.11 instead of 0.41 ms per sample, benchmarks/results/loaders-cpu-cost.md). torch
# reads the variable once, at its first allocation, so it only takes effect when avloc is imported
# before torch (the CLI always is); THP_MEM_ALLOC_ENABLE=0 in the environment turns it off.
_os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def localize(*args, **kwargs):
    """Where the sound comes from in a video, over time; see ``avloc.localization.api.localize``."""
    from avloc.localization.api import localize as _localize

    return _localize(*args, **kwargs)
