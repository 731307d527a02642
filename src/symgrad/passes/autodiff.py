"""Reverse- and forward-mode differentiation as a graph-to-graph transformation.

The pass replaces every ``grad`` node by the backward graph built from the ops'
pullback rules, and every ``jvp`` node by the tangent graph built from their
pushforward rules. Nodes are visited inputs-first, so a derivative of a graph that
already holds derivatives is expanded innermost first, and a gradient of a gradient
needs nothing special.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import symgrad.ops.api as F
from symgrad.errors import GradientError
from symgrad.ir import shape as S
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.graph import toposort, toposort_by_creation
from symgrad.ir.shape import Size, shape_str
from symgrad.ir.tensor import Tensor, located, placeholder
from symgrad.ops.base import OPS
from symgrad.passes.batching import vectorize
from symgrad.passes.rewrite import rebuild


def _fit(ct: Tensor, like: Tensor) -> Tensor:
    """Bring a cotangent to the shape and dtype of the value it belongs to."""
    if ct.shape != like.shape:
        ct = F.sum_to(ct, like.shape)
    if ct.dtype != like.dtype:
        ct = F.cast(ct, like.dtype)
    return ct


def _active(order: list[Tensor], roots: set[int] | None) -> set[int]:
    """Nodes that depend on a root (by default: on any placeholder)."""
    active: set[int] = set()
    for n in order:
        if (id(n) in roots) if roots is not None else n.op.name == "placeholder":
            active.add(id(n))
        elif any(id(i) in active for i in n.inputs):
            active.add(id(n))
    return active


def backward(y: Tensor, seed: Tensor, roots: set[int] | None = None) -> dict[int, Tensor]:
    """Cotangents (keyed by node id) for cotangent ``seed`` of ``y``: of every node that
    depends on one of ``roots`` (by default every node that depends on a placeholder;
    constant subgraphs get no cotangents)."""
    order = toposort([y])  # structural: the derived graph must not depend on build history
    active = _active(order, roots)
    cts: dict[int, Tensor] = {id(y): seed}
    for node in reversed(order):
        g = cts.get(id(node))
        if g is None or not node.inputs or id(node) not in active:
            continue
        if node.op.kind == "transform":
            raise GradientError(f"{node.op.name}: derivative requests must be expanded first")
        if node.op.pullback is None:
            if node.op.nondiff is None and any(i.dtype in FLOATS for i in node.inputs):
                raise GradientError(f"{node.op.name} has no pullback rule (built at {node.loc})")
            continue
        with located(node.loc):
            for inp, ct in zip(node.inputs, node.op.pullback(node, g)):
                if ct is None or inp.dtype not in FLOATS or id(inp) not in active:
                    continue
                ct = _fit(ct, inp)
                prev = cts.get(id(inp))
                cts[id(inp)] = ct if prev is None else F.add(prev, ct)
    return cts


def _fit_tangent(t: Tensor, node: Tensor) -> Tensor:
    """Bring a tangent to the shape and dtype of the value it belongs to.

    A tangent lives in the output's space, so the only shape change allowed is a
    broadcast (a rule may return the tangent of a broadcast operand as it is); summing,
    as a cotangent is fitted, would be wrong.
    """
    if t.shape != node.shape:
        if t.ndim > node.ndim or any(
            isinstance(a, int) and isinstance(b, int) and a not in (1, b)
            for a, b in zip(t.shape[::-1], node.shape[::-1])
        ):
            raise GradientError(
                f"{node.op.name}: its pushforward gave a tangent of shape {shape_str(t.shape)} "
                f"for a value of shape {shape_str(node.shape)} (built at {node.loc})"
            )
        t = F.broadcast_to(t, node.shape)
    if t.dtype != node.dtype:
        t = F.cast(t, node.dtype)
    return t


def forward(x: Tensor, v: Tensor, y: Tensor) -> Tensor:
    """The tangent of ``y`` when ``x`` moves along ``v`` (forward mode).

    Integer and bool values have no tangent (their derivative is zero), whatever the
    op that made them.
    """
    tangents: dict[int, Tensor] = {id(x): v}
    for node in toposort([y]):
        if id(node) in tangents or not node.inputs or node.dtype not in FLOATS:
            continue
        ts = [tangents.get(id(i)) for i in node.inputs]
        if all(t is None for t in ts):
            continue
        if node.op.pushforward is None:
            if node.op.nondiff is not None:
                continue
            raise GradientError(f"{node.op.name} has no pushforward rule (built at {node.loc})")
        with located(node.loc):
            t = node.op.pushforward(node, ts)
            if t is not None:
                tangents[id(node)] = _fit_tangent(t, node)
    out = tangents.get(id(y))
    return out if out is not None else F.zeros_like(y, y.dtype if y.dtype in FLOATS else x.dtype)


def _basis(shape: tuple[Size, ...], dtype: str) -> tuple[Tensor, Size]:
    """The standard basis of a tensor space, stacked: shape (n, *shape) with n = prod(shape)."""
    n = S.prod(shape)
    return F.reshape(F.eye(n, dtype), (n, *shape)), n


def _seed(like: Tensor, tag: str) -> Tensor:
    """A stand-in for a seed that the batching transform replaces (never compiled)."""
    return placeholder(f"__{tag}_seed_{like.serial}", like.shape, like.dtype)


def jacobian(y: Tensor, x: Tensor, mode: str) -> Tensor:
    """dy/dx (shape y.shape + x.shape) from ONE batched vjp or jvp over basis seeds."""
    if mode == "rev":
        u = _seed(y, "rev")
        (g,) = expand([OPS["grad"](y, x, u)])
        eye, n = _basis(y.shape, y.dtype)
        (gb,) = vectorize([g], {id(u): eye}, n)
        return F.reshape(F.cast(gb, y.dtype), (*y.shape, *x.shape))
    v = _seed(x, "fwd")
    t = forward(x, v, y)
    eye, n = _basis(x.shape, x.dtype)
    (tb,) = vectorize([t], {id(v): eye}, n)
    tb = F.reshape(F.cast(tb, y.dtype), (*x.shape, *y.shape))
    perm = (*range(x.ndim, x.ndim + y.ndim), *range(x.ndim))
    return F.transpose(tb, perm)


@dataclass(frozen=True)
class Autodiff:
    """Expand every derivative request (``grad``, ``jvp``, ``jacobian``) into ordinary nodes."""

    name: str = "autodiff"

    def run(self, outputs: Sequence[Tensor]) -> list[Tensor]:
        return expand(outputs)


def expand(outputs: Sequence[Tensor]) -> list[Tensor]:
    new: dict[int, Tensor] = {}
    sweeps: dict[tuple[int, int], dict[int, Tensor]] = {}
    for node in toposort_by_creation(outputs):
        inputs = tuple(new[id(i)] for i in node.inputs)
        if node.op.name == "grad":
            y, wrt, seed = inputs
            key = (id(y), id(seed))
            if key not in sweeps:
                sweeps[key] = backward(y, seed)
            ct = sweeps[key].get(id(wrt))
            if ct is None and wrt.op.name != "placeholder":
                # wrt is no placeholder's descendant (say, a constant): a sweep of its own
                ct = backward(y, seed, {id(wrt)}).get(id(wrt))
            out = _fit(ct, wrt) if ct is not None else F.zeros_like(wrt)
        elif node.op.name == "jvp":
            y, x, v = inputs
            out = forward(x, v, y)
        elif node.op.name == "jacobian":
            y, x = inputs
            out = jacobian(y, x, node.attr("mode"))
        else:
            out = rebuild(node, inputs)
        new[id(node)] = out
    return [new[id(o)] for o in outputs]
