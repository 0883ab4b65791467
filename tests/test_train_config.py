"""Training config: recipe defaults, YAML + --set layering, one ConfigError listing every problem."""

from __future__ import annotations

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
    assert cfg.spec_mask_fill == "zero"  # fnac.md 1.2


def test_spec_mask_fill_choices_match_the_loaders():
    from avloc.data.augment import SPEC_MASK_FILLS
    from avloc.training.config import SPEC_MASK_FILL_CHOICES

    assert SPEC_MASK_FILL_CHOICES == tuple(SPEC_MASK_FILLS)
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
