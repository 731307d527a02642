"""conv2d and pooling: values against loop implementations written here, gradients against
finite differences (first and second order), forward mode, and error messages."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import symgrad as sg
from symgrad.ops import OPS, table
from symgrad.testing import check_grad

RNG = np.random.default_rng(1234)


def rand(*shape: int, dtype: str = "float64") -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


# -- loop implementations (the independent references) ----------------------------------------
def out_size(n: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def taps(h, w, kh, kw, i, j, stride, padding, dilation=(1, 1)):
    """In-bounds input positions (r, q) of window (i, j), tap (a, b), row-major."""
    for a in range(kh):
        for b in range(kw):
            r = i * stride[0] + a * dilation[0] - padding[0]
            q = j * stride[1] + b * dilation[1] - padding[1]
            yield a, b, r, q, (0 <= r < h and 0 <= q < w)


def loop_conv(x, w, stride, padding, dilation):
    n_, c_, h, wd = x.shape
    o_, _, kh, kw = w.shape
    ho, wo = out_size(h, kh, stride[0], padding[0], dilation[0]), out_size(wd, kw, stride[1], padding[1], dilation[1])
    y = np.zeros((n_, o_, ho, wo))
    for n, o, i, j in itertools.product(range(n_), range(o_), range(ho), range(wo)):
        for a, b, r, q, inside in taps(h, wd, kh, kw, i, j, stride, padding, dilation):
            if inside:
                y[n, o, i, j] += np.dot(x[n, :, r, q], w[o, :, a, b])
    return y


def loop_conv_adjoints(x, w, g, stride, padding, dilation):
    """dx = B_x^T g and dw = B_w^T g, by the same loops as the forward."""
    n_, c_, h, wd = x.shape
    o_, _, kh, kw = w.shape
    dx, dw = np.zeros_like(x, dtype=np.float64), np.zeros_like(w, dtype=np.float64)
    for n, o, i, j in itertools.product(range(n_), range(o_), range(g.shape[2]), range(g.shape[3])):
        for a, b, r, q, inside in taps(h, wd, kh, kw, i, j, stride, padding, dilation):
            if inside:
                dx[n, :, r, q] += g[n, o, i, j] * w[o, :, a, b]
                dw[o, :, a, b] += g[n, o, i, j] * x[n, :, r, q]
    return dx, dw


def loop_max_pool(x, kernel, stride, padding, g=None, c=None):
    """Forward, and (given g) the first-maximum scatter, (given c) the gather."""
    n_, c_, h, wd = x.shape
    ho, wo = out_size(h, kernel[0], stride[0], padding[0]), out_size(wd, kernel[1], stride[1], padding[1])
    y = np.zeros((n_, c_, ho, wo))
    dx = np.zeros(x.shape)
    gathered = np.zeros((n_, c_, ho, wo))
    for n, ch, i, j in itertools.product(range(n_), range(c_), range(ho), range(wo)):
        best, at = -np.inf, None
        for _, _, r, q, inside in taps(h, wd, *kernel, i, j, stride, padding):
            if inside and (at is None or x[n, ch, r, q] > best):
                best, at = x[n, ch, r, q], (r, q)
        y[n, ch, i, j] = best
        if g is not None:
            dx[n, ch, at[0], at[1]] += g[n, ch, i, j]
        if c is not None:
            gathered[n, ch, i, j] = c[n, ch, at[0], at[1]]
    return y, dx, gathered


def loop_avg_pool(x, kernel, stride, padding, g=None):
    n_, c_, h, wd = x.shape
    ho, wo = out_size(h, kernel[0], stride[0], padding[0]), out_size(wd, kernel[1], stride[1], padding[1])
    y = np.zeros((n_, c_, ho, wo))
    dx = np.zeros(x.shape)
    area = kernel[0] * kernel[1]
    for n, ch, i, j in itertools.product(range(n_), range(c_), range(ho), range(wo)):
        for _, _, r, q, inside in taps(h, wd, *kernel, i, j, stride, padding):
            if inside:
                y[n, ch, i, j] += x[n, ch, r, q] / area
                if g is not None:
                    dx[n, ch, r, q] += g[n, ch, i, j] / area
    return y, dx


# -- conv2d ------------------------------------------------------------------------------------
CONV_CASES = [
    # stride, padding, dilation
    ((1, 1), (0, 0), (1, 1)),
    ((2, 1), (1, 2), (1, 1)),
    ((1, 2), (2, 0), (2, 1)),
    ((3, 2), (1, 1), (2, 2)),
]


@pytest.mark.parametrize("stride,padding,dilation", CONV_CASES)
def test_conv2d_and_its_adjoints_match_loops(stride, padding, dilation):
    x_v, w_v = rand(2, 3, 7, 6), rand(4, 3, 3, 2)
    attrs = dict(stride=stride, padding=padding, dilation=dilation)
    want = loop_conv(x_v, w_v, **attrs)
    g_v = rand(*want.shape)
    want_dx, want_dw = loop_conv_adjoints(x_v, w_v, g_v, **attrs)

    x = sg.placeholder("x", (None, 3, 7, 6), "float64")
    w = sg.placeholder("w", (4, 3, 3, 2), "float64")
    g = sg.placeholder("g", (None, 4, want.shape[2], want.shape[3]), "float64")
    y = sg.nn.conv2d(x, w, stride=stride, padding=padding, dilation=dilation)
    assert y.shape[1:] == want.shape[1:]
    dx = OPS["conv2d_grad_input"](g, w, in_hw=(7, 6), **attrs)
    dw = OPS["conv2d_grad_weight"](x, g, w_shape=(4, 3, 3, 2), **attrs)
    got = sg.compile([y, dx, dw])(x=x_v, w=w_v, g=g_v)
    np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], want_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[2], want_dw, rtol=1e-12, atol=1e-12)
    # and the pullback of conv2d is exactly these two ops
    gx, gw = sg.grad(sg.sum(y * g), [x, w])
    got_gx, got_gw = sg.compile([gx, gw])(x=x_v, w=w_v, g=g_v)
    np.testing.assert_allclose(got_gx, want_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_gw, want_dw, rtol=1e-12, atol=1e-12)


def test_conv2d_bias_same_padding_and_float32():
    x_v, w_v, b_v = rand(2, 2, 5, 5, dtype="float32"), rand(3, 2, 3, 3, dtype="float32"), rand(3, dtype="float32")
    x = sg.placeholder("x", (2, 2, 5, 5))
    w = sg.placeholder("w", (3, 2, 3, 3))
    b = sg.placeholder("b", (3,))
    y = sg.nn.conv2d(x, w, b, padding="same")
    assert y.shape == (2, 3, 5, 5) and y.dtype == "float32"
    got = sg.compile(y)(x=x_v, w=w_v, b=b_v)
    assert got.dtype == np.float32
    want = loop_conv(x_v.astype(np.float64), w_v.astype(np.float64), (1, 1), (1, 1), (1, 1))
    np.testing.assert_allclose(got, want + b_v[None, :, None, None], rtol=1e-5, atol=1e-5)
    assert sg.nn.conv2d(x, w, padding="valid").shape == (2, 3, 3, 3)


def test_conv2d_symbolic_batch_one_function_many_sizes():
    x = sg.placeholder("x", (None, 2, 6, 5), "float64")
    w = sg.placeholder("w", (3, 2, 2, 3), "float64")
    y = sg.nn.conv2d(x, w, stride=(2, 1), padding=1)
    assert isinstance(y.shape[0], sg.Dim) and y.shape[1:] == (3, 4, 5)
    gw = sg.grad(sg.sum(sg.tanh(y)), w)
    f = sg.compile([y, gw])
    w_v = rand(3, 2, 2, 3)
    for n in (1, 3, 0):
        x_v = rand(n, 2, 6, 5)
        yv, gwv = f(x=x_v, w=w_v)
        np.testing.assert_allclose(yv, loop_conv(x_v, w_v, (2, 1), (1, 1), (1, 1)), rtol=1e-12)
        _, want_gw = loop_conv_adjoints(x_v, w_v, 1 - np.tanh(yv) ** 2, (2, 1), (1, 1), (1, 1))
        np.testing.assert_allclose(gwv, want_gw, rtol=1e-10)


def test_conv2d_symbolic_spatial_sizes():
    x = sg.placeholder("x", (None, 2, None, None), "float64")
    w = sg.placeholder("w", (3, 2, 3, 2), "float64")
    y = sg.nn.conv2d(x, w, stride=2, padding=(1, 0), dilation=(1, 2))
    loss = sg.sum(y * y)
    f = sg.compile([y, sg.grad(loss, x)])
    w_v = rand(3, 2, 3, 2)
    for shape in [(1, 2, 5, 4), (2, 2, 8, 9)]:
        x_v = rand(*shape)
        yv, gx = f(x=x_v, w=w_v)
        np.testing.assert_allclose(yv, loop_conv(x_v, w_v, (2, 2), (1, 0), (1, 2)), rtol=1e-12)
        dx, _ = loop_conv_adjoints(x_v, w_v, 2 * yv, (2, 2), (1, 0), (1, 2))
        np.testing.assert_allclose(gx, dx, rtol=1e-10)
    # too small for the window: a clear error at call time, naming the op and the line
    with pytest.raises(sg.InputError, match=r"(?s)conv2d: the window spans 3 along W.*test_nn_ops\.py"):
        f(x=rand(1, 2, 5, 2), w=w_v)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_conv2d_gradients_finite_differences(dtype):
    x = sg.placeholder("x", (None, 2, 6, 5), dtype)
    w = sg.placeholder("w", (3, 2, 3, 2), dtype)
    b = sg.placeholder("b", (3,), dtype)
    loss = sg.mean(sg.tanh(sg.nn.conv2d(x, w, b, stride=(2, 1), padding=(1, 1), dilation=(1, 2))) ** 2)
    check_grad(loss, [x, w, b], {"x": rand(2, 2, 6, 5), "w": rand(3, 2, 3, 2), "b": rand(3)})


def test_conv2d_grad_ops_pullbacks_finite_differences():
    """The grad ops' own pullbacks (what a second derivative uses), checked directly."""
    attrs = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    x = sg.placeholder("x", (2, 2, 6, 5), "float64")
    w = sg.placeholder("w", (3, 2, 3, 2), "float64")
    g = sg.placeholder("g", (2, 3, 3, 3), "float64")
    gi = OPS["conv2d_grad_input"](g, w, in_hw=(6, 5), **attrs)
    gw = OPS["conv2d_grad_weight"](x, g, w_shape=(3, 2, 3, 2), **attrs)
    vals = {"x": rand(2, 2, 6, 5), "w": rand(3, 2, 3, 2), "g": rand(2, 3, 3, 3)}
    check_grad(sg.sum(sg.sin(gi)), [g, w], vals)
    check_grad(sg.sum(sg.sin(gw)), [x, g], vals)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_conv2d_second_derivative(dtype):
    x = sg.placeholder("x", (None, 2, 5, 5), dtype)
    w = sg.placeholder("w", (2, 2, 3, 3), dtype)
    loss = sg.sum(sg.tanh(sg.nn.conv2d(x, w, stride=2, padding=1)) ** 2)
    gw, gx = sg.grad(loss, [w, x])
    vals = {"x": rand(2, 2, 5, 5), "w": rand(2, 2, 3, 3)}
    check_grad(sg.sum(gw * gw), [x, w], vals)
    check_grad(sg.sum(gx * gx), [x, w], vals)


def test_forward_over_reverse_equals_reverse_over_reverse():
    """Hessian-vector products of a conv + pools net, by jvp of the gradient and by the
    gradient of <grad, v>: exercises every pushforward and every pullback."""
    x = sg.placeholder("x", (2, 2, 6, 6), "float64")
    w = sg.placeholder("w", (3, 2, 3, 3), "float64")
    v = sg.placeholder("v", (3, 2, 3, 3), "float64")
    h = sg.tanh(sg.nn.conv2d(x, w, padding=1))
    h = sg.nn.max_pool2d(h, 2, 1, 1)
    h = sg.nn.avg_pool2d(sg.sin(h), 3, 2, 1)
    loss = sg.sum(h * h)
    gw = sg.grad(loss, w)
    fwd = sg.jvp(gw, w, v)
    rev = sg.grad(sg.sum(gw * v), w)
    vals = {"x": rand(2, 2, 6, 6), "w": rand(3, 2, 3, 3), "v": rand(3, 2, 3, 3)}
    a, b = sg.compile([fwd, rev])(**vals)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # and the tangent of the forward value along the weight
    jv = sg.compile(sg.jvp(loss, w, v))(**vals)
    np.testing.assert_allclose(jv, np.sum(sg.compile(gw)(x=vals["x"], w=vals["w"]) * vals["v"]), rtol=1e-10)


# -- max pooling -------------------------------------------------------------------------------
POOL_CASES = [
    # kernel, stride, padding
    ((2, 2), (2, 2), (0, 0)),
    ((3, 3), (2, 2), (1, 1)),
    ((3, 2), (1, 2), (1, 0)),
    ((2, 3), (1, 1), (0, 1)),
]


@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
def test_max_pool2d_and_its_ops_match_loops(kernel, stride, padding):
    x_v = rand(2, 3, 7, 6)
    want, _, _ = loop_max_pool(x_v, kernel, stride, padding)
    g_v, c_v = rand(*want.shape), rand(*x_v.shape)
    _, want_dx, want_gather = loop_max_pool(x_v, kernel, stride, padding, g=g_v, c=c_v)
    x = sg.placeholder("x", (None, 3, 7, 6), "float64")
    g = sg.placeholder("g", (None, 3, want.shape[2], want.shape[3]), "float64")
    c = sg.placeholder("c", (None, 3, 7, 6), "float64")
    y = sg.nn.max_pool2d(x, kernel, stride, padding)
    dx = sg.grad(sg.sum(y * g), x)
    gathered = OPS["max_pool2d_gather"](x, c, kernel=kernel, stride=stride, padding=padding)
    got = sg.compile([y, dx, gathered])(x=x_v, g=g_v, c=c_v)
    np.testing.assert_array_equal(got[0], want)
    np.testing.assert_allclose(got[1], want_dx, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(got[2], want_gather)


def test_max_pool2d_ties_go_to_the_first_maximum():
    # every window of a constant image is a tie: the first (top-left) element wins
    x = sg.placeholder("x", (1, 1, 4, 4), "float64")
    gx = sg.grad(sg.sum(sg.nn.max_pool2d(x, 2)), x)
    got = sg.compile(gx)(x=np.ones((1, 1, 4, 4)))
    want = np.zeros((4, 4))
    want[::2, ::2] = 1
    np.testing.assert_array_equal(got[0, 0], want)
    # overlapping windows accumulate at a shared first maximum; a later equal value gets 0
    img = np.array([[5.0, 1.0, 5.0], [0.0, 2.0, 3.0], [5.0, 0.0, 1.0]])[None, None]
    gx = sg.grad(sg.sum(sg.nn.max_pool2d(x[:, :, :3, :3], 2, 1)), x)
    got = sg.compile(gx)(x=np.pad(img, ((0, 0), (0, 0), (0, 1), (0, 1))))
    # windows: (0,0)->5 at (0,0); (0,1)->5 at (0,2); (1,0)->5 at (2,0); (1,1)->3 at (1,2)
    want = np.zeros((4, 4))
    want[0, 0] = want[0, 2] = want[2, 0] = want[1, 2] = 1
    np.testing.assert_array_equal(got[0, 0], want)


def test_max_pool2d_padding_is_minus_infinity():
    x = sg.placeholder("x", (1, 1, 2, 2), "float64")
    x_v = -np.arange(1.0, 5.0).reshape(1, 1, 2, 2) * 100  # all negative: zeros would win
    y = sg.compile(sg.nn.max_pool2d(x, 2, 1, 1))(x=x_v)
    want = np.array([[-100, -100, -200], [-100, -100, -200], [-300, -300, -400]], dtype=float)
    np.testing.assert_array_equal(y[0, 0], want)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pool_gradients_finite_differences(dtype):
    x = sg.placeholder("x", (None, 2, 7, 6), dtype)
    m = sg.nn.max_pool2d(sg.tanh(x), (3, 2), (2, 1), (1, 1))
    a = sg.nn.avg_pool2d(x, 3, 2, 1)
    loss = sg.sum(sg.sin(m) ** 2) + sg.sum(sg.exp(a))
    check_grad(loss, [x], {"x": rand(2, 2, 7, 6)})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_pool_second_derivatives(dtype):
    x = sg.placeholder("x", (2, 2, 6, 6), dtype)
    w = sg.placeholder("w", (2, 2, 3, 3), dtype)
    h = sg.nn.conv2d(x, w, padding=1)
    loss = sg.sum(sg.tanh(sg.nn.max_pool2d(h, 2)) ** 2) + sg.sum(sg.sin(sg.nn.avg_pool2d(h, 3, 1, 1)) ** 2)
    gw = sg.grad(loss, w)
    check_grad(sg.sum(gw * gw), [x, w], {"x": rand(2, 2, 6, 6), "w": rand(2, 2, 3, 3)})


def test_max_pool_grad_ops_are_adjoint():
    """<grad(x, g), c> == <g, gather(x, c)>, and their pullbacks in g / c agree with FD."""
    attrs = dict(kernel=(3, 3), stride=(2, 2), padding=(1, 1))
    x = sg.placeholder("x", (2, 2, 5, 5), "float64")
    g = sg.placeholder("g", (2, 2, 3, 3), "float64")
    c = sg.placeholder("c", (2, 2, 5, 5), "float64")
    scat = OPS["max_pool2d_grad"](x, g, **attrs)
    gath = OPS["max_pool2d_gather"](x, c, **attrs)
    vals = {"x": rand(2, 2, 5, 5), "g": rand(2, 2, 3, 3), "c": rand(2, 2, 5, 5)}
    lhs, rhs = sg.compile([sg.sum(scat * c), sg.sum(g * gath)])(**vals)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)
    check_grad(sg.sum(sg.sin(scat)), [x, g], vals)
    check_grad(sg.sum(sg.sin(gath)), [x, c], vals)
    # piecewise constant in x: the derivative wrt x is an exact zero
    zero = sg.compile(sg.grad(sg.sum(sg.sin(scat)), x))(x=vals["x"], g=vals["g"])
    np.testing.assert_array_equal(zero, 0)


# -- average pooling ---------------------------------------------------------------------------
@pytest.mark.parametrize("kernel,stride,padding", POOL_CASES)
def test_avg_pool2d_and_its_adjoint_match_loops(kernel, stride, padding):
    x_v = rand(2, 3, 7, 6)
    want, _ = loop_avg_pool(x_v, kernel, stride, padding)
    g_v = rand(*want.shape)
    _, want_dx = loop_avg_pool(x_v, kernel, stride, padding, g=g_v)
    x = sg.placeholder("x", (None, 3, None, 6), "float64")
    g = sg.placeholder("g", (None, 3, want.shape[2], want.shape[3]), "float64")
    y = sg.nn.avg_pool2d(x, kernel, stride, padding)
    dx = sg.grad(sg.sum(y * g), x)
    got = sg.compile([y, dx])(x=x_v, g=g_v)
    np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got[1], want_dx, rtol=1e-12, atol=1e-15)


def test_avg_pool2d_counts_padding():
    x = sg.placeholder("x", (1, 1, 2, 2), "float64")
    y = sg.compile(sg.nn.avg_pool2d(x, 3, 1, 1))(x=np.ones((1, 1, 2, 2)))
    np.testing.assert_allclose(y, np.full((1, 1, 2, 2), 4 / 9), rtol=1e-15)


def test_avg_pool_grad_pullback_finite_differences():
    g = sg.placeholder("g", (2, 2, 3, 3), "float64")
    scat = OPS["avg_pool2d_grad"](g, kernel=(3, 2), stride=(2, 2), padding=(1, 1), in_hw=(5, 4))
    assert scat.shape == (2, 2, 5, 4)
    check_grad(sg.sum(sg.sin(scat)), [g], {"g": rand(2, 2, 3, 3)})


def test_nn_ops_declare_every_rule():
    rows = {line.split()[0]: line.split()[1:] for line in table().splitlines()[2:]}
    for name in ("conv2d", "conv2d_grad_input", "conv2d_grad_weight", "max_pool2d",
                 "max_pool2d_grad", "max_pool2d_gather", "avg_pool2d", "avg_pool2d_grad"):
        kind, reference, pullback, pushforward = rows[name][:4]
        assert (kind, reference, pullback, pushforward) == ("nn", "yes", "yes", "yes"), name
        assert "d" in OPS[name].doc and len(OPS[name].doc) > 80


def test_conv_training_size_is_fast():
    """A LeNet-sized step (batch 64, 1x16x16 -> 8 ch 3x3 -> pool -> 16 ch 3x3) stays quick."""
    import time

    x = sg.placeholder("x", (None, 1, 16, 16))
    w1 = sg.placeholder("w1", (8, 1, 3, 3))
    w2 = sg.placeholder("w2", (16, 8, 3, 3))
    h = sg.nn.max_pool2d(sg.relu(sg.nn.conv2d(x, w1, padding=1)), 2)
    h = sg.nn.avg_pool2d(sg.relu(sg.nn.conv2d(h, w2, padding=1)), 2)
    loss = sg.mean(h * h)
    f = sg.compile([loss, *sg.grad(loss, [w1, w2])])
    vals = {"x": rand(64, 1, 16, 16, dtype="float32"), "w1": rand(8, 1, 3, 3, dtype="float32"),
            "w2": rand(16, 8, 3, 3, dtype="float32")}
    f(**vals)
    start = time.perf_counter()
    for _ in range(5):
        out = f(**vals)
    per_call = (time.perf_counter() - start) / 5
    assert all(np.isfinite(o).all() for o in out)
    assert per_call < 0.5, per_call


# -- errors ------------------------------------------------------------------------------------
def test_conv2d_errors_name_op_shapes_and_line():
    x = sg.placeholder("x", (2, 3, 5, 5))
    with pytest.raises(sg.ShapeError, match=r"conv2d: input channels of x and w differ: 3 vs 4 "
                       r"\(operand shapes: x \(2, 3, 5, 5\), w \(2, 4, 3, 3\)\)\n  at .*test_nn_ops\.py"):
        sg.nn.conv2d(x, sg.placeholder("w", (2, 4, 3, 3)))
    with pytest.raises(sg.ShapeError, match=r"(?s)conv2d: the window spans 7 along H but the padded "
                       r"input has only 5.*test_nn_ops\.py"):
        sg.nn.conv2d(x, sg.placeholder("w", (2, 3, 4, 3)), dilation=(2, 1), padding=(0, 1))
    with pytest.raises(sg.ShapeError, match=r"conv2d: weight \(O, C, kh, kw\) must have rank 4, got rank 3"):
        sg.nn.conv2d(x, sg.placeholder("w", (3, 3, 3)))
    with pytest.raises(sg.ShapeError, match=r"conv2d: stride must be an int or a pair of ints >= 1, got 0"):
        sg.nn.conv2d(x, sg.placeholder("w", (2, 3, 3, 3)), stride=0)
    with pytest.raises(sg.ShapeError, match=r"conv2d: padding must be .* got 'full'"):
        sg.nn.conv2d(x, sg.placeholder("w", (2, 3, 3, 3)), padding="full")
    with pytest.raises(sg.ShapeError, match=r"conv2d: padding='same' needs an odd"):
        sg.nn.conv2d(x, sg.placeholder("w", (2, 3, 2, 3)), padding="same")
    with pytest.raises(sg.ShapeError, match=r"conv2d: bias must have shape \(2,\)"):
        sg.nn.conv2d(x, sg.placeholder("w", (2, 3, 3, 3)), sg.placeholder("b", (3,)))
    with pytest.raises(sg.DTypeError, match=r"conv2d: operands must share a float dtype, got float32 and float64"):
        OPS["conv2d"](x, sg.placeholder("w", (2, 3, 3, 3), "float64"),
                      stride=(1, 1), padding=(0, 0), dilation=(1, 1))


def test_conv2d_symbolic_channel_mismatch_is_a_call_time_error():
    x = sg.placeholder("x", (None, "c", 5, 5))
    w = sg.placeholder("w", (2, 3, 3, 3))
    f = sg.compile(sg.nn.conv2d(x, w))
    assert f(x=np.ones((1, 3, 5, 5), "f4"), w=np.ones((2, 3, 3, 3), "f4")).shape == (1, 2, 3, 3)
    with pytest.raises(sg.InputError, match=r"(?s)conv2d: input channels of x and w differ.*test_nn_ops\.py"):
        f(x=np.ones((1, 4, 5, 5), "f4"), w=np.ones((2, 3, 3, 3), "f4"))


def test_pool_errors():
    x = sg.placeholder("x", (2, 3, 5, 5))
    with pytest.raises(sg.ShapeError, match=r"max_pool2d: padding \(2, 2\) must be at most half the "
                       r"kernel \(3, 3\) \(operand shapes: \(2, 3, 5, 5\)\)\n  at .*test_nn_ops\.py"):
        sg.nn.max_pool2d(x, 3, padding=2)
    with pytest.raises(sg.ShapeError, match=r"avg_pool2d: the window spans 6 along W"):
        sg.nn.avg_pool2d(x, (2, 6))
    with pytest.raises(sg.ShapeError, match=r"max_pool2d: input \(N, C, H, W\) must have rank 4, got rank 2"):
        sg.nn.max_pool2d(sg.placeholder("m", (4, 4)), 2)
    with pytest.raises(sg.ShapeError, match=r"avg_pool2d: kernel_size must be an int or a pair"):
        sg.nn.avg_pool2d(x, (2, 2, 2))
