"""Segmentation masks as shipped: pickled 2-D arrays (VGG-Instruments), ``.npy`` and images.

A pickle is never opened with ``pickle.load``: ``read_pickled_array`` uses an unpickler that
resolves only what numpy needs to rebuild an array (``_reconstruct`` / ``_frombuffer``,
``ndarray``, ``dtype`` and the ``_codecs.encode`` protocol 2 uses for raw bytes). Any other
global is refused with ``UnsafeMaskError`` naming the file and the global, before it is
imported. ``.npy`` files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

from avloc.errors import InputError
from avloc.metrics import MAP_SIZE

PICKLE_EXTENSIONS = (".pkl", ".pickle", ".p")
MASK_EXTENSIONS = PICKLE_EXTENSIONS + (".npy", ".png", ".jpg", ".jpeg", ".bmp")
MAX_MASK_BYTES = 64 * 1024 * 1024
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class UnsafeMaskError(InputError):
    """A mask file asked the unpickler for something other than numpy array reconstruction."""


class _ArrayOnlyUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: Path):
        super().__init__(io.BytesIO(data), encoding="latin1")  # latin1: arrays pickled by Python 2
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise UnsafeMaskError(f"{self.path}: refused to unpickle {module}.{name} "
                                  f"(mask pickles may only rebuild numpy arrays)")
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafeMaskError(f"{self.path}: refused a persistent id in a mask pickle")


def read_pickled_array(path) -> np.ndarray:
    """The numpy array pickled in ``path``, rebuilt without importing anything else.

    Raises UnsafeMaskError for any other global, ValueError for a file that is not a pickled array."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) > MAX_MASK_BYTES:
        raise ValueError(f"{path}: {len(data)} bytes is too large for a mask")
    try:
        obj = _ArrayOnlyUnpickler(data, path).load()
    except UnsafeMaskError:
        raise
    except Exception as exc:  # truncated or garbled pickles
        raise ValueError(f"{path}: not a readable pickled array ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, np.ndarray):
        raise ValueError(f"{path}: the pickle holds a {type(obj).__name__}, not an array")
    return obj


def read_mask_array(path) -> np.ndarray:
    """A mask file's 2-D array: pickled array, ``.npy`` (no pickles) or an image (channels maxed)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_EXTENSIONS:
        mask = read_pickled_array(path)
    elif suffix == ".npy":
        try:
            mask = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise ValueError(f"{path}: not a plain .npy array ({exc})") from None
    else:
        from PIL import Image

        with Image.open(path) as img:
            mask = np.asarray(img)
    if mask.ndim == 3:
        mask = mask.max(axis=2)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"{path}: a mask must be a 2-D array, got shape {tuple(mask.shape)}")
    if mask.dtype.kind not in "biuf":
        raise ValueError(f"{path}: a mask must be numeric, got dtype {mask.dtype}")
    return mask


def mask_gt_map(path, size: int = MAP_SIZE) -> np.ndarray:
    """Ground-truth map [size, size] float32: the mask binarised (> 0; NaN counts as 0) and resized
    with nearest neighbour."""
    from PIL import Image

    mask = read_mask_array(path)
    binary = (np.nan_to_num(mask.astype(np.float64), nan=0.0) > 0).astype(np.uint8) * 255
    if binary.shape != (size, size):
        binary = np.asarray(Image.fromarray(binary).resize((size, size), Image.NEAREST))
    return (binary > 0).astype(np.float32)
