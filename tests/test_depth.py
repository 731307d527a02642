"""No recursion on graph depth: deep chains build, differentiate, print and compile
(issue 14). Python's default recursion limit is 1000 frames, so every depth below
exceeds what a recursive walk could take."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import symgrad as sg
from symgrad.ir.graph import to_text


def chain(depth: int) -> tuple[sg.Tensor, sg.Tensor]:
    x = sg.placeholder("x", shape=(4,), dtype="float64")
    y = x
    for k in range(depth):
        y = sg.tanh(y) * 0.5 + x if k % 2 else sg.sin(y)
    return x, sg.sum(y)


def chain_reference(xv: np.ndarray, depth: int) -> tuple[float, np.ndarray]:
    y, dy = xv.copy(), np.eye(4)
    for k in range(depth):
        if k % 2:
            dy = (0.5 * (1 - np.tanh(y) ** 2))[:, None] * dy + np.eye(4)
            y = np.tanh(y) * 0.5 + xv
        else:
            dy = np.cos(y)[:, None] * dy
            y = np.sin(y)
    return float(y.sum()), dy.sum(axis=0)


def test_the_recursion_limit_is_the_default() -> None:
    assert sys.getrecursionlimit() <= 1000 * 3


def test_a_20000_deep_chain_builds_differentiates_and_prints_as_text() -> None:
    x, loss = chain(20_000)
    g = sg.grad(loss, x)
    assert to_text([loss, g]).count("\n") > 20_000


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_a_20000_deep_chain_compiles(backend: str) -> None:
    depth = 20_000
    x, loss = chain(depth)
    xv = np.linspace(-1.0, 0.7, 4)
    got_loss, got_grad = sg.compile([loss, sg.grad(loss, x)], backend=backend)(xv)
    want_loss, want_grad = chain_reference(xv, depth)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-10)
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "llvm"])
def test_an_unrolled_recurrence_of_1100_steps_compiles(backend: str) -> None:
    """Its gradient is a chain of 1100 additions of slice gradients, which the lowering
    gathers into one scatter-sum (it used to recurse along the chain)."""
    steps = 1100
    s = sg.placeholder("s", shape=(2, steps), dtype="float64")
    h = sg.zeros((2,), "float64")
    for t in range(steps):
        h = h * 0.5 + sg.sin(s[:, t])
    loss = sg.sum(h)
    sv = np.linspace(-2.0, 2.0, 2 * steps).reshape(2, steps)
    got_loss, got_grad = sg.compile([loss, sg.grad(loss, s)], backend=backend)(sv)
    weights = 0.5 ** np.arange(steps - 1, -1, -1)
    np.testing.assert_allclose(got_loss, np.sum(np.sin(sv) * weights), rtol=1e-10)
    np.testing.assert_allclose(got_grad, np.cos(sv) * weights, rtol=1e-10, atol=1e-300)


def _sympy_depth(expr: object) -> int:
    deepest, stack = 0, [(expr, 1)]
    while stack:
        e, d = stack.pop()
        deepest = max(deepest, d)
        stack += [(a, d + 1) for a in getattr(e, "args", ())]
    return deepest


def test_a_2000_deep_chain_converts_to_sympy_and_latex() -> None:
    """SymPy recurses on expression depth: the let form binds every 48th level, so each
    binding stays shallow whatever the graph's depth (6000 ops here)."""
    x, loss = chain(2000)
    lets, expr = sg.to_sympy(loss)
    assert len(lets) > 2000 // 48
    assert str(expr).startswith("sum(")
    assert max(_sympy_depth(e) for _, e in lets) <= 4 * 48
    text = sg.latex(loss)
    assert text.startswith("\\begin{aligned}") and text.count("\\\\") >= len(lets)
