"""Common-subexpression elimination beyond hash-consing.

Nodes are hash-consed, so structurally identical subgraphs are already one node. This
pass merges what hash-consing cannot see, so forward and backward graphs share work:

- ``b * a`` where ``a * b`` exists (and likewise for add, maximum, minimum, equal,
  not_equal, logical_and, logical_or): the later one in the graph's structural order is
  replaced by the earlier one, so graphs that have only one order are left untouched
  (nothing is rebuilt for nothing);
- an array constant whose elements are all equal becomes ``broadcast_to(scalar)`` where an
  equal constant-filled tensor exists, so an array of ones and a broadcast 1.0 are one
  value.

Nodes that a derivative request differentiates with respect to are kept as they are,
and nothing is merged into them (see :mod:`symgrad.passes.patterns`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from symgrad.ir.graph import toposort, toposort_by_creation
from symgrad.ir.tensor import Tensor
from symgrad.passes.manager import count_rewrite
from symgrad.passes.patterns import const_value, full_like_shape, protected_ids
from symgrad.passes.rewrite import rebuild, rewrite

COMMUTATIVE = frozenset({"add", "mul", "maximum", "minimum", "equal", "not_equal",
                         "logical_and", "logical_or"})


@dataclass(frozen=True)
class CSE:
    """Merge commutative twins (``a*b`` and ``b*a``) and equal constants."""

    name: str = "cse"

    def run(self, outputs: Sequence[Tensor]) -> list[Tensor]:
        order = toposort_by_creation(outputs)
        protected = protected_ids(order)
        twins, fills = _work(order, protected)
        if not twins and not fills:
            return list(outputs)
        order = toposort(outputs)  # structural: which twin survives must not depend on history
        kept: set[int] = set()
        seen: dict[tuple[Any, ...], Tensor] = {}

        def rule(node: Tensor, inputs: tuple[Tensor, ...]) -> Tensor | None:
            name = node.op.name
            if id(node) in protected:
                out = rebuild(node, inputs)
                kept.add(id(out))
                return out
            if name in COMMUTATIVE:
                a, b = inputs
                twin = seen.get((name, node.attrs, id(b), id(a)))
                if twin is not None and a is not b and id(twin) not in kept:
                    count_rewrite("cse/commute")
                    return twin
                out = rebuild(node, inputs)
                seen[(name, node.attrs, id(a), id(b))] = out
                return out
            if id(node) in fills:
                count_rewrite("cse/constant")
                return full_like_shape(fills[id(node)], node.shape, node.dtype)
            return None

        return rewrite(outputs, rule, order)


def _fill_key(t: Tensor, protected: set[int]) -> tuple[Any, ...] | None:
    """(value bits, dtype, shape) of a constant-filled tensor: an array constant or a
    broadcast scalar constant; None for anything else."""
    if id(t) in protected:
        return None
    if (t.op.name == "constant" and t.ndim) or t.op.name == "broadcast_to":
        v = const_value(t, protected)
    else:
        return None
    if v is None:
        return None
    return (np.asarray(v, dtype=t.dtype).tobytes(), t.dtype, t.shape)


def _work(order: Sequence[Tensor], protected: set[int]) -> tuple[bool, dict[int, Any]]:
    """Whether commutative twins exist, and the constant-filled tensors to write as
    ``broadcast_to(scalar)`` because an equal one exists (if there is neither,
    rewriting cannot create any)."""
    pairs: set[tuple[Any, ...]] = set()
    twins = False
    groups: dict[tuple[Any, ...], list[Tensor]] = {}
    for n in order:
        name = n.op.name
        if name in COMMUTATIVE:
            a, b = n.inputs
            if (name, n.attrs, id(b), id(a)) in pairs and a is not b:
                twins = True
            pairs.add((name, n.attrs, id(a), id(b)))
        elif name in ("constant", "broadcast_to"):
            key = _fill_key(n, protected)
            if key is not None:
                groups.setdefault(key, []).append(n)
    fills = {id(n): const_value(n) for group in groups.values() if len(group) > 1
             for n in group if not _canonical_fill(n)}
    return twins, fills


def _canonical_fill(t: Tensor) -> bool:
    return t.op.name == "broadcast_to" and t.inputs[0].op.name == "constant" and t.inputs[0].ndim == 0
