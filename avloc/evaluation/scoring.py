"""Scoring: batches of items -> heat maps -> per-sample cIoU for the model, the baselines and OGL.

Scores never depend on the batch size: the network always runs on chunks of exactly
``compute_chunk`` samples (the last one padded), so every sample goes through the same kernels
with the same shapes whatever the loading batch is, and the metrics are per sample.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, Iterable, Optional

import numpy as np
import torch

from avloc import metrics
from avloc.audio_controls import AUDIO_CONTROLS, shuffled_partners, silence_like
from avloc.errors import InputError
from avloc.evaluation.baselines import baseline_cious, baseline_masks, baseline_pointing
from avloc.evaluation.items import MODALITIES
from avloc.evaluation.options import COMPUTE_CHUNK
from avloc.utils.progress import Progress, warn


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
    return model_features(model, images, specs, device, chunk)[2]


@torch.no_grad()
def model_features(model, images: torch.Tensor, specs: list, device, chunk: int = COMPUTE_CHUNK) -> tuple:
    """(visual maps [B, D, h, w], audio embeddings [B, D]) on ``device``, raw heat maps [B, h, w] float32 on the CPU."""
    visual = _chunked(model.visual, images.to(device), chunk)
    audio = _audio_embeddings(model, specs, device, chunk)
    return visual, audio, torch.einsum("nchw,nc->nhw", visual, audio).float().cpu()


def _scores_of_maps(raw: torch.Tensor, gt: torch.Tensor, upsample: str) -> tuple:
    """(per-sample cIoU, per-sample pointing hit) of raw maps."""
    maps = metrics.minmax_normalise(metrics.upsample_maps(raw, upsample))
    return metrics.ciou_from_masks(metrics.threshold_masks(maps), gt), metrics.pointing_hits(maps, gt)


class AudioControlScorer:
    """Scores items again with their audio replaced (avloc.audio_controls): by digital silence,
    and by the audio of a partner item of another class (another clip). Partners are drawn from
    earlier items where possible, so their embeddings are already known; the few items whose
    partner comes later keep their visual maps until it does."""

    def __init__(self, controls: tuple, items: list, upsample: str):
        self.controls = tuple(controls)
        self.upsample = upsample
        self.partners = shuffled_partners(len(items), [it.label for it in items], [it.clip for it in items])
        self.audio: dict = {}  # item index -> audio embedding
        self.waiting: dict = {}  # item index -> (visual map, gt) until its partner's audio is known
        self.silence: dict = {}  # spectrogram shape -> silence embedding
        self.cious = {name: np.full(len(items), np.nan) for name in self.controls}
        self.pointing = {name: np.full(len(items), np.nan) for name in self.controls}

    def _silence(self, model, spec, device) -> torch.Tensor:
        key = tuple(spec.shape)
        if key not in self.silence:
            self.silence[key] = model.audio(silence_like(spec)[None].to(device)).float().cpu()[0]
        return self.silence[key]

    @torch.no_grad()
    def add(self, model, device, idx, visual, audio, specs, gt) -> None:
        for j, i in enumerate(idx):
            self.audio[int(i)] = audio[j]
        if "silence" in self.controls:
            a = torch.stack([self._silence(model, s, device) for s in specs])
            self.cious["silence"][idx], self.pointing["silence"][idx] = _scores_of_maps(
                torch.einsum("nchw,nc->nhw", visual, a), gt, self.upsample)
        if "shuffled" in self.controls:
            for j, i in enumerate(idx):
                self.waiting[int(i)] = (visual[j], gt[j])
            self._score_ready()

    def _score_ready(self) -> None:
        ready = [i for i in self.waiting if int(self.partners[i]) in self.audio]
        if not ready:
            return
        visual = torch.stack([self.waiting[i][0] for i in ready])
        gt = torch.stack([self.waiting[i][1] for i in ready])
        a = torch.stack([self.audio[int(self.partners[i])] for i in ready])
        self.cious["shuffled"][ready], self.pointing["shuffled"][ready] = _scores_of_maps(
            torch.einsum("nchw,nc->nhw", visual, a), gt, self.upsample)
        for i in ready:
            del self.waiting[i]

    def finish(self, items: list) -> tuple:
        """Items whose partner was never read (missing or unreadable) get a partner among the read
        items, with the same rules and seed; returns (control name -> per-item cIoU, -> per-item pointing hit)."""
        if self.waiting:
            read = sorted(self.audio)
            sub = shuffled_partners(len(read), [items[i].label for i in read], [items[i].clip for i in read])
            position = {i: k for k, i in enumerate(read)}
            for i in list(self.waiting):
                self.partners[i] = read[int(sub[position[i]])]
            self._score_ready()
        return self.cious, self.pointing


@torch.no_grad()
def ogl_scores(saliency, images: torch.Tensor, av_normalised: torch.Tensor, gt: torch.Tensor, device,
               chunk: int) -> tuple:
    """(per-sample cIoU, per-sample pointing hit) of the OGL map (AV map fused with the object prior of ``images``)."""
    from avloc.evaluation.ogl import fuse, object_maps

    obj = _chunked(saliency, images.to(device), chunk).float().cpu()
    fused = fuse(av_normalised, object_maps(obj))
    return metrics.ciou_from_masks(metrics.threshold_masks(fused), gt), metrics.pointing_hits(fused, gt)


def _areas(pred: torch.Tensor, gt: torch.Tensor) -> tuple:
    n = float(metrics.N_PIXELS)
    return (pred.reshape(pred.shape[0], -1).sum(1).double() / n).numpy(), \
        (gt.reshape(gt.shape[0], -1).sum(1).double() / n).numpy()


@dataclasses.dataclass
class Scores:
    """Per-item arrays over all items (NaN where an item was not scored), in item order."""

    ciou: np.ndarray
    pred_area: np.ndarray
    gt_area: np.ndarray
    baselines: dict  # name -> per-item cIoU
    ogl: Optional[np.ndarray]  # None without OGL
    done: np.ndarray  # bool: the item was read and scored
    raw_maps: dict  # item index -> raw [h, w] heat map (for overlays)
    unreadable: dict  # modality -> [{"id", "error"}]
    controls: dict = dataclasses.field(default_factory=dict)  # audio control name -> per-item cIoU
    # row column ("ciou" for the model, "ciou_<name>" for the others, as in summary rows) -> per-item pointing hit
    pointing: dict = dataclasses.field(default_factory=dict)
    seconds: float = 0.0
    nonfinite_maps: list = dataclasses.field(default_factory=list)  # ids whose heat map held NaN/inf

    @classmethod
    def empty(cls, n: int, baseline_names: Iterable, ogl: bool) -> "Scores":
        baseline_names = list(baseline_names)
        return cls(ciou=np.full(n, np.nan), pred_area=np.full(n, np.nan), gt_area=np.full(n, np.nan),
                   baselines={name: np.full(n, np.nan) for name in baseline_names},
                   ogl=np.full(n, np.nan) if ogl else None, done=np.zeros(n, dtype=bool), raw_maps={},
                   unreadable={m: [] for m in MODALITIES},
                   pointing={c: np.full(n, np.nan) for c in ["ciou", *(f"ciou_{b}" for b in baseline_names)]
                             + (["ciou_ogl"] if ogl else [])})

    @property
    def scored_index(self) -> np.ndarray:
        return np.flatnonzero(self.done)


def score_batch(scores: Scores, batch: dict, model, device, *, upsample: str, chunk: int, masks: dict,
                saliency=None, controls: Optional[AudioControlScorer] = None) -> None:
    """Score one batch of ``item_batches`` into ``scores`` (unreadable items are only recorded)."""
    idx = np.asarray(batch["index"])
    visual, audio, raw = model_features(model, batch["image"], batch["spec"], device, chunk)
    if controls is not None:
        # only the controls need the features beyond the heat maps: copied to the CPU for them alone
        controls.add(model, device, idx, visual.float().cpu(), audio.float().cpu(), batch["spec"], batch["gt"])
    av = metrics.minmax_normalise(metrics.upsample_maps(raw, upsample))
    pred = metrics.threshold_masks(av)
    gt = batch["gt"]
    scores.ciou[idx] = metrics.ciou_from_masks(pred, gt)
    scores.pointing["ciou"][idx] = metrics.pointing_hits(av, gt)
    scores.pred_area[idx], scores.gt_area[idx] = _areas(pred, gt)
    for name, values in baseline_cious(masks, gt).items():
        scores.baselines[name][idx] = values
    for name, values in baseline_pointing(gt).items():
        scores.pointing[f"ciou_{name}"][idx] = values
    if saliency is not None:
        scores.ogl[idx], scores.pointing["ciou_ogl"][idx] = ogl_scores(saliency, batch["image"], av, gt, device, chunk)
    scores.done[idx] = True
    finite = torch.isfinite(raw.flatten(1)).all(dim=1)
    for j, i in enumerate(idx):
        scores.raw_maps[int(i)] = raw[j].numpy()
        if not bool(finite[j]):
            scores.nonfinite_maps.append(int(i))


def score_items(items: list, batches: Iterable, model, device, *, upsample: str = "bicubic",
                compute_chunk: int = COMPUTE_CHUNK, saliency=None, progress: bool = True,
                benchmark: str = "benchmark", audio_controls: tuple = AUDIO_CONTROLS) -> Scores:
    """Score every batch of ``batches`` (from ``item_batches(items, ...)``); at least one item must be read.

    ``audio_controls``: the rows scored again with the audio replaced (avloc.audio_controls)."""
    masks = baseline_masks(upsample)
    scores = Scores.empty(len(items), masks, saliency is not None)
    controls = AudioControlScorer(audio_controls, items, upsample) if audio_controls else None
    t0 = time.perf_counter()
    with Progress(len(items), desc=f"evaluate {benchmark}", unit="item", enabled=progress) as bar:
        for batch in batches:
            for index, modality, message in batch["errors"]:
                scores.unreadable[modality].append({"id": items[index].id, "error": message})
            if batch["index"]:
                score_batch(scores, batch, model, device, upsample=upsample, chunk=compute_chunk, masks=masks,
                            saliency=saliency, controls=controls)
            bar.update(len(batch["index"]) + len(batch["errors"]), failed=len(batch["errors"]))
    if controls is not None:
        scores.controls, control_pointing = controls.finish(items)
        scores.pointing.update({f"ciou_{name}": hits for name, hits in control_pointing.items()})
    scores.seconds = time.perf_counter() - t0
    if scores.nonfinite_maps:
        warn(f"{len(scores.nonfinite_maps)} of {int(scores.done.sum())} heat maps hold NaN or inf (e.g. "
             f"{items[scores.nonfinite_maps[0]].id}): their scores are not measurements of the model")
    if not scores.done.any():
        first = next(v[0] for v in scores.unreadable.values() if v)
        raise InputError(f"none of the {len(items)} {benchmark} items could be read, e.g. {first['id']}: {first['error']}")
    return scores
