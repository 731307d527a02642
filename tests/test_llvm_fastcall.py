"""The LLVM backend's fast call (backends/llvm/fastcall.py): one native function checks the
arguments, allocates the outputs and runs the program; anything it does not accept goes
back to the general path, which converts or raises. Both paths must agree exactly."""

from __future__ import annotations

import gc
import sys
import threading
import time
import warnings
from typing import Any

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
    handed_back: list[tuple[Any, Any]] = [(3, 2), (np.array(3.0), np.float64(2.0)),
                                         (True, np.bool_(True))]
    for p, q in handed_back:
        assert not _takes_fast_path(f, p, q)
        assert [float(o) for o in f(p, q)] == [float(p) * float(q) + 1, float(q), float(p)]


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
    with pytest.raises(InputError, match=r"one_hot: label 5 is out of range \[0, 3\) \(op one_hot built at "):
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


# -- stress: lifetimes, table rewrites, unusual arguments ----------------------------------------
def _table_matches_state(fast: fastcall.FastCall) -> bool:
    """Whether every word of the table describes the one state it holds."""
    t, lay, st = fast.table, fast.layout, fast.state
    if t[fastcall.T_FRAME] != st.frame_addr or t[fastcall.T_DIMS] != st.dims_addr:
        return False
    if list(t[lay.symbols:lay.symbols + len(st.dims)]) != list(st.dims):
        return False
    for base, (shape, dtype) in zip(lay.outputs, st.out_specs):
        if t[base] != dtype.num or list(t[base + 1:base + 1 + len(shape)]) != list(shape):
            return False
    return True


def test_a_table_write_interrupted_by_another_leaves_one_whole_state() -> None:
    # Python may switch threads between two writes of the table; a second thread then
    # prepared other sizes in the middle, and the table mixed one state's frame with
    # the other's output shapes (the program wrote past its outputs).
    from symgrad.backends.llvm.runtime import _State

    x = sg.placeholder("x", (None,), "float64")
    f = sg.compile([sg.sum(x), x * 2.0], backend="llvm")
    impl = f._impl
    fast = impl._fast
    assert fast is not None
    small, large = _State(impl, (3,)), _State(impl, (50,))
    switched: list[bool] = []

    class Interrupted:
        """``small``, with the other thread's write run when its output shapes are read."""

        def __getattr__(self, name: str) -> object:
            if name == "out_specs" and not switched:
                switched.append(True)
                fast.prepare(large)
            return getattr(small, name)

    fast.prepare(Interrupted())
    assert switched and _table_matches_state(fast)
    for n in [3, 50, 3, 50]:
        xv = np.arange(float(n))
        s, d = f(xv)
        assert float(s) == xv.sum() and d.shape == (n,) and d.tolist() == (xv * 2).tolist()
    assert _table_matches_state(fast)


def test_threads_switching_sizes_while_others_call_fast(rng: np.random.Generator) -> None:
    # every call changes its thread's sizes, so the table is rewritten all the time, with
    # thread switches as frequent as Python allows
    x = sg.placeholder("x", (None,), "float64")
    f = sg.compile([sg.sum(sg.sin(x) ** 2), sg.cos(x) * 3.0], backend="llvm")
    inputs = [rng.standard_normal(5 + 40 * k) for k in range(6)]
    wants = [(np.sum(np.sin(v) ** 2), np.cos(v) * 3.0) for v in inputs]
    errors: list[str] = []

    def worker(k: int) -> None:
        for i in range(800):
            j = (k + i) % len(inputs)
            s, c = f(inputs[j])
            if c.shape != wants[j][1].shape or not (
                    np.isclose(s, wants[j][0], rtol=1e-12) and np.allclose(c, wants[j][1], rtol=1e-12)):
                errors.append(f"thread {k}, call {i}, size {inputs[j].size}: shape {c.shape}")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[:5]
    assert _table_matches_state(f._impl._fast)


def test_a_builtin_outliving_its_function_keeps_what_it_reads() -> None:
    from symgrad.backends.llvm import clear_memory_cache

    y = sg.placeholder("y", (None,), "float64")
    x = sg.placeholder("x", (3,), "float64")
    c = sg.constant(np.array([1.0, -1.0, 2.0]))
    f = sg.compile([y * 3.0 + 1.0, x + c], [y, x], backend="llvm")
    xv = np.arange(3.0)
    f(xv, xv)
    builtin: Any = f._cfast
    assert builtin is not None
    del f
    clear_memory_cache()  # the memory cache no longer holds the machine code either
    gc.collect()
    junk = [np.full(9, 1e300) for _ in range(2000)] + [bytearray(b"\xff" * 48) for _ in range(2000)]
    for _ in range(3):
        a, b = builtin(xv, xv)
        assert a.tolist() == [1.0, 4.0, 7.0] and b.tolist() == [1.0, 0.0, 4.0]
    del junk


def test_many_functions_created_called_and_dropped_under_collection() -> None:
    from symgrad.backends.llvm import clear_memory_cache

    x = sg.placeholder("x", (None,), "float64")
    xv = np.arange(5.0)
    kept: list[Any] = []
    for k in range(150):
        f = sg.compile([x * 2.0 + 1.0, sg.sum(x)], backend="llvm")
        g = sg.compile(x * 2.0 + 1.0, backend="llvm")  # the same machine code, one output
        for out in (f(xv), f(x=xv), (g(xv),), (g(x=xv),)):
            assert out[0].tolist() == [1.0, 3.0, 5.0, 7.0, 9.0]
        assert float(f(xv)[1]) == 10.0
        kept.append(f._cfast if k % 3 else g._cfast)
        del f, g
        if k % 25 == 0:
            clear_memory_cache()
            gc.collect()
            kept = kept[-5:]
            for b in kept:  # builtins of dropped functions, some single, some not
                out = b(xv)
                assert (out if type(out) is np.ndarray else out[0]).tolist() == [1.0, 3.0, 5.0, 7.0, 9.0]
    for k in range(3):  # distinct programs: engines built and freed
        f = sg.compile(x * float(k) - 1.0, backend="llvm")
        assert f(xv).tolist() == (xv * k - 1.0).tolist()
        del f
        clear_memory_cache()
        gc.collect()


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "bool"])
def test_zero_d_inputs_in_every_form(dtype: str) -> None:
    a = sg.placeholder("a", (), dtype)
    v = sg.placeholder("v", ("n",), dtype)
    f = sg.compile([sg.cast(a, "float64") * 2.0 + sg.cast(v, "float64"), a, v], backend="llvm")
    dt = np.dtype(dtype)
    vv = np.array([1, 0, 1], dt)
    value = True if dtype == "bool" else 3 if dt.kind == "i" else 1.5
    fast_forms: list[object] = [np.array(value, dt), dt.type(value)]
    if dt.kind == "f":
        fast_forms.append(float(value))
    slow_forms: list[object] = [[value], np.array([value], dt)[0:1].reshape(()).astype(">" + dt.str[1:])
                                if dt.itemsize > 1 else np.array(value, np.int8)]
    if dt.kind != "b":
        slow_forms.append(np.array(value, "f2" if dt.kind == "f" else "i2"))
    if dt.kind == "i":
        slow_forms.append(int(value))
    want = [float(value) * 2.0 + vv.astype(np.float64), float(value)]
    f(np.array(value, dt), vv)
    for form in fast_forms:
        assert _takes_fast_path(f, form, vv), repr(form)
        got = f(form, vv)
        np.testing.assert_array_equal(got[0], want[0])
        assert got[1].dtype == dt and got[1].shape == () and float(got[1]) == want[1]
        assert got[2].dtype == dt and got[2].tolist() == vv.tolist() and not np.shares_memory(got[2], vv)
    for form in slow_forms:
        assert not _takes_fast_path(f, form, vv), repr(form)
        if isinstance(form, list):
            with pytest.raises(InputError, match="'a'"):
                f(form, vv)
            continue
        if np.asarray(form).dtype.kind == "i" and dt.kind == "b":
            continue  # numbers to bool: refused by the general path (tested elsewhere)
        got = f(form, vv)
        np.testing.assert_array_equal(got[0], want[0])


def test_zero_size_inputs_and_outputs() -> None:
    x = sg.placeholder("x", (None, 3), "float32")
    y = sg.placeholder("y", (None,), "int64")
    f = sg.compile([sg.sum(x, 1) * 2.0, sg.sum(x), sg.cast(y, "float32") + 1.0], backend="llvm")
    for n, m in [(0, 0), (2, 0), (0, 4), (0, 0)]:
        xv, yv = np.ones((n, 3), np.float32), np.arange(m)
        f(xv, yv)
        assert _takes_fast_path(f, xv, yv)
        a, s, b = f(xv, yv)
        assert a.shape == (n,) and a.tolist() == [6.0] * n and float(s) == 3.0 * n
        assert b.shape == (m,) and b.tolist() == [float(k + 1) for k in range(m)]


def test_inputs_aliasing_each_other() -> None:
    x = sg.placeholder("x", ("n",), "float64")
    y = sg.placeholder("y", ("n",), "float64")
    f = sg.compile([x * y + x, y - x], backend="llvm")
    a = np.arange(5.0)
    f(a, a)
    assert _takes_fast_path(f, a, a)
    p, q = f(a, a)
    assert p.tolist() == (a * a + a).tolist() and q.tolist() == [0.0] * 5
    big = np.arange(10.0)
    u, w = big[:5], big[3:8]  # overlapping views of one buffer
    assert _takes_fast_path(f, u, w)
    p, q = f(u, w)
    assert p.tolist() == (u * w + u).tolist() and q.tolist() == [3.0] * 5
    assert big.tolist() == list(range(10))  # inputs are never written
    assert not np.shares_memory(p, big) and not np.shares_memory(q, big)


def test_outputs_that_are_inputs_or_constants_are_fresh_copies() -> None:
    y = sg.placeholder("y", (2,), "float64")
    c = sg.constant(np.array([1.0, 2.0]))
    f = sg.compile([y, c, y * 2.0], backend="llvm")
    assert f._cfast is not None
    yv = np.array([5.0, 6.0])
    assert _takes_fast_path(f, yv)
    first = f(yv)
    assert [o.tolist() for o in first] == [[5.0, 6.0], [1.0, 2.0], [10.0, 12.0]]
    assert not any(np.shares_memory(o, yv) for o in first)
    first[0][:] = -1.0
    first[1][:] = -1.0  # writing an output changes neither the input nor the constant
    again = f(yv)
    assert [o.tolist() for o in again] == [[5.0, 6.0], [1.0, 2.0], [10.0, 12.0]]
    assert not np.shares_memory(first[1], again[1])


def test_functions_of_no_inputs() -> None:
    twice = sg.compile(sg.constant(np.ones(3)) * 2.0, [], backend="llvm")
    assert _takes_fast_path(twice)
    assert twice().tolist() == [2.0, 2.0, 2.0] and twice() is not twice()
    const = sg.compile([sg.constant(np.arange(3.0))], [], backend="llvm")
    a, = const()
    a[0] = 99.0
    assert const()[0].tolist() == [0.0, 1.0, 2.0]
    assert not _takes_fast_path(twice, np.ones(3))  # an argument too many
    with pytest.raises(InputError, match="at most 0"):
        twice(np.ones(3))
    with pytest.raises(InputError, match="unknown input"):
        twice(x=np.ones(3))


def test_an_output_too_large_to_allocate_raises_and_leaks_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import tracemalloc

    monkeypatch.setenv("SYMGRAD_NUM_THREADS", "1")  # one thread: the fast call takes it
    a = sg.placeholder("a", ("n", 0), "bool")
    x = sg.placeholder("x", ("m",), "float64")
    f = sg.compile([x * 2.0, sg.sum(sg.cast(a, "float64"), 1)], backend="llvm")
    av = np.empty((1 << 59, 0), bool)  # no elements, but an output of 4 EiB
    xv = np.ones(20_000)
    with pytest.raises(MemoryError):
        f(av, xv)  # the general path prepares these sizes, then fails to allocate
    assert f._impl._fast.state.dims == (20_000, 1 << 59)
    refs = sys.getrefcount(av), sys.getrefcount(xv)
    fast: Any = f._cfast
    tracemalloc.start()
    try:
        with pytest.raises(MemoryError):
            fast(av, xv)
        before = tracemalloc.get_traced_memory()[0]  # NumPy records the failed attempt once
        for _ in range(20):
            with pytest.raises(MemoryError):
                f(av, xv)  # the first output (160 kB) is freed every time
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000, grown
    assert (sys.getrefcount(av), sys.getrefcount(xv)) == refs
    assert f(np.empty((2, 0), bool), np.ones(2))[1].tolist() == [0.0, 0.0]


def test_program_errors_release_the_outputs() -> None:
    import tracemalloc

    labels = sg.placeholder("labels", (None,), "int64")
    f = sg.compile([sg.one_hot(labels, 500, "float64"), sg.cast(labels, "float64")], backend="llvm")
    bad = np.array([0, 1, 2, 700] * 50)
    f(np.zeros(200, np.int64))
    refs = sys.getrefcount(bad), sys.getrefcount(f._slow)
    fast: Any = f._cfast
    assert fast(bad) is f._slow  # the program failed; the general path explains
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(30):
            assert fast(bad) is f._slow  # 800 kB of outputs allocated and released
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 100_000, grown
    assert (sys.getrefcount(bad), sys.getrefcount(f._slow)) == refs
    with pytest.raises(InputError, match="one_hot"):
        f(bad)


def test_large_workspaces_and_parallel_sizes_keep_the_last_fast_sizes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from symgrad.backends.llvm import runtime

    x = sg.placeholder("x", (None,), "float64")
    f = sg.compile([sg.sum(sg.exp(x)), x * 2.0], backend="llvm")
    small = np.linspace(0, 1, 7)
    f(small)
    assert _takes_fast_path(f, small)
    monkeypatch.setattr(runtime, "FAST_MAX_WORKSPACE", -1)  # no state is prepared for fast calls
    for n in [9, 7, 11]:
        xv = np.linspace(0, 1, n)
        s, d = f(xv)
        assert np.isclose(float(s), np.exp(xv).sum(), rtol=1e-12) and d.tolist() == (xv * 2).tolist()
    assert f._impl._fast.state.dims == (7,) and _table_matches_state(f._impl._fast)
    assert _takes_fast_path(f, small) and not _takes_fast_path(f, np.ones(9))


def test_a_size_shared_by_two_axes_of_one_input() -> None:
    m = sg.placeholder("m", ("n", "n"), "int32")
    f = sg.compile([sg.transpose(m) + m, sg.sum(m, 0) > 3], backend="llvm")
    for n in [3, 1, 3]:
        mv = np.arange(n * n, dtype=np.int32).reshape(n, n)
        f(mv)
        assert _takes_fast_path(f, mv)
        s, b = f(mv)
        assert s.dtype == np.int32 and s.tolist() == (mv.T + mv).tolist()
        assert b.dtype == np.bool_ and b.tolist() == (mv.sum(0) > 3).tolist()
    assert not _takes_fast_path(f, np.zeros((3, 2), np.int32))
    with pytest.raises(InputError, match="'m'"):
        f(np.zeros((3, 2), np.int32))


def test_reset_plans_the_thread_split_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from symgrad.backends.llvm import runtime

    monkeypatch.setattr(runtime, "FAST_MAX_WORK", 1 << 62)  # let the fast call take any work
    x = sg.placeholder("x", (None,), "float32")
    y = sg.sum(sg.softplus(x) * sg.tanh(x) + sg.sigmoid(x) ** 2)
    f = sg.compile([y, sg.grad(y, x)], backend="llvm")
    xv = np.linspace(-3, 3, 1 << 20, dtype=np.float32)
    want = f._impl(xv)
    monkeypatch.setenv("SYMGRAD_NUM_THREADS", "1")
    f._impl.reset()
    f(xv)
    assert _takes_fast_path(f, xv)  # one thread: the whole program in one native call
    monkeypatch.setenv("SYMGRAD_NUM_THREADS", "2")
    assert _takes_fast_path(f, xv)  # the sizes' plan is kept until reset
    f._impl.reset()
    got = f(xv)
    assert f._impl._state((xv.size,)).parallel
    assert not _takes_fast_path(f, xv)  # large kernels split over two threads
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    np.testing.assert_array_equal(got[1], want[1])


def test_long_calls_release_the_gil(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast call holds the GIL, so it takes only calls with little work (points times
    body cost, as for threads); a longer one, even on one thread, takes the general path,
    whose native call lets other Python threads run meanwhile. With a long switch interval
    another thread only runs when this one gives up the GIL, which shows which did."""
    from symgrad.backends.llvm import runtime

    monkeypatch.setenv("SYMGRAD_NUM_THREADS", "1")
    x = sg.placeholder("x", (None,), "float32")
    y = sg.sum(sg.softplus(x) * sg.tanh(x) + sg.sigmoid(x) ** 2)
    f = sg.compile([y, sg.grad(y, x)], backend="llvm")
    small, large = np.linspace(-3, 3, 1000, dtype=np.float32), np.linspace(-3, 3, 1 << 21, dtype=np.float32)
    for v in (small, large, small):  # the last prepares the fast call for the small sizes
        f(v)
    assert f._impl._state((small.size,)).work <= runtime.FAST_MAX_WORK < f._impl._state((large.size,)).work
    assert _takes_fast_path(f, small) and not _takes_fast_path(f, large)

    count = [0]
    stop = threading.Event()

    def counter() -> None:
        while not stop.is_set():
            count[0] += 1
            time.sleep(0)  # gives the GIL back at once

    ran = {}
    old = sys.getswitchinterval()
    sys.setswitchinterval(0.5)
    other = threading.Thread(target=counter)
    try:
        other.start()
        time.sleep(0.01)  # the counter is now running, or waiting for the GIL
        # the second large call would take the fast call if any did
        for name, v in (("small", small), ("large", large), ("large again", large),
                        ("small again", small)):
            before = count[0]
            got = f(v)
            ran[name] = count[0] - before
            if name == "large":
                grad = got[1]
    finally:
        stop.set()
        sys.setswitchinterval(old)
        other.join()
    assert ran["small"] == 0 and ran["small again"] == 0  # the fast call kept the GIL
    assert ran["large"] > 0 and ran["large again"] > 0  # the other thread ran meanwhile
    xs = large.astype(np.float64)
    s = 1 / (1 + np.exp(-xs))
    np.testing.assert_allclose(grad, s * np.tanh(xs) + np.logaddexp(0, xs) * (1 - np.tanh(xs) ** 2)
                               + 2 * s * s * (1 - s), rtol=2e-5, atol=1e-6)


def test_matmul_work_counts_its_inner_axis() -> None:
    """A product's work is its output's points times its inner length (twice): a large
    product with a small workspace takes the general path, a small one the fast call."""
    from symgrad.backends.llvm import runtime

    a, w = sg.placeholder("a", (None, 512), "float32"), sg.placeholder("w", (512, 256), "float32")
    f = sg.compile(sg.relu(a @ w), backend="llvm")
    wv = np.ones((512, 256), np.float32)
    small, big = np.ones((2, 512), np.float32), np.ones((256, 512), np.float32)
    for v in (small, big):  # the product, and a little for the relu's points
        f._impl(v, wv)
        work = f._impl._local.state.work  # this thread's state for these sizes
        assert len(v) * 256 * 512 * 2 < work < len(v) * 256 * (512 * 2 + 16)
    assert work > runtime.FAST_MAX_WORK
    f(small, wv)
    assert _takes_fast_path(f, small, wv)
    assert not _takes_fast_path(f, big, wv)
    np.testing.assert_array_equal(f(big, wv), np.full((256, 256), 512, np.float32))


def test_scatter_work_counts_its_largest_operand() -> None:
    """The gradient of a gather loops over the gathered gradient, which can be much larger
    than its output: its work is that of its largest operand, so millions of indices into a
    small table take the general path."""
    from symgrad.backends.llvm import runtime

    x = sg.placeholder("x", (10,), "float32")
    i = sg.placeholder("i", (None,), "int64")
    f = sg.compile(sg.grad(sg.sum(sg.take(x, i) * 2.0), x), backend="llvm")
    xv = np.arange(10, dtype=np.float32)
    small, large = np.arange(10) % 10, np.arange(1 << 21) % 10
    f._impl(xv, small)
    assert f._impl._local.state.work <= runtime.FAST_MAX_WORK
    f._impl(xv, large)
    assert f._impl._local.state.work > runtime.FAST_MAX_WORK
    f(xv, small)
    assert _takes_fast_path(f, xv, small)
    assert not _takes_fast_path(f, xv, large)
    np.testing.assert_array_equal(f(xv, large), 2 * np.bincount(large, minlength=10).astype(np.float32))
