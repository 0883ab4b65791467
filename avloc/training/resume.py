"""What a training checkpoint holds beyond the model, and how it is restored.

Everything is stored as tensors or plain types so the file loads with ``weights_only=True``:
random-number-generator states become uint8/int64 tensors and lists of ints; the loader
position is the loader's own ``state_dict()`` (plain types). RNG states and loader positions
are kept per rank (rank r restores entry r).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from avloc import checkpoint as ckpt_io
from avloc.errors import InputError

TRAIN_STATE_VERSION = 1


def capture_rng() -> dict:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": _python_state_to_plain(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(_python_state_from_plain(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _python_state_to_plain(state) -> list:
    version, internal, gauss = state
    return [int(version), [int(v) for v in internal], gauss]


def _python_state_from_plain(plain) -> tuple:
    version, internal, gauss = plain
    return (int(version), tuple(int(v) for v in internal), gauss)


def save_training_checkpoint(path, *, model, model_config: dict, optimizer, scaler, config: dict, step: int,
                             epoch: int, epoch_done: bool, samples_seen: int, skipped_steps: int,
                             rng_per_rank: list, loader_per_rank: list, best: dict, world_size: int) -> None:
    ckpt_io.save_checkpoint(
        path,
        model_state=model.state_dict(),
        model_config=model_config,
        train_state_version=TRAIN_STATE_VERSION,
        config=config,
        optimizer=optimizer.state_dict(),
        scaler=scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        step=int(step),
        epoch=int(epoch),
        epoch_done=bool(epoch_done),
        samples_seen=int(samples_seen),
        skipped_steps=int(skipped_steps),
        rng=rng_per_rank,
        loader=loader_per_rank,
        best=best,
        world_size=int(world_size),
    )


def load_training_checkpoint(path) -> dict:
    """Read a checkpoint written by the trainer; one-line errors for anything else."""
    path = Path(path)
    ckpt = ckpt_io.load_checkpoint(path)
    if not ckpt_io.is_avloc_checkpoint(ckpt):
        found = ckpt.get("schema") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise InputError(f"{path} is not an {ckpt_io.CHECKPOINT_SCHEMA} checkpoint (schema: {found!r})")
    if ckpt.get("train_state_version") != TRAIN_STATE_VERSION:
        raise InputError(f"{path} has no resumable training state of version {TRAIN_STATE_VERSION} "
                         f"(found {ckpt.get('train_state_version')!r}); it can be evaluated but not resumed")
    return ckpt
