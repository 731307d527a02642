"""The batching transform: run a graph for many values of some inputs at once.

``vectorize(outputs, {node: batched}, B)`` rewrites the graph so that ``node`` is
replaced by ``batched`` (its shape with a leading axis of size ``B``) and every value
that depends on it gains the same leading axis. Jacobians and Hessians use it over the
seed of a vjp or jvp: one batched backward (or forward) graph instead of ``B`` copies.

Rules go by op kind (all elementwise ops share one, reductions shift their axes) with
specific rules for shape, indexing and matrix ops. Convolution-style ops that treat
their leading axis as a batch are batched by merging the two leading axes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import symgrad.ops.api as F
from symgrad.errors import UnsupportedError
from symgrad.ir import shape as S
from symgrad.ir.graph import toposort_by_creation
from symgrad.ir.shape import Size
from symgrad.ir.tensor import Tensor
from symgrad.ops.base import OPS

Rule = Callable[[Tensor, list[Tensor], list[bool], Size], Tensor]

# ops whose first operand's leading axis is a batch axis and whose other operands are
# shared: batched by folding B into that axis
MERGE_LEADING = {"conv2d", "conv2d_grad_input", "max_pool2d", "avg_pool2d", "avg_pool2d_grad",
                 "max_pool2d_grad", "max_pool2d_gather"}


def _lift(t: Tensor, rank: int) -> Tensor:
    """A batched value (B, *shape) padded with size-1 axes to logical rank ``rank``."""
    logical = t.ndim - 1
    if logical >= rank:
        return t
    return F.reshape(t, (t.shape[0], *([1] * (rank - logical)), *t.shape[1:]))


def _make(node: Tensor, inputs: list[Tensor], **changes: Any) -> Tensor:
    attrs = dict(node.attrs)
    attrs.update(changes)
    return Tensor.make(node.op, tuple(inputs), tuple(sorted(attrs.items())))


def _elementwise(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    r = node.ndim
    return _make(node, [_lift(a, r) if b else a for a, b in zip(args, batched)])


def _shift_axes(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    if node.attr("axes") is not None:
        return _make(node, args, axes=tuple(a + 1 for a in node.attr("axes")))
    return _make(node, args, axis=node.attr("axis") + 1)


def _reshape(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    return F.reshape(args[0], (B, *node.shape))


def _transpose(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    return F.transpose(args[0], (0, *(p + 1 for p in node.attr("perm"))))


def _broadcast(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    return F.broadcast_to(_lift(args[0], node.ndim), (B, *node.shape))


def _matmul(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    a, b = node.inputs
    rank = max(a.ndim, b.ndim)
    ins = [_lift(x, rank) if bt else x for x, bt in zip(args, batched)]
    return Tensor.make(node.op, tuple(ins), node.attrs)


def _slice(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    return _make(node, args, index=((0, B, 1), *node.attr("index")))


def _slice_grad(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    return _make(node, args, index=((0, B, 1), *node.attr("index")), shape=(B, *node.shape))


def _concatenate(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    ins = [a if b else F.broadcast_to(a, (B, *a.shape)) for a, b in zip(args, batched)]
    return _make(node, ins, axis=node.attr("axis") + 1)


def _indexed(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    if batched[1]:
        raise UnsupportedError(f"batching: {node.op.name} with batched indices")
    return _make(node, args, axis=node.attr("axis") + 1)


def _merge_leading(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    if any(batched[1:]):
        raise UnsupportedError(f"batching: {node.op.name} with a batched second operand "
                               f"(built at {node.loc})")
    x = args[0]
    merged = F.reshape(x, (S.mul(B, x.shape[1]), *x.shape[2:]))
    out = Tensor.make(node.op, (merged, *args[1:]), node.attrs)
    return F.reshape(out, (B, *node.shape))


RULES: dict[str, Rule] = {
    "reshape": _reshape,
    "transpose": _transpose,
    "broadcast_to": _broadcast,
    "matmul": _matmul,
    "slice": _slice,
    "slice_grad": _slice_grad,
    "concatenate": _concatenate,
    "take": _indexed,
    "take_grad": _indexed,
}


def rule_for(name: str) -> Rule | None:
    if name in RULES:
        return RULES[name]
    op = OPS.get(name)
    if op is None:
        return None
    if "batch" in op.extra:
        return op.extra["batch"]  # type: ignore[no-any-return]
    if op.kind == "elementwise":
        return _elementwise
    if op.kind == "reduction":
        return _shift_axes
    if name in MERGE_LEADING:
        return _merge_leading
    return None


def vectorize(outputs: Sequence[Tensor], replace: Mapping[int, Tensor], B: Size) -> list[Tensor]:
    """Replace nodes by batched values and batch everything that depends on them.

    Returns each output with a leading axis of size ``B`` (outputs that do not depend on
    the replaced nodes are broadcast).
    """
    new: dict[int, tuple[Tensor, bool]] = {}
    for node in toposort_by_creation(outputs):
        if id(node) in replace:
            new[id(node)] = (replace[id(node)], True)
            continue
        vals = [new[id(i)] for i in node.inputs]
        args = [v for v, _ in vals]
        flags = [b for _, b in vals]
        if not any(flags):
            same = all(a is i for a, i in zip(args, node.inputs))
            new[id(node)] = (node if same else Tensor.make(node.op, tuple(args), node.attrs), False)
            continue
        rule = rule_for(node.op.name)
        if rule is None:
            raise UnsupportedError(
                f"batching: no rule for op {node.op.name} (built at {node.loc}); Jacobians and "
                "Hessians through it are not supported"
            )
        new[id(node)] = (rule(node, args, flags, B), True)
    result = []
    for o in outputs:
        v, b = new[id(o)]
        result.append(v if b else F.broadcast_to(v, (B, *v.shape)))
    return result
