"""Matrix products through cuBLAS, when the library is there.

The renderer gives every matrix product a tiled shared-memory kernel of its own, so the
emitted sources stay self-contained. At run time on a GPU, a float32/float64 product
whose operands BLAS can address (row- or column-major with a leading dimension, batches
at one stride) runs as one ``cublas?gemmStridedBatched`` call instead, in full FP32/FP64
precision (no TF32). Anything else (integer products, reversed or broadcast rows, a
constant operand) keeps the kernel.

A row-major product ``C = A @ B`` (m x k times k x n) is the column-major product
``C^T = B^T A^T``: cuBLAS is called with (n, m, k) and the operands swapped, each with
``N`` when its rows are contiguous and ``T`` when its columns are.

The library is found through ``cuda.pathfinder`` (the ``nvidia-cublas`` wheel or a CUDA
toolkit), or at ``$SYMGRAD_CUBLAS_LIBRARY``; ``SYMGRAD_CUBLAS=0`` turns this off.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from symgrad.backends.cuda.errors import CudaDriverError

OP_N, OP_T = 0, 1
_INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Gemm:
    """One strided-batched GEMM in cuBLAS's (column-major) terms."""

    dtype: str  # float32 / float64
    transa: int
    transb: int
    m: int
    n: int
    k: int
    lda: int
    stride_a: int
    ldb: int
    stride_b: int
    ldc: int
    stride_c: int
    batch: int
    # byte offsets of the operands from their buffers' starts: first (B) and second (A)
    offset_a: int
    offset_b: int


def matrix_layout(rows: int, cols: int, sr: int, sc: int) -> tuple[str, int] | None:
    """``("row", ld)`` if element (r, c) is at ``r * ld + c``, ``("col", ld)`` if at
    ``r + c * ld`` (with a leading dimension BLAS accepts), else None."""
    if (sc == 1 or cols <= 1) and (rows <= 1 or sr >= max(cols, 1)):
        return "row", sr if rows > 1 else max(cols, 1)
    if (sr == 1 or rows <= 1) and (cols <= 1 or sc >= max(rows, 1)):
        return "col", sc if cols > 1 else max(rows, 1)
    return None


def _batch_stride(sizes: Sequence[int], strides: Sequence[int]) -> int | None:
    """One stride walking every batch index in row-major order, or None."""
    live = [(n, s) for n, s in zip(sizes, strides) if n != 1]
    if not live:
        return 0
    for (_, s0), (n1, s1) in zip(live, live[1:]):
        if s0 != s1 * n1:
            return None
    s = live[-1][1]
    return s if s >= 0 else None


def plan_gemm(dtype: str, itemsize: int, shape_a: Sequence[int], shape_b: Sequence[int],
              coeffs_a: Sequence[int], coeffs_b: Sequence[int], offset_a: int, offset_b: int,
              nbatch: int) -> Gemm | None:
    """The cuBLAS call computing ``C = A @ B`` (C contiguous), or None if BLAS cannot
    address the operands. Shapes are ``(*batch, rows, cols)``; ``coeffs`` are element
    strides per axis, ``offset`` element offsets."""
    if dtype not in ("float32", "float64"):
        return None
    batch_sizes = list(shape_a[:nbatch])
    m, k = shape_a[-2], shape_a[-1]
    n = shape_b[-1]
    la = matrix_layout(m, k, coeffs_a[-2], coeffs_a[-1])
    lb = matrix_layout(k, n, coeffs_b[-2], coeffs_b[-1])
    sa = _batch_stride(batch_sizes, coeffs_a[:nbatch])
    sb = _batch_stride(batch_sizes, coeffs_b[:nbatch])
    if la is None or lb is None or sa is None or sb is None:
        return None
    batch = 1
    for s in batch_sizes:
        batch *= s
    if max(m, n, k, la[1], lb[1], batch) > _INT_MAX or offset_a < 0 or offset_b < 0:
        return None
    return Gemm(dtype, OP_N if lb[0] == "row" else OP_T, OP_N if la[0] == "row" else OP_T,
                n, m, k, lb[1], sb, la[1], sa, max(n, 1), m * n, batch,
                offset_b * itemsize, offset_a * itemsize)


class Cublas:
    """A cuBLAS handle on the legacy default stream of the current context."""

    def __init__(self, path: str) -> None:
        self.path = path
        lib = ctypes.CDLL(path)
        self._lib = lib
        handle = ctypes.c_void_p()
        status = lib.cublasCreate_v2(ctypes.byref(handle))
        if status != 0:
            raise CudaDriverError(f"cublasCreate failed with status {status} ({path})")
        self.handle = handle
        lib.cublasSetStream_v2(handle, ctypes.c_void_p(0))
        ll, i = ctypes.c_longlong, ctypes.c_int
        p = ctypes.c_void_p
        for name in ("cublasSgemmStridedBatched", "cublasDgemmStridedBatched"):
            fn = getattr(lib, name)
            fn.argtypes = [p, i, i, i, i, i, p, p, i, ll, p, i, ll, p, p, i, ll, i]
            fn.restype = i
        self._one = {"float32": ctypes.c_float(1.0), "float64": ctypes.c_double(1.0)}
        self._zero = {"float32": ctypes.c_float(0.0), "float64": ctypes.c_double(0.0)}

    def gemm(self, g: Gemm, a_ptr: int, b_ptr: int, c_ptr: int) -> None:
        """Run ``g`` with its first operand at ``a_ptr`` (plus ``g.offset_a``), the second
        at ``b_ptr`` (plus ``g.offset_b``), the result at ``c_ptr``."""
        if g.batch == 0 or g.m == 0 or g.n == 0:
            return
        fn = self._lib.cublasSgemmStridedBatched if g.dtype == "float32" else \
            self._lib.cublasDgemmStridedBatched
        one, zero = self._one[g.dtype], self._zero[g.dtype]
        status = fn(self.handle, g.transa, g.transb, g.m, g.n, g.k, ctypes.byref(one),
                    a_ptr + g.offset_a, g.lda, g.stride_a, b_ptr + g.offset_b, g.ldb, g.stride_b,
                    ctypes.byref(zero), c_ptr, g.ldc, g.stride_c, g.batch)
        if status != 0:
            raise CudaDriverError(f"cuBLAS gemm {g} failed with status {status}")


_lock = threading.Lock()
_cublas: dict[int, Cublas | None] = {}


def cublas_for(device: Any) -> Cublas | None:
    """The device's cuBLAS handle, or None (off, not installed, or not usable)."""
    if os.environ.get("SYMGRAD_CUBLAS", "1") in ("0", "off", "no", "false"):
        return None
    key = id(device)
    with _lock:
        if key in _cublas:
            return _cublas[key]
        path = os.environ.get("SYMGRAD_CUBLAS_LIBRARY")
        if not path:
            try:
                from cuda.pathfinder import load_nvidia_dynamic_lib

                path = load_nvidia_dynamic_lib("cublas").abs_path
            except Exception:
                path = None
        lib = None
        if path:
            try:
                device.make_current()
                lib = Cublas(path)
            except (OSError, AttributeError, CudaDriverError):
                lib = None
        _cublas[key] = lib
        return lib
