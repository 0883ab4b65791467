"""Synthetic scenes: a textured background, silent distractor objects and sounding objects.

A scene is described in resolution-free units (fractions of the frame, seconds), so the same
scene renders a 160x120 clip, a 224x224 AVSBench frame or a 256x256 Flickr image. Each class
has a fixed appearance (shape + colour) and a sound that identifies it.

Distractor looks (``distractor_looks``):
* ``class`` (the default, shortcut-free): distractors wear the looks of the set's OTHER classes,
  so every object in a frame is something that sounds somewhere in the set and only the audio
  says which one sounds here. A model must use the sound to localise.
* ``silent`` (a visual shortcut, for teaching): distractors wear looks of classes outside the set,
  which never sound. Appearance alone then finds the sounding object: a model trained on it
  keeps about half its score with silent or swapped audio (measured), which is why it is not
  the default.

Geometry is chosen for the median-threshold protocol (METHOD.md §5): a sounding object covers
25-50% of the frame (its box, or its silhouette when masks are the ground truth) and sits against
a frame edge rather than in the centre, so a centre prior scores poorly. Distractors are sized and
placed by the same rules, and the drawing order is random: size, position and being on top say
nothing about which object sounds. Picking one of the frame's objects blindly scores about
1 / (objects in the frame) (avloc.evaluation.object_prior).

Objects drift slowly; ``render`` draws a scene at any resolution and time.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

import numpy as np

from avloc.errors import InputError

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
DISTRACTOR_LOOKS = ("class", "silent")
DEFAULT_DISTRACTOR_LOOKS = "class"

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

# Frame share of the sounding object(s): a margin inside 25-50% (see sample_scene).
SOUNDING_AREA = (0.27, 0.48)

# Shapes that fill most of their box, so a 25%+ silhouette fits in the frame.
SHAPES = ("ellipse", "rectangle", "hexagon", "cross", "octagon", "rounded")
SHAPE_FILL = {"ellipse": np.pi / 4, "rectangle": 1.0, "hexagon": 0.75, "cross": 0.75, "octagon": 0.875, "rounded": 0.95}


def class_names(n_classes: int) -> list:
    if not 1 <= n_classes <= MAX_CLASSES:
        raise InputError(f"n_classes must be between 1 and {MAX_CLASSES}, got {n_classes}")
    return list(CLASS_NAMES[:n_classes])


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


def distractor_pool(sounding_classes: list, n_classes: int, looks: str = DEFAULT_DISTRACTOR_LOOKS) -> list:
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


def distractor_problems(n_classes: int, looks: str) -> List[str]:
    """Why distractors cannot take ``looks`` with ``n_classes`` classes (empty when they can)."""
    try:
        distractor_pool([0], n_classes, looks)
    except ValueError as exc:
        return [str(exc)]
    return []


def sample_scene(
    rng: np.random.Generator,
    sounding_classes: list,
    n_classes: int,
    *,
    reference_time: float,
    n_distractors: Optional[int] = None,
    area_range: tuple = SOUNDING_AREA,
    size_by: str = "box",
    drift: float = 0.01,
    distractor_looks: str = DEFAULT_DISTRACTOR_LOOKS,
    avoid_looks: tuple = (),
) -> Scene:
    """Sample a scene with the given sounding classes (one, or several for multi-source).

    Every object, sounding or not, covers a fraction of the frame drawn from ``area_range`` divided
    by the number of sounding classes (so one sounding object covers ``area_range``, several share
    it), measured on its box (``size_by="box"``, VGG-SS/Flickr style) or on its silhouette
    (``"mask"``, AVSBench style); the default keeps a margin inside 25-50% because a rasterised
    shape's tight box is up to a pixel smaller per side than its nominal one. Nothing but the sound
    tells the sounding objects from the distractors: which object slots sound is drawn first, every
    object is sized and placed by the same rules (against a frame edge, overlapping the objects
    placed before as little as possible), the drawing order is random, and the scene is drawn again
    until no object is more than ``MAX_HIDDEN`` covered, dropping distractors from frames too crowded
    for that (so ``n_distractors``, 2-3 when not given, is an upper bound; never below
    ``MIN_DISTRACTORS``). ``distractor_looks``: see the module docstring.
    ``avoid_looks``: classes no distractor may wear besides the sounding ones (a duet frame must not
    show its partner's class: the mixture makes that class sound too).
    """
    others = distractor_pool(list(sounding_classes) + list(avoid_looks), n_classes, distractor_looks)
    if n_distractors is None:
        n_distractors = int(rng.integers(2, 4))
    k = len(sounding_classes)
    n = k + n_distractors
    sounding_slots = set(rng.choice(n, size=k, replace=False).tolist())  # the geometry never looks at it
    classes = iter(sounding_classes)
    slots = [(next(classes), True) if i in sounding_slots else (int(rng.choice(others)), False) for i in range(n)]
    while True:
        hidden, drawn = _least_covered_draw(rng, slots, area_range, k, size_by, drift)
        distractor_slots = [i for i, (_, sounding) in enumerate(slots) if not sounding]
        if hidden <= MAX_HIDDEN or len(distractor_slots) <= MIN_DISTRACTORS:
            return _with_background(rng, drawn, reference_time)
        slots.pop(int(rng.choice(distractor_slots)))  # too crowded to keep every object mostly in view


# Objects cover 25-50% of the frame each, so they overlap. A scene is drawn up to
# SCENE_TRIES times, stopping once no object has more than MAX_HIDDEN of its box covered by the
# objects drawn over it; when no draw gets there, a distractor (drawn at random) leaves the frame and
# the scene is drawn again, down to MIN_DISTRACTORS. Without that step about half the scenes kept an
# object more than 30% covered (the 95th percentile 59%), and where that object was the sounding one
# its box, drawn around the whole silhouette (render.sounding_box), held much of another object: a map
# on the visible sounding object then failed the box (on a fresh 200-item copy, AP50 0.32 where over
# 30% of the sounding object was hidden, pointing 0.95). Now (400 scenes asking for 2-3 distractors):
# no object is more than 30% covered, the median scene's most covered one 25%; 378 frames hold 3
# objects, 21 hold 2, 1 holds 4 (four such objects rarely fit). Every object is held to the same
# rule, so being whole says nothing about which one sounds.
MAX_HIDDEN = 0.3
SCENE_TRIES = 40
MIN_DISTRACTORS = 1


def _least_covered_draw(rng, slots: list, area_range: tuple, k: int, size_by: str, drift: float) -> tuple:
    """(most-covered share, objects in drawing order) of the least covered of up to SCENE_TRIES draws."""
    best = None
    for _ in range(SCENE_TRIES):
        placed: list = []  # boxes so far
        objects = [_place_object(rng, cls, sounding, rng.uniform(*area_range) / k, size_by, placed, drift)
                   for cls, sounding in slots]
        drawn = [objects[i] for i in rng.permutation(len(objects))]
        hidden = _most_hidden(drawn)
        if best is None or hidden < best[0]:
            best = (hidden, drawn)
        if hidden <= MAX_HIDDEN:
            break
    return best


def _most_hidden(drawn: list) -> float:
    """The largest share of any object's box that the objects drawn after it cover (overlaps summed)."""
    boxes = [_box_of(o.cx, o.cy, o.w, o.h) for o in drawn]
    return max((sum(_overlap(b, later) for later in boxes[i + 1:]) / max((b[2] - b[0]) * (b[3] - b[1]), 1e-9)
                for i, b in enumerate(boxes)), default=0.0)


def _velocity(rng: np.random.Generator, drift: float) -> tuple[float, float]:
    ang = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.3, 1.0) * drift
    return float(speed * np.cos(ang)), float(speed * np.sin(ang))


def _place_object(rng, cls: int, sounding: bool, area: float, size_by: str, placed: list, drift: float) -> SceneObject:
    """An object against a frame edge, overlapping the ones placed before as little as possible."""
    fill = SHAPE_FILL[class_appearance(cls)[0]] if size_by == "mask" else 1.0
    w, h = _size_for_area(rng, area / fill)
    best = None
    for _ in range(60):
        cx, cy = _edge_position(rng, w, h)
        ov = sum(_overlap(_box_of(cx, cy, w, h), p) for p in placed)
        if best is None or ov < best[0]:
            best = (ov, cx, cy)
        if ov == 0:
            break
    _, cx, cy = best
    placed.append(_box_of(cx, cy, w, h))
    vx, vy = _velocity(rng, drift)
    return SceneObject(cls, cx, cy, w, h, vx, vy, sounding=sounding)


def _with_background(rng, objects: list, reference_time: float) -> Scene:
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
        objects=objects,
        reference_time=float(reference_time),
    )
