"""Choosing a kernel implementation: ``triton`` | ``torch`` | ``reference`` | ``auto``.

``auto`` is triton for CUDA tensors (when triton imports) and the chunked torch path otherwise.
Triton also runs on CPU tensors under ``TRITON_INTERPRET=1`` (used by the tests).
"""

from __future__ import annotations

import importlib.util
import os

import torch

from avloc.errors import InputError
from avloc.ops import IMPLS

# Upper bound for the temporary buffers one chunk of a memory-bounded kernel may allocate.
DEFAULT_WORKSPACE_BYTES = 64 * 2**20


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def resolve_impl(impl: str, device: torch.device) -> str:
    if impl not in IMPLS:
        raise InputError(f"unknown kernel implementation {impl!r}; choose one of {', '.join(IMPLS)}")
    if impl == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "torch"
    if impl == "triton":
        if not triton_available():
            raise InputError("kernel implementation 'triton' needs the triton package; use 'torch'")
        if device.type != "cuda" and not triton_interpreting():
            raise InputError("kernel implementation 'triton' needs CUDA tensors (or TRITON_INTERPRET=1); use 'torch' on CPU")
    return impl


def rows_per_chunk(bytes_per_row: int, workspace_bytes: int | None) -> int:
    budget = DEFAULT_WORKSPACE_BYTES if workspace_bytes is None else int(workspace_bytes)
    return max(1, budget // max(1, bytes_per_row))


# Loop bounds of the Triton kernels are compile-time constants: a runtime int used as a loop bound is
# a one-element array under triton 3.6's interpreter, which Python's range() rejects. Each bound is
# rounded up to whole blocks (lanes past the true size are masked off), so a kernel compiles once per
# block count, not once per size; the rows loop of the audio gradient rounds up to ROW_STEP rows.
ROW_STEP = 16


def loop_end(size: int, block: int) -> int:
    """``size`` rounded up to a multiple of ``block`` (at least one block)."""
    return max(1, -(-int(size) // block)) * block


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for half types and fp32; fp64 stays fp64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def no_autocast(device: torch.device):
    """The kernels choose their own precision (fp32 accumulation): autocast must not recast their matmuls."""
    return torch.autocast(device_type=device.type, enabled=False)
