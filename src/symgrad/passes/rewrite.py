"""Rebuilding a graph bottom-up: the one loop every rewriting pass shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from symgrad.ir.graph import toposort_by_creation
from symgrad.ir.tensor import Tensor, located

Rule = Callable[[Tensor, tuple[Tensor, ...]], Tensor | None]


def rebuild(node: Tensor, inputs: tuple[Tensor, ...]) -> Tensor:
    """``node`` with new inputs (the same node when nothing changed)."""
    if all(a is b for a, b in zip(inputs, node.inputs)):
        return node
    same_types = all(a.shape == b.shape and a.dtype == b.dtype for a, b in zip(inputs, node.inputs))
    return Tensor.make(node.op, inputs, node.attrs, like=node if same_types else None)


def rewrite(outputs: Sequence[Tensor], rule: Rule, order: Sequence[Tensor] | None = None) -> list[Tensor]:
    """Visit nodes inputs-first; ``rule(node, new_inputs)`` returns a replacement or None.

    The replacement is taken as final (it is not visited again), so a rule that wants a
    fixed point builds its result from already rewritten parts. ``order`` is
    ``toposort_by_creation(outputs)`` when the caller already has it.
    """
    new: dict[int, Tensor] = {}
    for node in toposort_by_creation(outputs) if order is None else order:
        inputs = tuple(new[id(i)] for i in node.inputs)
        with located(node.loc):
            out = rule(node, inputs)
            new[id(node)] = out if out is not None else rebuild(node, inputs)
    return [new[id(o)] for o in outputs]
