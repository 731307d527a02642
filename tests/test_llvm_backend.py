"""The LLVM backend against the NumPy backend on the same graphs (conformance).

Each case compiles one graph (often with many outputs, to keep LLVM compile time down)
for both backends and compares every output's dtype, shape and values. The compile
cache lives in a temporary folder for this module.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import symgrad as sg
from symgrad.backends.llvm import cache_stats, clear_memory_cache, jit
from symgrad.errors import InputError, UnsupportedError
from symgrad.ops.base import Info, Op
from symgrad.testing import check_backends

EDGE32 = np.array([0.0, -0.0, 1e-38, -1e-45, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 20.0, -20.0,
                   88.0, -88.0, 89.0, -104.0, 1e30, -1e30, np.inf, -np.inf, np.nan], np.float32)
EDGE64 = np.array([0.0, -0.0, 1e-308, -5e-324, 0.5, -0.5, 1.0, -1.0, 3.0, -3.0, 20.0, -20.0,
                   709.0, -709.0, 710.0, -745.0, 1e300, -1e300, np.inf, -np.inf, np.nan])


@pytest.fixture(autouse=True, scope="module")
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("symgrad-cache")
    old = os.environ.get("SYMGRAD_CACHE_DIR")
    os.environ["SYMGRAD_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("SYMGRAD_CACHE_DIR", None)
    else:
        os.environ["SYMGRAD_CACHE_DIR"] = old


def same(outputs: Any, values: dict[str, Any], **tol: Any) -> None:
    check_backends(outputs, values, ["llvm"], **tol)


def edge_values(dtype: str, rng: np.random.Generator) -> np.ndarray:
    edge = EDGE32 if dtype == "float32" else EDGE64
    return np.concatenate([edge, rng.standard_normal(43).astype(dtype) * 4]).astype(dtype)


# -- elementwise ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_unary_float_ops_with_edge_values(dtype: str, rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (None,), dtype)
    t = sg.placeholder("t", (None,), dtype)  # sin and cos are accurate for |t| <= 1e8
    outs = [sg.exp(x), sg.log(x), sg.log1p(x), sg.expm1(x), sg.sqrt(x), sg.abs(x), sg.sign(x),
            sg.sin(t), sg.cos(t), sg.tanh(x), sg.erf(x), sg.sigmoid(x), sg.softplus(x),
            sg.relu(x), sg.floor(x), sg.ceil(x), sg.round(x), -x, sg.square(x),
            sg.reciprocal(x), x ** 3.0, sg.clip(x, -1.0, 2.0), sg.abs(x) ** t]
    xv = edge_values(dtype, rng)
    tv = np.where(np.abs(xv) > 1e8, np.float32(1e8) * np.sign(xv), xv).astype(dtype)
    tv[-25:-22] = [np.inf, -np.inf, np.nan]
    same(outs, {"x": xv, "t": tv})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_ops_broadcast(dtype: str, rng: np.random.Generator) -> None:
    a = sg.placeholder("a", (None, 1), dtype)
    b = sg.placeholder("b", (1, 5), dtype)
    c = sg.placeholder("c", (5,), dtype)
    outs = [a + b, a - b, a * b, a / b, sg.maximum(a, b), sg.minimum(a, c), sg.abs(a) ** b,
            a < b, a <= b, a > c, a >= c, sg.equal(a, b), sg.not_equal(a, b),
            sg.where(a > b, a, c), sg.logical_and(a > 0, b > 0), sg.logical_or(a > 0, b > 0),
            sg.logical_not(a > c), a * 2.0 + 1.0, 3.0 - c, 1.0 / (a * a + 1.0)]
    av = rng.standard_normal((4, 1)).astype(dtype)
    av[0, 0] = np.nan
    av[1, 0] = 0.0
    bv = rng.standard_normal((1, 5)).astype(dtype)
    bv[0, 0] = 0.0
    bv[0, 1] = -np.inf
    same(outs, {"a": av, "b": bv, "c": rng.standard_normal(5).astype(dtype)})


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_and_bool_ops(dtype: str, rng: np.random.Generator) -> None:
    i = sg.placeholder("i", (3, 4), dtype)
    j = sg.placeholder("j", (4,), dtype)
    p = sg.placeholder("p", (3, 4), "bool")
    outs = [i + j, i - j, i * j, -i, sg.abs(i), sg.sign(i), sg.maximum(i, j), sg.minimum(i, j),
            sg.relu(i), i < j, sg.equal(i, j), sg.where(p, i, j), p * sg.logical_not(p),
            sg.power(i, sg.abs(j)), i / j, sg.exp(i), i + 1, i * 2.5, sg.logical_or(p, i > 0)]
    same(outs, {"i": rng.integers(-5, 6, (3, 4)).astype(dtype),
                "j": np.array([1, -2, 3, 0], dtype), "p": rng.random((3, 4)) < 0.5})


def test_casts_between_all_dtypes(rng: np.random.Generator) -> None:
    dtypes = ["float32", "float64", "int32", "int64", "bool"]
    values = {
        "float32": np.array([0.0, -0.0, 1.5, -2.7, 3e9, 7.0, 1.0], np.float32),
        "float64": np.array([0.0, -1.5, 2.5, 1e10, -3.9, 0.25, 1.0]),
        "int32": np.array([0, 1, -1, 2**31 - 1, -(2**31), 7, 3], np.int32),
        "int64": np.array([0, 1, -1, 2**40, -(2**35), 7, 3], np.int64),
        "bool": np.array([True, False, True, True, False, False, True]),
    }
    ins = {d: sg.placeholder(f"v_{d}", (7,), d) for d in dtypes}
    outs = []
    for src in dtypes:
        for dst in dtypes:
            if src == dst or (src in ("float32", "float64") and dst in ("int32", "int64")):
                continue  # float -> int of out-of-range values is undefined in NumPy too
            outs.append(sg.cast(ins[src], dst))
    same(outs, {f"v_{d}": v for d, v in values.items()})


# -- reductions ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reductions_axes_keepdims(dtype: str, rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (None, 4, 5), dtype)
    outs = []
    for axis in (None, 0, 1, 2, -1, (0, 2), (1, 2)):
        for keep in (False, True):
            outs += [sg.sum(x, axis, keep), sg.max(x, axis, keep), sg.min(x, axis, keep)]
        outs += [sg.mean(x, axis), sg.prod(x * 0.5, axis), sg.logsumexp(x, axis)]
    for axis in (0, 1, 2):
        outs += [sg.argmax(x, axis), sg.argmin(x, axis, keepdims=True)]
    outs += [sg.argmax(x), sg.var(x, 1), sg.std(x, (0, 1), ddof=1), sg.softmax(x, 1),
             sg.log_softmax(x, -1), sg.softmax(x, 0)]
    xv = rng.standard_normal((3, 4, 5)).astype(dtype)
    xv[1, 2, 3] = xv[1, 2, 0]  # a tie for argmax/argmin
    same(outs, {"x": xv}, rtol=1e-5 if dtype == "float32" else 1e-11)
    xv[0, 1, 1] = np.nan
    xv[2, 0, :] = np.inf
    same([sg.max(x, 2), sg.min(x, 1), sg.argmax(x, 2), sg.sum(x, 0), sg.logsumexp(x, -1)],
         {"x": xv})


def test_integer_and_bool_reductions(rng: np.random.Generator) -> None:
    i = sg.placeholder("i", (None, 6), "int32")
    p = sg.placeholder("p", (None, 6), "bool")
    outs = [sg.sum(i), sg.sum(i, 0), sg.max(i, 1), sg.min(i, 0), sg.prod(i, 1), sg.argmax(i, 1),
            sg.sum(p, 1), sg.max(p, 0), sg.min(p, 1), sg.mean(i, 0)]
    same(outs, {"i": rng.integers(-4, 5, (5, 6)).astype(np.int32), "p": rng.random((5, 6)) < 0.5})


def test_large_float32_sum_is_accurate(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (None,), "float32")
    f = sg.compile(sg.sum(x), backend="llvm")
    xv = rng.random(1_000_003).astype(np.float32)
    assert abs(float(f(x=xv)) - float(np.sum(xv, dtype=np.float64))) < 1e-7 * xv.size


# -- shapes, views, indexing ---------------------------------------------------------------------
def test_shape_ops_and_slices(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (4, None, 6), "float32")
    y = sg.placeholder("y", (6,), "float32")
    outs = [sg.transpose(x), x.T + 1.0, sg.reshape(x, (4, -1)), sg.reshape(x.T, (-1,)),
            sg.broadcast_to(y, (2, 3, 6)), sg.expand_dims(y, 0) * x, sg.squeeze(x[:, :1, :], 1),
            x[1:3, :, ::2], x[::-1, :, 1], x[2], x[..., None, 3], sg.moveaxis(x, 0, 2) * 2.0,
            sg.concatenate([x, x * 2.0], 1), sg.stack([y, y + 1.0, y * y], 1),
            sg.concatenate([x[:, :, :2], x[:, :, 4:]], 2), sg.flatten(x, 1)[:, ::5],
            sg.swapaxes(x, 1, 2)[:, ::-2], x[3:, 0]]
    same(outs, {"x": rng.standard_normal((4, 3, 6)).astype(np.float32),
                "y": rng.standard_normal(6).astype(np.float32)})


def test_take_and_one_hot(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (5, None), "float64")
    idx = sg.placeholder("idx", (None,), "int64")
    lab = sg.placeholder("lab", (2, 3), "int32")
    outs = [sg.take(x, idx, 0), sg.take(x, idx[:2], 1), x[idx], sg.one_hot(lab, 4),
            sg.one_hot(lab, 4, "int64"), sg.take(x, lab.astype("int64"), 0)]
    values = {"x": rng.standard_normal((5, 4)), "idx": np.array([0, -1, 3, 3, 2]),
              "lab": np.array([[0, 1, 3], [2, 2, 0]], np.int32)}
    same(outs, values)
    f = sg.compile(outs, backend="llvm")
    with pytest.raises(InputError, match="take"):
        f(**{**values, "idx": np.array([0, 5, 1, 1, 1])})
    with pytest.raises(InputError, match="one_hot"):
        f(**{**values, "lab": np.array([[0, 1, 4], [2, 2, 0]], np.int32)})


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_matmul_shapes(dtype: str, rng: np.random.Generator) -> None:
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

    values = {"a": data((2, 3, 4)), "b": data((4, 5)), "v": data((4,)), "c": data((2, 4, 2))}
    same(outs, values, **({"rtol": 2e-5, "atol": 2e-5} if dtype == "float32" else {}))


def test_matmul_with_empty_sizes(rng: np.random.Generator) -> None:
    a = sg.placeholder("a", (None, 3), "float32")
    b = sg.placeholder("b", (3, None), "float32")
    f = sg.compile(a @ b, backend="llvm")
    assert f(a=np.ones((0, 3), np.float32), b=np.ones((3, 2), np.float32)).shape == (0, 2)
    a2 = sg.placeholder("a2", (2, None), "float64")
    b2 = sg.placeholder("b2", (None, 3), "float64")
    g = sg.compile(a2 @ b2, backend="llvm")
    np.testing.assert_array_equal(g(a2=np.ones((2, 0)), b2=np.ones((0, 3))), np.zeros((2, 3)))


# -- dynamic sizes, gradients, models -------------------------------------------------------------
def test_one_function_for_every_batch_size(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (None, 3), "float32")
    w = sg.placeholder("w", (3,), "float32")
    loss = sg.mean((sg.tanh(x @ w + 1.0) - 2.0) ** 2)
    outs = [loss, sg.grad(loss, w), sg.grad(loss, x)]
    f = sg.compile(outs, backend="llvm")
    ref = sg.compile(outs, backend="numpy")
    wv = rng.standard_normal(3).astype(np.float32)
    for n in (7, 1, 300, 0, 7):
        xv = rng.standard_normal((n, 3)).astype(np.float32)
        for got, want in zip(f(x=xv, w=wv), ref(x=xv, w=wv)):
            assert got.shape == want.shape and got.dtype == want.dtype
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_w1_value_and_gradient(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (None,), "float32")
    f = sg.sum(sg.softplus(x) * sg.tanh(x) + sg.sigmoid(x) ** 2)
    outs = [f, sg.grad(f, x)]
    same(outs, {"x": rng.standard_normal(10_000).astype(np.float32) * 3}, rtol=1e-5, atol=1e-4)
    comp = sg.compile(outs, backend="llvm")
    kernels = comp._impl.kernels
    assert kernels.count("kernel ") == 1, kernels  # value and gradient in one fused loop
    assert "reduce" in kernels and "softplus" in kernels


def test_mlp_value_and_gradients(rng: np.random.Generator) -> None:
    X = sg.placeholder("X", (None, 20), "float32")
    y = sg.placeholder("y", (None,), "int64")
    W1 = sg.placeholder("W1", (20, 16), "float32")
    b1 = sg.placeholder("b1", (16,), "float32")
    W2 = sg.placeholder("W2", (16, 10), "float32")
    b2 = sg.placeholder("b2", (10,), "float32")
    z = sg.relu(X @ W1 + b1) @ W2 + b2
    loss = -sg.mean(sg.sum(sg.one_hot(y, 10) * sg.log_softmax(z), -1))
    outs = [loss, *sg.grad(loss, [W1, b1, W2, b2])]
    values = {"X": rng.standard_normal((32, 20)).astype(np.float32),
              "y": rng.integers(0, 10, 32),
              "W1": (rng.standard_normal((20, 16)) * 0.3).astype(np.float32),
              "b1": rng.standard_normal(16).astype(np.float32) * 0.1,
              "W2": (rng.standard_normal((16, 10)) * 0.3).astype(np.float32),
              "b2": np.zeros(10, np.float32)}
    same(outs, values, rtol=2e-5, atol=1e-6)
    same([sg.grad(sg.sum(sg.nn.cross_entropy(z, y)), X)], values, rtol=2e-5, atol=1e-6)


def test_gradients_of_shape_ops_and_indexing(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (4, 6), "float64")
    idx = sg.placeholder("idx", (5,), "int64")
    y = sg.sum(sg.take(x, idx, 0) ** 2) + sg.sum(sg.concatenate([x[:, ::2], x.T[1:3].T], 1) * 3.0)
    y = y + sg.sum(sg.max(x, 1)) + sg.sum(sg.prod(x[:2], 0)) + sg.sum(sg.reshape(x, (3, 8))[1])
    same([y, sg.grad(y, x)], {"x": rng.standard_normal((4, 6)), "idx": np.array([0, 3, 3, -1, 1])})


# -- inputs --------------------------------------------------------------------------------------
def test_unusual_input_arrays(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (None, 3), "float32")
    w = sg.placeholder("w", (3, 3), "float32")
    outs = [sg.exp(x) @ w, sg.sum(x * 2.0, 0)]
    f = sg.compile(outs, backend="llvm")
    ref = sg.compile(outs, backend="numpy")
    base = rng.standard_normal((8, 6)).astype(np.float32)
    wv = rng.standard_normal((3, 3)).astype(np.float32)
    readonly = wv.copy()
    readonly.setflags(write=False)
    raw = np.zeros(4 * 24 + 1, np.uint8)
    misaligned = np.frombuffer(raw.data, np.float32, 24, offset=1).reshape(8, 3)
    misaligned[...] = base[:, :3]
    cases = [
        (base[:, ::2], wv),                                   # strided
        (np.asfortranarray(base[:, :3]), readonly),           # Fortran order, read-only
        (base[:, :3].astype(">f4"), wv.astype(">f4")),        # big-endian
        (misaligned, wv),                                     # not aligned
        (base[:, :3].astype(np.float64), wv),                 # cast by the driver
    ]
    for xv, w_ in cases:
        for got, want in zip(f(x=xv, w=w_), ref(x=xv, w=w_)):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    assert readonly.flags.writeable is False


def test_output_of_input_and_duplicated_outputs(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (None,), "float32")
    f = sg.compile([x, x.T, x + 1.0, x + 1.0, sg.constant(np.arange(3.0)), sg.mean(x)],
                   backend="llvm")
    xv = rng.standard_normal(5).astype(np.float32)
    out = f(x=xv)
    assert out[0] is not xv and not np.shares_memory(out[0], xv)
    np.testing.assert_array_equal(out[0], xv)
    np.testing.assert_array_equal(out[2], out[3])
    np.testing.assert_array_equal(out[4], np.arange(3.0))
    np.testing.assert_allclose(out[5], xv.mean(), rtol=1e-6)


def test_threads_split_large_kernels(monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator) -> None:
    monkeypatch.setenv("SYMGRAD_NUM_THREADS", "2")
    x = sg.placeholder("x", (None, 64), "float32")
    y = sg.tanh(x) * 2.0 + x
    outs = [sg.sum(y * y), y, sg.sum(y, 1), sg.max(y, 0)]
    f = sg.compile(outs, backend="llvm")
    ref = sg.compile(outs, backend="numpy")
    xv = rng.standard_normal((40_000, 64)).astype(np.float32)
    for got, want in zip(f(x=xv), ref(x=xv)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-4)
    assert f._impl._state((40_000,)).parallel
    monkeypatch.setenv("SYMGRAD_NUM_THREADS", "1")
    f1 = sg.compile(outs, backend="llvm")
    assert not f1._impl._state((40_000,)).parallel
    for got, want in zip(f(x=xv), f1(x=xv)):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-4)



def test_split_kernels_run_in_chunks_taken_in_turn(monkeypatch: pytest.MonkeyPatch,
                                                   rng: np.random.Generator) -> None:
    """A split kernel runs as several chunks per thread, taken by whichever thread is free:
    a thread that is slowed down takes fewer chunks, and a sum keeps one partial per chunk,
    so its value is the same however the chunks were shared out."""
    monkeypatch.setenv("SYMGRAD_NUM_THREADS", "2")
    x = sg.placeholder("x", (None,), "float32")
    outs = [sg.sum(sg.tanh(x) * x), sg.sigmoid(x) * 3.0]
    f = sg.compile(outs, backend="llvm")
    xv = rng.standard_normal(1_500_000).astype(np.float32)
    st = f._impl._state(xv.shape)
    plans = [p for p in st.plans if p.parts > 1]
    assert plans and all(2 * p.parts < p.chunks <= 10 * p.parts for p in plans)
    for p in plans:
        assert p.bounds[0] == 0 and p.bounds[-1] == p.extent
    first = f(x=xv)
    np.testing.assert_allclose(first[0], np.sum(np.tanh(xv.astype(np.float64)) * xv), rtol=1e-5)
    np.testing.assert_allclose(first[1], 3.0 / (1.0 + np.exp(-xv.astype(np.float64))), rtol=1e-5)

    # slow the pool's thread down: the calling thread then takes most chunks, and the sum
    # is bit-identical, since it adds the chunks' partials in chunk order
    taken: dict[str, int] = {}
    real = f._impl._kfns

    def slowed(fn: Any) -> Any:
        def run(*args: Any) -> Any:
            name = "pool" if threading.current_thread() is not threading.main_thread() else "main"
            taken[name] = taken.get(name, 0) + 1
            if name == "pool":
                time.sleep(0.02)
            return fn(*args)
        return run

    monkeypatch.setattr(f._impl, "_kfns", [slowed(fn) for fn in real])
    again = f(x=xv)
    assert taken["main"] > taken["pool"] >= 1
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_split_kernels(monkeypatch: pytest.MonkeyPatch,
                                           rng: np.random.Generator) -> None:
    """A forked child has none of its parent's pool threads: it starts its own pool (the
    inherited one would queue work that no thread runs, and the call would wait forever),
    and gets the parent's results, bit for bit."""
    import pickle
    import select

    monkeypatch.setenv("SYMGRAD_NUM_THREADS", "2")
    x = sg.placeholder("x", (None,), "float32")
    outs = [sg.sum(sg.softplus(x) * x), sg.sigmoid(x) * x]
    f = sg.compile(outs, backend="llvm")
    xv = rng.standard_normal(1_200_000).astype(np.float32)
    want = f(x=xv)  # the parent's pool now has threads
    assert f._impl._state(xv.shape).parallel
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            msg = pickle.dumps(f(x=xv))
        except BaseException as e:  # noqa: BLE001 - reported to the parent, which fails
            msg = pickle.dumps(repr(e))
        with os.fdopen(w, "wb") as out:
            out.write(msg)
        os._exit(0)
    os.close(w)
    ready: list[int] = []
    try:
        ready, _, _ = select.select([r], [], [], 60)
        assert ready, "the forked child hung"
        with os.fdopen(r, "rb") as inp:
            got = pickle.loads(inp.read())
    finally:
        if not ready:
            os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert not isinstance(got, str), got
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


def test_chunks_shrink_towards_the_end() -> None:
    """Each chunk takes 1 / (2 parts) of what is left, down to the least size: the first
    is the largest, the sizes never grow but for the last (the rest), and the chunks cover
    the range exactly."""
    from symgrad.backends.llvm.runtime import chunk_bounds

    for extent, parts, least in [(4_194_304, 2, 32_768), (1_000_003, 3, 5_000), (10, 2, 3),
                                 (7, 4, 100), (1 << 20, 8, 1)]:
        b = chunk_bounds(extent, parts, least)
        sizes = np.diff(b)
        assert b[0] == 0 and b[-1] == extent and (sizes > 0).all()
        assert sizes[0] == max(least, extent // (2 * parts)) or len(sizes) == 1
        assert (np.diff(sizes[:-1]) <= 0).all()
        assert (sizes[:-1] >= least).all()
        if len(sizes) > 1:  # the rest, once less than the least size would be left
            assert sizes[-1] < max(least, sizes[-2]) + least
    assert np.diff(chunk_bounds(4_194_304, 2, 32_768)).tolist()[:3] == [1_048_576, 786_432, 589_824]
    assert chunk_bounds(7, 4, 100) == [0, 7]


def test_split_calls_from_several_threads_at_once(monkeypatch: pytest.MonkeyPatch,
                                                  rng: np.random.Generator) -> None:
    """Python threads that call one split function at the same time share the pool: each
    call hands out its own chunks, and every result equals the one-thread result."""
    x = sg.placeholder("x", (None,), "float32")
    outs = [sg.sum(sg.softplus(x) * sg.tanh(x)), sg.sigmoid(x) * x]
    inputs = [rng.standard_normal(600_000 + 1000 * k).astype(np.float32) for k in range(4)]
    monkeypatch.setenv("SYMGRAD_NUM_THREADS", "1")
    f1 = sg.compile(outs, backend="llvm")
    want = [f1(x=v) for v in inputs]
    assert not f1._impl._state(inputs[0].shape).parallel
    monkeypatch.setenv("SYMGRAD_NUM_THREADS", "2")
    f = sg.compile(outs, backend="llvm")
    got: dict[int, list[Any]] = {}
    split: dict[int, bool] = {}

    def worker(k: int) -> None:
        got[k] = [f(x=inputs[k]) for _ in range(5)]
        split[k] = f._impl._state(inputs[k].shape).parallel  # this thread's state

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert split == {k: True for k in range(4)}
    for k in range(4):
        for res in got[k]:
            np.testing.assert_array_equal(res[1], want[k][1])
            np.testing.assert_allclose(res[0], want[k][0], rtol=1e-6)


def test_loops_calling_the_vector_math_are_interleaved() -> None:
    """The inner loop of a kernel that calls the polynomial math carries an interleave hint
    (its FMA chains are latency bound), by its widest float type, and a smaller one for a
    large float32 body; a plain arithmetic loop is left to LLVM."""
    from symgrad.backends.llvm.codegen import MATH_INTERLEAVE, MATH_INTERLEAVE_BIG

    def hint(dtype: str, count: int | None = None) -> str:
        return f'!"llvm.loop.interleave.count", i32 {count or MATH_INTERLEAVE[dtype]} }}'

    x = sg.placeholder("x", (None,), "float32")
    assert hint("float32") in sg.compile(sg.tanh(x) + 1.0, backend="llvm")._impl.llvm_ir
    y = sg.sum(sg.softplus(x) * sg.tanh(x) + sg.sigmoid(x) ** 2)
    w1 = sg.compile([y, sg.grad(y, x)], backend="llvm")._impl.llvm_ir
    assert hint("float32", MATH_INTERLEAVE_BIG) in w1 and hint("float32") not in w1
    assert hint("float32") in sg.compile(sg.sum(sg.exp(x)), backend="llvm")._impl.llvm_ir
    mixed = sg.compile(sg.exp(sg.cast(x, "float64")), backend="llvm")._impl.llvm_ir
    assert hint("float64") in mixed and hint("float32") not in mixed
    assert "llvm.loop.interleave.count" not in sg.compile(x * 2.0 + 1.0, backend="llvm")._impl.llvm_ir


def test_large_math_bodies_take_the_latency_bound_vector_math() -> None:
    """A loop that interleaves few vectors (a large float32 body such as W1's) calls the
    latency-bound variant of the vector math (see vecmath.emit_math); smaller ones the default;
    both give the float64 reference's values within float32 accuracy."""
    x = sg.placeholder("x", (None,), "float32")
    y = sg.sum(sg.softplus(x) * sg.tanh(x) + sg.sigmoid(x) ** 2)
    w1 = sg.compile([y, sg.grad(y, x)], backend="llvm")
    small = sg.compile([sg.softplus(x), sg.sigmoid(x)], backend="llvm")
    assert re.search(r"symgrad\.vecmath\.softplus\.f32\.latency\b", w1._impl.llvm_ir)
    assert "externally_initialized" in w1._impl.llvm_ir
    assert not re.search(r"vecmath\.\w+\.f32\.latency", small._impl.llvm_ir)
    assert "externally_initialized" not in small._impl.llvm_ir
    xs = np.random.default_rng(3).standard_normal(10_001).astype(np.float32) * 4
    x64 = xs.astype(np.float64)
    sp, th, s = np.logaddexp(0, x64), np.tanh(x64), 1 / (1 + np.exp(-x64))
    value, grad = w1(xs)
    np.testing.assert_allclose(value, np.sum(sp * th + s * s), rtol=1e-5)
    np.testing.assert_allclose(grad, s * th + sp * (1 - th * th) + 2 * s * s * (1 - s), rtol=2e-6, atol=2e-6)
    got_sp, got_s = small(xs)
    np.testing.assert_allclose(got_sp, sp, rtol=4e-7, atol=1e-30)
    np.testing.assert_allclose(got_s, s, rtol=4e-7, atol=1e-30)
    # float64 kernels keep the default (their loops interleave 4 vectors whatever their size)
    x64 = sg.placeholder("x64", (None,), "float64")
    for outs in (sg.exp(x64), [sg.sum(sg.softplus(x64) * sg.tanh(x64) + sg.sigmoid(x64) ** 2)]):
        text = sg.compile(outs, backend="llvm")._impl.llvm_ir
        assert "vecmath.exp.f64" in text or "vecmath.softplus.f64" in text
        assert ".latency" not in text and "externally_initialized" not in text
    # one program with a large float32 body and a small one: the variant stays with its kernel
    both = sg.compile([y, sg.grad(y, x), sg.exp(sg.placeholder("z", (None,), "float32"))], backend="llvm")
    bodies = re.findall(r"define [^\n]*@\"?(\w+)\.body\"?\((.*?\n)}\n", both._impl.llvm_ir, re.S)
    latency = {name: ".latency" in body for name, body in bodies}
    assert len(latency) == 2 and sorted(latency.values()) == [False, True], latency


# -- errors --------------------------------------------------------------------------------------
def test_unsupported_ops_are_listed_with_their_lines() -> None:
    def infer(inputs: tuple[Any, ...], attrs: dict[str, Any]) -> Info:
        return Info(inputs[0].shape, inputs[0].dtype)

    mystery = Op("mystery", "nn", infer, lambda x: x)  # declared here, never registered
    x = sg.placeholder("x", (3,), "float32")
    y = mystery(x) + mystery(x * 2.0)
    with pytest.raises(UnsupportedError) as info:
        sg.compile(y, backend="llvm")
    text = str(info.value)
    assert text.count("mystery") == 2 and "test_llvm_backend.py" in text


def same_error(outputs: Any, inputs: list[Any], values: dict[str, Any], match: str) -> str:
    """Both backends raise InputError with one message (NumPy's, the op and the user's line);
    a second call with the same sizes raises it again. The message is returned."""
    messages = []
    for backend in ("numpy", "llvm"):
        f = sg.compile(outputs, inputs=inputs, backend=backend)
        for _ in range(2):
            with pytest.raises(InputError, match=match) as info:
                f(**values)
            messages.append(str(info.value))
    assert len(set(messages)) == 1, messages
    assert f"built at {__file__}:" in messages[0], messages[0]
    return messages[0]


def test_reductions_without_identity_over_no_elements_raise_as_on_numpy() -> None:
    x = sg.placeholder("x", (None, None), "float32")
    empty = {"x": np.zeros((0, 3), np.float32)}
    for op, reduce in (("max", sg.max), ("min", sg.min)):
        word = "maximum" if op == "max" else "minimum"
        text = f"zero-size array to reduction operation {word} which has no identity"
        assert f"(op {op} built at" in same_error(reduce(x, axis=0), [x], empty, text)
        same_error(reduce(x), [x], empty, text)
        same_error(reduce(x * 2.0, axis=0, keepdims=True) + 1.0, [x], empty, text)  # fused
        same_error(reduce(x, axis=1), [x], {"x": np.zeros((3, 0), np.float32)}, text)
        same_error(reduce(x, axis=0), [x], {"x": np.zeros((0, 0), np.float32)}, text)
        same_error(sg.grad(sg.sum(reduce(x, axis=0)), x), [x], empty, text)
        same_error(reduce(sg.cast(x, "int32"), axis=0), [x], empty, text)
    for op, arg in (("argmax", sg.argmax), ("argmin", sg.argmin)):
        text = f"attempt to get {op} of an empty sequence"
        assert f"(op {op} built at" in same_error(arg(x, axis=0), [x], empty, text)
        same_error(arg(x, axis=1), [x], {"x": np.zeros((3, 0), np.float32)}, text)
    # a large empty reduction (a split kernel) and one next to a sum
    same_error(sg.max(x, axis=1), [x], {"x": np.zeros((300_000, 0), np.float32)}, "no identity")
    same_error([sg.sum(x, axis=0), sg.min(x, axis=0)], [x], empty, "minimum which has no identity")


def test_empty_reductions_that_numpy_allows_still_run() -> None:
    """Over a non-empty axis of an empty array, and the max shift inside softmax and
    logsumexp, which keeps its identity: both backends give the same values; after an
    error the same function still runs for other sizes."""
    x = sg.placeholder("x", (None, None), "float32")
    outs = [sg.max(x, axis=1), sg.argmin(x, axis=1), sg.softmax(x, axis=0), sg.logsumexp(x, axis=0),
            sg.max(x, axis=())]
    for shape in ((0, 3), (2, 3)):
        same(outs, {"x": np.arange(np.prod(shape), dtype=np.float32).reshape(shape)})
    f = sg.compile(sg.max(x, axis=0), backend="llvm")
    np.testing.assert_array_equal(f(x=np.ones((2, 3), np.float32)), np.ones(3, np.float32))
    with pytest.raises(InputError, match="no identity"):
        f(x=np.zeros((0, 3), np.float32))
    np.testing.assert_array_equal(f(x=np.full((2, 3), 2.0, np.float32)), np.full(3, 2.0, np.float32))


def test_index_out_of_range_raises_as_on_numpy() -> None:
    """take, indexing with an index tensor, gathers along other axes and one_hot name the
    first index out of range and the size, as the NumPy backend does, whether the index is an
    input or computed."""
    y = sg.placeholder("y", (None,), "float32")
    m = sg.placeholder("m", (None, 4), "float32")
    i = sg.placeholder("i", (None,), "int64")
    yv = np.arange(3, dtype=np.float32)
    text = "take: index 5 is out of range for axis 0 of size 3"
    for out in (sg.take(y, i), y[i], sg.exp(sg.take(y, i)) * 2.0, sg.grad(sg.sum(sg.take(y, i) ** 2), y)):
        same_error(out, [y, i], {"y": yv, "i": np.array([0, 5, 7])}, text)
    same_error(sg.take(y, i), [y, i], {"y": yv, "i": np.r_[np.zeros(100_000, np.int64), 5]}, text)
    same_error(sg.take(y, i + 1), [y, i], {"y": yv, "i": np.array([0, 2])},
               "take: index 3 is out of range for axis 0 of size 3")
    same_error(sg.take(m, i, axis=1), [m, i], {"m": np.ones((2, 4), np.float32), "i": np.array([1, -5])},
               "take: index -5 is out of range for axis 1 of size 4")
    same_error(sg.one_hot(i, 3), [i], {"i": np.array([0, -1])}, r"one_hot: label -1 is out of range \[0, 3\)")
    same_error(sg.nn.cross_entropy(m, i), [m, i], {"m": np.ones((2, 4), np.float32), "i": np.array([1, 4])},
               r"one_hot: label 4 is out of range \[0, 4\)")
    # negative indices in range are NumPy's (from the end)
    same([sg.take(y, i)], {"y": yv, "i": np.array([-1, -3, 2])})


def test_outputs_never_share_memory() -> None:
    """Outputs the lowering computes into one buffer (a reduction over no axes or over axes of
    size 1, and its operand) come back as separate arrays: writing into one leaves the others."""
    a = sg.placeholder("a", (None, 3), "float32")
    q = sg.placeholder("q", (None, 1), "float32")
    p = sg.placeholder("p", (1, 1, 1, 1), "float32")
    bc = sg.broadcast_to(0.0, (1, 1, 1, 1))
    cases = [([sg.min(a, axis=()), a], [a]),
             ([sg.min(bc, keepdims=True), bc], []),
             ([sg.min(bc), bc], []),
             ([sg.max(p, keepdims=True), p, sg.min(p)], [p]),
             ([sg.max(q, axis=1, keepdims=True), q], [q]),
             ([sg.max(q * 2.0, axis=1, keepdims=True), q * 2.0], [q]),
             ([sg.sum(q * 2.0, axis=1), q * 2.0, sg.reshape(q * 2.0, (-1,))], [q])]
    rng = np.random.default_rng(5)
    for outs, inputs in cases:
        f = sg.compile(outs, inputs=inputs, backend="llvm")
        values = {t.name: rng.standard_normal([s if isinstance(s, int) else 3 for s in t.shape]).astype(np.float32)
                  for t in inputs}
        want = sg.compile(outs, inputs=inputs, backend="numpy")(**values)
        got = f(**values)
        for j, g in enumerate(got):
            assert not any(np.shares_memory(g, v) for v in values.values())
            assert not any(np.shares_memory(g, h) for k, h in enumerate(got) if k != j), (j, outs)
        for j, g in enumerate(got):
            g[...] = 1234.0
            for k, (h, w) in enumerate(zip(got, want)):
                if k != j:
                    np.testing.assert_array_equal(h, w)
            g[...] = want[j]


# -- the cache -----------------------------------------------------------------------------------
def _graph() -> Any:
    x = sg.placeholder("x", (None,), "float64")
    return sg.sum(sg.sin(x) * 1.25 + sg.cos(x * 0.5))


def test_disk_cache_hit_and_corruption(_cache_dir: Path) -> None:
    y = _graph()
    first = sg.compile(y, backend="llvm")
    clear_memory_cache()
    before = cache_stats().disk_hits
    second = sg.compile(y, backend="llvm")
    assert second._impl.cache == "disk" and cache_stats().disk_hits == before + 1
    xv = np.linspace(-3, 3, 11)
    assert float(first(x=xv)) == float(second(x=xv))
    entries = list((_cache_dir / "llvm").glob("*/*.o"))
    assert entries
    for p in entries:
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])  # truncated
    clear_memory_cache()
    corrupted = cache_stats().corrupted
    third = sg.compile(y, backend="llvm")
    assert third._impl.cache == "built" and cache_stats().corrupted > corrupted
    assert "corrupted" in cache_stats().last_miss
    assert float(third(x=xv)) == float(first(x=xv))


def test_cache_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", "off")
    clear_memory_cache()
    f = sg.compile(_graph() * 3.0, backend="llvm")
    assert f._impl.cache == "built" and cache_stats().last_miss == "disk cache off"


def test_two_processes_compile_the_same_function(tmp_path: Path) -> None:
    script = textwrap.dedent("""
        import numpy as np, symgrad as sg
        x = sg.placeholder("x", (None,), "float32")
        y = sg.sum(sg.exp(x) * 3.0 - x)
        f = sg.compile(y, backend="llvm")
        print(float(f(x=np.ones(10, np.float32))))
    """)
    env = {**os.environ, "SYMGRAD_CACHE_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert abs(float(out) - 10 * (3 * np.e - 1)) < 1e-3
    assert len(list((tmp_path / "llvm").glob("*/*.o"))) == 1
    assert not list((tmp_path / "llvm").glob("*/.tmp-*"))


def test_cache_key_covers_host_and_sources() -> None:
    key = jit.cache_key("program text")
    assert key == jit.cache_key("program text") and key != jit.cache_key("program text 2")
    assert jit.host_description() in jit.host_description()  # stable within a process


def test_target_cpu_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """SYMGRAD_LLVM_CPU picks the CPU code is generated for: it keys the cache, sets the
    vector width, gives the same values; an unknown name, and a CPU whose extensions the
    host lacks (its code would stop the process), raise ValueError naming the setting."""
    import llvmlite.binding as llvm

    from symgrad.backends.llvm import vecmath

    x = sg.placeholder("x", (None,), "float32")
    y = [sg.tanh(x) * 2.0 + sg.exp(-x), sg.sum(sg.softplus(x))]
    xv = np.linspace(-5, 5, 1001, dtype=np.float32)
    monkeypatch.delenv("SYMGRAD_LLVM_CPU", raising=False)
    host_key = jit.cache_key("program")
    want = sg.compile(y, backend="llvm")(x=xv)
    assert jit.target_cpu().setting == "host" and jit.target_cpu().name == llvm.get_host_cpu_name()
    monkeypatch.setenv("SYMGRAD_LLVM_CPU", "x86-64-v2")
    cpu = jit.target_cpu()
    assert (cpu.name, cpu.isa) == ("x86-64-v2", "+sse4.1,+popcnt")
    assert vecmath.preferred_width("float32") == 4 and jit.cache_key("program") != host_key
    f = sg.compile(y, backend="llvm")
    assert f._impl.cache == "built"
    for g, w in zip(f(x=xv), want):
        np.testing.assert_allclose(g, w, rtol=2e-6, atol=1e-6)
    assert jit.target_cpu("x86-64-v3").isa == "+avx2,+avx,+fma,+sse4.1,+popcnt"
    assert jit.target_cpu("znver4").isa.startswith("+avx512f,")
    monkeypatch.setenv("SYMGRAD_LLVM_CPU", "host")
    assert jit.cache_key("program") == host_key
    for bad in ("pentium-9000", "x86-64 -v3"):
        monkeypatch.setenv("SYMGRAD_LLVM_CPU", bad)
        with pytest.raises(ValueError, match=rf"SYMGRAD_LLVM_CPU='{bad}': .*x86-64-v2, x86-64-v3"):
            sg.compile(sg.exp(x) * 3.0, backend="llvm")
    missing = [] if "+avx512f" in llvm.get_host_cpu_features().flatten().split(",") else ["avx512f"]
    assert jit.target_cpu("x86-64-v4").missing_on_host() == missing
    monkeypatch.setenv("SYMGRAD_LLVM_CPU", "x86-64-v4")
    if missing:
        with pytest.raises(ValueError, match="avx512f, which this host's CPU .* lacks"):
            sg.compile(sg.exp(x) * 4.0, backend="llvm")
    else:
        np.testing.assert_allclose(sg.compile(sg.exp(x) * 4.0, backend="llvm")(x=xv), np.exp(xv) * 4.0,
                                   rtol=2e-6)


def test_blas_provider_is_chosen_once_and_keys_the_cache(tmp_path: Path) -> None:
    """SYMGRAD_BLAS picks NumPy's OpenBLAS (64-bit integers) or SciPy's (32-bit): both give
    the float64 product, and since the generated calls differ, an object built for one is
    never loaded for the other."""
    from symgrad.backends.llvm import blas

    script = textwrap.dedent("""
        import numpy as np, symgrad as sg
        from symgrad.backends.llvm import blas
        a = sg.placeholder("a", (None, 37), "float32")
        b = sg.placeholder("b", (37, 5), "float64")
        f = sg.compile([a @ a.T, sg.cast(a, "float64") @ b], backend="llvm")
        rng = np.random.default_rng(0)
        av, bv = rng.standard_normal((300, 37)).astype(np.float32), rng.standard_normal((37, 5))
        got = f(a=av, b=bv)
        a64 = av.astype(np.float64)
        err = max(np.abs(got[0] - a64 @ a64.T).max(), np.abs(got[1] - a64 @ bv).max())
        print(blas.provider().name, blas.provider().int_bits, f._impl.cache, err)
    """)
    seen = []
    for want in ("scipy", "numpy", "scipy"):
        env = {**os.environ, "SYMGRAD_CACHE_DIR": str(tmp_path), "SYMGRAD_BLAS": want}
        run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        name, bits, how, err = run.stdout.split()
        assert float(err) < 1e-3
        seen.append((name, bits, how))
    assert seen == [("scipy", "32", "built"), ("numpy", "64", "built"), ("scipy", "32", "disk")]
    # NumPy's, where its OpenBLAS is found, is the default
    if os.environ.get("SYMGRAD_BLAS") is None and blas._numpy_blas() is not None:
        assert blas.provider().name == "numpy" and blas.provider().int_bits == 64


def test_blas_provider_errors_and_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown SYMGRAD_BLAS is refused; without NumPy's OpenBLAS, SYMGRAD_BLAS=numpy is
    refused with the way out, and the default falls back to SciPy's."""
    from symgrad.backends.llvm import blas

    real = blas.provider()
    try:
        monkeypatch.setenv("SYMGRAD_BLAS", "mkl")
        blas.provider.cache_clear()
        with pytest.raises(ValueError, match="SYMGRAD_BLAS='mkl'"):
            blas.provider()
        monkeypatch.setattr(blas, "_numpy_blas", lambda: None)
        monkeypatch.setenv("SYMGRAD_BLAS", "numpy")
        blas.provider.cache_clear()
        with pytest.raises(RuntimeError, match="use SYMGRAD_BLAS=scipy"):
            blas.provider()
        monkeypatch.delenv("SYMGRAD_BLAS")
        blas.provider.cache_clear()
        fallback = blas.provider()
        assert fallback.name == "scipy" and fallback.int_bits == 32 and fallback.sgemm
    finally:
        monkeypatch.undo()
        blas.provider.cache_clear()
        assert blas.provider() == real


def test_matrix_products_pass_the_blas_integer_width() -> None:
    """The generated sgemm/dgemm calls pass m, n, k and the leading dimensions as integers
    of the BLAS's width: 64-bit for NumPy's OpenBLAS, 32-bit for SciPy's and for the C
    routines of a standalone bundle."""
    from symgrad.backends.llvm.codegen import Codegen

    a = sg.placeholder("a", (None, 37), "float32")
    b = sg.placeholder("b", (37, 5), "float32")
    lp = sg.compile(a @ b, backend="llvm")._impl.lp
    texts = {bits: "\n".join(Codegen(lp, blas_int_bits=bits).texts) for bits in (32, 64)}
    for bits, text in texts.items():
        call = next(line for line in text.splitlines() if '@"symgrad_sgemm"(' in line
                    and line.lstrip().startswith("call"))
        args = [arg.split()[-1] for arg in call.split("(", 1)[1].rsplit(")", 1)[0].split(",")]
        m, n, k = args[2:5]
        for v in (m, n, k):
            assert f"{v} = alloca i{bits}" in text

# -- every reference case, convolution, pooling, random numbers -------------------------------
def _reference_cases() -> list[Any]:
    sys.path.insert(0, str(Path(__file__).parent))
    import test_ops_reference as ref  # the NumPy-reference cases of every registered op

    return [ref, ref.CASES]


@pytest.mark.parametrize("chunk", range(8))
def test_every_reference_case_matches_the_numpy_backend(chunk: int) -> None:
    """Each case of ``test_ops_reference`` (one dtype per case, rotating), many cases per
    compiled function; every output is compared with the NumPy backend's."""
    ref, cases = _reference_cases()
    rng = np.random.default_rng(chunk)
    outs: list[Any] = []
    labels: list[str] = []
    values: dict[str, np.ndarray] = {}
    for k, c in enumerate(cases):
        if k % 8 != chunk:
            continue
        dtype = c.dtypes[k % len(c.dtypes)]
        phs = [sg.placeholder(f"c{k}_{name}", shape, spec or dtype)
               for name, (shape, _, spec) in c.inputs.items()]
        vals = ref._values(c, dtype, rng)
        values.update({f"c{k}_{name}": v for name, v in vals.items()})
        out = c.build(*phs)
        for o in out if isinstance(out, (list, tuple)) else [out]:
            outs.append(o)
            labels.append(f"{c.id}-{dtype}")
    with np.errstate(all="ignore"):
        want = sg.compile(outs, backend="numpy")(**values)
    f = sg.compile(outs, backend="llvm")
    got = f(**values)
    # the fast call (when it takes these arguments) and the general path run the same code
    general = f._impl(*[np.asarray(values[name]) for name in f.inputs])
    for g, s in zip(got, general):
        np.testing.assert_array_equal(g, s)
    failures = []
    for label, g, w, o in zip(labels, got, want, outs):
        try:
            assert g.dtype == w.dtype and g.shape == w.shape, f"{g.dtype}{g.shape} vs {w.dtype}{w.shape}"
            rt, at = (2e-5, 2e-6) if o.dtype == "float32" else (1e-11, 1e-13)
            np.testing.assert_allclose(g, w, rtol=rt, atol=at, equal_nan=True)
        except AssertionError as exc:
            failures.append(f"{label}: {str(exc)[:300]}")
    assert not failures, "\n".join(failures)


def test_convolution_and_pooling_with_gradients(rng: np.random.Generator) -> None:
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
    same(outs, {"x": xv, "w": rng.standard_normal((4, 3, 3, 2))}, rtol=1e-10, atol=1e-10)


def test_random_numbers_and_arange() -> None:
    from symgrad.ops.random_ops import random_normal, random_uniform

    x = sg.placeholder("x", (None, 2), "float32")
    seed = sg.placeholder("seed", (), "int64")
    outs = [random_uniform((x.shape[0], 5), seed, 3), random_uniform((2, 3), 7, seed, "float64"),
            sg.arange(x.shape[0]) * 2, random_normal((4,), seed) + x[0, 0],
            sg.transpose(random_uniform((3, x.shape[0]), seed, 1))]
    same(outs, {"x": np.ones((6, 2), np.float32), "seed": np.int64(-42)}, rtol=1e-6)


def test_bounds_checking_build_catches_a_bad_access(monkeypatch: pytest.MonkeyPatch) -> None:
    """With SYMGRAD_LLVM_CHECK_BOUNDS=1 every load and store is checked (the conformance
    suite passes in that mode too); here an access is corrupted on purpose to see it fire."""
    from dataclasses import replace

    from symgrad.backends.base import Program
    from symgrad.backends.llvm import codegen
    from symgrad.backends.llvm.runtime import LLVMFunction
    from symgrad.backends.lower import lower

    x = sg.placeholder("x", (None,), "float32")
    y = sg.exp(x) + 1.0
    lp = lower(Program([x], [y], {"x.0": (0, 0)}))
    (kern,) = lp.kernels
    kern.operands[0] = replace(kern.operands[0], offset=3)  # reads 3 elements past the end
    text = "\n".join(codegen.Codegen(lp, jit.process_triple(),
                                     str(jit.target_machine().target_data),
                                     check_bounds=True).texts)
    engine = jit.Engine([jit.optimize_to_object(text)])
    fn = LLVMFunction(lp, engine, codegen.module_info(lp), "built")
    with pytest.raises(RuntimeError, match="outside a buffer"):
        fn(np.ones(5, np.float32))
