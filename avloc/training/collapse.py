"""Collapse detection: is the run still telling its clips apart?

A contrastive model has collapsed when its embeddings stop differing from clip to clip: the
contrastive loss returns to chance (2 ln B, both directions) and the audio or the visual
embeddings all point the same way. FNAC's adjacency terms are minimised by exactly that state
(identical embeddings give uniform softmax rows everywhere, so every L1 term is 0), which is
why a run can learn during the warm-up and then fall back to chance (METHOD.md §3).

``embedding_spread`` measures one batch; ``CollapseMonitor`` follows the measurements over a
run. An untrained model also sits at chance with near-identical embeddings, so the monitor only
speaks of collapse after the run has learned (its contrastive loss went below
``learned_fraction`` of chance) and then stays at chance with collapsed embeddings for
``patience`` consecutive checks. It names the step where that began and the loss term whose
gradient (with respect to the embeddings, weights applied) was largest over the checks that led
there.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
import torch.nn.functional as F

def _mean_off_diagonal(x: torch.Tensor) -> float:
    n = x.shape[0]
    if n < 2:
        return float("nan")
    gram = x @ x.t()
    return float((gram.sum() - gram.diagonal().sum()) / (n * n - n))


@torch.no_grad()
def embedding_spread(visual: torch.Tensor, audio: torch.Tensor) -> dict:
    """Spread statistics of one batch: visual [B,D,h,w] (or [B,D]) and audio [B,D] embeddings.

    * ``audio_cos`` / ``visual_cos``: mean cosine between different clips' embeddings (1 when
      they are identical); the visual embedding is the map's spatial mean, re-normalised.
    * ``audio_std`` / ``visual_std``: mean over dimensions of the per-dimension std over clips.
    * ``retrieval_a2i``: fraction of audio clips whose own frame has the highest pair logit
      (max over positions); ``retrieval_chance`` = 1 / B.
    """
    audio = F.normalize(audio.detach().float(), dim=1)
    v = visual.detach().float()
    v_mean = F.normalize(v.flatten(2).mean(2) if v.dim() == 4 else v, dim=1)
    b = audio.shape[0]
    out = {
        "audio_cos": _mean_off_diagonal(audio),
        "visual_cos": _mean_off_diagonal(v_mean),
        "audio_std": float(audio.std(0).mean()) if b > 1 else float("nan"),
        "visual_std": float(v_mean.std(0).mean()) if b > 1 else float("nan"),
        "retrieval_chance": 1.0 / b,
    }
    if v.dim() == 4:
        logits = torch.einsum("ndp,md->nmp", v.flatten(2), audio).amax(dim=2)  # [image, audio]
        out["retrieval_a2i"] = float((logits.argmax(dim=0) == torch.arange(b)).float().mean())
    return out


@torch.no_grad()
def same_class_mass(logits: torch.Tensor, labels: list) -> dict:
    """Per row of an [N, N] logit matrix between clips: the softmax over the other clips (the row
    without its own entry) and its share on clips of the row's class, with the share uniform weights
    would give (chance). Means over rows with a label and another clip of their class: {"mass",
    "chance"}, or {} when there are none. Unlabelled clips (None) are left out."""
    keep = [i for i, label in enumerate(labels) if label is not None]
    if len(keep) < 2:
        return {}
    index = torch.tensor(keep)
    logits = logits.detach().float()[index][:, index]
    lab = torch.tensor([labels[i] for i in keep])
    n = len(keep)
    off = ~torch.eye(n, dtype=torch.bool)
    weights = torch.softmax(logits.masked_fill(~off, float("-inf")), dim=1)
    same = (lab[:, None] == lab[None, :]) & off
    rows = same.any(dim=1)
    if not bool(rows.any()):
        return {}
    mass = (weights * same).sum(dim=1)[rows]
    chance = same.sum(dim=1)[rows].float() / (n - 1)
    return {"mass": float(mass.mean()), "chance": float(chance.mean())}


@torch.no_grad()
def class_structure(visual: torch.Tensor, audio: torch.Tensor, labels: list, tau: float) -> dict:
    """How much class structure FNAC's targets carry and how much its pair logits follow it, over a set
    of clips (visual [N, D, h, w], audio [N, D], labels): the share of each clip's softmax over the
    other clips that lands on its own class, for the audio adjacency (audio cosine / tau, the target
    of the FNS1 term) and for the pair logits (max over positions / tau, the rows of the contrastive
    loss, which push every other clip away, same class or not); beside chance."""
    a = F.normalize(audio.detach().float(), dim=1)
    out = {}
    adjacency = same_class_mass(a @ a.t() / tau, labels)
    if adjacency:
        out["audio_same_class_mass"], out["audio_same_class_chance"] = adjacency["mass"], adjacency["chance"]
    if visual.dim() == 4:
        v = visual.detach().float().flatten(2)
        pair = torch.einsum("ndp,md->nmp", v, a).amax(dim=2) / tau  # [image, audio]
        logits = same_class_mass(pair, labels)
        if logits:
            out["logits_same_class_mass"] = logits["mass"]
    return out


def contrastive_chance(batch_size: int) -> float:
    """The contrastive loss (rows + columns cross-entropy) of a model that cannot tell clips apart."""
    return 2.0 * math.log(batch_size)


@dataclasses.dataclass(frozen=True)
class CollapseEvent:
    onset_step: int
    detected_step: int
    driving_term: Optional[str]
    gradient_norms: dict
    contrastive: float
    chance: float
    audio_cos: float
    visual_cos: float

    def message(self) -> str:
        grads = ", ".join(f"{k} {v:.3g}" for k, v in sorted(self.gradient_norms.items(), key=lambda kv: -kv[1]))
        driver = (f"driven by '{self.driving_term}' (gradient norms on the embeddings: {grads})"
                  if self.driving_term else "no gradient norms recorded")
        return (f"training collapsed at step {self.onset_step} (detected at step {self.detected_step}): "
                f"contrastive loss {self.contrastive:.3f} is back at chance (2 ln B = {self.chance:.3f}) and the "
                f"embeddings no longer differ (mean cosine between clips: audio {self.audio_cos:.3f}, visual "
                f"{self.visual_cos:.3f}); {driver}. The FNAC adjacency terms are minimised by identical "
                f"embeddings and outweigh the contrastive loss at small batches: scale their weights with the "
                f"batch (loss_weight_scaling=batch) or lower them (README, 'Training from scratch')")


@dataclasses.dataclass
class CollapseMonitor:
    """Feed ``update`` one check at a time; it returns a CollapseEvent once, when collapse is confirmed.

    Thresholds: learned = contrastive below ``learned_fraction`` of chance; a collapsed check =
    contrastive at ``chance_fraction`` of chance or more with a mean cosine between clips (audio or
    visual) of ``cosine`` or more; confirmed after ``patience`` collapsed checks in a row. The
    driving term is read from the gradient norms of the last ``history + patience`` checks.
    """

    learned_fraction: float = 0.9
    chance_fraction: float = 0.97
    cosine: float = 0.95
    patience: int = 3
    history: int = 5
    learned: bool = False
    event: Optional[CollapseEvent] = None
    _streak: list = dataclasses.field(default_factory=list)
    _recent: list = dataclasses.field(default_factory=list)

    def is_collapsed_check(self, contrastive: float, chance: float, spread: dict) -> bool:
        at_chance = contrastive >= self.chance_fraction * chance
        same = max(spread.get("audio_cos", 0.0), spread.get("visual_cos", 0.0)) >= self.cosine
        return at_chance and same

    def update(self, step: int, contrastive: float, batch_size: int, spread: dict,
               gradient_norms: Optional[dict] = None) -> Optional[CollapseEvent]:
        chance = contrastive_chance(batch_size)
        record = {"step": step, "contrastive": contrastive, "chance": chance, "spread": spread,
                  "grads": dict(gradient_norms or {})}
        self._recent = (self._recent + [record])[-(self.history + self.patience):]
        if contrastive <= self.learned_fraction * chance:
            self.learned = True
        if not self.learned or self.event is not None:
            return None
        if not self.is_collapsed_check(contrastive, chance, spread):
            self._streak = []
            return None
        self._streak.append(record)
        if len(self._streak) < self.patience:
            return None
        self.event = self._make_event(step)
        return self.event

    def _make_event(self, step: int) -> CollapseEvent:
        onset = self._streak[0]
        totals: dict = {}
        for rec in self._recent:
            for name, value in rec["grads"].items():
                totals.setdefault(name, []).append(float(value))
        means = {name: sum(vals) / len(vals) for name, vals in totals.items()}
        adjacency = {k: v for k, v in means.items() if k != "contrastive"}
        driver = max(adjacency or means, key=(adjacency or means).get) if means else None
        last = self._streak[-1]
        return CollapseEvent(onset_step=onset["step"], detected_step=step, driving_term=driver, gradient_norms=means,
                             contrastive=last["contrastive"], chance=last["chance"],
                             audio_cos=last["spread"].get("audio_cos", float("nan")),
                             visual_cos=last["spread"].get("visual_cos", float("nan")))


def term_gradient_norms(terms: dict, weights: dict, embeddings: tuple) -> dict:
    """Norm of each weighted loss term's gradient with respect to the embeddings (not the weights).

    Cheap: the graph from the embeddings to the losses is small next to the encoders'. Terms with
    weight 0 are left out. ``weights`` maps term -> weight; "contrastive" has weight 1.
    """
    norms = {}
    for name, value in terms.items():
        weight = 1.0 if name == "contrastive" else float(weights.get(name, 0.0))
        if weight == 0.0 or not value.requires_grad:
            continue
        grads = torch.autograd.grad(value * weight, embeddings, retain_graph=True, allow_unused=True)
        norms[name] = float(torch.sqrt(sum((g.float() ** 2).sum() for g in grads if g is not None)))
    return norms
