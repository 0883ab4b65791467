"""Synthetic copies of the evaluation benchmarks, in their released layouts (METHOD.md §5).

``write_benchmark(out_dir, benchmark, n_items, seed=...)`` for

* ``vggss``:        ``frames/<id>.jpg``, ``audio/<id>.wav`` (16 kHz mono, 10 s),
                    ``vggss.json`` (boxes as fractions, drawn at 5.0 s), ``vggss_test.csv`` (CRLF);
* ``flickr``:       ``<id>.jpg``, ``<id>.wav``, ``<id>.xml`` (flat) or ``frames/``, ``audio/``,
                    ``Annotations/`` (``layout="split"``); boxes in pixels of a 256x256 image from
                    1-3 annotators; ``flickr_test.csv`` (``id,<int>``, CRLF);
* ``avsbench-s4``:  ``Single-source/`` with ``s4_meta_data.csv`` and ``s4_data/{visual_frames,
                    gt_masks,audio_wav}/<split>/<category>/...`` (5 frames of 224x224 per clip,
                    1-bit masks; train clips have a mask for frame 1 only; 5 s wavs, some stereo);
* ``avsbench-ms3``: ``Multi-sources/`` with ``ms3_meta_data.csv``, ``ms3_data/visual_frames/<name>/
                    <name>.mp4_<k>.png``, palette masks in ``gt_masks/<split>/<name>/``, wavs in
                    ``audio_wav/<split>/``; two sounding objects per clip, mask = their union.

Boxes and masks are computed from the rendered silhouettes, so the frames show the sounding
objects exactly where the annotations say. ``synth_benchmark.json`` beside the layout lists
every item with its paths and ground truth (for tests and analysis; readers never need it).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from pathlib import Path
from typing import List, Optional
from xml.etree import ElementTree as ET

import numpy as np
from PIL import Image

from avloc.errors import AvlocError, ConfigError
from avloc.tools.synth.audio import render_mix, sample_sound, wav_bytes
from avloc.tools.synth.jobs import ensure_output_dir, make_ytids, run_jobs, write_file
from avloc.evaluation.object_prior import copy_items, object_prior_ap50
from avloc.tools.synth.render import SceneRenderer, mask_box, object_box, object_mask, sounding_box, union_box
from avloc.tools.synth.scene import (DEFAULT_DISTRACTOR_LOOKS, MAX_CLASSES, SOUNDING_AREA, Scene, class_names,
                                     distractor_problems, sample_scene)

# The names ``avloc evaluate --benchmark`` knows these layouts by (the leaderboard sets are
# planned in ``leaderboard_layouts``).
LEADERBOARD_LAYOUTS = ("vggsound-single", "vggsound-duet", "music-solo", "music-duet", "vgginstruments",
                       "vgginstruments-multi", "flickr-extended", "vggss-extended")
BENCHMARKS = ("vggss", "flickr", "avsbench-s4", "avsbench-ms3") + LEADERBOARD_LAYOUTS
# Sub-folder of ``avloc synth --out`` each benchmark goes to (AVSBench's two roots share one
# folder, as in the real download); ``avloc evaluate --data-root`` takes that folder.
BENCHMARK_FOLDERS = {"vggss": "vggss", "flickr": "flickr", "avsbench-s4": "avsbench", "avsbench-ms3": "avsbench",
                     **{name: name for name in LEADERBOARD_LAYOUTS}}
TWO_CLASS_LAYOUTS = ("avsbench-ms3", "vggsound-duet", "music-duet", "vgginstruments-multi", "flickr-extended",
                     "vggss-extended")
FLICKR_LAYOUTS = ("flat", "split")
IMAGE_FORMATS = ("jpg", "png")
MANIFEST_NAME = "synth_benchmark.json"
FLICKR_CANVAS = 256
AVS_SIZE = 224
AVS_FRAMES = 5
AVS_DURATION = 5.0


def frame_time(k: int, fps: float = 25.0) -> float:
    """AVSBench frame k (1..5) is the last frame of second k."""
    return k - 1.0 / fps


def category_folder(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _image_bytes(array: np.ndarray, fmt: str, mode: Optional[str] = None, palette: Optional[list] = None) -> bytes:
    img = Image.fromarray(array)
    if mode:
        img = img.convert(mode) if mode != "P" else img
    if palette is not None:
        img.putpalette(palette)
    buf = io.BytesIO()
    if fmt == "jpg":
        img.save(buf, format="JPEG", quality=95)
    else:
        img.save(buf, format="PNG")
    return buf.getvalue()


def _mask_1bit(mask: np.ndarray) -> bytes:
    return _image_bytes((mask.astype(np.uint8) * 255), "png", mode="1")


def _mask_palette(mask: np.ndarray) -> bytes:
    img = Image.fromarray(mask.astype(np.uint8), mode="L").convert("P")
    img.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _csv_bytes(rows: list, header: Optional[list] = None, terminator: str = "\r\n") -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=terminator)
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def flickr_xml(file_id: str, annotations: list, label: str) -> bytes:
    """Senocak-style annotation: one <object> per annotator, each with a <bbox> whose first
    child is a label and the next four are xmin, ymin, xmax, ymax (pixels of 256x256)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = f"{file_id}.jpg"
    size = ET.SubElement(root, "size")
    for tag, val in (("width", FLICKR_CANVAS), ("height", FLICKR_CANVAS), ("depth", 3)):
        ET.SubElement(size, tag).text = str(val)
    for k, box in enumerate(annotations):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "annotator").text = str(k + 1)
        bbox = ET.SubElement(obj, "bbox")
        ET.SubElement(bbox, "label").text = label
        for tag, val in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bbox, tag).text = str(int(val))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


# ---------------------------------------------------------------- per-item work

@dataclasses.dataclass
class ItemJob:
    """One benchmark item to render and write (picklable)."""

    benchmark: str
    scene: Scene
    sounds: list
    noise_seed: int
    width: int
    height: int
    duration: float
    sample_rate: int
    channels: int
    frame_times: list
    frame_paths: list  # one per frame time
    mask_paths: list  # one per frame time, None where no mask is written
    audio_path: str
    extra_files: dict  # path -> bytes known in advance (xml)
    image_format: str
    mask_format: str = "png"  # png (1-bit; palette for MS3), pkl (pickled uint8 array) or npy


def run_item_job(job: ItemJob) -> dict:
    """Worker entry point: never raises, so one bad item is reported as one line."""
    try:
        return {"ok": True, **write_item(job)}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "path": job.audio_path}


def write_item(job: ItemJob) -> dict:
    """Render frames, masks and audio of one item; returns the per-frame boxes and mask areas."""
    renderer = SceneRenderer(job.scene, job.width, job.height)
    sounding = [i for i, o in enumerate(job.scene.objects) if o.sounding]
    distractors = [i for i, o in enumerate(job.scene.objects) if not o.sounding]
    boxes, areas, source_boxes, distractor_boxes, hidden = [], [], [], [], []
    for t, fpath, mpath in zip(job.frame_times, job.frame_paths, job.mask_paths):
        frame, labels = renderer.render(t, with_labels=True)
        mask = np.isin(labels, sounding)
        silhouettes = [object_mask(renderer, i, t) for i in sounding]
        own = [mask_box(m) for m in silhouettes]  # whole silhouettes: a hidden part is still the object
        boxes.append(union_box(own))
        source_boxes.append(own)
        distractor_boxes.append([object_box(renderer, i, t) for i in distractors])
        areas.append(float(mask.mean()))
        whole = np.logical_or.reduce(silhouettes) if silhouettes else mask
        hidden.append(float(1.0 - mask.sum() / whole.sum()) if whole.any() else 0.0)
        write_file(Path(fpath), _image_bytes(frame, job.image_format))
        if mpath:
            write_file(Path(mpath), _mask_bytes(mask, job))
    audio = render_mix(job.sounds, job.duration, job.sample_rate, job.noise_seed, channels=job.channels)
    write_file(Path(job.audio_path), wav_bytes(audio, job.sample_rate))
    for path, data in job.extra_files.items():
        write_file(Path(path), data)
    return {"boxes": boxes, "mask_areas": areas, "source_boxes": source_boxes, "distractor_boxes": distractor_boxes,
            "hidden_shares": hidden}


def _mask_bytes(mask: np.ndarray, job: ItemJob) -> bytes:
    if job.mask_format == "pkl":
        import pickle

        return pickle.dumps(mask.astype(np.uint8), protocol=2)  # how the VGG-Instruments masks ship
    if job.mask_format == "npy":
        buf = io.BytesIO()
        np.save(buf, mask.astype(np.uint8), allow_pickle=False)
        return buf.getvalue()
    return _mask_palette(mask) if job.benchmark == "avsbench-ms3" else _mask_1bit(mask)


# ---------------------------------------------------------------- planning per benchmark

@dataclasses.dataclass
class SynthBenchmarkCopy:
    """A written synthetic copy of a benchmark (not a loaded evaluation set)."""

    root: Path  # the folder a reader is pointed at (e.g. .../Single-source for S4)
    benchmark: str
    items: list
    files: dict  # role -> path of the set-level files (json, csv, meta)
    rows: list = dataclasses.field(default_factory=list)  # leaderboard sets: the rows of their lists
    object_prior: Optional[dict] = None  # box sets: AP50 of blind object picks (avloc.evaluation.object_prior)


def benchmark_problems(benchmark: str, n_items: int, *, n_classes: int = 4, layout: str = "flat",
                       image_format: Optional[str] = None, frame_size: Optional[tuple] = None,
                       distractor_looks: str = DEFAULT_DISTRACTOR_LOOKS) -> List[str]:
    """Every reason ``write_benchmark`` cannot write this copy (named by its arguments)."""
    if benchmark not in BENCHMARKS:
        return [f"benchmark must be one of {', '.join(BENCHMARKS)}, got {benchmark!r}"]
    found = []
    if n_items < 1:
        found.append(f"n_items must be at least 1, got {n_items}")
    min_classes = 2 if benchmark in TWO_CLASS_LAYOUTS else 1
    if not min_classes <= n_classes <= MAX_CLASSES:
        found.append(f"{benchmark} needs between {min_classes} and {MAX_CLASSES} classes, got {n_classes}")
    found += distractor_problems(n_classes, distractor_looks)
    if layout not in FLICKR_LAYOUTS:
        found.append(f"flickr layout must be one of {', '.join(FLICKR_LAYOUTS)}, got {layout!r}")
    if (image_format or "jpg") not in IMAGE_FORMATS:
        found.append(f"image_format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    width, height = frame_size or (320, 240)
    if width < 16 or height < 16:
        found.append(f"frame size must be at least 16x16, got {width}x{height}")
    return found


def _split_plan(n_test: int, n_train: int, n_val: int) -> list:
    return ["test"] * n_test + ["train"] * n_train + ["val"] * n_val


def write_benchmark(
    out_dir,
    benchmark: str,
    n_items: int,
    *,
    seed: int = 0,
    n_classes: int = 4,
    frame_size: Optional[tuple] = None,
    image_format: Optional[str] = None,
    layout: str = "flat",
    train_items: int = 1,
    val_items: int = 1,
    distractor_looks: str = DEFAULT_DISTRACTOR_LOOKS,
    workers: int = 1,
    progress: bool = False,
) -> SynthBenchmarkCopy:
    """Write a synthetic copy of ``benchmark`` with ``n_items`` test items under ``out_dir``.

    ``frame_size`` (width, height) applies to VGG-SS and Flickr (default 320x240; AVSBench is
    always 224x224). ``image_format`` is jpg (default) or png for VGG-SS/Flickr frames.
    ``layout`` is Flickr's "flat" or "split". AVSBench sets also get ``train_items`` and
    ``val_items`` clips in those splits, as the real metadata lists all three.
    """
    found = benchmark_problems(benchmark, n_items, n_classes=n_classes, layout=layout, image_format=image_format,
                               frame_size=frame_size, distractor_looks=distractor_looks)
    if found:
        raise ConfigError(found)
    names = class_names(n_classes)
    image_format = image_format or "jpg"
    width, height = frame_size or (320, 240)
    out = Path(out_dir)
    ensure_output_dir(out)

    from avloc.tools.synth import leaderboard_layouts

    planner = {"vggss": _plan_vggss, "flickr": _plan_flickr, "avsbench-s4": _plan_s4, "avsbench-ms3": _plan_ms3,
               **leaderboard_layouts.PLANNERS}[benchmark]
    rng = np.random.default_rng([seed, 7031, BENCHMARKS.index(benchmark)])
    bset, jobs = planner(out, rng, n_items, names, width=width, height=height, image_format=image_format,
                         layout=layout, train_items=train_items, val_items=val_items, seed=seed,
                         distractor_looks=distractor_looks)
    results = run_jobs(jobs, run_item_job, workers, progress, f"synth {benchmark}")
    failed = [r for r in results if not r["ok"]]
    if failed:
        raise AvlocError(f"{len(failed)} of {len(jobs)} {benchmark} items failed; first ({failed[0]['path']}): "
                         f"{failed[0]['error']}")
    for item, res in zip(bset.items, results):
        item["frame_boxes"] = res["boxes"]
        item["mask_areas"] = res["mask_areas"]
        item["source_boxes"] = res["source_boxes"]
        item["distractor_boxes"] = res["distractor_boxes"]  # per frame, each distractor's own silhouette
        item["hidden_shares"] = res["hidden_shares"]  # per frame, the share of the sounding silhouettes others cover
    if benchmark in LEADERBOARD_LAYOUTS:
        leaderboard_layouts.finish(bset)
    _finish(bset, names)
    return bset


def _finish(bset: SynthBenchmarkCopy, names: list) -> None:
    """Set-level files, written after every item is on disk."""
    items = bset.items
    if bset.benchmark in ("vggss", "vggsound-single", "vggsound-duet", "vggss-extended"):
        items = [it for it in items if it.get("role", "test") == "test"]
        records = [{"file": it["id"], "class": it["label"], "bbox": [it["frame_boxes"][0]]} for it in items]
        for it, rec in zip(items, records):
            it["bbox"] = rec["bbox"]
        write_file(bset.files["json"], (json.dumps(records) + "\n").encode())
        write_file(bset.files["csv"], _csv_bytes([[it["id"]] for it in items]))
    elif bset.benchmark in ("flickr", "flickr-extended"):
        items = [it for it in items if it.get("role", "test") == "test"]
        write_file(bset.files["csv"], _csv_bytes([[it["id"], it["unused"]] for it in items]))
    elif bset.benchmark in LEADERBOARD_LAYOUTS:
        pass  # written by leaderboard_layouts.finish
    elif bset.benchmark == "avsbench-s4":
        rows = [[it["name"], it["start_time"], it["category"], it["split"]] for it in items]
        write_file(bset.files["meta"], _csv_bytes(rows, header=["name", "start_time", "category", "split"], terminator="\n"))
    else:
        rows = [[it["name"], ";".join(it["labels"]), it["split"]] for it in items]
        write_file(bset.files["meta"], _csv_bytes(rows, header=["video_id", "labels", "split"], terminator="\n"))
    scored = copy_items(items)
    if scored:
        bset.object_prior = object_prior_ap50(scored)
    manifest = {"benchmark": bset.benchmark, "root": str(bset.root), "classes": names,
                "files": {k: str(v) for k, v in bset.files.items()}, "items": bset.items, "rows": bset.rows,
                "object_prior": bset.object_prior}
    write_file(bset.root / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())


def _single_source(rng, names, *, reference_time, distractor_looks, size_by="box", area_range=SOUNDING_AREA,
                   drift=0.01):
    cls = int(rng.integers(len(names)))
    scene = sample_scene(rng, [cls], len(names), reference_time=reference_time, size_by=size_by,
                         area_range=area_range, drift=drift, distractor_looks=distractor_looks)
    return cls, scene, [sample_sound(rng, cls)]


def _plan_vggss(out, rng, n, names, *, width, height, image_format, seed, distractor_looks, **_):
    ids = [f"{y}_{int(s):06d}" for y, s in zip(make_ytids(rng, n), rng.integers(0, 600, size=n))]
    items, jobs = [], []
    for clip_id in ids:
        cls, scene, sounds = _single_source(rng, names, reference_time=5.0, distractor_looks=distractor_looks)
        frame = out / "frames" / f"{clip_id}.{image_format}"
        audio = out / "audio" / f"{clip_id}.wav"
        items.append({"id": clip_id, "label": names[cls], "class_index": cls, "split": "test",
                      "frame": str(frame), "audio": str(audio)})
        jobs.append(ItemJob("vggss", scene, sounds, int(rng.integers(2**31 - 1)), width, height, 10.0, 16000, 1,
                            [5.0], [str(frame)], [None], str(audio), {}, image_format))
    files = {"json": out / "vggss.json", "csv": out / "vggss_test.csv"}
    return SynthBenchmarkCopy(out, "vggss", items, files), jobs


def _plan_flickr(out, rng, n, names, *, width, height, image_format, layout, distractor_looks, **_):
    ids, seen = [], set()
    while len(ids) < n:
        fid = str(int(rng.integers(10**9, 2 * 10**10)))
        if fid not in seen:
            seen.add(fid)
            ids.append(fid)
    items, jobs = [], []
    for fid in ids:
        cls, scene, sounds = _single_source(rng, names, reference_time=5.0, distractor_looks=distractor_looks)
        if layout == "flat":
            frame, audio, xml = out / f"{fid}.{image_format}", out / f"{fid}.wav", out / f"{fid}.xml"
        else:
            frame, audio, xml = (out / "frames" / f"{fid}.{image_format}", out / "audio" / f"{fid}.wav",
                                 out / "Annotations" / f"{fid}.xml")
        # The exact box, then in 256x256 pixel space for 1-3 annotators (the first exact up to
        # rounding, the others a few pixels off, as human annotators are). Mostly 2-3: the
        # soft consensus gives a lone annotator's box weight 0.5, which caps cIoU below 0.5
        # for most box sizes.
        box = sounding_box(SceneRenderer(scene, width, height), 5.0)
        exact = [int(round(v * FLICKR_CANVAS)) for v in box]
        annotations = [exact]
        for _ in range(int(rng.choice([0, 1, 2], p=[0.1, 0.45, 0.45]))):
            jitter = rng.integers(-3, 4, size=4)
            annotations.append([int(np.clip(v + j, 0, FLICKR_CANVAS)) for v, j in zip(exact, jitter)])
        items.append({"id": fid, "label": names[cls], "class_index": cls, "split": "test", "bbox": [box],
                      "annotations": annotations, "unused": int(rng.integers(0, 400)),
                      "frame": str(frame), "audio": str(audio), "xml": str(xml)})
        jobs.append(ItemJob("flickr", scene, sounds, int(rng.integers(2**31 - 1)), width, height, 10.0, 16000, 1,
                            [5.0], [str(frame)], [None], str(audio), {str(xml): flickr_xml(fid, annotations, names[cls])},
                            image_format))
    return SynthBenchmarkCopy(out, "flickr", items, {"csv": out / "flickr_test.csv"}), jobs


def _avs_names(rng, n) -> list:
    return [f"{y}_{int(k)}" for y, k in zip(make_ytids(rng, n), rng.integers(0, 30, size=n))]


def _plan_s4(out, rng, n, names, *, train_items, val_items, distractor_looks, **_):
    root = out / "Single-source"
    data = root / "s4_data"
    splits = _split_plan(n, train_items, val_items)
    items, jobs = [], []
    for idx, (name, split) in enumerate(zip(_avs_names(rng, len(splits)), splits)):
        cls, scene, sounds = _single_source(rng, names, reference_time=AVS_DURATION / 2, size_by="mask",
                                            area_range=(0.27, 0.42), drift=0.015,
                                            distractor_looks=distractor_looks)
        cat = category_folder(names[cls])
        frames = [data / "visual_frames" / split / cat / name / f"{name}_{k}.png" for k in range(1, AVS_FRAMES + 1)]
        masks = [data / "gt_masks" / split / cat / name / f"{name}_{k}.png" if (split != "train" or k == 1) else None
                 for k in range(1, AVS_FRAMES + 1)]
        audio = data / "audio_wav" / split / cat / f"{name}.wav"
        channels = 2 if idx % 2 else 1  # real S4 wavs are sometimes stereo
        items.append({"name": name, "label": names[cls], "class_index": cls, "category": cat, "split": split,
                      "start_time": int(rng.integers(0, 300)), "channels": channels,
                      "frames": [str(p) for p in frames], "masks": [str(p) if p else None for p in masks],
                      "audio": str(audio)})
        jobs.append(ItemJob("avsbench-s4", scene, sounds, int(rng.integers(2**31 - 1)), AVS_SIZE, AVS_SIZE,
                            AVS_DURATION, 16000, channels, [frame_time(k) for k in range(1, AVS_FRAMES + 1)],
                            [str(p) for p in frames], [str(p) if p else None for p in masks], str(audio), {}, "png"))
    return SynthBenchmarkCopy(root, "avsbench-s4", items, {"meta": root / "s4_meta_data.csv"}), jobs


def _plan_ms3(out, rng, n, names, *, train_items, val_items, distractor_looks, **_):
    root = out / "Multi-sources"
    data = root / "ms3_data"
    splits = _split_plan(n, train_items, val_items)
    items, jobs = [], []
    for name, split in zip(_avs_names(rng, len(splits)), splits):
        classes = [int(c) for c in rng.choice(len(names), size=2, replace=False)]
        scene = sample_scene(rng, classes, len(names), reference_time=AVS_DURATION / 2, size_by="mask",
                             area_range=(0.3, 0.48), n_distractors=int(rng.integers(1, 3)), drift=0.015,
                             distractor_looks=distractor_looks)
        sounds = [sample_sound(rng, c) for c in classes]
        frames = [data / "visual_frames" / name / f"{name}.mp4_{k}.png" for k in range(1, AVS_FRAMES + 1)]
        masks = [data / "gt_masks" / split / name / f"{name}_{k}.png" for k in range(1, AVS_FRAMES + 1)]
        audio = data / "audio_wav" / split / f"{name}.wav"
        items.append({"name": name, "labels": [names[c] for c in classes], "class_indices": classes,
                      "split": split, "frames": [str(p) for p in frames], "masks": [str(p) for p in masks],
                      "audio": str(audio)})
        jobs.append(ItemJob("avsbench-ms3", scene, sounds, int(rng.integers(2**31 - 1)), AVS_SIZE, AVS_SIZE,
                            AVS_DURATION, 16000, 1, [frame_time(k) for k in range(1, AVS_FRAMES + 1)],
                            [str(p) for p in frames], [str(p) for p in masks], str(audio), {}, "png"))
    return SynthBenchmarkCopy(root, "avsbench-ms3", items, {"meta": root / "ms3_meta_data.csv"}), jobs
