"""Constant folding: text-in/text-out, the cases left alone, and the report."""

import numpy as np

import symgrad as sg
from symgrad.ir.graph import to_text
from symgrad.ir.parse import parse_text
from symgrad.passes import run_pipeline


def check(before: str, after: str, pipeline: str = "fold") -> dict[str, int]:
    got, report = run_pipeline(parse_text(before), pipeline, verify_each=True)
    want = parse_text(after)
    assert len(got) == len(want) and all(g is w for g, w in zip(got, want)), (
        f"got:\n{to_text(got)}\nwant:\n{to_text(want)}")
    return report.rewrites


def test_folds_chains_of_constant_ops():
    rewrites = check("""
        %0 = placeholder[name='x']() : float32[n]
        %1 = constant[value=2.]() : float32[]
        %2 = constant[value=3.]() : float32[]
        %3 = mul(%1, %2) : float32[]
        %4 = neg(%3) : float32[]
        %5 = mul(%0, %4) : float32[n]
        %6 = constant[value=[1., 2., 3.]]() : float32[3]
        %7 = sum[axes=(0,), keepdims=False](%6) : float32[]
        %8 = reshape[shape=(3, 1)](%6) : float32[3, 1]
        %9 = cast[dtype='int32'](%6) : int32[3]
        return %5, %7, %8, %9
    """, """
        %0 = placeholder[name='x']() : float32[n]
        %1 = constant[value=-6.]() : float32[]
        %2 = mul(%0, %1) : float32[n]
        %3 = constant[value=6.]() : float32[]
        %4 = constant[value=[[1.], [2.], [3.]]]() : float32[3, 1]
        %5 = constant[value=[1, 2, 3]]() : int32[3]
        return %2, %3, %4, %5
    """)
    assert rewrites == {"fold/mul": 1, "fold/neg": 1, "fold/sum": 1, "fold/reshape": 1, "fold/cast": 1}


def test_leaves_broadcasts_big_results_and_errors_alone():
    text = """
        %0 = constant[value=[1., 2., 3.]]() : float32[3]
        %1 = constant[value=[[1.], [2.]]]() : float32[2, 1]
        %2 = add(%0, %1) : float32[2, 3]
        %3 = constant[value=2.]() : float32[]
        %4 = broadcast_to[shape=(4,)](%3) : float32[4]
        %5 = constant[value=[0, 5]]() : int64[2]
        %6 = one_hot[depth=3, dtype='float32'](%5) : float32[2, 3]
        return %2, %4, %6
    """
    check(text, text)


def test_size_limit_is_an_option():
    c = sg.constant(np.arange(10.0))
    out = sg.exp(c)
    (kept,), _ = run_pipeline([out], "fold{max_elements=8}")
    assert kept is out
    (folded,), _ = run_pipeline([out], "fold")
    assert folded.op.name == "constant"
    np.testing.assert_array_equal(folded.attr("value").array, np.exp(np.arange(10.0)))


def test_folded_values_match_the_numpy_backend():
    c = sg.constant(np.array([0.5, -1.0, 2.0], np.float32))
    outs = [sg.sigmoid(c) * sg.tanh(c) + sg.log1p(c * c), sg.softmax(c), sg.max(c), sg.exp(c) / 3.0]
    f = sg.compile(outs, pipeline="fold")
    assert all(o.op.name == "constant" for o in f.graph)
    for a, b in zip(f(), sg.compile(outs, pipeline="dce")()):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_a_derivative_request_keeps_its_wrt_node():
    c = sg.exp(sg.constant(np.float64(0.5)))
    y = c * c
    f = sg.compile([y, sg.grad(y, c)], pipeline="fold,autodiff,fold")
    np.testing.assert_allclose(f(), [np.exp(1.0), 2 * np.exp(0.5)])
