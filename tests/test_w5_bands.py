"""Jacobians and Hessians batched over a basis seed kept as bands (passes/batching.py), the
canonicalize rules that finish the job (transpose-scatter, slice-broadcast), and the
lowered form of the W5 Hessian: values against NumPy and against the dense batched path,
graph text in and out, and the absence of (n, n)-sized work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import symgrad as sg
import symgrad.passes.batching as batching
from symgrad.backends.base import Program
from symgrad.backends.lower import LibCall, LoopKernel, lower
from symgrad.compile import _size_sources
from symgrad.ir.graph import placeholders, to_text, toposort
from symgrad.ir.parse import parse_text
from symgrad.ir.tensor import Tensor
from symgrad.ops.base import OPS
from symgrad.passes import run_pipeline
from symgrad.passes.batching import Band, Bands, densify
from test_derivatives import rosenbrock_hess_np  # a sibling module: pytest puts tests/ on sys.path

RNG = np.random.default_rng(5)


def rosenbrock_pairs(v: Tensor) -> Tensor:
    u, w = v[0::2], v[1::2]
    return sg.sum(100.0 * (w - u * u) ** 2 + (1.0 - u) ** 2)


def rosenbrock_pairs_hess(x: np.ndarray) -> np.ndarray:
    u, v = x[0::2], x[1::2]
    h = np.zeros((x.size, x.size))
    i = np.arange(0, x.size, 2)
    h[i, i] = 1200 * u * u - 400 * v + 2
    h[i, i + 1] = h[i + 1, i] = -400 * u
    h[i + 1, i + 1] = 200.0
    return h


# -- values: banded against the dense batched path and against NumPy -------------------------
A23 = np.arange(6.0).reshape(2, 3) / 4 - 0.5
ROW = np.arange(4.0).reshape(1, 4) - 1.5
W26 = np.arange(12.0).reshape(2, 6) / 5

CASES: dict[str, tuple[Callable[[Tensor], Tensor], tuple[int, ...], str]] = {
    "rosenbrock-pairs": (rosenbrock_pairs, (10,), "hess"),
    "rosenbrock-pairs-rev-over-rev": (rosenbrock_pairs, (10,), "hess-rev"),
    "rosenbrock-chain": (lambda v: sg.sum(100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2),
                         (9,), "hess"),
    "relu-maximum": (lambda x: sg.sum(sg.relu(x) ** 3 + sg.maximum(x, 0.3) * x), (6,), "hess"),
    "div-exp": (lambda x: sg.sum(x / (1.0 + x * x) - sg.exp(-x) / 3.0), (6,), "hess"),
    "logsumexp": (lambda x: sg.logsumexp(x * sg.tanh(x)) + sg.sum(x**3), (5,), "hess"),
    "2d-shifted": (lambda x: sg.sum(sg.sin(x) * x * 2.0) + sg.sum(x[:, 1:] * x[:, :-1]), (3, 4), "hess"),
    "2d-rowsum": (lambda x: sg.sum(sg.sum(x * x, axis=1) ** 2), (3, 4), "hess"),
    "reshape": (lambda x: sg.sum(sg.reshape(x, (2, 6)) ** 3 * sg.constant(W26)), (3, 4), "hess"),
    "stack": (lambda x: sg.sum(sg.stack([x, x * x]) ** 2), (4,), "hess"),
    "max-prod": (lambda x: sg.max(sg.stack([x, x * x]), axis=0).sum() + sg.prod(x), (4,), "hess"),
    "take": (lambda x: sg.sum(sg.take(x, sg.constant(np.array([0, 2, 2, 1]))) ** 3), (4,), "hess"),
    "many-bands": (lambda x: sg.sum(sg.stack([x[k:k + 10] * x[:10] for k in range(20)])), (30,), "hess"),
    "scalar": (lambda x: sg.sin(x) * x, (), "hess"),
    "tanh-rev": (sg.tanh, (5,), "rev"),
    "tanh-fwd": (sg.tanh, (5,), "fwd"),
    "transposed-rev": (lambda x: sg.exp(x).T, (2, 3), "rev"),
    "transposed-fwd": (lambda x: sg.exp(x).T, (2, 3), "fwd"),
    "matvec-fwd": (lambda x: sg.constant(A23) @ x, (3,), "fwd"),
    "matvec-rev": (lambda x: sg.constant(A23) @ x, (3,), "rev"),
    "outer-fwd": (lambda x: sg.reshape(x, (3, 1)) @ sg.constant(ROW), (3,), "fwd"),
    "outer-rev": (lambda x: sg.reshape(x, (3, 1)) @ sg.constant(ROW), (3,), "rev"),
    "concat-fwd": (lambda x: sg.concatenate([x[1:], sg.exp(x[:2])]), (4,), "fwd"),
    "softmax-rev": (lambda x: sg.softmax(x * x), (4,), "rev"),
    "where-fwd": (lambda x: sg.where(x > 0, x * 2.0, 0.0), (5,), "fwd"),
    "broadcast-fwd": (lambda x: x[None, :] * sg.constant(np.ones((3, 1))), (4,), "fwd"),
    "broadcast-rev": (lambda x: x[None, :] * sg.constant(np.ones((3, 1))), (4,), "rev"),
    "reversed-rev": (lambda x: x[::-1] * 2.0, (5,), "rev"),
    "reversed-fwd": (lambda x: x[::-1] * 2.0, (5,), "fwd"),
    "cast-fwd": (lambda x: sg.cast(x, "float32") * 3.0, (4,), "fwd"),
}


def derivative(build: Callable[[Tensor], Tensor], shape: tuple[int, ...], mode: str) -> Tensor:
    x = sg.placeholder("x", shape, "float64")
    y = build(x)
    if mode == "hess-rev":
        return sg.jacobian(sg.grad(y, x), x, mode="rev")
    return sg.hessian(y, x) if mode == "hess" else sg.jacobian(y, x, mode=mode)


@pytest.mark.parametrize("name", sorted(CASES))
def test_banded_equals_dense_batching(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    build, shape, mode = CASES[name]
    X = RNG.standard_normal(shape)
    got = sg.compile(derivative(build, shape, mode))(x=X)
    monkeypatch.setattr(batching, "basis_bands", lambda seed, B: None)  # the dense identity seed
    want = sg.compile(derivative(build, shape, mode))(x=X)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


def fd_jacobian(fn: Callable[[np.ndarray], Any], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    cols = []
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = eps
        e = e.reshape(x.shape)
        cols.append((np.asarray(fn(x + e)) - np.asarray(fn(x - e))) / (2 * eps))
    out = np.stack(cols, axis=-1)
    return out.reshape(np.shape(fn(x)) + x.shape)


@pytest.mark.parametrize("name", ["2d-shifted", "reshape", "transposed-fwd", "outer-fwd", "concat-fwd",
                                  "reversed-rev", "stack"])
def test_banded_matches_finite_differences(name: str) -> None:
    build, shape, mode = CASES[name]
    X = RNG.standard_normal(shape)
    got = sg.compile(derivative(build, shape, mode))(x=X)
    x = sg.placeholder("x", shape, "float64")
    inner = build(x) if not mode.startswith("hess") else sg.grad(build(x), x)
    fn = sg.compile(inner)
    np.testing.assert_allclose(got, fd_jacobian(lambda v: fn(x=v), X), rtol=1e-6, atol=1e-7)


def test_w5_hessian_matches_analytic_numpy_and_llvm() -> None:
    n = 200
    x = sg.placeholder("x", (n,), "float64")
    h = sg.hessian(rosenbrock_pairs(x), x)
    X = RNG.uniform(-2, 2, n)
    want = rosenbrock_pairs_hess(X)
    for backend in ("numpy", "llvm"):
        np.testing.assert_allclose(sg.compile(h, backend=backend)(x=X), want, rtol=1e-13, atol=1e-10)


def test_chain_rosenbrock_hessian_matches_analytic() -> None:
    x = sg.placeholder("x", (12,), "float64")
    h = sg.compile(sg.hessian(sg.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2), x))
    X = RNG.standard_normal(12)
    np.testing.assert_allclose(h(x=X), rosenbrock_hess_np(X), rtol=1e-12, atol=1e-9)


def test_structural_zeros_stay_zero_next_to_infinities() -> None:
    """Entries the basis direction cannot reach are 0 even where the other factor is inf
    (a dense identity seed would make them 0 * inf = nan)."""
    x = sg.placeholder("x", (3,), "float64")
    c = sg.constant(np.array([1.0, np.inf, 2.0]))
    got = sg.compile(sg.hessian(sg.sum(c * x * x), x))(x=np.ones(3))
    np.testing.assert_array_equal(got, np.diag([2.0, np.inf, 4.0]))


# -- structure: no (n, n)-sized work, one batched pass ------------------------------------------
def w5_graph(n: int) -> list[Tensor]:
    x = sg.placeholder("x", (n,), "float64")
    return sg.compile(sg.hessian(rosenbrock_pairs(x), x)).graph


def test_w5_graph_has_no_square_intermediates() -> None:
    n = 200
    nodes = toposort(w5_graph(n))
    names = {t.op.name for t in nodes}
    assert not names & {"one_hot", "arange", "transpose", "take_grad"}, names
    big = [t for t in nodes if t.size == n * n]
    # only the scatters that write the result, their sum, and its final reshape
    assert {t.op.name for t in big} == {"slice_grad", "add", "reshape"}
    for t in big:
        if t.op.name == "slice_grad":
            assert t.inputs[0].size <= n // 2


def test_w5_graph_size_does_not_grow_with_n() -> None:
    assert len(toposort(w5_graph(10))) == len(toposort(w5_graph(200)))


def test_w5_lowered_kernels() -> None:
    """The fill of the result is the only (n, n) loop; the bands are scattered straight
    into the output buffer (no temporary of the result, no transposing copy)."""
    n = 200
    opt = w5_graph(n)
    ins = placeholders(opt)
    lp = lower(Program(ins, opt, _size_sources(ins, opt)))
    loops = [k for k in lp.kernels if isinstance(k, LoopKernel)]
    assert not [k for k in lp.kernels if isinstance(k, LibCall)]
    sizes = sorted(int(np.prod(k.domain)) for k in loops)
    assert sizes[-1] == n * n and sizes[-2] <= n // 2
    assert [k.name.rsplit("_", 1)[0] for k in loops if int(np.prod(k.domain)) == n * n] == ["fill"]
    assert all(t.size <= n for t in lp.temps)
    out = lp.outputs[0]
    assert all(st.access.buffer is out for k in loops if k.name.startswith(("fill", "scatter"))
               for st in k.stores)


# -- densify: bands written into the dense batched tensor ---------------------------------------
def reference(bands: list[tuple[np.ndarray, tuple[int, ...], int]], shape: tuple[int, ...],
              B: int) -> np.ndarray:
    out = np.zeros((B, *shape))
    for coef, a, off in bands:
        for idx in np.ndindex(*shape):
            j = off + sum(ad * i for ad, i in zip(a, idx))
            if 0 <= j < B:
                out[(j, *idx)] += coef[idx]
    return out


def run_bands(bands: list[tuple[Any, tuple[int, ...], int]], shape: tuple[int, ...], B: int
              ) -> tuple[np.ndarray, set[str]]:
    v = Bands(shape, "float64", tuple(Band(c if isinstance(c, Tensor) else sg.constant(c), a, off)
                                      for c, a, off in bands))
    out = densify(v, B)
    return sg.compile(out)(), {t.op.name for t in toposort([out])}


@pytest.mark.parametrize("a, off", [((1,), 0), ((1,), -2), ((1,), 3), ((2,), 1), ((-1,), 6),
                                    ((-2,), 9), ((0,), 4), ((0,), 9), ((3,), -20)])
def test_densify_one_axis_clips_to_the_batch(a: tuple[int, ...], off: int) -> None:
    coef = RNG.standard_normal(7)
    got, ops = run_bands([(coef, a, off)], (7,), 8)
    np.testing.assert_array_equal(got, reference([(coef, a, off)], (7,), 8))
    assert "take_grad" not in ops


def test_densify_writes_slice_grad_pieces_without_their_zeros() -> None:
    c0 = sg.constant(np.array([1.0, 2.0, 3.0]))
    c1 = sg.constant(np.array([-1.0, -2.0]))
    coef = sg.add(OPS["slice_grad"](c0, index=((0, 6, 2),), shape=(6,)),
                  OPS["slice_grad"](c1, index=((3, 6, 2),), shape=(6,)))
    got, ops = run_bands([(coef, (1,), -1)], (6,), 6)
    dense = np.array([1.0, 0, 2, -1, 3, -2])
    np.testing.assert_array_equal(got, reference([(dense, (1,), -1)], (6,), 6))
    out = densify(Bands((6,), "float64", (Band(coef, (1,), -1),)), 6)
    scattered = [t.inputs[0].size for t in toposort([out]) if t.op.name == "slice_grad" and t.size == 36]
    assert sorted(scattered) == [2, 2]  # c0 clipped at row -1, c1 whole; no zeros written
    assert ops.isdisjoint({"take_grad", "where"})


@pytest.mark.parametrize("a, off", [((4, 1), 0), ((1, 3), 0), ((1, 2), -1), ((0, 1), 2), ((5, 0), 1)])
def test_densify_two_axes(a: tuple[int, ...], off: int) -> None:
    coef = RNG.standard_normal((3, 4))
    got, _ = run_bands([(coef, a, off)], (3, 4), 12)
    np.testing.assert_array_equal(got, reference([(coef, a, off)], (3, 4), 12))


def test_densify_sums_bands_and_sub_blocks() -> None:
    c0 = RNG.standard_normal((3, 3))
    block = OPS["slice_grad"](sg.constant(c0), index=((0, 3, 1), (1, 4, 1)), shape=(3, 4))
    other = RNG.standard_normal((3, 4))
    bands = [(block, (4, 1), -1), (other, (4, 1), 1), (other, (1, 3), 0)]
    got, _ = run_bands(bands, (3, 4), 12)
    dense = np.zeros((3, 4))
    dense[:, 1:] = c0
    want = reference([(dense, (4, 1), -1), (other, (4, 1), 1), (other, (1, 3), 0)], (3, 4), 12)
    np.testing.assert_allclose(got, want, rtol=1e-15)


def test_basis_bands_recognizes_only_the_identity_seed() -> None:
    eye = sg.reshape(sg.eye(6, "float64"), (6, 2, 3))
    b = batching.basis_bands(eye, 6)
    assert b is not None and b.shape == (2, 3) and [(x.a, x.offset) for x in b.bands] == [((3, 1), 0)]
    assert batching.basis_bands(sg.reshape(sg.eye(6, "float64"), (6, 6)) * 2.0, 6) is None
    assert batching.basis_bands(sg.eye(6, "float64"), 5) is None
    symbolic = sg.placeholder("x", (None,), "float64")
    n = symbolic.shape[0]
    assert batching.basis_bands(sg.eye(n, "float64"), n) is None


def test_symbolic_size_jacobian_still_batches_densely() -> None:
    x = sg.placeholder("x", (None,), "float64")
    J = sg.compile(sg.jacobian(sg.exp(x) * sg.sum(x), x, mode="fwd"))
    for n in (2, 5):
        X = RNG.standard_normal(n)
        want = np.diag(np.exp(X)) * X.sum() + np.exp(X)[:, None]
        np.testing.assert_allclose(J(X), want, rtol=1e-12)


# -- canonicalize: text in, text out ------------------------------------------------------------
def check(before: str, after: str) -> dict[str, int]:
    got, report = run_pipeline(parse_text(before), "canonicalize", verify_each=True)
    want = parse_text(after)
    assert len(got) == len(want) and all(g is w for g, w in zip(got, want)), (
        f"got:\n{to_text(got)}\nwant:\n{to_text(want)}")
    return report.rewrites


V = "%0 = placeholder[name='v']() : float64[4]\n"


def test_transpose_of_a_diagonal_scatter_is_the_same_scatter() -> None:
    rewrites = check(V + """
        %1 = slice_grad[index=((0, 16, 5),), shape=(16,)](%0) : float64[16]
        %2 = reshape[shape=(4, 4)](%1) : float64[4, 4]
        %3 = transpose[perm=(1, 0)](%2) : float64[4, 4]
        return %3
    """, V + """
        %1 = slice_grad[index=((0, 16, 5),), shape=(16,)](%0) : float64[16]
        %2 = reshape[shape=(4, 4)](%1) : float64[4, 4]
        return %2
    """)
    assert rewrites == {"canonicalize/transpose-scatter": 1}


def test_transpose_moves_off_diagonal_bands_of_a_sum() -> None:
    w = "%1 = placeholder[name='w']() : float64[3]\n"
    check(V + w + """
        %2 = slice_grad[index=((1, 16, 5),), shape=(16,)](%1) : float64[16]
        %3 = slice_grad[index=((0, 16, 5),), shape=(16,)](%0) : float64[16]
        %4 = add(%2, %3) : float64[16]
        %5 = reshape[shape=(4, 4)](%4) : float64[4, 4]
        %6 = transpose[perm=(1, 0)](%5) : float64[4, 4]
        return %6
    """, V + w + """
        %2 = slice_grad[index=((4, 15, 5),), shape=(16,)](%1) : float64[16]
        %3 = slice_grad[index=((0, 16, 5),), shape=(16,)](%0) : float64[16]
        %4 = add(%2, %3) : float64[16]
        %5 = reshape[shape=(4, 4)](%4) : float64[4, 4]
        return %5
    """)


def test_transpose_of_an_anti_diagonal_reverses_the_values() -> None:
    # positions 3, 6, 9, 12 of a 4x4 matrix: (0,3) (1,2) (2,1) (3,0); transposed they are
    # 12, 9, 6, 3, written from 3 with the values reversed
    check(V + """
        %1 = slice_grad[index=((3, 13, 3),), shape=(16,)](%0) : float64[16]
        %2 = reshape[shape=(4, 4)](%1) : float64[4, 4]
        %3 = transpose[perm=(1, 0)](%2) : float64[4, 4]
        return %3
    """, V + """
        %1 = slice[checks=(), index=((3, -1, -1),)](%0) : float64[4]
        %2 = slice_grad[index=((3, 13, 3),), shape=(16,)](%1) : float64[16]
        %3 = reshape[shape=(4, 4)](%2) : float64[4, 4]
        return %3
    """)


def test_transpose_of_a_wrapping_progression_is_left_alone() -> None:
    # positions 0, 3, 6, 9 of a 2x6 matrix: (0,0) (0,3) (1,0) (1,3): transposed 0, 6, 1, 7
    text = V + """
        %1 = slice_grad[index=((0, 10, 3),), shape=(12,)](%0) : float64[12]
        %2 = reshape[shape=(2, 6)](%1) : float64[2, 6]
        %3 = transpose[perm=(1, 0)](%2) : float64[6, 2]
        return %3
    """
    check(text, text)


def test_transpose_scatter_values() -> None:
    v = sg.placeholder("v", (3,), "float64")
    s = OPS["slice_grad"](v, index=((1, 54, 26),), shape=(60,))  # (i, i, i + 1) in a 3x4x5 tensor
    t = sg.transpose(sg.reshape(s, (3, 4, 5)), (2, 0, 1))
    got, _ = run_pipeline([t], "canonicalize")
    assert "transpose" not in {n.op.name for n in toposort(got)}
    V3 = RNG.standard_normal(3)
    want = np.zeros(60)
    want[1:54:26] = V3
    np.testing.assert_array_equal(sg.compile(got[0])(v=V3), want.reshape(3, 4, 5).transpose(2, 0, 1))


def test_slice_of_a_broadcast_slices_the_operand() -> None:
    w = "%0 = placeholder[name='w']() : float64[1, 6]\n"
    rewrites = check(w + """
        %1 = broadcast_to[shape=(3, 4, 6)](%0) : float64[3, 4, 6]
        %2 = slice[checks=(), index=((0, 3, 2), (1, 4, 1), (1, 6, 2))](%1) : float64[2, 3, 3]
        return %2
    """, w + """
        %1 = slice[checks=(), index=((0, 1, 1), (1, 6, 2))](%0) : float64[1, 3]
        %2 = broadcast_to[shape=(2, 3, 3)](%1) : float64[2, 3, 3]
        return %2
    """)
    assert rewrites == {"canonicalize/slice-broadcast": 1}
    s = "%0 = constant[value=1.]() : float64[]\n"
    check(s + """
        %1 = broadcast_to[shape=(8,)](%0) : float64[8]
        %2 = slice[checks=(), index=((1, 8, 2),)](%1) : float64[4]
        return %2
    """, s + """
        %1 = broadcast_to[shape=(4,)](%0) : float64[4]
        return %1
    """)

