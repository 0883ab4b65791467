"""The checkpoint file format: one schema, atomic writes, ``weights_only=True`` loads.

A checkpoint is a dict:
  {"schema": CHECKPOINT_SCHEMA, "model_config": {FNACModel kwargs}, "model": state_dict,
   "config": {resolved training config, optional}, ... anything else the trainer keeps
   (optimizer, scaler, step, epoch, rng, loader position) }
Everything stored must be loadable with ``torch.load(weights_only=True)``: tensors, dicts,
lists, str/int/float/bool/None only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from avloc.errors import InputError
from avloc.utils.atomic import atomic_write_with
from avloc.utils.system import first_line

CHECKPOINT_SCHEMA = "avloc-checkpoint/1"


def save_checkpoint(path, *, model_state: dict, model_config: dict, **extra) -> None:
    """Write a checkpoint atomically (fsynced: a crash right after leaves the old file or the whole new one)."""
    obj = {"schema": CHECKPOINT_SCHEMA, "model_config": dict(model_config), "model": model_state, **extra}
    atomic_write_with(path, lambda tmp: torch.save(obj, tmp), fsync=True)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load any checkpoint file safely; clear one-line errors for missing/corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        raise InputError(f"cannot read checkpoint {path}: {first_line(exc)}") from exc


def is_avloc_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and obj.get("schema") == CHECKPOINT_SCHEMA
