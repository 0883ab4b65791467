"""The training configuration: defaults = the published FNAC recipe (METHOD.md §4).

Sources, later ones win: the dataclass defaults, a YAML file (a flat mapping of field names),
then ``--set key=value`` overrides (values parsed as YAML scalars, then coerced to the field's
type). Every problem found (unknown keys, wrong types, bad choices, out-of-range values) is
collected and raised as ONE ``ConfigError``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from pathlib import Path
from typing import Any, Optional

import yaml

from avloc.audio_controls import parse_controls
from avloc.data.options import BACKENDS as LOADER_CHOICES
from avloc.data.options import BAD_SAMPLE_POLICIES as BAD_SAMPLE_CHOICES
from avloc.data.options import IMAGE_DECODES as IMAGE_DECODE_CHOICES
from avloc.data.options import SPEC_MASK_FILLS
from avloc.errors import ConfigError
from avloc.model_config import MAX_DIM, VISUAL_STAGES
from avloc.ops import IMPLS as KERNEL_CHOICES
from avloc.utils.atomic import atomic_write_text
from avloc.utils.system import DEVICE_CHOICES

# Kept torch-free (``avloc train --help`` must not import torch); tests pin them to the loaders' and metrics' lists.
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
BATCHNORM_CHOICES = ("local", "sync", "frozen")
NONFINITE_CHOICES = ("stop", "skip")
SELECT_CHOICES = ("auto", "ap50", "auc", "retrieval", "loss")
UPSAMPLE_CHOICES = ("bicubic", "bilinear")  # avloc.metrics.UPSAMPLE_MODES
TENSORBOARD_CHOICES = ("auto", "on", "off")
LOSS_WEIGHT_SCALING_CHOICES = ("fixed", "batch")
COLLAPSE_ACTIONS = ("warn", "stop")
LR_SCHEDULES = ("constant", "cosine")
LR_FINAL_FRACTION = 0.01  # cosine: the floor lr x this is approached at the run's end (8 epochs: last is 0.05 lr)
RECIPE_BATCH = 256  # the published recipe's batch (METHOD.md §4): its loss weights are balanced for it

# Fields that may differ between a run and its --resume (they do not change what is learned).
RESUME_MUTABLE = frozenset({"epochs", "log_every", "checkpoint_every", "num_workers", "progress", "tensorboard",
                            "max_steps", "val_batch_size", "nonfinite", "device", "loader", "kernel",
                            "val_at_start", "image_decode"})


def _key(default, meaning: str):
    """A config key: its default and one line of meaning (shown by ``avloc train --help``)."""
    return dataclasses.field(default=default, metadata={"help": meaning})


@dataclasses.dataclass
class TrainConfig:
    # optimisation (METHOD.md §4)
    batch_size: int = _key(256, "global batch: split evenly over the ranks when distributed")
    lr: float = _key(1e-4, "Adam learning rate")
    lr_schedule: str = _key("constant", "constant (the recipe) | cosine: set per epoch, half a cosine from lr "
                                        "towards lr/100 at the run's end")
    weight_decay: float = _key(1e-4, "Adam weight decay")
    epochs: int = _key(30, "passes over the train split")
    warmup_epochs: int = _key(5, "contrastive loss only during these first epochs")
    seed: int = _key(12345, "seed of the initial weights, data order and augmentation")
    drop_last: bool = _key(True, "drop the last incomplete batch of each epoch")
    # loss (METHOD.md §3)
    tau: float = _key(0.03, "temperature of every similarity")
    fg_threshold: float = _key(0.6, "foreground mask threshold on the min-max normalised map")
    fns1_weight: float = _key(100.0, "weight of the FNS1 term (audio adjacency vs pair logits)")
    tns_weight: float = _key(100.0, "weight of the TNS term (audio adjacency vs foreground adjacency)")
    fns2_weight: float = _key(100.0, "weight of the FNS2 term (image adjacency vs pair logits)")
    loss_weight_scaling: str = _key("fixed", "fixed: the FNAC weights as given | batch: times batch_size / 256 "
                                             "(the recipe's batch), keeping the recipe's balance with the "
                                             "contrastive loss at any batch size")
    adjacency_grad: bool = _key(True, "gradients flow through the audio and mean-image adjacencies (the published "
                                      "method); false makes them fixed targets for the pair logits and the "
                                      "foreground adjacency, so no term can shrink by pulling embeddings together")
    fnac_ramp_epochs: int = _key(0, "after the warm-up, raise the FNAC weights linearly to full over these "
                                    "epochs (0 = at once)")
    global_negatives: bool = _key(False, "all-gather embeddings so negatives span the global batch")
    # model (METHOD.md §2)
    dim: int = _key(512, "embedding size")
    visual_dropout: float = _key(0.9, "dropout on the visual feature map")
    audio_dropout: float = _key(0.0, "dropout on the pooled audio feature")
    visual_weights: str = _key("imagenet", "none | imagenet | path to a resnet18 state dict")
    visual_stages: int = _key(4, "last ResNet stage of the visual trunk: 4 (published, stride 32) | 3 (stride 16, "
                                 "smaller receptive field per map cell)")
    batchnorm: str = _key("local", "local (per-rank batch stats) | sync (SyncBatchNorm, CUDA) | frozen (eval-mode BN)")
    # data
    image_size: int = _key(224, "square frame size fed to the model")
    loader: str = _key("auto", "input pipeline (auto = dali when it imports, else torch)")
    num_workers: int = _key(2, "loader worker processes per rank")
    image_decode: str = _key("worker", "torch loader: decode frames in the workers (PIL), or each batch on the "
                                       "device (torchvision nvJPEG on CUDA; no DALI needed)")
    bad_sample: str = _key("error", "a sample that fails to decode: stop the run or skip it")
    spec_mask_fill: str = _key("zero", "SpecAugment mask value: zero (the recipe) | silence (log of the 1e-7 floor)")
    # runtime
    kernel: str = _key("auto", "loss kernels (auto = triton on CUDA, else torch)")
    device: str = _key("auto", "auto = CUDA when available, else cpu")
    precision: str = _key("auto", "auto = bf16 autocast on CUDA, fp32 on CPU; bf16 also on a CPU with native bf16 "
                                  "(AVX512-BF16/AMX: about 2x faster steps)")
    # validation and selection
    val_split: str = _key("val", "shard split validated on")
    val_every: int = _key(1, "epochs between validations; 0 = no validation (then no best.pt)")
    val_batch_size: int = _key(64, "validation batch size")
    val_at_start: bool = _key(False, "also score the untrained model (a reference row, never selected)")
    select_metric: str = _key("auto", "best.pt metric (auto = ap50 when the val split has boxes, else retrieval)")
    upsample: str = _key("bicubic", "heat map upsampling for validation AP50/AUC")
    audio_controls: str = _key("silence,shuffled", "validation rows with the audio replaced: silence, shuffled "
                                                   "(another class's audio), or none")
    collapse_action: str = _key("warn", "when the embeddings collapse after learning: warn, or stop the run")
    # bookkeeping
    log_every: int = _key(10, "optimiser steps between metrics.jsonl rows")
    checkpoint_every: int = _key(200, "optimiser steps between latest.pt writes (also at every epoch end)")
    nonfinite: str = _key("stop", "a nan/inf loss: stop the run, or skip the optimiser step (counted and logged)")
    max_steps: int = _key(0, "stop after this many optimiser steps in total (0 = no limit)")
    tensorboard: str = _key("auto", "auto = only if tensorboard is installed")
    progress: bool = _key(True, "status line with rate and ETA on stderr")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def loss_weights(self) -> dict:
        """The FNAC weights at full strength (after scaling with the batch when asked)."""
        scale = self.batch_size / RECIPE_BATCH if self.loss_weight_scaling == "batch" else 1.0
        return {"fns1": self.fns1_weight * scale, "tns": self.tns_weight * scale, "fns2": self.fns2_weight * scale}

    def lr_at(self, epoch: int) -> float:
        """The learning rate in force during ``epoch``."""
        if self.lr_schedule == "constant":
            return self.lr
        cosine = 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))
        return self.lr * (LR_FINAL_FRACTION + (1.0 - LR_FINAL_FRACTION) * cosine)

    def loss_weights_at(self, epoch: int) -> dict:
        """The FNAC weights in force during ``epoch`` (0 during the warm-up, ramped after it)."""
        if epoch < self.warmup_epochs:
            return dict.fromkeys(self.loss_weights, 0.0)
        ramp = 1.0 if not self.fnac_ramp_epochs else min(1.0, (epoch - self.warmup_epochs + 1) / self.fnac_ramp_epochs)
        return {name: weight * ramp for name, weight in self.loss_weights.items()}

    def collapse_risk(self) -> Optional[str]:
        """A warning when the FNAC terms can outweigh the contrastive loss at this batch size.

        Each adjacency term is a mean of |p - q| over B x B entries of two row-softmaxes, so it is at
        most 2 / B, while a collapsed model's contrastive loss is 2 ln B. When the weights' sum reaches
        B ln B, identical embeddings (contrastive at chance, every adjacency term 0) can cost less than
        a model that tells clips apart: the run may collapse (METHOD.md §3).
        """
        total = sum(self.loss_weights.values())
        b = self.batch_size
        if total <= 0 or total < b * math.log(b):
            return None
        return (f"the FNAC weights sum to {total:g}, at least B ln B = {b * math.log(b):.1f} for batch {b}: the "
                f"adjacency terms can outweigh the contrastive loss and the run may collapse; the recipe's "
                f"balance at this batch is loss_weight_scaling=batch (weights x {b}/{RECIPE_BATCH})")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_CHOICES = {
    "loader": LOADER_CHOICES, "kernel": KERNEL_CHOICES, "device": DEVICE_CHOICES, "precision": PRECISION_CHOICES,
    "batchnorm": BATCHNORM_CHOICES, "nonfinite": NONFINITE_CHOICES, "select_metric": SELECT_CHOICES,
    "upsample": UPSAMPLE_CHOICES, "tensorboard": TENSORBOARD_CHOICES, "bad_sample": BAD_SAMPLE_CHOICES,
    "image_decode": IMAGE_DECODE_CHOICES,
    "spec_mask_fill": tuple(SPEC_MASK_FILLS), "loss_weight_scaling": LOSS_WEIGHT_SCALING_CHOICES,
    "collapse_action": COLLAPSE_ACTIONS, "lr_schedule": LR_SCHEDULES,
}
_POSITIVE = ("batch_size", "lr", "epochs", "tau", "dim", "image_size", "val_batch_size", "log_every",
             "checkpoint_every")
_NON_NEGATIVE = ("weight_decay", "warmup_epochs", "fnac_ramp_epochs", "fns1_weight", "tns_weight", "fns2_weight", "num_workers",
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
    if isinstance(value, bool) and {"on", "off"} <= set(_CHOICES.get(name, ())):
        return "on" if value else "off"  # YAML 1.1 reads a bare on/off as true/false
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
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        return {}, [f"cannot read config file {path}: {exc.strerror or exc}"]
    except UnicodeDecodeError as exc:
        return {}, [f"config file {path} is not UTF-8 text (byte {exc.start} cannot be decoded)"]
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
    if cfg.visual_stages not in VISUAL_STAGES:
        problems.append(f"visual_stages: {cfg.visual_stages!r} is not one of {'|'.join(map(str, VISUAL_STAGES))}")
    if not 0.0 < cfg.fg_threshold < 1.0:
        problems.append(f"fg_threshold: must be in (0, 1), got {cfg.fg_threshold}")
    if cfg.dim > MAX_DIM:
        problems.append(f"dim: must be <= {MAX_DIM}, got {cfg.dim}")
    if cfg.warmup_epochs > cfg.epochs:
        problems.append(f"warmup_epochs ({cfg.warmup_epochs}) exceeds epochs ({cfg.epochs})")
    if cfg.image_size < 32:
        problems.append(f"image_size: must be >= 32 (ResNet-18 downsamples by 32), got {cfg.image_size}")
    if cfg.batch_size < 2:
        problems.append(f"batch_size: contrastive learning needs >= 2 clips per batch, got {cfg.batch_size}")
    try:
        parse_controls(cfg.audio_controls)
    except ValueError as exc:
        problems.append(f"audio_controls: {exc}")
    if cfg.device == "cpu" and cfg.precision == "fp16":
        problems.append("precision: fp16 autocast is for CUDA; use fp32, auto, or bf16 (CPUs with native bf16)")
    if cfg.device == "cpu" and cfg.batchnorm == "sync":
        problems.append("batchnorm: sync needs CUDA (torch's SyncBatchNorm has no CPU path); use local or frozen")
    if cfg.device == "cpu" and cfg.kernel == "triton":
        problems.append("kernel: triton needs CUDA; use auto, torch or reference on cpu")
    return problems


# Named starting points: the dataclass defaults are the published recipe (ImageNet visual weights, real
# data). "from-scratch" is the measured recipe for training both encoders from random weights on a
# CPU (the demo and the quality benchmark use it): no ImageNet weights hence no visual dropout,
# silence-filled SpecAugment masks, small frames (160) and batch, 16 epochs (on the current synthetic
# scenes both seeds passed val AP50 0.9 by epoch 8; on an earlier version one seed only started localising
# at epoch 9, and 16 epochs fit the 20-minute CPU budget), the FNAC weights scaled to
# the batch and ramped in after the warm-up, and a visual trunk that stops after layer3 (stride 16: a
# 10x10 map at 160 whose cells see less of the frame; with the full trunk, some seeds matched the audio
# through a scene-summarising border cell and never localised), and the adjacencies as fixed targets
# (adjacency_grad false: with the gradient through them, the terms pulled the audio embeddings together
# and the runs declined once the terms were at full weight) (benchmarks/results/train-ablation-cpu.md,
# train-quality-cpu.md).
PRESETS = {
    "recipe": {},
    "from-scratch": {"visual_weights": "none", "visual_dropout": 0.0, "spec_mask_fill": "silence", "image_size": 160,
                     "batch_size": 16, "lr": 3e-4, "epochs": 16, "warmup_epochs": 3, "fnac_ramp_epochs": 2,
                     "loss_weight_scaling": "batch", "visual_stages": 3, "adjacency_grad": False},
}


def from_scratch_precision() -> str:
    """The precision to train the ``from-scratch`` preset with here: bf16 autocast where the CPU computes
    bf16 natively (about twice the fp32 step rate, and in the quality runs on this synthetic set every
    bf16 run reached val AP50 0.8 against two of four in fp32: benchmarks/results/train-quality-cpu.md),
    else "auto" (fp32 on CPU, bf16 on CUDA). Not in the preset itself: bf16 on a CPU without it is
    refused."""
    import torch

    from avloc.utils.system import cpu_has_native_bf16

    if torch.cuda.is_available() or not cpu_has_native_bf16():
        return "auto"
    return "bf16"


def build_config(file: Optional[str] = None, overrides=(), base: Optional[dict] = None,
                 preset: Optional[str] = None) -> TrainConfig:
    """Defaults <- ``preset`` <- ``base`` (e.g. a saved run's config) <- YAML ``file`` <- ``--set`` overrides."""
    problems: list = []
    values: dict = {}
    if preset is not None:
        if preset in PRESETS:
            values.update(PRESETS[preset])
        else:
            problems.append(f"preset: {preset!r} is not one of {'|'.join(PRESETS)}")
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
    atomic_write_text(path, config_yaml(cfg))


def _yaml_scalar(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def config_reference() -> list:
    """One line per config key: ``name = default  meaning [choices]`` (for ``avloc train --help``)."""
    rows = []
    for f in dataclasses.fields(TrainConfig):
        meaning = f.metadata["help"]
        if f.name in _CHOICES and "|" not in meaning:
            meaning += f" [{'|'.join(_CHOICES[f.name])}]"
        rows.append((f"{f.name} = {_yaml_scalar(f.default)}", meaning))
    width = max(len(left) for left, _ in rows)
    return [f"{left:<{width}}  {meaning}" for left, meaning in rows]


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

