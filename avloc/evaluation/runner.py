"""The evaluation run: read a benchmark, run the model, score it and the baselines, write reports.

Scores never depend on the batch size: the network always runs on chunks of exactly
``COMPUTE_CHUNK`` samples (the last one padded), so every sample goes through the same kernels
with the same shapes whatever ``batch_size`` (the loading batch) is, and the metrics are
per sample.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from avloc import metrics
from avloc.data.workers import worker_options
from avloc.errors import InputError
from avloc.evaluation import media
from avloc.evaluation.baselines import baseline_maps
from avloc.evaluation.benchmarks import load_benchmark
from avloc.evaluation.checkpoints import model_from_checkpoint

COMPUTE_CHUNK = 16
RESULTS_SCHEMA = "avloc-evaluate/1"


@dataclasses.dataclass
class EvalConfig:
    benchmark: str
    data_root: Path
    checkpoint: Path
    out: Optional[Path] = None
    upsample: str = "bicubic"
    batch_size: int = 32
    workers: int = 0
    device: str = "cpu"
    ogl: bool = False
    ogl_weights: Optional[Path] = None
    overlays: int = 6
    whole_clip_audio: bool = False
    annotations: Optional[Path] = None
    test_list: Optional[Path] = None
    limit: Optional[int] = None  # score only the first N found items (quick checks, benchmarks)
    seed: int = 0
    compute_chunk: int = COMPUTE_CHUNK  # samples per network call; keep the default for comparable runs
    progress: bool = True
    write_reports: bool = True


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


def _chunked(fn: Callable, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """fn over fixed-size chunks of x (the last padded with zeros), results concatenated and trimmed."""
    outs = []
    for start in range(0, x.shape[0], chunk):
        part = x[start:start + chunk]
        n = part.shape[0]
        if n < chunk:
            part = torch.cat([part, part.new_zeros((chunk - n, *part.shape[1:]))])
        outs.append(fn(part)[:n])
    return torch.cat(outs)


def _audio_embeddings(model, specs: list, device, chunk: int) -> torch.Tensor:
    """Audio embeddings for specs of possibly different lengths (grouped by shape)."""
    out = [None] * len(specs)
    groups = {}
    for i, s in enumerate(specs):
        groups.setdefault(tuple(s.shape), []).append(i)
    for idx in groups.values():
        emb = _chunked(model.audio, torch.stack([specs[i] for i in idx]).to(device), chunk)
        for j, i in enumerate(idx):
            out[i] = emb[j]
    return torch.stack(out)


@torch.no_grad()
def model_heatmaps(model, images: torch.Tensor, specs: list, device, chunk: int = COMPUTE_CHUNK) -> torch.Tensor:
    """Raw localisation maps <V[n, :, p], a[n]> as [B, h, w] float32 on the CPU."""
    visual = _chunked(model.visual, images.to(device), chunk)
    audio = _audio_embeddings(model, specs, device, chunk)
    return torch.einsum("nchw,nc->nhw", visual, audio).float().cpu()


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"--device {device!r} is not a torch device") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: CUDA is not available on this machine")
    return dev


def _areas(pred: torch.Tensor, gt: torch.Tensor) -> tuple:
    n = float(metrics.N_PIXELS)
    return (pred.reshape(pred.shape[0], -1).sum(1).double() / n).numpy(), \
        (gt.reshape(gt.shape[0], -1).sum(1).double() / n).numpy()


def run_evaluation(cfg: EvalConfig, log: Callable[[str], None] = print) -> dict:
    """Score cfg.checkpoint on cfg.benchmark; returns the results dict (also written to cfg.out)."""
    if cfg.upsample not in metrics.UPSAMPLE_MODES:
        raise InputError(f"--upsample must be one of {metrics.UPSAMPLE_MODES}, got {cfg.upsample!r}")
    if cfg.compute_chunk < 1:
        raise InputError(f"compute chunk must be >= 1, got {cfg.compute_chunk}")
    if cfg.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    device = resolve_device(cfg.device)
    bench = load_benchmark(cfg.benchmark, cfg.data_root, annotations=cfg.annotations, test_list=cfg.test_list,
                           whole_clip_audio=cfg.whole_clip_audio)
    items = bench.items if cfg.limit is None else bench.items[: cfg.limit]
    if not items:
        raise InputError(f"no {cfg.benchmark} item in {cfg.data_root} has its frame, audio and ground truth "
                         f"({bench.expected} expected from {bench.expected_source}; layout: {bench.layout})")
    model, model_info = model_from_checkpoint(cfg.checkpoint, device)
    saliency = None
    if cfg.ogl:
        from avloc.evaluation.ogl import build_object_saliency

        saliency = build_object_saliency(cfg.ogl_weights).to(device)

    base_masks = {name: metrics.threshold_masks(metrics.minmax_normalise(
        metrics.upsample_maps(m.unsqueeze(0), cfg.upsample))) for name, m in baseline_maps().items()}

    loader = DataLoader(ItemDataset(items), batch_size=cfg.batch_size, shuffle=False, 
                        collate_fn=collate_items, **worker_options(cfg.workers))
    n = len(items)
    ciou = np.full(n, np.nan)
    pred_area = np.full(n, np.nan)
    gt_area = np.full(n, np.nan)
    base_ciou = {name: np.full(n, np.nan) for name in base_masks}
    ogl_ciou = np.full(n, np.nan) if saliency is not None else None
    done = np.zeros(n, dtype=bool)
    raw_maps = {}
    unreadable = {"frame": [], "audio": [], "annotation": []}

    from tqdm import tqdm

    show = cfg.progress and sys.stderr.isatty()
    t0 = time.perf_counter()
    for batch in tqdm(loader, desc=f"evaluate {cfg.benchmark}", unit="batch", disable=not show, file=sys.stderr):
        for index, modality, message in batch["errors"]:
            unreadable[modality].append({"id": items[index].id, "error": message})
        if not batch["index"]:
            continue
        idx = np.asarray(batch["index"])
        raw = model_heatmaps(model, batch["image"], batch["spec"], device, cfg.compute_chunk)
        av = metrics.minmax_normalise(metrics.upsample_maps(raw, cfg.upsample))
        pred = metrics.threshold_masks(av)
        gt = batch["gt"]
        ciou[idx] = metrics.ciou_from_masks(pred, gt)
        pred_area[idx], gt_area[idx] = _areas(pred, gt)
        for name, mask in base_masks.items():
            base_ciou[name][idx] = metrics.ciou_from_masks(mask.expand(len(idx), -1, -1), gt)
        if saliency is not None:
            from avloc.evaluation.ogl import fuse, object_maps

            with torch.no_grad():
                obj = _chunked(saliency, batch["image"].to(device), cfg.compute_chunk).float().cpu()
            ogl_ciou[idx] = metrics.ciou_from_masks(metrics.threshold_masks(fuse(av, object_maps(obj))), gt)
        done[idx] = True
        for j, i in enumerate(idx):
            raw_maps[int(i)] = raw[j].numpy()
    elapsed = time.perf_counter() - t0

    scored = done
    if not scored.any():
        first = next(v[0] for v in unreadable.values() if v)
        raise InputError(f"none of the {n} {cfg.benchmark} items could be read, e.g. {first['id']}: {first['error']}")
    scored_idx = np.flatnonzero(scored)
    empty_gt = [items[i].id for i in scored_idx if gt_area[i] == 0]
    rows = [{"method": "model", "column": "ciou", **metrics.summarise_cious(ciou[scored])}]
    if ogl_ciou is not None:
        rows.append({"method": "model + OGL (alpha 0.4)", "column": "ciou_ogl", **metrics.summarise_cious(ogl_ciou[scored])})
    for name, values in base_ciou.items():
        rows.append({"method": f"baseline: {name.replace('_', ' ')}", "column": f"ciou_{name}",
                     **metrics.summarise_cious(values[scored])})
    for row in rows:
        row["ciou_x100"] = 100.0 * row["ciou"]
        row["auc_x100"] = 100.0 * row["auc"]

    counts = bench.counts()
    counts["unreadable_by_modality"] = {m: len(v) for m, v in unreadable.items()}
    counts["scored"] = int(scored.sum())
    counts["limited_to"] = cfg.limit
    counts["empty_gt_scored"] = len(empty_gt)
    full_set = {"vggss": 5158, "flickr": 249}.get(cfg.benchmark)
    comparable = bool(full_set and bench.expected == full_set and counts["scored"] == full_set)
    upsample_desc = metrics.PROTOCOL["upsample"][cfg.upsample]
    results = {
        "schema": RESULTS_SCHEMA,
        "benchmark": cfg.benchmark,
        "data_root": str(cfg.data_root),
        "layout": bench.layout,
        "checkpoint": str(cfg.checkpoint),
        "checkpoint_kind": model_info["kind"],
        "model_config": model_info["model_config"],
        "upsample": cfg.upsample,
        "protocol": {**metrics.PROTOCOL, "upsample": upsample_desc, **bench.protocol,
                     "frame": "resized to exactly 224x224 (bicubic, aspect not kept), ImageNet normalisation",
                     "heat_map": "<V[:, p], a> per position (eval mode), no temperature",
                     "baselines": "same items, same protocol; centre gaussian sigma = 56 px, centre box 160x160 px, "
                                  "whole image = constant map",
                     "ogl": "minmax(0.4 * AV + 0.6 * OBJ), OBJ = ImageNet ResNet-18 layer4 mean |.|, bilinear "
                            "align_corners=True" if cfg.ogl else None},
        "comparable_with_published": comparable,
        "counts": counts,
        "missing_ids": {m: v[:50] for m, v in bench.missing.items()},
        "unreadable": {m: v[:50] for m, v in unreadable.items()},
        "defective_gt_ids": dict(list(bench.defective_items.items())[:50]),
        "empty_gt_ids": empty_gt[:50],
        "rows": rows,
        "device": str(device),
        "batch_size": cfg.batch_size,
        "compute_chunk": cfg.compute_chunk,
        "seconds": elapsed,
        "samples_per_s": counts["scored"] / elapsed if elapsed > 0 else None,
    }
    per_sample = {
        "id": [items[i].id for i in scored_idx],
        "clip": [items[i].clip for i in scored_idx],
        "class": [items[i].label for i in scored_idx],
        "frame_index": [items[i].frame_index for i in scored_idx],
        "ciou": ciou[scored_idx],
        "pred_area": pred_area[scored_idx],
        "gt_area": gt_area[scored_idx],
        "empty_gt": gt_area[scored_idx] == 0,
        "gt_defects": [",".join(items[i].flags) for i in scored_idx],
        **{f"ciou_{name}": v[scored_idx] for name, v in base_ciou.items()},
    }
    if ogl_ciou is not None:
        per_sample["ciou_ogl"] = ogl_ciou[scored_idx]
    results["_per_sample"] = per_sample
    if cfg.write_reports and cfg.out is not None:
        from avloc.evaluation import report

        report.write_reports(Path(cfg.out), results, per_sample, items, raw_maps, cfg, log)
    return results
