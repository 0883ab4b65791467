"""Reusable pieces of the DALI graphs (call them inside a ``@pipeline_def`` function).

The augmentation numbers come from avloc.data.augment, the one definition shared with the
PIL/torch loaders. SpecAugment draws each mask's start on its own axis (frequency start in
[0, 257 - width], time start in [0, T - width]); the reference implementation draws them from
the other axis's length, which this does not reproduce.
"""

from __future__ import annotations

from nvidia.dali import fn, math as dmath, types

from avloc import schema
from avloc.data import augment

READER_NAME = "Reader"


def read_shards(paths: list, index_paths: list, *, shard_id: int, num_shards: int, shuffle: bool, seed: int,
                shuffle_buffer: int):
    """(jpg bytes, spec float16 [257*T], json bytes, source info) of each sample, this rank's range only.

    ``stick_to_shard``: the loader builds one pipeline per epoch and chooses the files' order
    itself, so the reader must not move on to the next rank's range. ``pad_last_batch``
    repeats the last sample to fill the last batch; the iterator drops the padding.
    """
    jpg, spec, meta = fn.readers.webdataset(
        paths=paths, index_paths=index_paths, ext=[schema.EXT_FRAME, schema.EXT_SPEC, schema.EXT_META],
        dtypes=[types.UINT8, types.FLOAT16, types.UINT8], missing_component_behavior="error",
        shard_id=shard_id, num_shards=num_shards, stick_to_shard=True, pad_last_batch=True,
        random_shuffle=shuffle, initial_fill=shuffle_buffer, seed=seed, name=READER_NAME)
    source = fn.get_property(jpg, key="source_info")
    return jpg, spec, meta, source


def decode_frame(jpg, *, gpu: bool):
    """JPEG -> HWC uint8 RGB, on the GPU (nvJPEG, ``mixed``) or the CPU."""
    if gpu:
        return fn.decoders.image(jpg, device="mixed", output_type=types.RGB)
    return fn.decoders.image(jpg, device="cpu", output_type=types.RGB)


def _normalise(images, *, dtype, mirror=None):
    kwargs = {}
    if mirror is not None:
        kwargs["mirror"] = mirror
    return fn.crop_mirror_normalize(images, dtype=dtype, output_layout="CHW",
                                    mean=[255.0 * m for m in augment.IMAGENET_MEAN],
                                    std=[255.0 * s for s in augment.IMAGENET_STD], **kwargs)


def _round(x):
    return dmath.floor(x + 0.5)


# Source pixels kept around the crop's source box when only that window is decoded: more than
# the bicubic filter's reach (2 taps each side, widened by the ~1.04x downscale), so every tap
# the resize reads is a real pixel, as in a full decode.
WINDOW_MARGIN = 4


def crop_source_box(jpg, image_size: int = augment.IMAGE_SIZE):
    """A random train crop as its box in source pixels: (height, width, (y0, x0, y1, x1)).

    The crop is size x size of the frame resized to shorter side int(1.1 * size), as in
    augment.train_crop_box; the source shape comes from the JPEG header (``peek_image_shape``).
    """
    shape = fn.cast(fn.peek_image_shape(jpg), dtype=types.FLOAT)  # [H, W, C]
    height, width = shape[0], shape[1]
    short = float(augment.resize_shorter_size(image_size))
    scale = short / dmath.min(height, width)
    new_h, new_w = _round(height * scale), _round(width * scale)
    top = _round(fn.random.uniform(range=[0.0, 1.0]) * (new_h - image_size))
    left = _round(fn.random.uniform(range=[0.0, 1.0]) * (new_w - image_size))
    sy, sx = height / new_h, width / new_w
    return height, width, (top * sy, left * sx, (top + image_size) * sy, (left + image_size) * sx)


def decode_window(jpg, height, width, box):
    """Decode (CPU) only the part of the frame the resize of ``box`` reads; returns the pixels
    and the box relative to them. libjpeg-turbo region decoding is pixel-identical to a full
    decode cut down, and skips the IDCT of what the crop never sees (~40% of a 4:3 frame)."""
    y0, x0, y1, x1 = box
    wy0 = dmath.max(dmath.floor(y0) - WINDOW_MARGIN, 0.0)
    wx0 = dmath.max(dmath.floor(x0) - WINDOW_MARGIN, 0.0)
    wy1 = dmath.min(dmath.ceil(y1) + WINDOW_MARGIN, height)
    wx1 = dmath.min(dmath.ceil(x1) + WINDOW_MARGIN, width)
    images = fn.decoders.image_slice(jpg, fn.stack(wy0, wx0), fn.stack(wy1 - wy0, wx1 - wx0), axis_names="HW",
                                     normalized_anchor=False, normalized_shape=False, device="cpu",
                                     output_type=types.RGB)
    return images, (y0 - wy0, x0 - wx0, y1 - wy0, x1 - wx0)


def resize_box(images, box, image_size: int = augment.IMAGE_SIZE):
    """Bicubic resize of ``box`` (source pixels, y0 x0 y1 x1) to size x size: resize + crop in
    one pass, without resampling pixels the crop discards."""
    y0, x0, y1, x1 = box
    return fn.resize(images, resize_x=image_size, resize_y=image_size, interp_type=types.INTERP_CUBIC,
                     roi_start=fn.stack(y0, x0), roi_end=fn.stack(y1, x1), roi_relative=False)


def train_frame(jpg, *, gpu: bool, image_size: int = augment.IMAGE_SIZE, dtype=types.FLOAT):
    """Shorter side -> int(1.1 * size) bicubic, random size x size crop, random flip, normalise,
    CHW. The CPU decodes only the crop's window; the GPU (nvJPEG) decodes the whole frame."""
    height, width, box = crop_source_box(jpg, image_size)
    if gpu:
        images = decode_frame(jpg, gpu=True)
    else:
        images, box = decode_window(jpg, height, width, box)
    images = resize_box(images, box, image_size)
    return _normalise(images, dtype=dtype, mirror=fn.random.coin_flip(probability=0.5))


def crop_frame(jpg, *, gpu: bool, image_size: int = augment.IMAGE_SIZE, dtype=types.FLOAT):
    """A frame stored at the training scale (shorter side int(1.1 * size)): random size x size
    crop, random flip, normalise, CHW; no resize. Only the crop is decoded (libjpeg-turbo region
    decoding on the CPU, nvJPEG on the GPU); offsets as augment.train_crop_offset."""
    shape = fn.cast(fn.peek_image_shape(jpg), dtype=types.FLOAT)  # [H, W, C]
    top = _round(fn.random.uniform(range=[0.0, 1.0]) * (shape[0] - image_size))
    left = _round(fn.random.uniform(range=[0.0, 1.0]) * (shape[1] - image_size))
    images = fn.decoders.image_slice(jpg, fn.stack(top, left), fn.stack(float(image_size), float(image_size)),
                                     axis_names="HW", normalized_anchor=False, normalized_shape=False,
                                     device="mixed" if gpu else "cpu", output_type=types.RGB)
    return _normalise(images, dtype=dtype, mirror=fn.random.coin_flip(probability=0.5))


def eval_frame(images, *, image_size: int = augment.IMAGE_SIZE, dtype=types.FLOAT):
    """Resize to exactly size x size (bicubic, aspect not kept), normalise, CHW."""
    images = fn.resize(images, resize_x=image_size, resize_y=image_size, interp_type=types.INTERP_CUBIC)
    return _normalise(images, dtype=dtype)


def spec_from_bytes(spec):
    """float16 [257*T] -> float32 [1, 257, T] with layout CHW (H = frequency, W = time)."""
    spec = fn.reshape(spec, shape=[1, schema.SPEC_BINS, -1], layout="CHW")
    return fn.cast(spec, dtype=types.FLOAT)


def _mask_start(width, axis_len):
    # start uniform over the integers [0, axis_len - width]
    u = fn.random.uniform(range=[0.0, 1.0])
    return dmath.min(dmath.floor(u * (axis_len - width + 1.0)), axis_len - width)


def spec_augment(spec, *, frames: int = schema.SPEC_FRAMES, fill_value: float = 0.0):
    """One frequency mask and one time mask, widths uniform in [0, MASK_MAX_WIDTH], filled with
    ``fill_value`` (log-spectrogram units; the recipe's 0.0, see options.SPEC_MASK_FILLS)."""
    widths = list(range(augment.MASK_MAX_WIDTH + 1))
    f_width = fn.cast(fn.random.uniform(values=widths, dtype=types.INT32), dtype=types.FLOAT)
    t_width = fn.cast(fn.random.uniform(values=widths, dtype=types.INT32), dtype=types.FLOAT)
    spec = fn.erase(spec, anchor=_mask_start(f_width, float(schema.SPEC_BINS)), shape=f_width, axis_names="H",
                    fill_value=fill_value)
    return fn.erase(spec, anchor=_mask_start(t_width, float(frames)), shape=t_width, axis_names="W",
                    fill_value=fill_value)


def scale_spec(spec):
    return spec / float(schema.SPEC_SCALE)  # a true division, like the torch loaders (bit-identical)


def padded_bytes(data):
    """Variable-length bytes -> zero-padded to the batch's longest, so the iterator sees one shape."""
    return fn.pad(data, fill_value=0)
