"""build_loader over real shard tars (torch and DALI backends) and over an EZ-VSL folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import loader_fixtures as lf
from loader_fixtures import collect_dali_pipelines  # noqa: F401  (autouse)
from avloc import schema
from avloc.data import LoaderOptions, augment, build_loader
from avloc.errors import InputError

torch.set_num_threads(1)

SHARD_BACKENDS = ["torch", pytest.param("dali", marks=pytest.mark.dali)]
IMG_LO = min((0 - m) / s for m, s in zip(augment.IMAGENET_MEAN, augment.IMAGENET_STD))
IMG_HI = max((1 - m) / s for m, s in zip(augment.IMAGENET_MEAN, augment.IMAGENET_STD))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    keys = lf.write_shards(out, {"train": 48, "val": 11}, samples_per_shard=10)
    return out, keys


def keys_of(batches) -> list:
    return [k for b in batches for k in b["key"]]


def stored_spec(key: str) -> torch.Tensor:
    i = int(key[3:11])
    return torch.from_numpy(lf.random_spec(i).astype(np.float32)).unsqueeze(0) / schema.SPEC_SCALE


def load(source, backend, split="train", **kw):
    kw.setdefault("num_workers", 2 if backend == "torch" else 1)
    return build_loader(source, split, LoaderOptions(backend=backend, **kw))


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_batch_structure_and_ranges(shards, backend, mode):
    root, keys = shards
    loader = load(root, backend, split="val", mode=mode, batch_size=4, drop_last=False)
    assert loader.backend == backend and loader.num_samples == 11 and len(loader) == 3
    batches = list(loader)
    assert [len(b["key"]) for b in batches] == [4, 4, 3]
    assert sorted(keys_of(batches)) == sorted(keys["val"])
    for b in batches:
        n = len(b["key"])
        assert b["image"].shape == (n, 3, 224, 224) and b["image"].dtype == torch.float32
        assert b["spec"].shape == (n, 1, 257, 200) and b["spec"].dtype == torch.float32
        assert b["label"].dtype == torch.int64 and b["label"].shape == (n,)
        assert IMG_LO - 1e-4 <= b["image"].min() and b["image"].max() <= IMG_HI + 1e-4
        assert b["image"].std() > 0.5  # not a constant fill
        for j, key in enumerate(b["key"]):
            i = int(key[3:11])
            assert b["label"][j] == i % len(lf.CLASSES)
            assert b["bbox"][j] == ([[0.1, 0.2, 0.5, 0.6]] if i % 2 == 0 else None)
            expected = stored_spec(key)
            if mode == "eval":
                assert torch.equal(b["spec"][j], expected)
            else:  # masked entries are zero, all others untouched
                kept = b["spec"][j] != 0
                assert torch.equal(b["spec"][j][kept], expected[kept])


def flipped(image: torch.Tensor) -> bool:
    """The fixture frames are bright on the left; a flipped crop is bright on the right."""
    half = image.shape[-1] // 2
    return bool(image[..., half:].mean() > image[..., :half].mean())


def mask_spans(spec: torch.Tensor):
    """(freq start, width), (time start, width) of the fully zeroed rows / columns of [1,257,T]."""
    zero = spec[0] == 0
    spans = []
    for full in (zero.all(dim=1), zero.all(dim=0)):
        idx = torch.nonzero(full).flatten().tolist()
        if idx:
            assert idx == list(range(idx[0], idx[-1] + 1)), "a mask must be one contiguous band"
            spans.append((idx[0], len(idx)))
        else:
            spans.append((None, 0))
    return spans


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
def test_augmentation_statistics(shards, backend):
    root, _ = shards
    loader = load(root, backend, mode="train", batch_size=8)
    flips, f_spans, t_spans = [], [], []
    for epoch in range(3):
        loader.set_epoch(epoch)
        for b in loader:
            for image, spec in zip(b["image"], b["spec"]):
                flips.append(flipped(image))
                f, t = mask_spans(spec)
                f_spans.append(f)
                t_spans.append(t)
    n = len(flips)
    assert n == 144
    assert 0.35 <= sum(flips) / n <= 0.65  # +-0.15 is 3.6 sigma at n = 144
    f_widths = [w for _, w in f_spans]
    t_widths = [w for _, w in t_spans]
    assert max(f_widths) <= augment.MASK_MAX_WIDTH and max(t_widths) <= augment.MASK_MAX_WIDTH
    assert len(set(f_widths)) >= 6 and len(set(t_widths)) >= 6  # widths spread over 0..9
    assert 3.5 <= np.mean(f_widths) <= 5.5 and 3.5 <= np.mean(t_widths) <= 5.5  # 4.5 +- 4 sigma
    # frequency masks start anywhere on the 257-bin axis (the reference's time-axis draw never passes 191)
    f_ends = [s + w for s, w in f_spans if w]
    t_ends = [s + w for s, w in t_spans if w]
    assert max(f_ends) <= 257 and max(t_ends) <= 200
    assert max(s for s, w in f_spans if w) > 200
    assert min(s for s, w in f_spans if w) < 60 and min(s for s, w in t_spans if w) < 40
    assert max(s for s, w in t_spans if w) > 150


SILENCE = (torch.tensor(augment.SPEC_MASK_FILLS["silence"], dtype=torch.float32) / schema.SPEC_SCALE).item()


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
def test_spec_mask_fill_silence(shards, backend):
    """With spec_mask_fill="silence" the masks hold log(1e-7) / 12 instead of zero, at the same
    positions as with zero fill (same draws), and nothing else changes."""
    root, _ = shards
    zero = next(iter(load(root, backend, mode="train", batch_size=8)))
    silent = next(iter(load(root, backend, mode="train", batch_size=8, spec_mask_fill="silence")))
    assert zero["key"] == silent["key"] and torch.equal(zero["image"], silent["image"])
    masked = 0
    for z, q, key in zip(zero["spec"], silent["spec"], silent["key"]):
        expected = stored_spec(key)
        assert not (q == 0).any()
        assert torch.equal(z == 0, q == SILENCE)  # the same cells, other value
        masked += int((q == SILENCE).sum())
        kept = q != SILENCE
        assert torch.equal(q[kept], expected[kept])
    assert masked > 0


def test_spec_mask_fill_folder_and_bad_value(folder, shards):
    root, ids = folder
    options = LoaderOptions(mode="train", batch_size=6, num_workers=0, spec_mask_fill="silence")
    spec = next(iter(build_loader(root, "train", options)))["spec"]
    assert (spec == SILENCE).any() and not (spec == 0).any()
    with pytest.raises(InputError, match="spec_mask_fill must be one of zero, silence"):
        build_loader(shards[0], "train", LoaderOptions(backend="torch", spec_mask_fill="mean"))


def test_augment_draws_are_uniform():
    rng = np.random.default_rng(0)
    draws = [augment.draw_augment(rng) for _ in range(20000)]
    widths = np.bincount([d.freq_width for d in draws], minlength=10)
    assert len(widths) == 10 and widths.min() > 1700  # each of 0..9 ~ 2000 times
    spans = [augment.mask_spans(d, 257, 200) for d in draws]
    f_starts = np.array([f0 for (f0, f1), _ in spans])
    assert f_starts.max() >= 240  # starts reach the top of the 257-bin axis
    assert all(0 <= f0 <= f1 <= 257 and 0 <= t0 <= t1 <= 200 for (f0, f1), (t0, t1) in spans)
    assert abs(np.mean([d.flip for d in draws]) - 0.5) < 0.02


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
@pytest.mark.parametrize("mode,n_train", [("train", 48), ("eval", 48)])
def test_ranks_are_disjoint_and_cover_the_epoch(shards, backend, mode, n_train):
    root, keys = shards
    per_rank = []
    for rank in range(2):
        loader = load(root, backend, mode=mode, batch_size=4, rank=rank, world_size=2)
        assert len(loader) == 6
        loader.set_epoch(1)
        per_rank.append(keys_of(loader))
    assert not set(per_rank[0]) & set(per_rank[1])
    union = per_rank[0] + per_rank[1]
    assert sorted(union) == sorted(keys["train"]) and len(union) == n_train


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
def test_eval_remainder_every_sample_once(shards, backend):
    root, keys = shards
    got = []
    for rank in range(2):
        loader = load(root, backend, split="val", mode="eval", batch_size=4, rank=rank, world_size=2)
        assert len(loader) == 2  # 5 and 6 samples in batches of 4
        got.append(keys_of(loader))
    assert [len(g) for g in got] == [5, 6]
    assert sorted(got[0] + got[1]) == sorted(keys["val"])


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
def test_train_drop_last_equal_steps_per_rank(shards, backend):
    root, _ = shards
    lens = [len(load(root, backend, mode="train", batch_size=5, rank=r, world_size=3)) for r in range(3)]
    assert lens == [3, 3, 3]  # 48 // 3 = 16 per rank -> 3 full batches of 5


def test_torch_workers_keep_a_bounded_number_of_tars_open(shards, monkeypatch, tmp_path):
    """A worker's batches reach every shard of the epoch; it keeps at most MAX_OPEN_TARS descriptors
    (least recently used closed first) and reads the same batches with one open at a time."""
    from avloc.data import torch_loader

    files = []
    for i in range(3):
        files.append(tmp_path / f"f{i}")
        files[-1].write_bytes(b"x")
    open_files = torch_loader.OpenFiles(2)
    fds = [open_files.get(i, str(f)) for i, f in enumerate(files)]
    assert open_files.get(2, str(files[2])) == fds[2]  # reused while open
    with pytest.raises(OSError):
        os.fstat(fds[0])  # the least recently used was closed
    open_files.close()
    with pytest.raises(OSError):
        os.fstat(fds[2])

    root, _ = shards
    options = dict(mode="train", batch_size=8, num_workers=0, seed=3)
    default = list(load(root, "torch", **options))
    monkeypatch.setattr(torch_loader, "MAX_OPEN_TARS", 1)
    one_open = list(load(root, "torch", **options))
    assert keys_of(one_open) == keys_of(default) and len(keys_of(default)) == 48
    assert len(list(Path(root).glob("train-*.tar"))) == 5  # batches mix shards: descriptors were closed and reopened
    assert all(torch.equal(x["image"], y["image"]) and torch.equal(x["spec"], y["spec"]) for x, y in zip(one_open, default))


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
def test_set_epoch_reshuffles_deterministically(shards, backend):
    root, keys = shards
    a = load(root, backend, mode="train", batch_size=8)
    b = load(root, backend, mode="train", batch_size=8)
    orders = {}
    for epoch in (0, 1):
        a.set_epoch(epoch)
        orders[epoch] = keys_of(a)
        assert sorted(orders[epoch]) == sorted(keys["train"])
    b.set_epoch(1)
    first_b = list(b)
    assert keys_of(first_b) == orders[1]
    assert orders[0] != orders[1]
    a.set_epoch(1)
    again = list(a)
    for x, y in zip(again, first_b):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["spec"], y["spec"])
    c = load(root, backend, mode="train", batch_size=8, seed=7)
    c.set_epoch(1)
    assert keys_of(c) != orders[1]


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
def test_resume_mid_epoch_from_state_dict(shards, backend):
    root, _ = shards
    full = load(root, backend, mode="train", batch_size=8)
    full.set_epoch(2)
    expected = list(full)
    assert len(expected) == 6

    first = load(root, backend, mode="train", batch_size=8)
    first.set_epoch(2)
    it = iter(first)
    for _ in range(2):
        next(it)
    state = first.state_dict()
    assert state["epoch"] == 2 and state["batches_done"] == 2
    del it

    resumed = load(root, backend, mode="train", batch_size=8)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert [b["key"] for b in rest] == [b["key"] for b in expected[2:]]
    for x, y in zip(rest, expected[2:]):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["spec"], y["spec"])


def test_torch_loader_order_does_not_depend_on_workers(shards):
    root, _ = shards
    runs = []
    for workers in (0, 1, 2):  # 9 batches: the two workers build 5 and 4
        loader = build_loader(root, "train", LoaderOptions(backend="torch", mode="train", batch_size=5,
                                                           num_workers=workers))
        runs.append(list(loader))
    for other in runs[1:]:
        assert [b["key"] for b in other] == [b["key"] for b in runs[0]]
        assert all(torch.equal(x["image"], y["image"]) for x, y in zip(other, runs[0]))


def run_worker_probe(tmp_path, root, setup: str) -> None:
    """In a fresh process: ``setup`` (statements in main(), before loading), then the torch loader with 2
    workers must read exactly what in-process loading reads."""
    import subprocess
    import sys

    body = "\n".join("    " + line for line in setup.strip().splitlines())
    script = tmp_path / "probe.py"
    script.write_text(f"""
import multiprocessing.forkserver, sys, torch
from avloc.data import LoaderOptions, build_loader
from avloc.data.workers import FORKSERVER_PRELOAD, worker_options

def main():
{body}
    runs = [list(build_loader({str(root)!r}, "train", LoaderOptions(backend="torch", mode="train", batch_size=5,
                                                                       num_workers=n))) for n in (0, 2)]
    assert [b["key"] for b in runs[0]] == [b["key"] for b in runs[1]] and len(runs[0]) == 9
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(*runs))
    print("ok")

if __name__ == "__main__":
    main()
""")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


@pytest.mark.dali
def test_torch_workers_start_from_a_preloaded_forkserver_when_dali_is_loaded(shards, tmp_path):
    """In a fresh process with DALI imported, the torch loader's workers come from a forkserver that
    preloads the loaders' modules, and read exactly what in-process loading reads."""
    pytest.importorskip("nvidia.dali")
    run_worker_probe(tmp_path, shards[0], """
import nvidia.dali
context = worker_options(2)["multiprocessing_context"]
assert context.get_start_method() == "forkserver", context.get_start_method()
assert list(FORKSERVER_PRELOAD) == multiprocessing.forkserver._forkserver._preload_modules
""")


def test_torch_workers_start_from_a_forkserver_after_pyav_decoded_here(shards, tmp_path):
    """A process that has opened media with PyAV (FFmpeg threads that a forked child can hang in) gives
    its DataLoader workers a forkserver, as the shard workers get, and they read what in-process loading
    reads; before that, workers fork."""
    pytest.importorskip("av")
    wav = tmp_path / "tone.wav"
    lf.write_wav(wav, (np.sin(np.arange(16000) / 10.0) * 8000).astype(np.int16))
    run_worker_probe(tmp_path, shards[0], f"""
from avloc.tools.sharding.decode import open_container
assert "nvidia.dali" not in sys.modules
assert "multiprocessing_context" not in worker_options(2)  # forked
open_container({str(wav)!r}).close()
context = worker_options(2)["multiprocessing_context"]
assert context.get_start_method() == "forkserver", context.get_start_method()
""")


def test_torch_workers_inherit_the_jpeg_decoder_instead_of_importing_it(shards, tmp_path):
    """Importing torchvision.io takes ~1 s, which every epoch's workers paid before their first batch
    (benchmarks/results/loaders-cpu-cost.md): the loader imports it once in this process, so forked
    workers inherit it, and a forkserver preloads it."""
    run_worker_probe(tmp_path, shards[0], f"""
assert "torchvision.io" not in sys.modules
build_loader({str(shards[0])!r}, "train", LoaderOptions(backend="torch", batch_size=5, num_workers=2))
assert "torchvision.io" in sys.modules
assert "multiprocessing_context" not in worker_options(2)  # forked: the workers start with it loaded
assert "torchvision.io" in FORKSERVER_PRELOAD
""")


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_torch_workers_ship_uint8_pixels_normalised_where_the_batch_lands(shards, mode):
    """What a worker builds holds uint8 pixels (a quarter of float32's bytes through shared memory); the
    loader's batch is exactly those pixels normalised, bit for bit what normalising each frame alone gives."""
    root, _ = shards
    loader = load(root, "torch", mode=mode, batch_size=7, num_workers=0)
    loader.set_epoch(1)
    raw = list(loader.epoch_dataset(0))
    loader.set_epoch(1)
    loaded = list(loader)
    assert len(raw) == len(loaded) > 1
    for worker_batch, batch in zip(raw, loaded):
        assert worker_batch["image"].dtype == torch.uint8 and batch["image"].dtype == torch.float32
        assert worker_batch["key"] == batch["key"]
        assert torch.equal(augment.normalise(worker_batch["image"]), batch["image"])
        one_by_one = torch.stack([augment.normalise(frame) for frame in worker_batch["image"]])
        assert torch.equal(one_by_one, batch["image"])


@pytest.mark.parametrize("backend", SHARD_BACKENDS + ["folder"])
def test_every_loader_follows_the_protocol(shards, folder, backend):
    from avloc.data import Loader

    root = folder[0] if backend == "folder" else shards[0]
    loader = load(root, backend, mode="train", batch_size=4)
    assert isinstance(loader, Loader) and loader.backend == backend and loader.options.batch_size == 4
    assert loader.num_samples == (6 if backend == "folder" else 48)
    assert (loader.samples_read, loader.skipped, loader.skipped_this_epoch) == (0, 0, 0)
    steps = len(loader)
    assert len(list(loader)) == steps and loader.samples_read == 4 * steps
    loader.set_epoch(1)
    it = iter(loader)
    next(it)
    assert loader.samples_read == 4 * steps + 4 and (loader.epoch, loader.batches_done) == (1, 1)
    state = loader.state_dict()
    common = {k: state[k] for k in ("backend", "epoch", "batches_done", "seed", "rank", "world_size")}
    assert common == {"backend": backend, "epoch": 1, "batches_done": 1, "seed": 12345, "rank": 0, "world_size": 1}
    del it


# ---------------------------------------------------------------- bad input


def truncate(path: Path, keep_fraction: float) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(int(size * keep_fraction))


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
def test_truncated_tar(tmp_path, backend):
    keys = lf.write_shards(tmp_path, {"train": 20}, samples_per_shard=10)["train"]
    truncate(tmp_path / "train-000001.tar", 0.55)
    with pytest.raises(InputError, match=r"train-000001\.tar.*truncated") as err:
        load(tmp_path, backend, mode="eval", batch_size=4)
    assert "\n" not in str(err.value) and "vid000000" in str(err.value)
    loader = load(tmp_path, backend, mode="eval", batch_size=4, bad_sample="skip")
    got = keys_of(loader)
    assert loader.skipped == 20 - len(got) and 3 <= loader.skipped <= 6
    assert got == keys[: len(got)]


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
def test_sample_missing_its_spectrogram(tmp_path, backend):
    keys = lf.write_shards(tmp_path, {"train": 12}, samples_per_shard=6,
                           drop_members={lf.clip_key(3): schema.EXT_SPEC})["train"]
    with pytest.raises(InputError, match=rf"{lf.clip_key(3)}.*train-000000\.tar.*missing its spec\.f16"):
        load(tmp_path, backend, mode="eval", batch_size=4)
    loader = load(tmp_path, backend, mode="eval", batch_size=4, bad_sample="skip")
    got = keys_of(loader)
    assert got == [k for k in keys if k != lf.clip_key(3)] and loader.skipped == 1


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
def test_incomplete_jpeg_found_from_the_index(tmp_path, backend):
    keys = lf.write_shards(tmp_path, {"train": 8}, samples_per_shard=8, truncated_jpeg={lf.clip_key(6)})["train"]
    with pytest.raises(InputError, match=rf"{lf.clip_key(6)}.*not a complete JPEG"):
        load(tmp_path, backend, mode="eval", batch_size=4)
    loader = load(tmp_path, backend, mode="eval", batch_size=4, bad_sample="skip")
    assert keys_of(loader) == [k for k in keys if k != lf.clip_key(6)] and loader.skipped == 1


def test_torch_corrupt_jpeg_inside_a_shard(tmp_path):
    bad = lf.clip_key(5)
    keys = lf.write_shards(tmp_path, {"train": 12}, samples_per_shard=12, corrupt_jpeg={bad})["train"]
    with pytest.raises(InputError, match=rf"bad sample '{bad}' in shard .*train-000000\.tar") as err:
        list(build_loader(tmp_path, "train", LoaderOptions(backend="torch", mode="eval", batch_size=4, num_workers=2)))
    assert "\n" not in str(err.value)
    loader = build_loader(tmp_path, "train", LoaderOptions(backend="torch", mode="eval", batch_size=4, num_workers=2,
                                                           bad_sample="skip"))
    batches = list(loader)
    assert keys_of(batches) == [k for k in keys if k != bad]
    assert [len(b["key"]) for b in batches] == [4, 3, 4]  # the batch holding it is one short, nothing substituted
    assert loader.skipped == 1 and loader.skipped_this_epoch == 1


def test_torch_corrupt_tar_header(tmp_path):
    lf.write_shards(tmp_path, {"train": 8}, samples_per_shard=8)
    tar = tmp_path / "train-000000.tar"
    data = bytearray(tar.read_bytes())
    idx_rows = (tmp_path / "train-000000.idx").read_text().splitlines()
    header = int(idx_rows[4].split()[1]) - 512  # header of sample 3's jpg member
    data[header:header + 100] = b"\x07" * 100
    tar.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"train-000000\.tar"):
        list(build_loader(tmp_path, "train", LoaderOptions(backend="torch", mode="eval", batch_size=4, num_workers=0)))


def test_not_a_shard_dir_and_bad_arguments(tmp_path, shards):
    with pytest.raises(InputError, match="no dataset.json"):
        build_loader(tmp_path, "train", LoaderOptions(backend="torch"))
    root, _ = shards
    with pytest.raises(InputError, match="bad_sample"):
        build_loader(root, "train", LoaderOptions(backend="torch", bad_sample="ignore"))
    with pytest.raises(InputError, match="not one full batch"):
        build_loader(root, "train", LoaderOptions(backend="torch", mode="train", batch_size=64))
    with pytest.raises(InputError, match="no shards for split 'test'"):
        build_loader(root, "test", LoaderOptions(backend="torch"))


# The damaged-shard corpus: every kind of damage a shard can carry that is found when the shards are
# opened (index rows, member sizes, frame headers, metadata). Both shard loaders must name the same
# sample with bad_sample="error" and leave out the same samples with "skip".
SHARD_DAMAGE = {
    # kind: (sample index, how it is made, words of the one-line reason)
    "huge_frame_header": (1, {"replace": {schema.EXT_FRAME: "huge"}}, "30000 x 30000 pixels, above the"),
    "json_not_json": (3, {"replace": {schema.EXT_META: b"{not json"}}, "json member: Expecting"),
    "json_not_object": (5, {"replace": {schema.EXT_META: b"[1, 2]"}}, "json member: json member is not an object"),
    "json_bad_class_index": (7, {"replace": {schema.EXT_META: b'{"class_index": "dog"}'}}, "class_index 'dog'"),
    "json_not_utf8": (8, {"replace": {schema.EXT_META: b'{"key": "\xff\xfe"}'}}, "json member: 'utf-8' codec"),
    "truncated_jpeg": (9, {"truncated": True}, "not a complete JPEG"),
    "missing_spec": (11, {"drop": schema.EXT_SPEC}, "missing its spec.f16"),
    "index_offset_not_integer": (14, {"index": (1, "12x4")}, "offset '12x4'"),
    "index_offset_negative": (16, {"index": (1, "-512")}, "offset '-512'"),
    "index_size_negative": (18, {"index": (6, "-9")}, "size '-9'"),
}


def write_damaged_shards(root: Path, kinds, n: int = 20, per_shard: int = 10) -> list:
    """Shards of ``n`` samples carrying the damage ``kinds``; returns the stored keys."""
    replace, drop, truncated, index_damage = {}, {}, set(), []
    for kind in kinds:
        i, how, _ = SHARD_DAMAGE[kind]
        key = lf.clip_key(i)
        for ext, data in how.get("replace", {}).items():
            replace.setdefault(key, {})[ext] = lf.jpeg_claiming(30000, 30000, i) if data == "huge" else data
        if "drop" in how:
            drop[key] = how["drop"]
        if how.get("truncated"):
            truncated.add(key)
        if "index" in how:
            index_damage.append((i, *how["index"]))
    keys = lf.write_shards(root, {"train": n}, samples_per_shard=per_shard, drop_members=drop,
                           truncated_jpeg=truncated, replace_members=replace)["train"]
    for i, field, value in index_damage:
        lf.damage_index_row(root / f"{schema.shard_stem('train', i // per_shard)}.idx", i % per_shard, field, value)
    return keys


def test_damage_corpus_is_what_it_claims(tmp_path):
    from avloc.data.frame_limits import jpeg_frame_size

    jpeg = lf.jpeg_claiming(30000, 30000)
    assert len(jpeg) < 1000 and jpeg_frame_size(lambda pos, n: jpeg[pos:pos + n], len(jpeg)) == (30000, 30000)
    real = lf.frame_jpeg(0, 96, 72)
    assert jpeg_frame_size(lambda pos, n: real[pos:pos + n], len(real)) == (72, 96)
    keys = write_damaged_shards(tmp_path, ["index_offset_negative"])
    row = (tmp_path / "train-000001.idx").read_text().splitlines()[1 + 6].split()
    assert row[1] == "-512" and row[3] == f"{keys[16]}.jpg"


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
@pytest.mark.parametrize("kind", list(SHARD_DAMAGE))
def test_each_damage_kind_is_one_line_naming_the_sample(tmp_path, backend, kind):
    keys = write_damaged_shards(tmp_path, [kind])
    i, _, words = SHARD_DAMAGE[kind]
    with pytest.raises(InputError) as err:
        list(load(tmp_path, backend, mode="eval", batch_size=4))
    text = str(err.value)
    assert f"bad sample {keys[i]!r} in shard train-00000{i // 10}.tar" in text and words in text, text
    assert "\n" not in text and "bad_sample='skip'" in text


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_both_shard_loaders_skip_the_same_damaged_samples(tmp_path, mode):
    """The same damaged shards through the torch and (when installed) DALI loaders: same samples out."""
    keys = write_damaged_shards(tmp_path, SHARD_DAMAGE)
    bad = {keys[i] for i, _, _ in SHARD_DAMAGE.values()}
    backends = ["torch"] + (["dali"] if lf.dali_available() else [])
    got = {}
    for backend in backends:
        loader = load(tmp_path, backend, mode=mode, batch_size=2, bad_sample="skip")
        got[backend] = keys_of(loader)
        assert loader.skipped == len(SHARD_DAMAGE) and loader.num_samples == len(keys) - len(bad), backend
    good = [k for k in keys if k not in bad]
    assert sorted(got["torch"]) == sorted(good)
    if mode == "eval":
        assert got["torch"] == good  # stored order
    for backend in backends[1:]:
        assert sorted(got[backend]) == sorted(got["torch"]), backend


# ---------------------------------------------------------------- folder (reference) loader


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("folder")
    return out, lf.write_folder(out, 6)


def test_folder_loader_eval_matches_the_recipe(folder):
    import soundfile

    from avloc.spectrogram import fnac_spectrogram_from_samples

    root, ids = folder
    loader = build_loader(root, "train", LoaderOptions(mode="eval", batch_size=4, num_workers=2))
    assert loader.backend == "folder" and len(loader) == 2
    batches = list(loader)
    assert keys_of(batches) == sorted(ids)
    b = batches[0]
    assert b["image"].shape == (4, 3, 224, 224) and b["spec"].shape == (4, 1, 257, 200)
    assert b["label"].tolist() == [-1] * 4 and b["bbox"] == [None] * 4
    samples, sr = soundfile.read(str(root / "audio" / f"{b['key'][1]}.wav"), dtype="int16")
    expected, _, _ = fnac_spectrogram_from_samples(samples, sr)
    assert torch.allclose(b["spec"][1, 0], torch.from_numpy(expected) / 12, atol=1e-6)


def test_folder_loader_train_ranks_and_resume(folder):
    root, ids = folder
    got = []
    for rank in range(2):
        loader = build_loader(root, "train", LoaderOptions(mode="train", batch_size=3, rank=rank, world_size=2,
                                                           num_workers=0))
        loader.set_epoch(4)
        got.append(keys_of(loader))
    assert sorted(got[0] + got[1]) == sorted(ids)
    a = build_loader(root, "train", LoaderOptions(mode="train", batch_size=1, num_workers=0))
    full = list(a)
    b = build_loader(root, "train", LoaderOptions(mode="train", batch_size=1, num_workers=0))
    b.load_state_dict({"epoch": 0, "batches_done": 4})
    rest = list(b)
    assert [x["key"] for x in rest] == [x["key"] for x in full[4:]]
    assert torch.equal(rest[0]["spec"], full[4]["spec"]) and torch.equal(rest[0]["image"], full[4]["image"])


def test_folder_loader_bad_files(tmp_path):
    ids = lf.write_folder(tmp_path, 4)
    (tmp_path / "audio" / f"{ids[2]}.wav").write_bytes(b"RIFF not really a wav")
    with pytest.raises(InputError, match=rf"bad sample '{ids[2]}'"):
        list(build_loader(tmp_path, "train", LoaderOptions(mode="eval", batch_size=2, num_workers=0)))
    loader = build_loader(tmp_path, "train", LoaderOptions(mode="eval", batch_size=2, num_workers=0, bad_sample="skip"))
    assert keys_of(loader) == [ids[0], ids[1], ids[3]] and loader.skipped == 1
    os.remove(tmp_path / "frames" / f"{ids[0]}.jpg")
    with pytest.raises(InputError, match="frame or a wav but not both"):
        build_loader(tmp_path, "train", LoaderOptions(mode="eval", batch_size=2))


# ---------------------------------------------------------------- train frame geometry


def test_crop_box_resize_equals_resize_then_crop():
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (256, 341, 3), dtype=np.uint8))
    rng = np.random.default_rng(4)
    for _ in range(4):
        aug = augment.draw_augment(rng)
        boxed = np.asarray(img.resize((224, 224), Image.BICUBIC, box=augment.train_crop_box(341, 256, aug)), int)
        new_w = int(round(341 * 246 / 256))
        left, top = int(round(aug.crop_x * (new_w - 224))), int(round(aug.crop_y * (246 - 224)))
        full = np.asarray(img.resize((new_w, 246), Image.BICUBIC).crop((left, top, left + 224, top + 224)), int)
        diff = np.abs(boxed - full)
        assert diff.max() <= 1 and diff.mean() < 0.01  # float rounding of the two-pass filter only


def _pixels(image: torch.Tensor) -> np.ndarray:
    std = torch.tensor(augment.IMAGENET_STD).view(3, 1, 1)
    mean = torch.tensor(augment.IMAGENET_MEAN).view(3, 1, 1)
    return ((image * std + mean) * 255.0).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("backend,tolerance", [("torch", 2.5), pytest.param("dali", 8.0, marks=pytest.mark.dali)])
def test_train_frames_are_crops_of_the_246_resize(tmp_path, backend, tolerance):
    """Every train frame is a 224 crop of the bicubic 246-short-side resize, maybe mirrored.

    torch: box resize vs resize-then-crop, +-2 grey levels from the rounding of the 2x upscale
    passes; DALI: its own bicubic filter, the parity tolerance of test_pipelines.
    """
    import io

    from PIL import Image

    jpeg = lf.write_gradient_shards(tmp_path, 16)
    src = Image.open(io.BytesIO(jpeg)).convert("RGB")
    resized = np.asarray(src.resize((328, 246), Image.BICUBIC), np.float64)  # 160x120 -> shorter side 246
    batch = next(iter(load(tmp_path, backend, mode="train", batch_size=16)))
    lefts, tops, flips = [], [], []
    for image in batch["image"]:
        px = _pixels(image)
        flip = px[:, -1, 0].mean() < px[:, 0, 0].mean()  # red falls left to right: mirrored
        if flip:
            px = px[:, ::-1]
        col_profile, row_profile = px[:, :, 0].mean(0), px[:, :, 1].mean(1)
        left = min(range(328 - 223), key=lambda x: np.abs(resized[:, x:x + 224, 0].mean(0) - col_profile).mean())
        top = min(range(246 - 223), key=lambda y: np.abs(resized[y:y + 224, :, 1].mean(1) - row_profile).mean())
        diff = np.abs(px - resized[top:top + 224, left:left + 224])
        assert diff.max() <= tolerance, (left, top, flip, diff.max())
        lefts.append(left)
        tops.append(top)
        flips.append(flip)
    assert len(set(lefts)) >= 8 and len(set(tops)) >= 4 and 0 < sum(flips) < 16


@pytest.mark.parametrize("backend", SHARD_BACKENDS)
def test_state_at_epoch_end_resumes_to_nothing(shards, backend):
    root, _ = shards
    loader = load(root, backend, mode="train", batch_size=8)
    loader.set_epoch(1)
    assert len(list(loader)) == 6
    state = loader.state_dict()
    assert state["batches_done"] == 6
    resumed = load(root, backend, mode="train", batch_size=8)
    resumed.set_epoch(1)
    resumed.load_state_dict(state)
    assert list(resumed) == []
    resumed.set_epoch(2)
    assert len(list(resumed)) == 6
