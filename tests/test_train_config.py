"""Training config: recipe defaults, YAML + --set layering, one ConfigError listing every problem."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from avloc.errors import ConfigError, InputError
from avloc.training.config import TrainConfig, build_config, resume_conflicts, write_config


def test_defaults_are_the_published_recipe():
    cfg = build_config()
    assert (cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.epochs, cfg.warmup_epochs) == (256, 1e-4, 1e-4, 30, 5)
    assert (cfg.fns1_weight, cfg.tns_weight, cfg.fns2_weight) == (100.0, 100.0, 100.0)
    assert (cfg.tau, cfg.dim, cfg.visual_dropout, cfg.audio_dropout) == (0.03, 512, 0.9, 0.0)
    assert (cfg.visual_weights, cfg.seed, cfg.drop_last, cfg.image_size) == ("imagenet", 12345, True, 224)
    assert cfg.val_split == "val" and cfg.fg_threshold == 0.6
    assert cfg.spec_mask_fill == "zero"  # METHOD.md §1.2


def test_spec_mask_fill_choices_match_the_loaders():
    from avloc.data.augment import SPEC_MASK_FILLS
    from avloc.training.config import _CHOICES

    assert _CHOICES["spec_mask_fill"] == tuple(SPEC_MASK_FILLS)
    assert build_config(None, ["spec_mask_fill=silence"]).spec_mask_fill == "silence"
    with pytest.raises(ConfigError, match="spec_mask_fill: 'mean' is not one of zero|silence"):
        build_config(None, ["spec_mask_fill=mean"])


def test_file_then_set_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("lr: 3.0e-4\nbatch_size: 64\nimage_size: 128\n")
    cfg = build_config(f, ["batch_size=32", "lr=1e-3", "global_negatives=true", "visual_weights=none"])
    assert cfg.batch_size == 32 and cfg.lr == pytest.approx(1e-3) and cfg.image_size == 128
    assert cfg.global_negatives is True and cfg.visual_weights == "none"


def test_every_problem_reported_at_once(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("learning_rate: 0.1\nepochs: 3\n")
    with pytest.raises(ConfigError) as info:
        build_config(f, ["batch_size=abc", "loader=fast", "tau=-1", "visual_dropout=1.5", "warmup_epochs=9", "nokey"])
    problems = info.value.problems
    text = str(info.value)
    assert len(problems) == 7, problems
    assert "learning_rate" in text and "did you mean 'lr'" in text
    assert "batch_size: expected an integer" in text
    assert "loader: 'fast' is not one of" in text
    assert "tau: must be > 0" in text
    assert "visual_dropout" in text
    assert "warmup_epochs (9) exceeds epochs (3)" in text
    assert "--set 'nokey': expected key=value" in text
    assert isinstance(info.value, InputError) and info.value.exit_code == 2


def test_unreadable_or_non_mapping_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        build_config(f)
    with pytest.raises(ConfigError, match="cannot read config file"):
        build_config(tmp_path / "missing.yaml")


def test_written_config_round_trips(tmp_path):
    cfg = build_config(None, ["batch_size=48", "lr=2e-4"])
    write_config(cfg, tmp_path / "config.yaml")
    again = build_config(tmp_path / "config.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["batch_size"] == 48


def test_resume_conflicts_name_the_changed_keys():
    saved = TrainConfig().to_dict()
    cfg = build_config(None, ["lr=5e-4", "epochs=40", "log_every=3"])
    conflicts = resume_conflicts(saved, cfg)
    assert len(conflicts) == 1 and conflicts[0].startswith("lr:")


def test_cli_reports_config_errors_in_one_line(tmp_path):
    (tmp_path / "shards").mkdir()
    proc = subprocess.run([sys.executable, "-m", "avloc.cli", "train", "--shards", str(tmp_path / "shards"),
                           "--out", str(tmp_path / "run"), "--set", "batch_size=0", "--set", "kernel=fast"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("avloc: error: invalid config:")
    assert "batch_size" in lines[0] and "kernel" in lines[0]
    assert not (tmp_path / "run").exists()


def test_help_lists_every_key_with_its_default_and_meaning():
    import dataclasses

    from click.testing import CliRunner

    from avloc.commands.train import command

    result = CliRunner().invoke(command, ["--help"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for f in dataclasses.fields(TrainConfig):
        row = [line for line in lines if line.strip().startswith(f"{f.name} = ")]
        assert len(row) == 1, f.name
        default = row[0].split(" = ", 1)[1].split()[0]
        assert build_config(None, [f"{f.name}={default}"]) == TrainConfig(), (f.name, default)  # the shown default
        assert f.metadata["help"].split("(")[0].strip() in row[0]  # and its meaning
    assert "[auto|triton|torch|reference]" in result.output  # choices shown
    assert result.output.rstrip().splitlines()[-1].strip() == "avloc train --shards shards --out runs/scratch --preset from-scratch"


def test_print_config_prints_the_resolved_yaml_without_training(tmp_path):
    from click.testing import CliRunner

    from avloc.commands.train import command

    f = tmp_path / "c.yaml"
    f.write_text("lr: 3.0e-4\nbatch_size: 64\n")
    result = CliRunner().invoke(command, ["--print-config", "--config", str(f), "--set", "batch_size=32",
                                          "--global-negatives", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed == build_config(f, ["batch_size=32", "global_negatives=true"]).to_dict()
    assert printed["batch_size"] == 32 and printed["lr"] == pytest.approx(3e-4) and printed["global_negatives"]
    assert not (tmp_path / "run").exists()
    # what it prints loads back as the same config
    (tmp_path / "printed.yaml").write_text(result.output)
    assert build_config(tmp_path / "printed.yaml") == build_config(f, ["batch_size=32", "global_negatives=true"])


def test_print_config_of_a_run_to_resume_starts_from_its_saved_config(tmp_path):
    from click.testing import CliRunner

    from avloc.commands.train import command

    write_config(build_config(None, ["lr=2e-4", "epochs=7"]), tmp_path / "run" / "config.yaml")
    result = CliRunner().invoke(command, ["--print-config", "--resume", "--out", str(tmp_path / "run"),
                                          "--set", "epochs=9"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.output)
    assert printed["lr"] == pytest.approx(2e-4) and printed["epochs"] == 9


def test_option_and_config_problems_are_listed_together(tmp_path):
    from avloc.commands.train import TrainOptions

    options = TrainOptions(shards=tmp_path / "missing", out=None, nproc=0, overrides=("tau=-1",))
    problems = options.problems()
    assert any("--nproc" in p for p in problems) and any("--shards" in p and "not a directory" in p for p in problems)
    assert "--out is required" in problems and any(p.startswith("tau:") for p in problems)
    with pytest.raises(ConfigError) as info:
        options.checked()
    assert info.value.exit_code == 2 and len(info.value.problems) == 4


def test_choice_lists_match_the_code_that_uses_them():
    from avloc.data import BACKENDS
    from avloc.metrics import UPSAMPLE_MODES
    from avloc.ops.dispatch import IMPLS
    from avloc.training import config
    from avloc.training.validation import METRIC_KEYS
    from avloc.utils.system import DEVICE_CHOICES

    assert config.LOADER_CHOICES == BACKENDS and config.UPSAMPLE_CHOICES == UPSAMPLE_MODES
    assert config.KERNEL_CHOICES is IMPLS and config.DEVICE_CHOICES is DEVICE_CHOICES
    assert config.SELECT_CHOICES == ("auto", *METRIC_KEYS)


def test_written_config_gets_the_umask_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        write_config(build_config(), tmp_path / "run" / "config.yaml")
    finally:
        os.umask(previous)
    assert (tmp_path / "run" / "config.yaml").stat().st_mode & 0o777 == 0o644
    assert not list((tmp_path / "run").glob(".*"))


def test_train_job_carries_every_option_and_key(tmp_path):
    """--nproc ranks read the launcher's job file: every field of the job and of the config survives it."""
    import dataclasses

    from avloc.training.launch import TrainJob

    changed = {"batch_size": 6, "lr": 3e-4, "weight_decay": 0.0, "epochs": 4, "warmup_epochs": 2, "seed": 1,
               "drop_last": False, "tau": 0.05, "fg_threshold": 0.5, "fns1_weight": 1.0, "tns_weight": 2.0,
               "fns2_weight": 3.0, "global_negatives": True, "dim": 64, "visual_dropout": 0.5, "audio_dropout": 0.1,
               "visual_weights": "none", "batchnorm": "frozen", "image_size": 64, "loader": "torch",
               "num_workers": 0, "image_decode": "device", "bad_sample": "skip", "spec_mask_fill": "silence",
               "kernel": "reference",
               "device": "cpu", "precision": "fp32", "val_split": "held", "val_every": 2, "val_batch_size": 8,
               "val_at_start": True, "select_metric": "auc", "upsample": "bilinear", "log_every": 3,
               "checkpoint_every": 5, "nonfinite": "skip", "max_steps": 9, "tensorboard": "off", "progress": False,
               "loss_weight_scaling": "batch", "fnac_ramp_epochs": 2, "audio_controls": "silence",
               "collapse_action": "stop", "visual_stages": 3, "adjacency_grad": False,
               "lr_schedule": "cosine"}
    defaults = TrainConfig()
    assert set(changed) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert all(getattr(defaults, k) != v for k, v in changed.items())
    job = TrainJob(shards=tmp_path / "shards", out=tmp_path / "run", config=build_config(base=changed), resume=True)
    again = TrainJob.from_yaml(job.to_yaml())
    assert again == job and again.config.to_dict() == changed


def test_torchrun_entry_point_takes_the_train_options():
    proc = subprocess.run([sys.executable, "-m", "avloc.training", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and "Usage: avloc.training [OPTIONS]" in proc.stdout and "--shards" in proc.stdout


def test_on_off_choices_survive_yaml_booleans(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("tensorboard: off\n")
    assert build_config(f).tensorboard == "off"
    assert build_config(None, ["tensorboard=on"]).tensorboard == "on"
    with pytest.raises(ConfigError, match="loader: expected a string"):
        build_config(None, ["loader=off"])


def test_batch_scaled_weights_keep_the_recipes_balance_and_the_ramp_raises_them():
    cfg = build_config(None, ["batch_size=16", "loss_weight_scaling=batch", "warmup_epochs=3", "fnac_ramp_epochs=2",
                              "epochs=10"])
    assert cfg.loss_weights == {"fns1": 6.25, "tns": 6.25, "fns2": 6.25}
    assert [cfg.loss_weights_at(e)["tns"] for e in range(6)] == [0.0, 0.0, 0.0, 3.125, 6.25, 6.25]
    assert cfg.collapse_risk() is None


def test_precision_on_cpu_fp16_refused_bf16_only_where_the_cpu_has_it(monkeypatch):
    import torch

    from avloc.training import trainer
    from avloc.utils.system import cpu_has_native_bf16

    with pytest.raises(ConfigError, match="fp16"):
        build_config(None, ["device=cpu", "precision=fp16"])
    assert build_config(None, ["device=cpu", "precision=bf16"]).precision == "bf16"
    cpu = torch.device("cpu")
    assert trainer.resolve_precision("auto", cpu) == "fp32"  # the default keeps fp32 numerics on CPU
    if cpu_has_native_bf16():
        assert trainer.resolve_precision("bf16", cpu) == "bf16"
    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(InputError, match="no native bf16"):
        trainer.resolve_precision("bf16", cpu)


def test_learning_rate_schedules():
    assert [build_config(None, ["epochs=4", "warmup_epochs=1"]).lr_at(e) for e in range(4)] == [1e-4] * 4  # the recipe: constant
    cosine = build_config(None, ["epochs=4", "warmup_epochs=1", "lr=1e-3", "lr_schedule=cosine"])
    got = [cosine.lr_at(e) for e in range(4)]
    assert got[0] == pytest.approx(1e-3) and got == sorted(got, reverse=True)
    assert got[2] == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))  # half way down at the middle epoch
    with pytest.raises(ConfigError, match="lr_schedule"):
        build_config(None, ["lr_schedule=step"])


def test_collapse_risk_is_named_where_the_fnac_terms_can_outweigh_the_contrastive_loss():
    # each adjacency term is at most 2/B; a collapsed model's contrastive loss is 2 ln B
    assert build_config(None, []).collapse_risk() is None  # the recipe: 300 < 256 ln 256
    risk = build_config(None, ["batch_size=16"]).collapse_risk()
    assert risk is not None and "44.4" in risk and "loss_weight_scaling=batch" in risk
    assert build_config(None, ["batch_size=64"]).collapse_risk() is not None  # 300 >= 64 ln 64 = 266
    assert build_config(None, ["batch_size=128"]).collapse_risk() is None


def test_audio_controls_are_checked_with_the_other_keys():
    with pytest.raises(ConfigError) as err:
        build_config(None, ["audio_controls=silence,loud", "collapse_action=panic"])
    assert "audio_controls" in str(err.value) and "collapse_action" in str(err.value)


def test_presets_start_from_named_configs_and_later_sources_win(tmp_path):
    cfg = build_config(None, ["epochs=4"], preset="from-scratch")
    assert cfg.visual_weights == "none" and cfg.visual_dropout == 0.0 and cfg.loss_weight_scaling == "batch"
    assert cfg.visual_stages == 3 and build_config(None, []).visual_stages == 4  # the published model: 4 stages
    assert cfg.adjacency_grad is False and build_config(None, []).adjacency_grad is True  # published: gradient through
    assert cfg.epochs == 4 and cfg.collapse_risk() is None
    assert build_config(None, [], preset="recipe") == build_config(None, [])
    with pytest.raises(ConfigError, match="preset"):
        build_config(None, [], preset="fast")
    out = subprocess.run([sys.executable, "-m", "avloc.cli", "train", "--preset", "from-scratch", "--print-config",
                          "--set", "lr=0.001"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    printed = yaml.safe_load(out.stdout)
    assert printed["visual_weights"] == "none" and printed["lr"] == 0.001 and printed["fnac_ramp_epochs"] == 2


def test_non_utf8_config_and_huge_dim_are_one_line_problems(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_bytes(b"lr: 1e-4\nname: \xff\xfe\x00\x81\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte \d+ cannot be decoded\)"):
        build_config(f)
    with pytest.raises(ConfigError, match=r"dim: must be <= 65536, got 1099511627776"):
        build_config(None, [f"dim={2 ** 40}"])


def test_cli_tensorboard_on_off_reach_the_config():
    from click.testing import CliRunner

    from avloc.commands.train import command

    for value in ("off", "on"):
        result = CliRunner().invoke(command, ["--print-config", "--set", f"tensorboard={value}"])
        assert result.exit_code == 0, result.output
        assert yaml.safe_load(result.output)["tensorboard"] == value
