"""A clip for checking localisation over time: the sounding object moves, and falls silent for a while.

``write_tracking_clip`` draws a scene of the synthetic set (the sounding object plus distractors
that look like the set's other classes) in which the sounding object crosses the frame at
``speed`` (fractions of the frame per second, heading for the far side), and whose audio is
the object's class sound with digital silence over ``pause`` (noise included: nothing at all).
It returns the truth needed to score a localisation: the object's box at any time and the
silent span.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from avloc.tools.synth.audio import render_mix, sample_sound
from avloc.tools.synth.encode import EncodeSettings, encode_clip
from avloc.tools.synth.render import SceneRenderer, object_box
from avloc.tools.synth.scene import sample_scene


@dataclasses.dataclass
class TrackingClip:
    path: Path
    class_index: int
    duration: float
    pause: tuple  # (start, end) seconds of digital silence
    width: int
    height: int
    renderer: SceneRenderer
    sounding_index: int  # index of the sounding object in renderer.scene.objects

    def box_at(self, t: float) -> list:
        """The sounding object's box at time ``t`` in pixels [x0, y0, x1, y1] (exclusive edges)."""
        fx0, fy0, fx1, fy1 = object_box(self.renderer, self.sounding_index, t)
        return [fx0 * self.width, fy0 * self.height, fx1 * self.width, fy1 * self.height]


def write_tracking_clip(path, *, seed: int = 0, n_classes: int = 8, class_index: int = 0, duration: float = 14.0,
                        pause: tuple = (5.0, 10.0), speed: float = 0.04, fps: float = 25, width: int = 192,
                        height: int = 144, sample_rate: int = 16000) -> TrackingClip:
    """Write the clip (H.264 + AAC mp4) to ``path``; see the module docstring."""
    rng = np.random.default_rng([seed, 7301])
    scene = sample_scene(rng, [class_index], n_classes, reference_time=0.0)
    index = next(i for i, o in enumerate(scene.objects) if o.sounding)
    obj = scene.objects[index]
    dx, dy = 0.5 - obj.cx, 0.5 - obj.cy  # towards the centre, and on to the far side
    norm = math.hypot(dx, dy) or 1.0
    scene.objects[index] = dataclasses.replace(obj, vx=speed * dx / norm, vy=speed * dy / norm)
    renderer = SceneRenderer(scene, width, height)
    audio = render_mix([sample_sound(rng, class_index)], duration, sample_rate, int(rng.integers(0, 2**31 - 1)))
    a, b = (int(round(s * sample_rate)) for s in pause)
    audio[a:b] = 0.0
    settings = EncodeSettings(container="mp4", video_codec="libx264", audio_codec="aac", width=width, height=height,
                              fps=fps, duration=duration, sample_rate=sample_rate, channels=1)
    encode_clip(Path(path), renderer, audio, settings)
    return TrackingClip(path=Path(path), class_index=class_index, duration=duration, pause=tuple(pause), width=width,
                        height=height, renderer=renderer, sounding_index=index)


def score_tracking(clip: TrackingClip, rows: list, edge: float = 0.1) -> dict:
    """Hit rate of the peak on the sounding object over the instants whose whole audio window
    sounds, and agreement of the ``silent`` flag with the truth over the instants whose window
    is wholly inside the pause or wholly outside it (windows within ``edge`` s of the pause's
    edges are left out: lossy audio coding smears the edge)."""
    a, b = clip.pause
    hits = sounding = silent_ok = silent_n = flagged_in_pause = in_pause = 0
    for row in rows:
        w0, w1 = row["window_start"], row["window_end"]
        inside = w0 >= a + edge and w1 <= b - edge
        outside = w1 <= a - edge or w0 >= b + edge
        if outside:
            sounding += 1
            x0, y0, x1, y1 = clip.box_at(row["frame_time"])
            hits += int(x0 <= row["peak_x"] <= x1 and y0 <= row["peak_y"] <= y1)
        if inside or outside:
            silent_n += 1
            silent_ok += int(row["silent"] == inside)
        if inside:
            in_pause += 1
            flagged_in_pause += int(row["silent"])
    return {"sounding_instants": sounding, "hits": hits, "hit_rate": hits / sounding if sounding else float("nan"),
            "pause_instants": in_pause, "pause_flagged_silent": flagged_in_pause,
            "silent_flag_agreement": silent_ok / silent_n if silent_n else float("nan")}
