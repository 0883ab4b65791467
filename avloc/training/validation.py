"""Validation on the shard set's own held-out split (never an evaluation benchmark).

What is reported depends on what the split offers:
* always: the loss terms (contrastive, fns1, tns, fns2 and the full weighted objective) and
  within-batch audio->image retrieval top-1 (for each audio clip, is its own frame the best of
  the batch's frames by the pair logit max_p S[n, m, p]; chance = 1 / batch size);
* when samples carry boxes (synthetic sets, ``batch["bbox"]``): localisation AP50 ("ciou"), AUC
  and mean cIoU with the published protocol (avloc.metrics), next to two trivial baselines
  scored the same way: a centre prior (a centred Gaussian heat map) and the whole image (a
  constant map: every pixel predicted), and beside the same model with its audio replaced by
  silence and by another class's audio (avloc.audio_controls), with the verdict on whether the
  score depends on the sound;
* the spread of the val embeddings (mean cosine between clips, per-dimension std), which a
  collapsed model drives to 1 and 0 (avloc.training.collapse).
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import numpy as np
import torch

from avloc.audio_controls import AUDIO_CONTROLS, shuffled_partners, silence_like, verdict
from avloc.losses import LOSS_TERMS

HIGHER_IS_BETTER = {"ap50": True, "auc": True, "retrieval": True, "loss": False}
METRIC_KEYS = {"ap50": "val_ap50", "auc": "val_auc", "retrieval": "val_retrieval_a2i", "loss": "val_loss"}


def pair_logits(visual: torch.Tensor, audio: torch.Tensor, tau: float) -> torch.Tensor:
    """L[n, m] = max_p <V[n,:,p], a[m]> / tau for a validation batch (small B: materialising is fine)."""
    v = visual.flatten(2).float()  # [B, D, P]
    return torch.einsum("ndp,md->nmp", v, audio.float()).amax(dim=2) / tau


class _Collected:
    """What validation keeps per batch: loss sums, retrieval counts, and per boxed item its visual
    map, audio embedding, label and ground truth (for the localisation and audio-control rows)."""

    def __init__(self):
        self.sums = dict.fromkeys(LOSS_TERMS, 0.0)
        self.loss_n = 0
        self.correct = self.retrieval_n = 0
        self.batch_sizes = []
        self.n_samples = 0
        self.visual, self.audio, self.labels, self.gts = [], [], [], []
        self.silence = None  # the audio embedding of digital silence
        self.spread_visual, self.spread_audio = [], []

    def add(self, visual, audio, out, batch, tau: float) -> None:
        from avloc.metrics import gt_map_from_boxes

        b = visual.shape[0]
        self.n_samples += b
        if b >= 2:
            for name in self.sums:
                self.sums[name] += float(out[name]) * b
            self.loss_n += b
            logits = pair_logits(visual, audio, tau)
            self.correct += int((logits.argmax(dim=0) == torch.arange(b, device=logits.device)).sum())
            self.retrieval_n += b
            self.batch_sizes.append(b)
        self.spread_visual.append(visual.flatten(2).mean(2).cpu())
        self.spread_audio.append(audio.cpu())
        labels = batch.get("label")
        for i, boxes in enumerate(batch.get("bbox") or []):
            if boxes:
                self.visual.append(visual[i].cpu())
                self.audio.append(audio[i].cpu())
                self.labels.append(int(labels[i]) if labels is not None and int(labels[i]) >= 0 else None)
                self.gts.append(torch.from_numpy(gt_map_from_boxes(boxes)))


@torch.no_grad()
def run_validation(model, loader, *, device, tau: float, fg_threshold: float, loss_weights: dict,
                   upsample: str, autocast=None, impl: str = "auto", audio_controls=AUDIO_CONTROLS) -> dict:
    """Score ``model`` (unwrapped, any mode) on ``loader`` (eval mode); restores the model's mode.

    ``loss_weights``: {"fns1": w, "tns": w, "fns2": w} for the full objective ``val_loss``;
    ``upsample``: how heat maps are upsampled for AP50/AUC (avloc.metrics); ``audio_controls``:
    which of avloc.audio_controls' rows to add (each boxed item scored again with its audio
    replaced by silence / by another class's audio).
    """
    from avloc.losses import fnac_losses

    was_training = model.training
    model.eval()
    got = _Collected()
    try:
        for batch in loader:
            image = batch["image"].to(device, non_blocking=True)
            spec = batch["spec"].to(device, non_blocking=True)
            with autocast() if autocast else nullcontext():
                visual, audio = model(image, spec)
                if got.silence is None and "silence" in audio_controls:
                    got.silence = model.audio(silence_like(spec[:1])).float().cpu()[0]
            visual, audio = visual.float(), audio.float()
            out = fnac_losses(visual, audio, tau=tau, fg_threshold=fg_threshold, impl=impl)
            got.add(visual, audio, out, batch, tau)
    finally:
        model.train(was_training)
    result = {"val_samples": got.n_samples, **_loss_rows(got, loss_weights), **_spread_rows(got),
              **_adjacency_rows(got, tau)}
    result["val_boxes"] = len(got.gts)
    if got.gts:
        result.update(_localisation_rows(got, upsample, audio_controls))
    return result


def _loss_rows(got: _Collected, loss_weights: dict) -> dict:
    if not got.loss_n:
        return {}
    terms = {f"val_{k}": v / got.loss_n for k, v in got.sums.items()}
    rows = dict(terms)
    rows["val_loss"] = terms["val_contrastive"] + sum(w * terms[f"val_{k}"] for k, w in loss_weights.items())
    rows["val_retrieval_a2i"] = got.correct / got.retrieval_n
    rows["val_retrieval_chance"] = float(np.mean([1.0 / b for b in got.batch_sizes]))
    return rows


def _spread_rows(got: _Collected) -> dict:
    from avloc.training.collapse import embedding_spread

    if sum(len(a) for a in got.spread_audio) < 2:
        return {}
    spread = embedding_spread(torch.cat(got.spread_visual), torch.cat(got.spread_audio))
    return {f"val_{k}": v for k, v in spread.items() if k in ("audio_cos", "visual_cos", "audio_std", "visual_std")}


def _adjacency_rows(got: _Collected, tau: float) -> dict:
    """Same-class shares of the audio adjacency and of the pair logits (boxed, labelled items), beside chance."""
    from avloc.training.collapse import class_structure

    if len(got.audio) < 2:
        return {}
    return {f"val_{k}": v for k, v in class_structure(torch.stack(got.visual), torch.stack(got.audio), got.labels,
                                                      tau).items()}


def _localisation_rows(got: _Collected, upsample: str, audio_controls) -> dict:
    """AP50/AUC/mean cIoU of the model, of each audio control and of the trivial baselines."""
    from avloc.evaluation.baselines import baseline_batch
    from avloc.metrics import localization_scores

    visual = torch.stack(got.visual)  # [N, D, h, w]
    audio = torch.stack(got.audio)  # [N, D]
    gts = torch.stack(got.gts)
    n = visual.shape[0]
    rows_audio = {"val": audio}
    if "silence" in audio_controls and got.silence is not None:
        rows_audio["val_silence"] = got.silence.expand_as(audio)
    if "shuffled" in audio_controls and n >= 2:
        rows_audio["val_shuffled"] = audio[torch.from_numpy(shuffled_partners(n, got.labels))]
    scored = {prefix: localization_scores(torch.einsum("ndhw,nd->nhw", visual, a), gts, upsample=upsample)
              for prefix, a in rows_audio.items()}
    scored["baseline_centre"] = localization_scores(baseline_batch("centre_gaussian", n), gts, upsample=upsample)
    scored["baseline_whole"] = localization_scores(baseline_batch("whole_image", n), gts, upsample=upsample)
    result = {}
    for prefix, scores in scored.items():
        result[f"{prefix}_ap50"] = scores["ciou"]
        result[f"{prefix}_auc"] = scores["auc"]
        result[f"{prefix}_mean_ciou"] = scores["mean_ciou"]
        result[f"{prefix}_pointing"] = scores["pointing"]
    result.update(_class_rows(scored["val"]["per_sample"], got.labels))
    controls = {name: result[f"val_{name}_ap50"] for name in AUDIO_CONTROLS if f"val_{name}_ap50" in result}
    if controls:
        judged = verdict(result["val_ap50"], controls)
        result["val_uses_sound"] = judged["uses_sound"]
        result["val_audio_verdict"] = judged["message"]
    return result


def _class_rows(cious, labels: list) -> dict:
    """AP50 per class (labelled items) from the real-audio row's per-sample cIoUs, and the weakest class:
    an average over classes can hide one the model never localises."""
    from avloc.evaluation.results import per_class_rows

    rows = per_class_rows({"class": labels, "ciou": cious})
    if len(rows) < 2:
        return {}
    return {"val_ap50_by_class": {str(r["class"]): r["ap50"] for r in sorted(rows, key=lambda r: r["class"])},
            "val_weakest_class": str(rows[0]["class"]), "val_weakest_class_ap50": rows[0]["ap50"]}


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
