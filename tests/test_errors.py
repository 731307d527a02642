"""Errors: impossible graphs fail while building, bad calls fail when called.

Build-time errors are ``ShapeError``/``DTypeError`` (``ValueError``/``TypeError``
subclasses) whose message names the op, the operand shapes and the user's file and line
(here: this file, at the line of the lambda that built the bad node). Call-time errors
are ``InputError`` (a ``ValueError``) naming the input; unsafe casts are
``InputDTypeError`` (also a ``TypeError``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import symgrad as sg
from symgrad.ops import OPS

THIS_FILE = os.path.basename(__file__)


def raises_here(kind: type[Exception], build: Callable[[], Any], *fragments: str) -> str:
    """``build()`` raises ``kind`` with every fragment and this file's name and the
    lambda's line in its message; returns the message."""
    with pytest.raises(kind) as info:
        build()
    message = str(info.value)
    where = f"{THIS_FILE}:{build.__code__.co_firstlineno}"
    assert where in message, f"{where!r} is not in the message:\n{message}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} is not in the message:\n{message}"
    return message


def test_error_classes_are_value_and_type_errors() -> None:
    assert issubclass(sg.ShapeError, ValueError) and issubclass(sg.ShapeError, sg.SymgradError)
    assert issubclass(sg.DTypeError, TypeError) and issubclass(sg.DTypeError, sg.SymgradError)
    assert issubclass(sg.GradientError, ValueError)
    assert issubclass(sg.InputError, ValueError)
    assert issubclass(sg.InputDTypeError, sg.InputError) and issubclass(sg.InputDTypeError, TypeError)


# -- build time ---------------------------------------------------------------------------------------
X = sg.placeholder("x", (2, 3), "float32")
V = sg.placeholder("v", (4,), "float32")
M = sg.placeholder("m", (4, 5), "float32")
B = sg.placeholder("b", (3,), "bool")
IDX = sg.placeholder("i", (3,), "int64")
E = sg.placeholder("e", (2, 0), "float64")
T3 = sg.placeholder("t3", (3, 4, 5), "float64")

SHAPE_ERRORS: list[tuple[str, Callable[[], Any], tuple[str, ...]]] = [
    ("add", lambda: X + V, ("add", "cannot broadcast", "(2, 3)", "(4,)")),
    ("mul-broadcast", lambda: sg.multiply(M, X), ("mul", "(4, 5)", "(2, 3)")),
    ("where", lambda: sg.where(B, X, V), ("where", "(3,)", "(2, 3)", "(4,)")),
    ("clip", lambda: sg.clip(X, V, 1.0), ("maximum", "(2, 3)", "(4,)")),
    ("matmul", lambda: X @ M, ("matmul", "contracted sizes differ", "(2, 3)", "(4, 5)")),
    ("matmul-vector", lambda: V @ X, ("matmul", "(4,)", "(2, 3)")),
    ("matmul-batch", lambda: sg.matmul(sg.reshape(T3, (3, 4, 5)), sg.reshape(T3, (2, 5, 6))),
     ("matmul", "cannot broadcast batch axes", "(3, 4, 5)", "(2, 5, 6)")),
    ("matmul-scalar", lambda: sg.matmul(X, 2.0), ("matmul", "at least one axis", "(2, 3)", "()")),
    ("dot", lambda: sg.dot(X, T3), ("dot", "(2, 3)", "(3, 4, 5)")),
    ("reshape", lambda: sg.reshape(X, (4,)), ("reshape", "6 elements", "(4,)", "(2, 3)")),
    ("reshape-two-holes", lambda: sg.reshape(X, (-1, -1)), ("reshape", "one -1", "(2, 3)")),
    ("reshape-minus-one", lambda: X.reshape(-1, 4), ("reshape", "cannot infer -1", "(2, 3)")),
    ("reshape-bad-size", lambda: sg.reshape(X, (3, -2)), ("reshape", "-2", "(2, 3)")),
    ("transpose", lambda: sg.transpose(X, (0, 0)), ("transpose", "not a permutation", "(2, 3)")),
    ("transpose-out-of-range", lambda: sg.transpose(X, (0, 5)), ("transpose", "(2, 3)")),
    ("transpose-short", lambda: T3.transpose(1, 0), ("transpose", "(3, 4, 5)")),
    ("swapaxes", lambda: sg.swapaxes(X, 0, 2), ("swapaxes", "axis 2", "(2, 3)")),
    ("moveaxis", lambda: sg.moveaxis(X, -3, 0), ("moveaxis", "axis -3", "(2, 3)")),
    ("broadcast_to", lambda: sg.broadcast_to(X, (3, 3)), ("broadcast_to", "(3, 3)", "(2, 3)")),
    ("broadcast_to-rank", lambda: sg.broadcast_to(X, (3,)), ("broadcast_to", "(3,)", "(2, 3)")),
    ("expand_dims", lambda: sg.expand_dims(X, 3), ("expand_dims", "axis 3", "(2, 3)")),
    ("expand_dims-repeated", lambda: sg.expand_dims(X, (0, 0)), ("expand_dims", "repeated", "(2, 3)")),
    ("squeeze", lambda: sg.squeeze(X, 0), ("squeeze", "axis 0 has size 2", "(2, 3)")),
    ("concatenate-sizes", lambda: sg.concatenate([X, sg.reshape(V, (2, 2))], axis=0),
     ("concatenate", "axis 1", "(2, 3)", "(2, 2)")),
    ("concatenate-rank", lambda: sg.concatenate([X, V]), ("concatenate", "(2, 3)", "(4,)")),
    ("concatenate-axis", lambda: sg.concatenate([X, X], axis=2), ("concatenate", "axis 2", "(2, 3)")),
    ("stack", lambda: sg.stack([X, sg.reshape(X, (3, 2))]), ("stack", "same shape", "(2, 3)", "(3, 2)")),
    ("stack-axis", lambda: sg.stack([X, X], axis=3), ("stack", "axis 3", "(2, 3)")),
    ("sum-axis", lambda: sg.sum(X, axis=2), ("sum", "axis 2", "rank 2", "(2, 3)")),
    ("sum-repeated", lambda: sg.sum(X, axis=(0, -2)), ("sum", "repeated axis", "(2, 3)")),
    ("mean-axis", lambda: sg.mean(X, axis=-3), ("mean", "axis -3", "(2, 3)")),
    ("max-empty", lambda: sg.max(E, axis=1), ("max", "zero-size axis", "(2, 0)")),
    ("min-empty", lambda: sg.min(E), ("min", "zero-size", "(2, 0)")),
    ("argmax-empty", lambda: sg.argmax(E, axis=1), ("argmax", "(2, 0)")),
    ("argmax-axis", lambda: sg.argmax(X, axis=2), ("argmax", "axis 2", "(2, 3)")),
    ("softmax-axis", lambda: sg.softmax(X, axis=2), ("softmax", "axis 2", "(2, 3)")),
    ("logsumexp-axis", lambda: sg.logsumexp(X, axis=(0, 3)), ("logsumexp", "axis 3", "(2, 3)")),
    ("getitem-index", lambda: X[5], ("getitem", "index 5", "size 2", "(2, 3)")),
    ("getitem-negative-index", lambda: X[:, -4], ("getitem", "index -4", "size 3", "(2, 3)")),
    ("getitem-too-many", lambda: X[0, 0, 0], ("getitem", "too many indices", "(2, 3)")),
    ("getitem-step-zero", lambda: X[::0], ("getitem", "step cannot be zero", "(2, 3)")),
    ("getitem-two-ellipses", lambda: X[..., ...], ("getitem", "one ...")),
    ("getitem-bool-mask", lambda: V[np.array([True, False, True, True])], ("getitem", "boolean", "(4,)")),
    ("take-axis", lambda: sg.take(X, IDX, axis=2), ("take", "axis 2", "(2, 3)")),
    ("one_hot-depth", lambda: sg.one_hot(IDX, -1), ("one_hot", "depth -1", "(3,)")),
]


@pytest.mark.parametrize("name,build,fragments", SHAPE_ERRORS, ids=[c[0] for c in SHAPE_ERRORS])
def test_shape_errors_at_build_time(name: str, build: Callable[[], Any],
                                    fragments: tuple[str, ...]) -> None:
    raises_here(sg.ShapeError, build, *fragments)


DTYPE_ERRORS: list[tuple[str, Callable[[], Any], tuple[str, ...]]] = [
    ("add-bool", lambda: B + B, ("add", "bool", "(3,)")),
    ("neg-bool", lambda: -B, ("neg", "bool", "(3,)")),
    ("abs-bool", lambda: sg.abs(B), ("abs", "bool", "(3,)")),
    ("take-float-indices", lambda: sg.take(X, X), ("take", "integers", "float32", "(2, 3)")),
    ("one_hot-float-labels", lambda: sg.one_hot(X, 3), ("one_hot", "integers", "float32", "(2, 3)")),
    ("logsumexp-int", lambda: OPS["logsumexp"](IDX, axes=(0,), keepdims=False),
     ("logsumexp", "float", "int64", "(3,)")),
    ("grad-wrt-int", lambda: sg.grad(sg.sum(X), IDX), ("grad", "int64", "(3,)")),
]


@pytest.mark.parametrize("name,build,fragments", DTYPE_ERRORS, ids=[c[0] for c in DTYPE_ERRORS])
def test_dtype_errors_at_build_time(name: str, build: Callable[[], Any],
                                    fragments: tuple[str, ...]) -> None:
    raises_here(sg.DTypeError, build, *fragments)


def test_other_build_errors_name_the_problem() -> None:
    raises_here(sg.GradientError, lambda: sg.grad(sg.tanh(V), V), "grad", "(4,)", "scalar")
    raises_here(sg.GradientError, lambda: sg.grad(sg.sum(V), X, disconnected="raise"), "'x'")
    with pytest.raises(TypeError, match="complex64"):
        sg.cast(X, "complex64")
    with pytest.raises(ValueError, match="bad size -1"):
        sg.placeholder("p", (-1, 3))
    with pytest.raises(TypeError, match="non-empty string"):
        sg.placeholder("", (3,))
    with pytest.raises(TypeError, match="truth value"):
        bool(X > 0)
    with pytest.raises(TypeError, match="static size"):
        len(sg.placeholder("n", (None,)))


def test_errors_point_at_the_users_line_not_the_library() -> None:
    message = raises_here(sg.ShapeError, lambda: sg.mean(sg.tanh(X) @ M))
    assert "symgrad/ops" not in message.split("\n  at ")[-1]


def test_a_nested_user_helper_is_reported_at_its_own_line() -> None:
    def helper(a: Any, b: Any) -> Any:
        return sg.tanh(a) + b

    with pytest.raises(sg.ShapeError) as info:
        helper(X, V)
    line = helper.__code__.co_firstlineno + 1
    assert f"{THIS_FILE}:{line}" in str(info.value)


# -- call time ---------------------------------------------------------------------------------------
@pytest.fixture
def fn() -> sg.Function:
    """f(x: (n, 3) f32, y: (n,) f32, z: (None, 3) f32, i: (None,) int32)."""
    x = sg.placeholder("x", ("n", 3), "float32")
    y = sg.placeholder("y", ("n",), "float32")
    z = sg.placeholder("z", (None, 3), "float32")
    i = sg.placeholder("i", (None,), "int32")
    return sg.compile([x * y[:, None], z + x, sg.take(x, i, axis=0), sg.one_hot(i, 3)],
                      inputs=[x, y, z, i])


def good(**changes: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"x": np.ones((4, 3), "f4"), "y": np.ones(4, "f4"),
                            "z": np.ones((4, 3), "f4"), "i": np.zeros(2, "i4")}
    args.update(changes)
    return {k: v for k, v in args.items() if v is not None}


def test_a_good_call_works(fn: sg.Function) -> None:
    xy, zx, taken, hot = fn(**good())
    assert xy.dtype == zx.dtype == taken.dtype == hot.dtype == np.float32
    assert xy.shape == (4, 3) and taken.shape == (2, 3) and hot.shape == (2, 3)


CALL_ERRORS: list[tuple[str, dict[str, Any], type[Exception], tuple[str, ...]]] = [
    ("missing", {"y": None}, sg.InputError, ("missing input", "y")),
    ("missing-two", {"y": None, "i": None}, sg.InputError, ("missing inputs", "y", "i")),
    ("unknown", {"w": np.ones(3)}, sg.InputError, ("unknown input 'w'", "x, y, z, i")),
    ("wrong-rank", {"x": np.ones(3, "f4")}, sg.InputError, ("'x'", "rank 2", "(3,)")),
    ("wrong-rank-scalar", {"y": 1.0}, sg.InputError, ("'y'", "rank 1")),
    ("wrong-static-size", {"x": np.ones((4, 2), "f4")}, sg.InputError,
     ("'x'", "axis 1 has size 2, expected 3")),
    ("named-size-contradicts-earlier-binding", {"y": np.ones(5, "f4")}, sg.InputError,
     ("'y'", "size 5", "'n' is already 4")),
    ("broadcast-symbolic-sizes", {"z": np.ones((5, 3), "f4")}, sg.InputError,
     ("add", "5", "4", THIS_FILE)),
    ("float-to-int", {"i": np.zeros(2)}, sg.InputDTypeError, ("'i'", "float64", "int32")),
    ("int64-overflowing-int32", {"i": np.array([2**40])}, sg.InputDTypeError, ("'i'", "int32")),
    ("string", {"x": np.full((4, 3), "a")}, sg.InputDTypeError, ("'x'",)),
    ("object", {"x": np.full((4, 3), None)}, sg.InputDTypeError, ("'x'", "object")),
    ("take-out-of-range", {"i": np.array([0, 4], "i4")}, sg.InputError, ("take", "index 4", "size 4")),
    ("take-negative-out-of-range", {"i": np.array([-5], "i4")}, sg.InputError, ("take", "-5")),
    ("one_hot-out-of-range", {"i": np.array([3], "i4"), "x": np.ones((4, 3), "f4")},
     sg.InputError, ("one_hot", "label 3")),
]


@pytest.mark.parametrize("name,changes,kind,fragments", CALL_ERRORS, ids=[c[0] for c in CALL_ERRORS])
def test_bad_calls_raise_naming_the_input(fn: sg.Function, name: str, changes: dict[str, Any],
                                          kind: type[Exception], fragments: tuple[str, ...]) -> None:
    with pytest.raises(kind) as info:
        fn(**good(**changes))
    for fragment in fragments:
        assert fragment in str(info.value), f"{fragment!r} not in {str(info.value)!r}"


def test_positional_call_errors(fn: sg.Function) -> None:
    args = list(good().values())
    with pytest.raises(sg.InputError, match="at most 4 positional inputs"):
        fn(*args, args[0])
    with pytest.raises(sg.InputError, match="'x' given twice"):
        fn(args[0], x=args[0], y=args[1], z=args[2], i=args[3])


def test_two_placeholders_sharing_a_named_size() -> None:
    a = sg.placeholder("a", ("batch", 2), "float64")
    b = sg.placeholder("b", ("batch",), "float64")
    f = sg.compile(sg.sum(a, axis=1) * b)
    np.testing.assert_array_equal(f(a=np.ones((3, 2)), b=np.arange(3.0)), [0.0, 2.0, 4.0])
    np.testing.assert_array_equal(f(a=np.ones((1, 2)), b=np.ones(1)), [2.0])
    with pytest.raises(sg.InputError, match="'batch' is already 3"):
        f(a=np.ones((3, 2)), b=np.ones(4))


def test_compile_time_input_list_errors() -> None:
    x = sg.placeholder("x", (2,), "float32")
    y = sg.placeholder("y", (2,), "float32")
    with pytest.raises(sg.InputError, match="missing from inputs"):
        sg.compile(x + y, inputs=[x])
    with pytest.raises(sg.InputError, match="'q' is not a placeholder"):
        sg.compile(x + y, inputs=[x, "q"])
    with pytest.raises(sg.InputError, match="two different placeholders are named 'x'"):
        sg.compile(x + sg.placeholder("x", (2,), "float64"))


def test_casting_policy() -> None:
    """Same-kind conversions are accepted (float64 -> float32, int -> float, bool -> any,
    int64 -> int32 when the values fit); float -> int and numbers -> bool are rejected."""
    x = sg.placeholder("x", (3,), "float32")
    n = sg.placeholder("n", (3,), "int32")
    flag = sg.placeholder("flag", (3,), "bool")
    f = sg.compile([x * 2.0, n + 1, sg.cast(flag, "int32")])
    out = f(x=np.array([1.5, 2.0, 3.0]), n=np.array([1, 2, 3], "i8"), flag=np.array([True, False, True]))
    assert out[0].dtype == np.float32 and out[1].dtype == np.int32
    np.testing.assert_array_equal(out[0], [3.0, 4.0, 6.0])
    np.testing.assert_array_equal(out[1], [2, 3, 4])
    out = f(x=np.array([1, 2, 3], "i8"), n=np.array([True, False, True]), flag=np.ones(3, bool))
    np.testing.assert_array_equal(out[0], [2.0, 4.0, 6.0])
    np.testing.assert_array_equal(out[1], [2, 1, 2])
    assert f(x=[1.0, 2.0, 3.0], n=[1, 2, 3], flag=[True, True, False])[0].dtype == np.float32
    with pytest.raises(sg.InputDTypeError, match="'n'"):
        f(x=np.ones(3, "f4"), n=np.ones(3, "f4"), flag=np.ones(3, bool))
    with pytest.raises(sg.InputDTypeError, match="'flag'"):
        f(x=np.ones(3, "f4"), n=np.ones(3, "i4"), flag=np.ones(3, "i4"))


def test_nan_check_is_opt_in() -> None:
    x = sg.placeholder("x", (3,), "float64")
    bad = np.array([1.0, np.nan, 2.0])
    np.testing.assert_array_equal(sg.compile(x * 2.0)(x=bad), [2.0, np.nan, 4.0])
    checked = sg.compile(x * 2.0, check_nan=True)
    with pytest.raises(sg.InputError, match="'x' contains NaN"):
        checked(x=bad)
    with pytest.raises(sg.InputError, match="'x'"):
        checked(x=np.array([1.0, np.inf, 0.0]))
    np.testing.assert_array_equal(checked(x=np.ones(3)), [2.0, 2.0, 2.0])


def test_inputs_are_never_modified(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (3, 4), "float64")
    w = sg.placeholder("w", (4,), "float32")
    i = sg.placeholder("i", (2,), "int64")
    loss = sg.sum(sg.softmax(x * w) ** 2) + sg.sum(sg.take(x, i, axis=1))
    outs = [loss, *sg.grad(loss, [x, w]), x, sg.reshape(x, (-1,)), x.T, x[1:], sg.take(x, i)]
    f = sg.compile(outs)
    args = {"x": rng.standard_normal((3, 4)), "w": rng.standard_normal(4).astype("f4"),
            "i": np.array([3, 0])}
    copies = {k: v.copy() for k, v in args.items()}
    results = f(**args)
    for k in args:
        np.testing.assert_array_equal(args[k], copies[k])
        assert args[k].dtype == copies[k].dtype
    for r in results:  # writing into the outputs cannot reach the inputs
        r[...] = 7
    for k in args:
        np.testing.assert_array_equal(args[k], copies[k])
    # a float64 array given for the float32 input is converted, not modified
    w64 = rng.standard_normal(4)
    w64_copy = w64.copy()
    f(x=args["x"], w=w64, i=args["i"])
    np.testing.assert_array_equal(w64, w64_copy)


def test_outputs_are_fresh_writable_arrays() -> None:
    x = sg.placeholder("x", (2, 3), "float32")
    c = np.arange(3.0, dtype=np.float32)
    outs = [x, sg.broadcast_to(c, (2, 3)), sg.constant(c), sg.reshape(x, (-1,)), x.T, x + 1.0,
            sg.broadcast_to(x[0], (4, 3))]
    f = sg.compile(outs)
    v = np.ones((2, 3), "f4")
    first = f(x=v)
    second = f(x=v)
    for a, b in zip(first, second):
        assert isinstance(a, np.ndarray) and a.flags.writeable
        assert not np.shares_memory(a, v) and not np.shares_memory(a, b)
    first[2][:] = -1  # the constant held by the graph is not changed by the caller
    np.testing.assert_array_equal(f(x=v)[2], c)
    scalar = sg.compile(sg.sum(x))(x=v)
    assert isinstance(scalar, np.ndarray) and scalar.shape == () and scalar.dtype == np.float32


def test_no_outputs_and_constant_outputs() -> None:
    assert sg.compile([])() == ()
    x = sg.placeholder("x", (3,), "float32")
    value, two = sg.compile([x, 2.0])(x=np.ones(3, "f4"))
    assert two.shape == () and two.dtype == np.float64 and two == 2.0
    np.testing.assert_array_equal(sg.compile(sg.constant([1, 2]))(), [1, 2])


def test_outputs_do_not_alias_each_other() -> None:
    """The same node twice, or views of one result, still come back as separate arrays."""
    x = sg.placeholder("x", (2, 3), "float32")
    y = x + 1.0
    outs = sg.compile([y, sg.reshape(y, (-1,)), y, y.T, y[0], x, x])(x=np.ones((2, 3), "f4"))
    for k, a in enumerate(outs):
        for b in outs[:k]:
            assert not np.shares_memory(a, b)
    outs[0][...] = 0
    np.testing.assert_array_equal(outs[2], np.full((2, 3), 2.0, "f4"))
