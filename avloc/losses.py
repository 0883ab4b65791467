"""FNAC losses (METHOD.md §3) on top of the memory-bounded kernels in avloc.ops.

``fnac_losses(visual [B,D,h,w], audio [B,D])`` returns the unweighted terms "contrastive",
"fns1", "tns", "fns2" and the localisation maps "maps" [B,h,w] (the diagonal of the
similarity volume, already divided by tau).

Distributed form: with ``visual_all`` [B_g,D,h,w] and ``audio_all`` [B_g,D] (the gathered
global batch, with gradient, holding this rank's rows at [offset, offset+B)), every term is
computed for the local rows only: row cross-entropy of local images against all audio,
column cross-entropy of local audio against all images, adjacency rows of local samples
against all samples. With equal B on every rank, the mean over ranks of each term equals
the term on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from avloc.ops.dispatch import accumulation_dtype, no_autocast, resolve_impl
from avloc.ops.logit_terms import logit_terms
from avloc.ops.softmax_l1 import LowRank, softmax_l1
from avloc.ops.spatial_max_sim import spatial_max_similarity

LOSS_TERMS = ("contrastive", "fns1", "tns", "fns2")


def _check_inputs(visual, audio, visual_all, audio_all, offset):
    if visual.dim() != 4 or audio.dim() != 2 or visual.shape[0] != audio.shape[0] or visual.shape[1] != audio.shape[1]:
        raise ValueError(f"expected visual [B,D,h,w] and audio [B,D]; got {tuple(visual.shape)} and {tuple(audio.shape)}")
    if (visual_all is None) != (audio_all is None):
        raise ValueError("visual_all and audio_all go together")
    if visual_all is not None:
        b = visual.shape[0]
        if visual_all.shape[1:] != visual.shape[1:] or audio_all.shape[1:] != audio.shape[1:] or visual_all.shape[0] != audio_all.shape[0]:
            raise ValueError(f"gathered shapes {tuple(visual_all.shape)}, {tuple(audio_all.shape)} do not match the local ones")
        if not 0 <= offset <= visual_all.shape[0] - b:
            raise ValueError(f"offset {offset} does not place {b} local rows inside a global batch of {visual_all.shape[0]}")
    elif offset != 0:
        raise ValueError("offset needs visual_all/audio_all")


def diagonal_maps(visual_flat: torch.Tensor, audio: torch.Tensor, tau: float) -> torch.Tensor:
    """M[n, p] = <V[n, :, p], a[n]> / tau, [B, HW] (the diagonal of the similarity volume)."""
    return torch.einsum("ndp,nd->np", visual_flat, audio) / tau


def foreground_mask(maps_flat: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per-sample min-max normalised map > threshold; a hard mask (no gradient)."""
    with torch.no_grad():
        low = maps_flat.amin(dim=1, keepdim=True)
        high = maps_flat.amax(dim=1, keepdim=True)
        return ((maps_flat - low) / (high - low + 1e-5) > threshold).to(maps_flat.dtype)


def _reference(visual, audio, visual_all, audio_all, offset, tau, threshold, adjacency_grad=True):
    """The plain formulas; materialises the [B, B_g, HW] similarity volume."""
    b, d, h, w = visual.shape
    v_loc, v_all = visual.flatten(2), visual_all.flatten(2)
    targets = offset + torch.arange(b, device=visual.device)
    sim = torch.einsum("ndp,md->nmp", v_loc, audio_all) / tau
    logits = sim.max(dim=-1).values
    maps = sim[torch.arange(b, device=visual.device), targets]
    ce_rows = F.cross_entropy(logits, targets)
    if visual_all is visual:
        ce_cols = F.cross_entropy(logits.t(), targets)
    else:
        logits_cols = (torch.einsum("ndp,md->nmp", v_all, audio) / tau).max(dim=-1).values  # [B_g, B]
        ce_cols = F.cross_entropy(logits_cols.t(), targets)
    f_loc = (v_loc * foreground_mask(maps.detach(), threshold)[:, None, :]).mean(dim=2)
    if visual_all is visual:
        f_all = f_loc
    else:
        maps_all = (v_all * audio_all[:, :, None]).sum(dim=1) / tau
        f_all = (v_all * foreground_mask(maps_all.detach(), threshold)[:, None, :]).mean(dim=2)
    adj_audio = audio @ audio_all.t() / tau
    adj_image = v_loc.mean(dim=2) @ v_all.mean(dim=2).t() / tau
    if not adjacency_grad:
        adj_audio, adj_image = adj_audio.detach(), adj_image.detach()
    adj_fg = f_loc @ f_all.t() / tau
    soft_logits = torch.softmax(logits, dim=1)
    soft_audio = torch.softmax(adj_audio, dim=1)
    return {
        "contrastive": ce_rows + ce_cols,
        "fns1": F.l1_loss(soft_audio, soft_logits),
        "tns": F.l1_loss(soft_audio, torch.softmax(adj_fg, dim=1)),
        "fns2": F.l1_loss(torch.softmax(adj_image, dim=1), soft_logits),
        "maps": maps.reshape(b, h, w),
    }


def _pooling_weights(maps_flat: torch.Tensor, threshold: float) -> torch.Tensor:
    """[B, 2, HW]: uniform 1/HW (mean visual feature) and mask/HW (foreground feature)."""
    hw = maps_flat.shape[1]
    mask = foreground_mask(maps_flat.detach(), threshold).to(accumulation_dtype(maps_flat.dtype))  # 1/HW is not exact in bf16
    return torch.stack([torch.full_like(mask, 1.0 / hw), mask / hw], dim=1)


def _bounded(visual, audio, visual_all, audio_all, offset, tau, threshold, impl, workspace_bytes, adjacency_grad=True):
    """Kernels that never build the similarity volume nor any dense adjacency matrix; every
    visual-side quantity comes out of spatial-max nodes so the visual gradient exists once."""
    b, d, h, w = visual.shape
    distributed = visual_all is not visual
    v_loc, v_all = visual.flatten(2), visual_all.flatten(2)
    scale = 1.0 / tau
    maps = diagonal_maps(v_loc, audio, tau)
    if distributed:
        logits, _ = spatial_max_similarity(v_loc, audio_all, tau, impl, workspace_bytes)
        pool_all = _pooling_weights(diagonal_maps(v_all, audio_all, tau), threshold)
        logits_cols, _, pooled_all = spatial_max_similarity(v_all, audio, tau, impl, workspace_bytes, pool=pool_all)
        pooled = pooled_all[offset : offset + b]
    else:
        logits, _, pooled = spatial_max_similarity(v_loc, audio, tau, impl, workspace_bytes, pool=_pooling_weights(maps, threshold))
        pooled_all = pooled
    v_mean, f_loc = pooled.unbind(1)
    v_mean_all, f_all = pooled_all.unbind(1)
    # the adjacency factors are [B, D]: upcasting them is cheap and keeps the x 1/tau logits exact
    acc = pooled.dtype
    a_left, a_right = audio.to(acc), audio_all.to(acc)
    if not adjacency_grad:
        a_left, a_right, v_mean, v_mean_all = a_left.detach(), a_right.detach(), v_mean.detach(), v_mean_all.detach()
    adj_audio = LowRank(a_left, a_right, scale)
    adj_image = LowRank(v_mean, v_mean_all, scale)
    ce_rows, ce_cols, fns1, fns2 = logit_terms(logits, offset, not distributed, (adj_audio, adj_image), impl, workspace_bytes)
    if distributed:
        ce_cols = logit_terms(logits_cols.t(), offset, False, (), impl, workspace_bytes)[0]
    tns = softmax_l1(adj_audio, LowRank(f_loc, f_all, scale), impl, workspace_bytes)
    return {"contrastive": ce_rows + ce_cols, "fns1": fns1, "tns": tns, "fns2": fns2, "maps": maps.reshape(b, h, w)}


def fnac_losses(visual: torch.Tensor, audio: torch.Tensor, tau: float = 0.03, fg_threshold: float = 0.6, impl: str = "auto",
                *, visual_all: torch.Tensor | None = None, audio_all: torch.Tensor | None = None, offset: int = 0,
                workspace_bytes: int | None = None, adjacency_grad: bool = True) -> dict:
    """FNAC loss terms (unweighted) and localisation maps; see the module docstring.

    ``impl``: "auto" (triton on CUDA, else torch), "triton", "torch" (chunked, bounded memory)
    or "reference" (plain formulas). ``workspace_bytes`` bounds the per-chunk temporaries.
    ``adjacency_grad=False`` stops the gradient at the audio and mean-image adjacencies: they become
    fixed targets that the pair logits and the foreground adjacency are pulled towards, and no term
    can lower itself by pulling the embeddings together (the published method keeps it True).
    """
    _check_inputs(visual, audio, visual_all, audio_all, offset)
    impl = resolve_impl(impl, visual.device)
    if visual_all is None:
        visual_all, audio_all = visual, audio
    with no_autocast(visual.device):
        if impl == "reference":
            return _reference(visual, audio, visual_all, audio_all, int(offset), float(tau), float(fg_threshold),
                              adjacency_grad)
        return _bounded(visual, audio, visual_all, audio_all, int(offset), float(tau), float(fg_threshold), impl,
                        workspace_bytes, adjacency_grad)
