"""Fusion: partition the graph's compute nodes into kernels.

Every elementwise op, view op and reduction starts in a group of its own; groups are then
merged along graph edges where one loop nest can evaluate both ends. Inside a group every
node lives at one of three levels of a common iteration domain ``D`` (the shape with its
static 1-axes dropped):

* ``full``: evaluated at every point of ``D``;
* ``red``: a reduction of a ``full`` value over the group's reduced axes ``A``;
* ``out``: evaluated at every point of ``D`` without ``A`` (after the reduction).

An edge may join two groups when its ends are *aligned* (the same elements in the same
order, up to axes of size 1) and their levels agree: elementwise chains (full-full),
elementwise work feeding a reduction (full-red), and elementwise work after it (red-out,
out-out). Broadcasting edges, slices and transposes stay between kernels: the consumer
reads the producer's buffer through a strided access instead.

A merge is refused when another path connects the two groups in the group graph, since
contracting them would then create a cycle; the final group graph is a networkx DiGraph,
checked acyclic and used to order the kernels.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx

from symgrad.ir.shape import Shape, Size
from symgrad.ir.tensor import Tensor

LEAF_OPS = frozenset({"placeholder", "constant", "dim"})
VIEW_OPS = frozenset({"broadcast_to", "transpose", "reshape", "slice"})
REDUCE_OPS = frozenset({"sum", "max", "min", "prod", "argmax", "argmin"})
LIB_OPS = frozenset({"matmul", "take", "take_grad", "one_hot", "concatenate", "slice_grad",
                     "scatter_sum"})
# values computed from the element's position, fused like elementwise ops
GENERATED_OPS = frozenset({"arange", "random_uniform"})

# A kernel body larger than this is split: LLVM's optimizer time grows faster than
# linearly on huge loop bodies, and such bodies gain nothing from more fusion.
MAX_GROUP_NODES = 256


def category(node: Tensor) -> str:
    """``leaf``, ``ew``, ``view``, ``red``, ``lib`` or ``unsupported``."""
    name = node.op.name
    if name in LEAF_OPS:
        return "leaf"
    if node.op.kind == "elementwise" or name in GENERATED_OPS:
        return "ew"
    if name in VIEW_OPS:
        return "view"
    if name in REDUCE_OPS:
        return "red"
    if name in LIB_OPS:
        return "lib"
    return "unsupported"


@functools.lru_cache(maxsize=4096)
def strip1(shape: Shape) -> tuple[Size, ...]:
    """The shape without its axes of static size 1."""
    return tuple(s for s in shape if s != 1)


def aligned_view(node: Tensor) -> bool:
    """Whether a view op maps its input's elements to its own in the same order."""
    name = node.op.name
    x = node.inputs[0]
    if name in ("reshape", "broadcast_to"):
        return strip1(x.shape) == strip1(node.shape)
    if name == "transpose":
        order = [p for p in node.attr("perm") if x.shape[p] != 1]
        return order == sorted(order)
    return False


def fusable(p: Tensor, c: Tensor) -> str | None:
    """How consumer ``c`` may share a kernel with its input ``p``: ``same`` (aligned
    elementwise or view), ``prologue`` (``p`` feeds reduction ``c``) or ``None``."""
    cc = category(c)
    if cc == "red":
        return "prologue"
    if cc == "ew" and strip1(p.shape) == strip1(c.shape):
        return "same"
    if cc == "view" and aligned_view(c):
        return "same"
    return None


@dataclass(eq=False)
class Group:
    """Nodes computed by one loop nest, each at a level of the domain."""

    gid: int
    members: list[Tensor]
    domain: tuple[Size, ...]
    axes: tuple[int, ...] | None  # reduced positions in ``domain``; None: no reduction
    level: dict[int, str] = field(default_factory=dict)
    lib: bool = False

    @property
    def out_domain(self) -> tuple[Size, ...]:
        axes = self.axes or ()
        return tuple(s for a, s in enumerate(self.domain) if a not in axes)


def _reduced_positions(x: Tensor, axes: Sequence[int]) -> tuple[int, ...]:
    """Positions of ``axes`` among the non-1 axes of ``x``."""
    pos = {}
    k = 0
    for i, s in enumerate(x.shape):
        if s != 1:
            pos[i] = k
            k += 1
    return tuple(sorted(pos[a] for a in axes if a in pos))


@dataclass
class Partition:
    groups: list[Group]  # in execution order
    group_of: dict[int, Group]
    graph: nx.DiGraph


def partition(order: list[Tensor], max_nodes: int = MAX_GROUP_NODES) -> Partition:
    """Fuse the compute nodes of ``order`` (a topological order) into groups.

    While merging, the group graph is kept as successor and predecessor sets (contracting
    an edge there is a few set operations, which matters on graphs of tens of thousands of
    nodes); the result's ``graph`` is the networkx DiGraph of the final groups, which
    orders them and is checked to be acyclic.
    """
    pos = {id(n): k for k, n in enumerate(order)}
    group_of: dict[int, Group] = {}
    groups: dict[int, Group] = {}
    succ: dict[int, set[int]] = {}
    pred: dict[int, set[int]] = {}
    first: dict[int, int] = {}  # group -> position of its first member
    cat: dict[int, str] = {}
    flat: dict[int, tuple[Size, ...]] = {}  # shapes without their 1-axes
    users: dict[int, list[Tensor]] = {}
    for n in order:
        kind = cat[id(n)] = category(n)
        flat[id(n)] = strip1(n.shape)
        for i in n.inputs:
            users.setdefault(id(i), []).append(n)
        if kind == "leaf":
            continue
        gid = len(groups)
        if kind == "red":
            x = n.inputs[0]
            axes = _reduced_positions(x, n.attr("axes"))
            assert axes, f"{n.op.name} over axes of size 1 only must be decomposed first"
            g = Group(gid, [n], tuple(strip1(x.shape)), axes)
            g.level[id(n)] = "red"
        else:
            g = Group(gid, [n], flat[id(n)], None, lib=kind == "lib")
            g.level[id(n)] = "full"
        groups[gid] = g
        first[gid] = pos[id(n)]
        group_of[id(n)] = g
        succ[gid] = set()
        preds = pred[gid] = set()
        for i in n.inputs:
            gi = group_of.get(id(i))
            if gi is not None and gi.gid != gid:
                succ[gi.gid].add(gid)
                preds.add(gi.gid)

    def relation(p: Tensor, c: Tensor) -> str | None:  # fusable(), from the caches
        cc = cat[id(c)]
        if cc == "red":
            return "prologue"
        if cc == "ew" and flat[id(p)] == flat[id(c)]:
            return "same"
        if cc == "view" and aligned_view(c):
            return "same"
        return None

    def edge_ok(u: Tensor, v: Tensor, lu: str, lv: str) -> bool:
        return _levels_ok(relation(u, v), lu, lv)

    def merge(gp: Group, gc: Group, p: Tensor, c: Tensor, rel: str) -> bool:
        if gp is gc or gp.lib or gc.lib:
            return False
        if len(gp.members) + len(gc.members) > max_nodes:
            return False
        spec = _combine(gp, gc, p, c, rel)
        if spec is None:
            return False
        domain, axes, moved, target = spec

        def level(m: Tensor) -> str:
            g = group_of[id(m)]
            return target if g is moved else g.level[id(m)]

        small, other = (gp, gc) if len(gp.members) <= len(gc.members) else (gc, gp)
        for m in small.members:
            for i in m.inputs:
                if group_of.get(id(i)) is other and not edge_ok(i, m, level(i), level(m)):
                    return False
            for u in users.get(id(m), ()):
                if group_of.get(id(u)) is other and not edge_ok(m, u, level(m), level(u)):
                    return False
        # gp -> gc is an edge, so the graph (a DAG) has no path back from gc to gp
        if _other_path(succ, pred, gp.gid, gc.gid, first, pos[id(c)]):
            return False
        if moved is not None:
            for m in moved.members:
                moved.level[id(m)] = target
        keep, gone = (gp, gc) if len(gp.members) >= len(gc.members) else (gc, gp)
        k, d = keep.gid, gone.gid
        for m in gone.members:
            group_of[id(m)] = keep
        keep.members.extend(gone.members)
        keep.level.update(gone.level)
        keep.domain, keep.axes = domain, axes
        first[k] = min(first[k], first[d])
        del first[d]
        for t in succ.pop(d):
            pred[t].discard(d)
            if t != k:
                succ[k].add(t)
                pred[t].add(k)
        for t in pred.pop(d):
            succ[t].discard(d)
            if t != k:
                pred[k].add(t)
                succ[t].add(k)
        del groups[d]
        return True

    for c in order:
        if id(c) not in group_of:
            continue
        for p in c.inputs:
            if id(p) not in group_of:
                continue
            rel = relation(p, c)
            if rel is not None:
                merge(group_of[id(p)], group_of[id(c)], p, c, rel)

    q = nx.DiGraph()
    q.add_nodes_from(groups)
    q.add_edges_from((a, b) for a, bs in succ.items() for b in bs)
    assert nx.is_directed_acyclic_graph(q), "fusion created a cycle"
    for g in groups.values():
        g.members.sort(key=lambda m: pos[id(m)])
    ordered = [groups[gid] for gid in nx.lexicographical_topological_sort(q, key=lambda g: first[g])]
    return Partition(ordered, group_of, q)


def _other_path(succ: dict[int, set[int]], pred: dict[int, set[int]], a: int, b: int,
                first: dict[int, int], now: int) -> bool:
    """Whether ``b`` is reachable from ``a`` other than by the edge ``a -> b``.

    Such a path enters ``b`` from another of its predecessors, so there is none when ``a``
    is the only one (the common case), and otherwise the search stops at any of them.
    Merges happen while visiting consumers in topological order, so when the consumer at
    position ``now`` is visited every group holding a later node is a singleton, and such
    a group cannot lead back to ``b`` (all of whose members come no later than ``now``):
    the search skips them, which keeps it small on long graphs.
    """
    targets = pred[b] - {a}
    if not targets:
        return False
    stack = [s for s in succ[a] if s != b and first[s] <= now]
    seen = set(stack)
    while stack:
        n = stack.pop()
        if n in targets:
            return True
        for s in succ[n]:
            if s not in seen and first[s] <= now:
                seen.add(s)
                stack.append(s)
    return False


def _levels_ok(rel: str | None, lu: str, lv: str) -> bool:
    """Whether an edge ``u -> v`` whose fusion relation is ``rel`` (see :func:`fusable`),
    at levels ``lu`` and ``lv``, can be an SSA use inside one kernel."""
    if rel == "prologue":
        return lu == "full" and lv == "red"
    if rel == "same":
        return (lu, lv) in (("full", "full"), ("out", "out"), ("red", "out"))
    return False


def _combine(
    gp: Group, gc: Group, p: Tensor, c: Tensor, rel: str
) -> tuple[tuple[Size, ...], tuple[int, ...] | None, Group | None, str] | None:
    """The merged group's domain and reduced axes, and which group (if any) moves wholly
    to which level; None if the two cannot share a loop nest."""
    lp, lc = gp.level[id(p)], gc.level[id(c)]
    if gp.axes is None and gc.axes is None:
        if rel != "same" or gp.domain != gc.domain:
            return None
        return gp.domain, None, None, ""
    if gp.axes is None:
        # every node of gp moves to the level p needs in gc
        target = "full" if rel == "prologue" else lc
        if target == "red":
            return None
        want = gc.domain if target == "full" else gc.out_domain
        if gp.domain != want:
            return None
        return gc.domain, gc.axes, gp, target
    if gc.axes is None:
        if rel != "same":
            return None
        target = "out" if lp == "red" else lp
        want = gp.domain if target == "full" else gp.out_domain
        if gc.domain != want:
            return None
        return gp.domain, gp.axes, gc, target
    if gp.domain != gc.domain or gp.axes != gc.axes:
        return None
    return gp.domain, gp.axes, None, ""
