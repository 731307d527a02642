"""Constant folding: evaluate ops whose inputs are all constants.

The op's NumPy reference computes the value, so folding gives what the NumPy backend
would. A node is left alone when its value would be large (more than ``max_elements``),
when it would materialize a broadcast (``broadcast_to``, or a result with more elements
than its inputs together: the broadcast form is cheaper to keep), or when evaluating it
raises (the error then happens at call time, where it names the inputs).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from symgrad.ir.graph import toposort_by_creation
from symgrad.ir.shape import Shape, is_static
from symgrad.ir.tensor import Tensor, constant
from symgrad.passes.manager import count_rewrite
from symgrad.passes.patterns import protected_ids
from symgrad.passes.rewrite import rewrite

_SKIP_KINDS = frozenset({"source", "transform"})


def _count(shape: Shape) -> int:
    out = 1
    for s in shape:
        out *= s if isinstance(s, int) else 0
    return out


def evaluate(node: Tensor, inputs: tuple[Tensor, ...], max_elements: int) -> np.ndarray | None:
    """The value of ``node`` over constant ``inputs``, or None if it should not be folded."""
    op = node.op
    if op.kind in _SKIP_KINDS or op.reference is None or op.name == "broadcast_to":
        return None
    if not is_static(node.shape):
        return None
    size = _count(node.shape)
    total = sum(_count(i.shape) for i in inputs)
    if size > max_elements or (size > 1 and size > total):
        return None
    arrays = [i.attr("value").array for i in inputs]
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = np.asarray(op.reference(*arrays, **dict(node.attrs)))
    except Exception:  # evaluated again at call time, where the error names the inputs
        return None
    if value.shape != tuple(node.shape):
        return None
    return value.astype(node.dtype, copy=False)


@dataclass(frozen=True)
class Fold:
    """Replace ops over constants by their value (small results only)."""

    name: str = "fold"
    max_elements: int = 4096

    def run(self, outputs: Sequence[Tensor]) -> list[Tensor]:
        order = toposort_by_creation(outputs)
        if not any(n.inputs and n.op.kind not in _SKIP_KINDS
                   and all(i.op.name == "constant" for i in n.inputs) for n in order):
            return list(outputs)
        protected: set[int] | None = None

        def rule(node: Tensor, inputs: tuple[Tensor, ...]) -> Tensor | None:
            nonlocal protected
            if not inputs or any(i.op.name != "constant" for i in inputs):
                return None
            if protected is None:
                protected = protected_ids(order)
            if id(node) in protected or any(id(i) in protected for i in inputs):
                return None  # a derivative is asked with respect to it: keep it
            value = evaluate(node, inputs, self.max_elements)
            if value is None:
                return None
            count_rewrite(f"fold/{node.op.name}")
            return constant(value)

        return rewrite(outputs, rule, order)
