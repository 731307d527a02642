"""The op declaration and the registry every pass and backend reads.

An :class:`Op` holds everything symgrad knows about one operation: its shape and dtype
rule, its NumPy reference, its pullback (reverse-mode rule), optionally its pushforward
(forward-mode rule) and batching rule, and for elementwise ops a scalar SymPy form. The
rules build graph nodes, never numbers, so derived gradients can be printed, optimized,
differentiated again and emitted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from symgrad.errors import ShapeError, op_error
from symgrad.ir.shape import Dim, Shape, Size, shape_str

if TYPE_CHECKING:
    from symgrad.ir.tensor import Tensor

Check = tuple[str, Size, Size, str]  # (relation "==" or "<=", left, right, what)
Checks = tuple[Check, ...]


@dataclass(frozen=True)
class Info:
    """What a shape rule returns: the result's shape and dtype, and run-time checks.

    ``checks`` are equalities between sizes that cannot be decided while building (two
    different symbolic sizes meeting in a broadcast); the compiled function verifies them
    when it is called.
    """

    shape: Shape
    dtype: str
    checks: Checks = ()


Pullback = Callable[["Tensor", "Tensor"], Sequence["Tensor | None"]]
Pushforward = Callable[..., "Tensor | None"]


@dataclass(eq=False)
class Op:
    """One operation, declared once.

    Parameters
    ----------
    name : the op's name in text IR, generated code and error messages.
    kind : ``elementwise``, ``reduction``, ``shape``, ``index``, ``linalg``, ``nn``,
        ``source`` (placeholders, constants) or ``transform`` (grad, jvp: expanded by
        the autodiff pass).
    infer : ``(inputs, attrs) -> Info``; raises a ShapeError/DTypeError on bad operands.
    reference : the NumPy implementation, ``(*arrays, **attrs) -> ndarray``.
    pullback : ``(node, cotangent) -> cotangent per input`` (``None``: zero / not
        differentiable in that input).
    pushforward : ``(node, tangents) -> tangent of the output`` (forward mode).
    scalar : for elementwise ops, ``(*sympy symbols) -> sympy expression``.
    nondiff : a stated reason why the op's derivative is taken as zero.
    """

    name: str
    kind: str
    infer: Callable[[tuple[Tensor, ...], dict[str, Any]], Info]
    reference: Callable[..., Any] | None
    pullback: Pullback | None = None
    pushforward: Pushforward | None = None
    scalar: Callable[..., Any] | None = None
    nondiff: str | None = None
    doc: str = ""
    numpy_expr: str | None = None  # a template such as "np.tanh({0})" for readable source
    extra: dict[str, Any] = field(default_factory=dict)

    def __call__(self, *inputs: Tensor, **attrs: Any) -> Tensor:
        from symgrad.ir.tensor import Tensor

        return Tensor.make(self, tuple(inputs), tuple(sorted(attrs.items())))

    def __repr__(self) -> str:
        return f"<Op {self.name}>"


OPS: dict[str, Op] = {}


def register(op: Op) -> Op:
    if op.name in OPS:
        raise ValueError(f"op {op.name!r} is declared twice")
    OPS[op.name] = op
    return op


# -- helpers for shape rules ------------------------------------------------------------
def shapes_of(inputs: Sequence[Tensor]) -> str:
    return ", ".join(shape_str(t.shape) for t in inputs)


def broadcast_shapes(op: str, shapes: Sequence[Shape]) -> tuple[Shape, Checks]:
    """NumPy broadcasting with symbolic sizes.

    Two different symbolic sizes (or a symbolic size and a static size other than 1) are
    taken to be equal, and the equality is checked when the function is called: a
    symbolic size is never broadcast at run time.
    """
    if all(s == shapes[0] for s in shapes):
        return tuple(shapes[0]), ()
    ndim = max((len(s) for s in shapes), default=0)
    out: list[Size] = []
    checks: list[Check] = []
    for axis in range(ndim):
        sizes = [s[len(s) - ndim + axis] for s in shapes if len(s) - ndim + axis >= 0]
        result: Size = 1
        for size in sizes:
            if size == 1 or size == result:
                continue
            if result == 1:
                result = size
            elif isinstance(result, int) and isinstance(size, int):
                raise op_error(
                    ShapeError,
                    op,
                    f"cannot broadcast sizes {result} and {size} at axis {axis - ndim}",
                    ", ".join(shape_str(s) for s in shapes),
                )
            else:
                checks.append(("==", result, size, f"{op}: axis {axis - ndim}"))
                if isinstance(size, int) and isinstance(result, Dim):
                    result = size
        out.append(result)
    return tuple(out), tuple(checks)


def normalize_axes(op: str, axis: Any, ndim: int, shape: Shape | None = None) -> tuple[int, ...]:
    """Axes as sorted non-negative ints; ``None`` means all axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
            raise op_error(
                ShapeError, op, f"axis {a} is out of range for rank {ndim}",
                shape_str(shape) if shape is not None else None,
            )
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise op_error(ShapeError, op, f"repeated axis in {axis}",
                       shape_str(shape) if shape is not None else None)
    return tuple(sorted(out))


# -- the op x rule table -------------------------------------------------------------------
def table() -> str:
    """The op x rule matrix: which rules each registered op declares."""
    from symgrad.passes.batching import rule_for

    cols = ["kind", "reference", "pullback", "pushforward", "batch", "scalar"]
    rows = []
    for name in sorted(OPS):
        op = OPS[name]
        cells = [
            op.kind,
            "yes" if op.reference else "-",
            "yes" if op.pullback else ("zero" if op.nondiff else "-"),
            "yes" if op.pushforward else ("zero" if op.nondiff else "-"),
            "yes" if op.kind != "source" and rule_for(name) is not None else "-",
            "yes" if op.scalar else "-",
        ]
        rows.append([name, *cells])
    widths = [max(len(r[i]) for r in rows + [["op", *cols]]) for i in range(len(cols) + 1)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(["op", *cols], widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)
