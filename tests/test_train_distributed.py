"""Distributed training on CPU with real gloo processes.

Parity: 2 ranks x 4 clips with global negatives give, after one step, the same gradients as one
process training on the 8 clips concatenated. The parity runs in float64 (model built under
float64 default dtype, batches cast): in float32 the two sides sum over 4 vs 8 clips in a
different order, which alone moves the largest gradients (|g| ~ 20) by ~1e-4. Dropout is set to 0 and BatchNorm to ``frozen``
(eval-mode BN: running statistics, no batch statistics) because with per-rank batch statistics
a 4-clip BN and an 8-clip BN normalise differently, and torch's SyncBatchNorm has no CPU path;
on GPU ``batchnorm=sync`` is what makes the multi-rank forward equal the single-batch one.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import yaml
import torch.multiprocessing as mp

from loader_fixtures import write_shards

PARITY_SETS = ["batch_size=8", "image_size=32", "visual_weights=none", "dim=32", "visual_dropout=0",
               "batchnorm=frozen", "warmup_epochs=0", "global_negatives=true", "num_workers=0", "loader=torch",
               "val_every=0", "progress=false", "device=cpu"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank: int, world: int, port: int, shards: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    from avloc.training import distributed as dist_util
    from avloc.training.config import build_config
    from avloc.training.trainer import Trainer

    trainer = Trainer.build(build_config(None, PARITY_SETS), shards)
    assert trainer.dist.world_size == world and trainer.dist.backend == "gloo" and trainer.local_batch == 4
    trainer.loader.set_epoch(0)
    batch = next(iter(trainer.loader))
    batch["image"], batch["spec"] = batch["image"].double(), batch["spec"].double()
    values = trainer.train_step(batch, epoch=0)
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters()}
    torch.save({"key": batch["key"], "image": batch["image"], "spec": batch["spec"], "label": batch["label"],
                "bbox": batch["bbox"], "grads": grads, "values": values}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist_util.shutdown_distributed()


def _single_process_grads(batch: dict) -> tuple:
    from avloc.training.config import build_config
    from avloc.training.trainer import Trainer

    cfg = build_config(None, PARITY_SETS + [f"batch_size={len(batch['key'])}"])
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        trainer = Trainer.build(cfg, ".", build_loaders=False)
    finally:
        torch.set_default_dtype(previous)
    values = trainer.train_step(batch, epoch=0)
    return {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters()}, values


def test_two_gloo_ranks_with_global_negatives_match_one_process(tmp_path):
    shards = tmp_path / "shards"
    write_shards(shards, {"train": 16}, samples_per_shard=4)
    out = tmp_path / "ranks"
    out.mkdir()
    assert "WORLD_SIZE" not in os.environ
    mp.spawn(_rank_worker, args=(2, _free_port(), str(shards), str(out)), nprocs=2, join=True)
    r0, r1 = (torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2))

    # each rank read its own clips: full batches, nothing shared
    assert len(r0["key"]) == len(r1["key"]) == 4
    assert not set(r0["key"]) & set(r1["key"])

    full = {"image": torch.cat([r0["image"], r1["image"]]), "spec": torch.cat([r0["spec"], r1["spec"]]),
            "key": r0["key"] + r1["key"], "label": torch.cat([r0["label"], r1["label"]]), "bbox": r0["bbox"] + r1["bbox"]}
    torch.set_num_threads(1)
    grads, values = _single_process_grads(full)
    assert set(grads) == set(r0["grads"])
    worst = 0.0
    for name, g in grads.items():
        # DDP averages the ranks' gradients; both ranks hold the same averaged gradient
        torch.testing.assert_close(r0["grads"][name], r1["grads"][name], rtol=0, atol=1e-12)
        assert r0["grads"][name].dtype == torch.float64
        worst = max(worst, float((r0["grads"][name] - g).abs().max()))
    assert worst < 1e-9, f"max |grad difference| {worst:.3g}"  # well inside the required 1e-5
    # the mean over ranks of each local-rows loss term is the full-batch term
    for term in ("contrastive", "fns1", "tns", "fns2"):
        assert (r0["values"][term] + r1["values"][term]) / 2 == pytest.approx(values[term], rel=1e-9, abs=1e-12)

    # sensitivity: without global negatives (each half on its own) the gradients are clearly different
    half0, _ = _single_process_grads({k: (v[:4] if not isinstance(v, list) else v[:4]) for k, v in full.items()})
    half1, _ = _single_process_grads({k: (v[4:] if not isinstance(v, list) else v[4:]) for k, v in full.items()})
    local_only = max(float(((half0[n] + half1[n]) / 2 - grads[n]).abs().max()) for n in grads)
    assert local_only > 100 * max(worst, 1e-7)


def test_cli_nproc_2_trains_with_torchrun_and_gloo(tmp_path):
    shards = tmp_path / "shards"
    write_shards(shards, {"train": 16, "val": 4}, samples_per_shard=4)
    run_dir = tmp_path / "run"
    # the ranks get the launcher's resolved config: keys from --config, --set and the flags all reach them
    (tmp_path / "c.yaml").write_text("seed: 7\nspec_mask_fill: zero\n")
    cmd = [sys.executable, "-m", "avloc.cli", "train", "--shards", str(shards), "--out", str(run_dir), "--nproc", "2",
           "--global-negatives", "--config", str(tmp_path / "c.yaml")]
    for item in ["batch_size=4", "image_size=32", "visual_weights=none", "dim=32", "num_workers=0", "loader=torch",
                 "epochs=1", "warmup_epochs=0", "log_every=1", "progress=false", "spec_mask_fill=silence"]:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    start = rows[0]
    assert start["world_size"] == 2 and start["dist_backend"] == "gloo" and start["global_negatives"]
    assert start["local_batch"] == 2 and start["steps_per_epoch"] == 4
    assert start["spec_mask_fill"] == "silence"  # reported by rank 0's own loader
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["seed"] == 7
    assert "-m avloc.training.launch" in proc.stderr
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4]
    assert rows[-1]["kind"] == "end" and rows[-1]["samples_seen"] == 16
    assert [r["kind"] for r in rows].count("val") == 1
    latest = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert latest["world_size"] == 2 and len(latest["rng"]) == 2 and len(latest["loader"]) == 2
    assert latest["loader"][0]["rank"] == 0 and latest["loader"][1]["rank"] == 1
