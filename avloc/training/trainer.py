"""One rank's training machinery, built whole by ``Trainer.build``: model, optimiser, loaders, one step.

Per step: batch -> model -> (optionally all-gathered) embeddings -> fnac_losses -> total =
contrastive during warm-up, contrastive + weights * (fns1 + tns + fns2) afterwards (METHOD.md §3,
§4) -> non-finite check agreed by all ranks -> backward -> Adam.
"""

from __future__ import annotations

import dataclasses
import json
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from avloc.errors import AvlocError, InputError
from avloc.losses import LOSS_TERMS, fnac_losses
from avloc.training import distributed as dist_util
from avloc.training import resume as resume_state
from avloc.training.collapse import embedding_spread, term_gradient_norms
from avloc.training.config import TrainConfig
from avloc.utils.progress import log
from avloc.utils.system import CPU_BF16_FLAGS, cpu_has_native_bf16, first_line, resolve_device


class NonFiniteLoss(AvlocError):
    """The loss became nan/inf and the run was asked to stop on it (the default)."""


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if device.type == "cpu" and precision == "fp16":
        raise InputError("precision fp16 needs CUDA; use fp32, or bf16 on a CPU with native bf16")
    if device.type == "cpu" and precision == "bf16" and not cpu_has_native_bf16():
        raise InputError(f"precision bf16: this CPU has no native bf16 ({' or '.join(CPU_BF16_FLAGS)}), so autocast "
                         "would emulate it, slower than fp32; use fp32")
    return precision


def set_train_mode(model: nn.Module, batchnorm: str) -> None:
    """model.train(), with BatchNorm layers kept in eval mode when ``batchnorm == 'frozen'``."""
    model.train()
    if batchnorm == "frozen":
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def dataset_counts(shards: Path) -> dict:
    path = Path(shards) / "dataset.json"
    try:
        return dict(json.loads(path.read_text()).get("counts") or {})
    except (OSError, ValueError):
        return {}


def build_train_loaders(cfg: TrainConfig, shards: Path, device: torch.device, dist: dist_util.DistContext,
                  local_batch: int) -> tuple:
    """(train loader of this rank, val loader on rank 0 when validating else None)."""
    from avloc.data import LoaderOptions, build_loader

    common = dict(backend=cfg.loader, device=device, seed=cfg.seed, image_size=cfg.image_size,
                  num_workers=cfg.num_workers, bad_sample=cfg.bad_sample, image_decode=cfg.image_decode)
    loader = build_loader(shards, "train", LoaderOptions(
        mode="train", batch_size=local_batch, rank=dist.rank, world_size=dist.world_size, drop_last=cfg.drop_last,
        spec_mask_fill=cfg.spec_mask_fill, **common))
    if len(loader) == 0:
        raise InputError(f"the train split of {shards} gives no full batch of {local_batch} clips per rank "
                         f"({loader.num_samples} samples, {dist.world_size} rank(s)); lower batch_size or add clips")
    val_loader = None
    if cfg.val_every:
        counts = dataset_counts(shards)
        if not counts.get(cfg.val_split):
            raise InputError(f"{shards} has no '{cfg.val_split}' split to validate on (counts: {counts}); "
                             "shard with --val-fraction or --val-list, or set val_every=0")
        if dist.is_main:
            val_loader = build_loader(shards, cfg.val_split, LoaderOptions(
                mode="eval", batch_size=cfg.val_batch_size, rank=0, world_size=1, **common))
    return loader, val_loader


@dataclasses.dataclass(eq=False)
class Trainer:
    """Everything one rank trains with; make it with ``Trainer.build``. ``train_step(batch, epoch)`` is one step."""

    cfg: TrainConfig
    shards: Path
    device: torch.device
    dist: dist_util.DistContext
    precision: str  # fp32 | bf16 | fp16
    kernel: str  # the resolved loss kernel implementation
    local_batch: int
    model: nn.Module  # unwrapped (what checkpoints hold)
    model_config: dict
    ddp: nn.Module  # what the forward pass calls: DistributedDataParallel(model), or model itself
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    loader: Any  # None when built without data (build_loaders=False)
    val_loader: Any  # rank 0 only, and only when validating
    step: int = 0  # optimiser steps taken
    samples_seen: int = 0  # training samples consumed (global, all ranks)
    skipped_steps: int = 0
    last_skip: Optional[str] = None  # what made the last skipped step non-finite
    last_probe: Optional[dict] = None  # embedding spread and term gradient norms of the last probed step

    @classmethod
    def build(cls, cfg: TrainConfig, shards, *, build_loaders: bool = True) -> "Trainer":
        """Resolve device/precision/kernel, join the process group (under torchrun), build model and loaders."""
        from avloc.model import FNACModel
        from avloc.ops.dispatch import resolve_impl

        device = resolve_device(cfg.device, dist_util.env_world()[2])
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist = dist_util.init_distributed(device.type)
        precision = resolve_precision(cfg.precision, device)
        kernel = resolve_impl(cfg.kernel, device)
        if cfg.batch_size % dist.world_size:
            raise InputError(f"batch_size {cfg.batch_size} does not split evenly over {dist.world_size} ranks")
        local_batch = cfg.batch_size // dist.world_size
        if cfg.batchnorm == "sync" and device.type != "cuda":
            raise InputError("batchnorm 'sync' needs CUDA; use local or frozen on cpu")

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = FNACModel(visual_weights=cfg.visual_weights, dim=cfg.dim, visual_dropout=cfg.visual_dropout,
                          audio_dropout=cfg.audio_dropout, visual_stages=cfg.visual_stages)
        model_config = model.model_config()
        if cfg.batchnorm == "sync" and dist.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
        ddp = model
        if dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # frozen BN keeps its buffers fixed, so there is nothing to broadcast each forward
            extra = {"broadcast_buffers": False} if cfg.batchnorm == "frozen" else {}
            ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None, **extra)
        # dropout and anything else random differs per rank from here on
        torch.manual_seed(cfg.seed + 1000 * dist.rank + 1)

        shards = Path(shards)
        loader, val_loader = (build_train_loaders(cfg, shards, device, dist, local_batch) if build_loaders
                              else (None, None))
        return cls(cfg=cfg, shards=shards, device=device, dist=dist, precision=precision, kernel=kernel,
                   local_batch=local_batch, model=model, model_config=model_config, ddp=ddp, optimizer=optimizer,
                   scaler=scaler, loader=loader, val_loader=val_loader)

    def say(self, text: str) -> None:
        """A line for the user, from rank 0 only."""
        if self.dist.is_main:
            log(text)

    def autocast(self):
        if self.precision in ("bf16", "fp16"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)
        return nullcontext()

    # ------------------------------------------------------------------ one step
    def forward_losses(self, batch: dict, epoch: int, probe: bool = False) -> tuple:
        """(total loss, {term: tensor}) for this rank's batch; total is what backward() is called on.

        ``probe``: also measure the embeddings' spread and each weighted term's gradient norm on
        them (``last_probe``, for the collapse monitor)."""
        cfg = self.cfg
        image = batch["image"].to(self.device, non_blocking=True)
        spec = batch["spec"].to(self.device, non_blocking=True)
        with self.autocast():
            visual, audio = self.ddp(image, spec)
        if visual.dtype in (torch.float16, torch.bfloat16):  # the losses run in fp32 (fp64 stays fp64)
            visual, audio = visual.float(), audio.float()
        extra = {}
        if cfg.global_negatives and self.dist.enabled:
            extra = dict(visual_all=dist_util.gather_with_grad(visual, self.dist),
                         audio_all=dist_util.gather_with_grad(audio, self.dist),
                         offset=self.dist.rank * visual.shape[0])
        out = fnac_losses(visual, audio, tau=cfg.tau, fg_threshold=cfg.fg_threshold, impl=self.kernel,
                          adjacency_grad=cfg.adjacency_grad, **extra)
        terms = {name: out[name] for name in LOSS_TERMS}
        total = terms["contrastive"]
        weights = cfg.loss_weights_at(epoch)
        if epoch >= cfg.warmup_epochs:
            for name, weight in weights.items():
                total = total + weight * terms[name]
        if probe:
            self.last_probe = {"spread": embedding_spread(visual, audio), "batch_size": visual.shape[0],
                               "grads": term_gradient_norms(terms, weights, (visual, audio)),
                               "weights": weights}
        return total, terms

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def train_step(self, batch: dict, epoch: int, probe: bool = False) -> Optional[dict]:
        """One optimiser step; returns the loss values, or None when a non-finite step was skipped
        (``last_skip`` then says why)."""
        set_train_mode(self.ddp, self.cfg.batchnorm)
        self.optimizer.zero_grad(set_to_none=True)
        # a skipped step must leave no trace: the forward pass already moved BatchNorm's running statistics
        saved_buffers = ([b.detach().clone() for b in self.model.buffers()] if self.cfg.nonfinite == "skip" else None)
        self.last_probe = None
        total, terms = self.forward_losses(batch, epoch, probe)
        values = {name: float(t.detach()) for name, t in terms.items()}
        values["loss"] = float(total.detach())
        bad = [name for name, v in values.items() if not math.isfinite(v)]
        if dist_util.any_rank(bool(bad), self.dist, self.device):
            where = f"step {self.step + 1} (epoch {epoch + 1}, rank {self.dist.rank})"
            detail = ", ".join(f"{name}={values[name]}" for name in bad) or "on another rank"
            if bad:
                detail += "; " + self.nonfinite_inputs(batch)
            if self.cfg.nonfinite == "stop":
                raise NonFiniteLoss(f"non-finite loss at {where}: {detail}")
            self.skipped_steps += 1
            with torch.no_grad():
                for buf, saved in zip(self.model.buffers(), saved_buffers):
                    buf.copy_(saved)
            self.say(f"skipping step {self.step + 1}: non-finite loss at {where}: {detail}")
            self.last_skip = detail
            return None
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return values

    def nonfinite_inputs(self, batch: dict) -> str:
        """Which samples of ``batch`` carry NaN/inf in their spectrogram or frame (key and shard), in words."""
        found = []
        for name in ("spec", "image"):
            per_sample = torch.isfinite(batch[name].flatten(1)).all(dim=1).cpu()
            found += [(batch["key"][i], name) for i in torch.nonzero(~per_sample).flatten().tolist()]
        if not found:
            return "every input of the batch is finite (the model or the loss diverged)"
        shards = getattr(self.loader, "shards", None)
        where = [f"{key!r}" + (f" in shard {shards.shard_of(key)}" if hasattr(shards, "shard_of") else "")
                 for key, _ in found[:3]]
        return (f"non-finite {found[0][1]} input in sample {', '.join(where)}"
                + (f" and {len(found) - 3} more" if len(found) > 3 else ""))

    # ------------------------------------------------------------------ resumable state
    def resumable_state(self) -> dict:
        """Model, optimiser, scaler and counters (this rank's RNG and loader position are gathered separately)."""
        return dict(model=self.model, model_config=self.model_config, optimizer=self.optimizer, scaler=self.scaler,
                    config=self.cfg.to_dict(), step=self.step, samples_seen=self.samples_seen,
                    skipped_steps=self.skipped_steps, world_size=self.dist.world_size)

    def restore(self, ckpt: dict) -> None:
        """Load model, optimiser, scaler, counters and this rank's RNG from a latest.pt (already config-checked)."""
        if ckpt.get("world_size") != self.dist.world_size:
            raise InputError(f"cannot resume: the checkpoint was written by {ckpt.get('world_size')} rank(s), "
                             f"this run has {self.dist.world_size}")
        if ckpt.get("model_config") != self.model_config:
            raise InputError(f"cannot resume: model config {ckpt.get('model_config')} != {self.model_config}")
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise InputError(f"cannot resume: checkpoint state does not fit this model/optimiser: "
                             f"{first_line(exc)}") from None
        if ckpt.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.samples_seen = int(ckpt["samples_seen"])
        self.skipped_steps = int(ckpt.get("skipped_steps", 0))
        resume_state.restore_rng(ckpt["rng"][self.dist.rank])
