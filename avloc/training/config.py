"""The training configuration: defaults = the published FNAC recipe (fnac.md section 4).

Sources, later ones win: the dataclass defaults, a YAML file (a flat mapping of field names),
then ``--set key=value`` overrides (values parsed as YAML scalars, then coerced to the field's
type). Every problem found (unknown keys, wrong types, bad choices, out-of-range values) is
collected and raised as ONE ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import yaml

from avloc.errors import ConfigError, InputError

LOADER_CHOICES = ("auto", "dali", "torch", "folder")
KERNEL_CHOICES = ("auto", "triton", "torch", "reference")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
BATCHNORM_CHOICES = ("local", "sync", "frozen")
NONFINITE_CHOICES = ("stop", "skip")
SELECT_CHOICES = ("auto", "ap50", "auc", "retrieval", "loss")
UPSAMPLE_CHOICES = ("bicubic", "bilinear")
TENSORBOARD_CHOICES = ("auto", "on", "off")
BAD_SAMPLE_CHOICES = ("error", "skip")
SPEC_MASK_FILL_CHOICES = ("zero", "silence")  # the keys of avloc.data.augment.SPEC_MASK_FILLS (kept torch-free)

# Fields that may differ between a run and its --resume (they do not change what is learned).
RESUME_MUTABLE = frozenset({"epochs", "log_every", "checkpoint_every", "num_workers", "progress", "tensorboard",
                            "max_steps", "val_batch_size", "nonfinite", "device", "loader", "kernel",
                            "val_at_start"})


@dataclasses.dataclass
class TrainConfig:
    # optimisation (fnac.md section 4)
    batch_size: int = 256  # global batch: split evenly over the ranks when distributed
    lr: float = 1e-4
    weight_decay: float = 1e-4
    epochs: int = 30
    warmup_epochs: int = 5  # contrastive loss only during these first epochs
    seed: int = 12345
    drop_last: bool = True
    # loss (fnac.md section 3)
    tau: float = 0.03
    fg_threshold: float = 0.6
    fns1_weight: float = 100.0
    tns_weight: float = 100.0
    fns2_weight: float = 100.0
    global_negatives: bool = False  # all-gather embeddings so negatives span the global batch
    # model (fnac.md section 2)
    dim: int = 512
    visual_dropout: float = 0.9
    audio_dropout: float = 0.0
    visual_weights: str = "imagenet"  # none | imagenet | path to a resnet18 state dict
    batchnorm: str = "local"  # local (per-rank batch stats) | sync (SyncBatchNorm, CUDA) | frozen (eval-mode BN)
    # data
    image_size: int = 224
    loader: str = "auto"
    num_workers: int = 2
    bad_sample: str = "error"
    spec_mask_fill: str = "zero"  # SpecAugment mask value: zero (the recipe) | silence (log of the 1e-7 floor)
    # runtime
    kernel: str = "auto"
    device: str = "auto"
    precision: str = "auto"  # auto = bf16 autocast on CUDA, fp32 on CPU
    # validation and selection
    val_split: str = "val"
    val_every: int = 1  # epochs between validations; 0 = no validation (then no best.pt)
    val_batch_size: int = 64
    val_at_start: bool = False  # also score the untrained model (a reference row, never selected)
    select_metric: str = "auto"  # auto = ap50 when the val split has boxes, else retrieval
    upsample: str = "bicubic"
    # bookkeeping
    log_every: int = 10  # optimiser steps between metrics.jsonl rows
    checkpoint_every: int = 200  # optimiser steps between latest.pt writes (also at every epoch end)
    nonfinite: str = "stop"  # stop | skip (skip the optimiser step, counted and logged)
    max_steps: int = 0  # stop after this many optimiser steps in total (0 = no limit)
    tensorboard: str = "auto"  # auto = only if tensorboard is installed
    progress: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def loss_weights(self) -> dict:
        return {"fns1": self.fns1_weight, "tns": self.tns_weight, "fns2": self.fns2_weight}


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_CHOICES = {
    "loader": LOADER_CHOICES, "kernel": KERNEL_CHOICES, "device": DEVICE_CHOICES, "precision": PRECISION_CHOICES,
    "batchnorm": BATCHNORM_CHOICES, "nonfinite": NONFINITE_CHOICES, "select_metric": SELECT_CHOICES,
    "upsample": UPSAMPLE_CHOICES, "tensorboard": TENSORBOARD_CHOICES, "bad_sample": BAD_SAMPLE_CHOICES,
    "spec_mask_fill": SPEC_MASK_FILL_CHOICES,
}
_POSITIVE = ("batch_size", "lr", "epochs", "tau", "dim", "image_size", "val_batch_size", "log_every",
             "checkpoint_every")
_NON_NEGATIVE = ("weight_decay", "warmup_epochs", "fns1_weight", "tns_weight", "fns2_weight", "num_workers",
                 "val_every", "max_steps", "seed")


def _coerce(name: str, value: Any, problems: list) -> Any:
    kind = FIELDS[name].type
    kind = {"int": int, "float": float, "bool": bool, "str": str}.get(kind, kind)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        problems.append(f"{name}: expected true/false, got {value!r}")
        return None
    if kind is int:
        if isinstance(value, bool):
            problems.append(f"{name}: expected an integer, got {value!r}")
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        problems.append(f"{name}: expected an integer, got {value!r}")
        return None
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML 1.1 reads "1e-4" as a string
            except ValueError:
                pass
        problems.append(f"{name}: expected a number, got {value!r}")
        return None
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    problems.append(f"{name}: expected a string, got {value!r}")
    return None


# Common names for recipe settings that are spelled differently here.
_ALIASES = {"learning_rate": "lr", "wd": "weight_decay", "bs": "batch_size", "batch": "batch_size",
            "temperature": "tau", "warmup": "warmup_epochs", "num_epochs": "epochs", "workers": "num_workers"}


def _unknown(name: str) -> str:
    close = [_ALIASES[name]] if name in _ALIASES else difflib.get_close_matches(name, FIELDS, n=1)
    return f"unknown key {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def parse_set_options(items) -> tuple:
    """["key=value", ...] -> ({key: parsed value}, [problems])."""
    values, problems = {}, []
    for item in items or ():
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"--set {item!r}: expected key=value")
            continue
        try:
            values[key] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            values[key] = raw
    return values, problems


def read_config_file(path) -> tuple:
    """A YAML file -> ({key: value}, [problems])."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        return {}, [f"cannot read config file {path}: {exc.strerror or exc}"]
    except yaml.YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        return {}, [f"config file {path} is not valid YAML: {first}"]
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        return {}, [f"config file {path} must hold a mapping of keys to values, not {type(data).__name__}"]
    return data, []


def validate(cfg: TrainConfig) -> list:
    problems = []
    for name, choices in _CHOICES.items():
        if getattr(cfg, name) not in choices:
            problems.append(f"{name}: {getattr(cfg, name)!r} is not one of {'|'.join(choices)}")
    for name in _POSITIVE:
        if not getattr(cfg, name) > 0:
            problems.append(f"{name}: must be > 0, got {getattr(cfg, name)}")
    for name in _NON_NEGATIVE:
        if getattr(cfg, name) < 0:
            problems.append(f"{name}: must be >= 0, got {getattr(cfg, name)}")
    for name in ("visual_dropout", "audio_dropout"):
        if not 0.0 <= getattr(cfg, name) < 1.0:
            problems.append(f"{name}: must be in [0, 1), got {getattr(cfg, name)}")
    if not 0.0 < cfg.fg_threshold < 1.0:
        problems.append(f"fg_threshold: must be in (0, 1), got {cfg.fg_threshold}")
    if cfg.warmup_epochs > cfg.epochs:
        problems.append(f"warmup_epochs ({cfg.warmup_epochs}) exceeds epochs ({cfg.epochs})")
    if cfg.image_size < 32:
        problems.append(f"image_size: must be >= 32 (ResNet-18 downsamples by 32), got {cfg.image_size}")
    if cfg.batch_size < 2:
        problems.append(f"batch_size: contrastive learning needs >= 2 clips per batch, got {cfg.batch_size}")
    if cfg.device == "cpu" and cfg.precision in ("bf16", "fp16"):
        problems.append(f"precision: {cfg.precision} autocast is for CUDA; use fp32 or auto on cpu")
    if cfg.device == "cpu" and cfg.batchnorm == "sync":
        problems.append("batchnorm: sync needs CUDA (torch's SyncBatchNorm has no CPU path); use local or frozen")
    if cfg.device == "cpu" and cfg.kernel == "triton":
        problems.append("kernel: triton needs CUDA; use auto, torch or reference on cpu")
    return problems


def build_config(file: Optional[str] = None, overrides=(), base: Optional[dict] = None) -> TrainConfig:
    """Defaults <- ``base`` (e.g. a saved run's config) <- YAML ``file`` <- ``--set`` overrides."""
    problems: list = []
    values: dict = {}
    if base:
        values.update(base)
    if file is not None:
        data, p = read_config_file(file)
        problems += p
        values.update(data)
    sets, p = parse_set_options(overrides)
    problems += p
    values.update(sets)
    kwargs = {}
    for name, value in values.items():
        if name not in FIELDS:
            problems.append(_unknown(str(name)))
            continue
        coerced = _coerce(name, value, problems)
        if coerced is not None:
            kwargs[name] = coerced
    cfg = TrainConfig(**kwargs)  # a value that failed to parse keeps its default, so checks below stay meaningful
    problems += validate(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


def config_yaml(cfg: TrainConfig) -> str:
    header = "# avloc train: resolved configuration (load again with --config)\n"
    return header + yaml.safe_dump(cfg.to_dict(), sort_keys=True)


def write_config(cfg: TrainConfig, path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(config_yaml(cfg))
    os.replace(tmp, path)


def resume_conflicts(saved: dict, cfg: TrainConfig) -> list:
    """Fields whose value differs between the checkpoint's config and this one (and may not)."""
    current = cfg.to_dict()
    out = []
    for name, value in sorted(current.items()):
        if name in RESUME_MUTABLE:
            continue
        if name not in saved:
            out.append(f"{name} (absent from the checkpoint)")
        elif saved[name] != value:
            out.append(f"{name}: checkpoint {saved[name]!r} vs now {value!r}")
    return out


def load_saved_config(path) -> dict:
    data, problems = read_config_file(path)
    if problems:
        raise InputError(problems[0])
    return data
