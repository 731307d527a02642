"""The numpy backend's memory: temporaries are dropped after their last use, and a sum
of slice gradients is computed into one buffer, not one zero-padded tensor per slice."""

from __future__ import annotations

import ast
import tracemalloc
from typing import Any

import numpy as np
import pytest

import symgrad as sg


def _peak_bytes(fn: Any, *args: Any) -> int:
    """Peak memory NumPy allocates during one call, above what was live before it."""
    fn(*args)  # warm: first-call allocations (caches, the error state) are not the program's
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        out = fn(*args)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    del out
    return peak


def _body(source: str) -> list[ast.stmt]:
    (fn,) = ast.parse(source).body
    assert isinstance(fn, ast.FunctionDef)
    return fn.body


def _names_read(stmt: ast.stmt) -> set[str]:
    return {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _check_drops(source: str) -> int:
    """Assert that every local the body assigns, other than the returned ones, is deleted
    right after the statement that reads it last and never read again; return how many."""
    body = _body(source)
    ret = body[-1]
    assert isinstance(ret, ast.Return)
    returned = _names_read(ret)
    (fn,) = ast.parse(source).body
    assert isinstance(fn, ast.FunctionDef)
    params = {a.arg for a in fn.args.args}
    assigned: dict[str, int] = {}
    deleted: dict[str, int] = {}
    last_read: dict[str, int] = {}
    for k, stmt in enumerate(body):
        if isinstance(stmt, ast.Delete):
            for t in stmt.targets:
                assert isinstance(t, ast.Name)
                assert t.id not in params, f"an input is deleted: {t.id}"
                assert t.id not in returned, f"an output is deleted: {t.id}"
                deleted[t.id] = k
            continue
        for name in _names_read(stmt):
            assert name not in deleted, f"{name} read after its del:\n{source}"
            last_read[name] = k
        if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
            assigned.setdefault(stmt.targets[0].id, k)
    sizes = {n for n, k in assigned.items() if ".shape[" in ast.unparse(body[k])}  # x.shape[0]
    temps = set(assigned) - returned - sizes
    for name in temps:
        assert name in deleted, f"{name} is never deleted:\n{source}"
        end = last_read.get(name, assigned[name])
        between = body[end + 1:deleted[name]]
        assert all(isinstance(s, ast.Delete) for s in between), \
            f"{name} is deleted later than its last use:\n{source}"
    return len(temps)


# -- temporaries -------------------------------------------------------------------------------------
def test_elementwise_chain_holds_a_few_arrays_not_all() -> None:
    n, depth = 250_000, 50
    x = sg.placeholder("x", (n,), "float64")
    y = x
    for k in range(depth):
        y = sg.sin(y) if k % 2 else sg.mul(sg.cos(y), 1.5)
    f = sg.compile(y, backend="numpy")
    assert _check_drops(f.source) >= depth
    xv = np.linspace(-2.0, 2.0, n)
    want = xv.copy()
    for k in range(depth):
        want = np.sin(want) if k % 2 else np.cos(want) * 1.5
    np.testing.assert_allclose(f(xv), want, rtol=1e-12, atol=1e-12)
    peak = _peak_bytes(f, xv)
    assert peak < 5 * xv.nbytes, f"peak {peak / xv.nbytes:.1f} arrays for a chain of {depth} ops"


def test_gradient_source_drops_every_temporary() -> None:
    x = sg.placeholder("x", (3, 4), "float64")
    w = sg.placeholder("w", (4, 2), "float64")
    h = sg.tanh(sg.matmul(x, w))
    loss = sg.sum(sg.exp(h) * h) + sg.sum(sg.sigmoid(x[:, 1:3]))
    gx, gw = sg.grad(loss, [x, w])
    f = sg.compile([loss, gx, gw, h], backend="numpy")
    assert _check_drops(f.source) > 5
    xv = np.random.default_rng(0).standard_normal((3, 4))
    wv = np.random.default_rng(1).standard_normal((4, 2))
    hv = np.tanh(xv @ wv)
    dh = np.exp(hv) * (1 + hv) * (1 - hv * hv)
    s = 1 / (1 + np.exp(-xv[:, 1:3]))
    gx_want = dh @ wv.T
    gx_want[:, 1:3] += s * (1 - s)
    out = f(xv, wv)
    np.testing.assert_allclose(out[0], np.sum(np.exp(hv) * hv) + np.sum(s), rtol=1e-12)
    np.testing.assert_allclose(out[1], gx_want, rtol=1e-12)
    np.testing.assert_allclose(out[2], xv.T @ dh, rtol=1e-12)
    np.testing.assert_allclose(out[3], hv, rtol=1e-12)


# -- sums of slice gradients -------------------------------------------------------------------------
def _tree_sum(terms: list[Any]) -> Any:
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    return total


def test_sum_of_slice_gradients_peaks_at_a_few_full_tensors() -> None:
    rows = 64
    x = sg.placeholder("x", (rows, 1000), "float64")
    loss = _tree_sum([sg.sum(sg.sin(x[k:k + 1, :])) for k in range(rows)])
    f = sg.compile(sg.grad(loss, x), backend="numpy")
    assert "slice_grad" not in f.source  # every slice is added into one buffer
    assert f.source.count("+=") == rows
    xv = np.random.default_rng(0).standard_normal((rows, 1000))
    np.testing.assert_allclose(f(xv), np.cos(xv), rtol=1e-12)
    peak = _peak_bytes(f, xv)
    assert peak < 4 * xv.nbytes, f"peak {peak / xv.nbytes:.1f} full tensors for {rows} slices"


def test_overlapping_and_reversed_slices_with_a_dense_term() -> None:
    x = sg.placeholder("x", (4, 6), "float32")
    parts = [sg.exp(x[:, 1:4]), x[:, 2:5] * 3.0, x[::-1, ::2], x[1:3, 5::-2], x[:, 0:0]]
    loss = sg.sum(x * x) + _tree_sum([sg.sum(p * p) for p in parts])
    f = sg.compile(sg.grad(loss, x), backend="numpy")
    assert "slice_grad" not in f.source
    xv = np.random.default_rng(2).standard_normal((4, 6)).astype(np.float32)
    want = 2 * xv
    want[:, 1:4] += 2 * np.exp(2 * xv[:, 1:4])
    want[:, 2:5] += 18 * xv[:, 2:5]
    want[:, ::2] += 2 * xv[:, ::2]
    want[1:3, 5::-2] += 2 * xv[1:3, 5::-2]
    got = f(xv)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_slices_over_a_symbolic_axis() -> None:
    x = sg.placeholder("x", (None, 5), "float64")
    loss = sg.sum(sg.sin(x[:, 1:3])) + sg.sum(x[:, 4:1:-1] * 2.0) + sg.sum(x[1:, :1] ** 2)
    f = sg.compile(sg.grad(loss, x), backend="numpy")
    assert "slice_grad" not in f.source
    for n in (1, 3, 6):
        xv = np.random.default_rng(n).standard_normal((n, 5))
        want = np.zeros_like(xv)
        want[:, 1:3] += np.cos(xv[:, 1:3])
        want[:, 4:1:-1] += 2.0
        want[1:, :1] += 2 * xv[1:, :1]
        np.testing.assert_allclose(f(xv), want, rtol=1e-12)


@pytest.mark.parametrize("steps", [3, 7])
def test_unrolled_lstm_gradients_match_llvm(steps: int) -> None:
    model = sg.nn.Sequential([sg.nn.Embedding(11, 5), sg.nn.LSTM(5, 6, return_sequences=True),
                              sg.nn.Dense(6, 11)])
    x = sg.placeholder("x", (2, steps), "int64")
    y = sg.placeholder("y", (2, steps), "int64")
    loss = sg.nn.cross_entropy(model(x), y)
    params = model.params
    names = sorted(params)
    outs = [loss, *sg.grad(loss, [params[n] for n in names])]
    inputs = [x, y, *(params[n] for n in names)]
    f_np = sg.compile(outs, inputs=inputs, backend="numpy")
    f_llvm = sg.compile(outs, inputs=inputs, backend="llvm")
    assert "slice_grad" not in f_np.source
    _check_drops(f_np.source)
    rng = np.random.default_rng(steps)
    values = model.init(steps)
    args = [rng.integers(0, 11, (2, steps)), rng.integers(0, 11, (2, steps)), *(values[n] for n in names)]
    for a, b, name in zip(f_np(*args), f_llvm(*args), ["loss", *names]):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6, err_msg=name)


def _lstm_gradient_peak(steps: int, batch: int = 8, hidden: int = 32) -> int:
    model = sg.nn.Sequential([sg.nn.Embedding(20, 8), sg.nn.LSTM(8, hidden, return_sequences=True),
                              sg.nn.Dense(hidden, 20)])
    x = sg.placeholder("x", (batch, steps), "int64")
    y = sg.placeholder("y", (batch, steps), "int64")
    params = model.params
    names = sorted(params)
    grads = sg.grad(sg.nn.cross_entropy(model(x), y), [params[n] for n in names])
    f = sg.compile(grads, inputs=[x, y, *(params[n] for n in names)], backend="numpy")
    rng = np.random.default_rng(0)
    values = model.init(0)
    return _peak_bytes(f, rng.integers(0, 20, (batch, steps)), rng.integers(0, 20, (batch, steps)),
                       *(values[n] for n in names))


def test_unrolled_lstm_gradient_memory_grows_linearly_with_length() -> None:
    # each step's gradient of x_t @ w_x + b is a slice of one (batch, T, 4 * hidden) tensor
    short, long = _lstm_gradient_peak(16), _lstm_gradient_peak(64)
    full = 8 * 64 * 4 * 32 * 4  # that tensor at T = 64, float32
    assert long < 5 * full, f"peak {long / full:.1f} full gradient tensors at T = 64"
    assert long < 5 * short, f"peak grew {long / short:.1f}x for 4x the length"


# -- in-place additions never touch what others still hold -------------------------------------------
def test_dense_terms_that_are_inputs_constants_or_outputs_are_not_written() -> None:
    x = sg.placeholder("x", (5, 4), "float64")
    w = sg.placeholder("w", (5, 4), "float64")
    c = np.arange(20.0).reshape(5, 4)
    e = sg.exp(x)
    # d/dx: w (an input) + c (a constant) + slices; e is an output and a gradient term
    loss = sg.sum(x * w) + sg.sum(x * c) + sg.sum(sg.exp(x[1:3])) + sg.sum(x[:, :2] ** 2) + sg.sum(e)
    g = sg.grad(loss, x)
    f = sg.compile([g, e, w * 1.0], backend="numpy")
    xv = np.random.default_rng(3).standard_normal((5, 4))
    wv = np.random.default_rng(4).standard_normal((5, 4))
    x0, w0 = xv.copy(), wv.copy()
    want = wv + c + np.exp(xv)
    want[1:3] += np.exp(xv[1:3])
    want[:, :2] += 2 * xv[:, :2]
    for _ in range(2):  # a second call sees the same constants
        got_g, got_e, got_w = f(xv, wv)
        np.testing.assert_allclose(got_g, want, rtol=1e-12)
        np.testing.assert_allclose(got_e, np.exp(xv), rtol=1e-12)
        np.testing.assert_array_equal(got_w, wv)
        np.testing.assert_array_equal(xv, x0)
        np.testing.assert_array_equal(wv, w0)
    np.testing.assert_array_equal(c, np.arange(20.0).reshape(5, 4))


def test_outputs_never_alias() -> None:
    x = sg.placeholder("x", (6, 3), "float64")
    e = sg.exp(x)
    loss = sg.sum(e[1:4]) + sg.sum(e[2:] * x[2:])
    g = sg.grad(loss, x)
    outs = [g, e, e[1:], sg.grad(sg.sum(x[1:3] * 2.0), x), g]
    f = sg.compile(outs, backend="numpy")
    xv = np.random.default_rng(5).standard_normal((6, 3))
    got = f(xv)
    for i in range(len(got)):
        for j in range(i + 1, len(got)):
            assert not np.shares_memory(got[i], got[j]), (i, j)
    before = [a.copy() for a in got]
    got[0][...] = -1.0
    for a, b in zip(got[1:], before[1:]):
        np.testing.assert_array_equal(a, b)
