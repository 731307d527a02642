"""Regressions in forward mode, second derivatives and rewrites (issue 14), each checked
on the numpy and llvm backends against NumPy, float64 finite differences or the
analytic answer; and a randomized check that forward and reverse mode agree through
broadcasting.

- Forward mode through broadcasting ``add``/``sub``: the tangent of a broadcast operand
  must be broadcast to the output's shape (it was summed, which failed or reshaped
  ``(1,)`` into ``(B,)``), also under ``hvp``/``hessian`` of ``softmax`` and of
  ``exp(x)/sum(exp(x))``.
- Casts to integers and bool carry no tangent.
- Second derivatives of ``prod`` at zeros.
- Rewrites that swap the operands of a broadcasting op keep the node's symbolic sizes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import symgrad as sg

BACKENDS = ("numpy", "llvm")
RNG_SEED = 1414


def fd_jacobian(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, eps: float = 1e-6
                ) -> np.ndarray:
    """d fn / dx (shape fn(x).shape + x.shape) by float64 central differences."""
    x = np.asarray(x, np.float64)
    cols = []
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = eps
        e = e.reshape(x.shape)
        cols.append((np.asarray(fn(x + e)) - np.asarray(fn(x - e))) / (2 * eps))
    out = np.stack(cols, axis=-1) if cols else np.zeros(np.shape(fn(x)) + (0,))
    return out.reshape(np.shape(fn(x)) + x.shape)


# -- forward mode through broadcasting add / sub ---------------------------------------------
BROADCAST_CASES: list[tuple[str, Callable[[Any, Any], Any], float]] = [
    ("x+a", lambda x, a: x + a, 1.0),
    ("a+x", lambda x, a: a + x, 1.0),
    ("x-a", lambda x, a: x - a, -1.0),
    ("a-x", lambda x, a: a - x, 1.0),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,build,sign", BROADCAST_CASES)
@pytest.mark.parametrize("a_shape", [(), (1,), (1, 1)])
def test_jvp_through_broadcast_add_sub_static(backend: str, name: str, build: Any, sign: float,
                                              a_shape: tuple[int, ...]) -> None:
    x = sg.placeholder("x", (3,), "float64")
    a = sg.placeholder("a", a_shape, "float64")
    v = sg.placeholder("v", a_shape, "float64")
    y = build(x, a)
    f = sg.compile([y, sg.jvp(y, a, v)], inputs=[x, a, v], backend=backend)
    X = np.array([0.5, -1.0, 2.0])
    A = np.full(a_shape, 0.25)
    V = np.full(a_shape, 3.0)
    val, tan = f(X, A, V)
    want = build(X, A)
    np.testing.assert_allclose(val, want, rtol=1e-15)
    np.testing.assert_allclose(tan, np.broadcast_to(sign * V, want.shape), rtol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,build,sign", BROADCAST_CASES)
def test_jvp_through_broadcast_add_sub_symbolic(backend: str, name: str, build: Any,
                                                sign: float) -> None:
    x = sg.placeholder("x", (None,), "float64")
    a = sg.placeholder("a", (1,), "float64")
    v = sg.placeholder("v", (1,), "float64")
    y = build(x, a)
    jv_a = sg.jvp(y, a, v)
    jv_x = sg.jvp(y, x, sg.ones_like(x))
    f = sg.compile([jv_a, jv_x], inputs=[x, a, v], backend=backend)
    for n in (0, 1, 5):
        X = np.linspace(-1.0, 1.0, n)
        got_a, got_x = f(X, np.array([0.5]), np.array([2.0]))
        np.testing.assert_allclose(got_a, np.full(n, 2.0 * sign), rtol=1e-15)
        x_sign = -1.0 if name == "a-x" else 1.0
        np.testing.assert_allclose(got_x, np.full(n, x_sign), rtol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jvp_of_broadcast_matrix_operands(backend: str) -> None:
    """(3, 1) + (1, 4) and (1, 4) - (3, 1): each operand's tangent is broadcast."""
    p = sg.placeholder("p", (3, 1), "float64")
    q = sg.placeholder("q", (1, 4), "float64")
    vp = sg.placeholder("vp", (3, 1), "float64")
    vq = sg.placeholder("vq", (1, 4), "float64")
    y = sg.exp(p + q) * (q - p)
    f = sg.compile([sg.jvp(y, p, vp), sg.jvp(y, q, vq)], inputs=[p, q, vp, vq], backend=backend)
    rng = np.random.default_rng(RNG_SEED)
    P, Q = rng.standard_normal((3, 1)), rng.standard_normal((1, 4))
    VP, VQ = rng.standard_normal((3, 1)), rng.standard_normal((1, 4))
    got_p, got_q = f(P, Q, VP, VQ)
    e = np.exp(P + Q)
    np.testing.assert_allclose(got_p, e * (Q - P) * VP - e * VP, rtol=1e-13)
    np.testing.assert_allclose(got_q, e * (Q - P) * VQ + e * VQ, rtol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("symbolic", [False, True])
def test_forward_jacobian_of_broadcast_add(backend: str, symbolic: bool) -> None:
    x = sg.placeholder("x", (None,) if symbolic else (4,), "float64")
    a = sg.placeholder("a", (), "float64")
    y = sg.sin(x) * (x - a) + a
    jf = sg.jacobian(y, a, mode="fwd")
    jr = sg.jacobian(y, a, mode="rev")
    f = sg.compile([jf, jr], inputs=[x, a], backend=backend)
    X = np.array([0.3, -0.7, 1.1, 2.0])
    got_f, got_r = f(X, np.array(0.4))
    np.testing.assert_allclose(got_f, 1.0 - np.sin(X), rtol=1e-14)
    np.testing.assert_allclose(got_r, got_f, rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("symbolic", [False, True])
def test_hessian_and_hvp_through_broadcast_add_sub(backend: str, symbolic: bool) -> None:
    """f = sum(exp(x + a) * (x - a)) with a scalar a broadcast against x."""
    x = sg.placeholder("x", (None,) if symbolic else (4,), "float64")
    a = sg.placeholder("a", (), "float64")
    v = sg.placeholder("v", (None,) if symbolic else (4,), "float64")
    f = sg.sum(sg.exp(x + a) * (x - a))
    outs = [sg.hessian(f, x), sg.hessian(f, a), sg.hvp(f, x, v), sg.hvp(f, a, 2.0)]
    fn = sg.compile(outs, inputs=[x, a, v], backend=backend)
    X, A, V = np.array([0.3, -0.7, 1.1, 2.0]), 0.4, np.array([1.0, -2.0, 0.5, 3.0])
    hx, ha, hvx, hva = fn(X, np.array(A), V)
    e = np.exp(X + A)
    np.testing.assert_allclose(hx, np.diag(e * (X - A + 2)), rtol=1e-14)
    np.testing.assert_allclose(ha, np.sum(e * (X - A - 2)), rtol=1e-14)
    np.testing.assert_allclose(hvx, e * (X - A + 2) * V, rtol=1e-14)
    np.testing.assert_allclose(hva, 2.0 * np.sum(e * (X - A - 2)), rtol=1e-14)


def _softmax_objective_np(z: np.ndarray, w: np.ndarray) -> float:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return float(np.sum(w * e / e.sum(axis=-1, keepdims=True)))


def _softmax_grad_np(z: np.ndarray, w: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    s = e / e.sum(axis=-1, keepdims=True)
    return s * (w - np.sum(w * s, axis=-1, keepdims=True))


SOFTMAX_FORMS: list[tuple[str, Callable[[Any], Any]]] = [
    ("softmax", lambda z: sg.softmax(z, axis=-1)),
    ("exp/sum", lambda z: sg.exp(z) / sg.sum(sg.exp(z), axis=-1, keepdims=True)),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form,build", SOFTMAX_FORMS)
@pytest.mark.parametrize("shape", [(4,), (2, 3)])
@pytest.mark.parametrize("pipeline", [None, "autodiff,cse,dce"])
def test_hessian_and_hvp_through_softmax(backend: str, form: str, build: Any,
                                         shape: tuple[int, ...], pipeline: str | None) -> None:
    rng = np.random.default_rng(RNG_SEED)
    z = sg.placeholder("z", shape, "float64")
    v = sg.placeholder("v", shape, "float64")
    W = rng.standard_normal(shape)
    f = sg.sum(sg.constant(W) * build(z))
    fn = sg.compile([sg.hessian(f, z), sg.hvp(f, z, v)], inputs=[z, v], backend=backend,
                    pipeline=pipeline)
    Z, V = rng.standard_normal(shape), rng.standard_normal(shape)
    H, hv = fn(Z, V)
    want = fd_jacobian(lambda t: _softmax_grad_np(t, W), Z)
    np.testing.assert_allclose(H, want, rtol=1e-6, atol=1e-8)
    n = Z.size
    np.testing.assert_allclose(hv, (want.reshape(n, n) @ V.ravel()).reshape(shape),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("form,build", SOFTMAX_FORMS)
def test_hvp_through_softmax_with_symbolic_batch(backend: str, form: str, build: Any) -> None:
    z = sg.placeholder("z", (None, 3), "float64")
    v = sg.placeholder("v", (None, 3), "float64")
    w = sg.placeholder("w", (None, 3), "float64")
    f = sg.sum(w * build(z))
    fn = sg.compile(sg.hvp(f, z, v), inputs=[z, v, w], backend=backend)
    rng = np.random.default_rng(RNG_SEED)
    for b in (1, 4):
        Z, V, W = (rng.standard_normal((b, 3)) for _ in range(3))
        H = fd_jacobian(lambda t, W=W: _softmax_grad_np(t, W), Z)
        want = (H.reshape(3 * b, 3 * b) @ V.ravel()).reshape(b, 3)
        np.testing.assert_allclose(fn(Z, V, W), want, rtol=1e-6, atol=1e-8)


# -- casts to integers and bool carry no tangent ---------------------------------------------
X3 = np.array([0.3, 1.2, 2.6])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_jvp_through_integer_cast_is_zero(backend: str, dtype: str) -> None:
    x = sg.placeholder("x", (3,), "float64")
    y = sg.sin(sg.cast(2 * x, dtype))
    f = sg.compile([y, sg.jvp(y, x, 1.0), sg.jacobian(y, x, mode="fwd"),
                    sg.grad(sg.sum(y), x)], backend=backend)
    val, tan, jac, g = f(X3)
    np.testing.assert_allclose(val, np.sin((2 * X3).astype(dtype).astype(np.float64)), rtol=1e-14)
    np.testing.assert_array_equal(tan, np.zeros(3))
    np.testing.assert_array_equal(jac, np.zeros((3, 3)))
    np.testing.assert_array_equal(g, np.zeros(3))


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_derivatives_through_integer_cast(backend: str) -> None:
    """f = sum(x**2 * int(2x)): the integer factor is a constant, H = diag(2 int(2x))."""
    x = sg.placeholder("x", (3,), "float64")
    v = sg.placeholder("v", (3,), "float64")
    f = sg.sum(x * x * sg.cast(sg.cast(2 * x, "int64"), "float64"))
    fn = sg.compile([sg.hessian(f, x), sg.hvp(f, x, v), sg.jvp(sg.grad(f, x), x, v)],
                    inputs=[x, v], backend=backend)
    V = np.array([1.0, -2.0, 0.5])
    H, hv, jg = fn(X3, V)
    want = np.diag(2.0 * np.trunc(2 * X3))
    np.testing.assert_allclose(H, want, rtol=1e-14)
    np.testing.assert_allclose(hv, want @ V, rtol=1e-14)
    np.testing.assert_allclose(jg, want @ V, rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("reduce", ["max", "min", "sum", "prod"])
def test_reduction_after_integer_cast(backend: str, reduce: str) -> None:
    """A reduction of an integer cast used to die on an empty AssertionError."""
    x = sg.placeholder("x", (3,), "float64")
    r = getattr(sg, reduce)(sg.cast(2 * x, "int64"))
    y = sg.cast(r, "float64") * x
    v = np.array([1.0, 2.0, -1.0])
    f = sg.compile([y, sg.jvp(y, x, sg.constant(v)), sg.jacobian(y, x, mode="fwd"),
                    sg.hessian(sg.sum(y * x), x)], backend=backend)
    val, tan, jac, hess = f(X3)
    k = float(getattr(np, reduce)((2 * X3).astype("int64")))
    np.testing.assert_allclose(val, k * X3, rtol=1e-14)
    np.testing.assert_allclose(tan, k * v, rtol=1e-14)
    np.testing.assert_allclose(jac, k * np.eye(3), rtol=1e-14)
    np.testing.assert_allclose(hess, 2 * k * np.eye(3), rtol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_casts_keep_their_tangent(backend: str) -> None:
    x = sg.placeholder("x", (3,), "float32")
    y = sg.sin(sg.cast(x, "float64")) * 2.0
    f = sg.compile(sg.jvp(y, x, 1.0), backend=backend)
    X = X3.astype(np.float32)
    np.testing.assert_allclose(f(X), 2 * np.cos(X.astype(np.float64)), rtol=1e-6)


# -- second derivatives of prod at zeros -----------------------------------------------------
def prod_hessian_np(x: np.ndarray) -> np.ndarray:
    """H[i, j] = prod of x over k not in {i, j} for i != j; 0 on the diagonal."""
    n = x.size
    h = np.zeros((n, n))
    for i, j in itertools.permutations(range(n), 2):
        h[i, j] = np.prod(np.delete(x, [i, j]))
    return h


def prod_grad_np(x: np.ndarray) -> np.ndarray:
    return np.array([np.prod(np.delete(x, i)) for i in range(x.size)])


def _points_with_zeros() -> list[np.ndarray]:
    rng = np.random.default_rng(RNG_SEED)
    points = [np.array([0.0, -1.3]), np.array([0.0, 0.0]), np.array([-0.0, 2.0])]
    for n in (2, 3, 4):
        for zeros in range(min(n, 3) + 1):
            x = rng.uniform(0.5, 2.0, n) * rng.choice([-1.0, 1.0], n)
            x[rng.permutation(n)[:zeros]] = 0.0
            points.append(x)
    return points


@pytest.mark.parametrize("backend", BACKENDS)
def test_prod_hessian_at_zeros(backend: str) -> None:
    for x in _points_with_zeros():
        p = sg.placeholder("p", x.shape, "float64")
        v = sg.placeholder("v", x.shape, "float64")
        f = sg.prod(p)
        fn = sg.compile([sg.grad(f, p), sg.hessian(f, p), sg.hvp(f, p, v)], inputs=[p, v],
                        backend=backend)
        V = np.arange(1.0, x.size + 1)
        g, H, hv = fn(x, V)
        want = prod_hessian_np(x)
        np.testing.assert_allclose(g, prod_grad_np(x), rtol=1e-14, atol=1e-15, err_msg=str(x))
        np.testing.assert_allclose(H, want, rtol=1e-14, atol=1e-15, err_msg=str(x))
        np.testing.assert_allclose(H, H.T, rtol=1e-14, atol=1e-15, err_msg=str(x))
        np.testing.assert_allclose(hv, want @ V, rtol=1e-14, atol=1e-15, err_msg=str(x))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("axis,keepdims", [(1, False), (0, False), (1, True)])
def test_prod_hessian_along_an_axis(backend: str, axis: int, keepdims: bool) -> None:
    """f = sum(w * prod(X, axis)): one prod per row (or column), each with its own zeros."""
    X = np.array([[0.0, -1.3, 2.0],
                  [0.0, 0.0, 1.5],
                  [0.7, -1.1, 0.9],
                  [0.0, 0.0, 0.0]])
    if axis == 0:
        X = np.ascontiguousarray(X[:3].T)
    w = np.arange(1.0, 1.0 + (X.shape[1 - axis]))
    x = sg.placeholder("x", X.shape, "float64")
    wshape = (1, w.size) if axis == 0 else (w.size, 1)
    wt = sg.constant(w.reshape(wshape) if keepdims else w)
    f = sg.sum(wt * sg.prod(x, axis=axis, keepdims=keepdims))
    H = sg.compile(sg.hessian(f, x), backend=backend)(X)
    want = np.zeros(X.shape + X.shape)
    lines = X if axis == 1 else X.T
    for r, line in enumerate(lines):
        block = w[r] * prod_hessian_np(line)
        for i, j in itertools.product(range(line.size), repeat=2):
            if axis == 1:
                want[r, i, r, j] = block[i, j]
            else:
                want[i, r, j, r] = block[i, j]
    np.testing.assert_allclose(H, want, rtol=1e-14, atol=1e-15)


def test_prod_hessian_matches_finite_differences_away_from_zeros() -> None:
    x = sg.placeholder("x", (4,), "float64")
    X = np.array([0.7, -1.2, 1.9, 0.4])
    H = sg.compile(sg.hessian(sg.prod(x), x))(X)
    np.testing.assert_allclose(H, fd_jacobian(prod_grad_np, X), rtol=1e-7, atol=1e-9)


# -- rewrites that swap operands keep symbolic sizes -----------------------------------------
def test_add_neg_keeps_symbolic_size_of_the_node() -> None:
    x0 = sg.placeholder("x0", (None, 1), "float32")
    x1 = sg.placeholder("x1", (None, 1), "float64")
    y = sg.add(sg.neg(x1), x0)
    X0 = np.array([[1.5], [2.0]], np.float32)
    X1 = np.array([[0.5], [4.0]])
    for backend in BACKENDS:
        f = sg.compile(y, inputs=[x0, x1], backend=backend)
        np.testing.assert_allclose(f(X0, X1), X0.astype(np.float64) - X1, rtol=1e-15)


Pattern = Callable[..., Any]


def _swap_patterns(m: Any) -> dict[str, Pattern]:
    """Programs that fire the rewrites which reorder operands (or may): ``m`` is ``sg`` or
    ``np``; ``c`` is a bool of the same sizes, ``d`` a bool of shape (1, 1)."""
    exp, log, where, lnot = m.exp, m.log, m.where, m.logical_not
    return {
        "add-neg-left": lambda p, q, r, c, d: -p + q,
        "add-neg-right": lambda p, q, r, c, d: p + -q,
        "neg-sub": lambda p, q, r, c, d: -(p - q),
        "sub-neg": lambda p, q, r, c, d: p - (-q),
        "mul-neg": lambda p, q, r, c, d: (-p) * q,
        "mul-minus-one": lambda p, q, r, c, d: q * -1.0 + p,
        "div-neg": lambda p, q, r, c, d: (-p) / (q * q + 3.0),
        "factor": lambda p, q, r, c, d: p * r + q * r,
        "factor-sub": lambda p, q, r, c, d: r * p - q * r,
        "where-not": lambda p, q, r, c, d: where(lnot(c), p, q),
        "where-not-scalar-condition": lambda p, q, r, c, d: where(lnot(d), p, q),
        "where-same": lambda p, q, r, c, d: where(c, p, p) + q,
        "where-select": lambda p, q, r, c, d: where(c, m.sin(q), 0.0) + p,
        "add-zero": lambda p, q, r, c, d: (0.0 + p) * q,
        "sub-zero": lambda p, q, r, c, d: (0.0 - p) * q,
        "sub-self": lambda p, q, r, c, d: m.sin(p) - m.sin(p) + q,
        "add-self": lambda p, q, r, c, d: (q + q) - p,
        "log-exp": lambda p, q, r, c, d: log(exp(p)) + q,
        "log1p": lambda p, q, r, c, d: log(q * q + 1.0) - p,
        "expm1": lambda p, q, r, c, d: (-1.0 + exp(q)) * p,
        "sigmoid": lambda p, q, r, c, d: 1.0 / (1.0 + exp(-p)) * q,
        "softplus": lambda p, q, r, c, d: log(1.0 + exp(q)) - p,
        "sqrt-square": lambda p, q, r, c, d: m.sqrt(p * p) + q,
        "softmax": lambda p, q, r, c, d: exp(p) / m.sum(exp(p), axis=1, keepdims=True) * q,
        "cluster-cancel": lambda p, q, r, c, d: p * q / q,
        "cluster-sum": lambda p, q, r, c, d: (p + q) - p + r,
    }


@pytest.mark.parametrize("pipeline,backend", [
    (None, "numpy"), (None, "llvm"), ("canonicalize", "numpy"), ("stabilize", "numpy"),
    ("simplify", "numpy"), ("canonicalize,simplify,stabilize,canonicalize", "numpy")])
def test_operand_swapping_rewrites_keep_symbolic_sizes(pipeline: str | None, backend: str
                                                       ) -> None:
    """Three placeholders with distinct symbolic sizes (one float32) in every order: each
    rewrite keeps the node's shape, and the values are NumPy's."""
    spec = {"p": "float64", "q": "float32", "r": "float64"}
    ph = {k: sg.placeholder(k, (None, 1), dt) for k, dt in spec.items()}
    c = sg.placeholder("c", (None, 1), "bool")
    d = sg.placeholder("d", (1, 1), "bool")
    rng = np.random.default_rng(RNG_SEED)
    vals = {k: rng.standard_normal((3, 1)).astype(dt) for k, dt in spec.items()}
    vals["c"] = np.array([[True], [False], [True]])
    vals["d"] = np.array([[False]])
    sym, ref = _swap_patterns(sg), _swap_patterns(np)
    inputs = [ph["p"], ph["q"], ph["r"], c, d]
    orders = list(itertools.permutations("pqr")) if backend == "numpy" else ["pqr", "qpr"]
    for name, build in sym.items():
        for order in orders:
            y = build(*[ph[k] for k in order], c, d)
            want = ref[name](*[vals[k] for k in order], vals["c"], vals["d"])
            f = sg.compile(y, inputs=inputs, backend=backend, pipeline=pipeline)
            got = f(*[vals[k] for k in "pqr"], vals["c"], vals["d"])
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} {order}")


def test_where_guard_keeps_symbolic_sizes_under_a_gradient() -> None:
    """stabilize's where-guard rebuilds branches with the condition's sizes."""
    p = sg.placeholder("p", (None, 1), "float64")
    q = sg.placeholder("q", (None, 1), "float64")
    c = sg.placeholder("c", (1, 1), "bool")
    f = sg.sum(sg.where(c, sg.sqrt(p), q) * q)
    P, Q = np.array([[4.0], [0.0]]), np.array([[1.0], [2.0]])
    for backend in BACKENDS:
        fn = sg.compile(sg.grad(f, [p, q]), inputs=[p, q, c], backend=backend)
        gp, gq = fn(P, Q, np.array([[False]]))
        np.testing.assert_array_equal(gp, np.zeros((2, 1)))
        np.testing.assert_array_equal(gq, 2 * Q)
        gp, gq = fn(np.array([[4.0], [1.0]]), Q, np.array([[True]]))
        np.testing.assert_allclose(gp, Q / (2 * np.array([[2.0], [1.0]])), rtol=1e-15)


# -- forward against reverse mode over random programs with broadcasting ---------------------
_UNARY: list[Callable[[Any], Any]] = [sg.sin, sg.tanh, sg.sigmoid, sg.exp, lambda t: t * t,
                                      lambda t: -t, sg.softplus]
_BINARY: list[Callable[[Any, Any], Any]] = [
    sg.add, sg.sub, sg.mul, sg.maximum,
    lambda a, b: a / (1.5 + b * b),
    lambda a, b: sg.where(sg.greater(a, b), a * b, a - b),
    lambda a, b: a * sg.cast(sg.cast(3 * b, "int64"), a.dtype),
]
_REDUCE: list[Callable[[Any], Any]] = [
    lambda t: sg.sum(t, axis=-1, keepdims=True),
    lambda t: sg.softmax(t, axis=-1),
    lambda t: sg.max(t, axis=-1, keepdims=True),
    lambda t: sg.prod(t, axis=-1, keepdims=True),
    lambda t: sg.exp(t) / sg.sum(sg.exp(t), axis=-1, keepdims=True),
]


def _random_program(rng: np.random.Generator, x: Any, c: Any, steps: int) -> Any:
    """A random composition over x and c (shapes that broadcast against each other)."""
    pool = [x, c]
    for _ in range(steps):
        kind = rng.integers(3)
        a = pool[rng.integers(len(pool))]
        if kind == 0:
            pool.append(_UNARY[rng.integers(len(_UNARY))](a))
        elif kind == 1:
            b = pool[rng.integers(len(pool))]
            pool.append(_BINARY[rng.integers(len(_BINARY))](a, b))
        elif a.ndim:
            pool.append(_REDUCE[rng.integers(len(_REDUCE))](a))
    y = pool[-1]
    for t in pool[2:-1]:  # keep every step in the program and x in the result
        y = y + 0.1 * t
    return y + x


TRIALS = 30


def test_forward_and_reverse_mode_agree_on_random_broadcasting_programs() -> None:
    """<u, J v> == <J^T u, v> and J v against float64 central differences, where x, the
    other input and the output have different (broadcast) shapes, static or symbolic."""
    rng = np.random.default_rng(RNG_SEED)
    shapes: list[tuple[Any, ...]] = [(), (3,), (1, 3), (4, 3), (4, 1)]
    checked = 0
    for trial in range(TRIALS):
        symbolic = trial % 3 == 2
        xs = shapes[rng.integers(len(shapes))]
        cs = shapes[rng.integers(len(shapes))]
        decl = {(4, 3): (None, 3), (4, 1): (None, 1)} if symbolic else {}
        x = sg.placeholder("x", decl.get(xs, xs), "float64")
        c = sg.placeholder("c", decl.get(cs, cs), "float64")
        y = _random_program(rng, x, c, steps=int(rng.integers(2, 6)))
        v = sg.placeholder("v", x.shape, "float64")
        u = sg.placeholder("u", y.shape, "float64")
        jv = sg.jvp(y, x, v)
        jtu = sg.vjp(y, x, u)
        X = rng.uniform(-1.0, 1.0, xs)
        C = rng.uniform(-1.0, 1.0, cs)
        V = rng.standard_normal(xs)
        fy = sg.compile(y, inputs=[x, c])
        U = rng.standard_normal(np.shape(fy(X, C)))
        backend = BACKENDS[trial % 2]
        f = sg.compile([jv, sg.sum(u * jv), sg.sum(jtu * v)], inputs=[x, c, v, u],
                       backend=backend)
        tan, lhs, rhs = f(X, C, V, U)
        where = f"trial {trial} ({backend}): x {xs}, c {cs}, y {y.shape}"
        assert abs(lhs - rhs) <= 1e-9 * max(1.0, abs(lhs), abs(rhs)), where
        eps = 1e-6
        fd = (fy(X + eps * V, C) - fy(X - eps * V, C)) / (2 * eps)
        np.testing.assert_allclose(tan, fd, rtol=1e-5, atol=1e-6, err_msg=where)
        checked += 1
    assert checked == TRIALS
