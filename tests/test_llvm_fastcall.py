"""The LLVM backend's fast call (backends/llvm/fastcall.py): one native function checks the
arguments, allocates the outputs and runs the program; anything it does not accept goes
back to the general path, which converts or raises. Both paths must agree exactly."""

from __future__ import annotations

import sys
import threading
import warnings

import numpy as np
import pytest

import symgrad as sg
from symgrad.backends.llvm import fastcall
from symgrad.errors import InputError

pytestmark = pytest.mark.skipif(not fastcall.available(),
                                reason="this CPython/NumPy does not have the layouts the fast call checks")


def _general(f: sg.Function, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """The general native path (the ctypes entry), with arguments already converted."""
    out: tuple[np.ndarray, ...] = f._impl(*arrays)
    return out


def _takes_fast_path(f: sg.Function, *args: object) -> bool:
    assert f._cfast is not None
    return f._cfast(*args) is not f._slow


def test_scalar_function_and_both_gradients() -> None:
    a, b = sg.placeholder("a", (), "float32"), sg.placeholder("b", (), "float32")
    y = a * b + 1.0
    f = sg.compile([y, *sg.grad(y, [a, b])], [a, b], backend="llvm")
    for args in [(np.float32(1.5), np.float32(-2.0)),
                 (np.array(1.5, np.float32), np.array(-2.0, np.float32)),
                 (1.5, -2.0),
                 (np.float32(1.5), -2.0)]:
        assert _takes_fast_path(f, *args)
        out = f(*args)
        assert isinstance(out, tuple) and len(out) == 3
        for o, want in zip(out, [-2.0, -2.0, 1.5]):
            assert type(o) is np.ndarray and o.dtype == np.float32 and o.shape == ()
            assert float(o) == want
        assert [float(o) for o in f(a=args[0], b=args[1])] == [-2.0, -2.0, 1.5]
    # handed back, then converted by the general path: a Python int, a float64 array, bools
    for args in [(3, 2), (np.array(3.0), np.float64(2.0)), (True, np.bool_(True))]:
        assert not _takes_fast_path(f, *args)
        assert [float(o) for o in f(*args)] == [float(args[0]) * float(args[1]) + 1,
                                                 float(args[1]), float(args[0])]


def test_python_floats_round_like_numpy_and_overflow_takes_the_general_path() -> None:
    a = sg.placeholder("a", (), "float32")
    f = sg.compile(a * 1.0, [a], backend="llvm")
    for v in [0.1, -1e-45, 3.4028235e38, float("inf"), -0.0, 1e-320]:
        assert _takes_fast_path(f, v)
        got = f(v)
        assert got.dtype == np.float32 and got.tobytes() == np.asarray(v).astype(np.float32).tobytes()
    assert np.isnan(f(float("nan")))
    assert not _takes_fast_path(f, 1e300)  # NumPy warns about this cast: the general path does too
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert f(1e300) == np.inf
    d = sg.placeholder("d", (), "float64")
    g = sg.compile(d + 1.0, [d], backend="llvm")
    assert _takes_fast_path(g, 0.25) and _takes_fast_path(g, np.float64(0.25))
    assert g(0.25) == 1.25 and g(1e300) == 1e300


def test_arrays_with_changing_batch_sizes(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (None, 3), "float32")
    w = sg.placeholder("w", (3,), "float32")
    loss = sg.mean((sg.tanh(x @ w + 1.0) - 2.0) ** 2)
    outs = [loss, sg.grad(loss, w), x * 2.0]
    f = sg.compile(outs, backend="llvm")
    ref = sg.compile(outs, backend="numpy")
    wv = rng.standard_normal(3).astype(np.float32)
    for n in [4, 7, 4, 1, 0, 4]:
        xv = rng.standard_normal((n, 3)).astype(np.float32)
        f(xv, wv)  # prepares these sizes
        if n:
            assert _takes_fast_path(f, xv, wv)
        got = f(x=xv, w=wv)
        want = ref(x=xv, w=wv)
        for g, s, r in zip(got, _general(f, xv, wv), want):
            assert g.dtype == r.dtype and g.shape == r.shape
            np.testing.assert_array_equal(g, s)  # the same machine code
            np.testing.assert_allclose(g, r, rtol=2e-5, atol=1e-6)
        again = f(xv, wv)
        for g, h in zip(got, again):  # fresh arrays every call, never an input's memory
            assert g is not h and not np.shares_memory(g, h)
            assert not np.shares_memory(g, xv) and not np.shares_memory(g, wv)


def test_what_the_fast_call_hands_back_still_works_or_raises(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (None, 3), "float32")
    w = sg.placeholder("w", (3, 3), "float32")
    f = sg.compile([sg.exp(x) @ w, sg.sum(x * 2.0, 0)], backend="llvm")
    ref = sg.compile([sg.exp(x) @ w, sg.sum(x * 2.0, 0)], backend="numpy")
    base = rng.standard_normal((8, 6)).astype(np.float32)
    wv = rng.standard_normal((3, 3)).astype(np.float32)
    raw = np.zeros(4 * 24 + 1, np.uint8)
    misaligned = np.frombuffer(raw.data, np.float32, 24, offset=1).reshape(8, 3)
    misaligned[...] = base[:, :3]

    class Sub(np.ndarray):
        pass

    readonly = wv.copy()
    readonly.setflags(write=False)
    f(base[:, :3].copy(), wv)
    handed_back = [
        (base[:, ::2], wv),                              # strided
        (np.asfortranarray(base[:, :3]), wv),            # Fortran order
        (base[:, :3].astype(">f4"), wv.astype(">f4")),   # big-endian
        (misaligned, wv),                                # not aligned
        (base[:, :3].astype(np.float64), wv),            # cast by the general path
        (base[:, :3].copy().view(Sub), wv),              # an ndarray subclass
        (base[:, :3].tolist(), wv),                      # a nested list
    ]
    for xv, w_ in handed_back:
        assert not _takes_fast_path(f, xv, w_)
        for got, want in zip(f(xv, w_), ref(x=np.asarray(xv), w=np.asarray(w_))):
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    assert _takes_fast_path(f, base[:, :3].copy(), readonly)  # read-only inputs are fine
    with pytest.raises(InputError, match="'w'"):
        f(base[:, :3].copy(), np.ones((3, 4), np.float32))
    with pytest.raises(InputError, match="'x'"):
        f(np.ones((2, 3, 1), np.float32), wv)
    with pytest.raises(InputError, match="at most 2"):
        f(base[:, :3].copy(), wv, wv)
    with pytest.raises(InputError, match="missing input: w"):
        f(x=base[:, :3].copy())
    with pytest.raises(InputError, match="unknown input 'v'"):
        f(x=base[:, :3].copy(), v=wv)


def test_shared_size_symbols_are_checked() -> None:
    x = sg.placeholder("x", ("n",), "float64")
    y = sg.placeholder("y", ("n",), "float64")
    f = sg.compile(x * y, backend="llvm")
    assert f(np.ones(3), np.full(3, 2.0)).tolist() == [2.0, 2.0, 2.0]
    assert not _takes_fast_path(f, np.ones(3), np.ones(4))
    with pytest.raises(InputError, match="size"):
        f(np.ones(3), np.ones(4))


def test_single_output_and_one_output_list() -> None:
    x = sg.placeholder("x", (2,), "float64")
    single = sg.compile(x + 1.0, backend="llvm")
    listed = sg.compile([x + 1.0], backend="llvm")
    xv = np.array([1.0, 2.0])
    assert type(single(xv)) is np.ndarray and single(xv).tolist() == [2.0, 3.0]
    out = listed(xv)
    assert type(out) is tuple and len(out) == 1 and out[0].tolist() == [2.0, 3.0]


def test_errors_raised_inside_the_program_are_reported() -> None:
    labels = sg.placeholder("labels", (None,), "int64")
    f = sg.compile(sg.one_hot(labels, 3), backend="llvm")
    np.testing.assert_array_equal(f(np.array([0, 2])), np.eye(3)[[0, 2]])
    assert _takes_fast_path(f, np.array([1, 0]))
    with pytest.raises(InputError, match="one_hot: a label is out of range"):
        f(np.array([0, 5]))
    np.testing.assert_array_equal(f(np.array([2, 1])), np.eye(3)[[2, 1]])


def test_reference_counts_do_not_drift() -> None:
    a, b = sg.placeholder("a", (4,), "float64"), sg.placeholder("b", (), "float64")
    f = sg.compile([a * b, sg.sum(a)], backend="llvm")
    av, bv = np.arange(4.0), np.float64(2.0)
    before = sys.getrefcount(av), sys.getrefcount(bv), sys.getrefcount(f._slow)
    for _ in range(1000):
        out = f(av, bv)
    f(av, np.float32(2.0))  # handed back, converted
    assert (sys.getrefcount(av), sys.getrefcount(bv), sys.getrefcount(f._slow)) == before
    assert sys.getrefcount(out[0]) == sys.getrefcount(np.empty(3)) + 1  # `out` holds one
    assert out[0].base is None and out[0].flags.owndata and out[0].flags.writeable


def test_threads_calling_at_once(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (None,), "float64")
    f = sg.compile([sg.sum(sg.sin(x) ** 2), sg.cos(x) * 3.0], backend="llvm")
    inputs = [rng.standard_normal(17 + k) for k in range(4)]
    wants = [(np.sum(np.sin(v) ** 2), np.cos(v) * 3.0) for v in inputs]
    errors: list[str] = []

    def worker(k: int) -> None:
        for i in range(300):
            v = inputs[(k + i) % 4]
            s, c = f(v)
            ws, wc = wants[(k + i) % 4]
            if not (np.isclose(s, ws, rtol=1e-12) and np.allclose(c, wc, rtol=1e-12)):
                errors.append(f"thread {k}, call {i}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:5]


def test_no_fast_call_where_calls_need_more_checks() -> None:
    x = sg.placeholder("x", (3,), "float64")
    assert sg.compile(x + 1.0, backend="llvm", check_nan=True)._cfast is None
    with pytest.raises(InputError, match="NaN"):
        sg.compile(x + 1.0, backend="llvm", check_nan=True)(np.array([1.0, np.nan, 2.0]))
    dup = sg.compile([x + 1.0, x + 1.0], backend="llvm")  # one buffer returned twice
    assert dup._cfast is None
    o1, o2 = dup(np.ones(3))
    assert not np.shares_memory(o1, o2)
    assert sg.compile(x + 1.0, backend="numpy")._cfast is None
