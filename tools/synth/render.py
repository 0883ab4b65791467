"""Drawing a synthetic scene: silhouettes, the background, frames and label maps, exact boxes.

An object is rasterised once (its sprite at the reference time) and pasted at whole-pixel
offsets for other times, so at the reference time (the clip's centre frame) the silhouette, and
hence the recorded box, is exact.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from avloc.tools.synth.scene import BACKGROUND_RANGE, Scene, SceneObject


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test on coordinates normalised so the shape's box is [-1, 1] x [-1, 1]."""
    au, av = np.abs(u), np.abs(v)
    inside_box = (au <= 1) & (av <= 1)
    if shape == "ellipse":
        return u * u + v * v <= 1
    if shape == "rectangle":
        return inside_box
    if shape == "hexagon":
        return inside_box & (au <= 1 - av / 2)
    if shape == "cross":
        return inside_box & ((au <= 0.5) | (av <= 0.5))
    if shape == "octagon":
        return inside_box & (au + av <= 1.5)
    if shape == "rounded":
        r = 0.3
        cu, cv = np.maximum(au - (1 - r), 0), np.maximum(av - (1 - r), 0)
        return inside_box & (cu * cu + cv * cv <= r * r)
    raise ValueError(f"unknown shape {shape!r}")


@dataclasses.dataclass
class Sprite:
    """An object's rasterised silhouette at the reference time, in pixel coordinates."""

    x0: int
    y0: int
    mask: np.ndarray  # bool [h, w]
    pixels: np.ndarray  # uint8 [h, w, 3], the shaded colour (valid where mask)


def rasterise(obj: SceneObject, width: int, height: int) -> Sprite:
    """Pixel (i, j) is inside when its centre is inside the shape."""
    px0, px1 = (obj.cx - obj.w / 2) * width, (obj.cx + obj.w / 2) * width
    py0, py1 = (obj.cy - obj.h / 2) * height, (obj.cy + obj.h / 2) * height
    x0, x1 = int(np.floor(px0)), int(np.ceil(px1))
    y0, y1 = int(np.floor(py0)), int(np.ceil(py1))
    xs = (np.arange(x0, x1) + 0.5 - obj.cx * width) / (obj.w * width / 2)
    ys = (np.arange(y0, y1) + 0.5 - obj.cy * height) / (obj.h * height / 2)
    u, v = np.meshgrid(xs.astype(np.float32), ys.astype(np.float32))
    mask = _shape_mask(obj.shape, u, v)
    # Mild top-to-bottom shading so objects are not flat colour; small enough that the
    # colour stays unambiguous after lossy coding.
    shading = (1.0 - 0.08 * v)[..., None]
    pixels = np.clip(shading * np.asarray(obj.colour, np.float32), 0, 255).astype(np.uint8)
    return Sprite(x0, y0, mask, pixels)


def _offset_px(obj: SceneObject, t: float, reference_time: float, width: int, height: int) -> tuple[int, int]:
    dt = t - reference_time
    return int(round(obj.vx * dt * width)), int(round(obj.vy * dt * height))


def _paste(canvas: np.ndarray, sprite: Sprite, dx: int, dy: int, label_map: Optional[np.ndarray], label: int) -> None:
    h, w = sprite.mask.shape
    H, W = canvas.shape[:2]
    x0, y0 = sprite.x0 + dx, sprite.y0 + dy
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + w, W), min(y0 + h, H)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    sub = (slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0))
    m = sprite.mask[sub]
    if canvas.dtype == np.uint8:
        np.copyto(canvas[cy0:cy1, cx0:cx1], sprite.pixels[sub], where=m[..., None])
    if label_map is not None:
        label_map[cy0:cy1, cx0:cx1][m] = label


def render_background(scene: Scene, width: int, height: int) -> np.ndarray:
    """Gradient between two greyish colours plus smooth and fine noise; uint8 [H, W, 3]."""
    rng = np.random.default_rng(scene.background_seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    a = scene.gradient_angle
    g = (np.cos(a) * xx / max(width - 1, 1) + np.sin(a) * yy / max(height - 1, 1))
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
    c0, c1 = (np.asarray(c, np.float32) for c in scene.background_colours)
    img = c0 + g[..., None] * (c1 - c0)
    # Smooth blotches: coarse noise upsampled bilinearly (resolution-independent look).
    coarse = rng.standard_normal((7, 9)).astype(np.float32)
    ys = np.linspace(0, coarse.shape[0] - 1, height, dtype=np.float32)
    xs = np.linspace(0, coarse.shape[1] - 1, width, dtype=np.float32)
    y0 = np.minimum(ys.astype(int), coarse.shape[0] - 2)
    x0 = np.minimum(xs.astype(int), coarse.shape[1] - 2)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    blotch = (coarse[y0][:, x0] * (1 - fy) * (1 - fx) + coarse[y0 + 1][:, x0] * fy * (1 - fx)
              + coarse[y0][:, x0 + 1] * (1 - fy) * fx + coarse[y0 + 1][:, x0 + 1] * fy * fx)
    fine = rng.standard_normal((height, width)).astype(np.float32)
    lum = scene.texture_strength * (18.0 * blotch + 6.0 * fine)
    # Kept away from black and white, which are object colours.
    return np.clip(img + lum[..., None], BACKGROUND_RANGE[0], BACKGROUND_RANGE[1]).round().astype(np.uint8)


class SceneRenderer:
    """Renders one scene at one resolution, reusing the background and the sprites."""

    def __init__(self, scene: Scene, width: int, height: int):
        self.scene, self.width, self.height = scene, width, height
        self.sprites = [rasterise(o, width, height) for o in scene.objects]
        self._background = None

    @property
    def background(self) -> np.ndarray:
        if self._background is None:
            self._background = render_background(self.scene, self.width, self.height)
        return self._background

    def labels(self, t: float) -> np.ndarray:
        """int16 [H, W]: index into scene.objects of the visible object, -1 for background."""
        labels = np.full((self.height, self.width), -1, np.int16)
        no_pixels = np.empty((self.height, self.width, 0), np.float32)  # labels only
        for i, (obj, sprite) in enumerate(zip(self.scene.objects, self.sprites)):
            dx, dy = _offset_px(obj, t, self.scene.reference_time, self.width, self.height)
            _paste(no_pixels, sprite, dx, dy, labels, i)
        return labels

    def render(self, t: float, with_labels: bool = False):
        """RGB uint8 [H, W, 3] at time t; with_labels also returns an int16 map of the
        visible object at each pixel (-1 background, else the index into scene.objects)."""
        canvas = self.background.copy()
        labels = np.full((self.height, self.width), -1, np.int16) if with_labels else None
        for i, (obj, sprite) in enumerate(zip(self.scene.objects, self.sprites)):
            dx, dy = _offset_px(obj, t, self.scene.reference_time, self.width, self.height)
            _paste(canvas, sprite, dx, dy, labels, i)
        return (canvas, labels) if with_labels else canvas

    def offsets(self, t: float) -> tuple:
        """Whole-pixel offsets of every object at time t: equal offsets mean equal frames."""
        return tuple(_offset_px(o, t, self.scene.reference_time, self.width, self.height) for o in self.scene.objects)

    def sounding_mask(self, t: float) -> np.ndarray:
        """Visible silhouette of all sounding objects at time t (bool [H, W])."""
        labels = self.labels(t)
        idx = [i for i, o in enumerate(self.scene.objects) if o.sounding]
        return np.isin(labels, idx)


def mask_box(mask: np.ndarray) -> Optional[list]:
    """Tight box of a boolean mask as fractions [x1, y1, x2, y2] (x2, y2 exclusive edges)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    H, W = mask.shape
    return [float(xs.min()) / W, float(ys.min()) / H, float(xs.max() + 1) / W, float(ys.max() + 1) / H]


def object_mask(renderer: SceneRenderer, obj_index: int, t: float) -> np.ndarray:
    """One object's own silhouette at time t (bool [H, W]), as drawn alone: hidden parts included."""
    obj, sprite = renderer.scene.objects[obj_index], renderer.sprites[obj_index]
    dx, dy = _offset_px(obj, t, renderer.scene.reference_time, renderer.width, renderer.height)
    labels = np.full((renderer.height, renderer.width), -1, np.int16)
    _paste(np.empty((renderer.height, renderer.width, 0), np.float32), sprite, dx, dy, labels, 0)
    return labels == 0


def object_box(renderer: SceneRenderer, obj_index: int, t: float) -> Optional[list]:
    """Box of one object's own silhouette at time t (as drawn, before any occlusion)."""
    return mask_box(object_mask(renderer, obj_index, t))


def union_box(boxes: list) -> Optional[list]:
    """The smallest box holding every box given (None entries ignored), or None."""
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]


def sounding_box(renderer: SceneRenderer, t: float) -> Optional[list]:
    """The box ground truth of a frame: around the sounding objects' whole silhouettes, as an annotator
    boxes a partly hidden object (scene.sample_scene keeps how much of it others hide low, not zero)."""
    return union_box([object_box(renderer, i, t) for i, o in enumerate(renderer.scene.objects) if o.sounding])
