"""LLVM IR for a lowered program, built with llvmlite's IR builder.

Every kernel becomes two functions: ``NAME(frame, dims, lo, hi, partial) -> i32``, which
reads the kernel's buffer pointers from the frame (one pointer per buffer slot, see
:class:`FrameLayout`) and calls ``NAME.body`` with each distinct slot as a ``noalias``
pointer argument, so the loops vectorize without run-time alias checks. ``lo``/``hi``
restrict the outermost loop, which is how a kernel is split across threads. A kernel
that reduces over every axis also has ``NAME.finish(frame, dims, partial, nparts)``: runs
over parts of the domain leave their accumulators in ``partial``, the finish combines them
and runs the epilogue. ``program(frame, dims) -> i32`` runs every kernel in order on one
thread. A nonzero result is ``(kernel number + 1) << 4 | error`` (error 1: an index out
of range).

Kernels with the same body up to which buffers they touch (repeated layers, the steps of
an unrolled loop) share one body function; each keeps its own wrapper. A large program is
generated as several modules (:func:`module_parts`), one at a time, so that LLVM compiles
the first while the next are generated; ``program`` in the first module calls the kernels
of the others through a table of addresses that the loader fills.

Per-op emission is the table :data:`OPS` keyed by op name.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from llvmlite import ir

from symgrad.backends.llvm import blas, jit, vecmath
from symgrad.backends.llvm.jit import LINK_NAMES, LINK_TABLE
from symgrad.backends.llvm.mathlib import (
    INLINE_MATH_LIMIT,
    MATH_FUNCTIONS,
    MathMode,
    emit_math,
    kernel_math,
    math_mode,
    shared_emit_math,
)
from symgrad.backends.lower import (
    Buffer,
    LibCall,
    LoopKernel,
    LoweredProgram,
    blas_layout,
    contiguous_strides,
)
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.shape import FloorDiv, Size

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()
PTR = ir.PointerType()
VOID = ir.VoidType()

REG = {"float32": F32, "float64": F64, "int32": I32, "int64": I64, "bool": I1}
MEM = {"float32": F32, "float64": F64, "int32": I32, "int64": I64, "bool": I8}

ERR_INDEX = 1
ERR_BOUNDS = 2
ERR_LAYOUT = -1

# Byte offsets in CPython tuples and NumPy arrays (PyArrayObject_fields): stable ABI, and
# checked once per process by the run time before the object entry point is used.
OBJECT_LAYOUT = {"tuple_items": 24, "data": 16, "flags": 64, "c_contiguous": 0x1,
                 "aligned": 0x100}
SUM_BLOCK = 1024
# kernels with at least this many instructions get the loop hints of Codegen._vector_hints
LARGE_BODY = 128
# interleave count of loops that call the vector math, by the kernel's widest float type
# (see Codegen._math_hints), for programs with at most MATH_INTERLEAVE_CALLS math calls (in
# distinct kernel bodies); float32 bodies of more than MATH_INTERLEAVE_BIG_COST (the cost of
# kernel_info) take MATH_INTERLEAVE_BIG instead
MATH_INTERLEAVE = {"float32": 8, "float64": 4}
MATH_INTERLEAVE_CALLS = 64
MATH_INTERLEAVE_BIG_COST = 64
MATH_INTERLEAVE_BIG = 4


def _native_width(dtype: str) -> int:
    return _width_for(dtype, jit.target_cpu().isa)


@functools.cache
def _width_for(dtype: str, isa: str) -> int:
    return vecmath.preferred_width(dtype, isa)


class _LoopID(ir.values.MDValue):
    """``distinct !{!self, properties...}``: the self-referential node LLVM requires as
    the identity of a loop's metadata."""

    def __init__(self, module: ir.Module, props: list[ir.values.MDValue]) -> None:
        super().__init__(module, props, name=str(len(module.metadata)))

    def descr(self, buf: list[str]) -> None:
        refs = [self.get_reference()] + [p.get_reference() for p in self.operands]
        buf += (f"distinct !{{ {', '.join(refs)} }}", "\n")


@dataclass
class FrameLayout:
    """Frame slot of every buffer: inputs, distinct outputs, constants, workspace slots."""

    n_inputs: int
    n_outputs: int
    n_consts: int
    n_slots: int

    @staticmethod
    def of(lp: LoweredProgram) -> FrameLayout:
        outs = {b.index for b in lp.outputs}
        n_slots = len(lp.plan.slots)
        return FrameLayout(len(lp.inputs), len(outs), len(lp.consts), n_slots)

    @property
    def size(self) -> int:
        return self.n_inputs + self.n_outputs + self.n_consts + self.n_slots

    def slot(self, b: Buffer) -> int:
        if b.kind == "input":
            return b.index
        if b.kind == "output":
            return self.n_inputs + b.index
        if b.kind == "const":
            return self.n_inputs + self.n_outputs + b.index
        assert b.slot >= 0, f"buffer {b.name} has no slot"
        return self.n_inputs + self.n_outputs + self.n_consts + b.slot


@dataclass
class KernelInfo:
    """What the run time needs to call one kernel."""

    name: str
    split: str  # "none", "range" (split the outer loop) or "partial" (full reduction)
    extent: Size  # size of the outer loop (1 for scalars, 0 for library calls)
    n_reductions: int = 0
    cost: int = 1  # rough work per point, to decide on threads


@dataclass
class ModuleInfo:
    layout: FrameLayout
    kernels: list[KernelInfo] = field(default_factory=list)
    entry: str = "program"


def kernel_info(k: LoopKernel | LibCall) -> KernelInfo:
    if isinstance(k, LibCall):
        return KernelInfo(k.name, "none", 0)
    ndom = len(k.domain)
    red = set(k.reduce_axes)
    if k.strategy == "full":
        split = "partial"
    elif ndom and 0 not in red:
        split = "range"
    else:
        split = "none"
    cost = sum(1 if ins.op in ("load", "const", "size") else 20 if ins.op in MATH_FUNCTIONS
               else 2 for ins in k.instrs)
    return KernelInfo(k.name, split, k.domain[0] if ndom else 1, len(k.reductions), max(cost, 1))


def module_info(lp: LoweredProgram) -> ModuleInfo:
    """How to call the compiled program's functions (known without generating code)."""
    return ModuleInfo(FrameLayout.of(lp), [kernel_info(k) for k in lp.kernels])


def _canon(x: Any) -> Any:
    """A hashable, exact stand-in for an attribute: Python scalars with their type, size
    expressions as text, tuples element by element."""
    if isinstance(x, tuple):
        return tuple(_canon(v) for v in x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return (type(x).__name__, repr(x))
    return str(x)


def _slots(layout: FrameLayout, bufs: Sequence[Buffer]) -> list[int]:
    """The frame slots of ``bufs`` in order of first use (buffers sharing a slot share
    one pointer): the pointer arguments of a kernel's body function."""
    return list(dict.fromkeys(layout.slot(b) for b in bufs))


def _body_key(layout: FrameLayout, k: LoopKernel, check_bounds: bool) -> Any:
    """Everything a loop kernel's body function depends on, with buffers replaced by
    their argument numbers (in the order of :func:`_slots`): kernels with equal keys
    can share one body function and differ only in the pointers they pass it."""
    arg: dict[int, int] = {}

    def buf(b: Buffer) -> Any:
        # a bounds-checking body also compares against each buffer's size
        return (arg.setdefault(layout.slot(b), len(arg)), b.dtype,
                _canon(tuple(b.shape)) if check_bounds else None)

    def access(a: Any) -> Any:
        return (buf(a.buffer), _canon(a.offset), _canon(tuple(a.coeffs)))

    operands = tuple(access(a) for a in k.operands)
    stores = tuple((access(st.access), st.value, st.phase) for st in k.stores)
    scratch = tuple((buf(b), _canon(tuple(b.shape))) for b in k.scratch)
    return (_canon(tuple(k.domain)), k.reduce_axes, k.order, k.strategy, operands, stores,
            scratch, tuple((i.op, i.args, i.dtype, _canon(i.attr), i.phase) for i in k.instrs),
            tuple((r.op, r.value, r.dtype, r.acc_dtype) for r in k.reductions))


def body_classes(lp: LoweredProgram, check_bounds: bool = False) -> list[int]:
    """For each kernel, the first kernel with the same body (itself when it has none):
    repeated structure (the layers of a deep network, the steps of an unrolled loop)
    gives identical kernel bodies on different buffers, and each distinct body is
    generated and compiled once."""
    layout = FrameLayout.of(lp)
    first: dict[Any, int] = {}
    return [first.setdefault(_body_key(layout, k, check_bounds), n)
            if isinstance(k, LoopKernel) else n for n, k in enumerate(lp.kernels)]


def _weights(lp: LoweredProgram, classes: list[int]) -> list[int]:
    """Rough generation and compile cost of each kernel: a kernel sharing an earlier
    kernel's body costs only its small wrapper."""
    return [len(k.instrs) + 10 if isinstance(k, LoopKernel) and classes[n] == n else 10
            for n, k in enumerate(lp.kernels)]


def split_kernels(lp: LoweredProgram, parts: int, classes: list[int] | None = None) -> list[int]:
    """Assign kernels to ``parts`` modules of similar size, each module a run of
    consecutive kernels (so that modules can be compiled while later ones are
    generated), except that a kernel sharing an earlier kernel's body goes with it."""
    if parts <= 1:
        return [0] * len(lp.kernels)
    classes = classes if classes is not None else body_classes(lp)
    weight = _weights(lp, classes)
    total = sum(weight)
    out: list[int] = []
    done = 0
    for n, w in enumerate(weight):
        # the module the middle of this kernel falls into
        out.append(out[classes[n]] if classes[n] != n else
                   min(parts - 1, (2 * done + w) * parts // (2 * total)))
        done += w
    return out


# A program is generated and compiled as several modules, on parallel threads, when its
# kernels weigh (instructions + 10 per kernel) at least SPLIT_WEIGHT; each module then
# weighs about PART_WEIGHT, and there are at most MAX_PARTS.
SPLIT_WEIGHT = 1500
PART_WEIGHT = 700
MAX_PARTS = 16


def module_parts(lp: LoweredProgram, threads: int) -> int:
    """How many modules to compile the program as: one for small programs (one object,
    direct calls); large ones in parts of about :data:`PART_WEIGHT`, so that LLVM compiles
    the first modules on worker threads while the next are generated (this pays even on
    one thread: the generation is Python and LLVM runs without the GIL)."""
    total = sum(_weights(lp, body_classes(lp)))
    if total < SPLIT_WEIGHT:
        return 1
    return max(2, min(MAX_PARTS, len(lp.kernels), total // PART_WEIGHT))


def _const(dtype: str, value: Any) -> ir.Constant:
    t = REG[dtype]
    if dtype in FLOATS:
        return ir.Constant(t, float(value))
    if dtype == "bool":
        return ir.Constant(t, int(bool(value)))
    return ir.Constant(t, int(value))


def _identity(op: str, dtype: str) -> ir.Constant:
    if op in ("sum",):
        return _const(dtype, 0)
    if op == "prod":
        return _const(dtype, 1)
    big = {"int32": 2**31 - 1, "int64": 2**63 - 1}
    if op in ("max", "argmax"):
        if dtype in FLOATS:
            return _const(dtype, float("-inf"))
        return _const(dtype, False) if dtype == "bool" else _const(dtype, -big[dtype] - 1)
    if op in ("min", "argmin"):
        if dtype in FLOATS:
            return _const(dtype, float("inf"))
        return _const(dtype, True) if dtype == "bool" else _const(dtype, big[dtype])
    raise KeyError(op)


def convert(b: ir.IRBuilder, v: ir.Value, src: str, dst: str) -> ir.Value:
    """NumPy's ``astype`` between the five dtypes (float to int saturates, NaN gives 0)."""
    if src == dst:
        return v
    t = REG[dst]
    if dst == "bool":
        if src in FLOATS:
            return b.fcmp_unordered("!=", v, ir.Constant(v.type, 0.0))
        return b.icmp_unsigned("!=", v, ir.Constant(v.type, 0))
    if src == "bool":
        return b.uitofp(v, t) if dst in FLOATS else b.zext(v, t)
    if src in FLOATS and dst in FLOATS:
        return b.fpext(v, t) if dst == "float64" else b.fptrunc(v, t)
    if src in FLOATS:
        name = f"llvm.fptosi.sat.{_suffix(t)}.{_suffix(v.type)}"
        fn = b.module.globals.get(name)
        if fn is None:
            fn = ir.Function(b.module, ir.FunctionType(t, [v.type]), name)
        return b.call(fn, [v])
    if dst in FLOATS:
        return b.sitofp(v, t)
    return b.sext(v, t) if t.width > v.type.width else b.trunc(v, t)


def _suffix(t: ir.Type) -> str:
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{_suffix(t.element)}"
    if isinstance(t, ir.FloatType):
        return "f32"
    if isinstance(t, ir.DoubleType):
        return "f64"
    return f"i{t.width}"


def _intr(b: ir.IRBuilder, name: str, args: Sequence[ir.Value]) -> ir.Value:
    """Call the overloaded intrinsic ``name`` whose operands and result share one type."""
    t = args[0].type
    full = f"{name}.{_suffix(t)}"
    fn = b.module.globals.get(full)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(t, [a.type for a in args]), full)
    return b.call(fn, list(args))


# -- the op table: (builder, argument values, argument dtypes, result dtype) -> value ----------
OpEmitter = Callable[[ir.IRBuilder, list[ir.Value], list[str], str], ir.Value]


def _float_or_int(f: Callable[..., ir.Value], i: Callable[..., ir.Value]) -> OpEmitter:
    def emit(b: ir.IRBuilder, a: list[ir.Value], dt: list[str], out: str) -> ir.Value:
        return f(b, *a) if dt[0] in FLOATS else i(b, *a)

    return emit


def _is_wide(k: LoopKernel) -> bool:
    """Whether the kernel computes anything in float64."""
    return any(ins.dtype == "float64" for ins in k.instrs)


def _emit_math(b: ir.IRBuilder, name: str, a: list[ir.Value]) -> ir.Value:
    # a kernel with many math calls calls shared copies (its MathMode, set in _loop_kernel)
    return (shared_emit_math if math_mode(b.module).shared else emit_math)(b, name, a)


def _math(name: str) -> OpEmitter:
    def emit(b: ir.IRBuilder, a: list[ir.Value], dt: list[str], out: str) -> ir.Value:
        return _emit_math(b, name, a)

    return emit


def _sign(b: ir.IRBuilder, a: list[ir.Value], dt: list[str], out: str) -> ir.Value:
    (x,) = a
    if dt[0] in FLOATS:
        zero = ir.Constant(x.type, 0.0)
        neg = b.select(b.fcmp_ordered("<", x, zero), ir.Constant(x.type, -1.0), x)
        return b.select(b.fcmp_ordered(">", x, zero), ir.Constant(x.type, 1.0), neg)
    zero = ir.Constant(x.type, 0)
    return b.sub(b.zext(b.icmp_signed(">", x, zero), x.type), b.zext(b.icmp_signed("<", x, zero), x.type))


def _ipow(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """Integer power by squaring; a negative exponent gives 0 unless the base is 1 or -1."""
    module = b.module
    name = f"symgrad.ipow.i{x.type.width}"
    fn = module.globals.get(name)
    if fn is None:
        t = x.type
        fn = ir.Function(module, ir.FunctionType(t, [t, t]), name)
        fn.linkage = "internal"
        base, exp = fn.args
        fb = ir.IRBuilder(fn.append_basic_block("entry"))
        neg = fn.append_basic_block("neg")
        loop = fn.append_basic_block("loop")
        done = fn.append_basic_block("done")
        one = ir.Constant(t, 1)
        zero = ir.Constant(t, 0)
        fb.cbranch(fb.icmp_signed("<", exp, zero), neg, loop)
        fb.position_at_end(neg)
        is_one = fb.icmp_signed("==", base, one)
        is_m1 = fb.icmp_signed("==", base, ir.Constant(t, -1))
        odd = fb.icmp_signed("!=", fb.and_(exp, one), zero)
        m1 = fb.select(odd, ir.Constant(t, -1), one)
        fb.ret(fb.select(is_one, one, fb.select(is_m1, m1, zero)))
        fb.position_at_end(loop)
        entry = fn.blocks[0]
        r = fb.phi(t)
        bb = fb.phi(t)
        e = fb.phi(t)
        r.add_incoming(one, entry)
        bb.add_incoming(base, entry)
        e.add_incoming(exp, entry)
        odd2 = fb.icmp_signed("!=", fb.and_(e, one), zero)
        r2 = fb.select(odd2, fb.mul(r, bb), r)
        e2 = fb.ashr(e, one)
        b2 = fb.mul(bb, bb)
        r.add_incoming(r2, loop)
        bb.add_incoming(b2, loop)
        e.add_incoming(e2, loop)
        fb.cbranch(fb.icmp_signed(">", e, zero), loop, done)
        fb.position_at_end(done)
        res = fb.phi(t)
        res.add_incoming(r, loop)
        fb.ret(res)
    return b.call(fn, [x, y])


def _cmp(fop: str, iop: str, uop: str) -> OpEmitter:
    def emit(b: ir.IRBuilder, a: list[ir.Value], dt: list[str], out: str) -> ir.Value:
        x, y = a
        if dt[0] in FLOATS:
            if fop == "!=":
                return b.fcmp_unordered("!=", x, y)
            return b.fcmp_ordered(fop, x, y)
        if dt[0] == "bool":
            return b.icmp_unsigned(uop, x, y)
        return b.icmp_signed(iop, x, y)

    return emit


def _random_uniform(b: ir.IRBuilder, a: list[ir.Value], dt: list[str], out: str) -> ir.Value:
    """The counter-based hash of ``symgrad.ops.random_ops`` (splitmix64, wrapping)."""
    seed, counter, index = a

    def word(v: int) -> ir.Constant:  # an unsigned 64-bit constant as LLVM's signed i64
        return ir.Constant(I64, v - (1 << 64) if v >= 1 << 63 else v)

    golden = word(0x9E3779B97F4A7C15)

    def mix(z: ir.Value) -> ir.Value:
        z = b.xor(z, b.lshr(z, ir.Constant(I64, 30)))
        z = b.mul(z, word(0xBF58476D1CE4E5B9))
        z = b.xor(z, b.lshr(z, ir.Constant(I64, 27)))
        z = b.mul(z, word(0x94D049BB133111EB))
        return b.xor(z, b.lshr(z, ir.Constant(I64, 31)))

    key = mix(b.xor(mix(seed), b.mul(counter, golden)))
    bits = mix(b.add(key, b.mul(b.add(index, ir.Constant(I64, 1)), golden)))
    if out == "float32":
        return b.fmul(b.uitofp(b.lshr(bits, ir.Constant(I64, 40)), F32), ir.Constant(F32, 2.0**-24))
    return b.fmul(b.uitofp(b.lshr(bits, ir.Constant(I64, 11)), F64), ir.Constant(F64, 2.0**-53))


OPS: dict[str, OpEmitter] = {
    "arange": lambda b, a, dt, out: a[0],
    "random_uniform": _random_uniform,
    "neg": _float_or_int(lambda b, x: b.fneg(x), lambda b, x: b.neg(x)),
    "add": _float_or_int(lambda b, x, y: b.fadd(x, y), lambda b, x, y: b.add(x, y)),
    "sub": _float_or_int(lambda b, x, y: b.fsub(x, y), lambda b, x, y: b.sub(x, y)),
    "mul": lambda b, a, dt, out: (b.fmul(*a) if dt[0] in FLOATS else
                                  b.and_(*a) if dt[0] == "bool" else b.mul(*a)),
    "div": lambda b, a, dt, out: b.fdiv(*a),
    "pow": _float_or_int(lambda b, x, y: _emit_math(b, "pow", [x, y]), _ipow),
    "maximum": _float_or_int(lambda b, x, y: _intr(b, "llvm.maximum", [x, y]),
                             lambda b, x, y: _intr(b, "llvm.smax", [x, y])),
    "minimum": _float_or_int(lambda b, x, y: _intr(b, "llvm.minimum", [x, y]),
                             lambda b, x, y: _intr(b, "llvm.smin", [x, y])),
    "relu": _float_or_int(lambda b, x: _intr(b, "llvm.maximum", [x, ir.Constant(x.type, 0.0)]),
                          lambda b, x: _intr(b, "llvm.smax", [x, ir.Constant(x.type, 0)])),
    "sqrt": lambda b, a, dt, out: _intr(b, "llvm.sqrt", a),
    "abs": _float_or_int(lambda b, x: _intr(b, "llvm.fabs", [x]),
                         lambda b, x: _intr(b, "llvm.abs", [x, ir.Constant(I1, 0)])),
    "sign": _sign,
    "floor": lambda b, a, dt, out: _intr(b, "llvm.floor", a),
    "ceil": lambda b, a, dt, out: _intr(b, "llvm.ceil", a),
    "round": lambda b, a, dt, out: _intr(b, "llvm.roundeven", a),
    "less": _cmp("<", "<", "<"),
    "less_equal": _cmp("<=", "<=", "<="),
    "greater": _cmp(">", ">", ">"),
    "greater_equal": _cmp(">=", ">=", ">="),
    "equal": _cmp("==", "==", "=="),
    "not_equal": _cmp("!=", "!=", "!="),
    "logical_and": lambda b, a, dt, out: b.and_(*a),
    "logical_or": lambda b, a, dt, out: b.or_(*a),
    "logical_not": lambda b, a, dt, out: b.xor(a[0], ir.Constant(I1, 1)),
    "where": lambda b, a, dt, out: b.select(*a),
    "cast": lambda b, a, dt, out: convert(b, a[0], dt[0], out),
}
for _name in MATH_FUNCTIONS:
    if _name != "pow":
        OPS[_name] = _math(_name)

SUPPORTED_OPS = frozenset(OPS)


class _Fn:
    """One function being built: its builder, pointer arguments and size values."""

    def __init__(self, fn: ir.Function, dims: ir.Value, ptrs: dict[int, ir.Value],
                 layout: FrameLayout, symbols: list[str]) -> None:
        self.fn = fn
        self.entry = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)
        self.dims = dims
        self.ptrs = ptrs
        self.layout = layout
        self.symbols = {s: k for k, s in enumerate(symbols)}
        self.sizes: dict[Any, ir.Value] = {}
        self.check_bounds = False

    def alloca(self, t: ir.Type, n: int = 1) -> ir.Value:
        with self.b.goto_entry_block():
            self.b.position_at_start(self.entry)
            return self.b.alloca(t, n) if n > 1 else self.b.alloca(t)

    def size(self, s: Size) -> ir.Value:
        if isinstance(s, int):
            return ir.Constant(I64, s)
        v = self.sizes.get(s)
        if v is not None:
            return v
        b = self.b
        with b.goto_entry_block():
            total: ir.Value | None = None
            for mono, coeff in s.terms:
                term: ir.Value = ir.Constant(I64, coeff)
                for atom in mono:
                    term = b.mul(term, self._atom(atom), flags=["nsw"])
                total = term if total is None else b.add(total, term, flags=["nsw"])
        assert total is not None
        self.sizes[s] = total
        return total

    def _atom(self, atom: str | FloorDiv) -> ir.Value:
        b = self.b
        if isinstance(atom, str):
            key = ("sym", atom)
            v = self.sizes.get(key)
            if v is None:
                p = b.gep(self.dims, [ir.Constant(I64, self.symbols[atom])], source_etype=I64)
                v = b.load(p, typ=I64)
                self.sizes[key] = v
            return v
        return b.sdiv(self.size(atom.num), ir.Constant(I64, atom.den))

    def ptr(self, buf: Buffer) -> ir.Value:
        return self.ptrs[self.layout.slot(buf)]

    def addr(self, buf: Buffer, lin: ir.Value) -> ir.Value:
        if self.check_bounds:
            b = self.b
            size = self.size(buf.size)
            bad = b.or_(b.icmp_signed("<", lin, ir.Constant(I64, 0)), b.icmp_signed(">=", lin, size))
            with b.if_then(bad, likely=False):
                b.ret(ir.Constant(I32, ERR_BOUNDS))
        return self.b.gep(self.ptr(buf), [lin], source_etype=MEM[buf.dtype], inbounds=True)

    def load(self, buf: Buffer, lin: ir.Value) -> ir.Value:
        v = self.b.load(self.addr(buf, lin), typ=MEM[buf.dtype])
        return self.b.trunc(v, I1) if buf.dtype == "bool" else v

    def store(self, buf: Buffer, lin: ir.Value, v: ir.Value) -> None:
        if buf.dtype == "bool":
            v = self.b.zext(v, I8)
        self.b.store(v, self.addr(buf, lin))

    def linear(self, offset: Size, coeffs: Sequence[Size], idx: dict[int, ir.Value]) -> ir.Value:
        b = self.b
        lin: ir.Value = self.size(offset)
        for a, c in enumerate(coeffs):
            if c == 0:
                continue
            i = idx.get(a)
            if i is None:  # an axis outside the current loops reads at index 0
                continue
            term = i if c == 1 else b.mul(i, self.size(c), flags=["nsw"])
            lin = term if isinstance(lin, ir.Constant) and lin.constant == 0 else \
                b.add(lin, term, flags=["nsw"])
        return lin

    def loop(self, start: ir.Value, stop: ir.Value, body: Callable[[ir.Value], None],
             step: int = 1, hints: ir.values.MDValue | None = None) -> None:
        """``for i in range(start, stop, step): body(i)``; ``hints``: loop metadata."""
        b = self.b
        pre = b.block
        head = self.fn.append_basic_block("loop")
        after = self.fn.append_basic_block("after")
        b.cbranch(b.icmp_signed("<", start, stop), head, after)
        b.position_at_end(head)
        i = b.phi(I64)
        i.add_incoming(start, pre)
        body(i)
        nxt = b.add(i, ir.Constant(I64, step), flags=["nsw"])
        i.add_incoming(nxt, b.block)
        latch = b.cbranch(b.icmp_signed("<", nxt, stop), head, after)
        if hints is not None:
            latch.set_metadata("llvm.loop", hints)
        b.position_at_end(after)

    def blocked_loop(self, start: ir.Value, stop: ir.Value, block: int,
                     body: Callable[[ir.Value], None], begin: Callable[[], None],
                     end: Callable[[], None], hints: ir.values.MDValue | None = None) -> None:
        """``for s in range(start, stop, block): begin(); for i in s..s+block: body(i); end()``."""
        b = self.b

        def outer(s: ir.Value) -> None:
            e = b.add(s, ir.Constant(I64, block), flags=["nsw"])
            e = b.select(b.icmp_signed("<", e, stop), e, stop)
            begin()
            self.loop(s, e, body, hints=hints)
            end()

        self.loop(start, stop, outer, block)

    def nest(self, axes: Sequence[int], extents: dict[int, ir.Value], idx: dict[int, ir.Value],
             inner: Callable[[], None], ranges: dict[int, tuple[ir.Value, ir.Value]] | None = None,
             hints: ir.values.MDValue | None = None) -> None:
        """Loops over ``axes`` (outermost first), recording indices in ``idx``; ``hints``
        go on the innermost loop."""
        if not axes:
            inner()
            return
        a, rest = axes[0], axes[1:]
        lo, hi = (ranges or {}).get(a, (ir.Constant(I64, 0), extents[a]))

        def body(i: ir.Value) -> None:
            idx[a] = i
            self.nest(rest, extents, idx, inner, ranges, hints)

        self.loop(lo, hi, body, hints=None if rest else hints)


class Codegen:
    """Builds the LLVM module of a lowered program."""

    def __init__(self, lp: LoweredProgram, triple: str = "", data_layout: str = "",
                 parts: int = 1, check_bounds: bool = False, blas_int_bits: int | None = None,
                 blas_threads: bool = False) -> None:
        """``blas_int_bits``: the width of the integer arguments of the ``symgrad_sgemm`` and
        ``symgrad_dgemm`` the matrix products call (default: the process's BLAS, see
        :mod:`.blas`). ``blas_threads``: each float product first sets the BLAS's threads
        for its size (:meth:`_blas_threads`; the run time provides the symbols it uses).
        ``check_bounds``: a bounds-checking build
        (``SYMGRAD_LLVM_CHECK_BOUNDS=1``): every load and store first checks its element
        index against its buffer's size and returns :data:`ERR_BOUNDS` instead of touching
        memory outside it. For testing the code generator; its loops do not vectorize."""
        self.lp = lp
        self.check_bounds = check_bounds
        self.blas_int = ir.IntType(blas_int_bits or blas.provider().int_bits)
        self.blas_threads = blas_threads
        self.parts = max(1, min(parts, len(lp.kernels)))
        self.classes = body_classes(lp, check_bounds)
        self.part_of = split_kernels(lp, self.parts, self.classes)
        self._bodies: dict[int, ir.Function] = {}  # kernel number -> its body function
        self._trampolines: dict[str, ir.Function] = {}  # body name -> see _shared_wrapper
        counts = Counter(self.classes)
        self.shared = [counts[c] > 1 for c in self.classes]  # whether a body is run by several
        # interleaving multiplies the code of every math loop: only in programs with few calls
        calls = sum(sum(ins.op in MATH_FUNCTIONS for ins in getattr(lp.kernels[n], "instrs", ()))
                    for n in {c: n for n, c in enumerate(self.classes)}.values())
        self.interleave = calls <= MATH_INTERLEAVE_CALLS
        self.modules = []
        for k in range(self.parts):
            mod = ir.Module(name=f"symgrad{k}")
            if triple:
                mod.triple = triple
            if data_layout:
                mod.data_layout = data_layout
            self.modules.append(mod)
        self.layout = FrameLayout.of(lp)
        self.info = module_info(lp)
        self.kfns: list[tuple[ir.Function, ir.Function | None] | None] = [None] * len(lp.kernels)
        self._texts: list[str] = []
        self.module = self.modules[0]
        if self.parts == 1:
            self._build(0)

    @property
    def texts(self) -> list[str]:
        """The IR of every module."""
        return list(self.iter_texts())

    def iter_texts(self) -> Iterator[str]:
        """The IR of each module in turn, generated when it is asked for (a caller can
        compile one module while the next is generated)."""
        for part in range(self.parts):
            if part == len(self._texts):
                if part > 0 or self.parts > 1:  # one module is built by the constructor
                    self._build(part)
                self._texts.append(str(self.modules[part]))
            yield self._texts[part]

    def _build(self, part: int) -> None:
        """The kernels of module ``part``; the first module also holds the entry points."""
        self.module = self.modules[part]
        for k, kern in enumerate(self.lp.kernels):
            if self.part_of[k] == part:
                self.kfns[k] = self._loop_kernel(kern, k) if isinstance(kern, LoopKernel) else \
                    (self._lib_kernel(kern), None)
        if part == 0:
            self._entry()

    # -- function scaffolding ------------------------------------------------------------------
    def _functions(self, name: str, bufs: Sequence[Buffer], extra: Sequence[ir.Type],
                   shared: bool = False) -> tuple[_Fn, ir.Function]:
        """The exported wrapper and the ``noalias`` body function; returns the body builder.
        ``shared``: other kernels will run the same body (see :meth:`_shared_wrapper`)."""
        slots = _slots(self.layout, bufs)
        body_ty = ir.FunctionType(I32, [PTR] * len(slots) + [PTR] + list(extra))
        body = ir.Function(self.module, body_ty, f"{name}.body")
        body.linkage = "internal"
        body.attributes.add("nounwind")
        # kept out of line: inlined, its noalias arguments become scoped-alias metadata,
        # whose queries grow with (pointers x memory operations) and made LLVM slow on
        # kernels with many buffers; as arguments, distinct noalias pointers are cheap
        body.attributes.add("noinline")
        for a in body.args[:len(slots)]:
            a.add_attribute("noalias")
        wrap = (self._shared_wrapper if shared else self._wrapper)(name, slots, extra, body)
        fb = _Fn(body, body.args[len(slots)], dict(zip(slots, body.args[:len(slots)])),
                 self.layout, self.lp.symbols)
        fb.check_bounds = self.check_bounds
        return fb, wrap

    def _wrapper(self, name: str, slots: list[int], extra: Sequence[ir.Type],
                 body: ir.Function) -> ir.Function:
        """``name(frame, dims, *extra)``: calls ``body`` with the pointers of ``slots``."""
        wrap_ty = ir.FunctionType(I32, [PTR, PTR] + list(extra))
        wrap = ir.Function(self.module, wrap_ty, name)
        wrap.attributes.add("noinline")  # the entry calls kernels; it must not copy them
        wb = ir.IRBuilder(wrap.append_basic_block("entry"))
        frame = wrap.args[0]
        ptrs = []
        for s in slots:
            p = wb.gep(frame, [ir.Constant(I64, s)], source_etype=PTR)
            ptrs.append(wb.load(p, typ=PTR))
        wb.ret(wb.call(body, ptrs + list(wrap.args[1:])))
        return wrap

    def _shared_wrapper(self, name: str, slots: list[int], extra: Sequence[ir.Type],
                        body: ir.Function) -> ir.Function:
        """``name(frame, dims, *extra)`` for a kernel running another kernel's ``body``: it
        passes its slot numbers (a constant array) to the body's trampoline, which loads
        the pointers and calls the body, so each further kernel costs one call and an
        array instead of a load per buffer."""
        tramp = self._trampolines.get(body.name)
        if tramp is None:
            tramp = ir.Function(self.module, ir.FunctionType(I32, [PTR, PTR, *extra, PTR]),
                                body.name + ".slots")
            tramp.linkage = "internal"
            tb = ir.IRBuilder(tramp.append_basic_block("entry"))
            frame, table = tramp.args[0], tramp.args[-1]
            ptrs = []
            for j in range(len(slots)):
                at = tb.load(tb.gep(table, [ir.Constant(I64, j)], source_etype=I64), typ=I64)
                p = tb.gep(frame, [at], source_etype=PTR)
                ptrs.append(tb.load(p, typ=PTR))
            tb.ret(tb.call(body, ptrs + list(tramp.args[1:-1])))
            self._trampolines[body.name] = tramp
        table_type = ir.ArrayType(I64, len(slots))
        table = ir.GlobalVariable(self.module, table_type, name + ".slots")
        table.initializer = ir.Constant(table_type, slots)
        table.global_constant = True
        table.linkage = "internal"
        wrap = ir.Function(self.module, ir.FunctionType(I32, [PTR, PTR, *extra]), name)
        wrap.attributes.add("noinline")
        wb = ir.IRBuilder(wrap.append_basic_block("entry"))
        wb.ret(wb.call(tramp, [*wrap.args, table]))
        return wrap

    # -- loop kernels --------------------------------------------------------------------------
    def _loop_kernel(self, k: LoopKernel, n: int) -> tuple[ir.Function, ir.Function | None]:
        """Kernel number ``n``: its wrapper, and its finish function for a full reduction.
        A kernel whose body an earlier kernel already has gets only a wrapper of its own."""
        same = self._bodies.get(self.classes[n])
        if same is not None:
            bufs = [a.buffer for a in k.operands] + [s.access.buffer for s in k.stores] + k.scratch
            wrap = self._shared_wrapper(k.name, _slots(self.layout, bufs), [I64, I64, PTR], same)
            return wrap, self._finish(k) if k.strategy == "full" else None
        calls = sum(ins.op in MATH_FUNCTIONS for ins in k.instrs)
        width = self._vector_width(k)
        mode = MathMode(
            shared=calls > INLINE_MATH_LIMIT,
            # vecmath's latency-bound variant for a large float32 body whose loop interleaves
            # few vectors (see _math_hints); the shared math functions are readnone and keep
            # the default variant
            latency_bound=(not width and 0 < calls <= INLINE_MATH_LIMIT and self.interleave
                           and self._large_float32_body(k, n)),
            # the vector variants of shared math functions that the loop will call
            widths=(width,) if width else None)
        with kernel_math(self.module, mode):
            return self._loop_kernel_body(k, n, width, calls)

    def _loop_kernel_body(self, k: LoopKernel, n: int, width: int | None, calls: int
                          ) -> tuple[ir.Function, ir.Function | None]:
        bufs = [a.buffer for a in k.operands] + [s.access.buffer for s in k.stores] + k.scratch
        f, wrap = self._functions(k.name, bufs, [I64, I64, PTR], shared=self.shared[n])
        self._bodies[n] = f.fn
        lo, hi, partial = f.fn.args[-3:]
        ndom = len(k.domain)
        extents = {a: f.size(s) for a, s in enumerate(k.domain)}
        red = set(k.reduce_axes)
        out_axes = [a for a in range(ndom) if a not in red]
        idx: dict[int, ir.Value] = {}
        values: dict[int, ir.Value] = {}
        b = f.b
        ranges = {0: (lo, hi)} if ndom else {}

        def run_phase(phase: str) -> None:
            for n, ins in enumerate(k.instrs):
                if ins.phase == phase and ins.op != "acc":
                    values[n] = self._instr(f, k, ins, values, idx)
            for st in k.stores:
                if st.phase == phase:
                    lin = f.linear(st.access.offset, st.access.coeffs, idx)
                    src = k.instrs[st.value].dtype
                    f.store(st.access.buffer, lin, convert(b, values[st.value], src, st.access.buffer.dtype))

        accs = [self._acc_slots(f, r) for r in k.reductions]

        def init_accs() -> None:
            for r, (val, pos) in zip(k.reductions, accs):
                b.store(_identity(r.op, r.acc_dtype), val)
                if pos is not None:
                    b.store(ir.Constant(I64, 0), pos)

        def update_accs() -> None:
            for j, (r, (val, pos)) in enumerate(zip(k.reductions, accs)):
                if j in blocked:
                    continue
                v = values[r.value]
                cur = b.load(val, typ=REG[r.acc_dtype])
                if pos is None:
                    b.store(self._combine(b, r.op, r.acc_dtype, cur,
                                          convert(b, v, k.instrs[r.value].dtype, r.acc_dtype)), val)
                else:
                    (axis,) = k.reduce_axes
                    take = self._arg_better(b, r.op, r.acc_dtype, v, cur)
                    b.store(b.select(take, v, cur), val)
                    b.store(b.select(take, idx[axis], b.load(pos, typ=I64)), pos)

        def set_acc_values() -> None:
            for n, ins in enumerate(k.instrs):
                if ins.op == "acc":
                    r = k.reductions[ins.attr]
                    val, pos = accs[ins.attr]
                    if pos is not None:
                        values[n] = convert(b, b.load(pos, typ=I64), "int64", ins.dtype)
                    else:
                        values[n] = convert(b, b.load(val, typ=REG[r.acc_dtype]), r.acc_dtype, ins.dtype)

        # float32 sums: blocks of SUM_BLOCK points accumulate in float32 (full vector width),
        # each block's sum is added in float64
        blocked = {j: f.alloca(F32) for j, r in enumerate(k.reductions)
                   if r.op == "sum" and r.acc_dtype == "float64"
                   and k.instrs[r.value].dtype == "float32"}

        def point() -> None:
            run_phase("point")
            for j, slot in blocked.items():
                v = values[k.reductions[j].value]
                b.store(b.fadd(b.load(slot, typ=F32), v, flags=["reassoc", "nsz"]), slot)
            update_accs()

        def block_begin() -> None:
            for slot in blocked.values():
                b.store(ir.Constant(F32, 0.0), slot)

        def block_end() -> None:
            for j, slot in blocked.items():
                val = accs[j][0]
                total = b.fadd(b.load(val, typ=F64), b.fpext(b.load(slot, typ=F32), F64),
                               flags=["reassoc", "nsz"])
                b.store(total, val)

        hints = self._vector_hints() if width else \
            self._math_hints(k, n) if calls and self.interleave else None

        def reduce_loops(axes: list[int], rng: dict[int, tuple[ir.Value, ir.Value]] | None) -> None:
            if not blocked:
                f.nest(axes, extents, idx, point, rng, hints)
                return
            *outer, last = axes
            lo_, hi_ = (rng or {}).get(last, (ir.Constant(I64, 0), extents[last]))

            def innermost() -> None:
                def body(i: ir.Value) -> None:
                    idx[last] = i
                    point()

                f.blocked_loop(lo_, hi_, SUM_BLOCK, body, block_begin, block_end, hints)

            f.nest(outer, extents, idx, innermost, rng)

        fin: ir.Function | None = None
        if k.strategy == "map":
            f.nest(list(range(ndom)), extents, idx, lambda: run_phase("point"), ranges, hints)
        elif k.strategy == "inner":
            def per_output() -> None:
                init_accs()
                reduce_loops(sorted(red), ranges if not out_axes else None)
                for a in red:
                    idx.pop(a, None)
                set_acc_values()
                run_phase("out")

            f.nest(out_axes, extents, idx, per_output, ranges)
        elif k.strategy == "full":
            init_accs()
            reduce_loops(list(range(ndom)), ranges)
            idx.clear()
            has_partial = b.icmp_unsigned("!=", partial, ir.Constant(PTR, None))
            with b.if_else(has_partial) as (then, otherwise):
                with then:
                    for j, (val, _) in enumerate(accs):
                        r = k.reductions[j]
                        p = b.gep(partial, [ir.Constant(I64, j)], source_etype=I64)
                        b.store(b.load(val, typ=REG[r.acc_dtype]), p)
                with otherwise:
                    set_acc_values()
                    run_phase("out")
            fin = self._finish(k)
        else:
            self._outer(f, k, extents, idx, values, run_phase, ranges)
        b.ret(ir.Constant(I32, 0))
        return wrap, fin

    def _vector_width(self, k: LoopKernel) -> int | None:
        """For a kernel with a large body (at least :data:`LARGE_BODY` instructions), the
        native vector width of its widest type: its shared math functions come in that
        width only; None for other kernels."""
        if len(k.instrs) < LARGE_BODY or self.check_bounds or not k.domain:
            return None
        wide = any(ins.dtype in ("float64", "int64") for ins in k.instrs)
        width = _native_width("float64" if wide else "float32")
        return width if width >= 2 else None

    def _vector_hints(self) -> ir.values.MDValue:
        """Loop metadata for the innermost loop of a large kernel: no interleaving, and the
        remainder folded into the vector loop (masked loads and stores) instead of a scalar
        copy of the body. Large bodies gain nothing from interleaving, and this halves the
        code LLVM generates for them. Hints only: neither vectorization nor a width is
        demanded, so a loop LLVM cannot vectorize stays scalar without diagnostics."""
        m = self.module
        props = [m.add_metadata([ir.MetaDataString(m, key), value]) for key, value in (
            ("llvm.loop.interleave.count", ir.Constant(I32, 1)),
            ("llvm.loop.vectorize.predicate.enable", ir.Constant(I1, 1)))]
        return _LoopID(m, props)

    def _math_hints(self, k: LoopKernel, n: int) -> ir.values.MDValue:
        """Loop metadata for the innermost loop of a kernel that calls the inline vector
        math: interleave :data:`MATH_INTERLEAVE` vectors. The polynomials are long chains of
        dependent FMAs, so one vector per iteration leaves the loop bound by their latency
        (LLVM's cost model picks 1 for such bodies); independent chains per iteration let
        the core overlap them. Measured on one thread (Zen 3, 16 ymm registers): W1 went
        from 10.9 to 7.6 ms with 4 and 7.2 ms with 8 in float32, and from 34 to 23 ms with 4
        in float64; single functions gain 5-25% with 4, and float32 ones mostly 3-15% more
        with 8 (sin loses 10%), where float64 ones, twice the registers per element, gain
        nothing more. It also makes the loop's code that many times larger, so programs
        with many math calls (a long unrolled chain) keep one vector per iteration and
        their compile time. A large float32 body takes 4: W1's (three functions and its
        gradient, 91 by kernel_info's cost) is 6 KB of code per iteration with 8 and spills
        35 stack values per vector; with 4, its two-thread median was 6-11% lower in three
        in-process runs of 25-30 rounds on a busy machine, and equal on a quiet one. With
        so few vectors in flight, such a loop waits on each element's chain: its math is
        emitted latency-bound (``vecmath.emit_math``)."""
        m = self.module
        props = [m.add_metadata([ir.MetaDataString(m, "llvm.loop.interleave.count"),
                                 ir.Constant(I32, self._math_interleave(k, n))])]
        return _LoopID(m, props)

    def _math_interleave(self, k: LoopKernel, n: int) -> int:
        """The interleave count of kernel ``n``'s loop if it calls the vector math (see
        :meth:`_math_hints`)."""
        if self._large_float32_body(k, n):
            return MATH_INTERLEAVE_BIG
        return MATH_INTERLEAVE["float64" if _is_wide(k) else "float32"]

    def _large_float32_body(self, k: LoopKernel, n: int) -> bool:
        """Whether kernel ``n`` computes in float32 only and costs more than
        :data:`MATH_INTERLEAVE_BIG_COST` (W1's, for one)."""
        return not _is_wide(k) and self.info.kernels[n].cost > MATH_INTERLEAVE_BIG_COST

    def _acc_slots(self, f: _Fn, r: Any) -> tuple[ir.Value, ir.Value | None]:
        val = f.alloca(REG[r.acc_dtype])
        pos = f.alloca(I64) if r.op in ("argmax", "argmin") else None
        return val, pos

    @staticmethod
    def _combine(b: ir.IRBuilder, op: str, dtype: str, acc: ir.Value, v: ir.Value) -> ir.Value:
        fl = dtype in FLOATS
        if op == "sum":
            return b.fadd(acc, v, flags=["reassoc", "nsz"]) if fl else b.add(acc, v)
        if op == "prod":
            return b.fmul(acc, v, flags=["reassoc", "nsz"]) if fl else \
                b.and_(acc, v) if dtype == "bool" else b.mul(acc, v)
        if op == "max":
            if fl:
                return _intr(b, "llvm.maximum", [acc, v])
            return b.or_(acc, v) if dtype == "bool" else _intr(b, "llvm.smax", [acc, v])
        if op == "min":
            if fl:
                return _intr(b, "llvm.minimum", [acc, v])
            return b.and_(acc, v) if dtype == "bool" else _intr(b, "llvm.smin", [acc, v])
        raise KeyError(op)

    @staticmethod
    def _arg_better(b: ir.IRBuilder, op: str, dtype: str, v: ir.Value, best: ir.Value) -> ir.Value:
        """Whether ``v`` replaces ``best`` (first occurrence wins; the first NaN wins)."""
        rel = ">" if op == "argmax" else "<"
        if dtype in FLOATS:
            strict = b.fcmp_ordered(rel, v, best)
            nan = b.and_(b.fcmp_unordered("uno", v, v), b.fcmp_ordered("ord", best, best))
            return b.or_(strict, nan)
        if dtype == "bool":
            return b.icmp_unsigned(rel, v, best)
        return b.icmp_signed(rel, v, best)

    def _outer(self, f: _Fn, k: LoopKernel, extents: dict[int, ir.Value], idx: dict[int, ir.Value],
               values: dict[int, ir.Value], run_phase: Callable[[str], None],
               ranges: dict[int, tuple[ir.Value, ir.Value]]) -> None:
        """Accumulate in memory-order loops into scratch buffers over the output domain."""
        b = f.b
        ndom = len(k.domain)
        red = set(k.reduce_axes)
        out_axes = [a for a in range(ndom) if a not in red]
        out_strides = dict(zip(out_axes, contiguous_strides(tuple(k.domain[a] for a in out_axes))))
        out_ranges = {a: r for a, r in ranges.items() if a not in red}

        def scratch_index() -> ir.Value:
            coeffs = [out_strides.get(a, 0) for a in range(ndom)]
            return f.linear(0, coeffs, idx)

        def init() -> None:
            lin = scratch_index()
            for r, buf in zip(k.reductions, k.scratch):
                f.store(buf, lin, _identity(r.op, r.acc_dtype))

        f.nest(out_axes, extents, idx, init, out_ranges)

        def point() -> None:
            run_phase("point")
            lin = scratch_index()
            for r, buf in zip(k.reductions, k.scratch):
                v = convert(b, values[r.value], k.instrs[r.value].dtype, r.acc_dtype)
                f.store(buf, lin, self._combine(b, r.op, r.acc_dtype, f.load(buf, lin), v))

        idx.clear()
        f.nest(list(range(ndom)), extents, idx, point, ranges)
        idx.clear()

        def epilogue() -> None:
            lin = scratch_index()
            for n, ins in enumerate(k.instrs):
                if ins.op == "acc":
                    r = k.reductions[ins.attr]
                    acc = f.load(k.scratch[ins.attr], lin)
                    values[n] = convert(b, acc, r.acc_dtype, ins.dtype)
            run_phase("out")

        f.nest(out_axes, extents, idx, epilogue, out_ranges)

    def _finish(self, k: LoopKernel) -> ir.Function:
        """Combine partial accumulators of a full reduction and run its epilogue."""
        bufs = [a.buffer for a in k.operands] + [s.access.buffer for s in k.stores]
        f, wrap = self._functions(f"{k.name}.finish", bufs, [PTR, I64])
        partial, nparts = f.fn.args[-2:]
        b = f.b
        accs = []
        for r in k.reductions:
            slot = f.alloca(REG[r.acc_dtype])
            b.store(_identity(r.op, r.acc_dtype), slot)
            accs.append(slot)
        nred = ir.Constant(I64, len(k.reductions))

        def combine(t: ir.Value) -> None:
            for j, (r, slot) in enumerate(zip(k.reductions, accs)):
                at = b.add(b.mul(t, nred), ir.Constant(I64, j))
                p = b.gep(partial, [at], source_etype=I64)
                v = b.load(p, typ=REG[r.acc_dtype])
                b.store(self._combine(b, r.op, r.acc_dtype, b.load(slot, typ=REG[r.acc_dtype]), v), slot)

        f.loop(ir.Constant(I64, 0), nparts, combine)
        values: dict[int, ir.Value] = {}
        idx: dict[int, ir.Value] = {}
        for n, ins in enumerate(k.instrs):
            if ins.phase != "out":
                continue
            if ins.op == "acc":
                r = k.reductions[ins.attr]
                values[n] = convert(b, b.load(accs[ins.attr], typ=REG[r.acc_dtype]), r.acc_dtype, ins.dtype)
            else:
                values[n] = self._instr(f, k, ins, values, idx)
        for st in k.stores:
            if st.phase == "out":
                lin = f.linear(st.access.offset, st.access.coeffs, idx)
                src = k.instrs[st.value].dtype
                f.store(st.access.buffer, lin, convert(b, values[st.value], src, st.access.buffer.dtype))
        b.ret(ir.Constant(I32, 0))
        return wrap

    def _instr(self, f: _Fn, k: LoopKernel, ins: Any, values: dict[int, ir.Value],
               idx: dict[int, ir.Value]) -> ir.Value:
        b = f.b
        if ins.op == "load":
            acc = k.operands[ins.attr]
            return f.load(acc.buffer, f.linear(acc.offset, acc.coeffs, idx))
        if ins.op == "const":
            return _const(ins.dtype, ins.attr)
        if ins.op == "size":
            return convert(b, f.size(ins.attr), "int64", ins.dtype)
        if ins.op == "index":
            off, coeffs = ins.attr
            return f.linear(off, coeffs, idx)
        args = [values[a] for a in ins.args]
        dts = [k.instrs[a].dtype for a in ins.args]
        return OPS[ins.op](b, args, dts, ins.dtype)

    # -- library calls -------------------------------------------------------------------------
    def _lib_kernel(self, c: LibCall) -> ir.Function:
        f, wrap = self._functions(c.name, c.reads() + [c.output], [I64, I64, PTR])
        emit = getattr(self, f"_lib_{c.op}")
        emit(f, c)
        if not f.b.block.is_terminated:
            f.b.ret(ir.Constant(I32, 0))
        return wrap

    def _fail(self, f: _Fn, cond: ir.Value, code: int = ERR_INDEX) -> None:
        b = f.b
        with b.if_then(cond, likely=False):
            b.ret(ir.Constant(I32, code))

    def _fill(self, f: _Fn, buf: Buffer, value: ir.Value) -> None:
        total = f.size(buf.size)
        f.loop(ir.Constant(I64, 0), total, lambda i: f.store(buf, i, value))

    def _blas_threads(self, f: _Fn, m: ir.Value, k: ir.Value, n: ir.Value) -> None:
        """One BLAS thread for a product of fewer than ``blas.ONE_THREAD_BELOW`` multiply-adds,
        else the configured count (:class:`.blas.ThreadSwitch`, whose C ints and setter the
        run time provides under these names); the setter is called only on a change."""
        b = f.b
        ints = []
        for name in ("symgrad_blas_threads_large", "symgrad_blas_threads_current"):
            g = self.module.globals.get(name)
            if g is None:
                g = ir.GlobalVariable(self.module, I32, name)
            ints.append(g)
        large, current = ints
        setter = self.module.globals.get("symgrad_blas_set_threads")
        if setter is None:
            setter = ir.Function(self.module, ir.FunctionType(VOID, [I32]), "symgrad_blas_set_threads")
        small = b.icmp_signed("<", b.mul(b.mul(m, k), n), ir.Constant(I64, blas.ONE_THREAD_BELOW))
        want = b.select(small, ir.Constant(I32, 1), b.load(large, typ=I32))
        with b.if_then(b.icmp_signed("!=", want, b.load(current, typ=I32)), likely=False):
            b.call(setter, [want])
            b.store(want, current)

    def _lib_matmul(self, f: _Fn, c: LibCall) -> None:
        b = f.b
        a_acc, b_acc = c.inputs
        a_shape, b_shape = c.input_shapes
        nb = c.attrs["batch"]
        out = c.output
        m, kk, n = a_shape[-2], a_shape[-1], b_shape[-1]
        mv, kv, nv = f.size(m), f.size(kk), f.size(n)
        zero64 = ir.Constant(I64, 0)
        empty = b.or_(b.icmp_signed("==", mv, zero64), b.icmp_signed("==", nv, zero64))
        with b.if_then(empty):
            b.ret(ir.Constant(I32, 0))
        dtype = out.dtype
        if dtype in FLOATS:
            with b.if_then(b.icmp_signed("==", kv, zero64)):
                self._fill(f, out, _const(dtype, 0))
                b.ret(ir.Constant(I32, 0))
        batch = list(range(nb))
        extents = {a: f.size(s) for a, s in enumerate(c.output.shape[:nb])}
        idx: dict[int, ir.Value] = {}
        out_strides = contiguous_strides(out.shape)

        if dtype in FLOATS:
            la = blas_layout((m, kk), a_acc.coeffs[-2:])
            lb = blas_layout((kk, n), b_acc.coeffs[-2:])
            assert la is not None and lb is not None
            t = REG[dtype]
            gemm_name = "symgrad_sgemm" if dtype == "float32" else "symgrad_dgemm"
            gemm = self.module.globals.get(gemm_name)
            if gemm is None:
                gemm = ir.Function(self.module, ir.FunctionType(VOID, [PTR] * 13), gemm_name)

            def scalar(ty: ir.Type, v: ir.Value) -> ir.Value:
                p = f.alloca(ty)
                b.store(v, p)
                return p

            bint = self.blas_int

            def dim(v: ir.Value) -> ir.Value:
                return scalar(bint, v if bint == I64 else b.trunc(v, bint))

            def ld(lay: tuple[str, Size]) -> ir.Value:
                v = f.size(lay[1])
                one = ir.Constant(I64, 1)
                return dim(b.select(b.icmp_signed("<", v, one), one, v))

            trans_a = scalar(I8, ir.Constant(I8, ord("N" if la[0] == "row" else "T")))
            trans_b = scalar(I8, ir.Constant(I8, ord("N" if lb[0] == "row" else "T")))
            pm, pn, pk = dim(mv), dim(nv), dim(kv)
            lda, ldb, ldc = ld(la), ld(lb), dim(nv)
            alpha = scalar(t, ir.Constant(t, 1.0))
            beta = scalar(t, ir.Constant(t, 0.0))

            def call() -> None:
                pa = f.addr(a_acc.buffer, f.linear(a_acc.offset, a_acc.coeffs[:nb], idx))
                pb = f.addr(b_acc.buffer, f.linear(b_acc.offset, b_acc.coeffs[:nb], idx))
                pc = f.addr(out, f.linear(0, out_strides[:nb], idx))
                b.call(gemm, [trans_b, trans_a, pn, pm, pk, alpha, pb, ldb, pa, lda, beta, pc, ldc])

            if self.blas_threads:
                self._blas_threads(f, mv, kv, nv)
            f.nest(batch, extents, idx, call)
            return

        # integer matrix products: plain loops, i-k-j order
        ra, ca = a_acc.coeffs[-2], a_acc.coeffs[-1]
        rb, cb = b_acc.coeffs[-2], b_acc.coeffs[-1]
        rc, cc = out_strides[-2], out_strides[-1]
        ax_i, ax_j, ax_k = nb, nb + 1, nb + 2
        ext = dict(extents)
        ext.update({ax_i: mv, ax_j: nv, ax_k: kv})

        def zero() -> None:
            f.store(out, f.linear(0, [*out_strides[:nb], rc, cc, 0], idx), _const(dtype, 0))

        def acc() -> None:
            av = f.load(a_acc.buffer, f.linear(a_acc.offset, [*a_acc.coeffs[:nb], ra, 0, ca], idx))
            bv = f.load(b_acc.buffer, f.linear(b_acc.offset, [*b_acc.coeffs[:nb], 0, cb, rb], idx))
            lin = f.linear(0, [*out_strides[:nb], rc, cc, 0], idx)
            f.store(out, lin, b.add(f.load(out, lin), b.mul(av, bv)))

        def per_batch() -> None:
            f.nest([ax_i, ax_j], ext, idx, zero)
            f.nest([ax_i, ax_k, ax_j], ext, idx, acc)

        f.nest(batch, ext, idx, per_batch)

    def _lib_take(self, f: _Fn, c: LibCall) -> None:
        b = f.b
        (x_acc, i_acc), (x_shape, i_shape) = c.inputs, c.input_shapes
        ax = c.attrs["axis"]
        out = c.output
        nd = len(out.shape)
        ki = len(i_shape)
        extents = {a: f.size(s) for a, s in enumerate(out.shape)}
        ostr = contiguous_strides(out.shape)
        size = f.size(x_shape[ax])
        idx: dict[int, ir.Value] = {}

        def body() -> None:
            icoeffs = [0] * ax + list(i_acc.coeffs) + [0] * (nd - ax - ki)
            v = f.load(i_acc.buffer, f.linear(i_acc.offset, icoeffs, idx))
            zero = ir.Constant(I64, 0)
            v = b.select(b.icmp_signed("<", v, zero), b.add(v, size), v)
            self._fail(f, b.or_(b.icmp_signed("<", v, zero), b.icmp_signed(">=", v, size)))
            xc = list(x_acc.coeffs[:ax]) + [0] * ki + list(x_acc.coeffs[ax + 1:])
            lin = f.linear(x_acc.offset, xc, idx)
            lin = b.add(lin, b.mul(v, f.size(x_acc.coeffs[ax])))
            f.store(out, f.linear(0, ostr, idx), f.load(x_acc.buffer, lin))

        f.nest(list(range(nd)), extents, idx, body)

    def _lib_take_grad(self, f: _Fn, c: LibCall) -> None:
        b = f.b
        (g_acc, i_acc), (g_shape, i_shape) = c.inputs, c.input_shapes
        ax = c.attrs["axis"]
        out = c.output
        self._fill(f, out, _const(out.dtype, 0))
        size = f.size(c.attrs["size"])
        zero = ir.Constant(I64, 0)
        with b.if_then(b.icmp_signed("<=", size, zero)):
            b.ret(ir.Constant(I32, 0))
        nd = len(g_shape)
        ki = len(i_shape)
        extents = {a: f.size(s) for a, s in enumerate(g_shape)}
        ostr = contiguous_strides(out.shape)
        idx: dict[int, ir.Value] = {}

        def body() -> None:
            icoeffs = [0] * ax + list(i_acc.coeffs) + [0] * (nd - ax - ki)
            v = f.load(i_acc.buffer, f.linear(i_acc.offset, icoeffs, idx))
            v = b.srem(b.add(b.srem(v, size), size), size)
            oc = list(ostr[:ax]) + [0] * ki + list(ostr[ax + 1:])
            lin = b.add(f.linear(0, oc, idx), b.mul(v, f.size(ostr[ax])))
            gv = f.load(g_acc.buffer, f.linear(g_acc.offset, g_acc.coeffs, idx))
            f.store(out, lin, b.fadd(f.load(out, lin), gv))

        f.nest(list(range(nd)), extents, idx, body)

    def _lib_one_hot(self, f: _Fn, c: LibCall) -> None:
        b = f.b
        (l_acc,), (l_shape,) = c.inputs, c.input_shapes
        out = c.output
        depth = c.attrs["depth"]
        nd = len(l_shape)
        extents = {a: f.size(s) for a, s in enumerate(l_shape)}
        extents[nd] = ir.Constant(I64, depth)
        ostr = contiguous_strides(out.shape)
        idx: dict[int, ir.Value] = {}
        dv = ir.Constant(I64, depth)
        zero = ir.Constant(I64, 0)

        def body() -> None:
            v = f.load(l_acc.buffer, f.linear(l_acc.offset, l_acc.coeffs, idx))
            self._fail(f, b.or_(b.icmp_signed("<", v, zero), b.icmp_signed(">=", v, dv)))

            def inner(j: ir.Value) -> None:
                idx[nd] = j
                hit = b.icmp_signed("==", v, j)
                f.store(out, f.linear(0, ostr, idx), convert(b, hit, "bool", out.dtype))

            f.loop(zero, dv, inner)

        f.nest(list(range(nd)), extents, idx, body)

    # -- the entry points ----------------------------------------------------------------------
    def _entry_objects(self, program: ir.Function) -> None:
        """``program_objects(inputs, outputs, frame, dims)``: the inputs and outputs are
        tuples of NumPy arrays; their data pointers are read from the objects (offsets in
        :data:`OBJECT_LAYOUT`, checked by the run time before it uses this entry) into the
        frame, then the program runs. An input that is not C-contiguous and aligned returns
        :data:`ERR_LAYOUT` before anything is written."""
        fn = ir.Function(self.module, ir.FunctionType(I32, [PTR, PTR, PTR, PTR]),
                         self.info.entry + "_objects")
        ins, outs, frame, dims = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        lay = OBJECT_LAYOUT
        need = ir.Constant(I32, lay["c_contiguous"] | lay["aligned"])

        def item(tup: ir.Value, k: int) -> ir.Value:
            p = b.gep(tup, [ir.Constant(I64, lay["tuple_items"] + 8 * k)], source_etype=I8)
            return b.load(p, typ=PTR)

        def field_at(obj: ir.Value, offset: int, t: ir.Type) -> ir.Value:
            return b.load(b.gep(obj, [ir.Constant(I64, offset)], source_etype=I8), typ=t)

        bad = ir.Constant(I1, 0)
        for k in range(self.layout.n_inputs):
            flags = field_at(item(ins, k), lay["flags"], I32)
            bad = b.or_(bad, b.icmp_unsigned("!=", b.and_(flags, need), need))
        with b.if_then(bad, likely=False):
            b.ret(ir.Constant(I32, ERR_LAYOUT))
        for k in range(self.layout.n_inputs):
            slot = b.gep(frame, [ir.Constant(I64, k)], source_etype=PTR)
            b.store(field_at(item(ins, k), lay["data"], PTR), slot)
        for j in range(self.layout.n_outputs):
            slot = b.gep(frame, [ir.Constant(I64, self.layout.n_inputs + j)], source_etype=PTR)
            b.store(field_at(item(outs, j), lay["data"], PTR), slot)
        b.ret(b.call(program, [frame, dims]))

    def _entry(self) -> None:
        fn = ir.Function(self.module, ir.FunctionType(I32, [PTR, PTR]), self.info.entry)
        frame, dims = fn.args
        f = _Fn(fn, dims, {}, self.layout, self.lp.symbols)
        b = f.b
        null = ir.Constant(PTR, None)
        # kernels of other modules are called through a table the loader fills
        linked = {k: j for j, k in enumerate(k for k in range(len(self.kfns)) if self.part_of[k] != 0)}
        table = None
        if linked:
            table = ir.GlobalVariable(self.module, ir.ArrayType(PTR, len(linked)), LINK_TABLE)
            table.initializer = ir.Constant(table.value_type, None)
            names = bytearray(",".join(self.info.kernels[k].name for k in linked).encode() + b"\0")
            text = ir.GlobalVariable(self.module, ir.ArrayType(I8, len(names)), LINK_NAMES)
            text.initializer = ir.Constant(text.value_type, names)
            text.global_constant = True
        kernel_type = ir.FunctionType(I32, [PTR, PTR, I64, I64, PTR])
        for k, kinfo in enumerate(self.info.kernels):
            hi = f.size(kinfo.extent)
            callee: Any
            if table is None or self.part_of[k] == 0:
                kfn = self.kfns[k]
                assert kfn is not None
                callee = kfn[0]
            else:
                slot = b.gep(table, [ir.Constant(I64, 0), ir.Constant(I64, linked[k])],
                             source_etype=table.value_type)
                # a pointer typed with the kernel's signature (printed as ``ptr``), which
                # is what llvmlite needs to call through it
                callee = b.load(slot, typ=ir.PointerType(kernel_type))
            r = b.call(callee, [frame, dims, ir.Constant(I64, 0), hi, null])
            fail = b.icmp_signed("!=", r, ir.Constant(I32, 0))
            with b.if_then(fail, likely=False):
                b.ret(b.or_(ir.Constant(I32, (k + 1) << 4), r))
        b.ret(ir.Constant(I32, 0))
        self._entry_objects(fn)
        from symgrad.backends.llvm import fastcall  # it builds on this module's types

        fast = fastcall.FastLayout.of(self.lp) if fastcall.available() else None
        if fast is not None:
            fastcall.emit(self.module, fn, fast, self.info.entry + "_fast")
