"""Graph walks, the equation-per-line text form and the verifier."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from symgrad.errors import SymgradError
from symgrad.ir.shape import Dim, Size
from symgrad.ir.tensor import Tensor


class order_cache:
    """Within ``with order_cache():``, graph walks of the same outputs are computed once.

    Nodes are immutable, so the nodes a set of outputs reaches never change; a pipeline
    walks the same graph in several passes (and the pass manager counts nodes), so the
    compile driver opens one cache per compilation. Returned lists must not be mutated.
    """

    def __enter__(self) -> None:
        _caches.append({})

    def __exit__(self, *exc: object) -> None:
        _caches.pop()


_caches: list[dict[tuple[object, ...], tuple[tuple[Tensor, ...], list[Tensor]]]] = []


def _cached(kind: str, outputs: Iterable[Tensor], walk: Callable[[list[Tensor]], list[Tensor]]) -> list[Tensor]:
    outs = list(outputs)
    if not _caches:
        return walk(outs)
    cache = _caches[-1]
    key = (kind, *map(id, outs))
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = (tuple(outs), walk(outs))  # the tuple keeps the ids valid
    return hit[1]


def toposort(outputs: Iterable[Tensor]) -> list[Tensor]:
    """Every node the outputs depend on, inputs before users, in an order that depends
    only on the graph's structure (a depth-first post-order from the outputs, inputs
    left to right). Printers and code generators use it, so text and generated names
    never depend on what else the process built. Iterative, linear."""
    return _cached("structural", outputs, _toposort)


def _toposort(outputs: list[Tensor]) -> list[Tensor]:
    order: list[Tensor] = []
    done: set[int] = set()
    for root in outputs:
        if id(root) in done:
            continue
        stack = [root]
        while stack:
            node = stack[-1]
            if id(node) in done:
                stack.pop()
                continue
            pending = [c for c in node.inputs if id(c) not in done]
            if pending:
                stack.extend(reversed(pending))
            else:
                done.add(id(node))
                order.append(node)
                stack.pop()
    return order


def toposort_by_creation(outputs: Iterable[Tensor]) -> list[Tensor]:
    """Every node the outputs depend on, inputs before users, in creation order.

    A node is always created after its inputs, so creation order (``serial``) is a
    topological order: collect what is reachable, then sort. Faster than
    :func:`toposort`; passes use it where the order does not reach the user.
    """
    return _cached("creation", outputs, _by_creation)


def _by_creation(outputs: list[Tensor]) -> list[Tensor]:
    seen: dict[int, Tensor] = {}
    stack = [o for o in outputs]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen[id(node)] = node
        stack.extend(node.inputs)
    return sorted(seen.values(), key=_serial_of)


def _serial_of(node: Tensor) -> int:
    return node.serial


def placeholders(outputs: Iterable[Tensor]) -> list[Tensor]:
    """The placeholders the outputs depend on, in the order they were created."""
    found = [n for n in toposort(outputs) if n.op.name == "placeholder"]
    return sorted(found, key=lambda n: n.serial)


def users(order: Sequence[Tensor]) -> dict[int, list[Tensor]]:
    out: dict[int, list[Tensor]] = {id(n): [] for n in order}
    for n in order:
        for i in n.inputs:
            out[id(i)].append(n)
    return out


def _size_text(s: Size) -> str:
    return str(s)


def type_text(t: Tensor) -> str:
    return f"{t.dtype}[{', '.join(_size_text(s) for s in t.shape)}]"


def _value_text(value: object) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(_value_text(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value) if isinstance(value, str) else str(value)


def _attr_text(key: str, value: object) -> str:
    return f"{key}={_value_text(value)}"


def to_text(outputs: Sequence[Tensor]) -> str:
    """One equation per line: ``%3 = add(%1, %2) : float32[x.0, 3]``, then ``return``."""
    order = toposort(outputs)
    ids: dict[int, str] = {}
    lines = []
    for k, n in enumerate(order):
        ids[id(n)] = f"%{k}"
        attrs = [(a, v) for a, v in n.attrs if not (n.op.name == "placeholder" and a in ("shape", "dtype"))]
        attr_s = "[" + ", ".join(_attr_text(a, v) for a, v in attrs) + "]" if attrs else ""
        args = ", ".join(ids[id(i)] for i in n.inputs)
        lines.append(f"%{k} = {n.op.name}{attr_s}({args}) : {type_text(n)}")
    lines.append("return " + ", ".join(ids[id(o)] for o in outputs))
    return "\n".join(lines) + "\n"


class VerifyError(SymgradError, AssertionError):
    """The graph's recorded types disagree with its ops' shape rules."""


def verify(outputs: Sequence[Tensor]) -> None:
    """Re-run every node's shape/dtype rule and compare with what the node recorded."""
    for n in toposort(outputs):
        info = n.op.infer(n.inputs, dict(n.attrs))
        if info.shape != n.shape or info.dtype != n.dtype:
            raise VerifyError(
                f"{n.op.name}: recorded {n.dtype}{n.shape} but rule gives {info.dtype}{info.shape}"
                f" (built at {n.loc})"
            )


def symbols(outputs: Iterable[Tensor]) -> set[str]:
    out: set[str] = set()
    for n in toposort(outputs):
        for s in n.shape:
            if isinstance(s, Dim):
                out |= s.symbols
    return out
