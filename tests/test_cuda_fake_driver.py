"""The GPU code path (driver.py + runtime.py) against a stand-in CUDA driver.

There is no GPU here, so this builds a small ``libcuda.so.1`` of our own: memory is host
memory, ``cuModuleLoadData`` checks that it was handed a cubin or PTX naming the kernels,
and ``cuLaunchKernel`` runs the kernel from the same CUDA source built through shim.h,
with the ``kernelParams`` array exactly as the runtime packed it; a stand-in cuBLAS does
the reference column-major GEMM (and rejects bad leading dimensions). A subprocess whose
library path finds this stand-in first then runs ``sg.compile(..., backend="cuda")``
unchanged: NVIDIA's ``cuda.bindings`` load it, resolve every entry point through
``cuGetProcAddress_v2`` and marshal our arguments, so the calls, their argument types and
the parameter packing are all exercised; results are compared with NumPy.

What this does not show: that real kernels run correctly on a real device (the ``gpu``
tests do that), or anything about timing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from symgrad.backends.cuda import nvrtc

FAKE_DRIVER = r"""
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef int CUresult;
enum { OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, INVALID_IMAGE = 200, NOT_FOUND = 500,
       LAUNCH_FAILED = 719, INVALID_HANDLE = 400 };

typedef struct { void* lib; int (*launch)(int, const unsigned*, void**, int);
                 const char* (*name)(int); int (*count)(void); const char* (*message)(void); } Module;
typedef struct { Module* mod; int index; } Function;

static __thread void* current_ctx = 0;
static int sticky = OK;
static long launches = 0;

CUresult cuGetErrorName(CUresult e, const char** s) { *s = e == 0 ? "CUDA_SUCCESS" : "CUDA_ERROR_FAKE"; return OK; }
CUresult cuGetErrorString(CUresult e, const char** s) { *s = e == 0 ? "no error" : "fake driver error"; return OK; }
CUresult cuInit(unsigned flags) { (void)flags; return OK; }
CUresult cuDriverGetVersion(int* v) { *v = 13000; return OK; }
CUresult cuDeviceGetCount(int* n) { *n = 1; return OK; }
CUresult cuDeviceGet(int* d, int ordinal) { if (ordinal != 0) return INVALID_VALUE; *d = 0; return OK; }
CUresult cuDeviceGetName(char* name, int len, int dev) { (void)dev; snprintf(name, len, "Fake GPU"); return OK; }
CUresult cuDeviceGetAttribute(int* v, int attr, int dev) {
    (void)dev;
    *v = attr == 75 ? 9 : attr == 76 ? 0 : attr == 16 ? 4 : 0;  /* cc 9.0, 4 SMs */
    return OK;
}
CUresult cuDevicePrimaryCtxRetain(void** ctx, int dev) { (void)dev; *ctx = (void*)0x5eed; return OK; }
CUresult cuCtxGetCurrent(void** ctx) { *ctx = current_ctx; return OK; }
CUresult cuCtxSetCurrent(void* ctx) { current_ctx = ctx; return OK; }
CUresult cuCtxSynchronize(void) { CUresult e = sticky; sticky = OK; return e; }
CUresult cuMemAlloc(uint64_t* p, size_t n) {
    void* m = aligned_alloc(256, (n + 255) / 256 * 256);
    if (!m) return OUT_OF_MEMORY;
    memset(m, 0xAB, (n + 255) / 256 * 256);  /* garbage, as on a device */
    *p = (uint64_t)(uintptr_t)m; return OK;
}
CUresult cuMemFree(uint64_t p) { free((void*)(uintptr_t)p); return OK; }
CUresult cuMemcpyHtoD(uint64_t d, const void* s, size_t n) { memcpy((void*)(uintptr_t)d, s, n); return sticky; }
CUresult cuMemcpyDtoH(void* d, uint64_t s, size_t n) { memcpy(d, (void*)(uintptr_t)s, n); CUresult e = sticky; sticky = OK; return e; }
CUresult cuMemcpyDtoDAsync(uint64_t d, uint64_t s, size_t n, void* st) { (void)st; memmove((void*)(uintptr_t)d, (void*)(uintptr_t)s, n); return OK; }
CUresult cuMemsetD8Async(uint64_t d, unsigned char c, size_t n, void* st) { (void)st; memset((void*)(uintptr_t)d, c, n); return OK; }
CUresult cuStreamSynchronize(void* st) { (void)st; CUresult e = sticky; sticky = OK; return e; }
CUresult cuPointerGetAttribute(void* out, int attr, uint64_t p) { (void)p; if (attr == 9) *(int*)out = 0; return OK; }

CUresult cuModuleLoadData(void** mod, const void* image) {
    const char* path = getenv("SYMGRAD_FAKE_CUDA_SHIM");
    const unsigned char* img = (const unsigned char*)image;
    int elf = img[0] == 0x7f && img[1] == 'E' && img[2] == 'L' && img[3] == 'F';
    int ptx = strstr((const char*)image, ".version") != 0;
    if (!elf && !ptx) return INVALID_IMAGE;
    if (!path) return NOT_FOUND;
    Module* m = (Module*)calloc(1, sizeof(Module));
    m->lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!m->lib) { fprintf(stderr, "fake driver: %s\n", dlerror()); return INVALID_IMAGE; }
    m->launch = (int (*)(int, const unsigned*, void**, int))dlsym(m->lib, "sgshim_launch");
    m->name = (const char* (*)(int))dlsym(m->lib, "sgshim_name");
    m->count = (int (*)(void))dlsym(m->lib, "sgshim_count");
    m->message = (const char* (*)(void))dlsym(m->lib, "sgshim_message");
    *mod = m;
    return OK;
}
CUresult cuModuleUnload(void* mod) { (void)mod; return OK; }
CUresult cuModuleGetFunction(void** f, void* mod, const char* name) {
    Module* m = (Module*)mod;
    for (int i = 0; i < m->count(); ++i) {
        if (strcmp(m->name(i), name) == 0) {
            Function* fn = (Function*)calloc(1, sizeof(Function));
            fn->mod = m; fn->index = i; *f = fn; return OK;
        }
    }
    return NOT_FOUND;
}
CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned shmem, void* stream, void** params, void** extra) {
    (void)shmem; (void)stream;
    if (!f || !params || extra) return INVALID_VALUE;
    Function* fn = (Function*)f;
    unsigned g[6] = {gx, gy, gz, bx, by, bz};
    launches++;
    if (fn->mod->launch(fn->index, g, params, 0) != 0) {
        fprintf(stderr, "fake driver: %s\n", fn->mod->message());
        sticky = LAUNCH_FAILED;
    }
    return OK;
}
long sgfake_launches(void) { return launches; }

typedef struct { double t; } Event;
static double now(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec + 1e-9 * ts.tv_nsec; }
CUresult cuEventCreate(void** e, unsigned flags) { (void)flags; *e = calloc(1, sizeof(Event)); return OK; }
CUresult cuEventDestroy(void* e) { free(e); return OK; }
CUresult cuEventRecord(void* e, void* st) { (void)st; ((Event*)e)->t = now(); return OK; }
CUresult cuEventSynchronize(void* e) { (void)e; return OK; }
CUresult cuEventElapsedTime(float* ms, void* a, void* b) { *ms = (float)(1e3 * (((Event*)b)->t - ((Event*)a)->t)); return OK; }

static const struct { const char* name; void* fn; } table[] = {
    {"cuGetErrorName", (void*)cuGetErrorName}, {"cuGetErrorString", (void*)cuGetErrorString},
    {"cuInit", (void*)cuInit}, {"cuDriverGetVersion", (void*)cuDriverGetVersion},
    {"cuDeviceGetCount", (void*)cuDeviceGetCount}, {"cuDeviceGet", (void*)cuDeviceGet},
    {"cuDeviceGetName", (void*)cuDeviceGetName}, {"cuDeviceGetAttribute", (void*)cuDeviceGetAttribute},
    {"cuDevicePrimaryCtxRetain", (void*)cuDevicePrimaryCtxRetain},
    {"cuCtxGetCurrent", (void*)cuCtxGetCurrent}, {"cuCtxSetCurrent", (void*)cuCtxSetCurrent},
    {"cuCtxSynchronize", (void*)cuCtxSynchronize},
    {"cuMemAlloc", (void*)cuMemAlloc}, {"cuMemFree", (void*)cuMemFree},
    {"cuMemcpyHtoD", (void*)cuMemcpyHtoD}, {"cuMemcpyDtoH", (void*)cuMemcpyDtoH},
    {"cuMemcpyDtoDAsync", (void*)cuMemcpyDtoDAsync}, {"cuMemsetD8Async", (void*)cuMemsetD8Async},
    {"cuStreamSynchronize", (void*)cuStreamSynchronize},
    {"cuPointerGetAttribute", (void*)cuPointerGetAttribute},
    {"cuModuleLoadData", (void*)cuModuleLoadData}, {"cuModuleUnload", (void*)cuModuleUnload},
    {"cuModuleGetFunction", (void*)cuModuleGetFunction}, {"cuLaunchKernel", (void*)cuLaunchKernel},
    {"cuEventCreate", (void*)cuEventCreate}, {"cuEventDestroy", (void*)cuEventDestroy},
    {"cuEventRecord", (void*)cuEventRecord}, {"cuEventSynchronize", (void*)cuEventSynchronize},
    {"cuEventElapsedTime", (void*)cuEventElapsedTime},
};

CUresult cuGetProcAddress_v2(const char* symbol, void** pfn, int version, uint64_t flags, int* status) {
    (void)version; (void)flags;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; ++i) {
        if (strcmp(table[i].name, symbol) == 0) { *pfn = table[i].fn; if (status) *status = 0; return OK; }
    }
    *pfn = 0;
    if (status) *status = 1;
    return NOT_FOUND;
}
/* NVRTC asks a loaded driver for its private export tables: there are none here */
CUresult cuGetExportTable(const void** table, const void* uuid) { (void)uuid; if (table) *table = 0; return NOT_FOUND; }
CUresult cuGetProcAddress(const char* symbol, void** pfn, int version, uint64_t flags) {
    return cuGetProcAddress_v2(symbol, pfn, version, flags, 0);
}
"""

FAKE_CUBLAS = r"""
/* The reference (column-major) semantics of the two cuBLAS calls the runtime makes. */
static long calls = 0;
int cublasCreate_v2(void** h) { *h = (void*)0xb1a5; return 0; }
int cublasSetStream_v2(void* h, void* s) { (void)h; (void)s; return 0; }
#define GEMM(NAME, T) \
int NAME(void* h, int ta, int tb, int m, int n, int k, const T* alpha, const T* A, int lda, long long sa, \
         const T* B, int ldb, long long sb, const T* beta, T* C, int ldc, long long sc, int batch) { \
    (void)h; \
    if (m < 0 || n < 0 || k < 0 || batch < 0) return 7; \
    if (lda < (ta ? (k > 1 ? k : 1) : (m > 1 ? m : 1))) return 7; \
    if (ldb < (tb ? (n > 1 ? n : 1) : (k > 1 ? k : 1))) return 7; \
    if (ldc < (m > 1 ? m : 1)) return 7; \
    calls++; \
    for (int b = 0; b < batch; ++b) \
        for (int j = 0; j < n; ++j) \
            for (int i = 0; i < m; ++i) { \
                T s = 0; \
                for (int l = 0; l < k; ++l) { \
                    T a = ta ? A[b * sa + l + (long long)i * lda] : A[b * sa + i + (long long)l * lda]; \
                    T v = tb ? B[b * sb + j + (long long)l * ldb] : B[b * sb + l + (long long)j * ldb]; \
                    s += a * v; \
                } \
                T* c = &C[b * sc + i + (long long)j * ldc]; \
                *c = *beta == 0 ? *alpha * s : *alpha * s + *beta * *c; \
            } \
    return 0; \
}
GEMM(cublasSgemmStridedBatched, float)
GEMM(cublasDgemmStridedBatched, double)
long sgfake_gemms(void) { return calls; }
"""

SCRIPT = textwrap.dedent(r"""
    import ctypes, os, sys
    import numpy as np
    import symgrad as sg
    from symgrad.backends.base import register_backend
    from symgrad.backends.cuda import backend as B, hostshim
    from symgrad.backends.cuda.device import DeviceArray

    class Capture:  # a backend that keeps the program exactly as sg.compile builds it
        name = "capture"
        def build(self, program):
            self.source, self.program = "", program
            return self

    register_backend("capture", Capture)

    def shim_for(outs):
        # the stand-in driver runs modules from the same source built through shim.h
        rendered = B.render(sg.compile(outs, backend="capture")._impl.program)[1]
        os.environ["SYMGRAD_FAKE_CUDA_SHIM"] = str(hostshim.build(rendered.device_source,
                                                                  name="symgrad").path)
        return rendered

    rng = np.random.default_rng(7)
    X = sg.placeholder("X", (None, 12), "float32")
    y = sg.placeholder("y", (None,), "int64")
    W = sg.placeholder("W", (12, 10), "float32")
    b = sg.placeholder("b", (10,), "float32")
    z = sg.relu(X @ W + b)
    loss = sg.nn.cross_entropy(z, y)
    gW, gb = sg.grad(loss, [W, b])
    outs = [loss, W - 0.1 * gW, b - 0.1 * gb, sg.sum(sg.tanh(X), 1)]

    ref = sg.compile(outs, backend="numpy")
    rs = shim_for(outs)

    f = sg.compile(outs, backend="cuda")
    impl = f._impl
    dev = impl.device
    assert dev.kind == "gpu" and dev.name == "Fake GPU" and dev.arch == 90, (dev.kind, dev.name)
    assert impl.module_info == "cubin sm_90", impl.module_info
    values = {"X": rng.standard_normal((9, 12)).astype(np.float32), "y": rng.integers(0, 10, 9),
              "W": (rng.standard_normal((12, 10)) * 0.3).astype(np.float32),
              "b": rng.standard_normal(10).astype(np.float32)}
    want = ref(**values)

    def check(got, tag):
        for k, (g, w) in enumerate(zip(got, want)):
            g = g.get() if isinstance(g, DeviceArray) else g
            assert g.shape == w.shape and g.dtype == w.dtype, (tag, k, g.shape, w.shape)
            np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6, err_msg=f"{tag} {k}")

    check(f(**values), "numpy in")
    check(f(**values), "second call")                     # prepared launches reused
    small = {**values, "X": values["X"][:4], "y": values["y"][:4]}
    want_small = ref(**small)
    for g, w in zip(f(**small), want_small):              # new sizes: new launch plan
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)

    # device arrays in (ours and one seen through __cuda_array_interface__), device arrays out
    class Foreign:  # the parts of a CuPy array that matter here
        def __init__(self, a):
            self.a, self.shape, self.ndim, self.dtype = a, a.shape, a.ndim, a.dtype
            self.__cuda_array_interface__ = {"shape": a.shape, "typestr": a.dtype.str,
                                             "data": (a.ptr, False), "version": 3, "strides": None,
                                             "stream": None}
    dev_in = [dev.to_device(values[k]) for k in f.inputs]
    mixed = [dev_in[0], Foreign(dev_in[1]), values["W"], dev_in[3]]
    got = f(*mixed)                                       # through sg.compile's checks
    assert all(isinstance(g, DeviceArray) for g in got)
    check(got, "device in")
    cai = got[1].__cuda_array_interface__
    assert cai["shape"] == (12, 10) and cai["typestr"] == "<f4" and cai["data"][0] == got[1].ptr

    # the error word: an out-of-range label is reported, the next good call works
    try:
        f(**{**values, "y": np.full(9, 10)})
        raise AssertionError("no error for label 10")
    except sg.errors.InputError as e:
        assert "out of range" in str(e), e
    check(f(**values), "after error")

    t = dev.timer(); t.start(); f(**values); assert t.stop() >= 0.0
    n = ctypes.CDLL("libcuda.so.1").sgfake_launches()
    assert n >= 4 * len(rs.launches), n
    fake_blas = ctypes.CDLL(os.environ["SYMGRAD_CUBLAS_LIBRARY"])
    gemms = fake_blas.sgfake_gemms()
    assert impl.blas_info.startswith("cuBLAS") and gemms >= 5, (impl.blas_info, gemms)

    # matrix products of every layout: batched, broadcast, transposed, strided, reversed
    a = sg.placeholder("a", (None, 3, 4), "float64")
    bb = sg.placeholder("bb", (4, 5), "float64")
    c = sg.placeholder("c", (None, 4, 2), "float64")
    m = a[0]
    outs2 = [m @ bb, a @ bb, a @ c, bb.T @ m.T, m.T.T @ bb[:, ::2], bb[1:3, :].T @ m[:, 1:3].T,
             a @ m.T, (bb.T @ m[:, :, None][..., 0].T) * 2, m[::-1] @ bb]
    ref2 = sg.compile(outs2, backend="numpy")
    shim_for(outs2)
    f2 = sg.compile(outs2, backend="cuda")
    vals2 = {"a": rng.standard_normal((2, 3, 4)), "bb": rng.standard_normal((4, 5)),
             "c": rng.standard_normal((2, 4, 2))}
    for k, (g, w) in enumerate(zip(f2(**vals2), ref2(**vals2))):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12, err_msg=f"matmul {k}")
    before, gemms = gemms, fake_blas.sgfake_gemms()
    assert gemms - before >= 6, (gemms, before, f2._impl.blas_info)
    print("OK", n, gemms, f2._impl.blas_info)
""")


def test_gpu_runtime_against_a_stand_in_driver(tmp_path: Path) -> None:
    if not nvrtc.nvrtc_available():
        pytest.skip("NVRTC is not installed (pip install 'symgrad[cuda]')")
    cc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler to build the stand-in driver")
    (tmp_path / "fake.c").write_text(FAKE_DRIVER)
    lib = tmp_path / "libcuda.so.1"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(tmp_path / "fake.c"), "-ldl"],
                   check=True, capture_output=True, text=True)
    (tmp_path / "fake_cublas.c").write_text(FAKE_CUBLAS)
    cublas = tmp_path / "libfakecublas.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(cublas), str(tmp_path / "fake_cublas.c")],
                   check=True, capture_output=True, text=True)
    env = {**os.environ,
           "LD_LIBRARY_PATH": f"{tmp_path}:{os.environ.get('LD_LIBRARY_PATH', '')}",
           "SYMGRAD_CUBLAS_LIBRARY": str(cublas),
           "SYMGRAD_CUDA_DEVICE": "gpu",
           "SYMGRAD_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK"), proc.stdout + proc.stderr
