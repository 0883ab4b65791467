"""Checkpoint files: atomic writes, ``weights_only=True`` loads, one schema.

A checkpoint is a dict:
  {"schema": CHECKPOINT_SCHEMA, "model_config": {FNACModel kwargs}, "model": state_dict,
   "config": {resolved training config, optional}, ... anything else the trainer keeps
   (optimizer, scaler, step, epoch, rng, loader position) }
Everything stored must be loadable with ``torch.load(weights_only=True)``: tensors, dicts,
lists, str/int/float/bool/None only.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from avloc.errors import InputError

CHECKPOINT_SCHEMA = "avloc-checkpoint/1"


def atomic_torch_save(obj, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(path, *, model_state: dict, model_config: dict, **extra) -> None:
    atomic_torch_save({"schema": CHECKPOINT_SCHEMA, "model_config": dict(model_config), "model": model_state, **extra}, path)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load any checkpoint file safely; clear one-line errors for missing/corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read checkpoint {path}: {first[:200]}") from exc


def is_avloc_checkpoint(obj) -> bool:
    return isinstance(obj, dict) and obj.get("schema") == CHECKPOINT_SCHEMA
