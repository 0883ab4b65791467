"""Prepare, on a CPU machine, what benchmarks/device/run.py needs on the GPU host, in one folder that
travels with the run (default ``device-inputs/``, ignored by git):

  vggss/     a synthetic VGG-SS copy (frames/<id>.jpg 320x240, audio/<id>.wav 10 s 16 kHz,
             vggss.json, vggss_test.csv) of UNIQUE items; run.py links it up to the test-set size
  shards/    a small shard set in the training format (jpg + float16 spectrogram + json per
             sample) built from those items; run.py links its tars up to a larger set
  wheels/    pure-Python wheels the host lacks (webdataset and its braceexpand)
  manifest.json  what was prepared, from which commit, and the payload's size

Everything that travels (the repository's tracked files plus this folder) must stay within the
device machine's 64 MiB; the script measures it and fails when over.

  python benchmarks/device/prepare.py                 # the real payload into device-inputs/
  python benchmarks/device/prepare.py --tiny --out D  # a tiny one for run.py --dry-run
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
PAYLOAD_LIMIT_BYTES = 64 * 2**20
# what the real payload holds
FULL = {"vggss_items": 24, "shard_samples": 128, "samples_per_shard": 32}
TINY = {"vggss_items": 4, "shard_samples": 12, "samples_per_shard": 6}
WHEELS = ("webdataset", "braceexpand")  # the host has numpy and pyyaml, webdataset's other needs
HOST_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def tracked_bytes(repo: Path = REPO) -> int:
    """Bytes of the repository's tracked files (what travels besides the payload)."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / n.decode()).stat().st_size for n in names if n and (repo / n.decode()).is_file())


def untracked_bytes(repo: Path = REPO) -> int:
    """Bytes of untracked files git does not ignore (they travel too)."""
    names = subprocess.run(["git", "ls-files", "-z", "--others", "--exclude-standard"], cwd=repo,
                           capture_output=True, check=True).stdout.split(b"\0")
    return sum((repo / n.decode()).stat().st_size for n in names if n and (repo / n.decode()).is_file())


def write_vggss(out: Path, n: int):
    from avloc.tools.synth import write_benchmark

    return write_benchmark(out, "vggss", n, seed=0)


def write_shards(out: Path, items: list, n: int, per_shard: int) -> dict:
    """``n`` training samples cycling over the benchmark ``items`` (their frame and the spectrogram of
    their audio's central window), in shards of ``per_shard``, with dataset.json."""
    from avloc import schema
    from avloc.evaluation.media import load_spec
    from avloc.tools.sharding.writer import ShardWriter
    from avloc.utils.atomic import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    specs = [(load_spec(it["audio"])[0] * schema.SPEC_SCALE).numpy().astype(np.float16) for it in items]
    frames = [Path(it["frame"]).read_bytes() for it in items]
    entries = []
    for shard, first in enumerate(range(0, n, per_shard)):
        stem = schema.shard_stem("train", shard)
        with ShardWriter(out / f"{stem}.tar") as writer:
            for i in range(first, min(n, first + per_shard)):
                item = items[i % len(items)]
                key = schema.sample_key(schema.canonical_clip_id(f"dev{i:08d}", i))
                meta = schema.SampleMeta(
                    key=key, clip_id=key, label=item["label"], class_index=int(item["class_index"]), split="train",
                    source_path=item["frame"], clip_start=float(i), duration=10.0, frame_time=5.0, fps=25.0,
                    width=320, height=240, video_codec="h264", audio_codec="pcm_s16le", source_sample_rate=16000,
                    audio_seconds=10.0, window_start=3.5, flags=[], bbox=item["bbox"])
                writer.write(key, schema.encode_sample(meta, frames[i % len(items)], specs[i % len(items)]))
        entries.append({"name": f"{stem}.tar", "samples": min(n, first + per_shard) - first})
    classes = sorted({(int(it["class_index"]), it["label"]) for it in items})
    summary = schema.dataset_summary(classes=[label for _, label in classes], counts={"train": n},
                                     shards={"train": entries})
    atomic_write_text(out / "dataset.json", json.dumps(summary, indent=1))
    return {"samples": n, "shards": len(entries)}


def download_wheels(out: Path) -> list:
    """The host's missing pure-Python packages, at the versions installed here, for Python 3.12."""
    from importlib.metadata import version

    out.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={version(name)}" for name in WHEELS]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
           HOST_PYTHON, "--implementation", "cp", *[a for p in PLATFORMS for a in ("--platform", p)], "-d", str(out),
           *pins]
    subprocess.run(cmd, check=True, timeout=300)
    return sorted(p.name for p in out.glob("*.whl"))


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return head + ("+local-changes" if dirty else "")
    except OSError:
        return "unknown"


def prepare(out: Path, *, tiny: bool = False, wheels: bool = True) -> dict:
    plan = TINY if tiny else FULL
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    bench = write_vggss(out / "vggss", plan["vggss_items"])
    shards = write_shards(out / "shards", bench.items, plan["shard_samples"], plan["samples_per_shard"])
    wheel_files = download_wheels(out / "wheels") if wheels else []
    payload = folder_bytes(out)
    manifest = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "commit": commit(), "tiny": tiny, "plan": plan, "vggss_items": len(bench.items), "shards": shards,
                "wheels": wheel_files, "payload_bytes": payload}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "device-inputs"), help="the folder to (re)write")
    parser.add_argument("--tiny", action="store_true", help="a few items only (for run.py --dry-run)")
    parser.add_argument("--no-wheels", action="store_true", help="do not download the wheels")
    args = parser.parse_args(argv)
    manifest = prepare(Path(args.out), tiny=args.tiny, wheels=not args.no_wheels)
    travels = manifest["payload_bytes"] + tracked_bytes() + untracked_bytes()
    print(json.dumps(manifest, indent=1))
    print(f"payload {manifest['payload_bytes'] / 2**20:.1f} MiB; with the repository {travels / 2**20:.1f} MiB "
          f"of the {PAYLOAD_LIMIT_BYTES / 2**20:.0f} MiB that may travel")
    if not args.tiny and travels > PAYLOAD_LIMIT_BYTES:
        print("error: too large to travel; lower FULL in benchmarks/device/prepare.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
