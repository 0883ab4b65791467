"""The DALI pipelines: parity with the torch loader, read plan, bad JPEGs, GPU decode."""

from __future__ import annotations

import pytest
import torch

import loader_fixtures as lf
from loader_fixtures import collect_dali_pipelines  # noqa: F401  (autouse)
from avloc.data import LoaderOptions, build_loader
from avloc.data.shards import ShardSet, plan_epoch
from avloc.errors import InputError

pytestmark = pytest.mark.dali
torch.set_num_threads(1)

# Eval-mode frames: PIL (torch loader) and DALI both resize bicubically with antialiasing, but
# with different filter support rounding, edge handling and uint8 rounding. Measured on the
# fixture's noise frames (the worst case: every pixel is an edge) at 341x256 -> 224x224
# (a real shard's size, downscaling) and 96x72 -> 224x224 (upscaling): max |diff| <= 8 of 255
# grey levels on single pixels, mean |diff| < 0.5 of 255. Asserted in 255-scale pixel units.
PARITY_MAX_LEVELS = 8.0
PARITY_MEAN_LEVELS = 0.5
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def keys_of(batches):
    return [k for b in batches for k in b["key"]]


@pytest.mark.parametrize("size", [(341, 256), (96, 72)])
def test_eval_parity_dali_cpu_vs_torch(tmp_path, size):
    lf.write_shards(tmp_path, {"val": 13}, samples_per_shard=5, width=size[0], height=size[1])
    dali = list(build_loader(tmp_path, "val", LoaderOptions(mode="eval", batch_size=4, backend="dali", num_workers=1)))
    ref = list(build_loader(tmp_path, "val", LoaderOptions(mode="eval", batch_size=4, backend="torch", num_workers=0)))
    assert [b["key"] for b in dali] == [b["key"] for b in ref] and len(keys_of(ref)) == 13
    levels = []
    for d, r in zip(dali, ref):
        assert torch.equal(d["spec"], r["spec"])
        assert torch.equal(d["label"], r["label"]) and d["bbox"] == r["bbox"]
        levels.append((d["image"] - r["image"]).abs() * _STD * 255.0)
    levels = torch.cat(levels)
    print(f"parity {size}: max {levels.max():.2f} mean {levels.mean():.3f} levels of 255")
    assert levels.max() <= PARITY_MAX_LEVELS and levels.mean() <= PARITY_MEAN_LEVELS


def test_dali_and_torch_put_the_same_samples_on_each_rank(tmp_path):
    lf.write_shards(tmp_path, {"train": 30}, samples_per_shard=7)
    for epoch in (0, 3):
        for rank in range(2):
            sets = []
            for backend in ("dali", "torch"):
                loader = build_loader(tmp_path, "train", LoaderOptions(mode="train", batch_size=5, backend=backend,
                                                                       rank=rank, world_size=2, num_workers=1,
                                                                       drop_last=False))
                loader.set_epoch(epoch)
                sets.append(sorted(keys_of(loader)))
            assert sets[0] == sets[1] and len(sets[0]) == 15


def test_reader_sizes_the_epoch(tmp_path):
    from avloc.pipelines.graph import READER_NAME
    from avloc.pipelines.iterator import DaliShardLoader

    lf.write_shards(tmp_path, {"train": 21}, samples_per_shard=8)
    shards = ShardSet(tmp_path, "train")
    loader = DaliShardLoader(shards, LoaderOptions(mode="train", batch_size=4, rank=1, world_size=2, num_workers=1))
    pipe, plan = loader.build_pipeline()
    assert pipe.reader_meta(READER_NAME)["epoch_size"] == 21
    assert plan == plan_epoch(shards, epoch=0, seed=12345, rank=1, world_size=2, batch_size=4, shuffle=True,
                              drop_last=True)
    assert (plan.start, plan.stop, plan.num_batches) == (10, 21, 2)


def test_dali_corrupt_jpeg_is_named(tmp_path):
    bad = lf.clip_key(6)
    lf.write_shards(tmp_path, {"train": 10}, samples_per_shard=5, corrupt_jpeg={bad})
    for policy, extra in (("error", ""), ("skip", "backend='torch'")):
        loader = build_loader(tmp_path, "train", LoaderOptions(mode="eval", batch_size=2, backend="dali", num_workers=1,
                                                               bad_sample=policy))
        with pytest.raises(InputError, match=rf"bad sample '{bad}' in shard train-000001\.tar.*{extra}") as err:
            list(loader)
        assert "\n" not in str(err.value)


def test_train_pipeline_crops_differ_from_eval_resize(tmp_path):
    """Train crops come from a 246-short-side resize: not the eval frame, and different per epoch."""
    lf.write_shards(tmp_path, {"train": 8}, samples_per_shard=8, width=341, height=256)
    train = build_loader(tmp_path, "train", LoaderOptions(mode="train", batch_size=8, backend="dali", num_workers=1))
    a = next(iter(train))
    train.set_epoch(1)
    b = next(iter(train))
    by_key_a = dict(zip(a["key"], a["image"]))
    by_key_b = dict(zip(b["key"], b["image"]))
    assert set(by_key_a) == set(by_key_b)
    assert sum(not torch.equal(by_key_a[k], by_key_b[k]) for k in by_key_a) >= 6


@pytest.mark.gpu
def test_gpu_decode_matches_cpu_pipeline(tmp_path):
    lf.write_shards(tmp_path, {"val": 12}, samples_per_shard=6, width=341, height=256)
    gpu = list(build_loader(tmp_path, "val", LoaderOptions(mode="eval", batch_size=4, backend="dali", device="cuda")))
    cpu = list(build_loader(tmp_path, "val", LoaderOptions(mode="eval", batch_size=4, backend="dali", device="cpu")))
    assert [b["key"] for b in gpu] == [b["key"] for b in cpu]
    for g, c in zip(gpu, cpu):
        assert g["image"].is_cuda and g["spec"].is_cuda and g["label"].is_cuda
        assert torch.equal(g["spec"].cpu(), c["spec"])
        # nvJPEG and libjpeg-turbo IDCTs differ by a grey level or two; resize then matches closely
        assert ((g["image"].cpu() - c["image"]).abs() * _STD * 255).max() <= PARITY_MAX_LEVELS


@pytest.mark.gpu
def test_gpu_train_batches(tmp_path):
    lf.write_shards(tmp_path, {"train": 16}, samples_per_shard=8)
    loader = build_loader(tmp_path, "train", LoaderOptions(mode="train", batch_size=8, backend="dali", device="cuda"))
    batches = list(loader)
    assert len(batches) == 2 and sorted(keys_of(batches)) == sorted(lf.clip_key(i) for i in range(16))
    assert batches[0]["image"].shape == (8, 3, 224, 224) and batches[0]["image"].dtype == torch.float32


@pytest.mark.parametrize("size", [(341, 256), (256, 341), (260, 256), (96, 72), (1001, 497)])
def test_window_decode_equals_full_decode(size):
    """The CPU train path decodes only the crop's window: the resized crop must match the one
    made from a full decode with the same draws. The decoded pixels are identical; the resize
    computes its sampling positions from the window's origin instead of the frame's, which moves
    a rare pixel by one grey level (measured: < 0.01% of pixels, never more than 1 level)."""
    import io

    import numpy as np
    from nvidia.dali import fn, pipeline_def
    from PIL import Image

    from avloc.pipelines import graph

    rng = np.random.default_rng(size[0])
    jpegs = []
    for quality, subsampling in ((90, 2), (75, 0), (95, 1), (85, 2)):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=quality, subsampling=subsampling)
        jpegs.append(np.frombuffer(buf.getvalue(), np.uint8))

    @pipeline_def(batch_size=len(jpegs), num_threads=1, device_id=None, seed=7)
    def both():
        jpg = fn.external_source(source=lambda: jpegs, batch=True)
        height, width, box = graph.crop_source_box(jpg)
        full = graph.resize_box(graph.decode_frame(jpg, gpu=False), box)
        window, shifted = graph.decode_window(jpg, height, width, box)
        return full, graph.resize_box(window, shifted), window.shape()

    pipe = both()
    pipe.build()
    for _ in range(3):  # new draws each run
        full, windowed, window_shape = (o.as_array() if o.is_dense_tensor() else o for o in pipe.run())
        assert full.shape == (len(jpegs), 224, 224, 3)
        diff = np.abs(full.astype(np.int16) - windowed)
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())
        if min(size) >= 246:  # a downscale: the window is smaller than the frame
            assert all(h * w < size[0] * size[1] for h, w, _ in window_shape)
