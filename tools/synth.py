"""Synthetic VGG-Sound-like clips: ``generate_clips`` (and ``write_benchmark``, re-exported).

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
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Optional

import numpy as np

from avloc.errors import AvlocError, InputError
from avloc.ffmpeg_bin import ffmpeg_exe
from avloc.schema import canonical_clip_id
from avloc.tools.shard_writer import atomic_write_bytes
from avloc.tools.synth_audio import class_frequency, render_mix, sample_sound, to_pcm16
from avloc.tools.synth_scene import (CLASS_NAMES, MAX_CLASSES, Scene, SceneRenderer, distractor_pool, mask_box, object_box,
                                     sample_scene)

YTID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
CONTAINERS = {"mp4": "mp4", "webm": "webm", "mkv": "matroska"}
DEFAULT_CODECS = {"mp4": ("libx264", "aac"), "mkv": ("libx264", "aac"), "webm": ("libvpx-vp9", "libopus")}
WEBM_VIDEO = {"libvpx", "libvpx-vp9", "libaom-av1", "libsvtav1"}
WEBM_AUDIO = {"libopus", "opus", "libvorbis", "vorbis"}
OPUS_RATES = {8000, 12000, 16000, 24000, 48000}
MANIFEST_NAME = "synth.json"


def class_names(n_classes: int) -> list:
    if not 1 <= n_classes <= MAX_CLASSES:
        raise InputError(f"n_classes must be between 1 and {MAX_CLASSES}, got {n_classes}")
    return list(CLASS_NAMES[:n_classes])


def make_ytids(rng: np.random.Generator, n: int) -> list:
    """Unique 11-character YouTube-like ids; every 6th starts with '-' and every 6th
    (offset 3) carries an inner '_', as real ids do, to exercise file-name handling."""
    ids, seen = [], set()
    while len(ids) < n:
        i = len(ids)
        chars = [YTID_ALPHABET[k] for k in rng.integers(0, 62, size=11)]
        if i % 6 == 0:
            chars[0] = "-"
        elif i % 6 == 3:
            chars[int(rng.integers(1, 10))] = "_"
        ytid = "".join(chars)
        if ytid not in seen:
            seen.add(ytid)
            ids.append(ytid)
    return ids


def centre_frame_time(duration: float, fps: float) -> float:
    return round(duration / 2 * fps) / fps


# ---------------------------------------------------------------- encoding

@dataclasses.dataclass
class EncodeSettings:
    container: str
    video_codec: str
    audio_codec: str
    width: int
    height: int
    fps: float
    duration: float
    sample_rate: int
    channels: int
    threads: int = 0  # 0: ffmpeg's choice
    frame_noise: float = 0.0  # std (8-bit levels) of per-frame sensor noise; 0: none


def _video_args(s: EncodeSettings) -> list:
    even = s.width % 2 == 0 and s.height % 2 == 0
    if s.video_codec == "libx264":
        # 4:2:0 needs even sizes; odd sizes fall back to 4:4:4 which x264 also supports.
        return ["-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p" if even else "yuv444p"]
    if s.video_codec == "libvpx-vp9":
        return ["-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1", "-b:v", "0", "-crf", "30",
                "-pix_fmt", "yuv420p" if even else "yuv444p"]
    if s.video_codec == "libvpx":
        return ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M", "-pix_fmt", "yuv420p"]
    if s.video_codec in ("mpeg4", "libxvid"):
        return ["-q:v", "3", "-pix_fmt", "yuv420p"]
    return []


def _audio_args(s: EncodeSettings) -> list:
    if s.audio_codec == "aac":
        return ["-b:a", "96k"]
    if s.audio_codec in ("libopus", "opus"):
        args = ["-b:a", "64k"]
        if s.sample_rate not in OPUS_RATES:  # Opus only codes these rates
            args += ["-ar", "48000"]
        return args
    if s.audio_codec in ("libvorbis", "vorbis"):
        return ["-q:a", "4"]
    return []


class FrameNoise:
    """Per-frame sensor noise from a small bank of fields, so every frame differs (and the
    clip costs what real footage costs to code and decode) at little rendering cost."""

    BANK = 7

    def __init__(self, std: float, height: int, width: int, seed: int):
        rng = np.random.default_rng([seed, 99])
        self.fields = [np.round(rng.normal(0, std, (height, width, 1))).astype(np.int16) for _ in range(self.BANK)]

    def apply(self, frame: np.ndarray, index: int) -> np.ndarray:
        return np.clip(frame.astype(np.int16) + self.fields[index % self.BANK], 0, 255).astype(np.uint8)


def encode_clip(path: Path, renderer: SceneRenderer, audio: np.ndarray, s: EncodeSettings, noise_seed: int = 0) -> None:
    """Stream rendered frames into ffmpeg (raw RGB on stdin, raw PCM from a temp file) and
    rename the result into place."""
    n_frames = int(round(s.duration * s.fps))
    noise = FrameNoise(s.frame_noise, s.height, s.width, noise_seed) if s.frame_noise > 0 else None
    tmp_out = path.with_name(f".{path.name}.{os.getpid()}.part")
    with tempfile.TemporaryDirectory(prefix="avloc-synth-") as tmp:
        pcm = Path(tmp) / "audio.s16le"
        pcm.write_bytes(to_pcm16(audio))
        errlog = Path(tmp) / "ffmpeg.log"
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{s.width}x{s.height}", "-framerate", f"{s.fps:g}",
               "-i", "pipe:0",
               "-f", "s16le", "-ar", str(s.sample_rate), "-ac", str(s.channels), "-i", str(pcm),
               "-map", "0:v:0", "-map", "1:a:0", "-c:v", s.video_codec, *_video_args(s),
               "-c:a", s.audio_codec, *_audio_args(s)]
        if s.threads:
            cmd += ["-threads", str(s.threads)]
        # bitexact: no encoder version strings or timestamps, so a seed gives identical bytes
        cmd += ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
                "-f", CONTAINERS[s.container], str(tmp_out.resolve())]
        with open(errlog, "wb") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
            try:
                previous_key, frame = None, None
                for i in range(n_frames):
                    # Drift is slow, so most frames repeat the previous one: render only on change.
                    key = renderer.offsets(i / s.fps)
                    if key != previous_key:
                        frame, previous_key = renderer.render(i / s.fps), key
                    proc.stdin.write((noise.apply(frame, i) if noise else frame).tobytes())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            rc = proc.wait()
        if rc != 0 or not tmp_out.exists():
            tmp_out.unlink(missing_ok=True)
            lines = errlog.read_text(errors="replace").strip().splitlines()
            raise AvlocError(f"ffmpeg failed on {path.name} (exit {rc}): {lines[-1] if lines else 'no message'}")
    os.replace(tmp_out, path)


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


def run_jobs(jobs: list, worker, workers: int, progress: bool, desc: str) -> list:
    """Run ``worker(job)`` over jobs, in processes when workers > 1; results in job order."""
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=desc, unit="item", disable=not progress or not sys.stderr.isatty(),
               file=sys.stderr)
    results = [None] * len(jobs)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for i, job in enumerate(jobs):
                results[i] = worker(job)
                bar.update(1)
        else:
            # fork: no re-import of the caller's __main__ (spawn would need a main guard there)
            with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("fork")) as pool:
                futures = {pool.submit(worker, job): i for i, job in enumerate(jobs)}
                for fut in as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update(1)
    finally:
        bar.close()
    return results


# ---------------------------------------------------------------- the set

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


_encoders_cache: Optional[str] = None


def _available_encoders() -> str:
    global _encoders_cache
    if _encoders_cache is None:
        out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True)
        _encoders_cache = out.stdout
    return _encoders_cache


def check_codecs(container: str, video_codec: Optional[str], audio_codec: Optional[str]) -> tuple[str, str]:
    if container not in CONTAINERS:
        raise InputError(f"container must be one of {', '.join(CONTAINERS)}, got {container!r}")
    default_v, default_a = DEFAULT_CODECS[container]
    video_codec, audio_codec = video_codec or default_v, audio_codec or default_a
    if container == "webm" and (video_codec not in WEBM_VIDEO or audio_codec not in WEBM_AUDIO):
        raise InputError(f"webm holds VP8/VP9/AV1 video and Opus/Vorbis audio, not {video_codec}/{audio_codec}")
    encoders = _available_encoders()
    for codec in (video_codec, audio_codec):
        if f" {codec} " not in encoders:
            raise InputError(f"this ffmpeg ({ffmpeg_exe()}) has no encoder named {codec!r}")
    return video_codec, audio_codec


def _write_csv(path: Path, items: list) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for it in items:
        writer.writerow([it["ytid"], it["start"], it["label"], it["split"]])
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


def ensure_output_dir(path: Path) -> None:
    """Create ``path`` (with parents) or say in one line why it cannot be written to."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create output folder {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK):
        raise InputError(f"output folder is not writable: {path}")


def check_distractor_looks(n_classes: int, looks: str) -> None:
    try:
        distractor_pool([0], n_classes, looks)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def plan_clips(n_clips: int, *, seed: int, n_classes: int, duration: float, test_fraction: float,
               distractor_looks: str = "silent") -> list:
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
    distractor_looks: str = "silent",
    workers: int = 1,
    progress: bool = False,
    overwrite: bool = False,
) -> SynthSet:
    """Write ``n_clips`` synthetic clips plus vggsound.csv and boxes.json under ``out_dir``.

    ``video_codec``/``audio_codec`` default to the container's usual pair (mp4/mkv: libx264 +
    aac; webm: libvpx-vp9 + libopus). ``frame_noise`` > 0 adds per-frame sensor noise of that
    standard deviation (8-bit levels): slower to write, but every frame then differs, as in real
    footage, which matters when the clips are used to measure decoding throughput.
    ``distractor_looks``: "silent" (distractors look like classes outside the set) or "class"
    (they look like the set's other classes); see avloc.tools.synth_scene.
    """
    if n_clips < 1:
        raise InputError(f"n_clips must be at least 1, got {n_clips}")
    if duration <= 0 or fps <= 0:
        raise InputError(f"duration and fps must be positive, got {duration} s at {fps} fps")
    if width < 16 or height < 16:
        raise InputError(f"frame size must be at least 16x16, got {width}x{height}")
    if sample_rate < 8000 or channels not in (1, 2):
        raise InputError(f"audio must be >= 8000 Hz with 1 or 2 channels, got {sample_rate} Hz x {channels}")
    if not 0 <= frame_noise <= 32:
        raise InputError(f"frame_noise must be in [0, 32] (8-bit levels), got {frame_noise}")
    if not 0 <= test_fraction <= 1:
        raise InputError(f"test_fraction must be in [0, 1], got {test_fraction}")
    if max(class_frequency(i) for i in range(min(n_classes, MAX_CLASSES))) * 1.1 > sample_rate / 2:
        raise InputError(f"sample rate {sample_rate} Hz is too low for {n_classes} classes' tones")
    video_codec, audio_codec = check_codecs(container, video_codec, audio_codec)
    names = class_names(n_classes)
    check_distractor_looks(n_classes, distractor_looks)

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
    if manifest_path.exists() and not overwrite:
        try:
            previous = json.loads(manifest_path.read_text()).get("settings")
        except (OSError, ValueError):
            previous = None
        if previous != settings_record:
            raise InputError(f"{root} holds a synthetic set made with other settings; "
                             "use a new folder or overwrite it (--overwrite)")
    # Settings first, so an interrupted run is resumed only with the same settings.
    if overwrite or not manifest_path.exists():
        _write_json(manifest_path, {"settings": settings_record, "complete": False})
    for stale in clips_dir.glob(".*.part"):  # left by a killed run
        stale.unlink(missing_ok=True)

    settings = EncodeSettings(container, video_codec, audio_codec, width, height, float(fps), float(duration),
                              sample_rate, channels, threads=1 if workers > 1 else 0, frame_noise=frame_noise)
    t_centre = centre_frame_time(duration, fps)
    plans = plan_clips(n_clips, seed=seed, n_classes=n_classes, duration=duration, test_fraction=test_fraction,
                       distractor_looks=distractor_looks)
    items, jobs = [], []
    for p in plans:
        scene = dataclasses.replace(p["scene"], reference_time=t_centre)
        renderer = SceneRenderer(scene, width, height)
        box = mask_box(renderer.sounding_mask(t_centre))
        path = clips_dir / f"{p['id']}.{container}"
        distractors = [i for i, o in enumerate(scene.objects) if not o.sounding]
        items.append({
            "id": p["id"], "ytid": p["ytid"], "start": p["start"], "label": p["label"],
            "class_index": p["class_index"], "split": p["split"], "bbox": [box], "path": str(path),
            "frequency_hz": class_frequency(p["class_index"]) * p["sounds"][0].detune,
            "distractors": [{"class_index": scene.objects[i].class_index,
                             "bbox": object_box(renderer, i, t_centre)} for i in distractors],
        })
        if overwrite or not path.exists():
            jobs.append(ClipJob(p["id"], str(path), scene, p["sounds"], p["noise_seed"], settings))

    results = run_jobs(jobs, run_clip_job, workers, progress, "synth clips")
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise AvlocError(f"{len(failed)} of {len(jobs)} synthetic clips failed; "
                         f"first: {failed[0]['id']}: {failed[0]['error']}")

    csv_path, boxes_path = root / "vggsound.csv", root / "boxes.json"
    _write_csv(csv_path, items)
    _write_json(boxes_path, [{"file": it["id"], "class": it["label"], "bbox": it["bbox"]} for it in items])
    _write_json(manifest_path, {"settings": settings_record, "complete": True, "classes": names,
                                "centre_frame_time": t_centre, "items": items})
    return SynthSet(root, clips_dir, csv_path, boxes_path, manifest_path, names, items, generated=len(jobs))


def __getattr__(name):
    # write_benchmark lives in synth_layouts; exposed here as part of the synth contract.
    if name in ("write_benchmark", "BENCHMARKS", "BenchmarkSet"):
        from avloc.tools import synth_layouts

        return getattr(synth_layouts, name)
    raise AttributeError(name)
