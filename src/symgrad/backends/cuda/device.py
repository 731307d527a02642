"""What the CUDA runtime needs from a device, and the arrays that live on one.

A :class:`Device` allocates memory, copies, loads a CUDA source and launches its kernels
with ``cuLaunchKernel``'s argument convention. Two implementations share every line of
the code above them: :class:`~symgrad.backends.cuda.driver.GpuDevice` (the CUDA driver)
and :class:`~symgrad.backends.cuda.hostshim.ShimDevice` (the same source built for the
CPU through shim.h), so the launch code is exercised on machines without a GPU too.

Device memory comes from a small caching pool (freed blocks are kept by size class and
reused), because a driver allocation costs far more than a kernel on small arrays.
:class:`DeviceArray` owns a block (or views foreign memory) and exposes
``__cuda_array_interface__`` on a GPU, so CuPy, PyTorch and Numba can use it without a
copy. Foreign device arrays are read through ``__cuda_array_interface__`` or DLPack.
"""

from __future__ import annotations

import ctypes
import math
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ALIGN = 256  # cuMemAlloc returns at least 256-byte aligned memory; the shim does the same

# -- kernel arguments ---------------------------------------------------------------------------
PARAM_DTYPES: dict[str, np.dtype[Any]] = {
    "ptr": np.dtype(np.uint64), "f32": np.dtype(np.float32), "f64": np.dtype(np.float64),
    "i32": np.dtype(np.int32), "u32": np.dtype(np.uint32), "i64": np.dtype(np.int64),
    "u64": np.dtype(np.uint64), "i16": np.dtype(np.int16), "u16": np.dtype(np.uint16),
    "i8": np.dtype(np.int8), "u8": np.dtype(np.uint8), "bool": np.dtype(np.uint8),
}


class Params:
    """cuLaunchKernel's ``kernelParams``: an array of pointers, one per argument, each
    to an 8-byte slot holding the value. ``set`` rewrites a slot in place, so a launch
    can be prepared once and rebound cheaply on each call."""

    def __init__(self, kinds: Sequence[str]) -> None:
        self.kinds = tuple(kinds)
        for k in self.kinds:
            if k not in PARAM_DTYPES:
                raise ValueError(f"unknown kernel parameter kind {k!r}")
        n = max(len(self.kinds), 1)
        self.slots = np.zeros(n, dtype=np.uint64)
        self.ptrs = self.slots.ctypes.data + 8 * np.arange(n, dtype=np.uint64)
        self.address = int(self.ptrs.ctypes.data)
        self._views = [self.slots[i:i + 1].view(np.uint8)[:PARAM_DTYPES[k].itemsize].view(PARAM_DTYPES[k])
                       for i, k in enumerate(self.kinds)]

    def set(self, i: int, value: Any) -> None:
        self._views[i][0] = value

    def set_all(self, values: Sequence[Any]) -> None:
        if len(values) != len(self.kinds):
            raise ValueError(f"{len(self.kinds)} kernel arguments expected, got {len(values)}")
        for v, val in zip(self._views, values):
            v[0] = val

    def values(self) -> list[Any]:
        return [v[0].item() for v in self._views]


# -- memory -------------------------------------------------------------------------------------
def size_class(nbytes: int) -> int:
    """``nbytes`` rounded up to one of four classes per power of two (at most 25% waste),
    and to a multiple of ALIGN."""
    n = max(int(nbytes), 1)
    if n <= 4096:
        return (n + ALIGN - 1) // ALIGN * ALIGN
    step = 1 << (n.bit_length() - 3)
    return (n + step - 1) // step * step


class MemoryPool:
    """Free device blocks by size class; ``release`` gives them back to the device."""

    def __init__(self, device: Device) -> None:
        self._device = weakref.ref(device)
        self._free: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        self.in_use = 0
        self.cached = 0

    def take(self, nbytes: int) -> tuple[int, int]:
        n = size_class(nbytes)
        with self._lock:
            lst = self._free.get(n)
            if lst:
                self.cached -= n
                self.in_use += n
                return lst.pop(), n
        dev = self._device()
        assert dev is not None
        try:
            ptr = dev.raw_alloc(n)
        except MemoryError:
            self.release()
            ptr = dev.raw_alloc(n)
        with self._lock:
            self.in_use += n
        return ptr, n

    def give(self, ptr: int, n: int) -> None:
        with self._lock:
            self._free.setdefault(n, []).append(ptr)
            self.in_use -= n
            self.cached += n

    def release(self) -> None:
        """Free every cached block."""
        dev = self._device()
        with self._lock:
            blocks = [(p, n) for n, lst in self._free.items() for p in lst]
            self._free.clear()
            self.cached = 0
        if dev is not None:
            for p, _ in blocks:
                dev.raw_free(p)


class Allocation:
    """A pooled block of device memory; returned to the pool when garbage-collected."""

    __slots__ = ("ptr", "nbytes", "_pool", "__weakref__")

    def __init__(self, pool: MemoryPool, nbytes: int) -> None:
        self.ptr, self.nbytes = pool.take(nbytes)
        self._pool = pool

    def __del__(self) -> None:
        try:
            self._pool.give(self.ptr, self.nbytes)
        except Exception:  # interpreter shutdown
            pass


# -- devices ------------------------------------------------------------------------------------
class Module(ABC):
    """Kernels loaded from one source."""

    @abstractmethod
    def launch(self, kernel: str, grid: Sequence[int], block: Sequence[int], shmem: int,
               params: Params) -> None: ...

    def launcher(self, kernel: str, grid: Sequence[int], block: Sequence[int],
                 shmem: int) -> Callable[[Params], None]:
        """A launch of ``kernel`` with this geometry, prepared once and called many times
        (the runtime's hot path)."""
        g, b = tuple(grid), tuple(block)
        return lambda params: self.launch(kernel, g, b, shmem, params)


class Device(ABC):
    """A place where kernels run: a GPU through the driver, or the host shim."""

    kind: str  # "gpu" or "shim"
    name: str
    arch: int | None  # compute capability as an integer (90), None on the shim
    multiprocessors: int

    def __init__(self) -> None:
        self.pool = MemoryPool(self)

    # raw memory
    @abstractmethod
    def raw_alloc(self, nbytes: int) -> int: ...

    @abstractmethod
    def raw_free(self, ptr: int) -> None: ...

    @abstractmethod
    def upload(self, dst: int, src: np.ndarray) -> None:
        """Copy the C-contiguous host array ``src`` to device address ``dst``."""

    @abstractmethod
    def download(self, dst: np.ndarray, src: int) -> None:
        """Copy ``dst.nbytes`` bytes from device address ``src`` into ``dst``."""

    @abstractmethod
    def copy(self, dst: int, src: int, nbytes: int) -> None: ...

    @abstractmethod
    def memset(self, dst: int, byte: int, nbytes: int) -> None: ...

    @abstractmethod
    def load(self, source: str, name: str) -> Module:
        """Compile (or fetch from the cache) and load ``source``."""

    @abstractmethod
    def synchronize(self) -> None: ...

    def make_current(self) -> None:  # noqa: B027 - a no-op unless the device has a context
        """Make this device current for the calling thread (a GPU's context)."""

    def alloc(self, nbytes: int) -> Allocation:
        return Allocation(self.pool, nbytes)

    def empty(self, shape: Sequence[int], dtype: Any) -> DeviceArray:
        dt = np.dtype(dtype)
        shp = tuple(int(s) for s in shape)
        nbytes = math.prod(shp) * dt.itemsize
        return DeviceArray(self, self.alloc(nbytes), shp, dt)

    def to_device(self, arr: Any) -> DeviceArray:
        """A device copy of a host array."""
        a = np.asarray(arr, order="C")
        out = self.empty(a.shape, a.dtype)
        if a.nbytes:
            self.upload(out.ptr, a)
        return out

    def foreign(self, obj: Any) -> ForeignArray | None:
        """``obj`` as memory of this device without a copy, or None if it is not."""
        if isinstance(obj, DeviceArray):
            if obj.device is not self:
                raise ValueError("a DeviceArray from another device was passed")
            return ForeignArray(obj.ptr, obj.shape, obj.dtype, obj, None)
        return None


@dataclass
class ForeignArray:
    """Device memory owned by someone else (kept alive by ``owner`` for the call)."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    owner: Any
    release: Any  # a callable run when the call is done (DLPack's deleter), or None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class DeviceArray:
    """An array in device memory: ``shape``, ``dtype``, ``ptr``.

    ``get()`` (or ``np.asarray``) copies it to the host. On a GPU it exposes
    ``__cuda_array_interface__`` (version 3), so ``cupy.asarray(a)`` and
    ``torch.as_tensor(a, device="cuda")`` view it without a copy.
    """

    def __init__(self, device: Device, alloc: Allocation | None, shape: tuple[int, ...],
                 dtype: np.dtype[Any], ptr: int | None = None, owner: Any = None) -> None:
        self.device = device
        self._alloc = alloc
        self._owner = owner
        self.ptr = alloc.ptr if alloc is not None else int(ptr or 0)
        self.shape = shape
        self.dtype = dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def get(self) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        if out.nbytes:
            self.device.synchronize()
            self.device.download(out, self.ptr)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.get()
        return out if dtype is None else out.astype(dtype)

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        if self.device.kind != "gpu":
            raise AttributeError("__cuda_array_interface__: this array lives on the host shim")
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ptr, False),
                "version": 3, "strides": None, "stream": 1}

    def __repr__(self) -> str:
        return f"DeviceArray(shape={self.shape}, dtype={self.dtype}, device={self.device.name!r})"


# -- foreign arrays: __cuda_array_interface__ and DLPack ------------------------------------------
def from_cuda_array_interface(obj: Any) -> ForeignArray:
    """Read a CUDA array interface (v2/v3); the array must be C-contiguous."""
    cai = obj.__cuda_array_interface__
    shape = tuple(int(s) for s in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    if cai.get("mask") is not None:
        raise ValueError("masked CUDA arrays are not supported")
    strides = cai.get("strides")
    if strides is not None and not _c_contiguous(shape, tuple(strides), dtype.itemsize):
        raise ValueError(f"the device array (shape {shape}, strides {tuple(strides)}) is not "
                         "C-contiguous; pass a contiguous copy")
    ptr = int(cai["data"][0])
    return ForeignArray(ptr, shape, dtype, obj, None)


def cai_stream(obj: Any) -> int | None:
    """The stream a CUDA array interface asks its consumer to synchronize with."""
    s = obj.__cuda_array_interface__.get("stream")
    return None if s is None else int(s)


def _c_contiguous(shape: tuple[int, ...], strides: tuple[int, ...], itemsize: int) -> bool:
    want = itemsize
    for n, s in zip(reversed(shape), reversed(strides)):
        if n != 1 and s != want:
            return False
        want *= n
    return True


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    pass


_DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor))
_DLManagedTensor._fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                             ("deleter", _DELETER)]

KDL_CPU, KDL_CUDA, KDL_CUDA_HOST, KDL_CUDA_MANAGED = 1, 2, 3, 13
_DL_KINDS = {0: "i", 1: "u", 2: "f", 6: "b"}

_capi = ctypes.pythonapi
_capi.PyCapsule_GetPointer.restype = ctypes.c_void_p
_capi.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capi.PyCapsule_IsValid.restype = ctypes.c_int
_capi.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capi.PyCapsule_SetName.restype = ctypes.c_int
_capi.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]


def from_dlpack(obj: Any, stream: int | None = None) -> tuple[ForeignArray, int]:
    """Consume ``obj.__dlpack__`` (an unversioned ``dltensor`` capsule); returns the array
    and its DLPack device type. The caller must run ``release`` when done with it."""
    capsule = obj.__dlpack__() if stream is None else obj.__dlpack__(stream=stream)
    if not _capi.PyCapsule_IsValid(capsule, b"dltensor"):
        raise ValueError("__dlpack__ did not return an unconsumed 'dltensor' capsule")
    addr = _capi.PyCapsule_GetPointer(capsule, b"dltensor")
    managed = ctypes.cast(addr, ctypes.POINTER(_DLManagedTensor))
    t = managed.contents.dl_tensor
    ndim = int(t.ndim)
    shape = tuple(int(t.shape[i]) for i in range(ndim))
    code, bits, lanes = int(t.dtype.code), int(t.dtype.bits), int(t.dtype.lanes)
    if lanes != 1 or code not in _DL_KINDS:
        raise ValueError(f"DLPack dtype (code {code}, bits {bits}, lanes {lanes}) is not supported")
    kind = _DL_KINDS[code]
    dtype = np.dtype(np.bool_) if kind == "b" else np.dtype(f"{kind}{bits // 8}")
    if t.strides:
        strides = tuple(int(t.strides[i]) * dtype.itemsize for i in range(ndim))
        if not _c_contiguous(shape, strides, dtype.itemsize):
            _run_deleter(managed)
            raise ValueError(f"the DLPack array (shape {shape}) is not C-contiguous; pass a "
                             "contiguous copy")
    ptr = int(t.data or 0) + int(t.byte_offset)
    device_type = int(t.device.device_type)
    _capi.PyCapsule_SetName(capsule, b"used_dltensor")

    def release() -> None:
        _run_deleter(managed)

    return ForeignArray(ptr, shape, dtype, (obj, capsule), release), device_type


def _run_deleter(managed: Any) -> None:
    deleter = managed.contents.deleter
    if deleter:
        deleter(managed)


__all__ = ["ALIGN", "Allocation", "Device", "DeviceArray", "ForeignArray", "MemoryPool", "Module",
           "Params", "cai_stream", "from_cuda_array_interface", "from_dlpack", "size_class"]
