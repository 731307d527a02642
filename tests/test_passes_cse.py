"""CSE beyond hash-consing: commutative twins and equal constants merge."""

import numpy as np

import symgrad as sg
from symgrad.ir.graph import to_text
from symgrad.ir.parse import parse_text
from symgrad.passes import run_pipeline


def check(before: str, after: str, pipeline: str = "cse") -> dict[str, int]:
    got, report = run_pipeline(parse_text(before), pipeline, verify_each=True)
    want = parse_text(after)
    assert len(got) == len(want) and all(g is w for g, w in zip(got, want)), (
        f"got:\n{to_text(got)}\nwant:\n{to_text(want)}")
    return report.rewrites


def test_commutative_twins_merge_and_their_users_follow():
    rewrites = check("""
        %0 = placeholder[name='a']() : float32[n]
        %1 = placeholder[name='b']() : float32[n]
        %2 = mul(%0, %1) : float32[n]
        %3 = mul(%1, %0) : float32[n]
        %4 = exp(%2) : float32[n]
        %5 = exp(%3) : float32[n]
        %6 = maximum(%4, %1) : float32[n]
        %7 = maximum(%1, %5) : float32[n]
        %8 = sub(%6, %7) : float32[n]
        %9 = sub(%1, %0) : float32[n]
        %10 = sub(%0, %1) : float32[n]
        return %8, %9, %10
    """, """
        %0 = placeholder[name='a']() : float32[n]
        %1 = placeholder[name='b']() : float32[n]
        %2 = mul(%0, %1) : float32[n]
        %3 = exp(%2) : float32[n]
        %4 = maximum(%3, %1) : float32[n]
        %5 = sub(%4, %4) : float32[n]
        %6 = sub(%1, %0) : float32[n]
        %7 = sub(%0, %1) : float32[n]
        return %5, %6, %7
    """)
    assert rewrites == {"cse/commute": 2}


def test_uniform_constants_become_broadcast_scalars():
    check("""
        %0 = placeholder[name='a']() : float32[3]
        %1 = constant[value=[1., 1., 1.]]() : float32[3]
        %2 = constant[value=1.]() : float32[]
        %3 = reshape[shape=(1,)](%2) : float32[1]
        %4 = broadcast_to[shape=(3,)](%3) : float32[3]
        %5 = sub(%1, %0) : float32[3]
        %6 = sub(%4, %0) : float32[3]
        %7 = constant[value=[1., 2., 3.]]() : float32[3]
        return %5, %6, %7
    """, """
        %0 = placeholder[name='a']() : float32[3]
        %1 = constant[value=1.]() : float32[]
        %2 = broadcast_to[shape=(3,)](%1) : float32[3]
        %3 = sub(%2, %0) : float32[3]
        %4 = constant[value=[1., 2., 3.]]() : float32[3]
        return %3, %3, %4
    """)
    # a lone uniform constant is left as it is (nothing to merge it with)
    text = """
        %0 = placeholder[name='a']() : float32[3]
        %1 = constant[value=[1., 1., 1.]]() : float32[3]
        %2 = sub(%1, %0) : float32[3]
        return %2
    """
    check(text, text)
    # with canonicalize, both spellings of "1 - a" become one node
    x = sg.placeholder("a", shape=(3,))
    outs = [sg.constant(np.ones(3, np.float32)) - x, sg.ones((3,)) - x]
    (p, q), _ = run_pipeline(outs, "cse,canonicalize")
    assert p is q


def test_forward_and_backward_share_products():
    x = sg.placeholder("x", shape=(4,), dtype="float64")
    w = sg.placeholder("w", shape=(4,), dtype="float64")
    y = sg.sum(sg.sin(x * w) + sg.cos(w * x))
    outs = [y, sg.grad(y, x)]
    f = sg.compile(outs, pipeline="autodiff,cse,dce", verify_each=True)
    assert f.report.rewrites.get("cse/commute", 0) >= 1
    assert sum(1 for line in f.graph_text.splitlines() if "= mul(%" in line and "%0, %1" in line) <= 1
    rng = np.random.default_rng(0)
    vals = {"x": rng.standard_normal(4), "w": rng.standard_normal(4)}
    for a, b in zip(f(**vals), sg.compile(outs, pipeline="autodiff")(**vals)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_the_wrt_node_of_a_gradient_is_not_merged_away():
    a = sg.placeholder("a", shape=(3,), dtype="float64")
    b = sg.placeholder("b", shape=(3,), dtype="float64")
    ab, ba = a * b, b * a
    y = sg.sum(ab * 2.0 + ba * 3.0)
    # d y / d (a*b) treats b*a as another value: the answer is 2, not 5
    f = sg.compile(sg.grad(y, ab), pipeline="cse,autodiff", verify_each=True)
    np.testing.assert_allclose(f(a=np.ones(3), b=np.ones(3)), [2.0, 2.0, 2.0])
