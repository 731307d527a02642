"""The CUDA backend: CUDA C++ compiled at run time with NVRTC, run through the driver API.

Pieces, in the order a program goes through them:

* :mod:`.backend`: ``CudaBackend`` (registered as ``"cuda"``): lower, render, compile, run;
* :mod:`.nvrtc`: NVRTC through ``cuda.bindings.nvrtc`` to PTX or a cubin for any
  architecture NVRTC knows (no driver needed), with the on-disk cache of :mod:`.cache`;
* :mod:`.device`: what a device offers (memory, copies, loading, launches), pooled memory,
  :class:`DeviceArray`, and foreign device arrays (``__cuda_array_interface__``, DLPack);
* :mod:`.driver`: a GPU through ``cuda.bindings.driver``;
* :mod:`.hostshim` and ``shim.h``: the same CUDA source built with the host C++ compiler
  and run on the CPU, so kernels are checked on machines without a GPU;
* :mod:`.runtime`: running the renderer's launches on a device.

Nothing here imports the CUDA bindings or loads a driver until it is needed, so
``import symgrad`` works everywhere.
"""

from symgrad.backends.cuda.backend import CudaBackend, check_gpu_available, parse_device, render
from symgrad.backends.cuda.device import Device, DeviceArray
from symgrad.backends.cuda.errors import CudaDriverError, CudaUnavailableError, NvrtcError, ShimError

__all__ = [
    "CudaBackend",
    "CudaDriverError",
    "CudaUnavailableError",
    "Device",
    "DeviceArray",
    "NvrtcError",
    "ShimError",
    "check_gpu_available",
    "parse_device",
    "render",
]
