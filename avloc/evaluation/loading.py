"""Everything an evaluation reads: the benchmark's items, batches of decoded items, the model.

An item that cannot be read (broken frame, audio or mask file) is not an error: its batch
carries ``errors`` entries ``(index, modality, message)`` and the run counts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch.utils.data import DataLoader, Dataset

from avloc.errors import InputError
from avloc.evaluation import media
from avloc.evaluation.benchmarks import load_benchmark


def load_items(benchmark: str, data_root: Path, *, annotations: Optional[Path] = None,
               test_list: Optional[Path] = None, whole_clip_audio: bool = False,
               limit: Optional[int] = None) -> tuple:
    """(BenchmarkSet, the items to score: all found, or the first ``limit``); none found is an InputError."""
    bench = load_benchmark(benchmark, data_root, annotations=annotations, test_list=test_list,
                           whole_clip_audio=whole_clip_audio)
    items = bench.items if limit is None else bench.items[:limit]
    if not items:
        raise InputError(f"no {bench.benchmark} item in {data_root} has its frame, audio and ground truth "
                         f"({bench.expected} expected from {bench.expected_source}; layout: {bench.layout})")
    return bench, items


class ItemDataset(Dataset):
    """Item i -> dict(index, image, spec, gt) or dict(index, error=(modality, message))."""

    def __init__(self, items: list):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        stage = "frame"
        try:
            image = media.load_frame(item.frame)
            stage = "audio"
            spec = media.load_spec(item.audio, item.audio_center, item.audio_whole)
            stage = "annotation"
            gt = torch.from_numpy(item.gt_map())
        except Exception as exc:  # one unreadable file is that item's problem, counted and reported
            return {"index": i, "error": (stage, f"{type(exc).__name__}: {exc}".replace("\n", " ")[:200])}
        return {"index": i, "image": image, "spec": spec, "gt": gt}


def collate_items(samples: list) -> dict:
    good = [s for s in samples if "error" not in s]
    batch = {"errors": [(s["index"], *s["error"]) for s in samples if "error" in s],
             "index": [s["index"] for s in good]}
    if good:
        batch["image"] = torch.stack([s["image"] for s in good])
        batch["gt"] = torch.stack([s["gt"] for s in good])
        batch["spec"] = [s["spec"] for s in good]  # lengths may differ (whole-clip audio)
    return batch


def item_batches(items: list, batch_size: int, workers: int = 0) -> DataLoader:
    """Batches of decoded items in order (see ``collate_items``); ``workers`` loading processes."""
    from avloc.data.workers import worker_options

    return DataLoader(ItemDataset(items), batch_size=batch_size, shuffle=False, collate_fn=collate_items,
                      **worker_options(workers))


def load_models(checkpoint: Path, device: torch.device, *, ogl: bool = False,
                ogl_weights: Optional[Path] = None) -> tuple:
    """(FNACModel in eval mode, {"kind", "model_config"}, the OGL object-saliency network or None)."""
    from avloc.evaluation.model_loading import model_from_checkpoint

    model, info = model_from_checkpoint(checkpoint, device)
    saliency = None
    if ogl:
        from avloc.evaluation.ogl import build_object_saliency

        saliency = build_object_saliency(ogl_weights).to(device)
    return model, info, saliency

