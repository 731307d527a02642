"""Dead-code elimination.

Nodes are immutable and a graph is what its outputs reach, so unreachable nodes are
never emitted; this pass removes the remaining dead weight: identity reshapes, casts
and broadcasts that survive other rewrites.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from symgrad.ir.tensor import Tensor
from symgrad.passes.manager import count_rewrite
from symgrad.passes.rewrite import rewrite


def _identity(node: Tensor, inputs: tuple[Tensor, ...]) -> Tensor | None:
    name = node.op.name
    if name in ("reshape", "broadcast_to", "cast") and inputs:
        x = inputs[0]
        if x.shape == node.shape and x.dtype == node.dtype:
            count_rewrite(f"dce/identity-{name}")
            return x
    if name == "transpose" and tuple(node.attr("perm")) == tuple(range(node.ndim)):
        count_rewrite("dce/identity-transpose")
        return inputs[0]
    return None


@dataclass(frozen=True)
class DCE:
    """Drop identity reshapes/casts/broadcasts/transposes (unreachable nodes vanish anyway)."""

    name: str = "dce"

    def run(self, outputs: Sequence[Tensor]) -> list[Tensor]:
        return rewrite(outputs, _identity)
