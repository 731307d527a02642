"""The stabilize pass: rewrites text-in/text-out, the values they fix, the NaN-through-where
convention at the singular points, and derivative requests that must keep their wrt."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.ir.graph import to_text
from symgrad.ir.parse import parse_text
from symgrad.passes import run_pipeline

PIPELINE = "canonicalize,stabilize,autodiff,stabilize,canonicalize,fold,cse,dce"


def check(before: str, after: str, pipeline: str = "stabilize") -> dict[str, int]:
    got, report = run_pipeline(parse_text(before), pipeline, verify_each=True)
    want = parse_text(after)
    assert len(got) == len(want) and all(g is w for g, w in zip(got, want)), (
        f"got:\n{to_text(got)}\nwant:\n{to_text(want)}")
    return report.rewrites


def test_every_rewrite_text_in_text_out():
    rewrites = check("""
        %0 = placeholder[name='x']() : float32[n, 4]
        %1 = exp(%0) : float32[n, 4]
        %2 = sum[axes=(1,), keepdims=True](%1) : float32[n, 1]
        %3 = log(%2) : float32[n, 1]
        %4 = div(%1, %2) : float32[n, 4]
        %5 = log(%4) : float32[n, 4]
        %6 = constant[value=1.]() : float32[]
        %7 = add(%0, %6) : float32[n, 4]
        %8 = log(%7) : float32[n, 4]
        %9 = sub(%1, %6) : float32[n, 4]
        %10 = sigmoid(%0) : float32[n, 4]
        %11 = log(%10) : float32[n, 4]
        %12 = sub(%6, %10) : float32[n, 4]
        %13 = log(%12) : float32[n, 4]
        %14 = mul(%0, %0) : float32[n, 4]
        %15 = sqrt(%14) : float32[n, 4]
        %16 = add(%6, %1) : float32[n, 4]
        %17 = log(%16) : float32[n, 4]
        %18 = neg(%0) : float32[n, 4]
        %19 = exp(%18) : float32[n, 4]
        %20 = add(%6, %19) : float32[n, 4]
        %21 = div(%6, %20) : float32[n, 4]
        return %3, %5, %8, %9, %11, %13, %15, %17, %21
    """, """
        %0 = placeholder[name='x']() : float32[n, 4]
        %1 = logsumexp[axes=(1,), keepdims=True](%0) : float32[n, 1]
        %2 = log_softmax[axis=1](%0) : float32[n, 4]
        %3 = log1p(%0) : float32[n, 4]
        %4 = expm1(%0) : float32[n, 4]
        %5 = neg(%0) : float32[n, 4]
        %6 = softplus(%5) : float32[n, 4]
        %7 = neg(%6) : float32[n, 4]
        %8 = softplus(%0) : float32[n, 4]
        %9 = neg(%8) : float32[n, 4]
        %10 = abs(%0) : float32[n, 4]
        %11 = sigmoid(%0) : float32[n, 4]
        return %1, %2, %3, %4, %7, %9, %10, %8, %11
    """)
    assert rewrites == {f"stabilize/{k}": 1 for k in (
        "logsumexp", "softmax", "log-softmax", "log1p", "expm1", "log-sigmoid",
        "log-one-minus-sigmoid", "sqrt-square", "softplus", "sigmoid")}


def test_softmax_written_with_a_reshaped_sum():
    check("""
        %0 = placeholder[name='z']() : float64[n, 3]
        %1 = exp(%0) : float64[n, 3]
        %2 = sum[axes=(1,), keepdims=False](%1) : float64[n]
        %3 = reshape[shape=(n, 1)](%2) : float64[n, 1]
        %4 = div(%1, %3) : float64[n, 3]
        %5 = reshape[shape=(1, n)](%2) : float64[1, n]
        %6 = transpose[perm=(1, 0)](%1) : float64[3, n]
        %7 = div(%6, %5) : float64[3, n]
        return %4, %7
    """, """
        %0 = placeholder[name='z']() : float64[n, 3]
        %1 = softmax[axis=1](%0) : float64[n, 3]
        %2 = exp(%0) : float64[n, 3]
        %3 = transpose[perm=(1, 0)](%2) : float64[3, n]
        %4 = sum[axes=(1,), keepdims=False](%2) : float64[n]
        %5 = reshape[shape=(1, n)](%4) : float64[1, n]
        %6 = div(%3, %5) : float64[3, n]
        return %1, %6
    """)


def test_stable_forms_are_accurate_where_the_naive_ones_fail():
    x = sg.placeholder("x", shape=(None,))
    cases = [
        (sg.log(sg.sum(sg.exp(x))), [1000.0, 999.0], 1000.0 + np.log1p(np.exp(-1.0))),
        (sg.log(1.0 + x), [1e-10], 1e-10),
        (sg.exp(x) - 1.0, [1e-10], 1e-10),
        (sg.log(sg.sigmoid(x)), [-200.0], -200.0),
        (sg.log(1.0 - sg.sigmoid(x)), [50.0], -50.0),
        (sg.sqrt(x * x), [-1e30], 1e30),
        (sg.log(1.0 + sg.exp(x)), [200.0], 200.0),
    ]
    for expr, value, want in cases:
        naive = sg.compile(expr, pipeline="dce")(x=np.array(value, np.float32))
        good = sg.compile(expr, pipeline="stabilize")(x=np.array(value, np.float32))
        np.testing.assert_allclose(good, np.broadcast_to(want, np.shape(good)), rtol=1e-6)
        assert not np.allclose(naive, want, rtol=1e-3, atol=0)


def _cross_entropy(z, y, k):
    return -sg.mean(sg.sum(sg.one_hot(y, k) * sg.log(sg.softmax(z)), -1))


def test_cross_entropy_gradient_is_softmax_minus_onehot_at_huge_logits():
    z = sg.placeholder("z", shape=("n", 3))
    y = sg.placeholder("y", shape=("n",), dtype="int64")
    loss = _cross_entropy(z, y, 3)
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0], [3.0, 1.0, -2.0]], np.float32)
    Y = np.array([1, 1, 2])
    f = sg.compile([loss, sg.grad(loss, z)], pipeline=PIPELINE, verify_each=True)
    value, grad = f(z=Z, y=Y)
    assert f.report.rewrites["stabilize/log-softmax"] == 1
    Z64 = Z.astype(np.float64)
    sm = np.exp(Z64 - Z64.max(1, keepdims=True))
    sm /= sm.sum(1, keepdims=True)
    onehot = np.eye(3)[Y]
    assert np.isfinite(value) and np.isfinite(grad).all()
    m = Z64.max(1)
    lse = m + np.log(np.exp(Z64 - m[:, None]).sum(1))
    np.testing.assert_allclose(value, np.mean(lse - Z64[np.arange(3), Y]), rtol=1e-6)
    np.testing.assert_allclose(grad, (sm - onehot) / 3, rtol=1e-6, atol=1e-8)
    assert grad[0, 0] == np.float32(1 / 3) and grad[0, 1] == np.float32(-1 / 3)
    # the naive graph is NaN there
    naive = sg.compile([loss, sg.grad(loss, z)], pipeline="autodiff")(z=Z, y=Y)
    assert not np.isfinite(naive[1]).all()
    # alone, the gradient is exactly (softmax(z) - onehot(y)) * (1/n)
    g = sg.compile(sg.grad(loss, z), pipeline=PIPELINE, verify_each=True)
    want = parse_text("""
        %0 = placeholder[name='z']() : float32[n, 3]
        %1 = softmax[axis=1](%0) : float32[n, 3]
        %2 = placeholder[name='y']() : int64[n]
        %3 = one_hot[depth=3, dtype='float32'](%2) : float32[n, 3]
        %4 = sub(%1, %3) : float32[n, 3]
        %5 = constant[value=1.]() : float32[]
        %6 = dim[dtype='float32', size=n]() : float32[]
        %7 = div(%5, %6) : float32[]
        %8 = mul(%4, %7) : float32[n, 3]
        return %8
    """)
    assert g.graph[0] is want[0], g.graph_text


@pytest.mark.parametrize("name", ["sqrt", "log", "div", "pow", "x*log(x)", "else-branch"])
def test_nan_through_where_gives_a_zero_gradient_at_the_singular_point(name):
    x = sg.placeholder("x", shape=(None,), dtype="float64")
    pos = sg.greater(x, 0)
    exprs = {
        "sqrt": sg.where(pos, sg.sqrt(x), 0.0),
        "log": sg.where(pos, sg.log(x), 0.0),
        "div": sg.where(sg.not_equal(x, 0), 1.0 / x, 0.0),
        "pow": sg.where(pos, x ** 0.75, 0.0),
        "x*log(x)": sg.where(pos, x * sg.log(x), 0.0),
        "else-branch": sg.where(sg.less_equal(x, 0), 0.0, sg.sqrt(x)),
    }
    loss = sg.sum(exprs[name])
    X = np.array([0.0, 4.0, -1.0])
    naive = sg.compile([loss, sg.grad(loss, x)], pipeline="autodiff")(x=X)
    f = sg.compile([loss, sg.grad(loss, x)], pipeline=PIPELINE, verify_each=True)
    value, grad = f(x=X)
    assert not np.isfinite(naive[1][0])  # the problem exists without the pass
    assert grad[0] == 0.0 and np.isfinite(grad).all()
    np.testing.assert_allclose(value, naive[0])
    # unselected points get exactly 0; selected ones keep their derivative
    want = np.where(np.isfinite(naive[1]), naive[1], 0.0)
    np.testing.assert_allclose(grad, want, rtol=1e-12)
    assert f.report.rewrites["stabilize/where-guard"] >= 1


def test_where_guard_is_idempotent_and_only_before_autodiff():
    x = sg.placeholder("x", shape=(3,), dtype="float64")
    e = sg.where(sg.greater(x, 0), sg.sqrt(x), 0.0)
    once, report = run_pipeline([sg.grad(sg.sum(e), x)], "stabilize")
    twice, again = run_pipeline(once, "stabilize")
    assert twice[0] is once[0] and not again.rewrites
    # without derivative requests the guard would only cost work
    (plain,), none = run_pipeline([e], "stabilize")
    assert plain is e and not none.rewrites


def test_a_gradient_with_respect_to_an_intermediate_is_not_rewritten_away():
    z = sg.placeholder("z", shape=(2, 3), dtype="float64")
    y = sg.placeholder("y", shape=(2,), dtype="int64")
    s = sg.softmax(z)
    onehot = sg.one_hot(y, 3, dtype="float64")
    loss = sg.sum(onehot * sg.log(s))
    f = sg.compile([sg.grad(loss, s), sg.grad(loss, z)], pipeline=PIPELINE, verify_each=True)
    Z = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    Y = np.array([0, 2])
    ds, dz = f(z=Z, y=Y)
    sm = np.exp(Z) / np.exp(Z).sum(1, keepdims=True)
    np.testing.assert_allclose(ds, np.eye(3)[Y] / sm, rtol=1e-12)
    np.testing.assert_allclose(dz, np.eye(3)[Y] - sm, rtol=1e-12, atol=1e-15)
    assert "stabilize/log-softmax" not in f.report.rewrites


def test_a_jvp_with_respect_to_an_intermediate_keeps_it():
    x = sg.placeholder("x", shape=(3,), dtype="float64")
    e = sg.exp(x)
    y = sg.log(e) * 2.0
    f = sg.compile(sg.jvp(y, e, np.ones(3)), pipeline="canonicalize,stabilize,autodiff")
    np.testing.assert_allclose(f(x=np.zeros(3)), [2.0, 2.0, 2.0])
    assert "canonicalize/log-exp" not in f.report.rewrites


def test_a_gradient_with_respect_to_a_constant_survives_every_pass():
    x = sg.placeholder("x", shape=(3,), dtype="float64")
    one = sg.constant(np.ones(3))
    two = sg.constant(np.float64(2.0))
    y = sg.sum(x * one + sg.exp(two) * x + sg.log(1.0 + one))
    f = sg.compile(sg.grad(y, [one, two]), pipeline=PIPELINE + ",simplify", verify_each=True)
    X = np.array([1.0, 2.0, 3.0])
    d_one, d_two = f(x=X)
    np.testing.assert_allclose(d_one, X + 0.5)
    np.testing.assert_allclose(d_two, np.exp(2.0) * X.sum())


def test_values_unchanged_on_moderate_random_inputs(rng):
    x = sg.placeholder("x", shape=(4, 5), dtype="float64")
    outs = [sg.log(sg.sum(sg.exp(x), 1)), sg.log(sg.softmax(x)), sg.log(1.0 + sg.sigmoid(x)),
            sg.exp(x) - 1.0, sg.log(1.0 - sg.sigmoid(x)), sg.sqrt(x * x),
            sg.exp(x) / sg.sum(sg.exp(x), 1, keepdims=True)]
    values = {"x": rng.standard_normal((4, 5))}
    f = sg.compile(outs, pipeline="stabilize", verify_each=True)
    assert sum(f.report.rewrites.values()) == 7
    for a, b in zip(f(**values), sg.compile(outs, pipeline="dce")(**values)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
