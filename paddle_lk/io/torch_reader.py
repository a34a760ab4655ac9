"""Torch-free, code-execution-free reader for PyTorch checkpoints (``torch.save`` files).

Supported containers:

* the zip format written by ``torch.save`` since PyTorch 1.6 (``<archive>/data.pkl`` plus one
  ``<archive>/data/<key>`` entry per storage, any archive name, little or big endian);
* the legacy format of PyTorch < 1.6 (magic number, protocol, sys-info and object pickles,
  then the raw storages one after another).

The object pickle goes through :class:`RestrictedUnpickler`: every global it names is resolved
against a fixed allow-list of *inert* stand-ins (tensor/storage/parameter rebuilds, OrderedDict,
plain containers, numpy scalars/dtypes). Any other global is refused with an error naming it, so
nothing a checkpoint contains is ever imported or called. Storages are read only after the pickle
is parsed, each at most once, straight into a numpy array (one copy of the weights in memory), or
memory-mapped from the file with ``mmap=True`` (zip entries stored uncompressed only).
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
import zlib
from typing import Any, BinaryIO, Callable, Dict, List, Optional, Tuple

import numpy as np
from ..errors import CheckpointError, UnsafeCheckpointError  # noqa: F401 - defined in paddle_lk.errors

__all__ = ["CheckpointError", "UnsafeCheckpointError", "RestrictedUnpickler", "load_torch_checkpoint",
           "read_torch_file", "read_checkpoint_file", "unwrap_state_dict", "UnknownGlobal", "LEGACY_MAGIC",
           "STORAGE_DTYPES"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage class name -> numpy dtype ("bfloat16" is decoded by hand: numpy has no bf16).
STORAGE_DTYPES: Dict[str, str] = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "UntypedStorage": "uint8",
}
_TORCH_DTYPES = {  # torch.<dtype> globals (appear in some checkpoints' metadata and tensor rebuilds)
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "bfloat16": "bfloat16", "int64": "int64", "long": "int64",
    "int32": "int32", "int": "int32", "int16": "int16", "short": "int16", "int8": "int8",
    "uint8": "uint8", "bool": "bool",
}


# ----------------------------------------------------------------------------- inert stand-ins
class _Inert:
    """Base of the allow-listed stand-ins: no ``__dict__`` and a refusing ``__setstate__``, so a
    crafted pickle cannot BUILD (mutate) a shared stand-in to change later loads."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise UnsafeCheckpointError(f"pickle tried to set state on {self!r}")


class _SafeCallable(_Inert):
    """An allow-listed function the pickle may call (REDUCE)."""

    __slots__ = ("fn", "name")

    def __init__(self, name: str, fn: Callable) -> None:
        self.name, self.fn = name, fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __repr__(self) -> str:
        return self.name


class _Storage(_Inert):
    """A storage named by the pickle; its bytes are read later, once (see ``_StorageSource``)."""

    __slots__ = ("key", "dtype", "numel", "root", "view_offset")

    def __init__(self, key: str, dtype: str, numel: Optional[int], root: Optional["_Storage"] = None,
                 view_offset: int = 0) -> None:
        self.key, self.dtype, self.numel, self.root, self.view_offset = key, dtype, numel, root, view_offset


class _TensorRef(_Inert):
    """A tensor described by the pickle: storage + offset + size + stride (no data yet)."""

    __slots__ = ("storage", "offset", "size", "stride", "dtype")

    def __init__(self, storage: _Storage, offset: int, size: Tuple[int, ...], stride: Tuple[int, ...],
                 dtype: Optional[str] = None) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)
        self.dtype = dtype or storage.dtype


class _StorageType(_Inert):
    """Stand-in for ``torch.FloatStorage`` etc.: only carries the dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: str) -> None:
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Marker(_Inert):
    """Stand-in for a class used only as an argument (``torch.Tensor``, ``torch.nn.Parameter``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


class UnknownGlobal:
    """With ``allow_unknown=True``: base of the inert stand-in classes made for refused globals.

    The unpickler gets a fresh subclass named after the global instead of importing it;
    constructing it (REDUCE/NEWOBJ) only records the arguments and BUILD only records the state,
    so non-weight metadata (e.g. an ``argparse.Namespace``) is skipped while weights still load.
    """

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs, self.state = args, kwargs, None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<unloaded {self.qualname}>"


def _check_int_tuple(value: Any, what: str) -> Tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and v >= 0 for v in value):
        raise CheckpointError(f"tensor {what} must be a tuple of non-negative ints, got {value!r}")
    return tuple(value)


def _rebuild_tensor(storage: Any, storage_offset: int, size: Any, stride: Any, *_ignored: Any) -> _TensorRef:
    """torch._utils._rebuild_tensor(_v2): extra args (requires_grad, hooks, metadata) are dropped."""
    if not isinstance(storage, _Storage):
        raise CheckpointError(f"tensor rebuild got {type(storage).__name__} instead of a storage")
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise CheckpointError(f"bad storage offset {storage_offset!r}")
    return _TensorRef(storage, storage_offset, _check_int_tuple(size, "size"), _check_int_tuple(stride, "stride"))


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    """torch._utils._rebuild_parameter(_with_state): a Parameter is just its data here."""
    return data


def _rebuild_from_type_v2(func: Callable, new_type: Any, args: tuple, state: Any) -> Any:
    """torch._tensor._rebuild_from_type_v2: only plain tensors/parameters (markers) are accepted."""
    if not isinstance(new_type, _Marker):
        raise UnsafeCheckpointError(f"tensor subclass {new_type!r} is not supported")
    if not (isinstance(func, _SafeCallable) and func.fn in (_rebuild_tensor, _rebuild_parameter)):
        raise UnsafeCheckpointError(f"tensor rebuild function {func!r} is not allowed")
    return func(*args)


def _ordered_dict(*args: Any) -> collections.OrderedDict:
    if args and not isinstance(args[0], (list, tuple, dict)):
        raise CheckpointError("OrderedDict built from an unexpected argument")
    return collections.OrderedDict(*args)


def _torch_size(*args: Any) -> tuple:
    return tuple(*args)


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """_codecs.encode, as protocol-2 pickles use it for bytes: str -> latin-1 bytes only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"_codecs.encode({type(text).__name__}, {encoding!r}) is not allowed")
    return text.encode("latin1")


def _np_dtype(spec: Any, *args: Any) -> np.dtype:
    dt = np.dtype(spec) if isinstance(spec, str) else None
    if dt is None or dt.hasobject:
        raise UnsafeCheckpointError(f"numpy dtype {spec!r} is not allowed (only plain numeric dtypes)")
    return dt


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise UnsafeCheckpointError("numpy scalar with a non-numeric dtype is not allowed")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _np_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    # numpy's pickled arrays: _reconstruct(ndarray, (0,), b'b') then BUILD sets shape/dtype/bytes;
    # the object-dtype path is closed by _np_dtype refusing dtypes that hold objects.
    if not (isinstance(subtype, _Marker) and subtype.name == "numpy.ndarray"):
        raise UnsafeCheckpointError(f"numpy array subtype {subtype!r} is not allowed")
    return _SafeNDArray(shape)


class _SafeNDArray:
    """Receives numpy's ``__setstate__`` tuple and builds the array from raw bytes only."""

    def __init__(self, shape: Any) -> None:
        self.array: Optional[np.ndarray] = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise CheckpointError("malformed numpy array state")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(raw, (bytes, bytearray)):
            raise UnsafeCheckpointError("numpy array with object dtype or non-bytes data is not allowed")
        shape = _check_int_tuple(shape, "shape")
        arr = np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape, dtype=np.int64)))
        self.array = arr.reshape(shape, order="F" if fortran else "C")


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    table: Dict[Tuple[str, str], Any] = {
        ("collections", "OrderedDict"): _ordered_dict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Tensor"): _Marker("torch.Tensor"),
        ("torch.nn.parameter", "Parameter"): _Marker("torch.nn.Parameter"),
        ("torch", "Size"): _torch_size,
        ("_codecs", "encode"): _codecs_encode,
        ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set, ("__builtin__", "frozenset"): frozenset,
        # paddle.save pickles each tensor as tuple((name, ndarray)): building a tuple runs nothing.
        ("builtins", "tuple"): tuple, ("__builtin__", "tuple"): tuple,
    }
    for name, dtype in STORAGE_DTYPES.items():
        table[("torch", name)] = _StorageType(name, dtype)
    for name, dtype in _TORCH_DTYPES.items():
        table[("torch", name)] = _Marker(f"torch.{name}")
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = _np_reconstruct
        table[(mod, "scalar")] = _np_scalar
    table[("numpy", "ndarray")] = _Marker("numpy.ndarray")
    table[("numpy", "dtype")] = _np_dtype
    # Plain functions become inert callables; stand-in objects are already inert.
    return {key: _SafeCallable(f"{key[0]}.{key[1]}", v) if callable(v) and not isinstance(v, _Inert) else v
            for key, v in table.items()}


_ALLOWED = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves globals only from an allow-list of inert stand-ins.

    Args:
        file: binary stream positioned at a pickle.
        storage_cb: called for every persistent id ``('storage', type, key, location, numel[, view])``
            and returns the object to put in its place.
        allow_unknown: turn refused globals into inert :class:`UnknownGlobal` records instead of
            raising (still nothing is imported or executed).
    """

    def __init__(self, file: BinaryIO, storage_cb: Optional[Callable[[tuple], Any]] = None,
                 allow_unknown: bool = False) -> None:
        super().__init__(file, encoding="latin1")
        self._storage_cb = storage_cb
        self._allow_unknown = allow_unknown
        self.unknown_globals: List[str] = []

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        qualname = f"{module}.{name}"
        if self._allow_unknown:
            self.unknown_globals.append(qualname)
            return type(name, (UnknownGlobal,), {"qualname": qualname, "__module__": __name__})
        raise UnsafeCheckpointError(
            f"refused to load global '{qualname}': only tensors, storages and plain containers are "
            f"allowed in a checkpoint (nothing was executed)")

    def persistent_load(self, pid: Any) -> Any:
        if self._storage_cb is None:
            raise CheckpointError(f"unexpected persistent id {pid!r} in a plain pickle")
        return self._storage_cb(pid)


# ----------------------------------------------------------------------------- storage sources
def _storage_from_pid(pid: Any, legacy: bool) -> Tuple[_Storage, Optional[tuple]]:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise CheckpointError(f"unsupported persistent id {pid!r}")
    stype, key, _location, numel = pid[1], str(pid[2]), pid[3], pid[4]
    if isinstance(stype, _Marker) and stype.name.startswith("torch."):  # torch 2 passes a dtype
        dtype = _TORCH_DTYPES.get(stype.name[6:])
    elif isinstance(stype, _StorageType):
        dtype = stype.dtype
    else:
        dtype = None
    if dtype is None:
        raise CheckpointError(f"unsupported storage type {stype!r}")
    if not isinstance(numel, int) or numel < 0:
        raise CheckpointError(f"bad storage size {numel!r} for storage {key}")
    view = pid[5] if legacy and len(pid) > 5 else None
    return _Storage(key, dtype, numel), view


def _np_dtype_of(dtype: str) -> np.dtype:
    return np.dtype("uint16" if dtype == "bfloat16" else dtype)


def _bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    return (raw.astype(np.uint32) << 16).view(np.float32)


class _ZipSource:
    """Storage bytes of a zip checkpoint: one entry per storage key."""

    def __init__(self, path: str, zf: zipfile.ZipFile, prefix: str, big_endian: bool, mmap: bool) -> None:
        self.path, self.zf, self.prefix, self.big_endian, self.mmap = path, zf, prefix, big_endian, mmap

    def read(self, storage: _Storage) -> np.ndarray:
        name = f"{self.prefix}data/{storage.key}"
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise CheckpointError(f"{self.path}: storage entry '{name}' is missing (truncated file?)") from None
        dt = _np_dtype_of(storage.dtype)
        if self.big_endian:
            dt = dt.newbyteorder(">")
        need = storage.numel * dt.itemsize
        if info.file_size < need:
            raise CheckpointError(f"{self.path}: storage '{name}' holds {info.file_size} bytes, "
                                  f"{need} expected (truncated file?)")
        if info.compress_type == zipfile.ZIP_STORED:
            offset = _zip_data_offset(self.zf, info, self.path)
            if offset + need > os.path.getsize(self.path):
                raise CheckpointError(f"{self.path}: storage '{name}' runs past the end of the file (truncated?)")
            if self.mmap and not self.big_endian and storage.dtype != "bfloat16":
                return np.memmap(self.path, dtype=dt, mode="r", offset=offset, shape=(storage.numel,))
            arr = np.empty(storage.numel, dtype=dt)
            with open(self.path, "rb") as f:
                f.seek(offset)
                got = f.readinto(arr.view(np.uint8))
            if got != need:
                raise CheckpointError(f"{self.path}: storage '{name}' is truncated ({got} of {need} bytes)")
        else:  # re-zipped with compression: decompress this entry only
            try:
                with self.zf.open(name) as fh:  # read only what the storage needs (no zip-bomb blowup)
                    raw = fh.read(need)
                if len(raw) != need:
                    raise EOFError(f"{len(raw)} of {need} bytes")
                arr = np.frombuffer(raw, dtype=dt).copy()
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
                raise CheckpointError(f"{self.path}: cannot read storage '{name}': {e}") from None
        return _finish_storage(arr, storage.dtype, self.big_endian)


def _finish_storage(arr: np.ndarray, dtype: str, big_endian: bool) -> np.ndarray:
    if big_endian:
        arr = arr.byteswap().view(arr.dtype.newbyteorder("="))
    return _bf16_to_float32(arr) if dtype == "bfloat16" else arr


def _zip_data_offset(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str) -> int:
    """Where an uncompressed entry's bytes start: after its local header (name + extra field)."""
    fp = zf.fp
    assert fp is not None
    fp.seek(info.header_offset)
    header = fp.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise CheckpointError(f"{path}: corrupt zip local header for '{info.filename}'")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_len + extra_len


class _LegacySource:
    """Storage bytes of a legacy checkpoint: ``int64 numel`` + raw data per key, in pickled order."""

    def __init__(self, path: str, f: BinaryIO, order: List[str], little_endian: bool) -> None:
        self.path, self.little_endian = path, little_endian
        self._f, self._order = f, order
        self._start = f.tell()  # the data section follows the key-list pickle
        self._size = os.fstat(f.fileno()).st_size
        self.offsets: Dict[str, Tuple[int, int]] = {}

    def layout(self, storages: Dict[str, _Storage]) -> None:
        """Walk the data section once the pickled storage types (element sizes) are known."""
        # Element sizes come from the pickled storage types, so offsets are known only now.
        pos = self._start
        for key in self._order:
            if key not in storages:
                raise CheckpointError(f"{self.path}: storage '{key}' listed but never referenced")
            self._f.seek(pos)
            head = self._f.read(8)
            if len(head) != 8:
                raise CheckpointError(f"{self.path}: storage '{key}' is missing (truncated file?)")
            numel = struct.unpack("<q" if self.little_endian else ">q", head)[0]
            nbytes = numel * _np_dtype_of(storages[key].dtype).itemsize
            if numel < 0 or pos + 8 + nbytes > self._size:
                raise CheckpointError(f"{self.path}: storage '{key}' runs past the end of the file (truncated?)")
            self.offsets[key] = (pos + 8, numel)
            pos += 8 + nbytes

    def read(self, storage: _Storage) -> np.ndarray:
        if storage.key not in self.offsets:
            raise CheckpointError(f"{self.path}: no data for storage '{storage.key}'")
        start, numel = self.offsets[storage.key]
        dt = _np_dtype_of(storage.dtype)
        if not self.little_endian:
            dt = dt.newbyteorder(">")
        arr = np.empty(numel, dtype=dt)
        self._f.seek(start)
        if self._f.readinto(arr.view(np.uint8)) != arr.nbytes:
            raise CheckpointError(f"{self.path}: storage '{storage.key}' is truncated")
        return _finish_storage(arr, storage.dtype, not self.little_endian)


# ----------------------------------------------------------------------------- materialization
def _materialize(obj: Any, read: Callable[[_Storage], np.ndarray]) -> Any:
    """Replace every tensor reference by a numpy array; each storage is read once and released
    as soon as no later tensor needs it, so memory stays near one copy of the weights.

    Containers shared through the pickle memo are visited once (a crafted pickle of nested shared
    lists would otherwise take exponential time)."""
    try:
        return _materialize_unchecked(obj, read)
    except RecursionError:
        raise CheckpointError("checkpoint objects nested too deeply") from None


def _materialize_unchecked(obj: Any, read: Callable[[_Storage], np.ndarray]) -> Any:
    refs: List[_TensorRef] = []
    seen: set = set()

    def collect(o: Any) -> None:
        if id(o) in seen:
            return
        if isinstance(o, _TensorRef):
            seen.add(id(o))
            refs.append(o)
        elif isinstance(o, (dict, list, tuple, set, frozenset)):
            seen.add(id(o))
            for v in (o.values() if isinstance(o, dict) else o):
                collect(v)

    collect(obj)
    roots = lambda r: r.storage.root or r.storage  # noqa: E731
    last_use: Dict[int, int] = {}
    for i, r in enumerate(refs):
        last_use[id(roots(r))] = i
    cache: Dict[int, np.ndarray] = {}
    arrays: Dict[int, np.ndarray] = {}
    for i, r in enumerate(refs):
        root = roots(r)
        if id(root) not in cache:
            cache[id(root)] = read(root)
        base = cache[id(root)]
        arrays[id(r)] = _view(base, r, r.storage.view_offset if r.storage.root is not None else 0)
        if last_use[id(root)] == i:
            del cache[id(root)]

    done: Dict[int, Any] = {}

    def replace(o: Any) -> Any:
        if id(o) in done:
            return done[id(o)]
        if isinstance(o, _TensorRef):
            return arrays[id(o)]
        if isinstance(o, _SafeNDArray):
            return o.array
        if isinstance(o, collections.OrderedDict):
            done[id(o)] = o
            for k in list(o):
                o[k] = replace(o[k])
            return o
        if isinstance(o, dict):
            new_dict: Dict[Any, Any] = {}
            done[id(o)] = new_dict
            new_dict.update((k, replace(v)) for k, v in o.items())
            return new_dict
        if isinstance(o, list):
            new_list: List[Any] = []
            done[id(o)] = new_list
            new_list.extend(replace(v) for v in o)
            return new_list
        if isinstance(o, tuple):
            done[id(o)] = tuple(replace(v) for v in o)
            return done[id(o)]
        return o

    return replace(obj)


def _view(base: np.ndarray, ref: _TensorRef, view_offset: int) -> np.ndarray:
    """The tensor as a numpy array; bounds are checked so a crafted stride cannot read outside."""
    offset = view_offset + ref.offset
    if len(ref.size) != len(ref.stride):
        raise CheckpointError(f"tensor size {ref.size} and stride {ref.stride} differ in length")
    numel = int(np.prod(ref.size, dtype=np.int64))
    if numel == 0:
        return np.zeros(ref.size, dtype=base.dtype)
    if numel > base.shape[0]:  # only expanded (stride-0) tensors could, and state dicts never hold them
        raise CheckpointError(f"tensor of size {ref.size} has more elements than its storage ({base.shape[0]})")
    last = offset + sum((s - 1) * st for s, st in zip(ref.size, ref.stride))
    if offset < 0 or last >= base.shape[0]:
        raise CheckpointError(f"tensor of size {ref.size} at offset {offset} overruns its storage "
                              f"of {base.shape[0]} elements")
    flat = base[offset:]
    out = np.lib.stride_tricks.as_strided(flat, shape=ref.size,
                                          strides=[st * base.itemsize for st in ref.stride], writeable=False)
    if offset == 0 and numel == base.shape[0] and out.flags.c_contiguous:
        return base.reshape(ref.size)  # whole storage, contiguous: no copy
    return np.ascontiguousarray(out)


# ----------------------------------------------------------------------------- entry points
def read_checkpoint_file(path: str, mmap: bool = False, allow_unknown: bool = False) -> Tuple[Any, str]:
    """Unpickle a checkpoint safely: ``(object, format)`` with format ``torch-zip``, ``torch-legacy``
    or ``pickle`` (a plain pickle such as Paddle's ``.pdparams``).

    Tensors become ``numpy.ndarray`` (bfloat16 widened to float32). Raises
    :class:`CheckpointError` for anything unreadable and :class:`UnsafeCheckpointError` for a
    refused global.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        return _read_zip(path, mmap, allow_unknown), "torch-zip"
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80":  # pickle protocol >= 2: legacy torch (magic number first) or plain pickle
        return _read_legacy_or_pickle(path, allow_unknown)
    if not head:
        raise CheckpointError(f"{path}: empty file")
    if head == b"PK":
        raise CheckpointError(f"{path}: truncated or corrupt zip archive (no central directory)")
    if head == b"\x1f\x8b":
        raise CheckpointError(f"{path}: gzip data, not a checkpoint (unpack it first)")
    raise CheckpointError(f"{path}: not a checkpoint (neither a torch zip archive nor a pickle)")


def read_torch_file(path: str, mmap: bool = False, allow_unknown: bool = False) -> Any:
    """Unpickle a ``torch.save`` file (zip or legacy format) into plain containers + numpy arrays."""
    obj, fmt = read_checkpoint_file(path, mmap, allow_unknown)
    if fmt == "pickle":
        raise CheckpointError(f"{path}: a plain pickle, not a torch.save checkpoint (no legacy magic number)")
    return obj


def _read_zip(path: str, mmap: bool, allow_unknown: bool) -> Any:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: corrupt zip archive ({e})") from None
    with zf:
        pkls = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if not pkls:
            raise CheckpointError(f"{path}: zip archive without data.pkl: not a torch.save checkpoint")
        pkl = min(pkls, key=len)
        prefix = pkl[: -len("data.pkl")]
        names = set(zf.namelist())
        big = False
        if f"{prefix}byteorder" in names:
            order = zf.read(f"{prefix}byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byteorder '{order}'")
            big = order == "big"
        storages: Dict[str, _Storage] = {}

        def on_storage(pid: Any) -> _Storage:
            st, _ = _storage_from_pid(pid, legacy=False)
            known = storages.setdefault(st.key, st)
            if known.dtype != st.dtype:
                raise CheckpointError(f"{path}: storage '{st.key}' used with two dtypes")
            return known

        try:
            data = zf.read(pkl)
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise CheckpointError(f"{path}: cannot read {pkl} ({e}); truncated or corrupt file") from None
        obj = _unpickle(path, io.BytesIO(data), on_storage, allow_unknown)
        source = _ZipSource(path, zf, prefix, big, mmap)
        return _materialize(obj, source.read)


def _unpickle(path: str, f: BinaryIO, cb: Optional[Callable], allow_unknown: bool) -> Any:
    try:
        return RestrictedUnpickler(f, cb, allow_unknown).load()
    except CheckpointError:
        raise
    except RecursionError:
        raise CheckpointError(f"{path}: pickle nested too deeply") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            struct.error, UnicodeDecodeError, MemoryError, OverflowError) as e:
        raise CheckpointError(f"{path}: corrupt or truncated pickle ({type(e).__name__}: {e})") from None


def _read_legacy_or_pickle(path: str, allow_unknown: bool) -> Tuple[Any, str]:
    with open(path, "rb") as f:
        first = _unpickle(path, f, None, allow_unknown)
        if not (isinstance(first, int) and first == LEGACY_MAGIC):
            return _materialize(first, _no_storage), "pickle"
        protocol = _unpickle(path, f, None, False)
        if protocol != LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: unsupported legacy protocol version {protocol!r}")
        sys_info = _unpickle(path, f, None, False)
        little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
        storages: Dict[str, _Storage] = {}

        def on_storage(pid: Any) -> _Storage:
            st, view = _storage_from_pid(pid, legacy=True)
            root = storages.setdefault(st.key, st)
            if view is None:
                return root
            if not (isinstance(view, tuple) and len(view) == 3):
                raise CheckpointError(f"{path}: bad storage view {view!r}")
            view_key, view_offset, view_size = view
            return _Storage(str(view_key), root.dtype, int(view_size), root=root, view_offset=int(view_offset))

        obj = _unpickle(path, f, on_storage, allow_unknown)
        keys = _unpickle(path, f, None, False)
        if not isinstance(keys, list):
            raise CheckpointError(f"{path}: legacy storage key list missing")
        source = _LegacySource(path, f, [str(k) for k in keys], little)
        source.layout(storages)
        return _materialize(obj, source.read), "torch-legacy"


def _no_storage(storage: _Storage) -> np.ndarray:
    raise CheckpointError("a plain pickle cannot reference torch storages")


def load_torch_checkpoint(path: str, mmap: bool = False, allow_unknown: bool = False) -> Dict[str, np.ndarray]:
    """Read a PyTorch checkpoint without torch and return its flat state dict of numpy arrays.

    Wrapped checkpoints are unwrapped (``state_dict``, ``model``, ``module``, ``net``,
    ``model_ema``/``state_dict_ema`` when no plain weights exist); keys keep their PyTorch names
    (use :func:`paddle_lk.convert.convert_state_dict` to map them). Non-tensor entries are dropped.

    Args:
        path: ``.pth`` / ``.pth.tar`` / ``.pt`` written by ``torch.save`` (zip or legacy format).
        mmap: memory-map uncompressed storages instead of reading them (read-only arrays).
        allow_unknown: turn globals outside the allow-list into inert placeholders instead of
            refusing the file (for checkpoints that also pickle e.g. an ``argparse.Namespace``).
    """
    return unwrap_state_dict(read_torch_file(path, mmap=mmap, allow_unknown=allow_unknown), path)


_WRAPPER_KEYS = ("state_dict", "model", "module", "net", "model_state", "state_dict_ema", "model_ema")


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> Dict[str, np.ndarray]:
    """The flat ``{name: array}`` dict inside a (possibly wrapped) checkpoint object."""
    seen = 0
    while isinstance(obj, dict) and seen < 4:
        if obj and any(isinstance(v, np.ndarray) for v in obj.values()):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict) and obj[k]), None)
        if inner is None:
            break
        obj, seen = inner, seen + 1
    if not isinstance(obj, dict):
        raise CheckpointError(f"{source}: holds a {type(obj).__name__}, not a state dict")
    # paddle.save pickles a Tensor as (name, ndarray).
    state = {str(k): (v[1] if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], np.ndarray) else v)
             for k, v in obj.items()}
    state = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    if not state:
        raise CheckpointError(f"{source}: no tensors found (top-level keys: {sorted(map(str, obj))[:8]})")
    return state
