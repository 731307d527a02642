"""The IR: hash-consed nodes, the text form, the verifier, symbolic size arithmetic."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import symgrad as sg
from symgrad.ir import shape as S
from symgrad.ir.graph import VerifyError, placeholders, to_text, toposort, verify
from symgrad.ir.shape import Dim, FloorDiv
from symgrad.ir.tensor import live_nodes
from symgrad.passes.autodiff import expand


# -- hash-consing -------------------------------------------------------------------------------------
def test_the_same_expression_built_twice_is_the_same_node() -> None:
    x = sg.placeholder("hc_x", (None, 3), "float32")
    w = sg.placeholder("hc_w", (3,), "float32")

    def build() -> sg.Tensor:
        return sg.mean((sg.tanh(x @ w + 1.0) - 2.0) ** 2)

    a = build()
    gc.collect()  # nodes other tests left behind must not be collected mid-count
    count = live_nodes()
    b = build()
    assert a is b
    assert live_nodes() == count  # nothing new was created
    assert sg.placeholder("hc_x", (None, 3), "float32") is x
    assert sg.exp(x) is sg.exp(x) and x + 1.0 is x + 1.0
    assert sg.constant(np.arange(3.0)) is sg.constant(np.arange(3.0))
    assert sg.sum(x, axis=1) is sg.sum(x, axis=-1)  # attributes are normalized first
    assert x[1:] is x[1:]


def test_different_attributes_or_inputs_give_different_nodes() -> None:
    x = sg.placeholder("hc_y", (2, 3), "float64")
    assert sg.sum(x, axis=0) is not sg.sum(x, axis=1)
    assert sg.sum(x, axis=0) is not sg.sum(x, axis=0, keepdims=True)
    assert sg.reshape(x, (3, 2)) is not sg.reshape(x, (6,))
    assert sg.transpose(x) is not sg.transpose(sg.reshape(x, (3, 2)))
    assert sg.softmax(x, axis=0) is not sg.softmax(x, axis=1)
    assert x[0] is not x[1]
    assert sg.one_hot(sg.argmax(x, axis=1), 3) is not sg.one_hot(sg.argmax(x, axis=1), 4)
    assert sg.placeholder("hc_y", (2, 3), "float32") is not x  # dtype is part of the identity
    assert sg.placeholder("hc_y", (3, 2), "float64") is not x
    assert sg.constant(np.arange(3.0)) is not sg.constant(np.arange(3.0, dtype=np.float32))
    assert sg.constant(np.arange(3.0)) is not sg.constant(np.arange(3.0).reshape(3, 1))
    assert x - 1.0 is not 1.0 - x
    a, b = sg.placeholder("hc_a", (2,)), sg.placeholder("hc_b", (2,))
    assert a + b is not b + a  # no commutativity at build time: the order is kept


def test_tensor_equality_is_identity() -> None:
    x = sg.placeholder("hc_z", (2,), "float32")
    y = sg.placeholder("hc_z2", (2,), "float32")
    assert (x == x) is True and (x == y) is False and (x != y) is True
    assert len({x, y, sg.placeholder("hc_z", (2,), "float32")}) == 2
    eq = sg.equal(x, y)
    assert isinstance(eq, sg.Tensor) and eq.dtype == "bool"
    table = {x: 1}
    assert table[sg.placeholder("hc_z", (2,), "float32")] == 1


def test_constants_are_copied_and_frozen() -> None:
    arr = np.arange(4.0)
    c = sg.constant(arr)
    arr[0] = 100.0  # changing the caller's array changes nothing in the graph
    np.testing.assert_array_equal(sg.compile(c + 0.0)(), [0.0, 1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        c.attr("value").array[0] = 5.0


def test_node_fields() -> None:
    x = sg.placeholder("nf_x", (None, 4), "float64")
    y = sg.sum(x * 2.0625, axis=1, keepdims=True)
    assert y.op.name == "sum" and y.attr("axes") == (1,) and y.attr("keepdims") is True
    assert y.shape == (x.shape[0], 1) and y.dtype == "float64" and y.ndim == 2
    assert x.name == "nf_x" and y.name is None
    assert y.loc.startswith(__file__)
    assert [n.op.name for n in toposort([y])] == ["placeholder", "constant", "mul", "sum"]
    assert placeholders([y]) == [x]


# -- text form ----------------------------------------------------------------------------------------
# Nodes are numbered in creation order, and hash-consing shares nodes with graphs built
# earlier in the process, so the golden graphs use names and constants no other test uses.
GOLDEN = """\
%0 = placeholder[name='gx']() : float32[gx.0, 3]
%1 = placeholder[name='gw']() : float32[3]
%2 = reshape[shape=(3, 1)](%1) : float32[3, 1]
%3 = matmul(%0, %2) : float32[gx.0, 1]
%4 = reshape[shape=(gx.0,)](%3) : float32[gx.0]
%5 = constant[value=1.3125]() : float32[]
%6 = add(%4, %5) : float32[gx.0]
%7 = tanh(%6) : float32[gx.0]
%8 = sum[axes=(0,), keepdims=False](%7) : float32[]
return %7, %8
"""


def test_text_form_golden() -> None:
    x = sg.placeholder("gx", (None, 3), "float32")
    w = sg.placeholder("gw", (3,), "float32")
    y = sg.tanh(x @ w + 1.3125)
    assert to_text([y, sg.sum(y)]) == GOLDEN


def test_text_form_of_a_derivative_request_and_its_expansion() -> None:
    x = sg.placeholder("gx2", (2,), "float64")
    loss = sg.sum(sg.exp(x))
    request = sg.grad(loss, x, seed=0.8125)  # a seed no other test uses: a fresh node
    assert to_text([request]) == """\
%0 = placeholder[name='gx2']() : float64[2]
%1 = exp(%0) : float64[2]
%2 = sum[axes=(0,), keepdims=False](%1) : float64[]
%3 = constant[value=0.8125]() : float64[]
%4 = grad(%2, %0, %3) : float64[2]
return %4
"""
    expanded = to_text(expand([sg.grad(loss, x)]))
    assert "grad(" not in expanded and expanded.count("exp(") == 1
    assert "placeholder[name='gx2']() : float64[2]" in expanded


def test_text_form_shares_nodes_and_is_stable() -> None:
    x = sg.placeholder("gx3", (3,), "float32")
    t = sg.tanh(x)
    text = to_text([t * t, t + t])
    assert text.count("tanh(") == 1  # the shared node is printed once
    assert text == to_text([sg.tanh(x) * sg.tanh(x), sg.tanh(x) + sg.tanh(x)])
    assert text.splitlines()[-1] == "return %2, %3"


# -- verifier ----------------------------------------------------------------------------------------
def test_verify_passes_on_built_graphs() -> None:
    x = sg.placeholder("v_x", (None, 3), "float32")
    w = sg.placeholder("v_w", (3, 4), "float32")
    i = sg.placeholder("v_i", (None,), "int64")
    logits = sg.relu(x @ w)
    loss = sg.mean(sg.logsumexp(logits, axis=1) - sg.sum(logits * sg.one_hot(i, 4), axis=1))
    outs = [loss, *sg.grad(loss, [x, w]), sg.softmax(logits)[1:, ::2], sg.take(x, i, axis=0)]
    verify(outs)
    verify(expand(outs))
    hv = sg.grad(sg.sum(sg.grad(loss, w) ** 2), w)
    verify(expand([hv]))


def test_verify_reports_a_node_whose_recorded_type_is_wrong() -> None:
    x = sg.placeholder("v_unique_for_corruption", (2, 3), "float32")
    y = sg.exp(x)
    verify([y])
    y.shape = (3, 2)  # corrupt a node no other test can reach
    try:
        with pytest.raises(VerifyError, match=r"exp: recorded float32\(3, 2\)"):
            verify([sg.sum(y)])
    finally:
        y.shape = (2, 3)
    verify([y])


# -- symbolic sizes ------------------------------------------------------------------------------------
def test_size_polynomials() -> None:
    n, m = Dim.symbol("n"), Dim.symbol("m")
    assert n.is_symbol() and not (n + 1).is_symbol()  # type: ignore[union-attr]
    assert n + 0 is n or n + 0 == n
    assert n - n == 0 and isinstance(n - n, int)
    assert (n + 1) - 1 == n
    assert n * m == m * n and n + m == m + n
    assert 2 * n == n + n and n * 1 == n and n * 0 == 0
    assert -n + n == 0
    assert 3 - n == S.sub(3, n)
    assert S.prod([2, n, 3, m]) == 6 * n * m
    assert S.prod([]) == 1
    expr = (n + 2) * (m - 1)
    assert expr.evaluate({"n": 3, "m": 5}) == 20  # type: ignore[union-attr]
    assert S.evaluate(expr, {"n": 0, "m": 0}) == -2
    assert S.evaluate(7, {}) == 7
    assert expr.symbols == frozenset({"n", "m"})  # type: ignore[union-attr]
    assert str(2 * n + 1) in ("1+2*n", "2*n+1")
    assert hash(n * m) == hash(m * n)


def test_size_floordiv_atoms() -> None:
    n = Dim.symbol("n")
    assert S.floordiv(6 * n, 3) == 2 * n  # exact: stays a polynomial
    assert S.floordiv(6 * n + 9, 3) == 2 * n + 3
    assert S.floordiv(7, 2) == 3
    half = S.floordiv(n, 2)
    assert isinstance(half, Dim) and not half.is_symbol()
    (mono, coeff), = half.terms
    assert coeff == 1 and isinstance(mono[0], FloorDiv)
    assert half == n // 2 and str(half) == "(n)//2"
    for v in range(7):
        assert S.evaluate(half, {"n": v}) == v // 2
        assert S.evaluate(S.floordiv(n + 3, 2) * 2 - 1, {"n": v}) == (v + 3) // 2 * 2 - 1
    assert half.symbols == frozenset({"n"})
    with pytest.raises(ValueError):
        S.floordiv(n, 0)


def test_size_exact_division() -> None:
    n, m = Dim.symbol("n"), Dim.symbol("m")
    assert S.exact_div(6 * n * m, 2 * n) == 3 * m
    assert S.exact_div(12, 4) == 3
    assert S.exact_div(6 * n, 4) is None
    assert S.exact_div(n + 1, n) is None
    assert S.exact_div(n * m + n, n) == m + 1
    assert S.exact_div(n, 0) is None


def test_reshape_minus_one_with_symbolic_sizes() -> None:
    x = sg.placeholder("rs_x", (None, 6), "float32")
    n = x.shape[0]
    assert sg.reshape(x, (-1, 3)).shape == (2 * n, 3)
    assert sg.reshape(x, (3, -1)).shape == (3, 2 * n)
    assert sg.reshape(x, (-1,)).shape == (6 * n,)
    assert sg.reshape(x, (n, 2, -1)).shape == (n, 2, 3)
    y = sg.placeholder("rs_y", ("b", "t", 4), "float32")
    b, t = y.shape[0], y.shape[1]
    assert sg.reshape(y, (-1, 4)).shape == (b * t, 4)
    assert sg.reshape(y, (b, -1)).shape == (b, 4 * t)
    with pytest.raises(sg.ShapeError, match="cannot infer -1"):
        sg.reshape(y, (t, -1, 3))
    f = sg.compile([sg.reshape(y, (-1, 4)), sg.reshape(y, (b, -1))])
    v = np.arange(2 * 5 * 4, dtype=np.float32).reshape(2, 5, 4)
    got = f(rs_y=v)
    np.testing.assert_array_equal(got[0], v.reshape(-1, 4))
    np.testing.assert_array_equal(got[1], v.reshape(2, -1))


def test_symbolic_sizes_in_user_arithmetic() -> None:
    x = sg.placeholder("ua_x", (None, 4), "float64")
    n = x.shape[0]
    assert isinstance(n, Dim)
    y = sg.reshape(x[:-1], (n - 1, 2, 2))
    assert y.shape == (n - 1, 2, 2) and x[::2].shape == ((n + 1) // 2, 4)
    f = sg.compile([y, x[::2], sg.broadcast_to(sg.sum(x, axis=1, keepdims=True), (n, 2 * 2))])
    v = np.arange(12.0).reshape(3, 4)
    got = f(ua_x=v)
    np.testing.assert_array_equal(got[0], v[:2].reshape(2, 2, 2))
    np.testing.assert_array_equal(got[1], v[::2])
    np.testing.assert_array_equal(got[2], np.broadcast_to(v.sum(1, keepdims=True), (3, 4)))
    with pytest.raises(sg.DTypeError, match="slice bounds must be integers"):
        x[: n - 1]


def test_placeholder_sizes() -> None:
    x = sg.placeholder("ps_x", (None, "batch", 3), "float32")
    y = sg.placeholder("ps_y", ("batch",), "float32")
    assert x.shape[0] == Dim.symbol("ps_x.0")
    assert x.shape[1] == y.shape[0] == Dim.symbol("batch")
    assert x.shape[2] == 3 and isinstance(x.shape[2], int)
    assert sg.placeholder("ps_z", (np.int64(2),)).shape == (2,)
    with pytest.raises(ValueError, match="bad size"):
        sg.placeholder("ps_w", (2.5,))
    with pytest.raises(ValueError, match="bad size"):
        sg.placeholder("ps_w", (True,))


def test_comparing_a_tensor_with_a_value_by_eq_is_refused():
    """``x != 0`` would be a Python bool, silently wrong inside sg.where."""
    x = sg.placeholder("eq_x")
    with pytest.raises(TypeError, match="sg.not_equal"):
        sg.where(x != 0, x, 1.0)
    with pytest.raises(TypeError, match="sg.equal"):
        _ = x == 1.5
    assert (x == x) is True and (x != sg.exp(x)) is True
