"""The canonicalize pass: each rule text-in/text-out, the conservative cases left alone,
values unchanged on random inputs, and the rewrites reported."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.ir.graph import to_text
from symgrad.ir.parse import parse_text
from symgrad.passes import run_pipeline


def check(before: str, after: str, pipeline: str = "canonicalize") -> dict[str, int]:
    """Run ``pipeline`` (verifying after each pass) on the graph ``before`` and require the
    graph ``after``. Nodes are hash-consed, so equal graphs are the same objects."""
    got, report = run_pipeline(parse_text(before), pipeline, verify_each=True)
    want = parse_text(after)
    assert len(got) == len(want) and all(g is w for g, w in zip(got, want)), (
        f"got:\n{to_text(got)}\nwant:\n{to_text(want)}")
    return report.rewrites


def unchanged(text: str, pipeline: str = "canonicalize") -> None:
    check(text, text, pipeline)


X = "%0 = placeholder[name='x']() : float32[n]\n"


def test_identities_of_add_mul_sub_neg():
    rewrites = check(X + """
        %1 = constant[value=1.]() : float32[]
        %2 = mul(%0, %1) : float32[n]
        %3 = constant[value=0.]() : float32[]
        %4 = add(%3, %2) : float32[n]
        %5 = neg(%4) : float32[n]
        %6 = neg(%5) : float32[n]
        %7 = sub(%6, %3) : float32[n]
        %8 = div(%7, %1) : float32[n]
        return %8
    """, X + "return %0")
    assert rewrites == {"canonicalize/mul-one": 1, "canonicalize/add-zero": 1,
                        "canonicalize/neg-neg": 1, "canonicalize/sub-zero": 1,
                        "canonicalize/div-one": 1}


def test_identity_keeps_the_broadcast_shape():
    check("""
        %0 = placeholder[name='s']() : float32[]
        %1 = constant[value=[1., 1., 1.]]() : float32[3]
        %2 = mul(%0, %1) : float32[3]
        return %2
    """, """
        %0 = placeholder[name='s']() : float32[]
        %1 = broadcast_to[shape=(3,)](%0) : float32[3]
        return %1
    """)


def test_negations_move_out_and_cancel():
    check(X + """
        %1 = placeholder[name='y']() : float32[n]
        %2 = neg(%0) : float32[n]
        %3 = neg(%1) : float32[n]
        %4 = mul(%2, %3) : float32[n]
        %5 = add(%4, %3) : float32[n]
        %6 = sub(%5, %2) : float32[n]
        return %6
    """, X + """
        %1 = placeholder[name='y']() : float32[n]
        %2 = mul(%0, %1) : float32[n]
        %3 = sub(%2, %1) : float32[n]
        %4 = add(%3, %0) : float32[n]
        return %4
    """)


def test_times_zero_only_where_the_other_factor_is_finite():
    # x may be inf or NaN: x * 0 stays
    unchanged(X + """
        %1 = constant[value=0.]() : float32[]
        %2 = mul(%0, %1) : float32[n]
        return %2
    """)
    # one_hot(y) * 0 is exactly 0
    check("""
        %0 = placeholder[name='y']() : int64[n]
        %1 = one_hot[depth=3, dtype='float32'](%0) : float32[n, 3]
        %2 = constant[value=0.]() : float32[]
        %3 = mul(%1, %2) : float32[n, 3]
        return %3
    """, """
        %0 = constant[value=0.]() : float32[]
        %1 = broadcast_to[shape=(n, 3)](%0) : float32[n, 3]
        return %1
    """)


def test_x_minus_x_only_for_values_that_cannot_be_inf_or_nan():
    unchanged(X + """
        %1 = sub(%0, %0) : float32[n]
        return %1
    """)
    check("""
        %0 = placeholder[name='k']() : int32[n]
        %1 = sub(%0, %0) : int32[n]
        return %1
    """, """
        %0 = constant[value=0]() : int32[]
        %1 = broadcast_to[shape=(n,)](%0) : int32[n]
        return %1
    """)
    check("""
        %0 = placeholder[name='x']() : float32[n]
        %1 = tanh(%0) : float32[n]
        %2 = placeholder[name='k']() : int32[n]
        %3 = cast[dtype='float32'](%2) : float32[n]
        %4 = sub(%3, %3) : float32[n]
        %5 = add(%1, %4) : float32[n]
        return %5
    """, """
        %0 = placeholder[name='x']() : float32[n]
        %1 = tanh(%0) : float32[n]
        return %1
    """)


def test_exp_of_log_only_on_non_negative_values():
    unchanged(X + """
        %1 = log(%0) : float32[n]
        %2 = exp(%1) : float32[n]
        return %2
    """)
    check(X + """
        %1 = sqrt(%0) : float32[n]
        %2 = log(%1) : float32[n]
        %3 = exp(%2) : float32[n]
        return %3
    """, X + """
        %1 = sqrt(%0) : float32[n]
        return %1
    """)


def test_log_of_exp_and_exp_of_log_softmax():
    check("""
        %0 = placeholder[name='z']() : float32[n, 4]
        %1 = exp(%0) : float32[n, 4]
        %2 = log(%1) : float32[n, 4]
        %3 = log_softmax[axis=1](%2) : float32[n, 4]
        %4 = exp(%3) : float32[n, 4]
        return %4
    """, """
        %0 = placeholder[name='z']() : float32[n, 4]
        %1 = softmax[axis=1](%0) : float32[n, 4]
        return %1
    """)


def test_transpose_and_reshape_chains():
    rewrites = check("""
        %0 = placeholder[name='a']() : float32[2, 3, 4]
        %1 = transpose[perm=(2, 0, 1)](%0) : float32[4, 2, 3]
        %2 = transpose[perm=(1, 2, 0)](%1) : float32[2, 3, 4]
        %3 = reshape[shape=(6, 4)](%2) : float32[6, 4]
        %4 = reshape[shape=(24,)](%3) : float32[24]
        %5 = transpose[perm=(1, 0, 2)](%0) : float32[3, 2, 4]
        %6 = transpose[perm=(2, 1, 0)](%5) : float32[4, 2, 3]
        return %4, %6
    """, """
        %0 = placeholder[name='a']() : float32[2, 3, 4]
        %1 = reshape[shape=(24,)](%0) : float32[24]
        %2 = transpose[perm=(2, 0, 1)](%0) : float32[4, 2, 3]
        return %1, %2
    """)
    assert rewrites["canonicalize/transpose-transpose"] == 2
    assert rewrites["canonicalize/reshape-chain"] == 1


def test_sum_of_a_broadcast_is_a_product():
    # static count: s * 12 (s may be anything: 12 copies of inf sum to inf, like inf * 12)
    check("""
        %0 = placeholder[name='s']() : float32[3]
        %1 = broadcast_to[shape=(4, 3)](%0) : float32[4, 3]
        %2 = sum[axes=(0,), keepdims=False](%1) : float32[3]
        return %2
    """, """
        %0 = placeholder[name='s']() : float32[3]
        %1 = constant[value=4.]() : float32[]
        %2 = mul(%0, %1) : float32[3]
        return %2
    """)
    # a symbolic count may be 0 at run time, and inf * 0 is NaN: only for finite s
    unchanged("""
        %0 = placeholder[name='s']() : float32[]
        %1 = broadcast_to[shape=(n,)](%0) : float32[n]
        %2 = sum[axes=(0,), keepdims=False](%1) : float32[]
        return %2
    """)
    check("""
        %0 = constant[value=0.5]() : float32[]
        %1 = broadcast_to[shape=(n, 2)](%0) : float32[n, 2]
        %2 = sum[axes=(0,), keepdims=True](%1) : float32[1, 2]
        return %2
    """, """
        %0 = constant[value=0.5]() : float32[]
        %1 = dim[dtype='float32', size=n]() : float32[]
        %2 = mul(%0, %1) : float32[]
        %3 = broadcast_to[shape=(1, 2)](%2) : float32[1, 2]
        return %3
    """)


def test_sum_factors_out_what_is_constant_along_the_axes():
    check("""
        %0 = placeholder[name='a']() : float32[n, 1]
        %1 = placeholder[name='b']() : float32[n, 5]
        %2 = mul(%0, %1) : float32[n, 5]
        %3 = sum[axes=(1,), keepdims=False](%2) : float32[n]
        %4 = neg(%1) : float32[n, 5]
        %5 = sum[axes=(0, 1), keepdims=False](%4) : float32[]
        return %3, %5
    """, """
        %0 = placeholder[name='a']() : float32[n, 1]
        %1 = reshape[shape=(n,)](%0) : float32[n]
        %2 = placeholder[name='b']() : float32[n, 5]
        %3 = sum[axes=(1,), keepdims=False](%2) : float32[n]
        %4 = mul(%1, %3) : float32[n]
        %5 = sum[axes=(0, 1), keepdims=False](%2) : float32[]
        %6 = neg(%5) : float32[]
        return %4, %6
    """)


def test_sum_of_one_hot_is_one_where_the_label_check_survives():
    labels = """
        %0 = placeholder[name='y']() : int64[n]
        %1 = one_hot[depth=4, dtype='float32'](%0) : float32[n, 4]
        %2 = sum[axes=(1,), keepdims=True](%1) : float32[n, 1]
    """
    # the one_hot is used elsewhere (its range check still runs)
    check(labels + """
        %3 = placeholder[name='p']() : float32[n, 4]
        %4 = mul(%1, %3) : float32[n, 4]
        %5 = mul(%2, %3) : float32[n, 4]
        return %4, %5
    """, """
        %0 = placeholder[name='y']() : int64[n]
        %1 = one_hot[depth=4, dtype='float32'](%0) : float32[n, 4]
        %2 = placeholder[name='p']() : float32[n, 4]
        %3 = mul(%1, %2) : float32[n, 4]
        return %3, %2
    """)
    # the sum is its only use: kept, so a bad label still raises
    unchanged(labels + "return %2")


def test_sums_of_sums_merge():
    check("""
        %0 = placeholder[name='a']() : float32[n, 3, 4]
        %1 = sum[axes=(1,), keepdims=False](%0) : float32[n, 4]
        %2 = sum[axes=(0, 1), keepdims=False](%1) : float32[]
        return %2
    """, """
        %0 = placeholder[name='a']() : float32[n, 3, 4]
        %1 = sum[axes=(0, 1, 2), keepdims=False](%0) : float32[]
        return %1
    """)


def test_cast_chains_only_through_exact_intermediates():
    check("""
        %0 = placeholder[name='x']() : float32[n]
        %1 = cast[dtype='float64'](%0) : float64[n]
        %2 = cast[dtype='float32'](%1) : float32[n]
        %3 = placeholder[name='k']() : int32[n]
        %4 = cast[dtype='int64'](%3) : int64[n]
        %5 = cast[dtype='float64'](%4) : float64[n]
        return %2, %5
    """, """
        %0 = placeholder[name='x']() : float32[n]
        %1 = placeholder[name='k']() : int32[n]
        %2 = cast[dtype='float64'](%1) : float64[n]
        return %0, %2
    """)
    unchanged("""
        %0 = placeholder[name='x']() : float64[n]
        %1 = cast[dtype='float32'](%0) : float32[n]
        %2 = cast[dtype='float64'](%1) : float64[n]
        return %2
    """)


def test_where_with_equal_branches_or_a_known_condition():
    check(X + """
        %1 = placeholder[name='c']() : bool[n]
        %2 = where(%1, %0, %0) : float32[n]
        %3 = constant[value=True]() : bool[]
        %4 = constant[value=2.]() : float32[]
        %5 = where(%3, %2, %4) : float32[n]
        %6 = logical_not(%1) : bool[n]
        %7 = where(%6, %5, %4) : float32[n]
        return %7
    """, X + """
        %1 = placeholder[name='c']() : bool[n]
        %2 = constant[value=2.]() : float32[]
        %3 = where(%1, %2, %0) : float32[n]
        return %3
    """)


def test_broadcast_scalar_used_elementwise_becomes_the_scalar():
    check(X + """
        %1 = placeholder[name='s']() : float32[]
        %2 = reshape[shape=(1,)](%1) : float32[1]
        %3 = broadcast_to[shape=(n,)](%2) : float32[n]
        %4 = mul(%3, %0) : float32[n]
        %5 = tanh(%3) : float32[n]
        %6 = add(%4, %5) : float32[n]
        return %6
    """, X + """
        %1 = placeholder[name='s']() : float32[]
        %2 = mul(%1, %0) : float32[n]
        %3 = tanh(%1) : float32[]
        %4 = add(%2, %3) : float32[n]
        return %4
    """)


def test_pow_by_constants():
    check(X + """
        %1 = constant[value=2.]() : float32[]
        %2 = pow(%0, %1) : float32[n]
        %3 = constant[value=0.5]() : float32[]
        %4 = pow(%2, %3) : float32[n]
        return %4
    """, X + """
        %1 = mul(%0, %0) : float32[n]
        %2 = sqrt(%1) : float32[n]
        return %2
    """)


def test_common_factors():
    check(X + """
        %1 = placeholder[name='y']() : float32[n]
        %2 = placeholder[name='c']() : float32[]
        %3 = mul(%0, %2) : float32[n]
        %4 = mul(%2, %1) : float32[n]
        %5 = sub(%3, %4) : float32[n]
        return %5
    """, X + """
        %1 = placeholder[name='y']() : float32[n]
        %2 = sub(%0, %1) : float32[n]
        %3 = placeholder[name='c']() : float32[]
        %4 = mul(%2, %3) : float32[n]
        return %4
    """)


def test_values_unchanged_on_random_inputs(rng):
    x = sg.placeholder("x", shape=(5, 3), dtype="float64")
    s = sg.placeholder("s", dtype="float64")
    k = sg.placeholder("k", shape=(5,), dtype="int32")
    y = sg.one_hot(k, 3, dtype="float64")
    e = sg.broadcast_to(s, (5, 3))
    out = [
        sg.sum(-(x * e) * 1.0 + 0.0, axis=1) - -sg.sum(sg.exp(sg.log(sg.exp(x))) * y, -1),
        sg.transpose(sg.transpose(x)) ** 2 - sg.sum(e, 0, keepdims=True) * (y * 0.0),
        sg.sum(sg.sum(x * sg.reshape(sg.sum(e, 1), (5, 1)), 0)),
    ]
    values = {"x": rng.standard_normal((5, 3)), "s": 0.7, "k": rng.integers(0, 3, 5)}
    plain = sg.compile(out, pipeline="dce")(**values)
    f = sg.compile(out, pipeline="canonicalize", verify_each=True)
    for a, b in zip(f(**values), plain):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert sum(f.report.rewrites.values()) >= 8
    assert f.report.passes[0].nodes_after < f.report.passes[0].nodes_before


def test_gradients_unchanged_by_canonicalization(rng):
    x = sg.placeholder("x", shape=(4,), dtype="float64")
    loss = sg.sum(sg.exp(sg.log(sg.sigmoid(x) * 1.0)) + 0.0 * x ** 2)
    values = {"x": rng.standard_normal(4)}
    want = sg.compile([loss, sg.grad(loss, x)], pipeline="autodiff")(**values)
    f = sg.compile([loss, sg.grad(loss, x)], pipeline="canonicalize,autodiff,canonicalize",
                   verify_each=True)
    for a, b in zip(f(**values), want):
        np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("x_value", [np.inf, -np.inf, np.nan])
def test_no_rewrite_hides_a_non_finite_input(x_value):
    x = sg.placeholder("x", shape=(3,))
    out = [x * 0.0, x - x, sg.exp(sg.log(x)), sg.sum(sg.broadcast_to(sg.sum(x), (sg.Dim.symbol("n"),)))]
    n = sg.placeholder("m", shape=("n",))
    f = sg.compile([*out, n], pipeline="canonicalize,fold,cse,canonicalize")
    g = sg.compile([*out, n], pipeline="dce")
    vals = {"x": np.full(3, x_value, np.float32), "m": np.zeros(0, np.float32)}
    for a, b in zip(f(**vals), g(**vals)):
        np.testing.assert_array_equal(a, b)


def test_reshapes_move_inside_scalar_products_and_keepdims_sums():
    check("""
        %0 = placeholder[name='g']() : float32[n, 5]
        %1 = sum[axes=(0,), keepdims=True](%0) : float32[1, 5]
        %2 = placeholder[name='s']() : float32[]
        %3 = mul(%2, %1) : float32[1, 5]
        %4 = reshape[shape=(5,)](%3) : float32[5]
        %5 = neg(%1) : float32[1, 5]
        %6 = reshape[shape=(5,)](%5) : float32[5]
        return %4, %6
    """, """
        %0 = placeholder[name='s']() : float32[]
        %1 = placeholder[name='g']() : float32[n, 5]
        %2 = sum[axes=(0,), keepdims=False](%1) : float32[5]
        %3 = mul(%0, %2) : float32[5]
        %4 = neg(%2) : float32[5]
        return %3, %4
    """)


def test_add_self_becomes_a_doubling():
    x = sg.placeholder("dbl_x", shape=(3,), dtype="float64")
    y = sg.exp(x) + sg.exp(x)
    f = sg.compile(y, pipeline="canonicalize")
    assert f.rewrites.get("canonicalize/add-self") == 1
    assert "add" not in f.graph_text and "mul" in f.graph_text
    v = np.array([0.5, -1.0, 700.0])
    np.testing.assert_array_equal(f(v), np.exp(v) + np.exp(v))  # exact, inf included
