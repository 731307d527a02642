"""Regression tests for bugs a differential fuzzer found (issue 14, bug classes 1, 4, 7,
8 and 9), each on the numpy and llvm backends, against NumPy."""

from __future__ import annotations

import gc
import itertools

import numpy as np
import pytest

import symgrad as sg
from conftest import assert_like_numpy

BACKENDS = ["numpy", "llvm"]


# -- 1: negative-step slices whose start is before element 0 -----------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n, key", [
    (3, slice(-5, None, -1)), (2, slice(-3, 0, -1)), (3, slice(-4, -5, -1)), (3, slice(-1, -5, -1)),
    (4, slice(5, -6, -2)), (3, slice(None, None, -1)), (3, slice(0, None, -1)), (3, slice(1, -3, -1)),
])
def test_negative_step_slices_like_numpy(backend: str, n: int, key: slice) -> None:
    x = sg.placeholder("x", shape=(n,), dtype="float64")
    xv = np.arange(1.0, n + 1.0)
    y = x[key]
    loss = sg.sum(y * y) / 2
    got, grad = sg.compile([y, sg.grad(loss, x)], backend=backend)(x=xv)
    assert_like_numpy(got, xv[key])
    want_grad = np.zeros(n)
    want_grad[key] = xv[key]
    assert_like_numpy(grad, want_grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_variance_of_an_empty_negative_step_slice_is_nan(backend: str) -> None:
    v = sg.placeholder("v", shape=(2,), dtype="float64")
    with pytest.warns(RuntimeWarning):
        want = np.var(np.array([1.0, 2.0])[-3:0:-1])
    got = sg.compile(sg.var(v[-3:0:-1]), backend=backend)(v=np.array([1.0, 2.0]))
    assert np.isnan(got) and np.isnan(want)


# -- 4: outputs never share memory ---------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_outputs_share_no_memory(backend: str) -> None:
    x = sg.placeholder("x", shape=(4,), dtype="float64")
    e = sg.exp(x)
    outs = [e[1:], e, e.reshape((2, 2)), x, x[::2], sg.grad(sg.sum(e), x), sg.grad(sg.sum(e[1:]), x)]
    xv = np.zeros(4)
    got = sg.compile(outs, backend=backend)(x=xv)
    for (i, a), (j, b) in itertools.combinations(enumerate(got), 2):
        assert not np.shares_memory(a, b), (i, j)
    for a in got:
        assert not np.shares_memory(a, xv)
    got[1][:] = 7.0
    np.testing.assert_array_equal(got[0], np.ones(3))
    np.testing.assert_array_equal(got[2], np.ones((2, 2)))


# -- 7: placeholders used only for their sizes are inputs ------------------------------------
SIZE_ONLY = {
    "zeros_like": (lambda x: sg.zeros_like(x), lambda v: np.zeros_like(v)),
    "arange": (lambda x: sg.arange(x.shape[1]), lambda v: np.arange(v.shape[1])),
    "full": (lambda x: sg.full(x.shape, 2.0, dtype="float64"), lambda v: np.full(v.shape, 2.0)),
    "sum_ones_like": (lambda x: sg.sum(sg.ones_like(x)), lambda v: np.sum(np.ones_like(v))),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", sorted(SIZE_ONLY))
def test_placeholders_used_only_for_sizes_are_inputs(backend: str, case: str) -> None:
    build, reference = SIZE_ONLY[case]
    x = sg.placeholder("x", shape=(None, None), dtype="float64")
    f = sg.compile(build(x), backend=backend)
    assert f.inputs == ["x"]
    for xv in (np.ones((2, 3)), np.ones((4, 1))):
        assert_like_numpy(f(x=xv), reference(xv))


def test_a_size_only_input_is_the_placeholder_asked_for_last() -> None:
    x = sg.placeholder("x", shape=(None,), dtype="float32")
    other = sg.placeholder("x", shape=(None, 2), dtype="float64")  # another model's, still alive
    assert other.shape[0] == x.shape[0]  # both carry the size "x.0"
    again = sg.placeholder("x", shape=(None,), dtype="float32")  # hash-consed: x itself
    assert again is x
    f = sg.compile(sg.zeros_like(x) + 1.0)
    assert_like_numpy(f(x=np.ones(3, np.float32)), np.ones(3, np.float32))
    assert f.inputs == ["x"] and f(np.ones(2, np.float32)).shape == (2,)


def test_a_size_with_no_live_placeholder_names_the_remedy() -> None:
    n = sg.placeholder("gone", shape=(None,), dtype="float64").shape[0]
    gc.collect()
    with pytest.raises(ValueError, match="inputs="):
        sg.compile(sg.zeros((n,)))


# -- 8: inner / dot over a contracted axis of length 0 ----------------------------------------
CONTRACTIONS = [("inner", sa, sb) for sa, sb in [((0,), (0,)), ((2, 0), (3, 0)), ((2, 3, 0), (4, 0))]] + [
    ("dot", sa, sb) for sa, sb in [((0,), (0,)), ((2, 0), (0, 4)), ((2, 3, 0), (0, 4)), ((2, 0), (5, 0, 3))]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn, sa, sb", CONTRACTIONS)
def test_contraction_over_an_empty_axis_gives_zeros(backend: str, fn: str, sa: tuple[int, ...],
                                                    sb: tuple[int, ...]) -> None:
    av, bv = np.ones(sa), np.ones(sb)
    a = sg.placeholder("a", shape=sa, dtype="float64")
    b = sg.placeholder("b", shape=sb, dtype="float64")
    assert_like_numpy(sg.compile(getattr(sg, fn)(a, b), backend=backend)(av, bv), getattr(np, fn)(av, bv))


# -- 9: inner of integer vectors keeps their dtype ----------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_inner_of_integer_vectors_keeps_the_dtype(backend: str, dtype: str) -> None:
    a = sg.placeholder("a", shape=(3,), dtype=dtype)
    b = sg.placeholder("b", shape=(3,), dtype=dtype)
    av = np.array([1, 2, 3], dtype)
    bv = np.array([4, -5, 6], dtype)
    assert sg.inner(a, b).dtype == dtype
    assert_like_numpy(sg.compile(sg.inner(a, b), backend=backend)(av, bv), np.inner(av, bv))
