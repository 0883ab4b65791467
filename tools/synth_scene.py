"""Synthetic scenes: a textured background, silent distractor objects and sounding objects.

A scene is described in resolution-free units (fractions of the frame, seconds), so the same
scene renders a 160x120 clip, a 224x224 AVSBench frame or a 256x256 Flickr image. Each class
has a fixed appearance (shape + colour). Distractors wear, by default, the appearances of classes
outside the set, which never sound in it ("silent" looks), as in real footage where the visible
but silent things are mostly not other sound classes; ``distractor_looks="class"`` makes them wear
the other sounding classes' looks instead, a harder and partly ambiguous set (a pair logit that is
a max over positions then finds a clip's own sound's look in many other clips' frames).

Geometry is chosen for the median-threshold protocol (fnac.md 5): a sounding object covers
25-50% of the frame (its box, or its silhouette when masks are the ground truth), sits against
a frame edge rather than in the centre, and the distractors are of comparable size and sit
away from it, so neither a centre prior nor picking an object blindly scores well.

Objects drift slowly. An object is rasterised once (its sprite at the reference time) and
pasted at whole-pixel offsets for other times, so at the reference time (the clip's centre
frame) the silhouette, and hence the recorded box, is exact.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

# Real VGG-Sound class names; several contain commas so csv quoting is exercised.
CLASS_NAMES = (
    "dog barking",
    "engine accelerating, revving, vroom",
    "church bell ringing",
    "playing violin, fiddle",
    "lions roaring",
    "bird chirping, tweeting",
    "train horning",
    "cat meowing",
    "helicopter",
    "pigeon, dove cooing",
    "playing drum kit",
    "vehicle horn, car horn, honking",
    "typing on computer keyboard",
    "playing marimba, xylophone",
    "ambulance siren",
    "female speech, woman speaking",
)
MAX_CLASSES = len(CLASS_NAMES)
DISTRACTOR_LOOKS = ("silent", "class")

# Saturated colours, far apart in RGB and from the low-saturation background.
CLASS_COLOURS = (
    (230, 30, 30),  # red
    (30, 190, 40),  # green
    (40, 70, 235),  # blue
    (245, 220, 20),  # yellow
    (220, 40, 220),  # magenta
    (20, 220, 230),  # cyan
    (250, 130, 0),  # orange
    (140, 0, 230),  # violet
    (150, 240, 30),  # lime
    (250, 120, 180),  # pink
    (0, 130, 130),  # teal
    (140, 60, 10),  # brown
    (255, 255, 255),  # white
    (10, 10, 10),  # black
    (0, 40, 110),  # navy
    (160, 0, 60),  # crimson
)

# Background pixel values stay in this range (object colours sit outside it or are saturated).
BACKGROUND_RANGE = (55, 210)

# Shapes that fill most of their box, so a 25%+ silhouette fits in the frame.
SHAPES = ("ellipse", "rectangle", "hexagon", "cross", "octagon", "rounded")
SHAPE_FILL = {"ellipse": np.pi / 4, "rectangle": 1.0, "hexagon": 0.75, "cross": 0.75, "octagon": 0.875, "rounded": 0.95}


def class_appearance(class_index: int) -> tuple[str, tuple[int, int, int]]:
    return SHAPES[class_index % len(SHAPES)], CLASS_COLOURS[class_index]


@dataclasses.dataclass
class SceneObject:
    """One object. Centre and size are fractions of the frame at the reference time."""

    class_index: int
    cx: float
    cy: float
    w: float
    h: float
    vx: float = 0.0  # drift, fractions of the frame per second
    vy: float = 0.0
    sounding: bool = False

    @property
    def shape(self) -> str:
        return class_appearance(self.class_index)[0]

    @property
    def colour(self) -> tuple[int, int, int]:
        return class_appearance(self.class_index)[1]


@dataclasses.dataclass
class Scene:
    """Background parameters plus objects in drawing order (sounding objects last, on top)."""

    background_seed: int
    background_colours: tuple  # two low-saturation RGB colours of the gradient
    gradient_angle: float
    texture_strength: float
    objects: list
    reference_time: float  # seconds; where drift is zero and boxes are exact

    @property
    def sounding(self) -> list:
        return [o for o in self.objects if o.sounding]


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


def object_box(renderer: SceneRenderer, obj_index: int, t: float) -> Optional[list]:
    """Box of one object's own silhouette at time t (as drawn, before any occlusion)."""
    obj, sprite = renderer.scene.objects[obj_index], renderer.sprites[obj_index]
    dx, dy = _offset_px(obj, t, renderer.scene.reference_time, renderer.width, renderer.height)
    labels = np.full((renderer.height, renderer.width), -1, np.int16)
    _paste(np.empty((renderer.height, renderer.width, 0), np.float32), sprite, dx, dy, labels, 0)
    return mask_box(labels == 0)


# ---------------------------------------------------------------- layout sampling

def _overlap(a: tuple, b: tuple) -> float:
    """Intersection area of two boxes (x1, y1, x2, y2)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def _box_of(cx, cy, w, h) -> tuple:
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _size_for_area(rng: np.random.Generator, box_area: float, max_side: float = 0.96) -> tuple[float, float]:
    for _ in range(100):
        aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
        w, h = np.sqrt(box_area * aspect), np.sqrt(box_area / aspect)
        if w <= max_side and h <= max_side:
            return float(w), float(h)
    side = float(np.sqrt(box_area))
    return side, side


def _edge_position(rng: np.random.Generator, w: float, h: float) -> tuple[float, float]:
    """A centre that puts the box against one or two frame edges (never centred)."""
    margin = 0.02
    lo_x, hi_x = w / 2 + margin, 1 - w / 2 - margin
    lo_y, hi_y = h / 2 + margin, 1 - h / 2 - margin
    hi_x, hi_y = max(hi_x, lo_x), max(hi_y, lo_y)
    corner = rng.random() < 0.6
    side_x = lo_x if rng.random() < 0.5 else hi_x
    side_y = lo_y if rng.random() < 0.5 else hi_y
    if corner:
        cx = side_x + rng.uniform(-0.03, 0.03)
        cy = side_y + rng.uniform(-0.03, 0.03)
    elif rng.random() < 0.5:  # against a vertical edge, anywhere along it
        cx, cy = side_x, rng.uniform(lo_y, hi_y)
    else:
        cx, cy = rng.uniform(lo_x, hi_x), side_y
    return float(np.clip(cx, w / 2, 1 - w / 2)), float(np.clip(cy, h / 2, 1 - h / 2))


def distractor_pool(sounding_classes: list, n_classes: int, looks: str = "silent") -> list:
    """Class indices whose appearances distractors may wear."""
    if looks == "silent":
        pool = list(range(n_classes, MAX_CLASSES))
        if not pool:
            raise ValueError(f"silent distractor looks need at most {MAX_CLASSES - 1} classes "
                             f"(got {n_classes}); use distractor looks 'class' (--distractors class)")
        return pool
    if looks != "class":
        raise ValueError(f"distractor looks must be one of {', '.join(DISTRACTOR_LOOKS)}, got {looks!r}")
    others = [c for c in range(n_classes) if c not in sounding_classes]
    # With a single class, appearances of classes outside the set (never sounding here).
    return others or [c for c in range(MAX_CLASSES) if c not in sounding_classes]


def sample_scene(
    rng: np.random.Generator,
    sounding_classes: list,
    n_classes: int,
    *,
    reference_time: float,
    n_distractors: Optional[int] = None,
    area_range: tuple = (0.27, 0.48),
    size_by: str = "box",
    drift: float = 0.01,
    distractor_scale: tuple = (1.0, 1.8),
    distractor_looks: str = "silent",
) -> Scene:
    """Sample a scene with the given sounding classes (one, or several for multi-source).

    ``area_range`` is the total frame fraction the sounding objects cover, measured on their
    boxes (``size_by="box"``, VGG-SS/Flickr style) or on their silhouettes (``"mask"``,
    AVSBench style); the default keeps a margin inside 25-50% because a rasterised shape's
    tight box is up to a pixel smaller per side than its nominal one. Distractors are as large
    as the sounding object or larger (``distractor_scale``), so "the biggest object" is not
    the answer either, and are placed to overlap it as little as possible. ``distractor_looks``:
    see the module docstring.
    """
    others = distractor_pool(sounding_classes, n_classes, distractor_looks)
    if n_distractors is None:
        n_distractors = int(rng.integers(2, 4))
    total = rng.uniform(*area_range)
    k = len(sounding_classes)
    shares = rng.dirichlet([4.0] * k) if k > 1 else np.array([1.0])

    def velocity():
        ang = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(0.3, 1.0) * drift
        return float(speed * np.cos(ang)), float(speed * np.sin(ang))

    sounding, placed = [], []
    for cls, share in zip(sounding_classes, shares):
        fill = SHAPE_FILL[class_appearance(cls)[0]] if size_by == "mask" else 1.0
        w, h = _size_for_area(rng, total * share / fill)
        best = None
        for _ in range(60):
            cx, cy = _edge_position(rng, w, h)
            box = _box_of(cx, cy, w, h)
            ov = sum(_overlap(box, p) for p in placed)
            if best is None or ov < best[0]:
                best = (ov, cx, cy)
            if ov == 0:
                break
        _, cx, cy = best
        placed.append(_box_of(cx, cy, w, h))
        vx, vy = velocity()
        sounding.append(SceneObject(cls, cx, cy, w, h, vx, vy, sounding=True))

    distractors = []
    sounding_boxes = list(placed)
    for _ in range(n_distractors):
        cls = int(rng.choice(others))
        area = rng.uniform(*distractor_scale) * total / k
        area = float(np.clip(area, 0.08, 0.55))
        w, h = _size_for_area(rng, area, max_side=0.9)
        best = None
        for _ in range(60):
            cx = rng.uniform(w / 2, 1 - w / 2)
            cy = rng.uniform(h / 2, 1 - h / 2)
            box = _box_of(cx, cy, w, h)
            # Keep clear of the sounding objects (heavily weighted) and of each other.
            cost = (4 * sum(_overlap(box, p) for p in sounding_boxes)
                    + sum(_overlap(box, p) for p in placed[len(sounding_boxes):]))
            if best is None or cost < best[0]:
                best = (cost, cx, cy)
        _, cx, cy = best
        placed.append(_box_of(cx, cy, w, h))
        vx, vy = velocity()
        distractors.append(SceneObject(cls, cx, cy, w, h, vx, vy, sounding=False))

    grey = rng.uniform(70, 190)
    colours = []
    for _ in range(2):
        base = grey + rng.uniform(-45, 45)
        tint = rng.uniform(-12, 12, size=3)
        colours.append(tuple(float(np.clip(base + t, *BACKGROUND_RANGE)) for t in tint))
    return Scene(
        background_seed=int(rng.integers(0, 2**31 - 1)),
        background_colours=tuple(colours),
        gradient_angle=float(rng.uniform(0, 2 * np.pi)),
        texture_strength=float(rng.uniform(0.5, 1.2)),
        objects=distractors + sounding,
        reference_time=float(reference_time),
    )
