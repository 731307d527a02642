"""The CUDA backend without a GPU, and with one when the machine has it.

The graphs are the LLVM backend's conformance graphs (elementwise ops with edge values,
broadcasting, integers and casts, reductions incl. softmax/logsumexp/argmax, shape ops
and slices, take/one_hot, matrix products, dynamic batch sizes, the W1 value+gradient,
an MLP's loss and gradients, gradients of shape ops, a two-stage float32 sum, an SGD step).
For each graph the CUDA source is rendered once, then:

* (a) each source compiles with NVRTC to a cubin for sm_80 and for sm_90 (with the PTX
  of each on the way, and once to PTX alone, the driver's JIT fallback), and every kernel
  the renderer listed is in the PTX;
* (b) each source, unchanged, is built by g++ through shim.h and run by the same runtime
  that drives a GPU, and its outputs are compared with the NumPy backend;
* tests marked ``gpu`` run the same cases on a real device (skipped without one).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import symgrad as sg
from symgrad.backends.base import BACKENDS, Program, register_backend
from symgrad.backends.cuda import CudaUnavailableError, hostshim, nvrtc
from symgrad.backends.cuda import backend as cuda_backend
from symgrad.backends.cuda.runtime import CudaFunction
from symgrad.errors import UnsupportedError

EDGE32 = np.array([0.0, -0.0, 1e-38, -1e-45, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 20.0, -20.0,
                   88.0, -88.0, 89.0, -104.0, 1e30, -1e30, np.inf, -np.inf, np.nan], np.float32)
EDGE64 = np.array([0.0, -0.0, 1e-308, -5e-324, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 20.0, -20.0,
                   709.0, -709.0, 710.0, -745.0, 1e300, -1e300, np.inf, -np.inf, np.nan])

Case = tuple[list[Any], dict[str, Any], dict[str, float]]


# -- the graphs ------------------------------------------------------------------------------
def _edge(dtype: str, rng: np.random.Generator) -> np.ndarray:
    edge = EDGE32 if dtype == "float32" else EDGE64
    return np.concatenate([edge, rng.standard_normal(43).astype(dtype) * 4]).astype(dtype)


def unary(dtype: str) -> Callable[[np.random.Generator], Case]:
    def build(rng: np.random.Generator) -> Case:
        x = sg.placeholder("x", (None,), dtype)
        outs = [sg.exp(x), sg.log(x), sg.log1p(x), sg.expm1(x), sg.sqrt(x), sg.abs(x),
                sg.sign(x), sg.sin(x), sg.cos(x), sg.tanh(x), sg.erf(x), sg.sigmoid(x),
                sg.softplus(x), sg.relu(x), sg.floor(x), sg.ceil(x), sg.round(x), -x,
                sg.square(x), sg.reciprocal(x), x ** 3.0, sg.clip(x, -1.0, 2.0)]
        return outs, {"x": _edge(dtype, rng)}, {}
    return build


def binary(dtype: str) -> Callable[[np.random.Generator], Case]:
    def build(rng: np.random.Generator) -> Case:
        a = sg.placeholder("a", (None, 1), dtype)
        b = sg.placeholder("b", (1, 5), dtype)
        c = sg.placeholder("c", (5,), dtype)
        outs = [a + b, a - b, a * b, a / b, sg.maximum(a, b), sg.minimum(a, c), sg.abs(a) ** b,
                a < b, a <= b, a > c, a >= c, sg.equal(a, b), sg.not_equal(a, b),
                sg.where(a > b, a, c), sg.logical_and(a > 0, b > 0), sg.logical_or(a > 0, b > 0),
                sg.logical_not(a > c), a * 2.0 + 1.0, 3.0 - c, 1.0 / (a * a + 1.0)]
        av = rng.standard_normal((4, 1)).astype(dtype)
        av[0, 0], av[1, 0] = np.nan, 0.0
        bv = rng.standard_normal((1, 5)).astype(dtype)
        bv[0, 0], bv[0, 1] = 0.0, -np.inf
        return outs, {"a": av, "b": bv, "c": rng.standard_normal(5).astype(dtype)}, {}
    return build


def integers(dtype: str) -> Callable[[np.random.Generator], Case]:
    def build(rng: np.random.Generator) -> Case:
        i = sg.placeholder("i", (3, 4), dtype)
        j = sg.placeholder("j", (4,), dtype)
        p = sg.placeholder("p", (3, 4), "bool")
        outs = [i + j, i - j, i * j, -i, sg.abs(i), sg.sign(i), sg.maximum(i, j),
                sg.minimum(i, j), sg.relu(i), i < j, sg.equal(i, j), sg.where(p, i, j),
                p * sg.logical_not(p), sg.power(i, sg.abs(j)), i / j, sg.exp(i), i + 1, i * 2.5,
                sg.logical_or(p, i > 0)]
        return outs, {"i": rng.integers(-5, 6, (3, 4)).astype(dtype),
                      "j": np.array([1, -2, 3, 0], dtype), "p": rng.random((3, 4)) < 0.5}, {}
    return build


def casts(rng: np.random.Generator) -> Case:
    dtypes = ["float32", "float64", "int32", "int64", "bool"]
    values = {
        "float32": np.array([0.0, -0.0, 1.5, -2.7, 3e9, 7.0, 1.0], np.float32),
        "float64": np.array([0.0, -1.5, 2.5, 1e10, -3.9, 0.25, 1.0]),
        "int32": np.array([0, 1, -1, 2**31 - 1, -(2**31), 7, 3], np.int32),
        "int64": np.array([0, 1, -1, 2**40, -(2**35), 7, 3], np.int64),
        "bool": np.array([True, False, True, True, False, False, True]),
    }
    ins = {d: sg.placeholder(f"v_{d}", (7,), d) for d in dtypes}
    outs = [sg.cast(ins[s], d) for s in dtypes for d in dtypes
            if s != d and not (s in ("float32", "float64") and d in ("int32", "int64"))]
    return outs, {f"v_{d}": v for d, v in values.items()}, {}


def reductions(dtype: str) -> Callable[[np.random.Generator], Case]:
    def build(rng: np.random.Generator) -> Case:
        x = sg.placeholder("x", (None, 4, 5), dtype)
        outs = []
        # everything, the first axis, the last, the last two, two apart: every schedule
        for axis in (None, 0, 2, (1, 2), (0, 2)):
            outs += [sg.sum(x, axis), sg.max(x, axis, keepdims=True), sg.mean(x, axis),
                     sg.prod(x * 0.5, axis), sg.logsumexp(x, axis)]
        outs += [sg.min(x, 1), sg.argmax(x, 0), sg.argmin(x, 2, keepdims=True), sg.argmax(x),
                 sg.var(x, 1), sg.std(x, (0, 1), ddof=1), sg.softmax(x, 1),
                 sg.log_softmax(x, -1), sg.softmax(x, 0)]
        xv = rng.standard_normal((3, 4, 5)).astype(dtype)
        xv[1, 2, 3] = xv[1, 2, 0]  # a tie for argmax/argmin
        return outs, {"x": xv}, {"rtol": 1e-5 if dtype == "float32" else 1e-11}
    return build


def reductions_nonfinite(rng: np.random.Generator) -> Case:
    x = sg.placeholder("x", (None, 4, 5), "float32")
    xv = rng.standard_normal((3, 4, 5)).astype(np.float32)
    xv[0, 1, 1] = np.nan
    xv[2, 0, :] = np.inf
    return [sg.max(x, 2), sg.min(x, 1), sg.argmax(x, 2), sg.sum(x, 0), sg.logsumexp(x, -1)], \
        {"x": xv}, {}


def int_reductions(rng: np.random.Generator) -> Case:
    i = sg.placeholder("i", (None, 6), "int32")
    p = sg.placeholder("p", (None, 6), "bool")
    outs = [sg.sum(i), sg.sum(i, 0), sg.max(i, 1), sg.min(i, 0), sg.prod(i, 1), sg.argmax(i, 1),
            sg.sum(p, 1), sg.max(p, 0), sg.min(p, 1), sg.mean(i, 0)]
    return outs, {"i": rng.integers(-4, 5, (5, 6)).astype(np.int32),
                  "p": rng.random((5, 6)) < 0.5}, {}


def long_sum(rng: np.random.Generator) -> Case:
    x = sg.placeholder("x", (None,), "float32")
    return [sg.sum(x), sg.max(x), sg.argmin(x)], {"x": rng.random(20_011).astype(np.float32)}, \
        {"rtol": 1e-6}


def shape_ops(rng: np.random.Generator) -> Case:
    x = sg.placeholder("x", (4, None, 6), "float32")
    y = sg.placeholder("y", (6,), "float32")
    outs = [sg.transpose(x), x.T + 1.0, sg.reshape(x, (4, -1)), sg.reshape(x.T, (-1,)),
            sg.broadcast_to(y, (2, 3, 6)), sg.expand_dims(y, 0) * x, sg.squeeze(x[:, :1, :], 1),
            x[1:3, :, ::2], x[::-1, :, 1], x[2], x[..., None, 3], sg.moveaxis(x, 0, 2) * 2.0,
            sg.concatenate([x, x * 2.0], 1), sg.stack([y, y + 1.0, y * y], 1),
            sg.concatenate([x[:, :, :2], x[:, :, 4:]], 2), sg.flatten(x, 1)[:, ::5],
            sg.swapaxes(x, 1, 2)[:, ::-2], x[3:, 0]]
    return outs, {"x": rng.standard_normal((4, 3, 6)).astype(np.float32),
                  "y": rng.standard_normal(6).astype(np.float32)}, {}


def take_one_hot(rng: np.random.Generator) -> Case:
    x = sg.placeholder("x", (5, None), "float64")
    idx = sg.placeholder("idx", (None,), "int64")
    lab = sg.placeholder("lab", (2, 3), "int32")
    outs = [sg.take(x, idx, 0), sg.take(x, idx[:2], 1), x[idx], sg.one_hot(lab, 4),
            sg.one_hot(lab, 4, "int64"), sg.take(x, lab.astype("int64"), 0)]
    return outs, {"x": rng.standard_normal((5, 4)), "idx": np.array([0, -1, 3, 3, 2]),
                  "lab": np.array([[0, 1, 3], [2, 2, 0]], np.int32)}, {}


def matmuls(dtype: str) -> Callable[[np.random.Generator], Case]:
    def build(rng: np.random.Generator) -> Case:
        a = sg.placeholder("a", (None, 3, 4), dtype)
        b = sg.placeholder("b", (4, 5), dtype)
        v = sg.placeholder("v", (4,), dtype)
        c = sg.placeholder("c", (None, 4, 2), dtype)
        m = a[0]
        outs = [m @ b, a @ b, a @ c, m @ v, v @ b, v @ v, b.T @ m.T, m.T.T @ b[:, ::2],
                (b.T @ m[:, :, None][..., 0].T) * 2, sg.dot(m, b), a @ m.T, b[1:3, :].T @ m[:, 1:3].T]

        def data(shape: tuple[int, ...]) -> np.ndarray:
            if dtype == "int64":
                return rng.integers(-3, 4, shape)
            return rng.standard_normal(shape).astype(dtype)

        tol = {"rtol": 2e-5, "atol": 2e-5} if dtype == "float32" else {}
        return outs, {"a": data((2, 3, 4)), "b": data((4, 5)), "v": data((4,)),
                      "c": data((2, 4, 2))}, tol
    return build


def big_matmul(rng: np.random.Generator) -> Case:
    a = sg.placeholder("a", (None, 37), "float32")
    b = sg.placeholder("b", (37, 45), "float32")
    return [a @ b, sg.relu(a @ b) @ b.T], {"a": rng.standard_normal((33, 37)).astype(np.float32),
                                          "b": rng.standard_normal((37, 45)).astype(np.float32)}, \
        {"rtol": 1e-4, "atol": 1e-4}


def dynamic_batch(rng: np.random.Generator) -> Case:
    x = sg.placeholder("x", (None, 3), "float32")
    w = sg.placeholder("w", (3,), "float32")
    loss = sg.mean((sg.tanh(x @ w + 1.0) - 2.0) ** 2)
    return [loss, sg.grad(loss, w), sg.grad(loss, x)], {
        "x": rng.standard_normal((7, 3)).astype(np.float32),
        "w": rng.standard_normal(3).astype(np.float32)}, {"rtol": 1e-5, "atol": 1e-6}


def w1(rng: np.random.Generator) -> Case:
    x = sg.placeholder("x", (None,), "float32")
    f = sg.sum(sg.softplus(x) * sg.tanh(x) + sg.sigmoid(x) ** 2)
    return [f, sg.grad(f, x)], {"x": rng.standard_normal(5_000).astype(np.float32) * 3}, \
        {"rtol": 1e-5, "atol": 1e-4}


def mlp(rng: np.random.Generator) -> Case:
    X = sg.placeholder("X", (None, 20), "float32")
    y = sg.placeholder("y", (None,), "int64")
    W1 = sg.placeholder("W1", (20, 16), "float32")
    b1 = sg.placeholder("b1", (16,), "float32")
    W2 = sg.placeholder("W2", (16, 10), "float32")
    b2 = sg.placeholder("b2", (10,), "float32")
    z = sg.relu(X @ W1 + b1) @ W2 + b2
    loss = sg.nn.cross_entropy(z, y)
    grads = sg.grad(loss, [W1, b1, W2, b2])
    step = [p - 0.1 * g for p, g in zip([W1, b1, W2, b2], grads)]  # one SGD step
    values = {"X": rng.standard_normal((32, 20)).astype(np.float32), "y": rng.integers(0, 10, 32),
              "W1": (rng.standard_normal((20, 16)) * 0.3).astype(np.float32),
              "b1": rng.standard_normal(16).astype(np.float32) * 0.1,
              "W2": (rng.standard_normal((16, 10)) * 0.3).astype(np.float32),
              "b2": np.zeros(10, np.float32)}
    return [loss, *grads, *step], values, {"rtol": 2e-5, "atol": 1e-6}


def shape_grads(rng: np.random.Generator) -> Case:
    x = sg.placeholder("x", (4, 6), "float64")
    idx = sg.placeholder("idx", (5,), "int64")
    y = sg.sum(sg.take(x, idx, 0) ** 2) + sg.sum(sg.concatenate([x[:, ::2], x.T[1:3].T], 1) * 3.0)
    y = y + sg.sum(sg.max(x, 1)) + sg.sum(sg.prod(x[:2], 0)) + sg.sum(sg.reshape(x, (3, 8))[1])
    return [y, sg.grad(y, x)], {"x": rng.standard_normal((4, 6)), "idx": np.array([0, 3, 3, -1, 1])}, {}


CASES: dict[str, Callable[[np.random.Generator], Case]] = {
    "unary_f32": unary("float32"), "unary_f64": unary("float64"),
    "binary_f32": binary("float32"), "binary_f64": binary("float64"),
    "int32": integers("int32"), "int64": integers("int64"), "casts": casts,
    "reduce_f32": reductions("float32"), "reduce_f64": reductions("float64"),
    "reduce_nonfinite": reductions_nonfinite, "reduce_int": int_reductions, "long_sum": long_sum,
    "shape_ops": shape_ops, "take_one_hot": take_one_hot,
    "matmul_f32": matmuls("float32"), "matmul_f64": matmuls("float64"), "matmul_i64": matmuls("int64"),
    "matmul_tiles": big_matmul, "dynamic_batch": dynamic_batch, "w1": w1, "mlp_step": mlp,
    "shape_grads": shape_grads,
}


# The renderer cannot handle these ops yet; reference cases using them are left out of the
# CUDA conformance below, and test_renderer_gaps_are_still_gaps fails once one is closed,
# so that the exclusion is dropped.
RENDERER_GAPS = {"random_uniform": "the C-style renderer has no counter-based random numbers"}


def reference_chunk(chunk: int) -> Callable[[np.random.Generator], Case]:
    """Every 8th case of test_ops_reference (the LLVM backend's conformance list), one
    dtype per case, in one program."""
    def build(rng: np.random.Generator) -> Case:
        sys.path.insert(0, str(Path(__file__).parent))
        import test_ops_reference as ref  # the NumPy-reference cases of every registered op

        rng = np.random.default_rng(chunk)
        outs: list[Any] = []
        values: dict[str, Any] = {}
        for k, c in enumerate(ref.CASES):
            if k % 8 != chunk:
                continue
            dtype = c.dtypes[k % len(c.dtypes)]
            phs = [sg.placeholder(f"c{k}_{name}", shape, spec or dtype)
                   for name, (shape, _, spec) in c.inputs.items()]
            vals = ref._values(c, dtype, rng)
            out = c.build(*phs)
            out = list(out) if isinstance(out, (list, tuple)) else [out]
            if any(n.op.name in RENDERER_GAPS for n in program_of(out).nodes):
                continue  # after autodiff: gradients may bring in arange
            values.update({f"c{k}_{name}": v for name, v in vals.items()})
            outs += out
        return outs, values, {"rtol": 2e-5, "atol": 2e-6, "rtol64": 1e-11, "atol64": 1e-13}
    return build


def conv_pool(rng: np.random.Generator) -> Case:
    x = sg.placeholder("x", (None, 3, 7, 6), "float64")
    w = sg.placeholder("w", (4, 3, 3, 2), "float64")
    outs = []
    for st, pad, dil in [((1, 1), (0, 0), (1, 1)), ((2, 1), (1, 1), (1, 2)), ((1, 2), (1, 0), (2, 1))]:
        y = sg.nn.conv2d(x, w, stride=st, padding=pad, dilation=dil)
        outs += [y, *sg.grad(sg.sum(y * y), [x, w])]
    for k, st, pad in [((2, 2), (2, 2), (0, 0)), ((3, 3), (1, 2), (1, 1)), ((2, 3), (1, 1), (1, 1))]:
        m = sg.nn.max_pool2d(x, k, st, pad)
        a = sg.nn.avg_pool2d(x, k, st, pad)
        outs += [m, a, *sg.grad(sg.sum(m * m) + sg.sum(a * a * a), [x])]
    xv = rng.standard_normal((2, 3, 7, 6))
    xv[0, 0, 0, :2] = 1.0  # a tie inside a pooling window
    return outs, {"x": xv, "w": rng.standard_normal((4, 3, 3, 2))}, {"rtol": 1e-10, "atol": 1e-10}


CASES.update({f"ref{k}": reference_chunk(k) for k in range(8)})
CASES["conv_pool"] = conv_pool


# -- rendering ----------------------------------------------------------------------------------
class _Rendering:
    """What the render-only backend returns: the program exactly as sg.compile built it."""

    source = ""

    def __init__(self, program: Program) -> None:
        self.program = program

    def __call__(self, *arrays: Any) -> tuple[Any, ...]:
        raise RuntimeError("this backend only captures the program")


class _RenderOnly:
    name = "cuda-test-capture"

    def build(self, program: Program) -> _Rendering:
        return _Rendering(program)


if "cuda-test-capture" not in BACKENDS:
    register_backend("cuda-test-capture", _RenderOnly)


def program_of(outs: list[Any]) -> Program:
    return sg.compile(outs, backend="cuda-test-capture")._impl.program  # type: ignore[no-any-return]


class Rendered:
    def __init__(self, key: str, outs: list[Any], values: dict[str, Any], tol: dict[str, float]) -> None:
        ref = sg.compile(outs, backend="numpy")
        self.key = key
        self.values = values
        self.tol = tol
        self.inputs = ref.inputs
        with np.errstate(all="ignore"):
            self.expected = ref(**values)
        self.lp, self.rendered = cuda_backend.render(program_of(outs), name=f"sg_{key}")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("symgrad-cuda-cache")
    old = os.environ.get("SYMGRAD_CACHE_DIR")
    os.environ["SYMGRAD_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("SYMGRAD_CACHE_DIR", None)
    else:
        os.environ["SYMGRAD_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def rendered(cache_dir: Path) -> dict[str, Rendered]:
    out = {}
    for key, build in CASES.items():
        outs, values, tol = build(np.random.default_rng(20240611))
        out[key] = Rendered(key, outs, values, tol)
    return out


def _compare(key: str, got: tuple[Any, ...], r: Rendered) -> None:
    assert len(got) == len(r.expected)
    for k, (g, want) in enumerate(zip(got, r.expected)):
        g = np.asarray(g)
        assert g.shape == want.shape and g.dtype == want.dtype, (
            f"{key} output {k}: {g.dtype}{g.shape}, NumPy gives {want.dtype}{want.shape}")
        if want.dtype.kind == "f":
            if want.dtype == np.float32:
                rt, at = r.tol.get("rtol", 1e-5), r.tol.get("atol", 1e-6)
            else:
                rt = r.tol.get("rtol64", r.tol.get("rtol", 1e-12))
                at = r.tol.get("atol64", r.tol.get("atol", 1e-12))
            np.testing.assert_allclose(g, want, rtol=rt, atol=at, equal_nan=True,
                                       err_msg=f"{key} output {k}")
        else:
            np.testing.assert_array_equal(g, want, err_msg=f"{key} output {k}")


# -- (a) NVRTC ----------------------------------------------------------------------------------
def _need_nvrtc() -> None:
    if not nvrtc.nvrtc_available():
        pytest.skip("NVRTC is not installed: pip install 'symgrad[cuda]' (nvidia-cuda-nvrtc)")


@pytest.fixture(scope="module")
def nvrtc_results(rendered: dict[str, Rendered]) -> dict[tuple[str, int], Any]:
    """Every case's source compiled to cubins for sm_80 and sm_90 (the sm_90 compile
    also gives its PTX); NVRTC releases the GIL, so two threads use two cores."""
    _need_nvrtc()
    jobs = [(key, arch) for key in rendered for arch in (80, 90)]

    def run(job: tuple[str, int]) -> Any:
        key, arch = job
        return nvrtc.compile_source(rendered[key].rendered.device_source, arch=arch,
                                    target="cubin", name=f"{key}.cu", cache=False)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(jobs, pool.map(run, jobs)))


@pytest.mark.parametrize("key", list(CASES))
def test_every_kernel_compiles_with_nvrtc(key: str, rendered: dict[str, Rendered],
                                          nvrtc_results: dict[tuple[str, int], Any]) -> None:
    r = rendered[key]
    assert r.rendered.kernels
    for arch in (80, 90):
        out = nvrtc_results[key, arch]
        assert out.data[:4] == b"\x7fELF" and out.target == "cubin"
        assert f".target sm_{arch}" in out.ptx
        for kernel in r.rendered.kernels:
            assert f".entry {kernel}(" in out.ptx, f"{key}: kernel {kernel} missing (sm_{arch})"


def test_ptx_for_the_jit_fallback(rendered: dict[str, Rendered]) -> None:
    _need_nvrtc()
    r = rendered["mlp_step"]
    out = nvrtc.compile_source(r.rendered.device_source, arch=80, target="ptx", cache=False)
    assert ".target sm_80" in out.ptx and out.data == out.ptx.encode()
    assert all(f".entry {k}(" in out.ptx for k in r.rendered.kernels)


# -- (b) the host shim --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shim_functions(rendered: dict[str, Rendered]) -> dict[str, CudaFunction]:
    device = hostshim.shim_device()
    with ThreadPoolExecutor(max_workers=2) as pool:
        libs = list(pool.map(lambda r: hostshim.build(r.rendered.device_source, name=r.key),
                             rendered.values()))
    assert len(libs) == len(rendered)
    return {key: CudaFunction(r.lp, r.rendered, device, outputs="host") for key, r in rendered.items()}


@pytest.mark.parametrize("key", list(CASES))
def test_shim_runs_the_same_source_like_numpy(key: str, rendered: dict[str, Rendered],
                                              shim_functions: dict[str, CudaFunction]) -> None:
    r = rendered[key]
    fn = shim_functions[key]
    got = fn(*[np.asarray(r.values[name]) for name in r.inputs])
    _compare(key, got, r)


def test_shim_through_sg_compile(monkeypatch: pytest.MonkeyPatch, cache_dir: Path,
                                 rng: np.random.Generator) -> None:
    monkeypatch.setenv("SYMGRAD_CUDA_DEVICE", "shim")
    x = sg.placeholder("x", (None, 3), "float32")
    w = sg.placeholder("w", (3,), "float32")
    loss = sg.mean((sg.tanh(x @ w + 1.0) - 2.0) ** 2)
    outs = [loss, sg.grad(loss, w)]
    f = sg.compile(outs, backend="cuda")
    ref = sg.compile(outs, backend="numpy")
    assert "__global__" in f.source and "symgrad_" in f.source
    wv = rng.standard_normal(3).astype(np.float32)
    for n in (5, 1, 40, 0):  # one compiled function for every batch size
        xv = rng.standard_normal((n, 3)).astype(np.float32)
        for got, want in zip(f(x=xv, w=wv), ref(x=xv, w=wv)):
            assert isinstance(got, np.ndarray) and got.dtype == want.dtype
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_outputs_on_the_device_through_sg_compile(monkeypatch: pytest.MonkeyPatch,
                                                  cache_dir: Path) -> None:
    monkeypatch.setenv("SYMGRAD_CUDA_DEVICE", "shim")
    monkeypatch.setenv("SYMGRAD_CUDA_OUTPUTS", "device")
    x = sg.placeholder("x", (None,), "float32")
    f = sg.compile([x * 2.0, x * 2.0, sg.sum(x)], backend="cuda")
    a, b, s = f(x=np.arange(5, dtype=np.float32))
    assert all(type(o).__name__ == "DeviceArray" for o in (a, b, s))
    assert a.ptr != b.ptr  # equal outputs are still separate arrays
    np.testing.assert_array_equal(a.get(), np.arange(5, dtype=np.float32) * 2)
    np.testing.assert_array_equal(b.get(), a.get())
    assert s.shape == () and float(s.get()) == 10.0
    monkeypatch.setenv("SYMGRAD_CUDA_OUTPUTS", "sideways")
    with pytest.raises(ValueError, match="outputs must be one of"):
        sg.compile(x * 3.0, backend="cuda")


def test_shim_reports_out_of_range_indices(monkeypatch: pytest.MonkeyPatch, cache_dir: Path) -> None:
    monkeypatch.setenv("SYMGRAD_CUDA_DEVICE", "shim")
    x = sg.placeholder("x", (5, 2), "float32")
    idx = sg.placeholder("idx", (None,), "int64")
    f = sg.compile(sg.take(x, idx, 0), backend="cuda")
    xv = np.arange(10, dtype=np.float32).reshape(5, 2)
    np.testing.assert_array_equal(f(x=xv, idx=np.array([4, -5])), xv[[4, 0]])
    with pytest.raises(sg.errors.InputError, match="out of range"):
        f(x=xv, idx=np.array([0, 5]))
    np.testing.assert_array_equal(f(x=xv, idx=np.array([1])), xv[[1]])  # the error word is reset


def test_device_outputs_stay_on_the_device(rendered: dict[str, Rendered]) -> None:
    r = rendered["w1"]
    fn = CudaFunction(r.lp, r.rendered, hostshim.shim_device(), outputs="device")
    x = np.asarray(r.values["x"])
    dev_x = hostshim.shim_device().to_device(x)
    out = fn(dev_x)  # a device array in, device arrays out, no copy of the input
    assert all(type(o).__name__ == "DeviceArray" for o in out)
    _compare("w1", tuple(o.get() for o in out), r)
    fn_host = CudaFunction(r.lp, r.rendered, hostshim.shim_device(), outputs="auto")
    assert all(isinstance(o, np.ndarray) for o in fn_host(x))
    assert all(type(o).__name__ == "DeviceArray" for o in fn_host(dev_x))


# -- clear failure without the pieces -----------------------------------------------------------
def test_missing_driver_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from symgrad.backends.cuda import driver

    monkeypatch.setattr(driver, "_driver", None)
    monkeypatch.setattr(driver, "_failure", None)
    monkeypatch.setattr(driver, "driver_library_present", lambda: False)
    monkeypatch.setenv("SYMGRAD_CUDA_DEVICE", "gpu")
    x = sg.placeholder("x", (3,), "float32")
    with pytest.raises(CudaUnavailableError) as info:
        sg.compile(sg.exp(x), backend="cuda")
    assert isinstance(info.value, sg.errors.SymgradError)
    text = str(info.value)
    assert "driver" in text and "libcuda" in text and "nvidia.com/drivers" in text and "shim" in text


def test_missing_nvrtc_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_cuda(name: str, *args: Any, **kw: Any) -> Any:
        if name.startswith("cuda"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(nvrtc, "_module", None)
    monkeypatch.setattr(nvrtc, "_failure", None)
    monkeypatch.setattr(builtins, "__import__", no_cuda)
    monkeypatch.setenv("SYMGRAD_CUDA_DEVICE", "gpu")
    x = sg.placeholder("x", (3,), "float32")
    with pytest.raises(CudaUnavailableError) as info:
        sg.compile(sg.exp(x), backend="cuda")
    assert info.value.missing == "cuda-bindings"
    assert "pip install 'symgrad[cuda]'" in str(info.value)
    monkeypatch.setattr(builtins, "__import__", real_import)
    monkeypatch.setattr(nvrtc, "_failure", None)


def test_renderer_and_source_scan_agree_on_barriers(rendered: dict[str, Rendered]) -> None:
    """The renderer says which kernels synchronize; the shim finds out by reading the
    source. Both must agree on every kernel (a kernel run as a plain loop while it has a
    barrier would be caught at run time, but should never happen)."""
    checked = 0
    for r in rendered.values():
        scanned = {k.name: k.uses_sync for k in hostshim.parse_kernels(r.rendered.device_source)}
        assert set(scanned) == set(r.rendered.kernels), r.key
        for launch in r.rendered.launches:
            assert scanned[launch.kernel] == launch.uses_sync, (r.key, launch.kernel)
            checked += 1
    assert checked > 500


@pytest.mark.parametrize("op", sorted(RENDERER_GAPS))
def test_renderer_gaps_are_still_gaps(op: str) -> None:
    from symgrad.ops.random_ops import random_uniform

    x = sg.placeholder("x", (None, 2), "float32")
    assert op == "random_uniform"
    y = random_uniform((x.shape[0], 3), 5, 1) + x[:, :1]
    with pytest.raises(UnsupportedError, match=op):
        cuda_backend.render(program_of([y]))


def test_source_is_available_without_a_gpu(rendered: dict[str, Rendered]) -> None:
    src = rendered["w1"].rendered
    assert "extern \"C\" __global__" in src.device_source and "#include" not in src.device_source
    assert src.launches and all(launch.kernel in src.kernels for launch in src.launches)


# -- on a real GPU ------------------------------------------------------------------------------
def _gpu_or_skip() -> None:
    from symgrad.backends.cuda.driver import driver_available

    if not nvrtc.nvrtc_available():
        pytest.skip("NVRTC is not installed (pip install 'symgrad[cuda]')")
    if not driver_available():
        pytest.skip("no NVIDIA GPU with a driver on this machine")


@pytest.mark.gpu
@pytest.mark.parametrize("key", list(CASES))
def test_gpu_conformance(key: str, rendered: dict[str, Rendered]) -> None:
    _gpu_or_skip()
    from symgrad.backends.cuda.driver import gpu_device

    r = rendered[key]
    fn = CudaFunction(r.lp, r.rendered, gpu_device(), outputs="host")
    assert fn.module_info.startswith(("cubin", "ptx"))
    _compare(key, fn(*[np.asarray(r.values[name]) for name in r.inputs]), r)


@pytest.mark.gpu
def test_gpu_through_sg_compile_with_foreign_arrays(monkeypatch: pytest.MonkeyPatch,
                                                    rng: np.random.Generator) -> None:
    _gpu_or_skip()
    monkeypatch.setenv("SYMGRAD_CUDA_DEVICE", "gpu")
    x = sg.placeholder("x", (None,), "float32")
    f = sg.sum(sg.softplus(x) * sg.tanh(x) + sg.sigmoid(x) ** 2)
    outs = [f, sg.grad(f, x)]
    fn = sg.compile(outs, backend="cuda")
    ref = sg.compile(outs, backend="numpy")
    xv = rng.standard_normal(100_000).astype(np.float32)
    want = ref(x=xv)
    for got, w in zip(fn(x=xv), want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-3)
    try:
        import cupy  # type: ignore[import-not-found]

        got = fn(x=cupy.asarray(xv))  # no copy in; outputs stay on the device
        assert type(got[1]).__name__ == "DeviceArray"
        np.testing.assert_allclose(cupy.asnumpy(cupy.asarray(got[1])), want[1], rtol=1e-5, atol=1e-6)
        with pytest.raises(sg.errors.InputError, match="dtype"):
            fn(x=cupy.asarray(xv.astype(np.float64)))
    except ImportError:
        pass
    try:
        import torch  # type: ignore[import-not-found]

        if torch.cuda.is_available():
            got = fn(x=torch.from_numpy(xv).cuda())
            back = torch.as_tensor(got[1], device="cuda").cpu().numpy()
            np.testing.assert_allclose(back, want[1], rtol=1e-5, atol=1e-6)
    except ImportError:
        pass
