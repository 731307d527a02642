"""Hand-written CUDA kernels: NVRTC compiles them, shim.h runs them on the CPU.

One source exercises what generated kernels use (grid-stride loops, vectorized loads,
warp shuffles, shared memory, barriers, atomics, two-stage reductions, row-wise
softmax, a tiled matrix product, dynamic shared memory) plus the shim's corner cases
(shuffle widths, votes, barrier counts, deadlocks). The same text, unchanged, goes to
NVRTC (cubin for sm_80 and sm_90, PTX) and to g++ through shim.h; results are compared
with NumPy.
"""

from __future__ import annotations

import numpy as np
import pytest

from symgrad.backends.cuda import hostshim
from symgrad.backends.cuda.device import Params
from symgrad.backends.cuda.errors import ShimError
from symgrad.backends.cuda.hostshim import ShimDevice

SOURCE = r"""
typedef long long i64;

// y = a * tanh(x): grid-stride loop, float4 loads where the pointers are aligned
extern "C" __global__ void scale_tanh(const float* __restrict__ x, float* __restrict__ y, i64 n, float a) {
    const i64 start = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    const i64 step = (i64)gridDim.x * blockDim.x;
    const bool aligned = (((unsigned long long)x | (unsigned long long)y) & 15) == 0;
    i64 done = 0;
    if (aligned) {
        const i64 n4 = n / 4;
        const float4* x4 = reinterpret_cast<const float4*>(x);
        float4* y4 = reinterpret_cast<float4*>(y);
        for (i64 i = start; i < n4; i += step) {
            float4 v = x4[i];
            y4[i] = make_float4(a * tanhf(v.x), a * tanhf(v.y), a * tanhf(v.z), a * tanhf(v.w));
        }
        done = n4 * 4;
    }
    for (i64 i = done + start; i < n; i += step) y[i] = a * tanhf(x[i]);
}

__device__ __forceinline__ double warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

__device__ double block_sum(double v) {
    __shared__ double part[32];
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    if (lane == 0) part[w] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x + 31) / 32 ? part[lane] : 0.0;
    if (w == 0) v = warp_sum(v);
    __syncthreads();
    if (threadIdx.x == 0) part[0] = v;
    __syncthreads();
    v = part[0];
    __syncthreads();
    return v;  // in every thread
}

// out[0] += sum(x) with one atomic per block
extern "C" __global__ void sum_atomic(const float* x, double* out, i64 n) {
    double v = 0.0;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) v += x[i];
    v = block_sum(v);
    if (threadIdx.x == 0) atomicAdd(out, v);
}

// two stages: partial sums per block, then one block folds them
extern "C" __global__ void sum_part(const float* x, double* parts, i64 n) {
    double v = 0.0;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x) v += x[i];
    v = block_sum(v);
    if (threadIdx.x == 0) parts[blockIdx.x] = v;
}
extern "C" __global__ void sum_final(const double* parts, float* out, i64 nparts) {
    double v = 0.0;
    for (i64 p = threadIdx.x; p < nparts; p += blockDim.x) v += parts[p];
    v = block_sum(v);
    if (threadIdx.x == 0) out[0] = (float)v;
}

// softmax over rows: one block per row, max and sum with shuffles and shared memory
__device__ float block_max(float v) {
    __shared__ float part[32];
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = v;
    __syncthreads();
    v = part[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); ++w) v = fmaxf(v, part[w]);
    __syncthreads();
    return v;
}
extern "C" __global__ void softmax_rows(const float* x, float* y, i64 rows, i64 cols) {
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * cols;
        float* yr = y + r * cols;
        float m = __int_as_float(0xff800000);  // -inf (NVRTC has no INFINITY without headers)
        for (i64 c = threadIdx.x; c < cols; c += blockDim.x) m = fmaxf(m, xr[c]);
        m = block_max(m);
        double s = 0.0;
        for (i64 c = threadIdx.x; c < cols; c += blockDim.x) s += expf(xr[c] - m);
        s = block_sum(s);
        for (i64 c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = (float)(expf(xr[c] - m) / s);
    }
}

// C = A @ B with 16x16 shared-memory tiles
#define TILE 16
extern "C" __global__ void matmul_tiled(const float* A, const float* B, float* C, i64 M, i64 N, i64 K) {
    __shared__ float as[TILE][TILE + 1];
    __shared__ float bs[TILE][TILE + 1];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const i64 i = (i64)blockIdx.y * TILE + ty, j = (i64)blockIdx.x * TILE + tx;
    float s = 0.f;
    for (i64 k0 = 0; k0 < K; k0 += TILE) {
        as[ty][tx] = (i < M && k0 + tx < K) ? A[i * K + k0 + tx] : 0.f;
        bs[ty][tx] = (k0 + ty < K && j < N) ? B[(k0 + ty) * N + j] : 0.f;
        __syncthreads();
        for (int k = 0; k < TILE; ++k) s += as[ty][k] * bs[k][tx];
        __syncthreads();
    }
    if (i < M && j < N) C[i * N + j] = s;
}

// reverse each block's slice through dynamic shared memory
extern "C" __global__ void reverse_blocks(const int* x, int* y) {
    extern __shared__ int buf[];
    const unsigned t = threadIdx.x, n = blockDim.x;
    buf[t] = x[blockIdx.x * n + t];
    __syncthreads();
    y[blockIdx.x * n + t] = buf[n - 1 - t];
}

// integer histogram with atomics
extern "C" __global__ void histogram(const int* x, unsigned int* counts, i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (i64)gridDim.x * blockDim.x)
        atomicAdd(&counts[x[i]], 1u);
}

// warp primitives: each thread writes 8 results
extern "C" __global__ void warp_ops(const int* x, int* y) {
    const int t = threadIdx.x;
    const int v = x[t];
    int* o = y + 8 * t;
    o[0] = __shfl_sync(0xffffffffu, v, 3);
    o[1] = __shfl_up_sync(0xffffffffu, v, 2);
    o[2] = __shfl_down_sync(0xffffffffu, v, 5, 8);
    o[3] = __shfl_xor_sync(0xffffffffu, v, 1);
    o[4] = (int)__ballot_sync(0xffffffffu, v % 3 == 0);
    o[5] = __any_sync(0xffffffffu, v == 7);
    o[6] = __all_sync(0xffffffffu, v >= 0);
    o[7] = __syncthreads_count(v % 2);
}

// an impossible rendezvous: lane 0 shuffles while the others wait at a barrier
extern "C" __global__ void deadlock(int* y) {
    if (threadIdx.x == 0) y[0] = __shfl_sync(0xffffffffu, 1, 1);
    else __syncthreads();
}
"""

NAMES = ["scale_tanh", "sum_atomic", "sum_part", "sum_final", "softmax_rows", "matmul_tiled",
         "reverse_blocks", "histogram", "warp_ops", "deadlock"]


# -- the source scanner ---------------------------------------------------------------------
def test_parse_kernels_finds_signatures_and_barriers() -> None:
    ks = {k.name: k for k in hostshim.parse_kernels(SOURCE)}
    assert list(ks) == NAMES
    assert ks["scale_tanh"].params == ("ptr", "ptr", "i64", "f32")
    assert ks["matmul_tiled"].params == ("ptr",) * 3 + ("i64",) * 3
    assert not ks["scale_tanh"].uses_sync and not ks["histogram"].uses_sync
    # barriers reached directly, through __device__ functions, and through votes
    for name in ("sum_atomic", "sum_final", "softmax_rows", "matmul_tiled", "reverse_blocks",
                 "warp_ops", "deadlock"):
        assert ks[name].uses_sync, name
    assert hostshim.dynamic_shared(SOURCE) == [("int", "buf")]


def test_barrier_in_a_macro_makes_every_kernel_use_fibers() -> None:
    src = ("#define SYNC() __syncthreads()\n"
           'extern "C" __global__ void k(float* x) { x[threadIdx.x] = 1.f; SYNC(); }\n'
           'extern "C" __global__ void m(float* x) { x[0] = 2.f; }\n')
    assert all(k.uses_sync for k in hostshim.parse_kernels(src))


def test_parameter_kinds_follow_typedefs() -> None:
    src = ('typedef unsigned long long u64; using real = double; typedef float* fptr;\n'
           'extern "C" __global__ void k(u64 a, real b, fptr c, float3 d) {}')
    (k,) = hostshim.parse_kernels(src)
    assert k.params == ("u64", "f64", "ptr", "other")


# -- running on the shim ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shim() -> ShimDevice:
    return ShimDevice()


@pytest.fixture(scope="module")
def module(shim: ShimDevice):  # type: ignore[no-untyped-def]
    return shim.load(SOURCE, "handwritten")


def _launch(module, shim: ShimDevice, kernel: str, grid, block, args, kinds, shmem: int = 0):  # type: ignore[no-untyped-def]
    """Copy array arguments in, launch, copy them back; returns the arrays."""
    dev_arrays = []
    values = []
    for a, k in zip(args, kinds):
        if k == "ptr":
            d = shim.to_device(a)
            dev_arrays.append((a, d))
            values.append(d.ptr)
        else:
            values.append(a)
    params = Params(kinds)
    params.set_all(values)
    module.launch(kernel, grid, block, shmem, params)
    return [d.get() for _, d in dev_arrays]


@pytest.mark.parametrize("n, offset", [(1, 0), (4099, 0), (4099, 1), (0, 0)])
def test_elementwise_grid_stride_with_vector_loads(module, shim, rng, n, offset) -> None:  # type: ignore[no-untyped-def]
    x = rng.standard_normal(n + offset).astype(np.float32)
    if n >= 3:
        x[offset:offset + 3] = [np.inf, -np.inf, -0.0]
    dx = shim.to_device(x)
    dy = shim.empty((n + offset,), np.float32)
    params = Params(("ptr", "ptr", "i64", "f32"))
    # an offset of one element makes the pointers unaligned: the scalar path runs
    params.set_all([dx.ptr + 4 * offset, dy.ptr + 4 * offset, n, 1.5])
    module.launch("scale_tanh", (3,), (64,), 0, params)
    y = dy.get()[offset:]
    np.testing.assert_allclose(y, 1.5 * np.tanh(x[offset:]), rtol=1e-6, atol=1e-7)


def test_block_reduction_with_shuffles_and_atomics(module, shim, rng) -> None:  # type: ignore[no-untyped-def]
    x = rng.standard_normal(5000).astype(np.float32)
    _, out = _launch(module, shim, "sum_atomic", (3,), (128,), [x, np.zeros(1), 5000],
                     ["ptr", "ptr", "i64"])
    np.testing.assert_allclose(out[0], x.astype(np.float64).sum(), rtol=1e-12)


def test_two_stage_reduction(module, shim, rng) -> None:  # type: ignore[no-untyped-def]
    n = 3000
    x = rng.standard_normal(n).astype(np.float32)
    nparts = 5
    parts = shim.empty((nparts,), np.float64)
    dx = shim.to_device(x)
    p1 = Params(("ptr", "ptr", "i64"))
    p1.set_all([dx.ptr, parts.ptr, n])
    module.launch("sum_part", (nparts,), (96,), 0, p1)
    out = shim.empty((1,), np.float32)
    p2 = Params(("ptr", "ptr", "i64"))
    p2.set_all([parts.ptr, out.ptr, nparts])
    module.launch("sum_final", (1,), (64,), 0, p2)
    np.testing.assert_allclose(parts.get().sum(), x.astype(np.float64).sum(), rtol=1e-12)
    np.testing.assert_allclose(out.get()[0], x.astype(np.float64).sum(), rtol=1e-6)


def test_softmax_rows(module, shim, rng) -> None:  # type: ignore[no-untyped-def]
    x = (rng.standard_normal((5, 77)) * 10).astype(np.float32)
    x[1, 3] = -np.inf
    _, y = _launch(module, shim, "softmax_rows", (2,), (64,), [x, np.zeros_like(x), 5, 77],
                         ["ptr", "ptr", "i64", "i64"])
    e = np.exp(x - x.max(axis=1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(axis=1, keepdims=True), rtol=2e-6, atol=1e-9)


@pytest.mark.parametrize("m, n, k", [(1, 1, 1), (17, 33, 20), (32, 16, 48)])
def test_tiled_matmul(module, shim, rng, m, n, k) -> None:  # type: ignore[no-untyped-def]
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    grid = (-(-n // 16), -(-m // 16))
    _, _, c = _launch(module, shim, "matmul_tiled", grid, (16, 16), [a, b, np.zeros((m, n), np.float32), m, n, k],
                          ["ptr"] * 3 + ["i64"] * 3)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_dynamic_shared_memory(module, shim) -> None:  # type: ignore[no-untyped-def]
    x = np.arange(3 * 40, dtype=np.int32)
    _, y = _launch(module, shim, "reverse_blocks", (3,), (40,), [x, np.zeros_like(x)], ["ptr", "ptr"],
                   shmem=40 * 4)
    np.testing.assert_array_equal(y, x.reshape(3, 40)[:, ::-1].reshape(-1))


def test_atomic_histogram(module, shim, rng) -> None:  # type: ignore[no-untyped-def]
    x = rng.integers(0, 10, 1000).astype(np.int32)
    _, counts = _launch(module, shim, "histogram", (4,), (64,), [x, np.zeros(10, np.uint32), 1000],
                           ["ptr", "ptr", "i64"])
    np.testing.assert_array_equal(counts, np.bincount(x, minlength=10))


def test_warp_shuffles_votes_and_barrier_count(module, shim) -> None:  # type: ignore[no-untyped-def]
    n = 64
    x = ((np.arange(n) * 7) % 23).astype(np.int32)
    _, y = _launch(module, shim, "warp_ops", (1,), (n,), [x, np.zeros(8 * n, np.int32)], ["ptr", "ptr"])
    y = y.reshape(n, 8)
    for t in range(n):
        lane, base = t % 32, t - t % 32
        w = x[base:base + 32]
        assert y[t, 0] == w[3]
        assert y[t, 1] == (w[lane - 2] if lane >= 2 else w[lane])
        seg = lane // 8 * 8
        assert y[t, 2] == (w[lane + 5] if lane - seg + 5 < 8 else w[lane])
        assert y[t, 3] == w[lane ^ 1]
        ballot = sum(1 << i for i in range(32) if w[i] % 3 == 0)
        assert y[t, 4] == np.array(ballot, np.uint32).view(np.int32)
        assert y[t, 5] == int((w == 7).any())
        assert y[t, 6] == 1
        assert y[t, 7] == int((x % 2).sum())


def test_deadlock_is_reported(module, shim) -> None:  # type: ignore[no-untyped-def]
    y = shim.empty((1,), np.int32)
    params = Params(("ptr",))
    params.set_all([y.ptr])
    with pytest.raises(ShimError, match="deadlock|cannot all be reached"):
        module.launch("deadlock", (1,), (32,), 0, params)


def test_invalid_launch_configuration_is_reported(module, shim) -> None:  # type: ignore[no-untyped-def]
    y = shim.empty((1,), np.int32)
    params = Params(("ptr",))
    params.set_all([y.ptr])
    with pytest.raises(ShimError, match="invalid launch configuration"):
        module.launch("deadlock", (1,), (2048,), 0, params)


def test_barrier_in_loop_mode_is_an_error_not_a_wrong_answer(shim) -> None:  # type: ignore[no-untyped-def]
    src = ('extern "C" __global__ void k(float* x) {\n'
           '  __shared__ float s[64]; s[threadIdx.x] = x[threadIdx.x]; __syncthreads();\n'
           '  x[threadIdx.x] = s[63 - threadIdx.x]; }\n')
    lib = hostshim.build(src, name="loopmode", fibers={"k": False})
    x = shim.to_device(np.arange(64, dtype=np.float32))
    params = Params(("ptr",))
    params.set_all([x.ptr])
    with pytest.raises(ShimError, match="loop mode"):
        lib.launch("k", (1,), (64,), 0, params.address)


def test_host_compiler_errors_name_the_file(shim) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ShimError, match="host compiler rejected"):
        hostshim.build('extern "C" __global__ void k(float* x) { x[0] = undefined_thing; }',
                       name="broken")


# -- NVRTC compiles the same source ---------------------------------------------------------------
nvrtc_mod = pytest.importorskip("symgrad.backends.cuda.nvrtc")


def _need_nvrtc() -> None:
    if not nvrtc_mod.nvrtc_available():
        pytest.skip("NVRTC is not installed (pip install 'symgrad[cuda]')")


@pytest.mark.parametrize("target, arch", [("cubin", 80), ("cubin", 90), ("ptx", 80)])
def test_nvrtc_compiles_the_handwritten_source(target: str, arch: int, tmp_path) -> None:  # type: ignore[no-untyped-def]
    _need_nvrtc()
    from symgrad.backends.cuda.cache import ArtifactCache

    out = nvrtc_mod.compile_source(SOURCE, arch=arch, target=target,
                                   cache=ArtifactCache(tmp_path))
    if target == "cubin":
        assert out.data[:4] == b"\x7fELF"
    else:
        text = out.ptx
        assert f".target sm_{arch}" in text
        for name in NAMES:
            assert f".entry {name}(" in text
