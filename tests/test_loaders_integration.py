"""Loaders over shards that `avloc shard` built from synthetic clips (real ffmpeg decode end to end)."""

from __future__ import annotations

import json

import pytest
import torch

from avloc.data import LoaderOptions, build_loader
from loader_fixtures import collect_dali_pipelines  # noqa: F401  (autouse)

BACKENDS = ["torch", pytest.param("dali", marks=pytest.mark.dali)]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    from avloc.tools.sharding import ShardConfig, run_shard
    from avloc.tools.synth import generate_clips

    root = tmp_path_factory.mktemp("integration")
    clips = generate_clips(root / "clips", 6, seed=0, duration=4.0, width=160, height=120)
    run_shard(ShardConfig(clips=clips.clips_dir, out=root / "shards", csv=clips.csv_path, boxes=clips.boxes_path,
                          samples_per_shard=4, workers=1, progress=False))
    return clips, root / "shards"


@pytest.mark.parametrize("backend", BACKENDS)
def test_loader_reads_what_avloc_shard_wrote(sharded, backend):
    clips, shards = sharded
    items = {item["id"]: item for item in clips.items}
    classes = json.loads((shards / "dataset.json").read_text())["classes"]  # the shard tool's class order
    seen = []
    for split in sorted({item["split"] for item in clips.items}):
        loader = build_loader(shards, split, LoaderOptions(mode="eval", batch_size=4, backend=backend, num_workers=1))
        for batch in loader:
            assert batch["image"].shape[1:] == (3, 224, 224) and batch["spec"].shape[1:] == (1, 257, 200)
            assert torch.isfinite(batch["spec"]).all() and batch["spec"].abs().max() < 3  # log-PSD / 12
            for key, label, bbox in zip(batch["key"], batch["label"].tolist(), batch["bbox"]):
                item = items[key]
                assert item["split"] == split and classes[label] == item["label"]
                assert bbox is not None and len(bbox[0]) == 4
            seen.extend(batch["key"])
    assert sorted(seen) == sorted(items)
