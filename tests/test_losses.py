"""sg.nn losses against hand-written NumPy formulas, their gradients, extreme inputs, and
error messages."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg
from symgrad.testing import check_grad

RNG = np.random.default_rng(7)


def np_log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    z = z.astype(np.float64)
    s = z - z.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def np_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.exp(np_log_softmax(z, axis))


# -- cross-entropy -------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_integer_labels(reduction):
    z_v = RNG.standard_normal((5, 4))
    y_v = np.array([0, 3, 1, 1, 2])
    z = sg.placeholder("z", (None, 4), "float64")
    y = sg.placeholder("y", (None,), "int64")
    loss = sg.nn.cross_entropy(z, y, reduction=reduction)
    per = -np_log_softmax(z_v)[np.arange(5), y_v]
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(sg.compile(loss)(z=z_v, y=y_v), want, rtol=1e-13)


def test_cross_entropy_default_is_batch_mean_and_gradient_is_softmax_minus_onehot():
    z = sg.placeholder("z", (None, 3))
    y = sg.placeholder("y", (None,), "int32")
    loss = sg.nn.cross_entropy(z, y)
    f = sg.compile([loss, sg.grad(loss, z)])
    z_v = RNG.standard_normal((4, 3)).astype("f4")
    y_v = np.array([2, 0, 0, 1], "i4")
    value, gz = f(z=z_v, y=y_v)
    assert value.dtype == np.float32 and gz.dtype == np.float32
    np.testing.assert_allclose(value, -np_log_softmax(z_v)[np.arange(4), y_v].mean(), rtol=1e-6)
    np.testing.assert_allclose(gz, (np_softmax(z_v) - np.eye(3)[y_v]) / 4, rtol=1e-5, atol=1e-7)


def test_cross_entropy_class_axis_and_probability_targets():
    z_v = RNG.standard_normal((2, 5, 3))  # (N, C, L): classes on axis 1
    y_v = RNG.integers(0, 5, size=(2, 3))
    p_v = np_softmax(RNG.standard_normal((2, 5, 3)), axis=1)
    z = sg.placeholder("z", (2, 5, 3), "float64")
    y = sg.placeholder("y", (2, 3), "int64")
    p = sg.placeholder("p", (2, 5, 3), "float64")
    hard = sg.nn.cross_entropy(z, y, reduction="none", axis=1)
    soft = sg.nn.cross_entropy(z, p, reduction="sum", axis=1)
    got_hard, got_soft, gz = sg.compile([hard, soft, sg.grad(soft, z)])(z=z_v, y=y_v, p=p_v)
    ls = np_log_softmax(z_v, axis=1)
    want_hard = -np.take_along_axis(ls, y_v[:, None, :], axis=1)[:, 0]
    np.testing.assert_allclose(got_hard, want_hard, rtol=1e-13)
    np.testing.assert_allclose(got_soft, -(p_v * ls).sum(), rtol=1e-13)
    # sum(p) = 1 along the class axis, so the gradient is softmax(z) - p
    np.testing.assert_allclose(gz, np.exp(ls) - p_v, rtol=1e-12, atol=1e-14)
    # one-hot probabilities give the same loss as the integer labels
    onehot = np.moveaxis(np.eye(5)[y_v], -1, 1)
    same = sg.compile(sg.nn.cross_entropy(z, p, reduction="none", axis=1))(z=z_v, p=onehot)
    np.testing.assert_allclose(same, want_hard, rtol=1e-13)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cross_entropy_gradients_finite_differences(dtype):
    z = sg.placeholder("z", (None, 4), dtype)
    y = sg.placeholder("y", (None,), "int64")
    p = sg.placeholder("p", (None, 4), dtype)
    loss = sg.nn.cross_entropy(sg.tanh(z) * 3, y) + sg.nn.cross_entropy(z, sg.softmax(p), "sum")
    check_grad(loss, [z, y, p], {"z": RNG.standard_normal((3, 4)), "y": np.array([1, 0, 3]),
                                 "p": RNG.standard_normal((3, 4))})
    # second order: the Hessian of cross-entropy through log_softmax
    gz = sg.grad(sg.nn.cross_entropy(z, y), z)
    check_grad(sg.sum(gz * gz), [z, y], {"z": RNG.standard_normal((3, 4)), "y": np.array([1, 0, 3])})


def test_cross_entropy_extreme_logits_float32_are_exact():
    z = sg.placeholder("z", (None, 3))
    y = sg.placeholder("y", (None,), "int64")
    loss = sg.nn.cross_entropy(z, y, reduction="none")
    f = sg.compile([loss, sg.grad(sg.sum(loss), z)])
    z_v = np.array([[1e4, -1e4, 0], [1e4, 1e4, -1e4], [-1e4, 1e4, 1e4], [-1e4, 1e4, 0]], "f4")
    y_v = np.array([0, 1, 2, 0])
    value, gz = f(z=z_v, y=y_v)
    assert np.isfinite(value).all() and np.isfinite(gz).all()
    np.testing.assert_allclose(value, [0, np.log(2), np.log(2), 2e4], rtol=1e-7, atol=0)
    want = np.array([[0, 0, 0], [0.5, -0.5, 0], [0, 0.5, -0.5], [-1, 1, 0]], "f4")
    np.testing.assert_allclose(gz, want, rtol=1e-7, atol=0)


def test_cross_entropy_minus_infinity_logit_of_another_class_is_finite():
    z = sg.placeholder("z", (2, 3), "float64")
    y = sg.placeholder("y", (2,), "int64")
    loss = sg.nn.cross_entropy(z, y, "sum")
    value, gz = sg.compile([loss, sg.grad(loss, z)])(
        z=np.array([[0.0, -np.inf, 0.0], [1.0, 2.0, -np.inf]]), y=np.array([0, 1]))
    np.testing.assert_allclose(value, np.log(2) + np.log1p(np.exp(-1.0)), rtol=1e-14)
    s = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(gz, [[-0.5, 0, 0.5], [1 - s, s - 1, 0]], rtol=1e-14, atol=1e-16)


def test_cross_entropy_labels_out_of_range_fail_at_call_time():
    z = sg.placeholder("z", (None, 3))
    y = sg.placeholder("y", (None,), "int64")
    f = sg.compile(sg.nn.cross_entropy(z, y))
    z_v = np.zeros((2, 3), "f4")
    with pytest.raises(sg.InputError, match=r"one_hot: label 3 is out of range \[0, 3\) "
                       r"\(op one_hot built at .*test_losses\.py:\d+\)"):
        f(z=z_v, y=np.array([0, 3]))
    with pytest.raises(sg.InputError, match=r"one_hot: label -1 is out of range"):
        f(z=z_v, y=np.array([-1, 0]))


def test_cross_entropy_batch_mismatch_static_is_a_build_error():
    z = sg.placeholder("z", (4, 10))
    with pytest.raises(sg.ShapeError, match=r"(?s)cross_entropy: labels must have shape \(4,\): axis 0 "
                       r"has size 3, expected 4 \(operand shapes: \(4, 10\), labels \(3,\)\)\n  at "
                       r".*test_losses\.py"):
        sg.nn.cross_entropy(z, sg.placeholder("y", (3,), "int64"))
    with pytest.raises(sg.ShapeError, match=r"cross_entropy: labels must have shape \(4,\), got rank 2"):
        sg.nn.cross_entropy(z, sg.placeholder("y2", (4, 1), "int64"))
    with pytest.raises(sg.ShapeError, match=r"cross_entropy: probability targets must have shape "
                       r"\(4, 10\): axis 1 has size 9"):
        sg.nn.cross_entropy(z, sg.placeholder("p", (4, 9)))
    with pytest.raises(sg.ShapeError, match=r"cross_entropy: labels: axis 0 has size 1, expected z.0"):
        sg.nn.cross_entropy(sg.placeholder("z", (None, 10)), sg.placeholder("y3", (1,), "int64"))


def test_cross_entropy_batch_mismatch_symbolic_is_a_call_time_error():
    z = sg.placeholder("z", (None, 3))
    y = sg.placeholder("y", (None,), "int64")
    f = sg.compile(sg.nn.cross_entropy(z, y))
    assert np.isfinite(f(z=np.zeros((2, 3), "f4"), y=np.array([0, 1])))
    with pytest.raises(sg.InputError, match=r"sizes must match, but y\.0 is 3 and z\.0 is 2 "
                       r"\(op built at .*test_losses\.py:\d+\)"):
        f(z=np.zeros((2, 3), "f4"), y=np.array([0, 1, 2]))


def test_loss_argument_errors():
    z = sg.placeholder("z", (4, 10))
    y = sg.placeholder("y", (4,), "int64")
    with pytest.raises(ValueError, match=r"cross_entropy: reduction must be 'mean', 'sum' or 'none', "
                       r"got 'avg'\n  at .*test_losses\.py"):
        sg.nn.cross_entropy(z, y, reduction="avg")
    with pytest.raises(sg.DTypeError, match=r"cross_entropy: labels must be integers or float "
                       r"probabilities, got bool"):
        sg.nn.cross_entropy(z, sg.placeholder("b", (4,), "bool"))
    with pytest.raises(sg.ShapeError, match=r"cross_entropy: the class axis 1 must have a static size"):
        sg.nn.cross_entropy(sg.placeholder("zz", (4, None)), y)
    with pytest.raises(sg.ShapeError, match=r"mse: target must have shape \(4, 10\), got rank 1"):
        sg.nn.mse(z, sg.placeholder("t", (10,)))
    with pytest.raises(sg.DTypeError, match=r"nll_loss: labels must be integers, got float32"):
        sg.nn.nll_loss(z, sg.placeholder("f", (4,)))


# -- nll, mse, binary cross-entropy ----------------------------------------------------------------
def test_nll_loss_matches_cross_entropy_on_log_softmax():
    z_v, y_v = RNG.standard_normal((6, 5)), RNG.integers(0, 5, size=6)
    z = sg.placeholder("z", (6, 5), "float64")
    y = sg.placeholder("y", (6,), "int64")
    a, b = sg.compile([sg.nn.nll_loss(sg.log_softmax(z), y, "sum"), sg.nn.cross_entropy(z, y, "sum")])(
        z=z_v, y=y_v)
    np.testing.assert_allclose(a, b, rtol=1e-14)
    np.testing.assert_allclose(a, -np_log_softmax(z_v)[np.arange(6), y_v].sum(), rtol=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse(reduction):
    p_v, t_v = RNG.standard_normal((3, 4)), RNG.standard_normal((3, 4))
    p = sg.placeholder("p", (None, 4), "float64")
    t = sg.placeholder("t", (None, 4), "float64")
    loss = sg.nn.mse(p, t, reduction)
    per = (p_v - t_v) ** 2
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    np.testing.assert_allclose(sg.compile(loss)(p=p_v, t=t_v), want, rtol=1e-14)
    check_grad(loss, [p, t], {"p": p_v, "t": t_v})


def np_bce(p: np.ndarray, t: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    p = p.astype(np.float64)
    return -(t * np.log(np.maximum(p, eps)) + (1 - t) * np.log(np.maximum(1 - p, eps)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_binary_cross_entropy(dtype):
    p_v = RNG.uniform(0.05, 0.95, size=(4, 3))
    t_v = RNG.uniform(0, 1, size=(4, 3))
    p = sg.placeholder("p", (None, 3), dtype)
    t = sg.placeholder("t", (None, 3), dtype)
    loss = sg.nn.binary_cross_entropy(p, t)
    got = sg.compile(loss)(p=p_v, t=t_v)
    np.testing.assert_allclose(got, np_bce(p_v, t_v).mean(), rtol=1e-6 if dtype == "float32" else 1e-13)
    check_grad(loss, [p, t], {"p": p_v, "t": t_v})


def test_binary_cross_entropy_at_zero_and_one_is_finite():
    p = sg.placeholder("p", (4,))
    t = sg.placeholder("t", (4,))
    loss = sg.nn.binary_cross_entropy(p, t, reduction="none")
    value, gp = sg.compile([loss, sg.grad(sg.sum(loss), p)])(
        p=np.array([0, 1, 0, 1], "f4"), t=np.array([1, 0, 0, 1], "f4"))
    assert np.isfinite(value).all() and np.isfinite(gp).all()
    cap = -np.log(np.float32(1e-7))
    np.testing.assert_allclose(value[:2], [cap, cap], rtol=2e-6)  # capped at -log(eps)
    np.testing.assert_allclose(value[2:], [0, 0], atol=2e-7)
    # where p or 1 - p is below eps the clip passes no gradient (its stated convention);
    # the other term keeps its exact derivative (1 - t) / (1 - p) - t / p
    np.testing.assert_array_equal(gp, [0, 0, 1, -1])
    with pytest.raises(ValueError, match=r"binary_cross_entropy: eps must be in \(0, 0.5\)"):
        sg.nn.binary_cross_entropy(p, t, eps=0)


def test_binary_cross_entropy_with_logits():
    z_v = RNG.standard_normal((5, 2)) * 3
    t_v = RNG.uniform(0, 1, size=(5, 2))
    z = sg.placeholder("z", (None, 2), "float64")
    t = sg.placeholder("t", (None, 2), "float64")
    loss = sg.nn.binary_cross_entropy_with_logits(z, t, "sum")
    value, gz = sg.compile([loss, sg.grad(loss, z)])(z=z_v, t=t_v)
    s = 1 / (1 + np.exp(-z_v))
    np.testing.assert_allclose(value, -(t_v * np.log(s) + (1 - t_v) * np.log1p(-s)).sum(), rtol=1e-12)
    np.testing.assert_allclose(gz, s - t_v, rtol=1e-12, atol=1e-15)
    check_grad(loss, [z, t], {"z": z_v, "t": t_v})
    check_grad(sg.nn.binary_cross_entropy_with_logits(z, t), [z, t],
               {"z": z_v.astype("f4"), "t": t_v.astype("f4")})


def test_binary_cross_entropy_with_logits_extreme_float32():
    z = sg.placeholder("z", (4,))
    t = sg.placeholder("t", (4,))
    loss = sg.nn.binary_cross_entropy_with_logits(z, t, reduction="none")
    value, gz = sg.compile([loss, sg.grad(sg.sum(loss), z)])(
        z=np.array([1e4, -1e4, 1e4, -1e4], "f4"), t=np.array([1, 0, 0, 1], "f4"))
    np.testing.assert_array_equal(value, [0, 0, 1e4, 1e4])
    np.testing.assert_array_equal(gz, [0, 0, 1, -1])


def test_integer_targets_are_cast_to_the_prediction_dtype():
    z = sg.placeholder("z", (3,))
    t = sg.placeholder("t", (3,), "int64")
    loss = sg.nn.binary_cross_entropy_with_logits(z, t)
    assert loss.dtype == "float32"
    value = sg.compile(loss)(z=np.zeros(3, "f4"), t=np.array([0, 1, 1]))
    np.testing.assert_allclose(value, np.log(2), rtol=1e-7)
    # two float dtypes promote as in NumPy
    assert sg.nn.mse(z, sg.placeholder("u", (3,), "float64")).dtype == "float64"
