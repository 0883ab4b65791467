"""Data loading: ``build_loader`` picks the backend and returns an iterable over batches.

Backends: ``dali`` (pipelines/, GPU JPEG decode when ``device`` is CUDA, CPU pipeline
otherwise), ``torch`` (webdataset + PIL in DataLoader workers), ``folder`` (the reference
loader over frames/<id>.jpg + audio/<id>.wav). ``auto`` = dali when it imports, else torch;
a folder source always uses ``folder``. Batch structure: avloc.data.batch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

from avloc.errors import InputError

BACKENDS = ("auto", "dali", "torch", "folder")
MODES = ("train", "eval")


def dali_available() -> bool:
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(source: Path, backend: str) -> str:
    if backend not in BACKENDS:
        raise InputError(f"loader backend must be one of {BACKENDS}, got {backend!r}")
    is_folder = (source / "frames").is_dir() and not (source / "dataset.json").is_file()
    if backend == "auto":
        if is_folder:
            return "folder"
        return "dali" if dali_available() else "torch"
    if backend == "dali" and not dali_available():
        raise InputError("loader backend 'dali' needs nvidia-dali-cuda120 (pip install nvidia-dali-cuda120); "
                         "use backend='torch'")
    return backend


def build_loader(source, *, split: str = "train", mode: str = "train", batch_size: int = 256, backend: str = "auto",
                 device="cpu", rank: int = 0, world_size: int = 1, seed: int = 12345, image_size: int = 224,
                 num_workers: int = 2, drop_last: Optional[bool] = None, bad_sample: str = "error",
                 shuffle_buffer: int = 1024, spec_mask_fill: str = "zero"):
    """An iterable over batches of ``split`` of ``source`` (a shards dir, or a folder for backend 'folder')."""
    source = Path(source)
    if not source.is_dir():
        raise InputError(f"data source {source} is not a directory")
    if mode not in MODES:
        raise InputError(f"loader mode must be one of {MODES}, got {mode!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise InputError(f"rank {rank} is outside world_size {world_size}")
    from avloc.data.augment import mask_fill_value

    try:
        mask_fill_value(spec_mask_fill)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if drop_last is None:
        drop_last = mode == "train"
    backend = resolve_backend(source, backend)
    common = dict(mode=mode, batch_size=batch_size, device=device, rank=rank, world_size=world_size, seed=seed,
                  image_size=image_size, num_workers=num_workers, drop_last=drop_last, spec_mask_fill=spec_mask_fill)
    if backend == "folder":
        from avloc.data.folder import FolderLoader

        loader = FolderLoader(source, bad_sample=bad_sample, **common)
    else:
        from avloc.data.shards import ShardSet

        shards = ShardSet(source, split, bad_sample=bad_sample)
        if backend == "dali":
            from avloc.pipelines.iterator import DaliShardLoader

            loader = DaliShardLoader(shards, shuffle_buffer=shuffle_buffer, **common)
        else:
            from avloc.data.torch_loader import TorchShardLoader

            loader = TorchShardLoader(shards, shuffle_buffer=shuffle_buffer, **common)
    if drop_last and len(loader) == 0:
        raise InputError(f"{source} ({split}) has {loader.num_samples} samples: not one full batch of {batch_size} "
                         f"per rank for {world_size} rank(s); lower the batch size or pass drop_last=False")
    return loader
