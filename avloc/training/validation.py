"""Validation on the shard set's own held-out split (never an evaluation benchmark).

What is reported depends on what the split offers:
* always: the loss terms (contrastive, fns1, tns, fns2 and the full weighted objective) and
  within-batch audio->image retrieval top-1 (for each audio clip, is its own frame the best of
  the batch's frames by the pair logit max_p S[n, m, p]; chance = 1 / batch size);
* when samples carry boxes (synthetic sets, ``batch["bbox"]``): localisation AP50 ("ciou"), AUC
  and mean cIoU with the published protocol (avloc.metrics), next to two trivial baselines
  scored the same way: a centre prior (a centred Gaussian heat map) and the whole image (a
  constant map: every pixel predicted).
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np
import torch

HIGHER_IS_BETTER = {"ap50": True, "auc": True, "retrieval": True, "loss": False}
METRIC_KEYS = {"ap50": "val_ap50", "auc": "val_auc", "retrieval": "val_retrieval_a2i", "loss": "val_loss"}


def pair_logits(visual: torch.Tensor, audio: torch.Tensor, tau: float) -> torch.Tensor:
    """L[n, m] = max_p <V[n,:,p], a[m]> / tau for a validation batch (small B: materialising is fine)."""
    v = visual.flatten(2).float()  # [B, D, P]
    return torch.einsum("ndp,md->nmp", v, audio.float()).amax(dim=2) / tau


@torch.no_grad()
def run_validation(model, loader, *, device, tau: float, fg_threshold: float, loss_weights: dict,
                   upsample: str, autocast=None, impl: str = "auto") -> dict:
    """Score ``model`` (unwrapped, any mode) on ``loader`` (eval mode); restores the model's mode.

    ``loss_weights``: {"fns1": w, "tns": w, "fns2": w} for the full objective ``val_loss``;
    ``upsample``: how heat maps are upsampled for AP50/AUC (avloc.metrics).
    """
    from avloc.evaluation.baselines import baseline_batch
    from avloc.losses import LOSS_TERMS, fnac_losses
    from avloc.metrics import gt_map_from_boxes, localization_scores

    was_training = model.training
    model.eval()
    sums = dict.fromkeys(LOSS_TERMS, 0.0)
    loss_weight_n = 0
    correct = retrieval_n = 0
    batch_sizes = []
    heatmaps, gt_maps = [], []
    n_samples = 0
    try:
        for batch in loader:
            image = batch["image"].to(device, non_blocking=True)
            spec = batch["spec"].to(device, non_blocking=True)
            b = image.shape[0]
            n_samples += b
            with autocast() if autocast else nullcontext():
                visual, audio = model(image, spec)
            visual, audio = visual.float(), audio.float()
            out = fnac_losses(visual, audio, tau=tau, fg_threshold=fg_threshold, impl=impl)
            if b >= 2:
                for name in sums:
                    sums[name] += float(out[name]) * b
                loss_weight_n += b
                logits = pair_logits(visual, audio, tau)
                correct += int((logits.argmax(dim=0) == torch.arange(b, device=logits.device)).sum())
                retrieval_n += b
                batch_sizes.append(b)
            maps = out["maps"].detach().float().cpu()
            for i, boxes in enumerate(batch.get("bbox") or []):
                if boxes:
                    heatmaps.append(maps[i])
                    gt_maps.append(torch.from_numpy(gt_map_from_boxes(boxes)))
    finally:
        model.train(was_training)

    result = {"val_samples": n_samples}
    if loss_weight_n:
        terms = {f"val_{k}": v / loss_weight_n for k, v in sums.items()}
        result.update(terms)
        result["val_loss"] = terms["val_contrastive"] + sum(
            w * terms[f"val_{k}"] for k, w in loss_weights.items())
        result["val_retrieval_a2i"] = correct / retrieval_n
        result["val_retrieval_chance"] = float(np.mean([1.0 / b for b in batch_sizes]))
    result["val_boxes"] = len(heatmaps)
    if heatmaps:
        maps = torch.stack(heatmaps)
        gts = torch.stack(gt_maps)
        n, h, w = maps.shape
        model_scores = localization_scores(maps, gts, upsample=upsample)
        centre = localization_scores(baseline_batch("centre_gaussian", n), gts, upsample=upsample)
        whole = localization_scores(baseline_batch("whole_image", n), gts, upsample=upsample)
        for prefix, scores in (("val", model_scores), ("baseline_centre", centre), ("baseline_whole", whole)):
            result[f"{prefix}_ap50"] = scores["ciou"]
            result[f"{prefix}_auc"] = scores["auc"]
            result[f"{prefix}_mean_ciou"] = scores["mean_ciou"]
    return result


def selection_metric(select_metric: str, result: dict) -> str:
    """The metric best.pt is chosen on: ``select_metric``, or for "auto" ap50 with boxes else retrieval."""
    if select_metric != "auto":
        return select_metric
    return "ap50" if result.get("val_boxes") else "retrieval"


# Ties on the selection metric (common for AP50 on a small split) are broken by this one.
TIE_BREAK = {"ap50": "auc", "auc": "ap50", "retrieval": "loss", "loss": None}


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def selection_key(metric: str, result: dict) -> list:
    """[primary, secondary] values, both oriented so that larger is better (None when absent)."""
    out = []
    for name in (metric, TIE_BREAK[metric]):
        value = result.get(METRIC_KEYS[name]) if name else None
        out.append(None if _missing(value) else (value if HIGHER_IS_BETTER[name] else -value))
    return out


def is_better(key: list, best_key) -> bool:
    if key[0] is None:
        return False
    if not best_key or best_key[0] is None:
        return True
    if key[0] != best_key[0]:
        return key[0] > best_key[0]
    return key[1] is not None and best_key[1] is not None and key[1] > best_key[1]
