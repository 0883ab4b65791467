"""Data loading: ``build_loader(source, split, options)`` picks the backend and returns a Loader.

Backends: ``dali`` (pipelines/, GPU JPEG decode when the device is CUDA, CPU pipeline
otherwise), ``torch`` (webdataset + PIL in DataLoader workers), ``folder`` (the reference
loader over frames/<id>.jpg + audio/<id>.wav). ``auto`` = dali when it imports, else torch;
a folder source always uses ``folder``. Options: avloc.data.options; what every loader offers:
avloc.data.loader; batch structure: avloc.data.batch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from avloc.data.loader import Loader
from avloc.data.options import BACKENDS, LoaderOptions
from avloc.errors import InputError

__all__ = ["BACKENDS", "Loader", "LoaderOptions", "build_loader", "dali_available", "resolve_backend"]


def dali_available() -> bool:
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(source: Path, backend: str) -> str:
    is_folder = (source / "frames").is_dir() and not (source / "dataset.json").is_file()
    if backend == "auto":
        if is_folder:
            return "folder"
        return "dali" if dali_available() else "torch"
    if backend == "dali" and not dali_available():
        raise InputError("loader backend 'dali' needs nvidia-dali-cuda120 (pip install nvidia-dali-cuda120); "
                         "use backend='torch'")
    return backend


def build_loader(source, split: str = "train", options: LoaderOptions = LoaderOptions()):
    """A Loader (avloc.data.loader) over ``split`` of ``source`` (a shards dir, or a frames/ + audio/
    folder), built as ``options`` say; the options are checked here, once."""
    source = Path(source)
    if not source.is_dir():
        raise InputError(f"data source {source} is not a directory")
    options.checked()
    backend = resolve_backend(source, options.backend)
    if options.image_decode == "device":
        from avloc.data.device_decode import check_available

        why = check_available(options.device) if backend == "torch" else (
            f"image_decode='device' is an option of the torch shard loader; this source resolves to backend "
            f"{backend!r} (pass backend='torch')")
        if why:
            raise InputError(why)
    if backend == "folder":
        from avloc.data.folder import FolderLoader

        loader = FolderLoader(source, options)
    else:
        from avloc.data.shards import ShardSet

        shards = ShardSet(source, split, bad_sample=options.bad_sample)
        if backend == "dali":
            from avloc.pipelines.iterator import DaliShardLoader

            loader = DaliShardLoader(shards, options)
        else:
            from avloc.data.torch_loader import TorchShardLoader

            loader = TorchShardLoader(shards, options)
    if options.drops_last and len(loader) == 0:
        raise InputError(f"{source} ({split}) has {loader.num_samples} samples: not one full batch of "
                         f"{options.batch_size} per rank for {options.world_size} rank(s); lower the batch size "
                         "or pass drop_last=False")
    return loader
