"""Forward mode, Jacobians, Hessians and their agreement with reverse mode."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.ir.graph import toposort
from symgrad.testing import check_adjoint

RNG = np.random.default_rng(7)


def fd_jacobian(fn, x, eps=1e-6):
    cols = []
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = eps
        e = e.reshape(x.shape)
        cols.append((fn(x + e) - fn(x - e)) / (2 * eps))
    out = np.stack(cols, axis=-1)
    return out.reshape(np.shape(fn(x)) + x.shape)


def rosenbrock(v):
    return sg.sum(100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2)


def rosenbrock_np(v):
    return np.sum(100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2)


def rosenbrock_hess_np(v):
    n = v.size
    h = np.zeros((n, n))
    for i in range(n - 1):
        h[i, i] += 1200 * v[i] ** 2 - 400 * v[i + 1] + 2
        h[i + 1, i + 1] += 200
        h[i, i + 1] -= 400 * v[i]
        h[i + 1, i] -= 400 * v[i]
    return h


def test_jvp_matches_finite_differences():
    x = sg.placeholder("x", shape=(4,), dtype="float64")
    y = sg.tanh(x) * sg.sum(x**2) + sg.softmax(x)
    v = RNG.standard_normal(4)
    f = sg.compile(sg.jvp(y, x, sg.constant(v)))
    X = RNG.standard_normal(4)
    fy = sg.compile(y)
    expected = fd_jacobian(fy, X) @ v
    np.testing.assert_allclose(f(X), expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("mode", ["rev", "fwd"])
def test_jacobian_both_modes(mode):
    x = sg.placeholder("x", shape=(3,), dtype="float64")
    A = RNG.standard_normal((2, 3))
    y = sg.sigmoid(sg.constant(A) @ x) * x[0]
    J = sg.compile(sg.jacobian(y, x, mode=mode))
    X = RNG.standard_normal(3)
    np.testing.assert_allclose(J(X), fd_jacobian(sg.compile(y), X), rtol=1e-7, atol=1e-9)
    assert J(X).shape == (2, 3)


def test_jacobian_of_matrix_valued_function_has_shape_y_plus_x():
    x = sg.placeholder("x", shape=(2, 3), dtype="float64")
    y = sg.exp(x).T  # (3, 2)
    J = sg.compile(sg.jacobian(y, x))(np.ones((2, 3)))
    assert J.shape == (3, 2, 2, 3)
    expected = np.zeros((3, 2, 2, 3))
    for i in range(3):
        for j in range(2):
            expected[i, j, j, i] = np.e
    np.testing.assert_allclose(J, expected)


def test_hessian_rosenbrock_matches_analytic():
    v = sg.placeholder("v", shape=(10,), dtype="float64")
    H = sg.compile(sg.hessian(rosenbrock(v), v))
    X = RNG.standard_normal(10)
    np.testing.assert_allclose(H(X), rosenbrock_hess_np(X), rtol=1e-12, atol=1e-9)


def test_hessian_is_one_batched_pass_not_n_copies():
    """The graph size must not grow with n: a batching transform, not unrolled rows."""
    sizes = []
    for n in (10, 200):
        v = sg.placeholder("v", shape=(n,), dtype="float64")
        f = sg.compile(sg.hessian(rosenbrock(v), v))
        sizes.append(len(toposort(f.graph)))
    assert sizes[0] == sizes[1]


def test_hessian_of_function_containing_a_gradient():
    x = sg.placeholder("x", shape=(3,), dtype="float64")
    f = sg.sum(sg.sin(x) * x)
    g = sg.grad(f, x)
    h_of = sg.sum(g * g)  # a scalar function that itself holds a gradient
    H = sg.compile(sg.hessian(h_of, x))
    X = RNG.standard_normal(3)
    grad_h = sg.compile(sg.grad(h_of, x))
    np.testing.assert_allclose(H(X), fd_jacobian(grad_h, X), rtol=1e-6, atol=1e-8)


def test_forward_over_reverse_equals_reverse_over_reverse():
    x = sg.placeholder("x", shape=(5,), dtype="float64")
    f = sg.logsumexp(x * sg.tanh(x)) + sg.sum(x**3)
    h_fwd = sg.compile(sg.jacobian(sg.grad(f, x), x, mode="fwd"))
    h_rev = sg.compile(sg.jacobian(sg.grad(f, x), x, mode="rev"))
    X = RNG.standard_normal(5)
    np.testing.assert_allclose(h_fwd(X), h_rev(X), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h_fwd(X), h_fwd(X).T, rtol=1e-12, atol=1e-12)


def test_hvp_equals_hessian_times_vector():
    v = sg.placeholder("v", shape=(6,), dtype="float64")
    d = RNG.standard_normal(6)
    hv = sg.compile(sg.hvp(rosenbrock(v), v, sg.constant(d)))
    X = RNG.standard_normal(6)
    np.testing.assert_allclose(hv(X), rosenbrock_hess_np(X) @ d, rtol=1e-10)


def test_third_order_derivative():
    x = sg.placeholder("x", dtype="float64")
    f = sg.sin(x) * x
    d3 = sg.grad(sg.grad(sg.grad(f, x), x), x)
    X = 0.7
    # d3/dx3 (x sin x) = -3 sin x - x cos x
    np.testing.assert_allclose(sg.compile(d3)(X), -3 * np.sin(X) - X * np.cos(X), rtol=1e-12)


@pytest.mark.parametrize(
    "build",
    [
        lambda x: sg.tanh(x @ sg.constant(np.arange(12.0).reshape(4, 3) / 10)),
        lambda x: sg.softmax(x * x),
        lambda x: sg.concatenate([x[1:], sg.exp(x[:2])]),
        lambda x: sg.log_softmax(sg.stack([x, -x])),
        lambda x: sg.max(sg.stack([x, x * x]), axis=0) + sg.prod(x) + sg.logsumexp(x),
    ],
)
def test_adjoint_identity(build):
    x = sg.placeholder("x", shape=(4,), dtype="float64")
    check_adjoint(build(x), x, {"x": RNG.standard_normal(4)})


def test_adjoint_check_catches_a_wrong_rule(monkeypatch):
    from symgrad.ops import OPS

    op = OPS["sin"]
    original = op.pullback
    monkeypatch.setattr(op, "pullback", lambda node, g: [sg.mul(g, sg.sin(node.inputs[0]))])
    x = sg.placeholder("x", shape=(3,), dtype="float64")
    with pytest.raises(AssertionError, match="disagree"):
        check_adjoint(sg.sin(x * 1.5), x, {"x": np.array([0.1, 0.2, 0.3])})
    monkeypatch.setattr(op, "pullback", original)


def test_jacobian_with_symbolic_batch():
    x = sg.placeholder("x", shape=(None,), dtype="float64")
    J = sg.compile(sg.jacobian(sg.exp(x), x))
    for n in (2, 5):
        X = RNG.standard_normal(n)
        np.testing.assert_allclose(J(X), np.diag(np.exp(X)), rtol=1e-12)
