"""The FNAC augmentation recipe (METHOD.md §1.2), defined once for every loader.

The constants below are what the DALI graph (pipelines/graph.py) is built from; the functions
are the PIL/torch implementation used by the torch shard loader and the folder loader.
Random parameters are drawn from a numpy Generator seeded by (seed, epoch, rank, batch index;
the folder loader: position in the epoch),
so a batch's augmentation does not depend on which DataLoader worker built it.

SpecAugment positions: the reference implementation draws the frequency-mask start from the
time-axis length and the time-mask start from the frequency-axis length (the axes swapped).
Here the frequency mask start is drawn in [0, 257 - width] on the frequency axis and the time
mask start in [0, T - width] on the time axis.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from PIL import Image

from avloc import schema
from avloc.data.options import SPEC_MASK_FILLS  # noqa: F401  (the fill values, by name)

IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MASK_MAX_WIDTH = 9  # mask widths are uniform integers in [0, MASK_MAX_WIDTH]


def resize_shorter_size(image_size: int = IMAGE_SIZE) -> int:
    return int(image_size * 1.1)


@dataclasses.dataclass
class SampleAugment:
    """Random choices for one training sample; crop positions are fractions in [0, 1]."""

    crop_x: float
    crop_y: float
    flip: bool
    freq_width: int
    freq_start: float  # fraction of the valid start range [0, bins - width]
    time_width: int
    time_start: float


def draw_augment(rng: np.random.Generator) -> SampleAugment:
    return SampleAugment(crop_x=float(rng.random()), crop_y=float(rng.random()), flip=bool(rng.random() < 0.5),
                         freq_width=int(rng.integers(0, MASK_MAX_WIDTH + 1)), freq_start=float(rng.random()),
                         time_width=int(rng.integers(0, MASK_MAX_WIDTH + 1)), time_start=float(rng.random()))


def batch_rng(seed: int, epoch: int, rank: int, batch_index: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, rank, batch_index])


_SCALE = (1.0 / (255.0 * torch.tensor(IMAGENET_STD))).view(3, 1, 1)
_OFFSET = (-torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(3, 1, 1)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """RGB pixels 0-255 (uint8 or float) [..., 3, H, W] -> float32, (x / 255 - mean) / std computed as
    x * scale + offset, on the images' device. One op for every path, so a frame normalised alone or
    in a batch, in a worker or where the batch lands, gives the same bits."""
    scale, offset = _SCALE, _OFFSET
    if images.device.type != "cpu":
        scale, offset = scale.to(images.device), offset.to(images.device)
    values = images.float() if images.dtype != torch.float32 else images.clone()
    return torch.addcmul(offset, values, scale, out=values)  # in place: no second 4-byte-per-pixel buffer


def pil_pixels(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image -> uint8 [3, H, W] (contiguous)."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()


def _to_normalised_tensor(img: Image.Image) -> torch.Tensor:
    return normalise(pil_pixels(img))


def train_crop_box(width: int, height: int, aug: SampleAugment, image_size: int = IMAGE_SIZE) -> tuple:
    """The random crop as a box in source pixels (floats).

    Resizing the shorter side to int(1.1 * size) and cropping size x size at an integer offset is
    the same map as resizing just this source box to size x size: output pixel i samples source
    position (left + i + 0.5) * width / new_width either way. Resizing the box alone skips the
    pixels the crop would throw away.
    """
    short = resize_shorter_size(image_size)
    if width <= height:
        new_w, new_h = short, int(round(height * short / width))
    else:
        new_w, new_h = int(round(width * short / height)), short
    left = int(round(aug.crop_x * (new_w - image_size)))
    top = int(round(aug.crop_y * (new_h - image_size)))
    sx, sy = width / new_w, height / new_h
    return (left * sx, top * sy, (left + image_size) * sx, (top + image_size) * sy)


def train_crop_offset(width: int, height: int, aug: SampleAugment, image_size: int = IMAGE_SIZE) -> tuple:
    """(left, top) of the random crop in a frame already at the training scale (shorter side
    int(1.1 * size)): the integer offsets train_crop_box uses, at scale 1."""
    return int(round(aug.crop_x * (width - image_size))), int(round(aug.crop_y * (height - image_size)))


def train_pixels(img: Image.Image, aug: SampleAugment, image_size: int = IMAGE_SIZE) -> Image.Image:
    """Shorter side -> int(1.1 * size) bicubic, random size x size crop, random flip (RGB, not normalised).

    A frame stored at the training scale (shorter side int(1.1 * size) already, the shard default)
    is only cropped: the resize is an identity there."""
    img = img.convert("RGB")
    if min(img.size) == resize_shorter_size(image_size):
        left, top = train_crop_offset(img.width, img.height, aug, image_size)
        img = img.crop((left, top, left + image_size, top + image_size))
    else:
        img = img.resize((image_size, image_size), Image.BICUBIC, box=train_crop_box(img.width, img.height, aug,
                                                                                     image_size))
    if aug.flip:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def train_image(img: Image.Image, aug: SampleAugment, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """train_pixels, normalised -> float32 [3, S, S]."""
    return _to_normalised_tensor(train_pixels(img, aug, image_size))


def train_crop_pixels(chw: torch.Tensor, aug: SampleAugment, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """train_pixels for a decoded uint8 [3, H, W] frame already at the training scale: crop, flip ->
    uint8 [3, S, S] (contiguous)."""
    left, top = train_crop_offset(chw.shape[2], chw.shape[1], aug, image_size)
    crop = chw[:, top:top + image_size, left:left + image_size]
    return crop.flip(2) if aug.flip else crop.contiguous()


def eval_pixels(img: Image.Image, image_size: int = IMAGE_SIZE) -> Image.Image:
    """Resize to exactly size x size (bicubic, aspect not kept), RGB, not normalised."""
    return img.convert("RGB").resize((image_size, image_size), Image.BICUBIC)


def eval_image(img: Image.Image, image_size: int = IMAGE_SIZE) -> torch.Tensor:
    """eval_pixels, normalised -> float32 [3, S, S]."""
    return _to_normalised_tensor(eval_pixels(img, image_size))


def mask_spans(aug: SampleAugment, bins: int, frames: int) -> tuple:
    """((f0, f1), (t0, t1)): the zeroed frequency rows and time columns, half-open."""
    f0 = int(aug.freq_start * (bins - aug.freq_width + 1)) if aug.freq_width else 0
    t0 = int(aug.time_start * (frames - aug.time_width + 1)) if aug.time_width else 0
    f0 = min(f0, bins - aug.freq_width)
    t0 = min(t0, frames - aug.time_width)
    return (f0, f0 + aug.freq_width), (t0, t0 + aug.time_width)


def spec_tensor(log_spec: np.ndarray, aug: SampleAugment = None, fill: float = 0.0) -> torch.Tensor:
    """[257, T] log-spectrogram (any float dtype) -> [1, 257, T] float32 / 12; when ``aug`` is given
    its masks are set to ``fill`` (log-spectrogram units, a value of SPEC_MASK_FILLS)."""
    spec = torch.from_numpy(np.array(log_spec, dtype=np.float32)).unsqueeze(0)  # one copy, writable
    if aug is not None:
        (f0, f1), (t0, t1) = mask_spans(aug, spec.shape[1], spec.shape[2])
        spec[:, f0:f1, :] = fill
        spec[:, :, t0:t1] = fill
    return spec.div_(schema.SPEC_SCALE)
