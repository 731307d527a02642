"""Gradients: every differentiable op against finite differences, second derivatives,
the conventions at singular points, and the rules of ``sg.grad`` itself.

``symgrad.testing.check_grad`` compares the symbolic gradient of a random projection of
the outputs with float64 central differences along a random direction, and for float32
graphs also compares the float32 gradient with the float64 one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import symgrad as sg
from conftest import SEED
from symgrad.ir.graph import toposort
from symgrad.ops import OPS
from symgrad.passes import known_passes
from symgrad.passes.autodiff import expand
from symgrad.testing import check_grad

FLOATS = ("float32", "float64")


def data(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """float64 test points away from the ops' singular points."""
    if kind == "pos":
        return rng.uniform(0.5, 2.0, size=shape)
    if kind == "unit":
        return rng.uniform(-0.8, 0.8, size=shape)
    if kind.startswith("idx"):
        n = int(kind[3:])
        return rng.integers(-n, n, size=shape)
    if kind == "distinct":  # well separated values, so max/min/sort-like ops have no ties
        return rng.permutation(np.prod(shape, dtype=int)).reshape(shape) * 0.5 - 1.0
    x = rng.standard_normal(size=shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)  # keep clear of kinks at 0


Spec = dict[str, tuple[tuple[int, ...], str]]
GradCase = tuple[str, Spec, Callable[..., Any]]

F_X: Spec = {"x": ((3, 4), "x")}
F_POS: Spec = {"x": ((3, 4), "pos")}
AB: Spec = {"a": ((3, 4), "x"), "b": ((3, 4), "x")}
AB_BCAST: Spec = {"a": ((2, 3, 4), "x"), "b": ((3, 1), "x")}

GRAD_CASES: list[GradCase] = [
    # elementwise, unary
    ("neg", F_X, lambda x: -x),
    ("exp", F_X, sg.exp),
    ("log", F_POS, sg.log),
    ("log1p", {"x": ((3, 4), "unit")}, sg.log1p),
    ("expm1", F_X, sg.expm1),
    ("sqrt", F_POS, sg.sqrt),
    ("abs", F_X, sg.abs),
    ("sin", F_X, sg.sin),
    ("cos", F_X, sg.cos),
    ("tanh", F_X, sg.tanh),
    ("erf", F_X, sg.erf),
    ("sigmoid", F_X, sg.sigmoid),
    ("softplus", F_X, sg.softplus),
    ("relu", F_X, sg.relu),
    ("square", F_X, sg.square),
    ("reciprocal", F_POS, sg.reciprocal),
    ("cast-to-float64", F_X, lambda x: sg.cast(x, "float64") * 2.0),
    ("cast-to-float32", F_X, lambda x: sg.cast(sg.cast(x, "float32") * 3.0, "float64")),
    # elementwise, binary, with and without broadcasting
    ("add", AB, lambda a, b: a + b),
    ("add-broadcast", AB_BCAST, lambda a, b: a + b),
    ("add-scalar-input", {"a": ((3, 4), "x"), "b": ((), "x")}, lambda a, b: a + b),
    ("sub", AB, lambda a, b: a - b),
    ("sub-broadcast", {"a": ((4,), "x"), "b": ((3, 1), "x")}, lambda a, b: a - b),
    ("mul", AB, lambda a, b: a * b),
    ("mul-broadcast", AB_BCAST, lambda a, b: a * b),
    ("div", {"a": ((3, 4), "x"), "b": ((3, 4), "pos")}, lambda a, b: a / b),
    ("div-broadcast", {"a": ((3, 4), "x"), "b": ((4,), "pos")}, lambda a, b: a / b),
    ("pow", {"a": ((3, 4), "pos"), "b": ((3, 4), "x")}, lambda a, b: a**b),
    ("pow-broadcast", {"a": ((3, 4), "pos"), "b": ((1, 4), "x")}, lambda a, b: a**b),
    ("pow-constant-exponent", F_POS, lambda x: x**2.5),
    ("pow-constant-base", F_X, lambda x: 1.5**x),
    ("maximum", AB, sg.maximum),
    ("maximum-broadcast", AB_BCAST, sg.maximum),
    ("minimum", AB, sg.minimum),
    ("minimum-broadcast", {"a": ((3, 4), "x"), "b": ((4,), "x")}, sg.minimum),
    ("clip", F_X, lambda x: sg.clip(x, -1.0, 1.0)),
    ("where", {"a": ((3, 4), "x"), "b": ((3, 4), "x")}, lambda a, b: sg.where(a > b, a * b, a - b)),
    ("where-broadcast", {"a": ((3, 4), "x"), "b": ((4,), "x")},
     lambda a, b: sg.where(a > 0.0, sg.tanh(a), b * b)),
    # reductions
    ("sum", F_X, lambda x: sg.sum(sg.tanh(x) * x)),
    ("sum-axis", F_X, lambda x: sg.sum(x * x, axis=1)),
    ("sum-keepdims", F_X, lambda x: sg.sum(x, axis=0, keepdims=True) * x),
    ("mean", F_X, lambda x: sg.mean(x * x, axis=-1)),
    ("var", F_X, lambda x: sg.var(x, axis=0)),
    ("std", F_X, lambda x: sg.std(x, axis=1, keepdims=True)),
    ("max", {"x": ((3, 4), "distinct")}, lambda x: sg.max(x, axis=1)),
    ("max-all", {"x": ((3, 4), "distinct")}, lambda x: sg.max(x * x)),
    ("min", {"x": ((3, 4), "distinct")}, lambda x: sg.min(x, axis=0, keepdims=True)),
    ("prod", F_X, lambda x: sg.prod(x, axis=1)),
    ("prod-all", {"x": ((2, 3), "pos")}, sg.prod),
    ("logsumexp", F_X, lambda x: sg.logsumexp(x, axis=1)),
    ("logsumexp-all", F_X, sg.logsumexp),
    ("softmax", F_X, lambda x: sg.softmax(x, axis=1)),
    ("softmax-axis0", F_X, lambda x: sg.softmax(x, axis=0)),
    ("log_softmax", F_X, lambda x: sg.log_softmax(x)),
    # shape ops
    ("reshape", F_X, lambda x: sg.reshape(x, (2, -1)) * sg.arange(6)),
    ("transpose", {"x": ((2, 3, 4), "x")}, lambda x: sg.transpose(x, (2, 0, 1)) * sg.arange(3)),
    ("T", F_X, lambda x: x.T @ x),
    ("broadcast_to", {"x": ((3, 1), "x")}, lambda x: sg.broadcast_to(x, (2, 3, 4)) * sg.arange(4)),
    ("expand_dims-squeeze", F_X, lambda x: sg.squeeze(sg.expand_dims(x, 1) * 2.0)),
    ("concatenate", {"a": ((2, 3), "x"), "b": ((4, 3), "x")},
     lambda a, b: sg.concatenate([a, b * b, a], axis=0)),
    ("concatenate-axis1", {"a": ((2, 3), "x"), "b": ((2, 1), "x")},
     lambda a, b: sg.concatenate([a, b], axis=-1) ** 3),
    ("stack", {"a": ((2, 3), "x"), "b": ((2, 3), "x")}, lambda a, b: sg.stack([a, a * b], axis=1)),
    # indexing
    ("slice", {"x": ((4, 5), "x")}, lambda x: x[1:, ::2] * x[:-1, 1:4]),
    ("slice-negative-step", {"x": ((5,), "x")}, lambda x: x[::-1] * x),
    ("slice-int-index", {"x": ((4, 5), "x")}, lambda x: x[-1] * x[0, None]),
    ("take", {"x": ((5, 3), "x"), "i": ((6,), "idx5")}, lambda x, i: sg.take(x, i, axis=0) ** 2),
    ("take-repeated", {"x": ((4,), "x")}, lambda x: sg.take(x, [0, 0, 3, -1]) * sg.arange(4)),
    ("array-index", {"x": ((3, 4), "x")}, lambda x: x[:, [1, 1, 3]] ** 3),
    ("array-index-mixed", {"x": ((2, 3, 4), "x")}, lambda x: x[1, :, [3, 0, 3]] ** 3),
    # matrix products
    ("matmul", {"a": ((3, 4), "x"), "b": ((4, 2), "x")}, lambda a, b: a @ b),
    ("matmul-vector", {"a": ((4,), "x"), "b": ((4, 2), "x")}, lambda a, b: a @ b),
    ("matmul-dot-vectors", {"a": ((4,), "x"), "b": ((4,), "x")}, lambda a, b: a @ b),
    ("matmul-batched", {"a": ((2, 3, 4), "x"), "b": ((2, 4, 2), "x")}, lambda a, b: a @ b),
    ("matmul-batch-broadcast", {"a": ((2, 1, 3, 4), "x"), "b": ((5, 4, 2), "x")},
     lambda a, b: a @ b),
    ("matmul-broadcast-right", {"a": ((2, 3, 4), "x"), "b": ((4, 2), "x")}, lambda a, b: a @ b),
    ("dot", {"a": ((2, 3, 4), "x"), "b": ((3, 4, 2), "x")}, sg.dot),
    ("mlp", {"x": ((5, 3), "x"), "w": ((3, 4), "x"), "b": ((4,), "x")},
     lambda x, w, b: sg.mean(sg.log_softmax(sg.relu(x @ w + b)) * sg.one_hot(np.array([0, 3, 1, 1, 2]), 4))),
]


def _placeholders(spec: Spec, dtype: str) -> list[Any]:
    return [sg.placeholder(name, shape, "int64" if kind.startswith("idx") else dtype)
            for name, (shape, kind) in spec.items()]


def _values(spec: Spec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {name: data(kind, shape, rng) for name, (shape, kind) in spec.items()}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name,spec,fn", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradient_matches_finite_differences(name: str, spec: Spec, fn: Callable[..., Any],
                                             dtype: str, rng: np.random.Generator) -> None:
    phs = _placeholders(spec, dtype)
    check_grad(fn(*phs), phs, _values(spec, rng), seed=SEED)


def test_every_differentiable_op_has_a_gradient_case() -> None:
    """Every op with a pullback rule appears in some gradient case (nn ops are tested
    with the nn layers)."""
    seen: set[str] = set()
    for _, spec, fn in GRAD_CASES + SECOND_ORDER:
        phs = _placeholders(spec, "float64")
        out = fn(*phs)
        scalar = sg.sum(out) if out.dtype != "bool" else None
        if scalar is None:
            continue
        grads = sg.grad(scalar, [p for p in phs if p.dtype == "float64"])
        seen |= {n.op.name for n in toposort(expand([out, *grads]))}
    wanted = {name for name, op in OPS.items()
              if op.pullback is not None and not name.startswith(("conv2d", "max_pool2d",
                                                                   "avg_pool2d"))}
    missing = sorted(wanted - seen)
    assert not missing, f"differentiable ops without a gradient case: {missing}"


# -- second derivatives ------------------------------------------------------------------------
def _grad_norm(f: Callable[..., Any]) -> Callable[..., Any]:
    """x -> sum over inputs of sum(grad(f, input) ** 2): its gradient needs second derivatives."""

    def build(*xs: Any) -> Any:
        y = f(*xs)
        floats = [x for x in xs if x.dtype in FLOATS]
        total = None
        for g in sg.grad(y, floats):
            term = sg.sum(g * g)
            total = term if total is None else total + term
        return total

    return build


SECOND_ORDER: list[GradCase] = [
    ("tanh", F_X, lambda x: sg.sum(sg.tanh(x))),
    ("sigmoid", F_X, lambda x: sg.sum(sg.sigmoid(x))),
    ("softplus", F_X, lambda x: sg.sum(sg.softplus(x))),
    ("exp", F_X, lambda x: sg.sum(sg.exp(x))),
    ("log", F_POS, lambda x: sg.sum(sg.log(x))),
    ("sqrt", F_POS, lambda x: sg.sum(sg.sqrt(x))),
    ("div", {"a": ((3, 4), "x"), "b": ((4,), "pos")}, lambda a, b: sg.sum(a / b)),
    ("pow", {"a": ((3, 4), "pos"), "b": ((3, 4), "x")}, lambda a, b: sg.sum(a**b)),
    ("matmul", {"a": ((3, 4), "x"), "b": ((4, 2), "x")}, lambda a, b: sg.sum(sg.tanh(a @ b))),
    ("softmax", F_X, lambda x: sg.sum(sg.softmax(x) * sg.arange(4))),
    ("log_softmax", F_X, lambda x: sg.sum(sg.log_softmax(x) * sg.arange(4))),
    ("logsumexp", F_X, lambda x: sg.sum(sg.logsumexp(x, axis=1))),
    ("max", {"x": ((3, 4), "distinct")}, lambda x: sg.sum(sg.max(x, axis=1) ** 3)),
    ("prod", {"x": ((2, 3), "x")}, lambda x: sg.sum(sg.prod(x, axis=1))),
    ("take", {"x": ((5,), "x"), "i": ((4,), "idx5")}, lambda x, i: sg.sum(sg.take(x, i) ** 3)),
    ("slice", {"x": ((4, 5), "x")}, lambda x: sg.sum(x[1:, ::2] ** 3)),
    ("concatenate", {"a": ((2, 3), "x"), "b": ((1, 3), "x")},
     lambda a, b: sg.sum(sg.concatenate([a, b]) ** 3)),
    ("where", F_X, lambda x: sg.sum(sg.where(x > 0.0, x**3, sg.sin(x)))),
    ("mean-var", F_X, lambda x: sg.var(x) + sg.mean(x) ** 3),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name,spec,fn", SECOND_ORDER, ids=[c[0] for c in SECOND_ORDER])
def test_second_derivative_matches_finite_differences(name: str, spec: Spec,
                                                      fn: Callable[..., Any], dtype: str,
                                                      rng: np.random.Generator) -> None:
    phs = _placeholders(spec, dtype)
    check_grad(_grad_norm(fn)(*phs), phs, _values(spec, rng), seed=SEED)


def test_gradient_of_a_gradient_is_the_hessian_vector_product(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (4,), "float64")
    v = sg.placeholder("v", (4,), "float64")
    f = sg.sum(sg.exp(x) * sg.sin(x)) + sg.sum(x) ** 2
    hv = sg.grad(sg.sum(sg.grad(f, x) * v), x)
    vx, vv = rng.standard_normal(4), rng.standard_normal(4)
    hess = np.diag(2 * np.exp(vx) * np.cos(vx)) + 2.0
    np.testing.assert_allclose(sg.compile(hv)(x=vx, v=vv), hess @ vv, rtol=1e-12)
    third = sg.grad(sg.sum(sg.grad(sg.sum(sg.grad(f, x)), x)), x)  # d3/dx3 of the sum part
    np.testing.assert_allclose(sg.compile(third)(x=vx),
                               -2 * np.exp(vx) * np.sin(vx) + 2 * np.exp(vx) * np.cos(vx),
                               rtol=1e-12)


# -- conventions at singular points -------------------------------------------------------------
def _grad_at(build: Callable[[Any], Any], point: Any, dtype: str = "float64") -> np.ndarray:
    arr = np.asarray(point, dtype=dtype)
    x = sg.placeholder("x", arr.shape, dtype)
    return np.asarray(sg.compile(sg.grad(sg.sum(build(x)), x))(x=arr))


@pytest.mark.parametrize("dtype", FLOATS)
def test_sqrt_at_zero_has_infinite_derivative(dtype: str) -> None:
    g = _grad_at(sg.sqrt, [0.0, 1.0, 4.0], dtype)
    assert g.dtype == dtype
    np.testing.assert_array_equal(g, np.array([np.inf, 0.5, 0.25], dtype))


@pytest.mark.parametrize("dtype", FLOATS)
def test_abs_at_zero_has_zero_derivative(dtype: str) -> None:
    np.testing.assert_array_equal(_grad_at(sg.abs, [-2.0, 0.0, -0.0, 3.0], dtype), [-1, 0, 0, 1])


@pytest.mark.parametrize("dtype", FLOATS)
def test_relu_at_zero_has_zero_derivative(dtype: str) -> None:
    np.testing.assert_array_equal(_grad_at(sg.relu, [-1.0, 0.0, 2.0], dtype), [0, 0, 1])


def test_log_at_zero_has_infinite_derivative() -> None:
    np.testing.assert_array_equal(_grad_at(sg.log, [0.0, 2.0]), [np.inf, 0.5])


@pytest.mark.parametrize("fn", [sg.maximum, sg.minimum], ids=["maximum", "minimum"])
def test_maximum_minimum_ties_split_the_gradient(fn: Any) -> None:
    a = sg.placeholder("a", (3,), "float64")
    b = sg.placeholder("b", (3,), "float64")
    ga, gb = sg.compile(sg.grad(sg.sum(fn(a, b) * 4.0), [a, b]))(
        a=np.array([1.0, 2.0, 5.0]), b=np.array([1.0, 3.0, 0.0]))
    big = fn is sg.maximum
    np.testing.assert_array_equal(ga, [2.0, 0.0 if big else 4.0, 4.0 if big else 0.0])
    np.testing.assert_array_equal(gb, [2.0, 4.0 if big else 0.0, 0.0 if big else 4.0])


def test_clip_at_its_bounds_gets_half() -> None:
    np.testing.assert_array_equal(_grad_at(lambda x: sg.clip(x, -1.0, 1.0), [-2.0, -1.0, 0.0, 1.0, 3.0]),
                                  [0.0, 0.5, 1.0, 0.5, 0.0])


def test_max_reduction_ties_share_the_gradient_evenly() -> None:
    x = np.array([[1.0, 3.0, 3.0, 2.0], [5.0, 5.0, 5.0, 0.0], [0.0, 1.0, 2.0, 7.0]])
    g = _grad_at(lambda t: sg.max(t, axis=1), x)
    np.testing.assert_allclose(g, [[0, 0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3, 0], [0, 0, 0, 1]],
                               rtol=0, atol=1e-15)
    np.testing.assert_array_equal(_grad_at(sg.max, [2.0, 2.0]), [0.5, 0.5])
    np.testing.assert_array_equal(_grad_at(lambda t: sg.min(t, axis=0), [[1.0], [1.0]]),
                                  [[0.5], [0.5]])


def test_pow_exponent_gradient_at_base_zero_is_zero() -> None:
    a = sg.placeholder("a", (3,), "float64")
    b = sg.placeholder("b", (3,), "float64")
    y = sg.sum(a**b)
    ga, gb = sg.compile(sg.grad(y, [a, b]))(a=np.array([0.0, 0.0, 2.0]),
                                            b=np.array([2.0, 3.0, 3.0]))
    np.testing.assert_array_equal(gb, [0.0, 0.0, 8.0 * np.log(2.0)])
    np.testing.assert_array_equal(ga, [0.0, 0.0, 12.0])


@pytest.mark.parametrize("point,expected", [
    ([2.0, 3.0, 4.0], [12.0, 8.0, 6.0]),
    ([2.0, 0.0, 3.0], [0.0, 6.0, 0.0]),
    ([0.0, 2.0, 0.0], [0.0, 0.0, 0.0]),
    ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]),
    ([-0.0, 5.0, 2.0], [10.0, 0.0, 0.0]),
], ids=["no-zero", "one-zero", "two-zeros", "all-zeros", "negative-zero"])
def test_prod_gradient_is_exact_at_zeros(point: list[float], expected: list[float]) -> None:
    np.testing.assert_array_equal(_grad_at(sg.prod, point), expected)
    rows = _grad_at(lambda t: sg.prod(t, axis=1), [point, [1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(rows, [expected, [6.0, 3.0, 2.0]])


ZERO_GRADIENT: list[tuple[str, Callable[[Any], Any]]] = [
    ("greater", lambda x: sg.cast(x > 0.0, "float64")),
    ("less_equal", lambda x: sg.cast(x <= 0.5, "float64")),
    ("equal", lambda x: sg.cast(sg.equal(x, 1.0), "float64")),
    ("not_equal", lambda x: sg.cast(sg.not_equal(x, 1.0), "float64")),
    ("where-condition", lambda x: sg.where(x > 0.0, 1.0, -1.0)),
    ("argmax", lambda x: sg.cast(sg.argmax(x), "float64")),
    ("argmin", lambda x: sg.cast(sg.argmin(x), "float64")),
    ("floor", sg.floor),
    ("ceil", sg.ceil),
    ("round", sg.round),
    ("sign", sg.sign),
    ("cast-to-int", lambda x: sg.cast(sg.cast(x * 10.0, "int64"), "float64")),
    ("one_hot-of-argmax", lambda x: sg.sum(sg.one_hot(sg.argmax(x), 3, "float64"))),
]


@pytest.mark.parametrize("name,fn", ZERO_GRADIENT, ids=[c[0] for c in ZERO_GRADIENT])
def test_piecewise_constant_ops_give_exactly_zero(name: str, fn: Callable[[Any], Any]) -> None:
    point = [-1.5, 0.0, 0.5, 1.0, 2.7, 1.0]
    g = _grad_at(lambda x: fn(x) * 3.0 + x, point)
    np.testing.assert_array_equal(g, np.ones(6))  # only the "+ x" term contributes


@pytest.mark.parametrize("op,phrase", [
    ("sqrt", "at x = 0 the derivative is +inf"), ("abs", "at x = 0 the derivative is 0"),
    ("relu", "0 at x = 0"), ("log", "at x = 0 the derivative is +inf"),
    ("maximum", "on a tie each gets half"), ("minimum", "on a tie each gets half"),
    ("max", "shared evenly"), ("min", "shared evenly"), ("prod", "exact at zeros"),
    ("pow", "taken as 0 where a = 0"), ("where", "selected branch only"),
    ("sign", "taken as 0"), ("floor", "taken as 0"), ("greater", "taken as 0"),
])
def test_conventions_are_documented_on_the_op(op: str, phrase: str) -> None:
    """The conventions the tests above check are the ones the op declarations state."""
    assert phrase in OPS[op].doc


def test_where_sends_the_gradient_to_the_selected_branch_only() -> None:
    g = _grad_at(lambda x: sg.where(x > 0.0, x * 3.0, x * -2.0), [-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(g, [-2.0, -2.0, 3.0])


# -- the rules of sg.grad ----------------------------------------------------------------------------
def test_broadcast_inputs_get_gradients_summed_back() -> None:
    a = sg.placeholder("a", (2, 3, 4), "float64")
    b = sg.placeholder("b", (3, 1), "float64")
    c = sg.placeholder("c", (), "float64")
    d = sg.placeholder("d", (1, 4), "float32")
    y = sg.sum(a * b + c + d)
    ga, gb, gc, gd = sg.compile(sg.grad(y, [a, b, c, d]))(
        a=np.ones((2, 3, 4)), b=np.full((3, 1), 2.0), c=0.0, d=np.zeros((1, 4), "f4"))
    assert ga.shape == (2, 3, 4) and gb.shape == (3, 1) and gc.shape == () and gd.shape == (1, 4)
    assert gd.dtype == np.float32 and gc.dtype == np.float64
    np.testing.assert_array_equal(ga, np.full((2, 3, 4), 2.0))
    np.testing.assert_array_equal(gb, np.full((3, 1), 8.0))
    np.testing.assert_array_equal(gc, 24.0)
    np.testing.assert_array_equal(gd, np.full((1, 4), 6.0, "f4"))


def test_symbolic_batch_gradient(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (None, 3), "float64")
    w = sg.placeholder("w", (3,), "float64")
    loss = sg.mean((x @ w - 1.0) ** 2)
    f = sg.compile(sg.grad(loss, w))
    for n in (2, 9):
        vx, vw = rng.standard_normal((n, 3)), rng.standard_normal(3)
        np.testing.assert_allclose(f(x=vx, w=vw), 2 * vx.T @ (vx @ vw - 1.0) / n, rtol=1e-12)
    check_grad(loss, [x, w], {"x": rng.standard_normal((5, 3)), "w": rng.standard_normal(3)})


SYMBOLIC_GRADS: list[tuple[str, Callable[..., Any]]] = [
    ("slice", lambda x, y, i: sg.sum(x[1:, ::2] ** 2) + sg.sum(x[-1] * 3.0)),
    ("take", lambda x, y, i: sg.sum(sg.take(x, i, axis=0) ** 2)),
    ("concatenate", lambda x, y, i: sg.sum(sg.concatenate([x, x * 2.0, x[:1]]) ** 3)),
    ("broadcast", lambda x, y, i: sg.sum((x + y[:, None]) ** 2)),
    ("mean-var", lambda x, y, i: sg.mean(x**2) + sg.var(y)),
    ("log_softmax", lambda x, y, i: sg.sum(sg.log_softmax(x, axis=0)[0])),
    ("reshape", lambda x, y, i: sg.sum(sg.reshape(x, (-1,)) * sg.reshape(x * x, (-1,)))),
    ("matmul", lambda x, y, i: sg.sum(sg.tanh(x.T @ x))),
    ("max", lambda x, y, i: sg.sum(sg.max(x, axis=0) ** 2)),
    ("stack", lambda x, y, i: sg.sum(sg.stack([y, y * y], axis=1) ** 2)),
    ("broadcast_to", lambda x, y, i: sg.sum(sg.broadcast_to(sg.expand_dims(y, 1), (y.shape[0], 3)) * x)),
]


@pytest.mark.parametrize("name,fn", SYMBOLIC_GRADS, ids=[c[0] for c in SYMBOLIC_GRADS])
def test_gradients_with_symbolic_sizes(name: str, fn: Callable[..., Any],
                                       rng: np.random.Generator) -> None:
    """Gradients through ops whose sizes are symbolic, at two batch sizes."""
    x = sg.placeholder("x", ("n", 3), "float64")
    y = sg.placeholder("y", ("n",), "float64")
    i = sg.placeholder("i", (4,), "int64")
    out = fn(x, y, i)
    for n in (5, 2):
        check_grad(out, [x, y, i], {"x": rng.standard_normal((n, 3)), "y": rng.standard_normal(n),
                                    "i": np.array([0, -1, 1, 1])}, seed=SEED)


def test_disconnected_inputs_get_zeros_or_raise() -> None:
    x = sg.placeholder("x", (3,), "float32")
    y = sg.placeholder("y", (2, 2), "float32")
    out = sg.sum(x * x)
    gx, gy = sg.compile(sg.grad(out, [x, y]))(x=np.ones(3, "f4"), y=np.ones((2, 2), "f4"))
    np.testing.assert_array_equal(gx, np.full(3, 2.0, "f4"))
    assert gy.dtype == np.float32 and gy.shape == (2, 2)
    np.testing.assert_array_equal(gy, np.zeros((2, 2), "f4"))
    with pytest.raises(sg.GradientError, match="does not depend on 'y'"):
        sg.grad(out, [x, y], disconnected="raise")
    with pytest.raises(sg.GradientError, match="does not depend on 'y'"):
        sg.grad(out, y, disconnected="raise")
    # reached only through a piecewise-constant op: connected, with a zero gradient
    g = sg.compile(sg.grad(out + sg.sum(sg.floor(y)), y, disconnected="raise"))(
        x=np.ones(3, "f4"), y=np.ones((2, 2), "f4"))
    np.testing.assert_array_equal(g, np.zeros((2, 2), "f4"))


def test_non_scalar_output_without_seed_is_a_clear_error() -> None:
    x = sg.placeholder("x", (3,), "float64")
    with pytest.raises(sg.GradientError, match=r"shape \(3,\).*scalar output.*seed") as info:
        sg.grad(sg.tanh(x), x)
    assert isinstance(info.value, ValueError)
    assert "test_gradients.py" in str(info.value)


def test_grad_with_a_seed_equals_vjp(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", (3, 2), "float64")
    u = sg.placeholder("u", (2,), "float64")
    y = sg.tanh(sg.sum(x * x, axis=0))
    f = sg.compile([sg.grad(y, x, seed=u), sg.vjp(y, x, u)])
    vx, vu = rng.standard_normal((3, 2)), rng.standard_normal(2)
    by_grad, by_vjp = f(x=vx, u=vu)
    np.testing.assert_array_equal(by_grad, by_vjp)
    np.testing.assert_allclose(by_grad, vu * (1 - np.tanh((vx**2).sum(0)) ** 2) * 2 * vx, rtol=1e-12)
    # a seed that is a constant array, and one that broadcasts to y's shape
    c = np.array([0.5, -2.0])
    np.testing.assert_allclose(sg.compile(sg.grad(y, x, seed=c))(x=vx), f(x=vx, u=c)[0], rtol=1e-15)
    np.testing.assert_allclose(sg.compile(sg.grad(y, x, seed=1.0))(x=vx),
                               sg.compile(sg.grad(sg.sum(y), x))(x=vx), rtol=1e-15)


def test_grad_returns_one_tensor_or_a_list() -> None:
    x = sg.placeholder("x", (2,), "float64")
    y = sg.placeholder("y", (2,), "float64")
    out = sg.sum(x * y)
    assert isinstance(sg.grad(out, x), sg.Tensor)
    gs = sg.grad(out, [x, y])
    assert isinstance(gs, list) and len(gs) == 2
    gx, gy = sg.compile(gs)(x=np.array([1.0, 2.0]), y=np.array([3.0, 4.0]))
    np.testing.assert_array_equal(gx, [3.0, 4.0])
    np.testing.assert_array_equal(gy, [1.0, 2.0])


def test_grad_rejects_integer_outputs_and_inputs() -> None:
    i = sg.placeholder("i", (3,), "int64")
    x = sg.placeholder("x", (3,), "float64")
    with pytest.raises(sg.GradientError):
        sg.grad(sg.sum(i), x)
    with pytest.raises(sg.DTypeError, match="grad"):
        sg.grad(sg.sum(x * sg.cast(i, "float64")), i)


def test_gradient_graph_is_symbolic_and_reusable(rng: np.random.Generator) -> None:
    """The derived gradient is an ordinary graph: it can be compiled twice, combined with
    other outputs, and used inside further expressions."""
    x = sg.placeholder("x", (3,), "float64")
    loss = sg.sum(sg.sigmoid(x))
    g = sg.grad(loss, x)
    assert isinstance(g, sg.Tensor) and g.shape == (3,)
    update = x - 0.1 * g
    vx = rng.standard_normal(3)
    s = 1 / (1 + np.exp(-vx))
    out_loss, out_update = sg.compile([loss, update])(x=vx)
    np.testing.assert_allclose(out_loss, s.sum(), rtol=1e-14)
    np.testing.assert_allclose(out_update, vx - 0.1 * s * (1 - s), rtol=1e-14)


OPTIMIZING = ",".join(p for p in ("canonicalize", "stabilize", "autodiff", "cse", "fold", "simplify",
                                  "dce") if p in known_passes())
# the SymPy-backed simplify pass costs ~60 ms per graph: it runs on every 5th case only
WITHOUT_SIMPLIFY = OPTIMIZING.replace("simplify,", "")


def test_gradients_under_the_optimizing_pipeline() -> None:
    """The optimizing passes keep every gradient and second derivative right (float64 only,
    to stay fast; failures are collected and reported together)."""
    failures = []
    for cases, wrap in ((GRAD_CASES, lambda f: f), (SECOND_ORDER, _grad_norm)):
        for k, (name, spec, fn) in enumerate(cases):
            pipeline = OPTIMIZING if k % 5 == 0 else WITHOUT_SIMPLIFY
            phs = _placeholders(spec, "float64")
            values = _values(spec, np.random.default_rng(SEED))
            try:
                check_grad(wrap(fn)(*phs), phs, values, seed=SEED, pipeline=pipeline)
            except Exception as exc:  # collected, then reported
                failures.append(f"{name} ({pipeline}): {type(exc).__name__}: {str(exc)[:200]}")
    assert not failures, "\n".join(failures)
