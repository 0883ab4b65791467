"""The dataset card (``README.md``) written into every shard folder.

Its YAML front matter is what Hugging Face ``datasets`` reads first: ``configs`` make the tars
the default data (one split per avloc split), and ``dataset_info`` declares the features (so that no reader has to guess the json fields from
a few samples, and ``audio.npy`` is an int16 list, not an audio file needing a decoder). The
text says how to read a sample with nothing but the sample and this card: the frame, the
spectrogram's dtype / shape / axes / scale, split counts, recipe and schema version, and short
snippets for webdataset, ``datasets``, DALI and duckdb.

The manifest gets a card of its own in its folder, with a ``manifest`` config: ``datasets`` picks
one builder per folder from the first config's files, so a parquet config beside the tar config
in one card would be read as tars and fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from avloc import schema
from avloc.utils.atomic import atomic_write_text
from avloc.utils.progress import warn

MARKER = "<!-- avloc shard card: rewritten by every `avloc shard` run into this folder -->"
MANIFEST_CONFIG = "manifest"  # the manifest folder's config name, and its one split's name

# the json member's fields as ``datasets`` feature types (YAML form); every SampleMeta field once
JSON_FIELD_TYPES = {
    "key": {"dtype": "string"}, "clip_id": {"dtype": "string"}, "label": {"dtype": "string"},
    "class_index": {"dtype": "int64"}, "split": {"dtype": "string"}, "source_path": {"dtype": "string"},
    "clip_start": {"dtype": "float64"}, "duration": {"dtype": "float64"}, "frame_time": {"dtype": "float64"},
    "fps": {"dtype": "float64"}, "width": {"dtype": "int64"}, "height": {"dtype": "int64"},
    "video_codec": {"dtype": "string"}, "audio_codec": {"dtype": "string"},
    "source_sample_rate": {"dtype": "int64"}, "audio_seconds": {"dtype": "float64"},
    "window_start": {"dtype": "float64"}, "flags": {"list": "string"}, "recipe_hash": {"dtype": "string"},
    "schema_version": {"dtype": "int64"}, "bbox": {"list": {"list": "float64"}}, "spec_dtype": {"dtype": "string"},
    "spec_shape": {"list": "int64"}, "spec_axes": {"list": "string"},
}


def sample_features(keep_audio: bool) -> list:
    """The tar samples' features in ``datasets``' YAML form, members in the order they are written."""
    features = [{"name": "__key__", "dtype": "string"}, {"name": "__url__", "dtype": "string"},
                {"name": schema.EXT_FRAME, "dtype": "image"}, {"name": schema.EXT_SPEC, "dtype": "binary"}]
    if keep_audio:
        features.append({"name": schema.EXT_AUDIO, "list": "int16"})
    features.append({"name": schema.EXT_META,
                     "struct": [{"name": name, **kind} for name, kind in JSON_FIELD_TYPES.items()]})
    return features


def front_matter(summary: dict, keep_audio: bool) -> dict:
    splits = [split for split in schema.SPLITS if summary.get("shards", {}).get(split)]
    configs = []
    if splits:
        configs.append({"config_name": "default", "default": True,
                        "data_files": [{"split": split, "path": f"{split}-*.tar"} for split in splits]})
    meta = {"pretty_name": "avloc audio-visual shards",
            "tags": ["audio-visual", "sound-source-localization", "webdataset", "avloc"],
            **({"configs": configs} if configs else {}),
            # machine-readable: how to read a sample's members with nothing but the sample and this card
            "avloc": {"schema_version": summary.get("schema_version", schema.SCHEMA_VERSION),
                      "recipe_hash": summary.get("recipe_hash", schema.RECIPE_HASH),
                      "spec_member": schema.EXT_SPEC, **schema.SPEC_LAYOUT,
                      "audio_member": schema.EXT_AUDIO if keep_audio else None,
                      "counts": {split: int(summary.get("counts", {}).get(split, 0)) for split in schema.SPLITS}}}
    if splits:
        meta["dataset_info"] = [{"config_name": "default", "features": sample_features(keep_audio)}]
    return meta


def _splits_table(summary: dict) -> str:
    rows = ["| split | samples | shards |", "|---|---|---|"]
    for split in schema.SPLITS:
        shards = summary.get("shards", {}).get(split, [])
        rows.append(f"| {split} | {int(summary.get('counts', {}).get(split, 0))} | {len(shards)} |")
    return "\n".join(rows)


def _frame_text(frame: dict) -> str:
    facts = {"short_side": "shorter side (px)", "jpeg_quality": "JPEG quality", "resize": "resize filter",
             "time": "time in the clip"}
    lines = [f"- {facts.get(name, name)}: {value}" for name, value in frame.items()]
    return "\n".join(lines) or "- (not recorded)"


def card_text(summary: dict, keep_audio: bool) -> str:
    """The whole ``README.md`` for a shard folder whose ``dataset.json`` is ``summary``."""
    head = yaml.safe_dump(front_matter(summary, keep_audio), sort_keys=False, allow_unicode=True)
    bins, frames = schema.SPEC_SHAPE
    first_tar = next((entries[0]["name"] for entries in summary.get("shards", {}).values() if entries),
                     "train-000000.tar")
    split = first_tar.split("-", 1)[0]
    last = max((int(e["name"][len(split) + 1:len(split) + 7]) for e in summary.get("shards", {}).get(split, [])),
               default=0)
    recipe = json.dumps(summary.get("recipe", schema.RECIPE), sort_keys=True)
    audio_row = (f"| `{schema.EXT_AUDIO}` | the 3 s window the spectrogram was computed from: 16 kHz mono int16, "
                 f"shape ({schema.WINDOW_SAMPLES},), a NumPy `.npy` file (webdataset's and `datasets`' default "
                 "decoders return an array) |\n" if keep_audio else "")
    return f"""---
{head}---
{MARKER}

# avloc shards

Clips turned into [WebDataset](https://github.com/webdataset/webdataset) tar shards by
`avloc shard`: one sample per clip, the clip's frame and the FNAC log-spectrogram of its
central 3 s of audio, for self-supervised sound-source localisation.
Schema version {summary.get("schema_version", schema.SCHEMA_VERSION)}, recipe hash
`{summary.get("recipe_hash", schema.RECIPE_HASH)}`.

## Splits

{_splits_table(summary)}

Every input file has one row in `{schema.MANIFEST_PATH}` (ok / failed with its reason, flags,
timings). It lives in its own folder, with its own card (config `{MANIFEST_CONFIG}`), so that
`*.parquet` here holds each clip once (the rows of one shard beside each tar) and a plain
`load_dataset` of this folder reads the tars.

## A sample

| member | what it is |
|---|---|
| `{schema.EXT_FRAME}` | the frame, JPEG (facts below) |
| `{schema.EXT_SPEC}` | the log-spectrogram: raw bytes, no header (facts below) |
{audio_row}| `{schema.EXT_META}` | metadata: clip id, label, class index, split, source file, frame time, codecs, flags, boxes if known, and the spectrogram's `spec_dtype` / `spec_shape` / `spec_axes` |

Frame:
{_frame_text(summary.get("frame", {}))}

Spectrogram (`{schema.EXT_SPEC}`):
- dtype `{schema.SPEC_DTYPE.str}` (little-endian float16), shape {bins} x T with T = {frames} here,
  C order: `np.frombuffer(b, "<f2").reshape({bins}, -1)`
- axes: frequency x time; row f is {schema.SAMPLE_RATE / schema.NPERSEG:g} Hz * f (0 to
  {schema.SAMPLE_RATE // 2} Hz), column t is the window starting at sample {schema.HOP} * t
- values: natural log of the power spectral density, `log(scipy.signal.spectrogram(x, {schema.SAMPLE_RATE},
  window=("tukey", {schema.TUKEY_ALPHA}), nperseg={schema.NPERSEG}, noverlap={schema.NOVERLAP})[2] + {schema.LOG_FLOOR:g})`
  of the central {schema.WINDOW_SECONDS:g} s at {schema.SAMPLE_RATE} Hz mono (tiled when shorter)
- the network sees the values divided by {schema.SPEC_SCALE:g}
- the same facts are in every sample's json and in the parquet key-value metadata (`avloc.spec_*`)

Recipe: `{recipe}`

## Reading it

webdataset:
```python
import webdataset as wds, numpy as np
for s in wds.WebDataset("{split}-{{000000..{last:06d}}}.tar", shardshuffle=False).decode("rgb"):
    frame, meta = s["{schema.EXT_FRAME}"], s["{schema.EXT_META}"]
    spec = np.frombuffer(s["{schema.EXT_SPEC}"], "<f2").reshape({bins}, -1)
```

Hugging Face `datasets` (`streaming=True` works too):
```python
import datasets, numpy as np
ds = datasets.load_dataset("path/to/this/folder", split="{split}")
s = ds[0]  # s["{schema.EXT_FRAME}"] is a PIL image, s["{schema.EXT_META}"] a dict
spec = np.frombuffer(s["{schema.EXT_SPEC}"], "<f2").reshape({bins}, -1)
rows = datasets.load_dataset("path/to/this/folder/{schema.MANIFEST_DIR}", split="{MANIFEST_CONFIG}")  # the manifest
```

NVIDIA DALI (the `.idx` beside each tar is its index):
```python
from nvidia.dali import fn, pipeline_def, types
@pipeline_def(batch_size=8, num_threads=2, device_id=None)
def pipe():
    jpg, spec, meta = fn.readers.webdataset(paths=["{first_tar}"], index_paths=["{first_tar[:-4]}.idx"],
        ext=["{schema.EXT_FRAME}", "{schema.EXT_SPEC}", "{schema.EXT_META}"], dtypes=[types.UINT8, types.FLOAT16, types.UINT8])
    return fn.decoders.image(jpg), fn.reshape(spec, shape=[{bins}, -1]), meta
```

duckdb (rows only; frames and spectrograms are in the tars):
```python
import duckdb
duckdb.sql("SELECT split, count(*) FROM '*.parquet' WHERE status = 'ok' GROUP BY split")
duckdb.sql("SELECT status, reason, count(*) FROM '{schema.MANIFEST_PATH}' GROUP BY ALL")
duckdb.sql("SELECT key, value FROM parquet_kv_metadata('{schema.MANIFEST_PATH}')")
```

## Files

- `<split>-NNNNNN.tar`: the samples; `.idx`: DALI index; `.parquet`: that shard's rows;
  `_stats.json`: written last, marks the shard done (an interrupted `avloc shard` resumes from it)
- `dataset.json`: classes (index = `class_index`), counts, shards, recipe, build options
- `{schema.MANIFEST_PATH}`: one row per input file; `missing_ids.txt`: listed ids with no file

The frames and audio come from the source clips and keep their licence and terms of use.
"""


def manifest_card_text(summary: dict) -> str:
    """The card of the manifest's folder: one parquet config, the status values, the key-value metadata."""
    head = yaml.safe_dump({
        "pretty_name": "avloc shard manifest", "tags": ["avloc"],
        "configs": [{"config_name": MANIFEST_CONFIG, "default": True,
                     "data_files": [{"split": MANIFEST_CONFIG, "path": Path(schema.MANIFEST_PATH).name}]}]},
        sort_keys=False)
    return f"""---
{head}---
{MARKER}

# avloc shard manifest

One row per input clip file of the shard set in the folder above (schema version
{summary.get("schema_version", schema.SCHEMA_VERSION)}, recipe hash `{summary.get("recipe_hash", schema.RECIPE_HASH)}`):
`status` is `ok` (in shard `shard` at `shard_position`), `failed` (`reason`, `detail`),
`duplicate`, `excluded` or `not_in_subset`; `flags`, the probed facts and the timings follow.
The parquet key-value metadata (`avloc.*`) says how to read a sample's spectrogram bytes.
"""


def write_card(out: Path, summary: dict, keep_audio: bool) -> Path:
    """Write ``README.md`` into ``out`` (and the manifest folder's card); a README there that avloc
    did not write is kept aside first."""
    _write_one(Path(out) / schema.CARD_NAME, card_text(summary, keep_audio))
    _write_one(Path(out) / schema.MANIFEST_DIR / schema.CARD_NAME, manifest_card_text(summary))
    return Path(out) / schema.CARD_NAME


def _write_one(path: Path, text: str) -> None:
    try:
        existing = path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
    except OSError:
        existing = None
    if existing is not None and MARKER not in existing:
        kept = path.with_name("README.user.md")
        shutil.move(str(path), str(kept))
        warn(f"{path} was not written by avloc; kept as {kept.name}, the dataset card takes its place")
    atomic_write_text(path, text)
