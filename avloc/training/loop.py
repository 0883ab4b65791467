"""The FNAC training run: one process or one rank of a torchrun job, over a built ``Trainer``.

The run folder holds config.yaml, metrics.jsonl and checkpoints/. Every ``checkpoint_every``
steps and at every epoch end ``checkpoints/latest.pt`` is written atomically with everything
needed to continue exactly (model, optimiser, grad scaler, step, epoch, samples seen, RNG states
and loader position per rank); after each validation ``checkpoints/best.pt`` when the selection
metric improved. A status line with rate and ETA goes to stderr (avloc.utils.progress).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import torch

from avloc.checkpoint import save_checkpoint
from avloc.audio_controls import parse_controls
from avloc.errors import AvlocError, InputError
from avloc.losses import LOSS_TERMS
from avloc.training import distributed as dist_util
from avloc.training import resume as resume_state
from avloc.training.config import TrainConfig, resume_conflicts, write_config
from avloc.training.logs import MetricsLog, format_terms
from avloc.training.trainer import NonFiniteLoss, Trainer
from avloc.training.validation import METRIC_KEYS, is_better, run_validation, selection_key, selection_metric
from avloc.utils.atomic import remove_stale_temps
from avloc.training.collapse import CollapseMonitor
from avloc.utils.progress import Progress, warn

NO_BEST = {"metric": None, "value": None, "key": None, "step": None, "epoch": None}


class TrainingCollapsed(AvlocError):
    """The embeddings collapsed after the run had learned, and collapse_action is 'stop'."""


def nothing_to_resume(run_dir) -> Optional[str]:
    """Why ``run_dir`` cannot be resumed (no checkpoints/latest.pt), or None."""
    latest = Path(run_dir) / "checkpoints" / "latest.pt"
    if latest.is_file():
        return None
    held = "holds a run without a checkpoint" if (Path(run_dir) / "config.yaml").exists() else "holds no run"
    return (f"--resume: nothing to resume, {latest} does not exist ({run_dir} {held}); the folder is left "
            "untouched: run without --resume into a new --out to start over")


class TrainingRun:
    """A run folder being trained into; make it with ``TrainingRun.start``, then ``fit()``."""

    def __init__(self, trainer: Trainer, run_dir: Path, *, resume: bool, epoch: int, best: dict,
                 loader_state: Optional[dict], metrics: Optional[MetricsLog]):
        self.trainer = trainer
        self.cfg: TrainConfig = trainer.cfg
        self.run_dir = run_dir
        self.latest = run_dir / "checkpoints" / "latest.pt"
        self.resume = resume
        self.epoch = epoch
        self.best = best
        self.loader_state = loader_state  # this rank's position inside ``epoch`` (None = epoch start)
        self.metrics = metrics  # rank 0 only
        self.stop_reason: Optional[str] = None
        self.collapse = CollapseMonitor()

    @classmethod
    def start(cls, trainer: Trainer, run_dir, *, resume: bool = False) -> "TrainingRun":
        """Prepare ``run_dir``: refuse to overwrite a run, or restore its latest.pt (``resume``); write config.yaml."""
        run_dir = Path(run_dir)
        latest = run_dir / "checkpoints" / "latest.pt"
        epoch, best, loader_state = 0, dict(NO_BEST), None
        if resume and latest.is_file():
            ckpt = resume_state.load_training_checkpoint(latest)
            conflicts = resume_conflicts(ckpt.get("config") or {}, trainer.cfg)
            if conflicts:
                raise InputError("cannot resume: the checkpoint was trained with a different config ("
                                 + "; ".join(conflicts) + ")")
            trainer.restore(ckpt)
            best = dict(ckpt.get("best") or best)
            epoch = int(ckpt["epoch"]) + 1 if ckpt["epoch_done"] else int(ckpt["epoch"])
            loader_state = None if ckpt["epoch_done"] else ckpt["loader"][trainer.dist.rank]
            trainer.say(f"resuming from {latest}: step {trainer.step}, epoch {epoch + 1}, "
                        f"{trainer.samples_seen} samples seen")
        elif resume:
            raise InputError(nothing_to_resume(run_dir))
        elif (run_dir / "config.yaml").exists() and trainer.dist.is_main:
            raise InputError(f"{run_dir} already holds a run (config.yaml); pass --resume to continue it "
                             "or choose another --out")
        dist_util.barrier(trainer.dist)
        metrics = None
        if trainer.dist.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            for folder in (run_dir, latest.parent):  # temporaries of a killed writer
                remove_stale_temps(folder)
            write_config(trainer.cfg, run_dir / "config.yaml")
            metrics = MetricsLog(run_dir, trainer.cfg.tensorboard)
            metrics.truncate_after(trainer.step)
        return cls(trainer, run_dir, resume=resume, epoch=epoch, best=best, loader_state=loader_state,
                   metrics=metrics)

    def _remaining_batches(self) -> int:
        loader = self.trainer.loader
        done = self.epoch * len(loader) + int((self.loader_state or {}).get("batches_done", 0))
        remaining = max(self.cfg.epochs * len(loader) - done, 0)
        if self.cfg.max_steps:
            remaining = min(remaining, max(self.cfg.max_steps - self.trainer.step, 0))
        return remaining

    def metrics_write(self, kind: str, **row) -> None:
        if self.metrics is not None:
            self.metrics.write(kind, **row)

    # ------------------------------------------------------------------ checkpoints
    def save_latest(self, *, epoch: int, epoch_done: bool) -> None:
        trainer = self.trainer
        rngs = dist_util.gather_objects(resume_state.capture_rng(), trainer.dist)
        loaders = dist_util.gather_objects(trainer.loader.state_dict(), trainer.dist)
        if trainer.dist.is_main:
            resume_state.save_training_checkpoint(self.latest, **trainer.resumable_state(), epoch=epoch,
                                                  epoch_done=epoch_done, rng_per_rank=rngs, loader_per_rank=loaders,
                                                  best=dict(self.best))

    def save_best(self, epoch: int, result: dict) -> None:
        trainer = self.trainer
        save_checkpoint(self.latest.parent / "best.pt", model_state=trainer.model.state_dict(),
                        model_config=trainer.model_config, config=self.cfg.to_dict(), step=trainer.step, epoch=epoch,
                        selected_on=self.best["metric"], selected_value=self.best["value"],
                        validation={k: v for k, v in result.items() if isinstance(v, (int, float))})

    # ------------------------------------------------------------------ the run
    def describe(self) -> dict:
        cfg, trainer = self.cfg, self.trainer
        return {"device": str(trainer.device), "precision": trainer.precision, "loader": trainer.loader.backend,
                "loader_asked": cfg.loader, "kernel": trainer.kernel, "kernel_asked": cfg.kernel,
                "world_size": trainer.dist.world_size, "dist_backend": trainer.dist.backend,
                "global_batch": cfg.batch_size, "local_batch": trainer.local_batch,
                "global_negatives": bool(cfg.global_negatives and trainer.dist.enabled), "batchnorm": cfg.batchnorm,
                **trainer.loader.options.augmentation(),
                "train_samples": trainer.loader.num_samples,
                "steps_per_epoch": len(trainer.loader), "shards": str(trainer.shards),
                "tensorboard": self.metrics.tb_status if self.metrics is not None else None}

    def _announce(self, info: dict) -> None:
        cfg, trainer = self.cfg, self.trainer
        trainer.say(f"avloc train: device {info['device']}, precision {info['precision']}, loader {info['loader']} "
                    f"(asked {cfg.loader}), kernel {info['kernel']} (asked {cfg.kernel}), "
                    f"{info['world_size']} rank(s){' ' + info['dist_backend'] if trainer.dist.enabled else ''}, "
                    f"batch {cfg.batch_size} = {info['world_size']} x {trainer.local_batch}, "
                    f"global negatives {'on' if info['global_negatives'] else 'off'}, batchnorm {cfg.batchnorm}, "
                    + "".join(f"{k} {v}, " for k, v in trainer.loader.options.augmentation().items())
                    + f"{info['train_samples']} train samples, {info['steps_per_epoch']} steps/epoch, "
                    f"tensorboard {info['tensorboard']}")
        risk = cfg.collapse_risk()
        if risk and trainer.dist.is_main:
            warn(risk)
        if cfg.val_every:
            trainer.say(f"validation every {cfg.val_every} epoch(s) on split '{cfg.val_split}'; best.pt selected on "
                        + (f"val {cfg.select_metric}" if cfg.select_metric != "auto"
                           else "val AP50 when the split has boxes, otherwise audio->image retrieval top-1"))

    def fit(self) -> dict:
        cfg, trainer = self.cfg, self.trainer
        info = self.describe()
        self._announce(info)
        self.metrics_write("start", step=trainer.step, epoch=self.epoch, resumed=self.resume and trainer.step > 0,
                           **info)
        if cfg.val_every and cfg.val_at_start and trainer.step == 0 and trainer.dist.is_main:
            self._validate(-1, select=False)
        dist_util.barrier(trainer.dist)
        # kept on screen (and given a final line) when the run ends
        progress = Progress(self._remaining_batches(), "train", "step", enabled=cfg.progress and trainer.dist.is_main)
        try:
            for epoch in range(self.epoch, cfg.epochs):
                self.epoch = epoch
                trainer.set_lr(cfg.lr_at(epoch))
                trainer.loader.set_epoch(epoch)
                if self.loader_state is not None:
                    trainer.loader.load_state_dict(self.loader_state)
                    self.loader_state = None
                if not self._train_epoch(epoch, progress):
                    break
                self._end_epoch(epoch)
        finally:
            progress.close()
            if self.metrics is not None:
                self.metrics.close()
        summary = {"steps": trainer.step, "samples_seen": trainer.samples_seen, "skipped_steps": trainer.skipped_steps,
                   "epoch": self.epoch + 1, "best": self.best, "stop_reason": self.stop_reason or "finished"}
        if trainer.dist.is_main:
            MetricsLog(self.run_dir, "off").write("end", step=trainer.step, **summary)
            trainer.say(f"done: {trainer.step} steps, {trainer.samples_seen} samples seen, best {self.best['metric']} "
                        f"{self.best['value']} at step {self.best['step']} ({summary['stop_reason']})")
        return summary

    def _step(self, batch: dict, epoch: int, probe: bool = False) -> Optional[dict]:
        try:
            values = self.trainer.train_step(batch, epoch, probe)
        except NonFiniteLoss as exc:
            saved = (f"the last good state is in {self.latest}" if self.latest.is_file()
                     else "no checkpoint was written yet")
            raise NonFiniteLoss(f"{exc}; {saved} (set nonfinite=skip to skip such steps)") from None
        if values is None:
            self.metrics_write("nonfinite", step=self.trainer.step, epoch=epoch, terms=self.trainer.last_skip,
                               skipped_steps=self.trainer.skipped_steps)
        return values

    def _train_epoch(self, epoch: int, progress: Progress) -> bool:
        """Train one epoch (from the loader's position); False when max_steps stopped the run."""
        cfg, trainer = self.cfg, self.trainer
        steps_per_epoch = len(trainer.loader)
        window = Window()
        consumed = int(trainer.loader.state_dict().get("batches_done", 0))
        it = iter(trainer.loader)
        while True:
            t_wait = time.perf_counter()
            try:
                # the loader may draw from torch's global RNG (e.g. DataLoader seeds when its iterator starts);
                # keeping that out of the training stream makes dropout identical in a resumed run
                with torch.random.fork_rng(devices=[]):
                    batch = next(it)
            except StopIteration:
                break
            window.wait += time.perf_counter() - t_wait
            values = self._step(batch, epoch, probe=(trainer.step + 1) % cfg.log_every == 0)
            global_batch = trainer.local_batch * trainer.dist.world_size
            trainer.samples_seen += global_batch
            window.add(global_batch, values)
            consumed += 1
            shown = {}
            if values is not None and (trainer.step % cfg.log_every == 0 or consumed == steps_per_epoch):
                shown = self._log_window(window, epoch, consumed)
            progress.update(1, **shown)
            if values is not None and trainer.last_probe is not None:
                self._check_collapse(values, epoch)
            if values is not None and trainer.step % cfg.checkpoint_every == 0:
                self.save_latest(epoch=epoch, epoch_done=False)
            if cfg.max_steps and trainer.step >= cfg.max_steps:
                self.stop_reason = f"max_steps {cfg.max_steps} reached"
                self.save_latest(epoch=epoch, epoch_done=False)
                return False
        return True

    def _check_collapse(self, values: dict, epoch: int) -> None:
        """Feed the collapse monitor this step's probe; warn once, or stop the run (collapse_action)."""
        trainer, probe = self.trainer, self.trainer.last_probe
        event = self.collapse.update(trainer.step, values["contrastive"], probe["batch_size"], probe["spread"],
                                     probe["grads"])
        self.metrics_write("probe", step=trainer.step, epoch=epoch, contrastive=values["contrastive"],
                           **{k: v for k, v in probe["spread"].items()},
                           **{f"grad_{k}": v for k, v in probe["grads"].items()})
        if event is not None:
            self.metrics_write("collapse", step=trainer.step, epoch=epoch, onset_step=event.onset_step,
                               driving_term=event.driving_term, gradient_norms=event.gradient_norms,
                               message=event.message())
            warn(event.message())
        stop = self.cfg.collapse_action == "stop" and event is not None
        if dist_util.any_rank(stop, trainer.dist, trainer.device):
            self.save_latest(epoch=epoch, epoch_done=False)
            raise TrainingCollapsed((event.message() if event else "training collapsed on another rank")
                                    + f"; stopped (collapse_action=stop), the state is in {self.latest}")

    def _log_window(self, window: "Window", epoch: int, step_in_epoch: int) -> dict:
        """Write the window's metrics row; returns what the status line shows."""
        trainer = self.trainer
        means, sps, wait = window.summary()
        terms = {name: means[name] for name in LOSS_TERMS}
        self.metrics_write("train", step=trainer.step, epoch=epoch, step_in_epoch=step_in_epoch,
                           samples_seen=trainer.samples_seen, loss=means["loss"], **terms, samples_per_s=sps,
                           data_wait_fraction=wait, lr=trainer.optimizer.param_groups[0]["lr"],
                           warmup=epoch < self.cfg.warmup_epochs)
        window.reset()
        return {"epoch": f"{epoch + 1}/{self.cfg.epochs}", "loss": means["loss"], **terms,
                "samples_per_s": sps, "data_wait": f"{100 * wait:.0f}%"}

    def _validate(self, epoch: int, *, select: bool = True) -> None:
        """Rank 0 scores the val split; best.pt is written when ``select`` and the metric improved."""
        cfg, trainer = self.cfg, self.trainer
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # validating never shifts the training random stream
            result = run_validation(trainer.model, trainer.val_loader, device=trainer.device, tau=cfg.tau,
                                    fg_threshold=cfg.fg_threshold, loss_weights=cfg.loss_weights,
                                    upsample=cfg.upsample, autocast=trainer.autocast, impl=trainer.kernel,
                                    audio_controls=parse_controls(cfg.audio_controls))
        metric = selection_metric(cfg.select_metric, result)
        value = result.get(METRIC_KEYS[metric])
        key = selection_key(metric, result)
        improved = select and is_better(key, self.best.get("key") if self.best["metric"] == metric else None)
        if improved:
            self.best = {"metric": metric, "value": value, "key": key, "step": trainer.step, "epoch": epoch}
            self.save_best(epoch, result)
        self.metrics_write("val", step=trainer.step, epoch=epoch, samples_seen=trainer.samples_seen,
                           selection_metric=metric, improved=improved, seconds=time.perf_counter() - t0, **result)
        self._write_curves()
        shown = {k: v for k, v in result.items() if k.endswith("_ap50") or k in ("val_auc", "val_pointing", "val_retrieval_a2i",
                                                                               "val_loss", "val_audio_cos")}
        when = f"after epoch {epoch + 1}" if epoch >= 0 else "before training (untrained model, reference only)"
        trainer.say(f"validation {when}: " + format_terms(shown)
                    + (f" -> best.pt ({metric} {value:.4g})" if improved else ""))
        if result.get("val_uses_sound") is False and epoch >= 0:
            warn(f"validation after epoch {epoch + 1}: {result['val_audio_verdict']}")

    def _write_curves(self) -> None:
        """curves.png after each validation (rank 0); a drawing failure is a warning, never the run's end."""
        if self.metrics is None:
            return
        from avloc.training.curves import write_curves

        try:
            write_curves(self.run_dir)
        except Exception as exc:  # matplotlib/font/disk trouble must not stop training
            from avloc.utils.system import first_line

            warn(f"could not draw {self.run_dir / 'curves.png'}: {first_line(exc)}")

    def _end_epoch(self, epoch: int) -> None:
        cfg = self.cfg
        validate_now = cfg.val_every and ((epoch + 1) % cfg.val_every == 0 or epoch + 1 == cfg.epochs)
        if validate_now and self.trainer.dist.is_main:
            self._validate(epoch)
        dist_util.barrier(self.trainer.dist)
        self.save_latest(epoch=epoch, epoch_done=True)


class Window:
    """Loss sums, samples and data-wait time since the last metrics row."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.t0 = time.perf_counter()
        self.wait = 0.0
        self.samples = 0
        self.n = 0
        self.sums = dict.fromkeys(LOSS_TERMS + ("loss",), 0.0)

    def add(self, samples: int, values: Optional[dict]) -> None:
        self.samples += samples
        if values is not None:
            self.n += 1
            for name in self.sums:
                self.sums[name] += values[name]

    def summary(self) -> tuple:
        """(mean of each term and the loss, samples per second, fraction of the time spent waiting for data)."""
        elapsed = max(time.perf_counter() - self.t0, 1e-9)
        n = max(self.n, 1)
        return {name: s / n for name, s in self.sums.items()}, self.samples / elapsed, self.wait / elapsed


def run_training(shards, out, *, config: TrainConfig, resume: bool = False) -> dict:
    """Train (this process = one rank under torchrun, or the only process); returns the summary."""
    try:
        trainer = Trainer.build(config, shards)
        return TrainingRun.start(trainer, out, resume=resume).fit()
    finally:
        dist_util.shutdown_distributed()
