"""Record `avloc localize` on this machine into benchmarks/results/localize-<name>.{jsonl,md}.

Two measurements, with a trained checkpoint (e.g. the one `avloc demo` writes):

* speed: seconds of wall time per minute of 360p video (640 x 360, 30 fps, H.264 + AAC, with
  per-frame sensor noise so decoding costs what real footage costs), at ``--every`` 1 and 0.5,
  with all outputs and with ``--json-only``; real time = 60 s per minute;
* quality over time: a synthetic clip whose sounding object crosses the frame and falls silent
  (avloc.tools.synth.tracking): hit rate of the peak on the object while it sounds, and the
  ``silent`` flag over the pause.

    python benchmarks/localize.py --checkpoint demo/run/checkpoints/best.pt --work /tmp/lz-bench
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def make_360p(path: Path, seconds: float) -> Path:
    import numpy as np

    from avloc.tools.synth.audio import render_mix, sample_sound
    from avloc.tools.synth.encode import EncodeSettings, encode_clip
    from avloc.tools.synth.render import SceneRenderer
    from avloc.tools.synth.scene import sample_scene

    if path.is_file():
        return path
    rng = np.random.default_rng(360)
    scene = sample_scene(rng, [2], 8, reference_time=seconds / 2, drift=0.02)
    audio = render_mix([sample_sound(rng, 2)], seconds, 16000, 5)
    settings = EncodeSettings(container="mp4", video_codec="libx264", audio_codec="aac", width=640, height=360,
                              fps=30, duration=seconds, sample_rate=16000, channels=1, frame_noise=4.0)
    encode_clip(path, SceneRenderer(scene, 640, 360), audio, settings)
    return path


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg), user + system."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_localize(video: Path, checkpoint: Path, out: Path, **kwargs) -> tuple:
    """(wall seconds, CPU seconds) of one localisation; CPU time barely depends on what else runs."""
    import avloc

    t0, c0 = time.perf_counter(), _cpu_seconds()
    avloc.localize(video, checkpoint, out=out, **kwargs)
    return time.perf_counter() - t0, _cpu_seconds() - c0


def tracking(checkpoint: Path, work: Path, every: float, seed: int) -> dict:
    import avloc
    from avloc.tools.synth.tracking import score_tracking, write_tracking_clip

    clip = write_tracking_clip(work / f"tracking-{seed}.mp4", seed=seed, class_index=seed % 8)
    result = avloc.localize(clip.path, checkpoint, every=every, out=work / f"tracking-{seed}-out")
    return {"seed": seed, "class_index": clip.class_index, **score_tracking(clip, result.rows)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the 360p clip")
    parser.add_argument("--tracking-seeds", type=int, default=4)
    parser.add_argument("--name", default="cpu")
    parser.add_argument("--every-half", action="store_true", help="also time --every 0.5")
    args = parser.parse_args(argv)
    from avloc.bench.harness import machine_info
    from avloc.bench.results import machine_line

    args.work.mkdir(parents=True, exist_ok=True)
    machine = machine_info(os.getloadavg()[0])
    video = make_360p(args.work / f"360p-{args.seconds:g}s.mp4", args.seconds)
    speed = []
    for every, json_only in [(1.0, False), (1.0, True)] + ([(0.5, False)] if args.every_half else []):
        import torch

        seconds, cpu = time_localize(video, args.checkpoint, args.work / f"speed-{every}-{json_only}", every=every,
                                     json_only=json_only)
        speed.append({"every": every, "json_only": json_only, "wall_s": round(seconds, 2), "cpu_s": round(cpu, 2),
                      "s_per_video_minute": round(seconds * 60 / args.seconds, 2),
                      "cpu_s_per_video_minute": round(cpu * 60 / args.seconds, 2),
                      "idle_2core_estimate_s_per_minute": round(cpu * 60 / args.seconds / 2, 2),
                      "torch_threads": torch.get_num_threads(), "load_1min": round(os.getloadavg()[0], 2)})
        print(speed[-1], flush=True)
    tracks = [tracking(args.checkpoint, args.work, 0.5, seed) for seed in range(args.tracking_seeds)]
    for t in tracks:
        print(t, flush=True)
    machine["load_average_1min_end"] = os.getloadavg()[0]
    record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "checkpoint": str(args.checkpoint),
              "video": {"width": 640, "height": 360, "fps": 30, "seconds": args.seconds}, "speed": speed,
              "tracking": tracks, "machine": machine}
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"localize-{args.name}.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    hits = sum(t["hits"] for t in tracks)
    sounding = sum(t["sounding_instants"] for t in tracks)
    lines = [f"# avloc localize on {args.name}", "", f"{record['date']}; {machine_line(machine)}", "",
             f"checkpoint: `{args.checkpoint}`", "",
             f"## Speed: {args.seconds:g} s of 640x360 30 fps H.264 + AAC (real time = 60 s per minute)", "",
             "| --every | outputs | wall s | wall s per video minute | CPU s per video minute | "
             "idle 2-core estimate (CPU s / 2) per minute | load (1 min) |", "|---|---|---|---|---|---|---|"]
    for s in speed:
        lines.append(f"| {s['every']:g} | {'table.json only' if s['json_only'] else 'video + sheet + tables'} | "
                     f"{s['wall_s']} | {s['s_per_video_minute']} | {s['cpu_s_per_video_minute']} | "
                     f"{s['idle_2core_estimate_s_per_minute']} | {s['load_1min']} |")
    lines += ["", "## Tracking a moving object that falls silent (tools/synth/tracking.py, --every 0.5)", "",
              "| seed | class | instants sounding | peak on object | hit rate | instants in pause | flagged silent | "
              "silent flag agrees |", "|---|---|---|---|---|---|---|---|"]
    for t in tracks:
        lines.append(f"| {t['seed']} | {t['class_index']} | {t['sounding_instants']} | {t['hits']} | "
                     f"{t['hit_rate']:.2f} | {t['pause_instants']} | {t['pause_flagged_silent']} | "
                     f"{t['silent_flag_agreement']:.2f} |")
    lines += ["", f"overall hit rate while sounding: {hits}/{sounding} = {hits / max(sounding, 1):.2f}"]
    (RESULTS / f"localize-{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
