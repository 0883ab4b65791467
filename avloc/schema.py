"""The one shard sample schema shared by the shard writer, every loader, evaluate and tests.

A sample is one clip, stored in a WebDataset tar as members named ``<key>.<ext>``:

* ``jpg``       the clip's centre frame, JPEG, shorter side ``frame_short_side`` (default 246, the
                training scale of 224 crops; 256 before);
* ``spec.f16``  the FNAC log-spectrogram of the central 3 s at 16 kHz mono: raw little-endian
                float16 bytes, C order, shape [SPEC_BINS, SPEC_FRAMES] (257 x 200). Raw bytes
                (no .npy header) so DALI's webdataset reader returns it typed with
                ``dtypes=FLOAT16`` and the torch loader needs one ``frombuffer``;
* ``audio.npy`` optional: the 16 kHz mono int16 audio window itself (``--keep-audio``), a NumPy
                ``.npy`` file, which webdataset's and Hugging Face ``datasets``' default decoders
                both turn into an array (older sets stored ``flac``);
* ``json``      metadata, the fields of ``SampleMeta`` (with the spectrogram's dtype and shape).

The key is the clip id (``<ytid>_<start:06d>``) when that is tar-safe; see ``sample_key`` for
the rule for any other id (WebDataset splits the key from the extension at the first dot of the
member's basename, so a key never holds a dot).

Shards are grouped by split: ``<split>-<index:06d>.tar`` with ``.idx`` (DALI index, v1.2) and
``.parquet`` (rows of this shard) beside it, and ``<split>-<index:06d>_stats.json`` written
last to mark the shard done. ``dataset.json``, ``MANIFEST_PATH`` (in its own folder, so that a
``*.parquet`` glob or a plain directory load never mixes it with the per-shard rows) and the
dataset card ``README.md`` describe the whole set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Optional

import numpy as np

SCHEMA_VERSION = 1

# Spectrogram recipe (METHOD.md §1.1). Changing any of these changes RECIPE_HASH.
SAMPLE_RATE = 16000
WINDOW_SECONDS = 3.0
WINDOW_SAMPLES = int(WINDOW_SECONDS * SAMPLE_RATE)  # 48000
NPERSEG = 512
NOVERLAP = 274
HOP = NPERSEG - NOVERLAP  # 238
TUKEY_ALPHA = 0.25
LOG_FLOOR = 1e-7
SPEC_SCALE = 12.0  # the network sees log_spec / 12
SPEC_BINS = NPERSEG // 2 + 1  # 257
SPEC_FRAMES = (WINDOW_SAMPLES - NPERSEG) // HOP + 1  # 200
SPEC_DTYPE = np.dtype("<f2")
SPEC_SHAPE = (SPEC_BINS, SPEC_FRAMES)
SPEC_AXES = ("frequency", "time")
# what a sample's json and the parquet key-value metadata say about the spectrogram bytes
SPEC_LAYOUT = {"spec_dtype": SPEC_DTYPE.str, "spec_shape": list(SPEC_SHAPE), "spec_axes": list(SPEC_AXES),
               "spec_values": f"natural log of the power spectral density (+ {LOG_FLOOR:g})", "spec_scale": SPEC_SCALE}

# Frames are stored at the training scale: the recipe resizes the shorter side to int(1.1 x 224)
# before its random 224 crop (METHOD.md §1.2), so a stored 246 frame leaves training only the
# crop and flip. 256 was the default of earlier versions (still read; the loaders resize it).
TRAIN_IMAGE_SIZE = 224
FRAME_SHORT_SIDE = int(1.1 * TRAIN_IMAGE_SIZE)  # 246
LEGACY_FRAME_SHORT_SIDE = 256
JPEG_QUALITY = 95

EXT_FRAME = "jpg"
EXT_SPEC = "spec.f16"
EXT_AUDIO = "audio.npy"
EXT_META = "json"
AUDIO_DTYPE = np.dtype("<i2")

SPLITS = ("train", "val", "test")

# Files of a shard set besides the shards (paths relative to the set's folder).
SUMMARY_NAME = "dataset.json"
CARD_NAME = "README.md"
MANIFEST_DIR = "_manifest"  # its own folder and card; "_": recursive parquet readers (Arrow, Spark) skip it
MANIFEST_PATH = f"{MANIFEST_DIR}/manifest.parquet"
LEGACY_MANIFEST_PATH = "manifest.parquet"  # where sets made before the card kept it

RECIPE = {
    "sample_rate": SAMPLE_RATE,
    "window_seconds": WINDOW_SECONDS,
    "window": ["tukey", TUKEY_ALPHA, "periodic"],
    "nperseg": NPERSEG,
    "noverlap": NOVERLAP,
    "detrend": "constant",
    "scaling": "density",
    "log_floor": LOG_FLOOR,
    "spec_dtype": "float16",
    "spec_shape": list(SPEC_SHAPE),
    "audio_window": "central, tiled if shorter",
}
RECIPE_HASH = hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]

# Containers read as clips (file discovery, and extensions stripped from ids in lists).
CLIP_EXTENSIONS = (".mp4", ".mkv", ".webm", ".mov", ".m4v", ".avi", ".flv", ".3gp", ".mpg", ".mpeg", ".ts")

_CLIP_ID = re.compile(r"^(?P<ytid>[A-Za-z0-9_-]{11})_(?P<start>\d{6})$")
_CLIP_ID_MS = re.compile(r"^(?P<ytid>[A-Za-z0-9_-]{11})_(?P<start_ms>\d+)_(?P<end_ms>\d+)$")


@dataclasses.dataclass
class SampleMeta:
    """What the ``json`` member of a sample holds."""

    key: str
    clip_id: str
    label: Optional[str]
    class_index: int  # -1 when unlabelled
    split: str
    source_path: str
    clip_start: Optional[float]  # seconds in the source YouTube video, from the file name
    duration: float  # seconds of the clip file
    frame_time: float  # seconds into the clip file where the frame was taken
    fps: Optional[float]
    width: int
    height: int
    video_codec: Optional[str]
    audio_codec: Optional[str]
    source_sample_rate: Optional[int]
    audio_seconds: float  # decoded audio length in the file
    window_start: float  # seconds into the clip file where the 3 s window starts
    flags: list  # e.g. ["short_audio_tiled", "silent_audio", "rotated"]
    recipe_hash: str = RECIPE_HASH
    schema_version: int = SCHEMA_VERSION
    bbox: Optional[list] = None  # [[x1, y1, x2, y2], ...] as fractions of the frame, if known
    # how to read the ``spec.f16`` bytes with nothing else (absent from the json of older sets)
    spec_dtype: Optional[str] = SPEC_DTYPE.str
    spec_shape: Optional[list] = dataclasses.field(default_factory=lambda: list(SPEC_SHAPE))
    spec_axes: Optional[list] = dataclasses.field(default_factory=lambda: list(SPEC_AXES))

    def to_json_bytes(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json_bytes(cls, data: bytes) -> "SampleMeta":
        fields = json.loads(data)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in fields.items() if k in known})


def parse_clip_id(stem: str) -> Optional[dict]:
    """``<ytid>_<start:06d>`` or ``<ytid>_<start_ms>_<end_ms>`` -> {ytid, start}; None otherwise."""
    m = _CLIP_ID.match(stem)
    if m:
        return {"ytid": m["ytid"], "start": float(int(m["start"]))}
    m = _CLIP_ID_MS.match(stem)
    if m:
        return {"ytid": m["ytid"], "start": int(m["start_ms"]) / 1000.0}
    return None


def canonical_clip_id(ytid: str, start_seconds: float) -> str:
    return f"{ytid}_{int(start_seconds):06d}"


_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
# a member name is "<key>.<ext>", ext at most "spec.f16"; USTAR holds 100 bytes in one header block
MAX_KEY_LENGTH = 80


def clip_id_for(stem: str) -> tuple[str, Optional[float], bool]:
    """A file stem -> (clip id, clip start in seconds or None, stem was already canonical).

    ``<ytid>_<start:06d>`` is its own id; ``<ytid>_<start_ms>_<end_ms>`` (another common copy
    layout) gets the canonical ``<ytid>_<start:06d>`` so that it matches the published id lists.
    Any other stem is its own id (Unicode-normalised to NFC) and has no clip start.
    """
    stem = unicodedata.normalize("NFC", stem)
    parsed = parse_clip_id(stem)
    if parsed is None:
        return stem, None, False
    canonical = canonical_clip_id(parsed["ytid"], parsed["start"])
    return canonical, parsed["start"], canonical == stem


def sample_key(clip_id: str) -> str:
    """The WebDataset key of a clip id: tar-safe, no dot, short enough for one USTAR header block.

    An id made only of ``[A-Za-z0-9_-]`` (every VGG-Sound id) is its own key. Any other id
    (non-ASCII letters, spaces, dots, ...) gets ``<ascii fold, other characters as '_'>_u<8 hex
    of sha1(id)>``, cut to ``MAX_KEY_LENGTH``; the key differs from the id exactly when it was
    rewritten (the sample is then flagged ``key_rewritten``; its json keeps the original id).
    """
    if _SAFE_KEY.match(clip_id) and len(clip_id) <= MAX_KEY_LENGTH:
        return clip_id
    folded = unicodedata.normalize("NFKD", clip_id).encode("ascii", "ignore").decode("ascii")
    folded = re.sub(r"[^A-Za-z0-9_-]", "_", folded).strip("_") or "clip"
    digest = hashlib.sha1(clip_id.encode("utf-8")).hexdigest()[:8]
    return f"{folded[:MAX_KEY_LENGTH - 11]}_u{digest}"


def encode_spec(log_spec: np.ndarray) -> bytes:
    arr = np.asarray(log_spec)
    if arr.shape != SPEC_SHAPE:
        raise ValueError(f"spectrogram shape {arr.shape} != {SPEC_SHAPE}")
    return np.ascontiguousarray(arr, dtype=SPEC_DTYPE).tobytes()


def manifest_path(root) -> Path:
    """The manifest of the shard set in ``root``: ``MANIFEST_PATH``, or where older sets kept it."""
    root = Path(root)
    legacy = root / LEGACY_MANIFEST_PATH
    current = root / MANIFEST_PATH
    return legacy if legacy.is_file() and not current.is_file() else current


def decode_spec(data: bytes) -> np.ndarray:
    arr = np.frombuffer(data, dtype=SPEC_DTYPE)
    if arr.size != SPEC_BINS * SPEC_FRAMES:
        raise ValueError(f"spectrogram has {arr.size} values, expected {SPEC_BINS * SPEC_FRAMES}")
    return arr.reshape(SPEC_SHAPE)


def shard_stem(split: str, index: int) -> str:
    return f"{split}-{index:06d}"


def encode_audio(window_int16: np.ndarray) -> bytes:
    """The ``audio.npy`` member: the int16 window as a NumPy ``.npy`` file (dtype and shape in its header)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(window_int16, dtype=AUDIO_DTYPE), allow_pickle=False)
    return buf.getvalue()


def encode_sample(meta: SampleMeta, jpeg: bytes, log_spec: np.ndarray, audio: Optional[bytes] = None) -> dict[str, bytes]:
    """Members of one sample, in the order they are written (ext -> bytes)."""
    members = {EXT_FRAME: jpeg, EXT_SPEC: encode_spec(log_spec)}
    if audio is not None:
        members[EXT_AUDIO] = audio
    members[EXT_META] = meta.to_json_bytes()
    return members


def dataset_summary(**fields: Any) -> dict:
    """The skeleton of ``dataset.json``; the shard runner fills counts and classes."""
    return {"schema_version": SCHEMA_VERSION, "recipe": RECIPE, "recipe_hash": RECIPE_HASH, **fields}
