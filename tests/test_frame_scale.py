"""Frames stored at the training scale: the train augmentation against the reference's, header
parsing, and sets that mix frame sizes."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import loader_fixtures as lf
from loader_fixtures import collect_dali_pipelines  # noqa: F401  (autouse)
from avloc import schema
from avloc.data import LoaderOptions, augment, build_loader
from avloc.data.frame_scale import crop_only, jpeg_size
from avloc.data.shards import ShardSet
from avloc.errors import InputError
from avloc.tools.sharding.sample_builder import encode_jpeg, resize_frame
from avloc.tools.sharding.writer import ShardWriter
from avloc.utils.atomic import atomic_write_bytes

BACKENDS = ["torch", pytest.param("dali", marks=pytest.mark.dali)]
SOURCE = (480, 360)  # VGG-Sound's usual 360p


def source_frame(i: int, width: int = SOURCE[0], height: int = SOURCE[1]) -> np.ndarray:
    """A frame whose position and orientation can be read off its pixels: gradients plus texture."""
    rng = np.random.default_rng(i)
    frame = lf.gradient_frame(width, height).astype(np.int16)
    frame += rng.integers(-3, 4, frame.shape, dtype=np.int16)  # mild texture: JPEG error stays small
    return np.clip(frame, 0, 255).astype(np.uint8)


def write_sharded(out, n: int, *, frame_size: int, first: int = 0, stem: str = "train-000000") -> list:
    """n samples built as ``avloc shard`` builds them: the source frame resized once to shorter side
    ``frame_size`` (resize_frame) and JPEG-encoded (encode_jpeg) into a real tar + DALI index."""
    keys = []
    with ShardWriter(out / f"{stem}.tar") as writer:
        for i in range(first, first + n):
            key = lf.clip_key(i)
            jpeg = encode_jpeg(resize_frame(source_frame(i), frame_size), schema.JPEG_QUALITY)
            writer.write(key, schema.encode_sample(lf.sample_meta(i, key, "train", width=SOURCE[0],
                                                                  height=SOURCE[1]), jpeg, lf.random_spec(i)))
            keys.append(key)
    return keys


def write_summary(out, shards: list, *, frame_size=None) -> None:
    extra = {"frame": {"short_side": frame_size}} if frame_size else {}
    summary = schema.dataset_summary(classes=lf.CLASSES, counts={"train": sum(n for _, n in shards)},
                                     shards={"train": [{"name": f"{s}.tar", "samples": n} for s, n in shards]}, **extra)
    atomic_write_bytes(out / "dataset.json", json.dumps(summary).encode())


def reference_resize(src: np.ndarray, size: int = 224) -> np.ndarray:
    """The published recipe's resize of the source frame: torchvision Resize(int(1.1 * size), bicubic)."""
    import torchvision.transforms.functional as F
    from torchvision.transforms import InterpolationMode

    return np.asarray(F.resize(Image.fromarray(src), int(1.1 * size), interpolation=InterpolationMode.BICUBIC),
                      np.float64)


def reference_crop(resized: np.ndarray, left: int, top: int, flip: bool, size: int = 224) -> np.ndarray:
    """... then its RandomCrop at (top, left) and RandomHorizontalFlip."""
    crop = resized[top:top + size, left:left + size]
    return crop[:, ::-1] if flip else crop


def pixels(image: torch.Tensor) -> np.ndarray:
    std = torch.tensor(augment.IMAGENET_STD).view(3, 1, 1)
    mean = torch.tensor(augment.IMAGENET_MEAN).view(3, 1, 1)
    return ((image * std + mean) * 255.0).permute(1, 2, 0).numpy().astype(np.float64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_frames_match_the_reference_resize_crop_flip(tmp_path, backend):
    """A frame stored at 246 is the reference's resized frame: the loaders' crops and flips of it match
    the reference's resize of the source frame + crop + flip to within the JPEG's error."""
    n = 12
    keys = write_sharded(tmp_path, n, frame_size=schema.FRAME_SHORT_SIDE)
    write_summary(tmp_path, [("train-000000", n)], frame_size=schema.FRAME_SHORT_SIDE)
    options = LoaderOptions(mode="train", backend=backend, batch_size=n, num_workers=0 if backend == "torch" else 1,
                            seed=5)
    loader = build_loader(tmp_path, "train", options)
    assert loader.shards.frame_short_side == 246 and crop_only(246, 224)
    batch = next(iter(loader))
    rng = augment.batch_rng(options.seed, 0, 0, 0)  # the torch loader's draws for batch 0
    width = int(round(SOURCE[0] * 246 / SOURCE[1]))
    seen = set()
    for slot, (key, image) in enumerate(zip(batch["key"], batch["image"])):
        got, resized = pixels(image), reference_resize(source_frame(keys.index(key)))
        if backend == "torch":  # the offsets and flip are the recipe's draws, exactly
            aug = augment.draw_augment(rng)
            (left, top), flip = augment.train_crop_offset(width, 246, aug), aug.flip
        else:  # DALI draws with its own generator: find the crop
            flip = got[:, -1, 0].mean() < got[:, 0, 0].mean()
            left, top = min(((x, y) for x in range(width - 223) for y in range(246 - 223)),
                            key=lambda xy: np.abs(reference_crop(resized, *xy, flip)[::8, ::8] - got[::8, ::8]).mean())
        diff = np.abs(got - reference_crop(resized, left, top, flip))
        assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 8, (key, left, top, flip, diff.mean())
        seen.add((left, top, flip))
    assert len(seen) >= n - 2  # crops and flips vary


def test_a_stored_256_frame_is_still_resized(tmp_path):
    """Old sets (256 frames) keep the per-sample resize: the output is a crop of the 246 resize."""
    write_sharded(tmp_path, 4, frame_size=schema.LEGACY_FRAME_SHORT_SIDE)
    write_summary(tmp_path, [("train-000000", 4)], frame_size=256)
    loader = build_loader(tmp_path, "train", LoaderOptions(mode="train", backend="torch", batch_size=4, num_workers=0))
    assert loader.shards.frame_short_side == 256 and not crop_only(256, 224)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 224, 224)


def test_jpeg_size_reads_the_frame_header():
    for size, kwargs in (((328, 246), {}), ((246, 341), {"progressive": True}), ((17, 9), {"quality": 40})):
        buf = io.BytesIO()
        exif = Image.Exif()
        exif[0x010E] = "x" * 3000  # a large metadata segment before the frame header
        Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(buf, format="JPEG", exif=exif, **kwargs)
        assert jpeg_size(buf.getvalue()) == size
    assert jpeg_size(b"not a jpeg") is None


def test_a_set_mixing_frame_sizes_is_refused(tmp_path):
    write_sharded(tmp_path, 3, frame_size=246, stem="train-000000")
    write_sharded(tmp_path, 3, frame_size=256, first=3, stem="train-000001")
    write_summary(tmp_path, [("train-000000", 3), ("train-000001", 3)])
    for backend in ("torch", "auto"):  # auto: DALI where it imports
        with pytest.raises(InputError, match=r"mixes frame sizes: shard train-000000.tar stores frames of shorter "
                                             r"side 246, shard train-000001.tar of 256.*one --frame-size"):
            build_loader(tmp_path, "train", LoaderOptions(backend=backend, batch_size=2))
    # one size in the shards, another in dataset.json: refused as well
    os.remove(tmp_path / "train-000001.tar")
    write_summary(tmp_path, [("train-000000", 3)], frame_size=256)
    with pytest.raises(InputError, match=r"dataset.json says frames have shorter side 256, but shard "
                                         r"train-000000.tar stores 246"):
        ShardSet(tmp_path, "train")
