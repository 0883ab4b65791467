"""avloc synth clips: decoded with the real ffmpeg and checked from pixels and samples."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli_invoke import avloc_cli
from synth_checks import assert_object_in_box, colour_mask
from avloc.errors import InputError
from avloc.ffmpeg_bin import ffmpeg_exe
from avloc.tools.synth import centre_frame_time, generate_clips, plan_clips
from avloc.tools.synth.audio import class_frequency, identify_class, render_mix, sample_sound
from avloc.tools.synth.render import SceneRenderer, mask_box, sounding_box
from avloc.tools.synth.scene import CLASS_COLOURS, CLASS_NAMES

CLIP_ID = re.compile(r"^[A-Za-z0-9_-]{11}_\d{6}$")


def decode_frame(path, index, width, height):
    out = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), "-vf",
                          f"select=eq(n\\,{index})", "-fps_mode", "passthrough", "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"], capture_output=True, check=True)
    return np.frombuffer(out.stdout, np.uint8).reshape(height, width, 3)


def decode_audio(path, sample_rate=16000):
    out = subprocess.run([ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path), "-ac", "1",
                          "-ar", str(sample_rate), "-f", "f32le", "pipe:1"], capture_output=True, check=True)
    return np.frombuffer(out.stdout, "<f4")


def stream_info(path) -> str:
    # no ffprobe in imageio-ffmpeg: ffmpeg -i prints the streams and exits non-zero
    return subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


def box_iou(a, b):
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.fixture(scope="module")
def clipset(tmp_path_factory):
    return generate_clips(tmp_path_factory.mktemp("clips"), 6, seed=3, n_classes=6, duration=2.0,
                          width=160, height=120, test_fraction=0.34)


def test_sounding_object_is_where_the_box_says_in_the_decoded_centre_frame(clipset):
    centre = round(2.0 / 2 * 25)
    for it in clipset.items:
        frame = decode_frame(it["path"], centre, 160, 120)
        mask = colour_mask(frame, CLASS_COLOURS[it["class_index"]])
        seen = mask_box(mask)
        box = it["bbox"][0]
        assert seen is not None, it["id"]
        # the box is around the whole silhouette, part of which objects drawn over it may hide
        assert box_iou(seen, box) > 0.6, (it["id"], seen, box)
        # the object's pixels lie inside its box, and it is not a distractor's colour
        x1, y1, x2, y2 = (int(round(v * s)) for v, s in zip(box, (160, 120, 160, 120)))
        inside = mask[y1:y2, x1:x2].sum()
        assert inside / mask.sum() > 0.97
        assert 0.25 <= (box[2] - box[0]) * (box[3] - box[1]) <= 0.5


def test_sounding_object_is_not_centred_and_distractors_are_other_classes(clipset):
    for it in clipset.items:
        x1, y1, x2, y2 = it["bbox"][0]
        # against a frame edge (2% margin, up to 3% jitter, a pixel of rasterisation)
        assert min(x1, y1, 1 - x2, 1 - y2) < 0.07, it["bbox"]
        assert abs((x1 + x2) / 2 - 0.5) + abs((y1 + y2) / 2 - 0.5) > 0.08, it["bbox"]
        assert it["distractors"] and all(d["class_index"] != it["class_index"] for d in it["distractors"])
        # default "class" looks (shortcut-free): every distractor looks like another class of the set
        assert all(d["class_index"] < 6 for d in it["distractors"]), it["distractors"]


def test_size_position_and_drawing_order_do_not_tell_which_object_sounds():
    """Over many scenes the sounding object is the largest, the smallest, the one drawn on top and
    the one nearest the frame's centre about as often as any other object (1 / objects in the
    frame), and no object has more than MAX_HIDDEN of its box covered unless the frame is down to
    MIN_DISTRACTORS and still too crowded."""
    from avloc.tools.synth.scene import MAX_HIDDEN, MIN_DISTRACTORS, _most_hidden

    shares = {"largest": [], "smallest": [], "on top": [], "most central": []}
    expected, hidden = [], []
    for p in plan_clips(400, seed=4, n_classes=8, duration=4.0, test_fraction=0.0):
        objects = p["scene"].objects
        s = [i for i, o in enumerate(objects) if o.sounding][0]
        area = [o.w * o.h for o in objects]
        centrality = [abs(o.cx - 0.5) + abs(o.cy - 0.5) for o in objects]
        shares["largest"].append(s == int(np.argmax(area)))
        shares["smallest"].append(s == int(np.argmin(area)))
        shares["on top"].append(s == len(objects) - 1)
        shares["most central"].append(s == int(np.argmin(centrality)))
        expected.append(1 / len(objects))
        hidden.append(_most_hidden(objects))
    sizes = [round(1 / e) for e in expected]
    assert all(h <= MAX_HIDDEN or n == 1 + MIN_DISTRACTORS for h, n in zip(hidden, sizes))
    assert 0.8 < float(np.mean(np.array(sizes) == 3)) < 1.0  # mostly three objects, some frames two
    chance = float(np.mean(expected))  # ~0.34: three objects in most frames
    for name, hits in shares.items():
        assert abs(np.mean(hits) - chance) < 0.09, (name, np.mean(hits), chance)


def test_box_is_around_the_whole_silhouette_even_where_other_objects_hide_it():
    """The ground-truth box is the sounding object's box as if nothing covered it: drawn alone, the
    object's pixels have exactly that box, while in the full scene some frames hide part of it."""
    import dataclasses

    hidden_some = 0
    for p in plan_clips(40, seed=8, n_classes=8, duration=4.0, test_fraction=0.0):
        scene = p["scene"]
        s = next(i for i, o in enumerate(scene.objects) if o.sounding)
        full = SceneRenderer(scene, 160, 120)
        alone = SceneRenderer(dataclasses.replace(scene, objects=[scene.objects[s]]), 160, 120)
        box = sounding_box(full, scene.reference_time)
        assert box == mask_box(alone.labels(scene.reference_time) == 0), p["id"]
        visible = full.labels(scene.reference_time) == s
        hidden_some += visible.sum() < (alone.labels(scene.reference_time) == 0).sum()
    assert 0 < hidden_some < 40  # occlusion happens, to some sounding objects, not all


@pytest.mark.parametrize("looks", ["silent", "class"])
def test_distractor_looks(looks):
    n_classes = 5
    seen = set()
    for p in plan_clips(40, seed=1, n_classes=n_classes, duration=4.0, test_fraction=0.0, distractor_looks=looks):
        sounding = [o.class_index for o in p["scene"].objects if o.sounding]
        distractors = [o.class_index for o in p["scene"].objects if not o.sounding]
        assert sounding == [p["class_index"]] and 2 <= len(distractors) <= 3
        assert p["class_index"] not in distractors
        seen.update(distractors)
    if looks == "silent":
        assert seen and min(seen) >= n_classes
    else:
        assert seen == set(range(n_classes))


def test_silent_looks_need_a_spare_class(tmp_path):
    with pytest.raises(InputError, match="distractor looks 'class'"):
        generate_clips(tmp_path, 1, n_classes=len(CLASS_NAMES), distractor_looks="silent")
    with pytest.raises(InputError, match="distractor looks"):
        generate_clips(tmp_path, 1, n_classes=2, distractor_looks="others")


def test_streams_are_h264_aac_at_the_requested_format(clipset):
    info = stream_info(clipset.items[0]["path"])
    assert re.search(r"Video: h264 .*160x120", info), info
    assert re.search(r"Audio: aac .*16000 Hz, mono", info), info
    assert "Duration: 00:00:02.00" in info


def test_decoded_audio_identifies_the_class(clipset):
    for it in clipset.items:
        audio = decode_audio(it["path"])
        assert abs(len(audio) - 32000) < 1600
        assert identify_class(audio, 16000, 6) == it["class_index"], it["id"]


def test_csv_ids_and_boxes_json_parse(clipset):
    with open(clipset.csv_path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 6 and all(len(r) == 4 for r in rows)
    by_id = {it["id"]: it for it in clipset.items}
    labels = set()
    for ytid, start, label, split in rows:
        clip_id = f"{ytid}_{int(start):06d}"
        assert CLIP_ID.match(clip_id) and clip_id in by_id
        assert (clipset.clips_dir / f"{clip_id}.mp4").is_file()
        assert label == by_id[clip_id]["label"] and label in CLASS_NAMES[:6]
        assert split in ("train", "test")
        labels.add(label)
    assert any("," in lab for lab in labels)  # quoted in the file, one field after parsing
    assert '"' in clipset.csv_path.read_text()
    ytids = [r[0] for r in rows]
    assert any("-" in y for y in ytids) and any("_" in y for y in ytids)
    assert {r[3] for r in rows} == {"train", "test"}
    boxes = json.loads(clipset.boxes_path.read_text())
    assert [b["file"] for b in boxes] == [it["id"] for it in clipset.items]
    for b in boxes:
        assert b["class"] == by_id[b["file"]]["label"]
        (x1, y1, x2, y2), = b["bbox"]
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1


def test_same_seed_same_bytes_across_worker_counts_and_resume(tmp_path):
    kw = dict(seed=11, n_classes=3, duration=1.0, width=64, height=48)
    a = generate_clips(tmp_path / "a", 3, **kw)
    b = generate_clips(tmp_path / "b", 3, workers=2, **kw)
    c = generate_clips(tmp_path / "c", 3, **{**kw, "seed": 12})
    assert a.csv_path.read_bytes() == b.csv_path.read_bytes()
    assert a.boxes_path.read_bytes() == b.boxes_path.read_bytes()
    for ia, ib in zip(a.items, b.items):
        assert open(ia["path"], "rb").read() == open(ib["path"], "rb").read()
    assert {it["id"] for it in a.items}.isdisjoint({it["id"] for it in c.items})
    again = generate_clips(tmp_path / "a", 3, **kw)
    assert again.generated == 0 and again.items == a.items
    # a killed run: one clip missing, a partial file left behind; the rerun completes it
    first = a.items[0]["path"]
    reference = open(first, "rb").read()
    os.remove(first)
    (a.clips_dir / f".{Path(first).name}.a1b2c3.tmp").write_bytes(b"partial")
    resumed = generate_clips(tmp_path / "a", 3, **kw)
    assert resumed.generated == 1 and open(first, "rb").read() == reference
    assert not list(a.clips_dir.glob(".*"))
    with pytest.raises(InputError, match="other settings"):
        generate_clips(tmp_path / "a", 3, **{**kw, "duration": 2.0})


@pytest.mark.parametrize("container, vcodec, acodec", [("webm", "vp9", "opus"), ("mkv", "h264", "aac")])
def test_other_containers(tmp_path, container, vcodec, acodec):
    s = generate_clips(tmp_path, 1, seed=5, n_classes=2, duration=1.0, width=96, height=64, container=container,
                       sample_rate=44100, channels=2)
    path = s.items[0]["path"]
    assert path.endswith(f".{container}")
    info = stream_info(path)
    assert f"Video: {vcodec}" in info and f"Audio: {acodec}" in info and "stereo" in info, info
    frame = decode_frame(path, 12, 96, 64)
    assert_object_in_box(colour_mask(frame, CLASS_COLOURS[s.items[0]["class_index"]]), s.items[0]["bbox"][0])
    assert identify_class(decode_audio(path), 16000, 2) == s.items[0]["class_index"]


def test_frame_noise_makes_every_frame_differ_and_keeps_the_box(tmp_path):
    s = generate_clips(tmp_path, 1, seed=6, n_classes=3, duration=1.0, width=128, height=96, frame_noise=3.0)
    it = s.items[0]
    f12, f13 = (decode_frame(it["path"], i, 128, 96) for i in (12, 13))
    assert np.abs(f12.astype(int) - f13.astype(int)).mean() > 0.5
    assert_object_in_box(colour_mask(f12, CLASS_COLOURS[it["class_index"]]), it["bbox"][0])


def test_odd_frame_size_encodes(tmp_path):
    s = generate_clips(tmp_path, 1, seed=1, n_classes=2, duration=0.5, width=81, height=57)
    assert "81x57" in stream_info(s.items[0]["path"])


def test_wrong_input_is_one_line_error(tmp_path):
    with pytest.raises(InputError):
        generate_clips(tmp_path, 1, n_classes=17)
    with pytest.raises(InputError):
        generate_clips(tmp_path, 1, container="avi")
    runner = CliRunner()
    for args in (["--size", "12x"], ["--container", "avi"], ["--classes", "0"], ["--n", "0"],
                 ["--container", "webm", "--video-codec", "libx264"]):
        res = runner.invoke(avloc_cli, ["synth", "--out", str(tmp_path / "x"), *args])
        assert res.exit_code == 2, (args, res.output)
        assert "Traceback" not in res.output


def test_cli_writes_clips(tmp_path):
    res = CliRunner().invoke(avloc_cli, ["synth", "--out", str(tmp_path), "--n", "2", "--duration", "1", "--size", "64x48",
                                   "--classes", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "clips").glob("*.mp4"))) == 2
    assert len((tmp_path / "vggsound.csv").read_text().splitlines()) == 2


def test_cli_n_clips_and_the_old_spelling(tmp_path):
    args = ["--duration", "0.5", "--size", "32x32", "--classes", "2", "--no-progress"]
    res = CliRunner().invoke(avloc_cli, ["synth", "--out", str(tmp_path / "a"), "--n-clips", "2", *args])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "a" / "clips").glob("*.mp4"))) == 2
    # --n: old spelling, kept for one release (hidden); it writes the same set
    res = CliRunner().invoke(avloc_cli, ["synth", "--out", str(tmp_path / "b"), "--n", "2", *args])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "a" / "vggsound.csv").read_bytes() == (tmp_path / "b" / "vggsound.csv").read_bytes()
    help_text = CliRunner().invoke(avloc_cli, ["synth", "--help"]).output
    assert "--n-clips" in help_text and not re.search(r"--n\b(?!-)", help_text)


def test_cli_problems_reported_together(tmp_path):
    res = CliRunner().invoke(avloc_cli, ["synth", "--out", str(tmp_path / "x"), "--container", "avi", "--classes", "0",
                                         "--size", "12x", "--n-clips", "0"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("avloc: error:"), res.output
    for flag in ("--container", "--classes", "--size", "--n-clips"):
        assert flag in lines[0], flag
    assert not (tmp_path / "x").exists()


def _progress_lines(output: str) -> list:
    return [ln for ln in output.splitlines() if re.match(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] synth ", ln)]


def test_progress_lines_without_a_terminal(tmp_path, monkeypatch):
    monkeypatch.setenv("AVLOC_PROGRESS_INTERVAL", "0")
    args = ["--n-clips", "2", "--duration", "0.5", "--size", "32x32", "--classes", "2", "--benchmark", "vggss",
            "--items", "1"]
    res = CliRunner().invoke(avloc_cli, ["synth", "--out", str(tmp_path / "a"), *args])
    assert res.exit_code == 0, res.output
    lines = _progress_lines(res.stderr)
    assert any("synth clips: 2/2 (100.0%)" in ln and "done in" in ln for ln in lines), res.stderr
    assert any("synth vggss: 1/1 (100.0%)" in ln for ln in lines), res.stderr
    res = CliRunner().invoke(avloc_cli, ["synth", "--out", str(tmp_path / "b"), *args, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert not _progress_lines(res.output)


def test_written_files_get_the_umask_modes(tmp_path):
    old = os.umask(0o022)
    try:
        s = generate_clips(tmp_path / "a", 2, seed=2, n_classes=2, duration=0.5, width=32, height=32)
    finally:
        os.umask(old)
    for path in [s.csv_path, s.boxes_path, s.manifest_path] + [it["path"] for it in s.items]:
        assert os.stat(path).st_mode & 0o777 == 0o644, path
    old = os.umask(0o002)
    try:
        s = generate_clips(tmp_path / "b", 1, seed=2, n_classes=2, duration=0.5, width=32, height=32)
    finally:
        os.umask(old)
    assert os.stat(s.items[0]["path"]).st_mode & 0o777 == 0o664


# ---------------------------------------------------------------- scene and sound design

def _ciou(heat, gt):
    size = heat.shape[0]
    t = np.sort(heat.ravel())[size * size // 2]
    pred = heat >= t
    return (pred * gt).sum() / (gt.sum() + (pred * (gt == 0)).sum())


def test_audio_blind_strategies_score_low_while_the_truth_scores_high():
    """METHOD.md §5: with the median threshold, a centre prior and a blind pick of an object
    must score low AP50 on these scenes, while a map on the true object scores high."""
    size = 112
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    centre = -((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    rng = np.random.default_rng(0)
    scores = {"centre": [], "pick": [], "truth": []}
    for p in plan_clips(120, seed=2, n_classes=8, duration=10.0, test_fraction=0.0):
        renderer = SceneRenderer(p["scene"], size, size)
        labels = renderer.labels(5.0)
        objects = p["scene"].objects
        sounding = next(i for i, o in enumerate(objects) if o.sounding)
        box = sounding_box(renderer, 5.0)
        gt = np.zeros((size, size))
        x1, y1, x2, y2 = (int(v * size) for v in box)
        gt[y1:y2, x1:x2] = 1
        assert 0.24 <= gt.mean() <= 0.51

        def blob(i):
            ys, xs = np.nonzero(labels == i)
            return -((xx - xs.mean() / size) ** 2 + (yy - ys.mean() / size) ** 2)

        visible = [i for i in range(len(objects)) if (labels == i).any()]
        scores["centre"].append(_ciou(centre, gt))
        scores["pick"].append(_ciou(blob(int(rng.choice(visible))), gt))
        scores["truth"].append(_ciou(blob(sounding), gt))
    ap50 = {k: float(np.mean(np.array(v) >= 0.5)) for k, v in scores.items()}
    assert ap50["centre"] < 0.3, ap50
    assert ap50["pick"] < 0.5, ap50
    assert ap50["truth"] > 0.9, ap50


@pytest.mark.parametrize("sample_rate, channels", [(16000, 1), (44100, 2)])
def test_every_class_sound_is_identified(sample_rate, channels):
    rng = np.random.default_rng(4)
    for cls in range(len(CLASS_NAMES)):
        audio = render_mix([sample_sound(rng, cls)], 2.0, sample_rate, noise_seed=cls, channels=channels)
        assert audio.shape[-1 if channels == 1 else 1] == channels or channels == 1
        assert identify_class(audio, sample_rate, len(CLASS_NAMES)) == cls
    freqs = [class_frequency(i) for i in range(len(CLASS_NAMES))]
    assert max(freqs) < 8000 * 0.9  # all tones survive the 16 kHz pipeline


def test_box_is_exact_at_the_centre_frame_only():
    p = plan_clips(1, seed=9, n_classes=4, duration=10.0, test_fraction=0.0)[0]
    r = SceneRenderer(p["scene"], 320, 240)
    t = centre_frame_time(10.0, 25)
    box = mask_box(r.sounding_mask(t))
    frame = r.render(t)
    seen = mask_box(colour_mask(frame, CLASS_COLOURS[p["class_index"]], tol=40, opened=False))
    assert seen == box  # lossless render: exact
    assert mask_box(r.sounding_mask(0.0)) != box  # the object drifts away from it
