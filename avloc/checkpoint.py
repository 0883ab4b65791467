"""The checkpoint file format: one schema, atomic writes, ``weights_only=True`` loads.

A checkpoint is a dict:
  {"schema": CHECKPOINT_SCHEMA, "model_config": {FNACModel kwargs}, "model": state_dict,
   "config": {resolved training config, optional}, ... anything else the trainer keeps
   (optimizer, scaler, step, epoch, rng, loader position) }
Everything stored must be loadable with ``torch.load(weights_only=True)``: tensors, dicts,
lists, str/int/float/bool/None only.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch

from avloc.errors import InputError
from avloc.utils.atomic import atomic_write_with
from avloc.utils.system import first_line

CHECKPOINT_SCHEMA = "avloc-checkpoint/1"


def save_checkpoint(path, *, model_state: dict, model_config: dict, **extra) -> None:
    """Write a checkpoint atomically (fsynced: a crash right after leaves the old file or the whole new one)."""
    obj = {"schema": CHECKPOINT_SCHEMA, "model_config": dict(model_config), "model": model_state, **extra}
    atomic_write_with(path, lambda tmp: _torch_save(obj, tmp), fsync=True)


def _torch_save(obj, tmp: Path) -> None:
    # through a Python file object, a full disk surfaces as OSError (ENOSPC), which atomic_path turns
    # into one line naming the path and the free space; torch's own writer on a path reports it as an
    # opaque RuntimeError from its zip container
    with open(tmp, "wb") as fh:
        try:
            torch.save(obj, fh)
        except RuntimeError as exc:  # the zip writer may wrap the file object's OSError
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, OSError):
                raise cause from None
            raise


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load any checkpoint file safely; clear one-line errors for missing/corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        raise InputError(f"cannot read checkpoint {path}: {refusal_reason(exc)}") from None


def refusal_reason(exc: BaseException) -> str:
    """Why torch's weights-only loader refused a file, in avloc's words (torch's own text advises
    turning the safe loading off, which avloc never does)."""
    text = str(exc)
    if isinstance(exc, pickle.UnpicklingError) and "weights only load failed" in text.lower():
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            return (f"it is not a checkpoint avloc can load safely: it stores a Python object "
                    f"({found.group(1)}) that safe loading does not run; save the model's state_dict "
                    "(tensors only) and pass that file")
        found = re.search(r"WeightsUnpickler error:\s*([^\n]+?)\s*(?:\n|$)", text)
        detail = f" ({found.group(1).strip()})" if found and found.group(1).strip() else ""
        return f"it is not a checkpoint avloc can load safely: not a torch file, or a damaged one{detail}"
    return f"not a torch checkpoint, or a damaged/truncated one ({first_line(exc).split('. ')[0].rstrip('.')})"


def is_avloc_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and obj.get("schema") == CHECKPOINT_SCHEMA
