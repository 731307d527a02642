"""The lowered kernel form: buffers, strided accesses, scalar bodies, kernels.

This is what every native code generator reads (LLVM now; CUDA and C emission use the
same objects). Nothing here knows about a target:

* a :class:`Buffer` is an array of the program (input, output, temporary, constant, or a
  reduction's scratch accumulator) with a dtype and a possibly symbolic shape;
* an :class:`Access` reads or writes a buffer at ``offset + sum(coeffs[a] * i[a])``, the
  ``i[a]`` being the kernel's loop indices: broadcasting is a zero coefficient,
  transposes and slices are other coefficients, so views never copy;
* a :class:`LoopKernel` is an iteration domain with run-time sizes, the axes it reduces
  over, and a scalar body (a small SSA list over op names) evaluated at every point, then
  after the reduction at every output point;
* a :class:`LibCall` is an op that is not a loop nest over a scalar body (matrix
  products, gathers and scatters) with its operands as strided views;
* a :class:`LoweredProgram` lists the kernels in execution order, the buffers, and the
  buffer plan that lets temporaries share memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from symgrad.ir import shape as S
from symgrad.ir.shape import Dim, Shape, Size, shape_str
from symgrad.ir.tensor import Tensor

ITEMSIZE = {"float32": 4, "float64": 8, "int32": 4, "int64": 8, "bool": 1}


def contiguous_strides(shape: Shape) -> tuple[Size, ...]:
    """C-order element strides of ``shape``."""
    strides: list[Size] = []
    acc: Size = 1
    for s in reversed(shape):
        strides.append(acc)
        acc = S.mul(acc, s)
    return tuple(reversed(strides))


def size_text(s: Size) -> str:
    return str(s)


@dataclass(eq=False)
class Buffer:
    """An array the program reads or writes.

    ``kind`` is ``input``, ``output``, ``temp``, ``const`` or ``scratch``; ``index`` is
    the position among inputs or outputs (or the constant's number). ``slot`` is filled by
    the buffer plan for temporaries and scratch accumulators: buffers with the same slot
    share memory.
    """

    name: str
    dtype: str
    shape: Shape
    kind: str
    index: int = 0
    slot: int = -1
    value: np.ndarray | None = None

    @property
    def size(self) -> Size:
        return S.prod(self.shape)

    @property
    def nbytes(self) -> Size:
        return S.mul(self.size, ITEMSIZE[self.dtype])

    def __repr__(self) -> str:
        return f"<Buffer {self.name} {self.kind} {self.dtype}{shape_str(self.shape)}>"


@dataclass(frozen=True, eq=False)
class Access:
    """``buffer[offset + sum(coeffs[a] * i[a])]`` over a kernel's domain axes."""

    buffer: Buffer
    offset: Size
    coeffs: tuple[Size, ...]

    def key(self) -> tuple[int, Size, tuple[Size, ...]]:
        return (id(self.buffer), self.offset, self.coeffs)

    def text(self, names: list[str] | None = None) -> str:
        idx = names or [f"i{a}" for a in range(len(self.coeffs))]
        terms = []
        for c, i in zip(self.coeffs, idx):
            if c == 0:
                continue
            terms.append(i if c == 1 else f"{c}*{i}" if isinstance(c, int) else f"({c})*{i}")
        if self.offset != 0:
            terms.append(str(self.offset) if isinstance(self.offset, int) else f"({self.offset})")
        return f"{self.buffer.name}[{' + '.join(terms) if terms else '0'}]"


@dataclass(frozen=True)
class Instr:
    """One SSA value of a scalar body.

    ``op`` is a graph op name (``exp``, ``add``, ``cast``, ``where``...) or one of
    ``load`` (``attr`` = operand number), ``const`` (``attr`` = Python value), ``size``
    (``attr`` = a size expression), ``index`` (``attr`` = ``(offset, coeffs)``: the int64
    value ``offset + sum(coeffs[a] * i[a])``), ``acc`` (``attr`` = reduction number, only
    after the reduction). ``arange(index)`` is the index itself; ``random_uniform(seed,
    counter, index)`` hashes the element's row-major position (see the op's docstring). ``phase`` is ``point`` (every domain point) or ``out`` (every output point,
    after the reduction).
    """

    op: str
    args: tuple[int, ...]
    dtype: str
    attr: Any = None
    phase: str = "point"


@dataclass(frozen=True)
class Store:
    access: Access
    value: int
    phase: str = "point"


@dataclass(frozen=True)
class Reduction:
    """``op`` (sum, max, min, prod, argmax, argmin) of value ``value`` over the reduced
    axes, accumulated in ``acc_dtype``; ``dtype`` is the result's."""

    op: str
    value: int
    dtype: str
    acc_dtype: str


@dataclass(eq=False)
class LoopKernel:
    """A loop nest over ``domain`` evaluating a scalar body.

    ``order`` lists the domain axes from outermost to innermost loop. ``strategy``:
    ``map`` (no reduction), ``inner`` (the reduced axes are the innermost loops; each
    output point keeps its accumulators in registers), ``outer`` (loops in memory order,
    accumulating into a scratch buffer over the output domain, then the epilogue over the
    output domain), ``full`` (every axis is reduced: a run over part of the outermost axis
    can leave partial accumulators for a final combine, which is how it is split across
    threads).
    """

    name: str
    domain: tuple[Size, ...]
    reduce_axes: tuple[int, ...]
    order: tuple[int, ...]
    strategy: str
    operands: list[Access]
    instrs: list[Instr]
    stores: list[Store]
    reductions: list[Reduction]
    scratch: list[Buffer] = field(default_factory=list)
    nodes: list[Tensor] = field(default_factory=list)

    @property
    def out_axes(self) -> tuple[int, ...]:
        return tuple(a for a in range(len(self.domain)) if a not in self.reduce_axes)

    def reads(self) -> list[Buffer]:
        return [acc.buffer for acc in self.operands]

    def writes(self) -> list[Buffer]:
        return [st.access.buffer for st in self.stores]

    def text(self) -> str:
        dom = ", ".join(f"i{a} < {size_text(s)}" for a, s in enumerate(self.domain))
        head = f"kernel {self.name} [{dom}]"
        if self.reduce_axes:
            head += f" reduce ({', '.join(f'i{a}' for a in self.reduce_axes)})"
        head += f" {self.strategy}"
        if self.order != tuple(range(len(self.domain))):
            head += f" order ({', '.join(f'i{a}' for a in self.order)})"
        lines = [head]
        for k, ins in enumerate(self.instrs):
            lines.append(f"  {'' if ins.phase == 'point' else '| '}%{k} = {self._instr_text(ins)}")
            for st in self.stores:
                if st.value == k and st.phase == ins.phase and ins.phase == "point":
                    lines.append(f"  {st.access.text()} = %{k}")
            for j, red in enumerate(self.reductions):
                if red.value == k:
                    lines.append(f"  acc{j} = {red.op}(%{k}) : {red.acc_dtype}")
        for st in self.stores:
            if st.phase == "out":
                lines.append(f"  | {st.access.text()} = %{st.value}")
        return "\n".join(lines)

    def _instr_text(self, ins: Instr) -> str:
        if ins.op == "load":
            return f"load {self.operands[ins.attr].text()} : {ins.dtype}"
        if ins.op == "const":
            return f"const {ins.attr!r} : {ins.dtype}"
        if ins.op == "size":
            return f"size {ins.attr} : {ins.dtype}"
        if ins.op == "acc":
            return f"acc{ins.attr} : {ins.dtype}"
        if ins.op == "index":
            off, coeffs = ins.attr
            return f"index {Access(Buffer('', 'int64', (), ''), off, coeffs).text()} : int64"
        args = ", ".join(f"%{a}" for a in ins.args)
        return f"{ins.op}({args}) : {ins.dtype}"


@dataclass(eq=False)
class LibCall:
    """An op run by a library routine or a dedicated loop: ``matmul``, ``take``,
    ``take_grad``, ``one_hot``. Operands are strided views over their own shapes
    (``Access.coeffs`` has one entry per operand axis); the output is contiguous."""

    name: str
    op: str
    inputs: list[Access]
    input_shapes: list[Shape]
    output: Buffer
    attrs: dict[str, Any]
    nodes: list[Tensor] = field(default_factory=list)

    def reads(self) -> list[Buffer]:
        return [acc.buffer for acc in self.inputs]

    def writes(self) -> list[Buffer]:
        return [self.output]

    def text(self) -> str:
        args = []
        for acc, shape in zip(self.inputs, self.input_shapes):
            strides = ", ".join(size_text(c) for c in acc.coeffs)
            off = f" +{acc.offset}" if acc.offset != 0 else ""
            args.append(f"{acc.buffer.name}{shape_str(shape)} strides ({strides}){off}")
        attrs = "".join(f", {k}={v}" for k, v in sorted(self.attrs.items()))
        return (f"call {self.name} = {self.op}({', '.join(args)}{attrs}) -> "
                f"{self.output.name}: {self.output.dtype}{shape_str(self.output.shape)}")


Kernel = LoopKernel | LibCall


@dataclass
class BufferPlan:
    """Which temporaries share memory: ``slots[k]`` lists the buffers in slot ``k``."""

    slots: list[list[Buffer]]
    inplace: list[tuple[str, str]] = field(default_factory=list)

    def text(self) -> str:
        lines = []
        for k, members in enumerate(self.slots):
            sizes = ", ".join(f"{b.name} ({b.dtype}{shape_str(b.shape)})" for b in members)
            lines.append(f"slot {k}: {sizes}")
        for a, b in self.inplace:
            lines.append(f"in place: {b} overwrites {a}")
        return "\n".join(lines)


@dataclass
class LoweredProgram:
    """Kernels in execution order plus every buffer they touch."""

    inputs: list[Buffer]
    outputs: list[Buffer]  # one per program output; the same buffer may appear twice
    consts: list[Buffer]
    temps: list[Buffer]
    kernels: list[Kernel]
    symbols: list[str]  # size symbols in dims order
    size_sources: dict[str, tuple[int, int]]
    plan: BufferPlan
    _text: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def scratch(self) -> list[Buffer]:
        return [b for k in self.kernels if isinstance(k, LoopKernel) for b in k.scratch]

    def text(self) -> str:
        """Readable and complete: it is also what the compile cache hashes. Made once (the
        backends ask for it several times): a lowered program is not changed after
        lowering."""
        if self._text is None:
            self._text = self._make_text()
        return self._text

    def _make_text(self) -> str:
        lines = []
        if self.symbols:
            lines.append("sizes " + ", ".join(self.symbols))
        for b in self.inputs:
            lines.append(f"input {b.name}: {b.dtype}{shape_str(b.shape)}")
        for b in self.consts:
            assert b.value is not None
            lines.append(f"const {b.name}: {b.dtype}{shape_str(b.shape)} #{_digest(b.value)}")
        for b in self.temps + self.scratch:
            lines.append(f"{b.kind} {b.name}: {b.dtype}{shape_str(b.shape)} slot {b.slot}")
        for k in self.kernels:
            lines.append(k.text())
        lines.append("return " + ", ".join(b.name for b in self.outputs))
        outs = {id(b): b for b in self.outputs}
        for b in outs.values():
            lines.append(f"output {b.name}: {b.dtype}{shape_str(b.shape)}")
        plan = self.plan.text()
        if plan:
            lines.append(plan)
        return "\n".join(lines) + "\n"


def _digest(arr: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha1(arr.dtype.str.encode())
    h.update(repr(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:12]


__all__ = [
    "ITEMSIZE",
    "Access",
    "Buffer",
    "BufferPlan",
    "Dim",
    "Instr",
    "Kernel",
    "LibCall",
    "LoopKernel",
    "LoweredProgram",
    "Reduction",
    "Store",
    "contiguous_strides",
]
