"""Device-side helpers that need no GPU: parameter blocks, pooled memory, foreign arrays."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from symgrad.backends.cuda import blas
from symgrad.backends.cuda.device import (
    Params,
    from_cuda_array_interface,
    from_dlpack,
    size_class,
)
from symgrad.backends.cuda.hostshim import ShimDevice


def test_params_match_cuLaunchKernel_layout() -> None:
    p = Params(["ptr", "i64", "f32", "f64", "i32", "u64"])
    p.set_all([0x1234_5678_9ABC, -7, 1.5, -2.25, 3, 2**63 + 5])
    assert p.values() == [0x1234_5678_9ABC, -7, 1.5, -2.25, 3, 2**63 + 5]
    ptrs = (ctypes.c_void_p * 6).from_address(p.address)
    assert ctypes.c_uint64.from_address(ptrs[0]).value == 0x1234_5678_9ABC
    assert ctypes.c_int64.from_address(ptrs[1]).value == -7
    assert ctypes.c_float.from_address(ptrs[2]).value == 1.5
    assert ctypes.c_double.from_address(ptrs[3]).value == -2.25
    assert ctypes.c_int32.from_address(ptrs[4]).value == 3
    p.set(1, 42)  # rebinding rewrites the slot in place
    assert ctypes.c_int64.from_address(ptrs[1]).value == 42
    with pytest.raises(ValueError):
        p.set_all([1])
    with pytest.raises(ValueError):
        Params(["float128"])


def test_size_classes_bound_the_waste() -> None:
    for n in [1, 255, 256, 257, 4096, 4097, 10**6, 123_456_789]:
        c = size_class(n)
        assert c >= n and c % 256 == 0 and (c - n) <= max(256, n // 4)


def test_pool_reuses_freed_blocks_and_arrays_round_trip() -> None:
    dev = ShimDevice()
    a = dev.to_device(np.arange(1000, dtype=np.float32))
    ptr = a.ptr
    assert ptr % 256 == 0
    np.testing.assert_array_equal(a.get(), np.arange(1000, dtype=np.float32))
    np.testing.assert_array_equal(np.asarray(a), a.get())
    del a
    b = dev.empty((1000,), np.float32)
    assert b.ptr == ptr and dev.pool.in_use > 0  # the freed block came back
    dev.memset(b.ptr, 0, b.nbytes)
    assert not b.get().any()
    c = dev.empty((10,), np.float64)
    dev.copy(c.ptr, b.ptr, 80)
    assert not c.get().any()
    del b, c
    dev.pool.release()
    assert dev.pool.cached == 0
    with pytest.raises(AttributeError):
        _ = dev.to_device(np.ones(3)).__cuda_array_interface__  # only on a GPU


def test_dlpack_consumer_reads_and_releases() -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    arr, device_type = from_dlpack(x)
    assert device_type == 1  # kDLCPU: the caller decides what it accepts
    assert arr.shape == (3, 4) and arr.dtype == np.float32 and arr.ptr == x.ctypes.data
    arr.release()
    with pytest.raises(ValueError, match="not C-contiguous"):
        from_dlpack(x.T)
    flags, _ = from_dlpack(np.array([True, False]))
    assert flags.dtype == np.bool_
    flags.release()


def test_cuda_array_interface_reader() -> None:
    class Fake:
        def __init__(self, strides: tuple[int, ...] | None) -> None:
            self.__cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f8", "data": (4096, False),
                                             "version": 3, "strides": strides, "stream": None}

    arr = from_cuda_array_interface(Fake(None))
    assert arr.shape == (2, 3) and arr.dtype == np.float64 and arr.ptr == 4096 and arr.nbytes == 48
    assert from_cuda_array_interface(Fake((24, 8))).ptr == 4096  # explicit C strides
    with pytest.raises(ValueError, match="not C-contiguous"):
        from_cuda_array_interface(Fake((8, 16)))


@pytest.mark.parametrize("rows, cols, sr, sc, want", [
    (3, 4, 4, 1, ("row", 4)), (3, 4, 6, 1, ("row", 6)), (3, 4, 1, 3, ("col", 3)),
    (1, 4, 0, 1, ("row", 4)), (3, 1, 1, 0, ("row", 1)), (3, 4, -4, 1, None), (3, 4, 0, 1, None),
    (3, 4, 2, 1, None), (3, 4, 4, 2, None),
])
def test_blas_layouts(rows: int, cols: int, sr: int, sc: int, want: object) -> None:
    assert blas.matrix_layout(rows, cols, sr, sc) == want


def test_gemm_plan_swaps_operands_for_row_major() -> None:
    # C(2x3, batch 4) = A(2x5) @ B(5x3), A a transposed view, B broadcast over the batch
    g = blas.plan_gemm("float32", 4, (4, 2, 5), (4, 5, 3), (10, 1, 2), (0, 3, 1), 7, 0, 1)
    assert g is not None
    assert (g.m, g.n, g.k, g.batch) == (3, 2, 5, 4)
    assert (g.transa, g.lda, g.stride_a) == (blas.OP_N, 3, 0)   # B row-major, broadcast
    assert (g.transb, g.ldb, g.stride_b) == (blas.OP_T, 2, 10)  # A column-major
    assert (g.ldc, g.stride_c, g.offset_b) == (3, 6, 28)
    assert blas.plan_gemm("int64", 8, (2, 2), (2, 2), (2, 1), (2, 1), 0, 0, 0) is None
