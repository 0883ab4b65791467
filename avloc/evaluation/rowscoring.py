"""Scoring the leaderboard sets: rows -> one map per view (or per source) -> per-source scores.

Per row the network sees each view (frame) once and each soundtrack once: the real one, and
for the audio controls digital silence, a partner row's soundtrack (``shuffled``) and, for a
duet with one track per source, the mixture with source k removed (``minus_k``). A map is
``<V[:, p], a>`` upsampled to 224 x 224 (not yet normalised); ``score_sources`` turns maps and
ground truths into per-source cIoU, confidence and pixel AP under a threshold rule and a
duet geometry. A class-agnostic model (FNAC) has one map per view, scored against every
source on that view; a class-aware model may give one map per source (``class_maps``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from avloc import metrics
from avloc.audio_controls import shuffled_partners, silence_like
from avloc.errors import InputError
from avloc.evaluation import media
from avloc.evaluation.baselines import baseline_maps
from avloc.evaluation.items import MODALITIES
from avloc.evaluation.mixing import mixture, spec_of, track_window
from avloc.evaluation.scoring import _audio_embeddings, _chunked
from avloc.utils.progress import Progress

GEOMETRIES = ("source", "canvas")
DUET_AVERAGES = ("source", "frame")
OTHER_SOURCE = "other_source_box"


# ---------------------------------------------------------------- per-source scores (pure)

def _canvas(maps: torch.Tensor) -> torch.Tensor:
    """[V, H, W] -> [1, H, V * W]: the views side by side."""
    return torch.cat(list(maps), dim=1).unsqueeze(0)


def _gt_on(gt: torch.Tensor, view: int, n_views: int) -> torch.Tensor:
    """A view's ground truth placed in its slot of the canvas (zero on the other views)."""
    out = gt.new_zeros((gt.shape[0], gt.shape[1] * n_views))
    out[:, view * gt.shape[1]:(view + 1) * gt.shape[1]] = gt
    return out


def score_sources(view_maps: torch.Tensor, gts: torch.Tensor, views: list, *, geometry: str = "source",
                  rule: str = "median", class_maps: Optional[torch.Tensor] = None) -> dict:
    """Per-source scores of upsampled (not normalised) maps.

    ``view_maps`` [V, 224, 224]: one map per view (class-agnostic); ``class_maps`` [S, V, 224, 224]
    when the model gives one per source. ``gts`` [S, 224, 224] and ``views`` (view of each source).
    ``geometry``: "source" scores source s on its own view's map; "canvas" joins the views side by
    side (normalised and thresholded as one picture) and places s's ground truth in its view's
    slot, zero elsewhere. Returns arrays over sources: ciou, confidence (mean of the top 25 % of
    the raw map that was thresholded), cap (pixel AP of the normalised map), pred_area."""
    out = {k: np.zeros(len(views)) for k in ("ciou", "confidence", "cap", "pred_area")}
    n_views = view_maps.shape[0]
    for s, view in enumerate(views):
        maps = class_maps[s] if class_maps is not None else view_maps
        if geometry == "canvas" and n_views > 1:
            raw, gt = _canvas(maps), _gt_on(gts[s], view, n_views).unsqueeze(0)
        else:
            raw, gt = maps[view].unsqueeze(0), gts[s].unsqueeze(0)
        norm = metrics.minmax_normalise(raw)
        pred = metrics.rule_masks(norm, rule)
        out["ciou"][s] = metrics.ciou_from_masks(pred, gt)[0]
        out["confidence"][s] = metrics.top_confidence(raw)[0]
        out["cap"][s] = metrics.pixel_average_precision(norm[0].cpu().numpy(), gt[0].cpu().numpy())
        out["pred_area"][s] = float(pred.double().mean())
    return out


def other_source_cious(gts: torch.Tensor, views: list, geometry: str = "source") -> np.ndarray:
    """Duet baseline: source s predicted by the other source's ground-truth region, used directly
    as the mask (on s's own frame in "source" geometry; on the other's half of the canvas in "canvas")."""
    out = np.full(len(views), np.nan)
    if len(views) != 2:
        return out
    n_views = max(views) + 1
    for s in range(2):
        o = 1 - s
        if geometry == "canvas" and n_views > 1:
            pred, gt = _gt_on(gts[o], views[o], n_views) > 0, _gt_on(gts[s], views[s], n_views)
        else:
            pred, gt = gts[o] > 0, gts[s]
        out[s] = metrics.ciou_from_masks(pred.unsqueeze(0), gt.unsqueeze(0))[0]
    return out


# ---------------------------------------------------------------- reading rows

class RowDataset(Dataset):
    """Row i -> dict(index, views [V,3,224,224], gts [S,224,224], specs {key: spec}, audio_info) or an error.

    Spec keys: "real"; "shuffled" (the partner row's soundtrack; left out, not fatal, when it
    cannot be read); "minus_k" for duets with one track per source."""

    def __init__(self, items: list, partners: Optional[np.ndarray], removal: bool):
        self.items, self.partners, self.removal = items, partners, removal

    def __len__(self) -> int:
        return len(self.items)

    @staticmethod
    def _windows(item) -> tuple:
        found = [track_window(p) for p in item.audio]
        return [w for w, _, _ in found], [sr for _, sr, _ in found], [ch for _, _, ch in found]

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        stage = "frame"
        try:
            views = torch.stack([media.load_frame(v) for v in item.views])
            stage = "annotation"
            shape = (len(item.sources), metrics.MAP_SIZE, metrics.MAP_SIZE)
            gts = torch.from_numpy(np.stack([s.gt_map() for s in item.sources])) if item.sources else torch.zeros(
                (1, *shape[1:]))
            stage = "audio"
            windows, rates, channels = self._windows(item)
        except Exception as exc:  # that row's problem: counted and reported with the reason
            return {"index": i, "error": (stage, f"{type(exc).__name__}: {exc}".replace("\n", " ")[:200])}
        specs = {"real": spec_of(mixture(windows))}
        if self.removal and len(windows) == len(item.sources) >= 2:
            for k in range(len(windows)):
                specs[f"minus_{k}"] = spec_of(mixture(windows, drop=k))
        if self.partners is not None:
            try:
                specs["shuffled"] = spec_of(mixture(self._windows(self.items[int(self.partners[i])])[0]))
            except Exception:
                pass  # the control row simply lacks this item (counted)
        return {"index": i, "views": views, "gts": gts, "specs": specs,
                "audio_info": {"rates": rates, "channels": channels}}


def row_batches(items: list, batch_size: int, workers: int, partners, removal: bool) -> DataLoader:
    from avloc.data.workers import worker_options

    return DataLoader(RowDataset(items, partners, removal), batch_size=batch_size, shuffle=False,
                      collate_fn=_as_list, **worker_options(workers))


def _as_list(samples: list) -> list:
    return samples


# ---------------------------------------------------------------- scoring a run

@dataclasses.dataclass
class UnitScores:
    """Per-unit columns (a unit = one source of one row; a non-sounding row is one unit with empty GT)."""

    columns: dict
    unreadable: dict
    audio_notes: dict
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return len(self.columns["row"])


def _append(columns: dict, key: str, values) -> None:
    columns.setdefault(key, []).extend(np.asarray(values, dtype=np.float64).tolist())


@torch.no_grad()
def score_rows(items: list, model, device, *, upsample: str = "bicubic", rule: str = "median",
               geometry: str = "source", controls: tuple = ("silence", "shuffled"), batch_size: int = 8,
               workers: int = 0, chunk: int = 16, progress: bool = True, benchmark: str = "benchmark") -> UnitScores:
    """Score every row of ``items`` (``rows.RowItem``); unreadable rows are recorded, never fatal.

    With any audio control on, duets with one track per source are also scored with each source
    removed from the mixture (columns ``ciou_removed`` / ``ciou_remaining``)."""
    partners = None
    if "shuffled" in controls:
        partners = shuffled_partners(len(items), [it.label for it in items], [it.clip for it in items])
    removal = bool(controls)
    batches = row_batches(items, batch_size, workers, partners, removal)
    bases = {name: m for name, m in baseline_maps().items()}
    columns: dict = {}
    unreadable = {m: [] for m in MODALITIES}
    notes = {"resampled_tracks": 0, "stereo_tracks": 0, "mixed_rate_rows": 0, "shuffled_unreadable": 0}
    silence_cache: dict = {}
    t0 = time.perf_counter()
    with Progress(len(items), desc=f"evaluate {benchmark}", unit="row", enabled=progress) as bar:
        for samples in batches:
            good = [s for s in samples if "error" not in s]
            for s in samples:
                if "error" in s:
                    unreadable[s["error"][0]].append({"id": items[s["index"]].id, "error": s["error"][1]})
            if good:
                _score_batch(good, items, model, device, upsample, rule, geometry, controls, chunk, bases,
                             columns, notes, silence_cache)
            bar.update(len(samples), failed=len(samples) - len(good))
    if not columns:
        first = next((v[0] for v in unreadable.values() if v), {"id": "?", "error": "no rows"})
        raise InputError(f"none of the {len(items)} {benchmark} rows could be read, e.g. {first['id']}: "
                         f"{first['error']}")
    return UnitScores(columns=columns, unreadable=unreadable, audio_notes=notes, seconds=time.perf_counter() - t0)


def _score_batch(good, items, model, device, upsample, rule, geometry, controls, chunk, bases, columns, notes,
                 silence_cache) -> None:
    images = torch.cat([s["views"] for s in good])
    visual = _chunked(model.visual, images.to(device), chunk).float()
    keys = [(j, key) for j, s in enumerate(good) for key in s["specs"]]
    specs = [good[j]["specs"][key] for j, key in keys]
    emb = _audio_embeddings(model, specs, device, chunk).float()
    by_key = {jk: emb[n] for n, jk in enumerate(keys)}
    offset = 0
    for j, s in enumerate(good):
        i = s["index"]
        item = items[i]
        n_views = s["views"].shape[0]
        vis = visual[offset:offset + n_views]
        offset += n_views
        rates, channels = s["audio_info"]["rates"], s["audio_info"]["channels"]
        notes["resampled_tracks"] += sum(r != media.SR for r in rates)
        notes["stereo_tracks"] += sum(c > 1 for c in channels)
        notes["mixed_rate_rows"] += int(len(set(rates)) > 1)
        gts = s["gts"]
        views = [src.view for src in item.sources] or [0]
        sounding = bool(item.sources)

        def maps_for(a: torch.Tensor) -> torch.Tensor:
            raw = torch.einsum("vchw,c->vhw", vis, a.to(vis.device)).float().cpu()
            return metrics.upsample_maps(raw, upsample)

        real = score_sources(maps_for(by_key[(j, "real")]), gts, views, geometry=geometry, rule=rule)
        n_units = len(views)
        columns.setdefault("row", []).extend([i] * n_units)
        columns.setdefault("source", []).extend(range(n_units))
        columns.setdefault("sounding", []).extend([sounding] * n_units)
        columns.setdefault("n_sources", []).extend([len(item.sources)] * n_units)
        for key in ("ciou", "confidence", "cap", "pred_area"):
            _append(columns, key, real[key])
        columns.setdefault("gt_area", []).extend(gts.reshape(gts.shape[0], -1).mean(1).double().tolist())
        for name, m in bases.items():
            b = score_sources(metrics.upsample_maps(m.expand(n_views, -1, -1), upsample), gts, views,
                              geometry=geometry, rule=rule)
            _append(columns, f"ciou_{name}", b["ciou"])
            _append(columns, f"confidence_{name}", b["confidence"])
            _append(columns, f"cap_{name}", b["cap"])
        _append(columns, f"ciou_{OTHER_SOURCE}", other_source_cious(gts, views, geometry) if len(item.sources) == 2
                else np.full(n_units, np.nan))
        if "silence" in controls:
            spec = s["specs"]["real"]
            shape = tuple(spec.shape)
            if shape not in silence_cache:
                silence_cache[shape] = model.audio(silence_like(spec)[None].to(device)).float()[0]
            c = score_sources(maps_for(silence_cache[shape]), gts, views, geometry=geometry, rule=rule)
            _append(columns, "ciou_silence", c["ciou"])
            _append(columns, "confidence_silence", c["confidence"])
            _append(columns, "cap_silence", c["cap"])
        if "shuffled" in controls:
            if (j, "shuffled") in by_key:
                c = score_sources(maps_for(by_key[(j, "shuffled")]), gts, views, geometry=geometry, rule=rule)
            else:
                notes["shuffled_unreadable"] += 1
                c = {k: np.full(n_units, np.nan) for k in ("ciou", "confidence", "cap")}
            _append(columns, "ciou_shuffled", c["ciou"])
            _append(columns, "confidence_shuffled", c["confidence"])
            _append(columns, "cap_shuffled", c["cap"])
        removed, remaining = np.full(n_units, np.nan), np.full(n_units, np.nan)
        if (j, "minus_0") in by_key and n_units == 2:
            for k in range(2):
                c = score_sources(maps_for(by_key[(j, f"minus_{k}")]), gts, views, geometry=geometry, rule=rule)
                removed[k] = c["ciou"][k]
                remaining[1 - k] = c["ciou"][1 - k]
        _append(columns, "ciou_removed", removed)
        _append(columns, "ciou_remaining", remaining)
