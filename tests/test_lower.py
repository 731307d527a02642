"""The lowered kernel form: fusion partition, kernel text, index maps, buffer plan."""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np
import pytest

import symgrad as sg
from symgrad.backends.base import Program
from symgrad.backends.lower import LibCall, LoopKernel, LoweredProgram, lower, partition
from symgrad.backends.lower.decompose import decompose
from symgrad.backends.lower.fusion import _levels_ok, category, fusable
from symgrad.compile import _size_sources
from symgrad.ir.graph import placeholders, toposort
from symgrad.ir.tensor import Tensor
from symgrad.passes import DEFAULT_PIPELINE
from symgrad.passes.manager import PassManager, parse_pipeline
from symgrad.testing import check_backends


def optimized(outs: list[Tensor]) -> list[Tensor]:
    return PassManager(parse_pipeline(DEFAULT_PIPELINE)).run(outs)


def lowered(outs: list[Tensor]) -> LoweredProgram:
    opt = optimized(outs)
    ins = placeholders(opt)
    return lower(Program(ins, opt, _size_sources(ins, opt)))


def loops(lp: LoweredProgram) -> list[LoopKernel]:
    return [k for k in lp.kernels if isinstance(k, LoopKernel)]


def check_partition(outs: list[Tensor]) -> int:
    """Partition the graph; assert the group graph is acyclic and every group is one loop
    nest (every edge inside a group is a legal SSA use). Returns the number of groups."""
    order = toposort(decompose(optimized(outs)))
    part = partition(order)
    assert nx.is_directed_acyclic_graph(part.graph)
    pos = {g.gid: k for k, g in enumerate(part.groups)}
    for u, v in part.graph.edges:
        assert pos[u] < pos[v], "groups are not in execution order"
    for g in part.groups:
        members = {id(m) for m in g.members}
        for m in g.members:
            for i in m.inputs:
                if id(i) in members:
                    assert _levels_ok(fusable(i, m), g.level[id(i)], g.level[id(m)])
    # every node-level edge between groups follows the group order
    for n in order:
        for i in n.inputs:
            gi, gn = part.group_of.get(id(i)), part.group_of.get(id(n))
            if gi is not None and gn is not None and gi is not gn:
                assert pos[gi.gid] < pos[gn.gid]
    return len(part.groups)


# -- fusion -----------------------------------------------------------------------------------
def test_fusion_refuses_a_merge_that_would_create_a_cycle() -> None:
    x = sg.placeholder("x", (None, 4))
    w = sg.placeholder("w", (4, 4))
    e = sg.exp(x)
    y = e + e @ w  # e -> matmul -> y and e -> y: fusing e with y would need the matmul inside
    check_partition([y])
    lp = lowered([y])
    names = [k.name for k in lp.kernels]
    assert names[0].startswith("fused_exp") and names[1].startswith("matmul") and \
        names[2].startswith("fused_add"), names


def _random_graph(rng: np.random.Generator, size: int) -> tuple[list[Tensor], list[Tensor]]:
    x = sg.placeholder("x", (None, 4))
    v = sg.placeholder("v", (4,))
    w = sg.placeholder("w", (4, 4))
    pool: list[Tensor] = [x, x * 0.5, v]
    ops = [
        lambda a, b: sg.tanh(a),
        lambda a, b: a * b,
        lambda a, b: sg.sum(a, -1, keepdims=bool(rng.integers(2))),
        lambda a, b: a @ w,
        lambda a, b: sg.max(a, 0),
        lambda a, b: sg.transpose(sg.transpose(a) * 2.0),
        lambda a, b: sg.softmax(a, -1),
        lambda a, b: a[:, ::2] @ w[::2],
        lambda a, b: sg.where(a > 0, a, b),
        lambda a, b: sg.log1p(sg.abs(a)) + sg.sum(a),
        lambda a, b: a - sg.mean(a, 0),
        lambda a, b: sg.sigmoid(b) * a[..., :1],
    ]
    while len(pool) < size + 3:
        a = pool[rng.integers(len(pool))]
        b = pool[rng.integers(len(pool))]
        try:
            pool.append(ops[rng.integers(len(ops))](a, b))
        except (sg.ShapeError, sg.DTypeError, IndexError):
            continue
    outs = [pool[-1], pool[-2], sg.sum(pool[-3])]
    return outs, [x, v, w]


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_partition_acyclic(seed: int) -> None:
    rng = np.random.default_rng(seed)
    outs, _ = _random_graph(rng, 25)
    check_partition(outs)
    outs = [o for o in outs if o.dtype.startswith("float")]
    grads = sg.grad(sg.sum(outs[0]) + sg.sum(outs[-1]), placeholders(outs))
    check_partition([*outs, *grads])
    lowered([*outs, *grads])  # every buffer gets a slot, every access is well formed


@pytest.mark.parametrize("seed", [3, 11, 17, 23, 31, 37])
def test_random_graphs_run_like_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    outs, ins = _random_graph(rng, 25)
    grads = sg.grad(sg.sum(outs[0]) + sg.sum(outs[-1]), ins)
    values = {"x": rng.standard_normal((6, 4)).astype(np.float32),
              "v": rng.standard_normal(4).astype(np.float32),
              "w": (rng.standard_normal((4, 4)) * 0.5).astype(np.float32)}
    used = {t.name for t in placeholders([*outs, *grads])}
    check_backends([*outs, *grads], {k: v for k, v in values.items() if k in used}, ["llvm"],
                   rtol=1e-4, atol=1e-5)


# -- kernel text --------------------------------------------------------------------------------
def test_w1_value_and_gradient_is_one_kernel() -> None:
    x = sg.placeholder("x", (None,))
    f = sg.sum(sg.softplus(x) * sg.tanh(x) + sg.sigmoid(x) ** 2)
    lp = lowered([f, sg.grad(f, x)])
    (k,) = lp.kernels
    assert isinstance(k, LoopKernel) and k.strategy == "full"
    assert k.name.startswith("fused_softplus_tanh") and k.name.endswith("_0")
    text = lp.text()
    assert "acc0 = sum(" in text and "out1[i0] = " in text and "| out0[0] = " in text
    assert sum(ins.op in ("tanh", "softplus", "sigmoid") for ins in k.instrs) == 3  # shared
    assert lp.text() == lowered([f, sg.grad(f, x)]).text()  # deterministic


def test_views_become_strided_accesses() -> None:
    x = sg.placeholder("x", (3, None))
    b = sg.placeholder("b", (3,))
    y = x.T * 2.0 + b  # a transpose and a broadcast: no copies
    z = x[1:, ::2]
    lp = lowered([y, z + 1.0])
    assert len(lp.kernels) == 2 and not lp.temps
    text = lp.text()
    assert "load x[i0 + (x.1)*i1]" in text  # x.T read with swapped strides
    assert "load b[i1]" in text  # b broadcast along axis 0
    assert "load x[(x.1)*i0 + 2*i1 + (x.1)]" in text  # x[1:, ::2]


def test_reduction_epilogue_and_prologue_fuse() -> None:
    x = sg.placeholder("x", (None, 10))
    y = sg.log_softmax(x * 2.0, -1)
    lp = lowered([y])
    kinds = [(k.strategy, len(k.reductions)) for k in loops(lp)]
    assert kinds == [("inner", 1), ("inner", 1), ("map", 0)], lp.text()
    first = loops(lp)[0]
    assert [i.op for i in first.instrs if i.phase == "out"][:3] == ["acc", "abs", "const"]


def test_column_reduction_accumulates_in_memory_order() -> None:
    x = sg.placeholder("x", (None, 512))
    lp = lowered([sg.sum(sg.relu(x), 0)])
    (k,) = loops(lp)
    assert k.strategy == "outer" and k.scratch and k.scratch[0].dtype == "float64"


def test_mlp_kernels_and_library_calls() -> None:
    X = sg.placeholder("X", (None, 784))
    y = sg.placeholder("y", (None,), "int64")
    W1 = sg.placeholder("W1", (784, 512))
    b1 = sg.placeholder("b1", (512,))
    W2 = sg.placeholder("W2", (512, 10))
    b2 = sg.placeholder("b2", (10,))
    z = sg.relu(X @ W1 + b1) @ W2 + b2
    loss = -sg.mean(sg.sum(sg.one_hot(y, 10) * sg.log_softmax(z), -1))
    lp = lowered([loss, *sg.grad(loss, [W1, b1, W2, b2])])
    calls = [k.op for k in lp.kernels if isinstance(k, LibCall)]
    assert calls.count("matmul") == 5 and calls.count("one_hot") == 1
    # transposed operands of the backward products are read in place, not copied
    assert all(not k.name.startswith("copy") for k in lp.kernels)
    assert len(lp.plan.slots) < len(lp.temps) + len(lp.scratch)


# -- buffer plan ----------------------------------------------------------------------------------
def test_buffers_are_reused_and_written_in_place() -> None:
    x = sg.placeholder("x", (None, 8))
    w = sg.placeholder("w", (8, 8))
    h = x
    for _ in range(4):
        h = sg.tanh(h @ w) * 0.5  # each product's output dies in the next elementwise kernel
    lp = lowered([sg.sum(h)])
    assert len(lp.temps) == 7  # the last tanh * 0.5 fuses into the sum
    assert len(lp.plan.slots) <= 3
    assert lp.plan.inplace  # tanh(t) * 0.5 overwrites t
    # buffers in one slot never live at the same time
    live: dict[int, tuple[int, int]] = {}
    for k, kern in enumerate(lp.kernels):
        for buf in kern.reads() + kern.writes():
            if buf.kind == "temp":
                a, _ = live.get(id(buf), (k, k))
                live[id(buf)] = (a, k)
    inplace = {(a, b) for a, b in lp.plan.inplace}
    for slot in lp.plan.slots:
        for i, p in enumerate(slot):
            for q in slot[i + 1:]:
                (a0, a1), (b0, b1) = live[id(p)], live[id(q)]
                overlap = a0 <= b1 and b0 <= a1
                assert not overlap or (p.name, q.name) in inplace or (q.name, p.name) in inplace


def test_categories_cover_the_primitives() -> None:
    x = sg.placeholder("x", (3,))
    assert category(sg.exp(x)) == "ew" and category(sg.sum(x)) == "red"
    assert category(x[::2]) == "view" and category(x) == "leaf"
    assert category(sg.take(x, np.array([0, 1]))) == "lib"
    assert category(sg.softmax(x)) == "unsupported"  # decomposed before lowering


def test_size_one_axes_and_scalars(rng: Any) -> None:
    x = sg.placeholder("x", (None, 1, 3))
    y = sg.sum(x, 1) + sg.max(x, (1, 2), keepdims=True)[:, 0] + sg.argmax(x, 1)
    lp = lowered([y])
    assert all(len(k.domain) <= 2 for k in loops(lp))
    check_backends([y], {"x": rng.standard_normal((4, 1, 3)).astype(np.float32)}, ["llvm"])


def test_sums_of_slice_gradients_share_one_buffer(rng: Any) -> None:
    x = sg.placeholder("x", (6, None), "float64")
    gates = [x[:, 0:1], x[:, 1:3], x[:, ::2], x[:, 3:]]  # overlapping and disjoint slices
    y = sum(sg.sum(sg.tanh(g) * float(k + 1)) for k, g in enumerate(gates)) + sg.sum(x * x)
    outs = [sg.grad(y, x)]
    lp = lowered(outs)
    names = [k.name for k in lp.kernels]
    assert sum(n.startswith("fill") for n in names) <= 1, names
    assert sum(n.startswith("scatter") for n in names) == 4, names
    check_backends(outs, {"x": rng.standard_normal((6, 5))}, ["llvm"])
