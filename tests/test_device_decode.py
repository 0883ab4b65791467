"""The torch shard loader's image_decode="device": each batch's JPEGs decoded at once on the loader's
device (torchvision decode_jpeg; nvJPEG on CUDA) against the worker path (PIL), over real shards.

On a CPU device both paths decode with libjpeg, so what is compared is the resize/crop/flip/normalise
done on tensors against PIL's: they must agree to a few 8-bit levels. On CUDA (gpu-marked) the
decoders differ too (nvJPEG's IDCT and chroma upsampling), within a JPEG-decoder tolerance.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import loader_fixtures as lf
from avloc.data import LoaderOptions, augment, build_loader, device_decode
from avloc.errors import ConfigError, InputError

torch.set_num_threads(1)

STD = torch.tensor(augment.IMAGENET_STD).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    # mixed frame shapes: landscape, and portrait in the val split
    lf.write_shards(out / "land", {"train": 12, "val": 5}, samples_per_shard=6, width=160, height=120)
    lf.write_shards(out / "port", {"val": 5}, samples_per_shard=5, width=90, height=130)
    return out


def read_all(root, split, **kw) -> list:
    kw.setdefault("num_workers", 0)
    return list(build_loader(root, split, LoaderOptions(backend="torch", **kw)))


def level_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """|a - b| of two normalised image batches, in 8-bit levels."""
    return ((a.float().cpu() - b.float().cpu()) * STD * 255).abs()


def compare_paths(root, split, device, **kw):
    worker = read_all(root, split, **kw)
    on_device = read_all(root, split, image_decode="device", device=device, **kw)
    assert [b["key"] for b in on_device] == [b["key"] for b in worker]
    diffs = []
    for got, want in zip(on_device, worker):
        assert got["image"].device.type == torch.device(device).type
        assert got["image"].shape == want["image"].shape and got["image"].dtype == torch.float32
        assert torch.equal(got["spec"].cpu(), want["spec"]) and torch.equal(got["label"].cpu(), want["label"])
        assert got["bbox"] == want["bbox"]
        diffs.append(level_diff(got["image"], want["image"]).flatten())
    return torch.cat(diffs)


@pytest.mark.parametrize("subset,split,mode,workers", [("land", "train", "train", 2), ("port", "val", "train", 0),
                                                       ("land", "val", "eval", 0), ("port", "val", "eval", 0)])
def test_device_decode_on_cpu_matches_the_worker_path(shards, subset, split, mode, workers):
    """Same decoder (libjpeg) on both sides: the tensor resample reproduces PIL's to rounding."""
    d = compare_paths(shards / subset, split, "cpu", mode=mode, batch_size=4, drop_last=False, image_size=64,
                      num_workers=workers)
    assert d.mean() < 0.3 and d.max() <= 6, f"mean {d.mean():.3f} max {d.max():.1f} levels"


def test_resize_matches_pillow_on_odd_boxes():
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    img = Image.fromarray(pixels)
    image = torch.from_numpy(pixels).permute(2, 0, 1)
    for box, size in [((0, 0, 53, 37), 64), ((3.25, 1.5, 40.75, 30.0), 24), ((0, 0, 53, 37), 17)]:
        want = torch.from_numpy(np.array(img.resize((size, size), Image.BICUBIC, box=box))).permute(2, 0, 1)
        got = device_decode.resize_box(image, box, size)
        assert (got - want.float()).abs().max() <= 3, box
        assert (got - want.float()).abs().mean() < 0.3, box


def test_bad_frames_are_skipped_or_named(tmp_path):
    keys = lf.write_shards(tmp_path, {"train": 10}, samples_per_shard=10,
                           corrupt_jpeg={lf.clip_key(3)})["train"]
    kw = dict(mode="eval", batch_size=4, drop_last=False, image_size=32, bad_sample="skip")
    worker = build_loader(tmp_path, "train", LoaderOptions(backend="torch", num_workers=0, **kw))
    device = build_loader(tmp_path, "train", LoaderOptions(backend="torch", num_workers=0, image_decode="device", **kw))
    got_worker, got_device = [k for b in worker for k in b["key"]], [k for b in device for k in b["key"]]
    assert got_device == got_worker == [k for k in keys if k != lf.clip_key(3)]
    assert device.skipped == worker.skipped == 1
    strict = build_loader(tmp_path, "train", LoaderOptions(backend="torch", num_workers=0, image_decode="device",
                                                           **{**kw, "bad_sample": "error"}))
    with pytest.raises(InputError, match=lf.clip_key(3)):
        list(strict)


def test_device_decode_is_a_torch_loader_option(tmp_path):
    with pytest.raises(ConfigError, match="image_decode"):
        LoaderOptions(backend="folder", image_decode="device").checked()
    with pytest.raises(ConfigError, match="image_decode must be one of"):
        LoaderOptions(image_decode="gpu").checked()
    lf.write_folder(tmp_path, 2)
    with pytest.raises(InputError, match="torch shard loader"):
        build_loader(tmp_path, "train", LoaderOptions(image_decode="device"))


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_nvjpeg_decode_matches_the_worker_path(shards, mode):
    """nvJPEG against libjpeg + PIL: within a JPEG decoder's tolerance (IDCT and chroma upsampling)."""
    d = compare_paths(shards / "land", "val", "cuda", mode=mode, batch_size=4, drop_last=False, image_size=224)
    q = torch.quantile(d[torch.randperm(d.numel())[:1_000_000]], 0.999)
    stats = f"mean {d.mean():.3f}, 99.9th percentile {q:.1f}, max {d.max():.1f} levels"
    print(f"nvjpeg vs PIL ({mode}): {stats}")
    assert d.mean() < 2.0 and q <= 16, stats


def test_pending_batch_frames_travel_as_bytes():
    data = lf.frame_jpeg(1, 40, 30)
    frame = device_decode.encoded_frame(data)
    assert frame.dtype == torch.uint8 and bytes(frame.numpy()) == data
    png = io.BytesIO()
    Image.new("RGB", (4, 4)).save(png, format="PNG")
    with pytest.raises(ValueError, match="not JPEG"):
        device_decode.encoded_frame(png.getvalue())
