"""Synthetic VGG-Sound-like clips: ``generate_clips``.

Each clip shows a textured background, silent distractor objects and one sounding object
whose appearance (shape + colour) and sound (tone ladder + temporal pattern) are tied to its
class. Output, for ``out``:

* ``clips/<ytid>_<start:06d>.<container>``  H.264 + AAC mp4 by default (webm: VP9 + Opus);
* ``vggsound.csv``   no header: youtube_id,start_seconds,label,split (labels csv-quoted);
* ``boxes.json``     vggss.json format: the sounding object's exact box at the centre frame
                     (frame index round(duration / 2 * fps)), fractions of width/height;
* ``synth.json``     the settings and per-clip details (resume check, analysis).

Everything is a function of the seed. Clips are written atomically and a rerun with the same
settings skips the clips already present.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

from avloc.errors import AvlocError, ConfigError, InputError
from avloc.schema import canonical_clip_id
from avloc.tools.synth.audio import class_frequency, render_mix, sample_sound
from avloc.tools.synth.encode import EncodeSettings, codec_problems, encode_clip, resolve_codecs
from avloc.tools.synth.jobs import ensure_output_dir, json_bytes, make_ytids, run_jobs, write_file
from avloc.tools.synth.render import SceneRenderer, object_box, sounding_box
from avloc.tools.synth.scene import (DEFAULT_DISTRACTOR_LOOKS, MAX_CLASSES, Scene, class_names, distractor_problems,
                                     sample_scene)
from avloc.utils.atomic import remove_stale_temps

MANIFEST_NAME = "synth.json"


def centre_frame_time(duration: float, fps: float) -> float:
    return round(duration / 2 * fps) / fps


@dataclasses.dataclass
class SynthSet:
    """A written set. Each item: id, ytid, start, label, class_index, split, bbox (the list
    of boxes as in boxes.json: ``[[x1, y1, x2, y2]]``, fractions), path (the clip),
    frequency_hz (its tone), distractors (class_index and box of each distractor)."""

    root: Path
    clips_dir: Path
    csv_path: Path
    boxes_path: Path
    manifest_path: Path
    classes: list
    items: list  # dicts: id, ytid, start, label, class_index, split, bbox [[x1,y1,x2,y2]], path, ...
    generated: int = 0  # clips written by this call (the rest were already present)


@dataclasses.dataclass
class ClipJob:
    """What a worker needs to write one clip (picklable)."""

    clip_id: str
    path: str
    scene: Scene
    sounds: list
    noise_seed: int
    settings: EncodeSettings


def run_clip_job(job: ClipJob) -> dict:
    """Worker entry point: render and encode one clip; never raises (errors are returned)."""
    start = time.perf_counter()
    try:
        s = job.settings
        renderer = SceneRenderer(job.scene, s.width, s.height)
        audio = render_mix(job.sounds, s.duration, s.sample_rate, job.noise_seed, channels=s.channels)
        encode_clip(Path(job.path), renderer, audio, s, noise_seed=job.noise_seed)
        return {"id": job.clip_id, "ok": True, "seconds": time.perf_counter() - start}
    except Exception as exc:  # reported to the caller, which fails the run with the reason
        return {"id": job.clip_id, "ok": False, "error": f"{type(exc).__name__}: {exc}"}


def tone_problems(n_classes: int, sample_rate: int) -> List[str]:
    """The highest class tone (with its detune margin) must stay below the Nyquist frequency."""
    if max(class_frequency(i) for i in range(min(max(n_classes, 1), MAX_CLASSES))) * 1.1 > sample_rate / 2:
        return [f"sample rate {sample_rate} Hz is too low for {n_classes} classes' tones"]
    return []


def clip_problems(n_clips, *, n_classes, duration, fps, width, height, container, video_codec, audio_codec,
                  sample_rate, channels, frame_noise, test_fraction, distractor_looks) -> List[str]:
    """Every reason ``generate_clips`` cannot write these clips (named by its arguments)."""
    found = []
    if n_clips < 1:
        found.append(f"n_clips must be at least 1, got {n_clips}")
    if not 1 <= n_classes <= MAX_CLASSES:
        found.append(f"n_classes must be between 1 and {MAX_CLASSES}, got {n_classes}")
    if duration <= 0 or fps <= 0:
        found.append(f"duration and fps must be positive, got {duration} s at {fps} fps")
    if width < 16 or height < 16:
        found.append(f"frame size must be at least 16x16, got {width}x{height}")
    if sample_rate < 8000 or channels not in (1, 2):
        found.append(f"audio must be >= 8000 Hz with 1 or 2 channels, got {sample_rate} Hz x {channels}")
    if not 0 <= frame_noise <= 32:
        found.append(f"frame_noise must be in [0, 32] (8-bit levels), got {frame_noise}")
    if not 0 <= test_fraction <= 1:
        found.append(f"test_fraction must be in [0, 1], got {test_fraction}")
    found += tone_problems(n_classes, sample_rate)
    found += codec_problems(container, video_codec, audio_codec)
    return found + distractor_problems(n_classes, distractor_looks)


def plan_clips(n_clips: int, *, seed: int, n_classes: int, duration: float, test_fraction: float,
               distractor_looks: str = DEFAULT_DISTRACTOR_LOOKS) -> list:
    """Ids, labels, splits, scenes and sounds of a set; a pure function of its arguments."""
    names = class_names(n_classes)
    rng = np.random.default_rng([seed, 7021])
    ytids = make_ytids(rng, n_clips)
    starts = rng.integers(0, 600, size=n_clips)
    classes = rng.permutation(np.arange(n_clips) % n_classes)
    n_test = int(round(n_clips * test_fraction))
    if test_fraction > 0 and n_test == 0 and n_clips >= 2:
        n_test = 1
    test_idx = set(rng.permutation(n_clips)[:n_test].tolist())
    t_ref = duration / 2
    plans = []
    for i in range(n_clips):
        crng = np.random.default_rng([seed, 7022, i])
        cls = int(classes[i])
        scene = sample_scene(crng, [cls], n_classes, reference_time=t_ref, distractor_looks=distractor_looks)
        plans.append({
            "id": canonical_clip_id(ytids[i], int(starts[i])),
            "ytid": ytids[i],
            "start": int(starts[i]),
            "label": names[cls],
            "class_index": cls,
            "split": "test" if i in test_idx else "train",
            "scene": scene,
            "sounds": [sample_sound(crng, cls)],
            "noise_seed": int(crng.integers(0, 2**31 - 1)),
        })
    return plans


def generate_clips(
    out_dir,
    n_clips: int,
    *,
    seed: int = 0,
    n_classes: int = 4,
    duration: float = 10.0,
    fps: float = 25,
    width: int = 320,
    height: int = 240,
    container: str = "mp4",
    video_codec: Optional[str] = None,
    audio_codec: Optional[str] = None,
    sample_rate: int = 16000,
    channels: int = 1,
    test_fraction: float = 0.2,
    frame_noise: float = 0.0,
    distractor_looks: str = DEFAULT_DISTRACTOR_LOOKS,
    workers: int = 1,
    progress: bool = False,
    overwrite: bool = False,
) -> SynthSet:
    """Write ``n_clips`` synthetic clips plus vggsound.csv and boxes.json under ``out_dir``.

    ``video_codec``/``audio_codec`` default to the container's usual pair (mp4/mkv: libx264 +
    aac; webm: libvpx-vp9 + libopus). ``frame_noise`` > 0 adds per-frame sensor noise of that
    standard deviation (8-bit levels): slower to write, but every frame then differs, as in real
    footage, which matters when the clips are used to measure decoding throughput.
    ``distractor_looks``: "class" (distractors look like the set's other classes: shortcut-free) or
    "silent" (they look like classes outside the set: a visual shortcut); see avloc.tools.synth.scene. Wrong arguments
    raise one ConfigError listing every problem.
    """
    found = clip_problems(n_clips, n_classes=n_classes, duration=duration, fps=fps, width=width, height=height,
                          container=container, video_codec=video_codec, audio_codec=audio_codec,
                          sample_rate=sample_rate, channels=channels, frame_noise=frame_noise,
                          test_fraction=test_fraction, distractor_looks=distractor_looks)
    if found:
        raise ConfigError(found)
    video_codec, audio_codec = resolve_codecs(container, video_codec, audio_codec)
    names = class_names(n_classes)
    root = Path(out_dir)
    clips_dir = root / "clips"
    ensure_output_dir(clips_dir)
    settings_record = {
        "n_clips": n_clips, "seed": seed, "n_classes": n_classes, "duration": duration, "fps": fps,
        "width": width, "height": height, "container": container, "video_codec": video_codec,
        "audio_codec": audio_codec, "sample_rate": sample_rate, "channels": channels,
        "test_fraction": test_fraction, "frame_noise": frame_noise, "distractor_looks": distractor_looks,
    }
    manifest_path = root / MANIFEST_NAME
    _start_manifest(manifest_path, settings_record, overwrite)
    remove_stale_temps(clips_dir)  # left by a killed run

    settings = EncodeSettings(container, video_codec, audio_codec, width, height, float(fps), float(duration),
                              sample_rate, channels, threads=1 if workers > 1 else 0, frame_noise=frame_noise)
    t_centre = centre_frame_time(duration, fps)
    plans = plan_clips(n_clips, seed=seed, n_classes=n_classes, duration=duration, test_fraction=test_fraction,
                       distractor_looks=distractor_looks)
    items, jobs = _items_and_jobs(plans, clips_dir, settings, t_centre, overwrite)
    results = run_jobs(jobs, run_clip_job, workers, progress, "synth clips", unit="clip")
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise AvlocError(f"{len(failed)} of {len(jobs)} synthetic clips failed; "
                         f"first: {failed[0]['id']}: {failed[0]['error']}")

    csv_path, boxes_path = root / "vggsound.csv", root / "boxes.json"
    write_file(csv_path, _csv_bytes(items))
    write_file(boxes_path, json_bytes([{"file": it["id"], "class": it["label"], "bbox": it["bbox"]} for it in items]))
    write_file(manifest_path, json_bytes({"settings": settings_record, "complete": True, "classes": names,
                                          "centre_frame_time": t_centre, "items": items}))
    return SynthSet(root, clips_dir, csv_path, boxes_path, manifest_path, names, items, generated=len(jobs))


def _start_manifest(manifest_path: Path, settings_record: dict, overwrite: bool) -> None:
    """Refuse a folder made with other settings; write the settings first, so an interrupted run
    is resumed only with the same settings."""
    if manifest_path.exists() and not overwrite:
        try:
            previous = json.loads(manifest_path.read_text()).get("settings")
        except (OSError, ValueError):
            previous = None
        if previous != settings_record:
            raise InputError(f"{manifest_path.parent} holds a synthetic set made with other settings; "
                             "use a new folder or overwrite it (--overwrite)")
    if overwrite or not manifest_path.exists():
        write_file(manifest_path, json_bytes({"settings": settings_record, "complete": False}))


def _items_and_jobs(plans: list, clips_dir: Path, settings: EncodeSettings, t_centre: float, overwrite: bool):
    """Per clip: its record (with the exact boxes at the centre frame), and a job unless it is already written."""
    items, jobs = [], []
    for p in plans:
        scene = dataclasses.replace(p["scene"], reference_time=t_centre)
        renderer = SceneRenderer(scene, settings.width, settings.height)
        box = sounding_box(renderer, t_centre)
        path = clips_dir / f"{p['id']}.{settings.container}"
        distractors = [i for i, o in enumerate(scene.objects) if not o.sounding]
        items.append({
            "id": p["id"], "ytid": p["ytid"], "start": p["start"], "label": p["label"],
            "class_index": p["class_index"], "split": p["split"], "bbox": [box], "path": str(path),
            "frequency_hz": class_frequency(p["class_index"]) * p["sounds"][0].detune,
            "distractors": [{"class_index": scene.objects[i].class_index,
                             "bbox": object_box(renderer, i, t_centre)} for i in distractors],
        })
        if overwrite or not path.exists():
            jobs.append(ClipJob(p["id"], str(path), scene, p["sounds"], p["noise_seed"],
                                settings))
    return items, jobs


def _csv_bytes(items: list) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for it in items:
        writer.writerow([it["ytid"], it["start"], it["label"], it["split"]])
    return buf.getvalue().encode("utf-8")
