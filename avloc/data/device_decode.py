"""Frame decoding on the loader's device for the torch shard loader (``image_decode="device"``).

The DataLoader workers keep each sample's JPEG bytes as they are (plus its augmentation draw and
its spectrogram, decoded as usual); the main process decodes the whole batch with
``torchvision.io.decode_jpeg(device=...)``: nvJPEG when the loader's device is CUDA (no DALI
needed), torchvision's libjpeg on a CPU device. Crop, resize, flip and normalisation then run
on that device as the worker path does them with PIL (avloc.data.augment):

* the resize is PIL's separable bicubic (a = -0.5) with its antialiasing support and box
  coordinates, built as two weight matrices per image: out = Wy @ img @ Wx^T; like Pillow on
  8-bit images, each pass is rounded and clamped to 0..255, and the pass along the longer side
  of the box comes first (which matches Pillow on whole frames to one level; for the near-square
  train crop boxes Pillow sometimes takes the other order, a few levels in some pixels, mean < 0.3);
* train mode resizes the random crop box of ``augment.train_crop_box`` to S x S, then flips;
  eval mode resizes the whole frame to S x S.

Beyond that, the two paths differ by the JPEG decoders' own difference (nvJPEG's IDCT and chroma
upsampling against libjpeg's); tests/test_device_decode.py holds both to their tolerances.
"""

from __future__ import annotations

import io
from typing import Optional

import torch

from avloc.data import augment

BICUBIC_A = -0.5
BICUBIC_SUPPORT = 2.0


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    a = BICUBIC_A
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def resample_weights(in_size: int, out_size: int, lo, hi, device=None) -> torch.Tensor:
    """Weights of PIL's bicubic resample of source spans [lo, hi) to ``out_size`` samples (antialiased
    when shrinking; each row sums to 1): [out_size, in_size] for float bounds, [n, out_size, in_size]
    for bounds given as [n] tensors. float64."""
    batched = torch.is_tensor(lo)
    lo = torch.as_tensor(lo, dtype=torch.float64, device=device).reshape(-1, 1, 1)
    hi = torch.as_tensor(hi, dtype=torch.float64, device=lo.device).reshape(-1, 1, 1)
    scale = (hi - lo) / out_size
    filter_scale = scale.clamp(min=1.0)
    centers = lo + (torch.arange(out_size, dtype=torch.float64, device=lo.device).view(1, -1, 1) + 0.5) * scale
    support = BICUBIC_SUPPORT * filter_scale
    src = torch.arange(in_size, dtype=torch.float64, device=lo.device).view(1, 1, -1)
    # PIL's window: xmin = int(center - support + 0.5), xmax = int(center + support + 0.5), clipped to the image
    xmin = (centers - support + 0.5).trunc().clamp(min=0)
    xmax = (centers + support + 0.5).trunc().clamp(max=in_size)
    w = _bicubic((src - centers + 0.5) / filter_scale) * ((src >= xmin) & (src < xmax))
    total = w.sum(dim=2, keepdim=True)
    w = w / torch.where(total == 0, torch.ones_like(total), total)
    return w if batched else w[0]


def resize_boxes(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [n, 3, H, W] and boxes [n, 4] (left, top, right, bottom; all of one width and height) ->
    float32 [n, 3, size, size] holding integers 0..255: PIL's ``resize((size, size), BICUBIC, box)``
    of each image, batched on the images' device."""
    _, _, h, w = images.shape
    boxes = boxes.to(images.device, torch.float64)
    wx = resample_weights(w, size, boxes[:, 0], boxes[:, 2]).float()  # [n, S, W]
    wy = resample_weights(h, size, boxes[:, 1], boxes[:, 3]).float()  # [n, S, H]
    x = images.float()
    box_w, box_h = float(boxes[0, 2] - boxes[0, 0]), float(boxes[0, 3] - boxes[0, 1])
    if box_h > box_w:  # Pillow shrinks along the longer side first
        x = torch.matmul(wy[:, None], x).round_().clamp_(0, 255)
        return torch.matmul(x, wx[:, None].transpose(2, 3)).round_().clamp_(0, 255)
    x = torch.matmul(x, wx[:, None].transpose(2, 3)).round_().clamp_(0, 255)  # horizontal pass: [n, 3, H, S]
    return torch.matmul(wy[:, None], x).round_().clamp_(0, 255)


def resize_box(image: torch.Tensor, box: tuple, size: int) -> torch.Tensor:
    """One uint8 [3, H, W] image: PIL's ``resize((size, size), BICUBIC, box=box)`` (see resize_boxes)."""
    return resize_boxes(image[None], torch.tensor([box], dtype=torch.float64), size)[0]


def transform(image: torch.Tensor, aug: Optional[augment.SampleAugment], size: int) -> torch.Tensor:
    """A decoded uint8 [3, H, W] frame -> normalised float32 [3, S, S], as augment.train_image (aug given)
    or augment.eval_image (aug None) make it from the same pixels."""
    return transform_batch([image], [aug], size)[0]


def transform_batch(images: list, augs: list, size: int) -> torch.Tensor:
    """Decoded uint8 [3, H, W] frames (one device) -> normalised float32 [B, 3, S, S]; frames of one
    size are resized together."""
    device = images[0].device
    out = torch.empty(len(images), 3, size, size, device=device)
    groups = {}
    for i, image in enumerate(images):
        groups.setdefault(tuple(image.shape[1:]), []).append(i)
    for (h, w), index in groups.items():
        boxes = torch.tensor([augment.train_crop_box(w, h, augs[i], size) if augs[i] is not None
                              else (0.0, 0.0, float(w), float(h)) for i in index], dtype=torch.float64)
        resized = resize_boxes(torch.stack([images[i] for i in index]), boxes, size)
        flips = [k for k, i in enumerate(index) if augs[i] is not None and augs[i].flip]
        if flips:
            resized[flips] = resized[flips].flip(-1)
        out[torch.tensor(index, device=device)] = resized
    return augment.normalise(out)


# ----------------------------------------------------------------------------- worker side
def encoded_frame(data: bytes) -> torch.Tensor:
    """The worker's share: the JPEG bytes as a uint8 tensor, after a header check (PIL reads the header
    only, so a member that is no JPEG at all is found in the worker, as the PIL path finds it)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        if img.format != "JPEG":
            raise ValueError(f"frame is {img.format}, not JPEG")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def pending_batch(frames: list, augs: list, specs: list, keys: list, labels: list, bboxes: list) -> dict:
    """A batch whose "image" is still encoded: "jpeg" (list of uint8 tensors) and "aug" (draws or None)."""
    from avloc.data.batch import make_batch

    batch = make_batch([], specs, keys, labels, bboxes)
    batch["jpeg"] = list(frames)
    batch["aug"] = list(augs)
    return batch


# ----------------------------------------------------------------------------- main-process side
def _decode(frames: list, device: torch.device) -> list:
    from torchvision.io import ImageReadMode, decode_jpeg

    return decode_jpeg(frames, mode=ImageReadMode.RGB, device=device)


def decode_batch(batch: dict, options) -> dict:
    """Replace a pending batch's "jpeg"/"aug" by "image" [B, 3, S, S] on ``options.device``. A frame the
    decoder rejects is bad: with bad_sample="error" the batch becomes {"_error": ...}, with "skip"
    the sample is dropped and counted in "_skipped"."""
    if "_error" in batch:
        return batch
    device = torch.device(options.device)
    frames, augs = batch.pop("jpeg"), batch.pop("aug")
    try:
        decoded = _decode(frames, device)
        bad = {}
    except RuntimeError:  # one bad frame fails the whole call: find it frame by frame
        decoded, bad = [], {}
        for i, frame in enumerate(frames):
            try:
                decoded.extend(_decode([frame], device))
            except RuntimeError as exc:
                decoded.append(None)
                bad[i] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if bad:
        first = min(bad)
        if options.bad_sample == "error":
            return {"_error": f"bad sample {batch['key'][first]!r}: the {device.type} JPEG decoder failed: {bad[first]}"}
        keep = [i for i in range(len(frames)) if i not in bad]
        batch["spec"] = batch["spec"][keep]
        batch["label"] = batch["label"][keep]
        batch["key"] = [batch["key"][i] for i in keep]
        batch["bbox"] = [batch["bbox"][i] for i in keep]
        batch["_skipped"] = batch.get("_skipped", 0) + len(bad)
        decoded = [decoded[i] for i in keep]
        augs = [augs[i] for i in keep]
    size = options.image_size
    if decoded:
        batch["image"] = transform_batch(decoded, augs, size)
    else:
        batch["image"] = torch.empty(0, 3, size, size, device=device)
    return batch


def decoded_batches(batches, options):
    """The DataLoader's pending batches, decoded on the device one by one."""
    for batch in batches:
        yield decode_batch(batch, options)


def check_available(device) -> Optional[str]:
    """Why device decoding cannot run here (None when it can)."""
    try:
        import torchvision.io  # noqa: F401
    except ImportError as exc:
        return f"image_decode='device' needs torchvision ({exc})"
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        return "image_decode='device' on cuda needs a CUDA device"
    return None


__all__ = ["decode_batch", "decoded_batches", "encoded_frame", "pending_batch", "resample_weights", "resize_box",
           "resize_boxes", "transform", "transform_batch"]
