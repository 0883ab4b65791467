"""Drawing heat maps over pictures: the one module behind every overlay avloc writes.

``localize`` (videos and contact sheets), ``evaluate``'s overlay PNGs and the demo (through
evaluate) all draw with these functions, so a heat map looks the same everywhere:

* a perceptual colour map (``inferno``: lightness rises monotonically with the value, readable
  in greyscale and by colour-blind readers), blended with an opacity that grows with the value,
  so low values leave the picture visible;
* the picture's own aspect ratio (a map computed on the model's square input is resized back
  to the picture, never the picture squeezed to the map);
* a colour bar, and text (time, labels) burnt into the image;
* ``overlay_figure``: the picture | the picture with its overlay, side by side, with the
  ground-truth outline (white) and the predicted region (dashed) when given.

Heat maps passed here are already in [0, 1] (``avloc.metrics.minmax_normalise``).
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np

COLORMAP = "inferno"
DEFAULT_ALPHA = 0.6


@functools.lru_cache(maxsize=4)
def colormap_lut(name: str = COLORMAP) -> np.ndarray:
    """uint8 [256, 3]: the RGB colour of each heat level 0..255."""
    from matplotlib import colormaps

    rgba = colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255).astype(np.uint8)


def resize_heat(heat, height: int, width: int) -> np.ndarray:
    """A [h, w] map in [0, 1] -> float32 [height, width] (bicubic, clipped back to [0, 1])."""
    import torch
    import torch.nn.functional as F

    t = torch.as_tensor(np.asarray(heat, dtype=np.float32))
    if tuple(t.shape) == (height, width):
        return t.numpy()
    out = F.interpolate(t[None, None], size=(height, width), mode="bicubic", align_corners=False)[0, 0]
    return out.clamp_(0.0, 1.0).numpy()


def heat_levels(heat: np.ndarray) -> np.ndarray:
    """A map in [0, 1] -> uint8 levels 0..255 (what the colour map is indexed by)."""
    return (np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _blend_tables(alpha: float, colormap: str) -> tuple:
    """Per level: the picture's weight and the premultiplied colour, in 1/256 units (uint16)."""
    weight = np.round(alpha * np.arange(256) / 255.0 * 256.0).astype(np.uint16)  # 0..256
    colour = weight[:, None] * colormap_lut(colormap).astype(np.uint16)
    return (256 - weight).astype(np.uint16), colour


def blend_heatmap(image: np.ndarray, heat: np.ndarray, *, alpha: float = DEFAULT_ALPHA,
                  colormap: str = COLORMAP) -> np.ndarray:
    """uint8 [H, W, 3] picture + heat map -> uint8 [H, W, 3] overlay.

    ``heat``: floats in [0, 1], or uint8 levels (``heat_levels``); resized to the picture when the
    sizes differ. Each pixel is ``(1 - a) * picture + a * colour(heat)`` with ``a = alpha * heat``,
    computed in 8.8 fixed point (exact to one level).
    """
    image = np.asarray(image)
    h, w = image.shape[:2]
    if heat.dtype != np.uint8:
        heat = heat_levels(resize_heat(heat, h, w))
    elif heat.shape != (h, w):
        heat = heat_levels(resize_heat(heat.astype(np.float32) / 255.0, h, w))
    keep, colour = _blend_tables(float(alpha), colormap)
    out = image.astype(np.uint16) * keep[heat][..., None]
    out += colour[heat]
    out += 128
    return (out >> 8).astype(np.uint8)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one bitmap size
        return ImageFont.load_default()


def annotate(image: np.ndarray, *, text: Optional[str] = None, colour_bar: bool = True,
             marker: Optional[tuple] = None, colormap: str = COLORMAP) -> np.ndarray:
    """Burn a small vertical colour bar (right edge, "high" at the top), ``text`` (top left) and a
    ring at ``marker`` = (x, y) pixels (the heat map's peak) into a copy."""
    from PIL import Image, ImageDraw

    img = Image.fromarray(np.ascontiguousarray(image))
    w, h = img.size
    scale = max(1, min(w, h) // 240)
    draw = ImageDraw.Draw(img)
    font = _font(10 * scale)
    if colour_bar and h >= 40 and w >= 40:
        bar_h, bar_w = max(16, h // 3), max(4, 5 * scale)
        x1, y0 = w - 4 * scale - bar_w, 4 * scale
        ramp = colormap_lut(colormap)[np.linspace(255, 0, bar_h).astype(np.uint8)]
        img.paste(Image.fromarray(np.repeat(ramp[:, None, :], bar_w, axis=1)), (x1, y0))
        draw.rectangle([x1 - 1, y0 - 1, x1 + bar_w, y0 + bar_h], outline=(255, 255, 255))
        for label, y in (("hi", y0), ("lo", y0 + bar_h - 10 * scale)):
            tw = draw.textlength(label, font=font)
            draw.text((x1 - 3 * scale - tw, y), label, fill=(255, 255, 255), font=font, stroke_width=1,
                      stroke_fill=(0, 0, 0))
    if marker is not None:
        x, y = marker
        r = max(5, min(w, h) // 30)
        draw.ellipse([x - r, y - r, x + r, y + r], outline=(0, 0, 0), width=max(3, r // 3))
        draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 255, 255), width=max(1, r // 6))
    if text:
        draw.text((4 * scale, 3 * scale), text, fill=(255, 255, 255), font=font, stroke_width=max(1, scale),
                  stroke_fill=(0, 0, 0))
    return np.asarray(img)


def draw_overlay(image: np.ndarray, heat: np.ndarray, *, text: Optional[str] = None, alpha: float = DEFAULT_ALPHA,
                 colour_bar: bool = True, marker: Optional[tuple] = None, colormap: str = COLORMAP) -> np.ndarray:
    """The overlay as a picture: blended heat map, colour bar, text and peak marker (uint8 [H, W, 3])."""
    return annotate(blend_heatmap(image, heat, alpha=alpha, colormap=colormap), text=text,
                    colour_bar=colour_bar, marker=marker, colormap=colormap)


def overlay_figure(image: np.ndarray, heat: np.ndarray, *, gt: Optional[np.ndarray] = None,
                   pred: Optional[np.ndarray] = None, title: Optional[str] = None, alpha: float = DEFAULT_ALPHA,
                   width_in: float = 6.4):
    """A matplotlib figure: the picture | the overlay with a colour bar, in the picture's aspect ratio.

    ``gt`` (any size, > 0 inside) is outlined in white, ``pred`` (a boolean mask, any size) dashed
    in cyan; both are resized to the picture (nearest). The caller saves and closes the figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    image = np.asarray(image)
    h, w = image.shape[:2]
    fig_h = width_in / 2.1 * h / w + (0.45 if title else 0.15)
    fig = plt.figure(figsize=(width_in, fig_h))
    grid = fig.add_gridspec(1, 3, width_ratios=[1, 1, 0.035], wspace=0.04, left=0.01, right=0.93, bottom=0.03,
                            top=0.88 if title else 0.97)
    axes = [fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])]
    axes[0].imshow(image)
    axes[1].imshow(blend_heatmap(image, heat, alpha=alpha))
    for mask, style in ((gt, dict(colors="white", linewidths=1.4)),
                        (pred, dict(colors="cyan", linewidths=0.9, linestyles="dashed"))):
        if mask is not None and np.asarray(mask).max() > 0:
            axes[1].contour(_nearest(np.asarray(mask) > 0, h, w), levels=[0.5], **style)
    for ax in axes:
        ax.set_axis_off()
    bar = fig.colorbar(ScalarMappable(norm=Normalize(0, 1), cmap=COLORMAP), cax=fig.add_subplot(grid[0, 2]))
    bar.ax.tick_params(labelsize=6)
    bar.set_label("heat (min-max)", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=8)
    return fig


def _nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a 2-D mask to (height, width)."""
    mh, mw = mask.shape
    if (mh, mw) == (height, width):
        return mask.astype(np.float32)
    rows = np.minimum((np.arange(height) + 0.5) * mh / height, mh - 1).astype(int)
    cols = np.minimum((np.arange(width) + 0.5) * mw / width, mw - 1).astype(int)
    return mask[rows][:, cols].astype(np.float32)
