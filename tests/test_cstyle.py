"""The C-style renderer: C99 and CUDA source from the lowered form, checked by running it.

C sources are built with the system C compiler and called through the ABI (ctypes);
CUDA sources are built with g++ through the CUDA host shim (threads and blocks emulated)
and compared with the NumPy backend on the same optimized graph.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg
from symgrad.backends.cstyle import render_program
from symgrad.backends.cstyle.names import Mangler, c_string, comment_text, identifier, public_name
from symgrad.backends.cstyle.run import ABIError, CLibrary, find_cc
from symgrad.backends.lower.kernel import (
    Access,
    Buffer,
    BufferPlan,
    LibCall,
    LoweredProgram,
    contiguous_strides,
)
from symgrad.emit import lower_outputs
from symgrad.errors import UnsupportedError
from symgrad.ops.base import OPS

SHIM = Path(sg.__file__).parent / "backends" / "cuda" / "shim.h"
SHIM_FLAGS = ("-O0",)  # small shapes: compiling is what costs here
needs_cc = pytest.mark.skipif(find_cc() is None, reason="no C compiler on this machine")
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None or not SHIM.exists(),
                               reason="the CUDA host shim needs g++ and backends/cuda/shim.h")


def _build(outs, ins, tmp_path, dialect="c", name="k"):
    lp, fn = lower_outputs(outs, ins)
    src = render_program(lp, dialect, name, input_names=[t.name for t in ins])
    if dialect == "c":
        lib = CLibrary.build(src, tmp_path / f"{name}_c")
    else:
        lib = CLibrary.build_cuda_host(src, tmp_path / f"{name}_cu", SHIM, flags=SHIM_FLAGS)
    return lib, fn, src


def _compare(got, want, rtol=2e-5, atol=1e-6):
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        assert g.shape == w.shape and g.dtype == w.dtype, (k, g.shape, w.shape, g.dtype, w.dtype)
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True, err_msg=f"output {k}")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"output {k}")


# -- names ----------------------------------------------------------------------------------------
def test_identifiers_are_deterministic_and_valid():
    assert identifier("dloss/dw") == "dloss_dw"
    assert identifier("a__b") == "a_b" and identifier("__x__") == "x"
    assert identifier("ünï") == "n" and identifier("***") == "v"
    assert public_name("3d model") == "m3d_model"
    assert public_name("int") == "int_fn" and public_name("_Hidden") == "Hidden"
    m = Mangler()
    assert [m.mangle(n) for n in ("a.b", "a_b", "a b", "c")] == ["a_b", "a_b_2", "a_b_3", "c"]


def test_comment_and_string_escaping():
    hostile = "x */ y /* z ??/ \\ \n w \u00e9"
    text = comment_text(hostile)
    assert "*/" not in text and "/*" not in text and "??" not in text and "\\" not in text
    assert "\n" not in text and all(" " <= ch <= "~" for ch in text)
    lit = c_string(hostile)
    assert lit.startswith('"') and lit.endswith('"') and '"' not in lit[1:-1].replace('\\"', "")
    assert "??" not in lit and "\n" not in lit


@needs_cc
def test_hostile_user_names_compile_and_round_trip(tmp_path):
    a = sg.placeholder("a */ #define x", shape=(None,))
    b = sg.placeholder("int\nb??/", shape=(None,))
    c = sg.placeholder("\u00fcber", shape=(3,))
    outs = [a * 2.0, sg.sum(b) + sg.sum(c)]
    lp, fn = lower_outputs(outs, [a, b, c])
    src = render_program(lp, "c", "my model!", input_names=[a.name, b.name, c.name],
                         output_names=["y */", "z\n"])
    assert src.name == "my_model"
    (tmp_path / "my_model.c").write_text(src.source)
    (tmp_path / "my_model.h").write_text(src.header)
    cc = find_cc()
    proc = subprocess.run([cc, "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-c",
                           str(tmp_path / "my_model.c"), "-o", str(tmp_path / "m.o")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lib = CLibrary.build(src, tmp_path)
    assert lib.inputs == [a.name, b.name, c.name]
    assert lib.outputs == ["y */", "z\n"]
    # the same header compiles as C++ too
    if shutil.which("g++"):
        cpp = tmp_path / "use.cpp"
        cpp.write_text('#include "my_model.h"\nint main() { return my_model_num_inputs() == 3 ? 0 : 1; }\n')
        proc = subprocess.run(["g++", "-Wall", "-Werror", "-I", str(tmp_path), "-c", str(cpp), "-o",
                               str(tmp_path / "use.o")], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


# -- scalar ops ------------------------------------------------------------------------------------
SPECIAL = np.array([0.0, -0.0, 0.5, -0.5, 1.5, -2.5, 2.5, 3.7, -3.7, 1e-8, 100.0, -100.0, 40.0, -40.0,
                    np.nan, np.inf, -np.inf], np.float64)


def _elementwise_graph(dtype):
    x = sg.placeholder("x", shape=(None,), dtype=dtype)
    y = sg.placeholder("y", shape=(None,), dtype=dtype)
    i = sg.placeholder("i", shape=(None,), dtype="int64")
    j = sg.placeholder("j", shape=(None,), dtype="int32")
    outs = [
        -x, sg.exp(x), sg.log(x), sg.log1p(x), sg.expm1(x), sg.sqrt(x), sg.abs(x), sg.sign(x),
        sg.sin(x), sg.cos(x), sg.tanh(x), sg.erf(x), sg.sigmoid(x), sg.softplus(x), sg.relu(x),
        sg.floor(x), sg.ceil(x), sg.round(x), x + y, x - y, x * y, x / y, x ** y,
        sg.maximum(x, y), sg.minimum(x, y), sg.where(x < y, x, y), x <= y, x > y, x >= y,
        sg.equal(x, y), sg.not_equal(x, y), sg.logical_and(x < y, y > 0.0),
        sg.logical_or(x < y, y > 0.0), sg.logical_not(x < y),
        sg.cast(sg.clip(x, -1000.0, 1000.0) * 0.0 + 3.0, "int32"), sg.cast(i, dtype), sg.cast(x, "bool"),
        i + i * 3037000499, i - 7, -i, sg.abs(i - 1), sg.sign(i - 1), sg.maximum(i, 1), sg.minimum(i, 1),
        i ** 3, sg.cast(j, "int64") * i, j * j, i < 1, sg.where(i > 0, i, -i),
    ]
    ins = [x, y, i, j]
    rng = np.random.default_rng(0)
    n = 64
    xv = np.concatenate([SPECIAL, rng.standard_normal(n - len(SPECIAL)) * 3]).astype(dtype)
    yv = np.concatenate([SPECIAL[::-1], rng.standard_normal(n - len(SPECIAL)) * 3]).astype(dtype)
    iv = rng.integers(-5, 6, n).astype(np.int64)
    iv[:2] = [2**62, -(2**62)]
    jv = rng.integers(-1000, 1000, n).astype(np.int32)
    return outs, ins, [xv, yv, iv, jv]


@needs_cc
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_elementwise_ops_match_numpy_in_c(dtype, tmp_path):
    outs, ins, vals = _elementwise_graph(dtype)
    lib, fn, _ = _build(outs, ins, tmp_path, "c")
    with np.errstate(all="ignore"):
        want = fn(*vals)
    rtol = 2e-6 if dtype == "float32" else 1e-12
    _compare(lib.call(vals), want, rtol=rtol, atol=rtol)


@needs_gxx
def test_elementwise_ops_match_numpy_in_cuda_through_the_shim(tmp_path):
    outs, ins, vals = _elementwise_graph("float32")
    lib, fn, src = _build(outs, ins, tmp_path, "cuda")
    assert "__global__" in src.source and src.launches
    with np.errstate(all="ignore"):
        want = fn(*vals)
    _compare(lib.call(vals), want, rtol=2e-6, atol=2e-6)


# -- reductions --------------------------------------------------------------------------------------
def _reduction_graph():
    a = sg.placeholder("a", shape=("n", 100))
    b = sg.placeholder("b", shape=(None,))
    c = sg.placeholder("c", shape=("m", 5))
    outs = [
        sg.sum(a, axis=1), sg.max(a, axis=1), sg.min(a, axis=0), sg.argmax(a, axis=1),
        sg.argmin(a, axis=0), sg.sum(a, axis=0), sg.prod(c, axis=1), sg.logsumexp(a, axis=1),
        sg.softmax(c, axis=-1), sg.log_softmax(a, axis=0), sg.sum(b), sg.max(b), sg.argmax(b),
        sg.sum(sg.exp(b) * 2.0), sg.mean(a), sg.max(c, axis=0), sg.argmax(c, axis=1),
    ]
    rng = np.random.default_rng(1)
    av = rng.standard_normal((6, 100)).astype(np.float32)
    av[2, 7] = np.nan
    av[3, :] = 1.0  # ties: the first index wins
    bv = rng.standard_normal(5000).astype(np.float32)
    bv[4321] = 9.0
    cv = (rng.standard_normal((7, 5)) * 0.5 + 1).astype(np.float32)
    return outs, [a, b, c], [av, bv, cv]


@needs_cc
def test_reductions_match_numpy_in_c(tmp_path):
    outs, ins, vals = _reduction_graph()
    lib, fn, _ = _build(outs, ins, tmp_path, "c")
    _compare(lib.call(vals), fn(*vals), rtol=2e-5, atol=2e-6)


@needs_gxx
def test_reductions_match_numpy_in_cuda_through_the_shim(tmp_path):
    outs, ins, vals = _reduction_graph()
    lib, fn, src = _build(outs, ins, tmp_path, "cuda")
    kinds = {ln.kernel.rsplit("_", 1)[-1] for ln in src.launches}
    assert {"part", "final"} <= kinds  # the 5000-element reductions run in two stages
    assert any(ln.uses_sync and ln.kernel.endswith(tuple("0123456789")) for ln in src.launches)
    _compare(lib.call(vals), fn(*vals), rtol=2e-5, atol=2e-6)


# -- library calls --------------------------------------------------------------------------------
def _library_graph(dtype="float32"):
    A = sg.placeholder("A", shape=(2, "m", 5), dtype=dtype)
    B = sg.placeholder("B", shape=(5, 3), dtype=dtype)
    C = sg.placeholder("C", shape=(3, "m"), dtype=dtype)
    idx = sg.placeholder("idx", shape=(4,), dtype="int64")
    lab = sg.placeholder("lab", shape=("m",), dtype="int64")
    ints = sg.placeholder("ints", shape=(3, 4), dtype="int32")
    outs = [
        A @ B, sg.transpose(A, (0, 2, 1)) @ sg.transpose(A, (0, 1, 2))[:, :, :4],
        sg.matmul(sg.transpose(C), sg.transpose(B)), sg.take(B, idx, axis=0), sg.take(C, idx[:2], axis=1),
        sg.one_hot(lab, 4), sg.concatenate([B, B * 2.0], axis=1), B[1:4:2, ::-1],
        sg.grad(sg.sum(sg.take(B, idx, axis=0) ** 2), B), ints @ sg.transpose(ints),
    ]
    rng = np.random.default_rng(2)
    m = 6
    vals = [rng.standard_normal((2, m, 5)).astype(dtype), rng.standard_normal((5, 3)).astype(dtype),
            rng.standard_normal((3, m)).astype(dtype), np.array([4, -1, 0, 4]), np.array([0, 3, 1, 2, 3, 0]),
            rng.integers(-9, 9, (3, 4)).astype(np.int32)]
    return outs, [A, B, C, idx, lab, ints], vals


@needs_cc
def test_library_calls_match_numpy_in_c(tmp_path):
    outs, ins, vals = _library_graph()
    lib, fn, _ = _build(outs, ins, tmp_path, "c")
    _compare(lib.call(vals), fn(*vals), rtol=2e-5, atol=2e-6)


@needs_gxx
def test_library_calls_match_numpy_in_cuda_through_the_shim(tmp_path):
    outs, ins, vals = _library_graph()
    lib, fn, src = _build(outs, ins, tmp_path, "cuda")
    assert any(ln.block == (16, 16, 1) for ln in src.launches)  # the tiled matrix product
    _compare(lib.call(vals), fn(*vals), rtol=2e-5, atol=2e-6)


def _lib_program(op, shapes, attrs, out_shape, dtype="float32"):
    ins = [Buffer(f"a{k}", dtype, s, "input", k) for k, s in enumerate(shapes)]
    out = Buffer("out0", dtype, out_shape, "output", 0)
    call = LibCall(f"{op}_0", op, [Access(b, 0, contiguous_strides(b.shape)) for b in ins],
                   list(shapes), out, dict(attrs))
    return LoweredProgram(ins, [out], [], [], [call], [], {}, BufferPlan([]))


def _conv_cases():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    conv = {"stride": (2, 1), "padding": (1, 1), "dilation": (1, 2)}
    g = rng.standard_normal(OPS["conv2d"].reference(x, w, **conv).shape).astype(np.float32)
    pool = {"kernel": (3, 2), "stride": (2, 2), "padding": (1, 1)}
    xp = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    xp[0, 0, 1, 1] = np.nan
    xp[1, 2, :2, :2] = -np.inf
    xp[1, 1, 2:4, 2:4] = 0.5  # ties
    gp = rng.standard_normal(OPS["max_pool2d"].reference(xp, **pool).shape).astype(np.float32)
    return [
        ("conv2d", [x, w], conv),
        ("conv2d_grad_input", [g, w], {**conv, "in_hw": (7, 6)}),
        ("conv2d_grad_weight", [x, g], {**conv, "w_shape": (4, 3, 3, 2)}),
        ("max_pool2d", [xp], pool),
        ("max_pool2d_grad", [xp, gp], pool),
        ("max_pool2d_gather", [xp, x], pool),
        ("avg_pool2d", [xp], pool),
        ("avg_pool2d_grad", [gp], {**pool, "in_hw": (7, 6)}),
    ]


def _conv_bundle_program():
    """Every convolution/pooling op as one lowered program (hand-built library calls)."""
    bufs: list[Buffer] = []
    kernels = []
    outs = []
    vals = []
    wants = []
    for op, args, attrs in _conv_cases():
        ins = []
        for a in args:
            b = Buffer(f"a{len(bufs)}", "float32", a.shape, "input", len(bufs))
            bufs.append(b)
            ins.append(b)
            vals.append(a)
        want = OPS[op].reference(*args, **attrs)
        out = Buffer(f"out{len(outs)}", "float32", want.shape, "output", len(outs))
        outs.append(out)
        wants.append(want)
        kernels.append(LibCall(f"{op}_{len(kernels)}", op,
                               [Access(b, 0, contiguous_strides(b.shape)) for b in ins],
                               [b.shape for b in ins], out, dict(attrs)))
    return LoweredProgram(bufs, outs, [], [], kernels, [], {}, BufferPlan([])), vals, wants


@needs_cc
def test_convolution_and_pooling_calls_in_c(tmp_path):
    lp, vals, wants = _conv_bundle_program()
    lib = CLibrary.build(render_program(lp, "c", "conv"), tmp_path)
    _compare(lib.call(vals), wants, rtol=1e-5, atol=1e-5)


@needs_gxx
def test_convolution_and_pooling_calls_in_cuda_through_the_shim(tmp_path):
    lp, vals, wants = _conv_bundle_program()
    lib = CLibrary.build_cuda_host(render_program(lp, "cuda", "conv"), tmp_path, SHIM, flags=SHIM_FLAGS)
    _compare(lib.call(vals), wants, rtol=1e-5, atol=1e-5)


# -- BLAS behind a flag ----------------------------------------------------------------------------
CBLAS_STUB_H = """#pragma once
enum CBLAS_ORDER { CblasRowMajor = 101, CblasColMajor = 102 };
enum CBLAS_TRANSPOSE { CblasNoTrans = 111, CblasTrans = 112 };
void cblas_sgemm(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, int, int, int, float,
                 const float*, int, const float*, int, float, float*, int);
void cblas_dgemm(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, int, int, int, double,
                 const double*, int, const double*, int, double, double*, int);
extern int stub_calls;
"""
CBLAS_STUB_C = """#include "cblas.h"
int stub_calls = 0;
#define GEMM(NAME, T) \\
void NAME(enum CBLAS_ORDER o, enum CBLAS_TRANSPOSE ta, enum CBLAS_TRANSPOSE tb, int m, int n, int k, T alpha, \\
          const T* a, int lda, const T* b, int ldb, T beta, T* c, int ldc) { \\
  ++stub_calls; \\
  for (int i = 0; i < m; ++i) for (int j = 0; j < n; ++j) { \\
    T s = 0; \\
    for (int l = 0; l < k; ++l) { \\
      T x = o == CblasRowMajor ? (ta == CblasNoTrans ? a[i * lda + l] : a[l * lda + i]) \\
                               : (ta == CblasNoTrans ? a[i + l * lda] : a[l + i * lda]); \\
      T y = o == CblasRowMajor ? (tb == CblasNoTrans ? b[l * ldb + j] : b[j * ldb + l]) \\
                               : (tb == CblasNoTrans ? b[l + j * ldb] : b[j + l * ldb]); \\
      s += x * y; \\
    } \\
    T* dst = o == CblasRowMajor ? &c[i * ldc + j] : &c[i + j * ldc]; \\
    *dst = alpha * s + (beta == 0 ? 0 : beta * *dst); \\
  } \\
}
GEMM(cblas_sgemm, float)
GEMM(cblas_dgemm, double)
"""


@needs_cc
def test_matrix_products_through_cblas_behind_the_flag(tmp_path):
    A = sg.placeholder("A", shape=("m", 5))
    B = sg.placeholder("B", shape=(4, 5))
    outs = [A @ sg.transpose(B), sg.transpose(A) @ A]
    lp, fn = lower_outputs(outs, [A, B])
    src = render_program(lp, "c", "g")
    (tmp_path / "cblas.h").write_text(CBLAS_STUB_H)
    (tmp_path / "cblas.c").write_text(CBLAS_STUB_C)
    (tmp_path / "g.c").write_text(src.source)
    (tmp_path / "g.h").write_text(src.header)
    lib_path = tmp_path / "libg.so"
    proc = subprocess.run([find_cc(), "-std=c99", "-O1", "-shared", "-fPIC", "-Dg_USE_CBLAS", "-I",
                           str(tmp_path), "-o", str(lib_path), str(tmp_path / "g.c"),
                           str(tmp_path / "cblas.c"), "-lm"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lib = CLibrary(lib_path, "g")
    rng = np.random.default_rng(4)
    vals = [rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal((4, 5)).astype(np.float32)]
    _compare(lib.call(vals), fn(*vals), rtol=1e-5, atol=1e-6)
    assert ctypes.c_int.in_dll(lib.lib, "stub_calls").value == 2


# -- the ABI's error paths ---------------------------------------------------------------------------
@needs_cc
def test_bad_dims_return_the_documented_codes_and_write_nothing(tmp_path):
    x = sg.placeholder("x", shape=("n",))
    y = sg.placeholder("y", shape=("k",))
    lib, fn, src = _build([x + y, sg.max(x)], [x, y], tmp_path, "c")
    assert "k_ERR_DIM_MISMATCH 4" in src.header
    xs, ys = np.ones(3, np.float32), np.ones(3, np.float32)
    outs = [np.full(3, 7.0, np.float32), np.full((), 7.0, np.float32)]
    cases = [([3, 4], 4), ([-1, 3], 2), ([2**62, 2**62], 3), ([0, 0], 4)]  # max over nothing
    for dims, code in cases:
        with pytest.raises(ABIError) as err:
            lib.call([xs, ys], dims=np.array(dims), outputs=outs)
        assert err.value.code == code, dims
        assert (outs[0] == 7.0).all() and outs[1] == 7.0
    # the entry point itself refuses too, before writing (workspace not needed here)
    entry = lib.fn("")
    ptrs_in = (ctypes.c_void_p * 2)(xs.ctypes.data, ys.ctypes.data)
    ptrs_out = (ctypes.c_void_p * 2)(outs[0].ctypes.data, outs[1].ctypes.data)
    dims = np.array([3, 4], np.int64)
    assert entry(ptrs_in, ptrs_out, dims.ctypes.data, None) == 4
    assert entry(ptrs_in, ptrs_out, None, None) == 1
    assert entry(None, ptrs_out, np.array([3, 3], np.int64).ctypes.data, None) == 1
    assert (outs[0] == 7.0).all()
    got = lib.call([np.arange(3, dtype=np.float32), ys])
    _compare(got, fn(np.arange(3, dtype=np.float32), ys))


@needs_cc
def test_index_errors_are_reported_before_writing(tmp_path):
    x = sg.placeholder("x", shape=(5, 2))
    idx = sg.placeholder("idx", shape=(None,), dtype="int64")
    lib, fn, _ = _build([sg.take(x, idx, axis=0) * 2.0], [x, idx], tmp_path, "c")
    xv = np.arange(10, dtype=np.float32).reshape(5, 2)
    out = np.full((3, 2), 7.0, np.float32)
    for bad in ([0, 5, 1], [-6, 0, 0]):
        with pytest.raises(ABIError) as err:
            lib.call([xv, np.array(bad)], outputs=[out])
        assert err.value.code == 5 and (out == 7.0).all()
    _compare(lib.call([xv, np.array([4, -5, 2])]), fn(xv, np.array([4, -5, 2])))


def test_unsupported_library_call_is_listed():
    lp = _lib_program("fft", [(4,)], {}, (4,))
    with pytest.raises(UnsupportedError, match="fft"):
        render_program(lp, "c", "x")


def test_rendering_is_deterministic():
    outs, ins, _ = _library_graph()
    texts = []
    for _ in range(2):
        lp, _fn = lower_outputs(outs, ins)
        for dialect in ("c", "cuda"):
            src = render_program(lp, dialect, "det", input_names=[t.name for t in ins])
            texts.append(src.source + src.header)
    assert texts[0] == texts[2] and texts[1] == texts[3]


# -- CUDA compilers ----------------------------------------------------------------------------------
def _nvrtc():
    try:
        from symgrad.backends.cuda import nvrtc
    except ImportError:
        return None
    return nvrtc if nvrtc.nvrtc_available() else None


@pytest.mark.skipif(_nvrtc() is None, reason="NVRTC (extra 'cuda') is not installed")
def test_device_source_compiles_with_nvrtc():
    nvrtc = _nvrtc()
    for outs, ins, _ in (_reduction_graph(), _library_graph()):
        lp, _fn = lower_outputs(outs, ins)
        src = render_program(lp, "cuda", "dev")
        assert "#include" not in src.device_source
        ptx = nvrtc.compile_ptx(src.device_source, 80)
        for ln in src.launches:
            assert ln.kernel in ptx.ptx


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc (CUDA toolkit) is not installed")
def test_whole_cuda_file_compiles_with_nvcc(tmp_path):
    outs, ins, _ = _library_graph()
    lp, _fn = lower_outputs(outs, ins)
    src = render_program(lp, "cuda", "whole")
    (tmp_path / "whole.cu").write_text(src.source)
    (tmp_path / "whole.h").write_text(src.header)
    proc = subprocess.run(["nvcc", "-arch=sm_80", "-c", str(tmp_path / "whole.cu"), "-o",
                           str(tmp_path / "whole.o")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
