"""A GPU through the CUDA driver API (``cuda.bindings.driver``).

Nothing here touches the driver before :func:`load_driver` has checked that the driver
library can be loaded at all, so on a machine without one the CUDA backend fails with a
:class:`CudaUnavailableError` naming the missing piece instead of a crash.

The device uses the primary context (the one CuPy and PyTorch use, so their arrays are
valid here) and the legacy default stream, which orders our work with theirs on their
default streams. Modules are loaded from a cubin built by NVRTC for the device's exact
architecture; if NVRTC cannot target it, or the driver rejects the cubin, from PTX for the
newest architecture NVRTC supports that is not newer than the device (the driver JIT
compiles it).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from symgrad.backends.cuda import nvrtc
from symgrad.backends.cuda.device import (
    KDL_CUDA,
    KDL_CUDA_MANAGED,
    Device,
    DeviceArray,
    ForeignArray,
    Module,
    Params,
    cai_stream,
    from_cuda_array_interface,
    from_dlpack,
)
from symgrad.backends.cuda.errors import INSTALL_HINT, CudaDriverError, CudaUnavailableError

_LIBCUDA_NAMES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")
_lock = threading.Lock()
_driver: ModuleType | None = None
_failure: CudaUnavailableError | None = None


def driver_library_present() -> bool:
    """Whether the NVIDIA driver library can be loaded (without initializing it)."""
    for name in _LIBCUDA_NAMES:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def load_driver() -> ModuleType:
    """``cuda.bindings.driver``, initialized, with at least one device; otherwise
    :class:`CudaUnavailableError` naming what is missing (``driver``, ``cuda-bindings``,
    ``device``) and how to get it."""
    global _driver, _failure
    with _lock:
        if _driver is not None:
            return _driver
        if _failure is not None:
            raise _failure
        if not driver_library_present():
            _failure = CudaUnavailableError(
                "driver",
                "no NVIDIA driver on this machine (libcuda.so.1 cannot be loaded): running "
                "kernels needs an NVIDIA GPU and its driver (https://www.nvidia.com/drivers)")
            raise _failure
        try:
            from cuda.bindings import driver
        except ImportError as e:
            _failure = CudaUnavailableError(
                "cuda-bindings",
                f"the CUDA backend needs the 'cuda-bindings' package ({e}); install it with: "
                f"{INSTALL_HINT}")
            raise _failure from None
        (err,) = driver.cuInit(0)
        if int(err) == int(driver.CUresult.CUDA_ERROR_NO_DEVICE):
            _failure = CudaUnavailableError("device", "the NVIDIA driver is installed but sees no GPU "
                                            "(cuInit: CUDA_ERROR_NO_DEVICE)")
            raise _failure
        if int(err) != 0:
            _failure = CudaUnavailableError(
                "driver", f"the NVIDIA driver failed to initialize (cuInit: {_name(driver, err)}); "
                "check the driver installation and CUDA_VISIBLE_DEVICES")
            raise _failure
        err, count = driver.cuDeviceGetCount()
        if int(err) != 0 or count == 0:
            _failure = CudaUnavailableError("device", "the NVIDIA driver sees no GPU")
            raise _failure
        _driver = driver
        return driver


def driver_available() -> bool:
    try:
        load_driver()
    except CudaUnavailableError:
        return False
    return True


def _name(driver: ModuleType, err: Any) -> str:
    try:
        _, name = driver.cuGetErrorName(err)
        _, text = driver.cuGetErrorString(err)
        return f"{name.decode()}: {text.decode()}"
    except Exception:
        return str(err)


def _check(driver: ModuleType, result: tuple[Any, ...], call: str) -> Any:
    err = result[0]
    if int(err) != 0:
        if int(err) == int(driver.CUresult.CUDA_ERROR_OUT_OF_MEMORY):
            raise MemoryError(f"{call}: out of GPU memory")
        raise CudaDriverError(f"{call} failed: {_name(driver, err)}")
    if len(result) == 1:
        return None
    return result[1] if len(result) == 2 else result[1:]


class GpuModule(Module):
    def __init__(self, device: GpuDevice, handle: Any, how: str, arch: int) -> None:
        self.device = device
        self.handle = handle
        self.how = how  # "cubin sm_90" or "ptx compute_90"
        self.arch = arch
        self._functions: dict[str, Any] = {}

    def function(self, kernel: str) -> Any:
        f = self._functions.get(kernel)
        if f is None:
            d = self.device.driver
            f = _check(d, d.cuModuleGetFunction(self.handle, kernel.encode()),
                       f"cuModuleGetFunction({kernel})")
            self._functions[kernel] = f
        return f

    def launch(self, kernel: str, grid: Sequence[int], block: Sequence[int], shmem: int,
               params: Params) -> None:
        dev = self.device
        dev.make_current()
        g = tuple(int(v) for v in grid) + (1, 1)
        b = tuple(int(v) for v in block) + (1, 1)
        d = dev.driver
        (err,) = d.cuLaunchKernel(self.function(kernel), g[0], g[1], g[2], b[0], b[1], b[2],
                                  int(shmem), dev.stream, params.address, 0)
        if int(err) != 0:
            raise CudaDriverError(f"launching {kernel} (grid {g[:3]}, block {b[:3]}) failed: "
                                  f"{_name(d, err)}")
        if dev.sync_each:
            dev.synchronize(f"kernel {kernel}")

    def launcher(self, kernel: str, grid: Sequence[int], block: Sequence[int],
                 shmem: int) -> Callable[[Params], None]:
        if self.device.sync_each:
            return super().launcher(kernel, grid, block, shmem)
        d = self.device.driver
        f, stream, launch = self.function(kernel), self.device.stream, d.cuLaunchKernel
        gx, gy, gz = (tuple(int(v) for v in grid) + (1, 1))[:3]
        bx, by, bz = (tuple(int(v) for v in block) + (1, 1))[:3]
        sh = int(shmem)

        def run(params: Params) -> None:
            (err,) = launch(f, gx, gy, gz, bx, by, bz, sh, stream, params.address, 0)
            if int(err) != 0:
                raise CudaDriverError(f"launching {kernel} (grid {(gx, gy, gz)}, block "
                                      f"{(bx, by, bz)}) failed: {_name(d, err)}")

        return run


class GpuDevice(Device):
    """One GPU: primary context, legacy default stream, pooled memory."""

    kind = "gpu"

    def __init__(self, ordinal: int = 0) -> None:
        super().__init__()
        d = load_driver()
        self.driver = d
        self.ordinal = ordinal
        self.handle = _check(d, d.cuDeviceGet(ordinal), f"cuDeviceGet({ordinal})")
        raw = _check(d, d.cuDeviceGetName(256, self.handle), "cuDeviceGetName")
        self.name = bytes(raw).split(b"\0")[0].decode(errors="replace")
        attr = d.CUdevice_attribute
        major = _check(d, d.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                                 self.handle), "cuDeviceGetAttribute")
        minor = _check(d, d.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                                 self.handle), "cuDeviceGetAttribute")
        self.compute_capability = int(major) * 10 + int(minor)
        self.arch = self.compute_capability
        self.multiprocessors = int(_check(d, d.cuDeviceGetAttribute(
            attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, self.handle), "cuDeviceGetAttribute"))
        self.context = _check(d, d.cuDevicePrimaryCtxRetain(self.handle), "cuDevicePrimaryCtxRetain")
        self.stream = d.CUstream(0)
        self.driver_version = int(_check(d, d.cuDriverGetVersion(), "cuDriverGetVersion"))
        self.sync_each = os.environ.get("SYMGRAD_CUDA_SYNC", "0") not in ("0", "")
        self._current = threading.local()
        self.make_current()

    def make_current(self) -> None:
        if getattr(self._current, "ok", False):
            return
        d = self.driver
        cur = _check(d, d.cuCtxGetCurrent(), "cuCtxGetCurrent")
        if cur is None or int(cur) != int(self.context):
            _check(d, d.cuCtxSetCurrent(self.context), "cuCtxSetCurrent")
        self._current.ok = True

    # memory
    def raw_alloc(self, nbytes: int) -> int:
        self.make_current()
        return int(_check(self.driver, self.driver.cuMemAlloc(nbytes), f"cuMemAlloc({nbytes})"))

    def raw_free(self, ptr: int) -> None:
        try:
            self.driver.cuMemFree(ptr)
        except Exception:  # interpreter shutdown
            pass

    def upload(self, dst: int, src: np.ndarray) -> None:
        self.make_current()
        _check(self.driver, self.driver.cuMemcpyHtoD(dst, src.ctypes.data, src.nbytes), "cuMemcpyHtoD")

    def download(self, dst: np.ndarray, src: int) -> None:
        self.make_current()
        _check(self.driver, self.driver.cuMemcpyDtoH(dst.ctypes.data, src, dst.nbytes), "cuMemcpyDtoH")

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        self.make_current()
        _check(self.driver, self.driver.cuMemcpyDtoDAsync(dst, src, nbytes, self.stream),
               "cuMemcpyDtoDAsync")

    def memset(self, dst: int, byte: int, nbytes: int) -> None:
        self.make_current()
        _check(self.driver, self.driver.cuMemsetD8Async(dst, byte, nbytes, self.stream),
               "cuMemsetD8Async")

    def synchronize(self, what: str = "") -> None:
        self.make_current()
        (err,) = self.driver.cuStreamSynchronize(self.stream)
        if int(err) != 0:
            raise CudaDriverError(f"the GPU reported an error{' after ' + what if what else ''}: "
                                  f"{_name(self.driver, err)}")

    # modules
    def load(self, source: str, name: str) -> GpuModule:
        self.make_current()
        d = self.driver
        archs = nvrtc.supported_archs()
        errors = []
        arch = self.compute_capability
        if arch in archs:
            cubin = nvrtc.compile_cubin(source, arch, name=f"{name}.cu")
            err, handle = d.cuModuleLoadData(cubin.data)
            if int(err) == 0:
                return GpuModule(self, handle, f"cubin sm_{arch}", arch)
            errors.append(f"cubin sm_{arch}: {_name(d, err)}")
        lower = [a for a in archs if a <= arch]
        if not lower:
            raise CudaDriverError(f"NVRTC {nvrtc.nvrtc_version()} cannot target {self.name} "
                                  f"(sm_{arch}); it supports {archs}")
        ptx_arch = max(lower)
        ptx = nvrtc.compile_ptx(source, ptx_arch, name=f"{name}.cu")
        err, handle = d.cuModuleLoadData(ptx.data + b"\0")
        if int(err) == 0:
            return GpuModule(self, handle, f"ptx compute_{ptx_arch}", ptx_arch)
        errors.append(f"ptx compute_{ptx_arch}: {_name(d, err)}")
        raise CudaDriverError(
            f"the driver (version {self.driver_version}) could not load {name}: "
            + "; ".join(errors) + ". An NVRTC newer than the driver makes PTX the driver cannot "
            "read: update the driver or install an nvidia-cuda-nvrtc matching it.")

    # arrays owned by others
    def foreign(self, obj: Any) -> ForeignArray | None:
        if isinstance(obj, DeviceArray):
            return super().foreign(obj)
        if hasattr(obj, "__cuda_array_interface__"):
            arr = from_cuda_array_interface(obj)
            self._check_owner(arr.ptr)
            stream = cai_stream(obj)
            if stream not in (None, 1, 2):
                d = self.driver
                _check(d, d.cuStreamSynchronize(d.CUstream(stream)), "cuStreamSynchronize")
            return arr
        dl_device = getattr(obj, "__dlpack_device__", None)
        if dl_device is not None:
            kind, _ordinal = dl_device()
            if int(kind) in (KDL_CUDA, KDL_CUDA_MANAGED):
                arr, _ = from_dlpack(obj, stream=1)
                try:
                    self._check_owner(arr.ptr)
                except Exception:
                    if arr.release is not None:
                        arr.release()
                    raise
                return arr
        return None

    def _check_owner(self, ptr: int) -> None:
        if ptr == 0:
            return
        d = self.driver
        err, ordinal = d.cuPointerGetAttribute(
            d.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, ptr)
        if int(err) == 0 and int(ordinal) != self.ordinal:
            raise ValueError(f"a device array on GPU {int(ordinal)} was passed to a function "
                             f"compiled for GPU {self.ordinal}")

    # timing
    def timer(self) -> EventTimer:
        return EventTimer(self)


class EventTimer:
    """GPU time between ``start()`` and ``stop()`` (CUDA events on the device's stream)."""

    def __init__(self, device: GpuDevice) -> None:
        self.device = device
        d = device.driver
        flags = d.CUevent_flags.CU_EVENT_DEFAULT
        self._start = _check(d, d.cuEventCreate(flags), "cuEventCreate")
        self._stop = _check(d, d.cuEventCreate(flags), "cuEventCreate")

    def start(self) -> None:
        d = self.device.driver
        _check(d, d.cuEventRecord(self._start, self.device.stream), "cuEventRecord")

    def stop(self) -> float:
        """Seconds since ``start()`` on the GPU (waits for the work to finish)."""
        d = self.device.driver
        _check(d, d.cuEventRecord(self._stop, self.device.stream), "cuEventRecord")
        _check(d, d.cuEventSynchronize(self._stop), "cuEventSynchronize")
        ms = _check(d, d.cuEventElapsedTime(self._start, self._stop), "cuEventElapsedTime")
        return float(ms) / 1e3


_devices: dict[int, GpuDevice] = {}


def gpu_device(ordinal: int = 0) -> GpuDevice:
    """The process's handle on GPU ``ordinal`` (created on first use)."""
    with _lock:
        dev = _devices.get(ordinal)
    if dev is None:
        dev = GpuDevice(ordinal)
        with _lock:
            dev = _devices.setdefault(ordinal, dev)
    return dev
