"""The FNAC training loop: one process or one rank of a torchrun job.

Per step: batch -> model -> (optionally all-gathered) embeddings -> fnac_losses -> total =
contrastive during warm-up, contrastive + 100 * (fns1 + tns + fns2) afterwards -> non-finite
check agreed by all ranks -> backward -> Adam. Every ``checkpoint_every`` steps and at every
epoch end ``checkpoints/latest.pt`` is written atomically with everything needed to continue
exactly (model, optimiser, grad scaler, step, epoch, samples seen, RNG states and loader
position per rank); after each validation ``checkpoints/best.pt`` when the selection metric
improved.
"""

from __future__ import annotations

import json
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from avloc.errors import AvlocError, InputError
from avloc.training import distributed as dist_util
from avloc.training import state as train_state
from avloc.training.config import TrainConfig, resume_conflicts, write_config
from avloc.training.logs import MetricsLog, ProgressLine, format_terms, status_text
from avloc.training.validation import METRIC_KEYS, is_better, run_validation, selection_key, selection_metric

LOSS_TERMS = ("contrastive", "fns1", "tns", "fns2")


class NonFiniteLoss(AvlocError):
    """The loss became nan/inf and the run was asked to stop on it (the default)."""


def resolve_device(cfg: TrainConfig, local_rank: int = 0) -> torch.device:
    if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise InputError("device 'cuda' requested but torch sees no CUDA device; use device=cpu or auto")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def resolve_precision(cfg: TrainConfig, device: torch.device) -> str:
    if cfg.precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if cfg.precision in ("bf16", "fp16") and device.type != "cuda":
        raise InputError(f"precision {cfg.precision} needs CUDA; use fp32 on cpu")
    return cfg.precision


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


class Trainer:
    """Holds the run's pieces; ``fit()`` trains, ``train_step(batch, epoch)`` does one step."""

    def __init__(self, cfg: TrainConfig, shards, run_dir, *, resume: bool = False,
                 log: Optional[Callable[[str], None]] = None):
        self.cfg = cfg
        self.shards = Path(shards)
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.resume = resume
        self._log = log
        self.step = 0  # optimiser steps taken
        self.epoch = 0
        self.samples_seen = 0  # training samples consumed (global, all ranks)
        self.skipped_steps = 0
        self.best = {"metric": None, "value": None, "key": None, "step": None, "epoch": None}
        self.stop_reason = None

    # ------------------------------------------------------------------ setup
    def say(self, text: str) -> None:
        if self.dist.is_main:
            (self._log or self.progress.message)(text)

    def setup(self, *, build_loaders: bool = True) -> "Trainer":
        from avloc.model import FNACModel
        from avloc.ops.dispatch import resolve_impl

        cfg = self.cfg
        local = dist_util.env_world()[2]
        self.device = resolve_device(cfg, local)
        self.dist = dist_util.init_distributed(self.device.type)
        self.precision = resolve_precision(cfg, self.device)
        self.kernel = resolve_impl(cfg.kernel, self.device)
        if cfg.batch_size % self.dist.world_size:
            raise InputError(f"batch_size {cfg.batch_size} does not split evenly over {self.dist.world_size} ranks")
        self.local_batch = cfg.batch_size // self.dist.world_size
        if cfg.batchnorm == "sync" and self.device.type != "cuda":
            raise InputError("batchnorm 'sync' needs CUDA; use local or frozen on cpu")
        self.progress = ProgressLine(enabled=cfg.progress and self.dist.is_main)

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        model = FNACModel(visual_weights=cfg.visual_weights, dim=cfg.dim, visual_dropout=cfg.visual_dropout,
                          audio_dropout=cfg.audio_dropout)
        self.model_config = model.model_config()
        if cfg.batchnorm == "sync" and self.dist.enabled:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            # frozen BN keeps its buffers fixed, so there is nothing to broadcast each forward
            extra = {"broadcast_buffers": False} if cfg.batchnorm == "frozen" else {}
            self.ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                               else None, **extra)
        else:
            self.ddp = self.model
        # dropout and anything else random differs per rank from here on
        torch.manual_seed(cfg.seed + 1000 * self.dist.rank + 1)

        from avloc.losses import fnac_losses

        self.losses_fn = fnac_losses
        self.loader = self.val_loader = None
        if build_loaders:
            self._build_loaders()
        return self

    def _build_loaders(self) -> None:
        from avloc.data import LoaderOptions, build_loader

        cfg = self.cfg
        common = dict(backend=cfg.loader, device=self.device, seed=cfg.seed, image_size=cfg.image_size,
                      num_workers=cfg.num_workers, bad_sample=cfg.bad_sample)
        self.loader = build_loader(self.shards, "train", LoaderOptions(
            mode="train", batch_size=self.local_batch, rank=self.dist.rank, world_size=self.dist.world_size,
            drop_last=cfg.drop_last, spec_mask_fill=cfg.spec_mask_fill, **common))
        if len(self.loader) == 0:
            raise InputError(f"the train split of {self.shards} gives no full batch of {self.local_batch} clips per rank "
                             f"({self.loader.num_samples} samples, {self.dist.world_size} rank(s)); "
                             "lower batch_size or add clips")
        if cfg.val_every:
            counts = dataset_counts(self.shards)
            if not counts.get(cfg.val_split):
                raise InputError(f"{self.shards} has no '{cfg.val_split}' split to validate on (counts: {counts}); "
                                 "shard with --val-fraction or --val-list, or set val_every=0")
            if self.dist.is_main:
                self.val_loader = build_loader(self.shards, cfg.val_split, LoaderOptions(
                    mode="eval", batch_size=cfg.val_batch_size, rank=0, world_size=1, **common))

    def autocast(self):
        if self.precision in ("bf16", "fp16"):
            return torch.autocast("cuda", dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)
        return nullcontext()

    # ------------------------------------------------------------------ one step
    def forward_losses(self, batch: dict, epoch: int) -> tuple:
        """(total loss, {term: tensor}) for this rank's batch; total is what backward() is called on."""
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
        out = self.losses_fn(visual, audio, tau=cfg.tau, fg_threshold=cfg.fg_threshold, impl=self.kernel, **extra)
        terms = {name: out[name] for name in LOSS_TERMS}
        total = terms["contrastive"]
        if epoch >= cfg.warmup_epochs:
            for name, weight in cfg.loss_weights.items():
                total = total + weight * terms[name]
        return total, terms

    def train_step(self, batch: dict, epoch: int) -> Optional[dict]:
        """One optimiser step; returns the loss values, or None when a non-finite step was skipped."""
        set_train_mode(self.ddp, self.cfg.batchnorm)
        self.optimizer.zero_grad(set_to_none=True)
        # a skipped step must leave no trace: the forward pass already moved BatchNorm's running statistics
        saved_buffers = ([b.detach().clone() for b in self.model.buffers()] if self.cfg.nonfinite == "skip" else None)
        total, terms = self.forward_losses(batch, epoch)
        values = {name: float(t.detach()) for name, t in terms.items()}
        values["loss"] = float(total.detach())
        bad = [name for name, v in values.items() if not math.isfinite(v)]
        if dist_util.any_rank(bool(bad), self.dist, self.device):
            where = f"step {self.step + 1} (epoch {epoch + 1}, rank {self.dist.rank})"
            detail = ", ".join(f"{name}={values[name]}" for name in bad) or "on another rank"
            if self.cfg.nonfinite == "stop":
                raise NonFiniteLoss(f"non-finite loss at {where}: {detail}; the last good state is in "
                                    f"{self.ckpt_dir / 'latest.pt'} (set nonfinite=skip to skip such steps)")
            self.skipped_steps += 1
            with torch.no_grad():
                for buf, saved in zip(self.model.buffers(), saved_buffers):
                    buf.copy_(saved)
            self.say(f"skipping step {self.step + 1}: non-finite loss at {where}: {detail}")
            self.metrics_write("nonfinite", step=self.step, epoch=epoch, terms=detail, skipped_steps=self.skipped_steps)
            return None
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return values

    # ------------------------------------------------------------------ checkpoints
    def metrics_write(self, kind: str, **row) -> None:
        if self.dist.is_main and getattr(self, "metrics", None) is not None:
            self.metrics.write(kind, **row)

    def save_latest(self, *, epoch: int, epoch_done: bool) -> None:
        rngs = dist_util.gather_objects(train_state.capture_rng(), self.dist)
        loaders = dist_util.gather_objects(self.loader.state_dict(), self.dist)
        if self.dist.is_main:
            train_state.save_training_checkpoint(
                self.ckpt_dir / "latest.pt", model=self.model, model_config=self.model_config,
                optimizer=self.optimizer, scaler=self.scaler, config=self.cfg.to_dict(), step=self.step, epoch=epoch,
                epoch_done=epoch_done, samples_seen=self.samples_seen, skipped_steps=self.skipped_steps,
                rng_per_rank=rngs, loader_per_rank=loaders, best=dict(self.best), world_size=self.dist.world_size)

    def save_best(self, epoch: int, result: dict) -> None:
        from avloc.checkpoint import save_checkpoint

        save_checkpoint(self.ckpt_dir / "best.pt", model_state=self.model.state_dict(), model_config=self.model_config,
                        config=self.cfg.to_dict(), step=self.step, epoch=epoch, selected_on=self.best["metric"],
                        selected_value=self.best["value"], validation={k: v for k, v in result.items()
                                                                      if isinstance(v, (int, float))})

    def restore(self, ckpt: dict) -> Optional[dict]:
        """Load a latest.pt; returns this rank's loader position (None when its epoch was finished)."""
        conflicts = resume_conflicts(ckpt.get("config") or {}, self.cfg)
        if conflicts:
            raise InputError("cannot resume: the checkpoint was trained with a different config ("
                             + "; ".join(conflicts) + ")")
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
                             f"{str(exc).splitlines()[0][:200]}") from None
        if ckpt.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.samples_seen = int(ckpt["samples_seen"])
        self.skipped_steps = int(ckpt.get("skipped_steps", 0))
        self.best = dict(ckpt.get("best") or self.best)
        train_state.restore_rng(ckpt["rng"][self.dist.rank])
        if ckpt["epoch_done"]:
            self.epoch = int(ckpt["epoch"]) + 1
            return None
        self.epoch = int(ckpt["epoch"])
        return ckpt["loader"][self.dist.rank]

    # ------------------------------------------------------------------ the run
    def _start_run_dir(self) -> Optional[dict]:
        """Prepare RUN_DIR; returns this rank's loader position to resume from (None = epoch start)."""
        latest = self.ckpt_dir / "latest.pt"
        loader_state = None
        if self.resume and latest.is_file():
            ckpt = train_state.load_training_checkpoint(latest)
            loader_state = self.restore(ckpt)
            self.say(f"resuming from {latest}: step {self.step}, epoch {self.epoch + 1}, "
                     f"{self.samples_seen} samples seen")
        elif self.resume:
            self.say(f"no checkpoint in {self.ckpt_dir} yet: starting from step 0")
        elif (self.run_dir / "config.yaml").exists() and self.dist.is_main:
            raise InputError(f"{self.run_dir} already holds a run (config.yaml); pass --resume to continue it "
                             "or choose another --out")
        dist_util.barrier(self.dist)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_config(self.cfg, self.run_dir / "config.yaml")
            self.metrics = MetricsLog(self.run_dir, self.cfg.tensorboard)
            self.metrics.truncate_after(self.step)
        return loader_state

    def describe(self) -> dict:
        cfg = self.cfg
        return {"device": str(self.device), "precision": self.precision, "loader": self.loader.backend,
                "loader_asked": cfg.loader, "kernel": self.kernel, "kernel_asked": cfg.kernel,
                "world_size": self.dist.world_size, "dist_backend": self.dist.backend,
                "global_batch": cfg.batch_size, "local_batch": self.local_batch,
                "global_negatives": bool(cfg.global_negatives and self.dist.enabled), "batchnorm": cfg.batchnorm,
                "image_size": cfg.image_size, "spec_mask_fill": self.loader.options.spec_mask_fill,
                "train_samples": self.loader.num_samples,
                "steps_per_epoch": len(self.loader), "shards": str(self.shards),
                "tensorboard": self.metrics.tb_status if self.dist.is_main else None}

    def fit(self) -> dict:
        cfg = self.cfg
        loader_state = self._start_run_dir()
        info = self.describe()
        self.say(f"avloc train: device {info['device']}, precision {info['precision']}, loader {info['loader']} "
                 f"(asked {cfg.loader}), kernel {info['kernel']} (asked {cfg.kernel}), "
                 f"{info['world_size']} rank(s){' ' + info['dist_backend'] if self.dist.enabled else ''}, "
                 f"batch {cfg.batch_size} = {info['world_size']} x {self.local_batch}, "
                 f"global negatives {'on' if info['global_negatives'] else 'off'}, batchnorm {cfg.batchnorm}, "
                 f"image {cfg.image_size}, SpecAugment fill {info['spec_mask_fill']}, "
                 f"{info['train_samples']} train samples, {info['steps_per_epoch']} steps/epoch, "
                 f"tensorboard {info['tensorboard']}")
        if cfg.val_every:
            self.say(f"validation every {cfg.val_every} epoch(s) on split '{cfg.val_split}'; best.pt selected on "
                     + (f"val {cfg.select_metric}" if cfg.select_metric != "auto"
                        else "val AP50 when the split has boxes, otherwise audio->image retrieval top-1"))
        self.metrics_write("start", step=self.step, epoch=self.epoch, resumed=self.resume and self.step > 0, **info)
        if cfg.val_every and cfg.val_at_start and self.step == 0 and self.dist.is_main:
            self._validate(-1, select=False)
        dist_util.barrier(self.dist)
        try:
            for epoch in range(self.epoch, cfg.epochs):
                self.epoch = epoch
                self.loader.set_epoch(epoch)
                if loader_state is not None:
                    self.loader.load_state_dict(loader_state)
                    loader_state = None
                if not self._train_epoch(epoch):
                    break
                self._end_epoch(epoch)
        finally:
            if self.dist.is_main and getattr(self, "metrics", None) is not None:
                self.metrics.close()
        summary = {"steps": self.step, "samples_seen": self.samples_seen, "skipped_steps": self.skipped_steps,
                   "epoch": self.epoch + 1, "best": self.best,
                   "stop_reason": self.stop_reason or "finished"}
        self.metrics_write_final(summary)
        return summary

    def metrics_write_final(self, summary: dict) -> None:
        if self.dist.is_main:
            MetricsLog(self.run_dir, "off").write("end", step=self.step, **summary)
            self.say(f"done: {self.step} steps, {self.samples_seen} samples seen, best {self.best['metric']} "
                     f"{self.best['value']} at step {self.best['step']} ({summary['stop_reason']})")

    def _train_epoch(self, epoch: int) -> bool:
        """Train one epoch (from the loader's position); False when max_steps stopped the run."""
        cfg = self.cfg
        steps_per_epoch = len(self.loader)
        window = {"t0": time.perf_counter(), "wait": 0.0, "samples": 0, "n": 0,
                  "sums": dict.fromkeys(LOSS_TERMS + ("loss",), 0.0)}
        consumed = int(self.loader.state_dict().get("batches_done", 0))
        it = iter(self.loader)
        while True:
            t_wait = time.perf_counter()
            try:
                # the loader may draw from torch's global RNG (e.g. DataLoader seeds when its iterator starts);
                # keeping that out of the training stream makes dropout identical in a resumed run
                with torch.random.fork_rng(devices=[]):
                    batch = next(it)
            except StopIteration:
                break
            window["wait"] += time.perf_counter() - t_wait
            values = self.train_step(batch, epoch)
            self.samples_seen += self.local_batch * self.dist.world_size
            window["samples"] += self.local_batch * self.dist.world_size
            if values is not None:
                window["n"] += 1
                for name in window["sums"]:
                    window["sums"][name] += values[name]
            consumed += 1
            step_in_epoch = consumed
            if values is not None and (self.step % cfg.log_every == 0 or step_in_epoch == steps_per_epoch):
                self._log_window(window, epoch, step_in_epoch, steps_per_epoch)
            if values is not None and self.step % cfg.checkpoint_every == 0:
                self.save_latest(epoch=epoch, epoch_done=False)
            if cfg.max_steps and self.step >= cfg.max_steps:
                self.stop_reason = f"max_steps {cfg.max_steps} reached"
                self.save_latest(epoch=epoch, epoch_done=False)
                return False
        return True

    def _log_window(self, window: dict, epoch: int, step_in_epoch: int, steps_per_epoch: int) -> None:
        elapsed = max(time.perf_counter() - window["t0"], 1e-9)
        n = max(window["n"], 1)
        means = {name: s / n for name, s in window["sums"].items()}
        terms = {name: means[name] for name in LOSS_TERMS}
        sps = window["samples"] / elapsed
        wait = window["wait"] / elapsed
        self.metrics_write("train", step=self.step, epoch=epoch, step_in_epoch=step_in_epoch,
                           samples_seen=self.samples_seen, loss=means["loss"], **terms, samples_per_s=sps,
                           data_wait_fraction=wait, lr=self.optimizer.param_groups[0]["lr"],
                           warmup=epoch < self.cfg.warmup_epochs)
        if self.dist.is_main:
            text = status_text(epoch=epoch, epochs=self.cfg.epochs, step_in_epoch=step_in_epoch,
                               steps_per_epoch=steps_per_epoch, step=self.step, samples_per_s=sps, data_wait=wait,
                               terms=terms, loss=means["loss"])
            self.progress.update(text, final=not self.progress.live)
        window.update(t0=time.perf_counter(), wait=0.0, samples=0, n=0,
                      sums=dict.fromkeys(window["sums"], 0.0))

    def _validate(self, epoch: int, *, select: bool = True) -> None:
        """Rank 0 scores the val split; best.pt is written when ``select`` and the metric improved."""
        cfg = self.cfg
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # validating never shifts the training random stream
            result = run_validation(self.model, self.val_loader, losses_fn=self.losses_fn, cfg=cfg,
                                    device=self.device, autocast=self.autocast, impl=self.kernel)
        metric = selection_metric(cfg, result)
        value = result.get(METRIC_KEYS[metric])
        key = selection_key(metric, result)
        improved = select and is_better(key, self.best.get("key") if self.best["metric"] == metric else None)
        if improved:
            self.best = {"metric": metric, "value": value, "key": key, "step": self.step, "epoch": epoch}
            self.save_best(epoch, result)
        self.metrics_write("val", step=self.step, epoch=epoch, samples_seen=self.samples_seen,
                           selection_metric=metric, improved=improved, seconds=time.perf_counter() - t0, **result)
        shown = {k: v for k, v in result.items() if k.startswith(("val_ap50", "baseline_", "val_auc",
                                                                 "val_retrieval_a2i", "val_loss"))}
        when = f"after epoch {epoch + 1}" if epoch >= 0 else "before training (untrained model, reference only)"
        self.say(f"validation {when}: " + format_terms(shown)
                 + (f" -> best.pt ({metric} {value:.4g})" if improved else ""))

    def _end_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        validate_now = cfg.val_every and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs)
        if validate_now and self.dist.is_main:
            self._validate(epoch)
        dist_util.barrier(self.dist)
        self.save_latest(epoch=epoch, epoch_done=True)


def run_training(shards, out, *, config: TrainConfig, resume: bool = False, log=None) -> dict:
    """Train (this process = one rank under torchrun, or the only process); returns the summary."""
    trainer = Trainer(config, shards, out, resume=resume, log=log)
    try:
        trainer.setup()
        return trainer.fit()
    finally:
        dist_util.shutdown_distributed()
