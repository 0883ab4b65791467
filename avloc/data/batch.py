"""The batch every loader yields, and the pieces that build it.

A batch is a dict: "image" float32 [B,3,S,S] (ImageNet-normalised; the torch shard loader's workers
build it as uint8 pixels and workers.stream_batches normalises it where it lands), "spec" float32 [B,1,257,T]
(divided by 12, masked in train mode), "key" list[str], "label" int64 [B] (-1 unlabelled),
"bbox" list (None or [[x1,y1,x2,y2], ...] fractions per sample). Tensors are on the loader's
device.
"""

from __future__ import annotations

import json

import torch
from torch.utils.data import default_collate

def parse_meta(data: bytes) -> tuple:
    """json member bytes -> (label, bbox). Raises ValueError on malformed metadata."""
    meta = json.loads(data)  # UnicodeDecodeError and JSONDecodeError are ValueErrors
    if not isinstance(meta, dict):
        raise ValueError("json member is not an object")
    label = meta.get("class_index")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
        raise ValueError(f"class_index {label!r} is not an integer")
    return (-1 if label is None else label), meta.get("bbox")


def stack(tensors: list) -> torch.Tensor:
    """torch.stack; inside a DataLoader worker default_collate stacks straight into shared memory,
    which saves the copy the worker-to-main transfer would otherwise make."""
    return default_collate(tensors)


def make_batch(images: list, specs: list, keys: list, labels: list, bboxes: list) -> dict:
    return {
        "image": stack(images) if images else torch.empty(0, 3, 0, 0),
        "spec": stack(specs) if specs else torch.empty(0, 1, 0, 0),
        "key": list(keys),
        "label": torch.tensor(labels, dtype=torch.long),
        "bbox": list(bboxes),
    }


def to_device(batch: dict, device) -> dict:
    device = torch.device(device)
    if device.type == "cpu":
        return batch
    out = dict(batch)
    for name in ("image", "spec", "label"):
        out[name] = batch[name].to(device, non_blocking=True)
    return out
