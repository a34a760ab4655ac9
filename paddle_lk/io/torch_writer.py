"""Torch-free writer of ``torch.save``-compatible checkpoints (zip or legacy format).

Used to export paddle_lk weights for PyTorch users, to build test checkpoints, and to make
full-size checkpoints for memory measurements without PyTorch. Only what a state dict needs is
written: nested dicts/lists/tuples of numpy arrays, str, int, float, bool and None.
"""
from __future__ import annotations

import io
import pickle
import struct
import zipfile
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .atomic import atomic_path
from .torch_reader import LEGACY_MAGIC, LEGACY_PROTOCOL

__all__ = ["TensorView", "TorchParameter", "save_torch_checkpoint"]

_STORAGE_OF = {"float32": "FloatStorage", "float64": "DoubleStorage", "float16": "HalfStorage",
               "int64": "LongStorage", "int32": "IntStorage", "int16": "ShortStorage", "int8": "CharStorage",
               "uint8": "ByteStorage", "bool": "BoolStorage"}
_CHUNK = 1 << 24


class TensorView:
    """A tensor that views ``base`` (a 1-D array saved as one storage) at ``offset`` with ``size``/``stride``
    in elements: lets tests write shared storages and non-contiguous tensors as torch does."""

    def __init__(self, base: np.ndarray, offset: int, size: Sequence[int], stride: Sequence[int]) -> None:
        self.base, self.offset, self.size, self.stride = base.reshape(-1), offset, tuple(size), tuple(stride)


class TorchParameter:
    """An array saved as ``torch.nn.Parameter`` (``torch._utils._rebuild_parameter``), as in
    checkpoints that store ``dict(model.named_parameters())``."""

    def __init__(self, data: Any, requires_grad: bool = True) -> None:
        self.data, self.requires_grad = data, requires_grad


class _PickleEmitter:
    """Writes protocol-2 pickle opcodes by hand: the torch globals cannot be pickled without torch."""

    def __init__(self, legacy: bool) -> None:
        self.out = io.BytesIO()
        self.legacy = legacy
        self.storages: List[Tuple[str, np.ndarray]] = []
        self._keys: Dict[int, str] = {}

    def w(self, b: bytes) -> None:
        self.out.write(b)

    def glob(self, module: str, name: str) -> None:
        self.w(b"c" + module.encode() + b"\n" + name.encode() + b"\n")

    def emit(self, obj: Any) -> None:
        if isinstance(obj, (np.ndarray, np.generic, TensorView)):
            self.tensor(obj)
        elif isinstance(obj, TorchParameter):
            self.glob("torch._utils", "_rebuild_parameter")
            self.w(b"(")
            self.tensor(obj.data)
            self.w(b"\x88" if obj.requires_grad else b"\x89")
            self.glob("collections", "OrderedDict")
            self.w(b")Rt")
            self.w(b"R")
        elif obj is None:
            self.w(b"N")
        elif obj is True or obj is False:
            self.w(b"\x88" if obj else b"\x89")
        elif isinstance(obj, int):
            if -(2 ** 31) <= obj < 2 ** 31:
                self.w(b"J" + struct.pack("<i", obj))
            else:
                raw = obj.to_bytes((obj.bit_length() + 8) // 8, "little", signed=True)
                self.w(b"\x8a" + bytes([len(raw)]) + raw)
        elif isinstance(obj, float):
            self.w(b"G" + struct.pack(">d", obj))
        elif isinstance(obj, str):
            raw = obj.encode("utf-8", "surrogatepass")
            self.w(b"X" + struct.pack("<I", len(raw)) + raw)
        elif isinstance(obj, dict):
            self.glob("collections", "OrderedDict")
            self.w(b")R")
            if obj:
                self.w(b"(")
                for k, v in obj.items():
                    self.emit(k)
                    self.emit(v)
                self.w(b"u")
        elif isinstance(obj, list):
            self.w(b"]")
            if obj:
                self.w(b"(")
                for v in obj:
                    self.emit(v)
                self.w(b"e")
        elif isinstance(obj, tuple):
            self.w(b"(")
            for v in obj:
                self.emit(v)
            self.w(b"t")
        else:
            raise TypeError(f"cannot write {type(obj).__name__} into a torch checkpoint")

    def _storage_key(self, base: np.ndarray) -> str:
        key = self._keys.get(id(base))
        if key is None:
            key = self._keys[id(base)] = str(len(self.storages))
            self.storages.append((key, base))
        return key

    def tensor(self, obj: Any) -> None:
        if isinstance(obj, TensorView):
            base, offset, size, stride = obj.base, obj.offset, obj.size, obj.stride
        else:
            arr = np.asarray(obj)
            base = arr.reshape(-1) if arr.flags.c_contiguous else np.ascontiguousarray(arr).reshape(-1)
            size = arr.shape
            stride = tuple(int(np.prod(size[i + 1:], dtype=np.int64)) for i in range(len(size)))
            offset = 0
        dtype = str(base.dtype)
        if dtype not in _STORAGE_OF:
            raise TypeError(f"dtype {dtype} has no torch storage type")
        key = self._storage_key(base)
        self.glob("torch._utils", "_rebuild_tensor_v2")
        self.w(b"(")  # args tuple
        self.w(b"(")  # persistent id tuple
        self.emit("storage")
        self.glob("torch", _STORAGE_OF[dtype])
        self.emit(key)
        self.emit("cpu")
        self.emit(int(base.size))
        if self.legacy:
            self.w(b"N")  # no view metadata
        self.w(b"tQ")
        self.emit(int(offset))
        self.emit(tuple(int(s) for s in size))
        self.emit(tuple(int(s) for s in stride))
        self.w(b"\x89")  # requires_grad=False
        self.glob("collections", "OrderedDict")
        self.w(b")R")  # backward hooks
        self.w(b"tR")

    def finish(self, obj: Any) -> bytes:
        self.w(b"\x80\x02")
        self.emit(obj)
        self.w(b".")
        return self.out.getvalue()


def _write_array(fh: Any, arr: np.ndarray, big_endian: bool = False) -> None:
    arr = np.ascontiguousarray(arr).reshape(-1)
    if big_endian and arr.dtype.itemsize > 1:
        arr = arr.astype(arr.dtype.newbyteorder(">"))
    flat = memoryview(arr.view(np.uint8))
    for start in range(0, len(flat), _CHUNK):  # chunked: no second copy of a large tensor
        fh.write(flat[start:start + _CHUNK])


def save_torch_checkpoint(obj: Any, path: str, legacy: bool = False, archive_name: Optional[str] = None,
                          byteorder: str = "little") -> None:
    """Write ``obj`` (nested containers of numpy arrays and scalars) as ``torch.save`` would.

    Args:
        obj: e.g. a state dict ``{name: ndarray}`` or ``{"state_dict": {...}}``.
        path: output file, written atomically.
        legacy: write the pre-1.6 format instead of the zip format.
        archive_name: folder name inside the zip (torch uses ``archive``).
        byteorder: ``little`` or ``big`` (zip format only; as written on big-endian hosts).
    """
    if byteorder not in ("little", "big") or (legacy and byteorder != "little"):
        raise ValueError(f"byteorder must be 'little' or 'big' (zip format only), got {byteorder!r}")
    emitter = _PickleEmitter(legacy)
    data_pkl = emitter.finish(obj)
    with atomic_path(path) as tmp:
        if legacy:
            with open(tmp, "wb") as fh:
                for head in (LEGACY_MAGIC, LEGACY_PROTOCOL,
                             {"protocol_version": LEGACY_PROTOCOL, "little_endian": True,
                              "type_sizes": {"short": 2, "int": 4, "long": 4}}):
                    fh.write(pickle.dumps(head, protocol=2))
                fh.write(data_pkl)
                fh.write(pickle.dumps([key for key, _ in emitter.storages], protocol=2))
                for _, base in emitter.storages:
                    fh.write(struct.pack("<q", base.size))
                    _write_array(fh, base)
            return
        prefix = (archive_name or "archive") + "/"
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            zf.writestr(prefix + "data.pkl", data_pkl)
            zf.writestr(prefix + "byteorder", byteorder)
            for key, base in emitter.storages:
                with zf.open(prefix + f"data/{key}", "w", force_zip64=base.nbytes > 2 ** 31) as fh:
                    _write_array(fh, base, big_endian=byteorder == "big")
            zf.writestr(prefix + "version", "3\n")
