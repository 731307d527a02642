"""SymPy-backed simplification of elementwise clusters, and its budget."""

import time

import numpy as np

import symgrad as sg
from symgrad.ir.graph import to_text
from symgrad.ir.parse import parse_text
from symgrad.passes import run_pipeline
from symgrad.passes import simplify as simplify_mod


def check(before: str, after: str, pipeline: str = "simplify") -> dict[str, int]:
    got, report = run_pipeline(parse_text(before), pipeline, verify_each=True)
    want = parse_text(after)
    assert len(got) == len(want) and all(g is w for g, w in zip(got, want)), (
        f"got:\n{to_text(got)}\nwant:\n{to_text(want)}")
    return report.rewrites


XYZ = """
    %0 = placeholder[name='x']() : float64[n]
    %1 = placeholder[name='y']() : float64[n]
    %2 = placeholder[name='z']() : float64[n]
"""


def test_cancels_a_common_factor():
    rewrites = check(XYZ + """
        %3 = mul(%0, %1) : float64[n]
        %4 = mul(%0, %2) : float64[n]
        %5 = add(%3, %4) : float64[n]
        %6 = div(%5, %0) : float64[n]
        return %6
    """, """
        %0 = placeholder[name='y']() : float64[n]
        %1 = placeholder[name='z']() : float64[n]
        %2 = add(%0, %1) : float64[n]
        return %2
    """)
    assert rewrites == {"simplify/cluster": 1}


def test_factors_a_sum_of_products():
    check(XYZ + """
        %3 = mul(%0, %1) : float64[n]
        %4 = mul(%0, %2) : float64[n]
        %5 = add(%3, %4) : float64[n]
        %6 = exp(%5) : float64[n]
        return %6
    """, XYZ + """
        %3 = add(%1, %2) : float64[n]
        %4 = mul(%0, %3) : float64[n]
        %5 = exp(%4) : float64[n]
        return %5
    """)


def test_stable_ops_stay_opaque_and_shared_nodes_are_leaves():
    check("""
        %0 = placeholder[name='x']() : float32[n]
        %1 = sigmoid(%0) : float32[n]
        %2 = constant[value=2.]() : float32[]
        %3 = mul(%1, %2) : float32[n]
        %4 = sub(%3, %1) : float32[n]
        %5 = softplus(%0) : float32[n]
        %6 = add(%4, %5) : float32[n]
        %7 = sub(%6, %5) : float32[n]
        return %7
    """, """
        %0 = placeholder[name='x']() : float32[n]
        %1 = sigmoid(%0) : float32[n]
        return %1
    """)


def test_nothing_to_gain_leaves_the_graph_alone():
    text = XYZ + """
        %3 = mul(%0, %1) : float64[n]
        %4 = sin(%3) : float64[n]
        %5 = add(%4, %2) : float64[n]
        return %5
    """
    check(text, text)


def test_values_on_random_inputs(rng):
    x = sg.placeholder("x", shape=(6,), dtype="float64")
    y = sg.placeholder("y", shape=(6,), dtype="float64")
    e = (x * y + x * sg.exp(y)) / x - sg.exp(y) + sg.tanh(x) * sg.tanh(x) * 3.0 - sg.tanh(x) ** 2
    loss = sg.sum(e * e)
    outs = [e, sg.grad(loss, x)]
    values = {"x": rng.uniform(0.5, 2.0, 6), "y": rng.standard_normal(6)}
    want = sg.compile(outs, pipeline="autodiff")(**values)
    f = sg.compile(outs, pipeline="canonicalize,stabilize,autodiff,canonicalize,cse,simplify,dce",
                   verify_each=True)
    for a, b in zip(f(**values), want):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    assert f.report.rewrites["simplify/cluster"] >= 1
    assert f.report.passes[-2].nodes_after < f.report.passes[-2].nodes_before


def test_a_huge_cluster_is_skipped_quickly():
    x = sg.placeholder("x", shape=(None,))
    t = x
    for _ in range(3000):
        t = sg.sin(t) * 1.5
    start = time.perf_counter()
    (out,), report = run_pipeline([t], "simplify")
    assert time.perf_counter() - start < 2.0
    assert out is t
    assert report.notes == {"simplify/too-large": 1}


def test_a_timeout_keeps_the_original_and_is_counted():
    simplify_mod._cache.clear()
    x = sg.placeholder("x", shape=(3,), dtype="float64")
    y = sg.placeholder("y", shape=(3,), dtype="float64")
    e = x
    for k in range(6):
        e = (e * y + sg.cos(x) * (k + 2.0)) / (y + 3.0)
    (out,), report = run_pipeline([e], "simplify{timeout=1e-05}")
    assert out is e
    assert report.notes == {"simplify/timeout": 1}
    (out,), report = run_pipeline([e], "simplify{budget=0.0}")
    assert out is e and report.notes == {"simplify/budget": 1}


def test_a_derivative_request_keeps_its_wrt_node():
    x = sg.placeholder("x", shape=(3,), dtype="float64")
    y = sg.placeholder("y", shape=(3,), dtype="float64")
    p = x * y
    e = sg.sum(p * 2.0 / y)
    f = sg.compile(sg.grad(e, p), pipeline="simplify,autodiff", verify_each=True)
    np.testing.assert_allclose(f(x=np.ones(3), y=np.full(3, 4.0)), np.full(3, 0.5))
