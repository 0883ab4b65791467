"""LoaderOptions (checked once, every problem listed) and the shared epoch bookkeeping of the loaders."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

import loader_fixtures as lf
from avloc.data import LoaderOptions, build_loader
from avloc.data.loader import EpochPosition
from avloc.data.options import SPEC_MASK_FILLS
from avloc.data.shards import ShardSet, parse_index
from avloc.errors import ConfigError, InputError


def test_every_problem_is_listed_at_once(tmp_path):
    bad = LoaderOptions(backend="gpu", mode="test", batch_size=0, rank=2, world_size=2, num_workers=-1, seed=-3,
                        image_size=0, shuffle_buffer=0, bad_sample="ignore", spec_mask_fill="mean", device="tpu")
    problems = bad.problems()
    assert len(problems) == 11, problems
    with pytest.raises(ConfigError) as err:
        build_loader(tmp_path, "train", bad)
    assert isinstance(err.value, InputError) and err.value.problems == problems
    for name in ("backend", "mode", "batch_size", "rank 2 is outside world_size 2", "num_workers", "seed",
                 "image_size", "shuffle_buffer", "bad_sample", "spec_mask_fill must be one of zero, silence",
                 "device"):
        assert name in str(err.value)


def test_good_options_have_no_problems():
    import torch

    assert LoaderOptions().problems() == []
    for device in ("cpu", "cuda", "cuda:1", torch.device("cpu"), torch.device("cuda", 0)):
        assert LoaderOptions(device=device).problems() == []


def test_derived_values():
    assert LoaderOptions(mode="train").drops_last and not LoaderOptions(mode="eval").drops_last
    assert not LoaderOptions(mode="train", drop_last=False).drops_last
    assert LoaderOptions(mode="eval", drop_last=True).drops_last
    assert LoaderOptions().mask_fill == 0.0
    assert LoaderOptions(spec_mask_fill="silence").mask_fill == SPEC_MASK_FILLS["silence"] < -16
    with pytest.raises(dataclasses.FrozenInstanceError):
        LoaderOptions().batch_size = 3


def test_options_import_without_torch():
    """A configuration can import the choice lists without paying for torch."""
    code = "import sys, avloc.data, avloc.data.options; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_epoch_position_bookkeeping():
    p = EpochPosition()
    assert p.begin() == 0 and p.resumed_state is None
    p.count(4, skipped=1)
    p.count(3)
    assert (p.batches_done, p.samples_read, p.skipped_reading, p.skipped_this_epoch) == (2, 7, 1, 1)
    p.set_epoch(3)
    assert (p.epoch, p.batches_done) == (3, 0)
    assert p.begin() == 0 and p.skipped_this_epoch == 0  # a new epoch starts counting again
    p.count(4, skipped=2)
    state = {"epoch": 5, "batches_done": 2, "extra": 1}
    p.load(state)
    assert (p.epoch, p.batches_done) == (5, 2)
    assert p.begin() == 2 and p.resumed_state == state
    assert p.skipped_this_epoch == 2 and p.samples_read == 11  # a resumed epoch keeps its counts
    assert p.begin() == 0 and p.resumed_state is None  # a loaded state is taken once
    p.load(state)
    p.set_epoch(6)  # set_epoch drops a loaded state
    assert p.begin() == 0


def test_clean_index_files_get_umask_modes(tmp_path):
    lf.write_shards(tmp_path / "shards", {"train": 8}, samples_per_shard=4,
                    drop_members={lf.clip_key(1): "spec.f16"})
    shards = ShardSet(tmp_path / "shards", "train", bad_sample="skip")
    assert shards.skipped_at_open == 1
    old = os.umask(0o022)
    try:
        paths = shards.write_clean_indexes(tmp_path / "idx")
    finally:
        os.umask(old)
    assert [os.stat(p).st_mode & 0o777 for p in paths] == [0o644, 0o644]
    assert [[s.key for s in parse_index(p)] for p in paths] == [[s.key for s in sh.samples] for sh in shards.shards]
    assert [len(parse_index(p)) for p in paths] == [3, 4]
