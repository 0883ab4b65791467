"""Tiny shard sets and EZ-VSL-style folders for the loader tests, written with the real shard writer.

Every sample gets a real JPEG (PIL), a random float16 spectrogram, and a SampleMeta json, in
the on-disk layout the shard tool produces: ``<split>-<idx:06d>.tar/.idx``, ``_stats.json``
written last, and ``dataset.json`` with the shard list and counts per split.
"""

from __future__ import annotations

import gc
import io
import json
import wave
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from PIL import Image

from avloc import schema
from avloc.tools.sharding.writer import ShardWriter
from avloc.utils.atomic import atomic_write_bytes

CLASSES = ["cat", "dog", "car", "rain, heavy"]


@pytest.fixture(autouse=True)
def collect_dali_pipelines():
    """Import into a test module that builds DALI pipelines. They sit in reference cycles, so without
    a collection here one may still be garbage when a later test forks (the shard tool's workers);
    a forked child that collects it hangs in DALI's shutdown."""
    yield
    gc.collect()


def clip_key(i: int) -> str:
    return schema.sample_key(schema.canonical_clip_id(f"vid{i:08d}", 30 + i))


def frame_jpeg(i: int, width: int = 96, height: int = 72, *, seed: int = 0) -> bytes:
    """A JPEG whose left half is bright and right half dark (flips are visible), plus noise."""
    rng = np.random.default_rng([seed, i])
    img = rng.integers(0, 60, size=(height, width, 3), dtype=np.uint8)
    img[:, : width // 2] += 180
    img[:, :, i % 3] //= 2
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def random_spec(i: int, *, seed: int = 0) -> np.ndarray:
    """A log-spectrogram-like array in roughly [-17, 2] (what log(psd + 1e-7) gives)."""
    rng = np.random.default_rng([seed, 1000 + i])
    return rng.uniform(-16.0, 2.0, size=schema.SPEC_SHAPE).astype(np.float16)


def sample_meta(i: int, key: str, split: str, *, width: int, height: int, labelled: bool = True) -> schema.SampleMeta:
    class_index = i % len(CLASSES) if labelled else -1
    return schema.SampleMeta(
        key=key, clip_id=key, label=CLASSES[class_index] if labelled else None, class_index=class_index,
        split=split, source_path=f"clips/{key}.mp4", clip_start=float(30 + i), duration=10.0, frame_time=5.0,
        fps=25.0, width=width, height=height, video_codec="h264", audio_codec="aac", source_sample_rate=16000,
        audio_seconds=10.0, window_start=3.5, flags=[],
        bbox=[[0.1, 0.2, 0.5, 0.6]] if i % 2 == 0 else None)


def write_shards(out: Path, counts: dict, *, samples_per_shard: int = 8, width: int = 96, height: int = 72,
                 seed: int = 0, drop_members: Optional[dict] = None, corrupt_jpeg: Optional[set] = None,
                 truncated_jpeg: Optional[set] = None, replace_members: Optional[dict] = None) -> dict:
    """Write shards for ``counts`` = {split: n_samples}. Returns {split: [keys in stored order]}.

    ``drop_members`` = {key: ext} leaves that member out of the sample; ``corrupt_jpeg`` = keys
    whose jpg member is garbage between valid JPEG start and end markers (only a decoder can
    tell); ``truncated_jpeg`` = keys whose jpg is cut in half (no end marker); ``replace_members`` =
    {key: {ext: bytes}} stores those bytes as the member (crafted frames, damaged json).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    drop_members = drop_members or {}
    corrupt_jpeg = corrupt_jpeg or set()
    truncated_jpeg = truncated_jpeg or set()
    summary_shards, keys_by_split, counter = {}, {}, 0
    for split, n in counts.items():
        keys_by_split[split], summary_shards[split] = [], []
        for shard_index, first in enumerate(range(0, n, samples_per_shard)):
            stem = schema.shard_stem(split, shard_index)
            keys = []
            with ShardWriter(out / f"{stem}.tar") as writer:
                for i in range(counter + first, counter + min(n, first + samples_per_shard)):
                    key = clip_key(i)
                    jpeg = frame_jpeg(i, width, height, seed=seed)
                    if key in corrupt_jpeg:
                        garbage = np.random.default_rng(i).integers(0, 256, 400, dtype=np.uint8)
                        jpeg = b"\xff\xd8\xff\xe0" + bytes(garbage) + b"\xff\xd9"
                    if key in truncated_jpeg:
                        jpeg = jpeg[: len(jpeg) // 2]
                    members = schema.encode_sample(sample_meta(i, key, split, width=width, height=height),
                                                   jpeg, random_spec(i, seed=seed))
                    members.pop(drop_members.get(key, "-"), None)
                    members.update((replace_members or {}).get(key, {}))
                    writer.write(key, members)
                    keys.append(key)
            atomic_write_bytes(out / f"{stem}_stats.json", json.dumps({"samples": len(keys)}).encode())
            summary_shards[split].append({"name": f"{stem}.tar", "samples": len(keys)})
            keys_by_split[split].extend(keys)
        counter += n
    summary = schema.dataset_summary(classes=CLASSES, counts={s: len(k) for s, k in keys_by_split.items()},
                                     shards=summary_shards)
    atomic_write_bytes(out / "dataset.json", json.dumps(summary, indent=1).encode())
    return keys_by_split


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = schema.SAMPLE_RATE) -> None:
    with wave.open(str(path), "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(2)
        fh.setframerate(sample_rate)
        fh.writeframes(np.asarray(samples, dtype="<i2").tobytes())


def write_folder(out: Path, n: int, *, seconds: float = 4.0, width: int = 96, height: int = 72, seed: int = 0) -> list:
    """An EZ-VSL-style folder: frames/<id>.jpg + audio/<id>.wav (16 kHz int16). Returns the ids."""
    out = Path(out)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        key = clip_key(i)
        (out / "frames" / f"{key}.jpg").write_bytes(frame_jpeg(i, width, height, seed=seed))
        rng = np.random.default_rng([seed, 2000 + i])
        t = np.arange(int(seconds * schema.SAMPLE_RATE)) / schema.SAMPLE_RATE
        audio = 8000 * np.sin(2 * np.pi * (200 + 50 * i) * t) + rng.normal(0, 500, t.shape)
        write_wav(out / "audio" / f"{key}.wav", np.clip(audio, -32768, 32767).astype(np.int16))
        ids.append(key)
    return ids


def gradient_frame(width: int = 160, height: int = 120) -> np.ndarray:
    """Red rises left to right, green top to bottom: a crop's position can be read off its pixels."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return np.stack([x, y, np.full_like(x, 128)], axis=-1).round().astype(np.uint8)


def write_gradient_shards(out: Path, n: int, *, width: int = 160, height: int = 120) -> bytes:
    """n samples that all carry the same gradient frame; returns its JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(gradient_frame(width, height)).save(buf, format="JPEG", quality=98)
    jpeg = buf.getvalue()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with ShardWriter(out / "train-000000.tar") as writer:
        for i in range(n):
            key = clip_key(i)
            writer.write(key, schema.encode_sample(sample_meta(i, key, "train", width=width, height=height),
                                                   jpeg, random_spec(i)))
    summary = schema.dataset_summary(classes=CLASSES, counts={"train": n},
                                     shards={"train": [{"name": "train-000000.tar", "samples": n}]})
    atomic_write_bytes(out / "dataset.json", json.dumps(summary).encode())
    return jpeg


def jpeg_claiming(width: int, height: int, i: int = 0) -> bytes:
    """A real small JPEG whose frame header is rewritten to claim ``width`` x ``height`` pixels (the
    file stays a few hundred bytes: a decoder that trusts the header allocates for the claim)."""
    data = bytearray(frame_jpeg(i, 16, 16))
    pos = 2
    while data[pos + 1] not in (0xC0, 0xC1, 0xC2):
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    data[pos + 5:pos + 7] = height.to_bytes(2, "big")
    data[pos + 7:pos + 9] = width.to_bytes(2, "big")
    return bytes(data)


def damage_index_row(index: Path, row: int, field: int, value: str) -> None:
    """Replace field ``field`` (0-based, whitespace-separated) of sample row ``row`` of a .idx file."""
    lines = Path(index).read_text().splitlines()
    parts = lines[row + 1].split()
    parts[field] = value
    lines[row + 1] = " ".join(parts)
    Path(index).write_text("\n".join(lines) + "\n")


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True
