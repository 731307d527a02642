"""Transcendental functions for kernel bodies.

``emit_math(builder, name, args)`` returns ``name(*args)`` for float or double values,
from the vectorized polynomial library (:mod:`symgrad.backends.llvm.vecmath`: inline IR,
no calls, documented accuracy). ``fallback_emit_math`` is the stand-in kept for
comparison: LLVM intrinsics and C library calls, exact to the C library's accuracy, but
their loops do not vectorize.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from llvmlite import ir

from symgrad.backends.llvm import vecmath

MATH_FUNCTIONS = ("exp", "log", "log1p", "expm1", "tanh", "sigmoid", "softplus", "erf", "sin",
                  "cos", "pow")

_INTRINSIC = {"exp": "llvm.exp", "log": "llvm.log", "sin": "llvm.sin", "cos": "llvm.cos",
              "tanh": "llvm.tanh", "pow": "llvm.pow"}
_LIBM = {"log1p": "log1p", "expm1": "expm1", "erf": "erf"}


@dataclass(frozen=True)
class MathMode:
    """How the kernel being emitted into a module calls the math (set by the code generator
    with :func:`kernel_math`).

    shared
        Call one out-of-line copy per function (:func:`shared_emit_math`), for kernels with
        more than :data:`INLINE_MATH_LIMIT` calls.
    latency_bound
        Inline vecmath's latency-bound variant (see ``vecmath.emit_math``).
    widths
        The vector widths the loop may use, for the shared copies' vector variants; None:
        around the native width.
    """

    shared: bool = False
    latency_bound: bool = False
    widths: tuple[int, ...] | None = None


_DEFAULT_MODE = MathMode()
_MODES: weakref.WeakKeyDictionary[ir.Module, MathMode] = weakref.WeakKeyDictionary()


def math_mode(module: ir.Module) -> MathMode:
    """The mode of the kernel being emitted into ``module`` (the default outside one)."""
    return _MODES.get(module, _DEFAULT_MODE)


@contextmanager
def kernel_math(module: ir.Module, mode: MathMode) -> Iterator[None]:
    """Math emitted into ``module`` inside the block follows ``mode``."""
    _MODES[module] = mode
    try:
        yield
    finally:
        del _MODES[module]


def _libm(builder: ir.IRBuilder, base: str, x: ir.Value) -> ir.Value:
    module = builder.module
    single = x.type == ir.FloatType()
    name = base + ("f" if single else "")
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(x.type, [x.type]), name)
        fn.attributes.add("nounwind")
        fn.attributes.add("readnone")
    return builder.call(fn, [x])


def _intrinsic(builder: ir.IRBuilder, name: str, args: Sequence[ir.Value]) -> ir.Value:
    t = args[0].type
    full = f"{name}.{'f32' if t == ir.FloatType() else 'f64'}"
    fn = builder.module.globals.get(full)
    if fn is None:
        fn = ir.Function(builder.module, ir.FunctionType(t, [a.type for a in args]), full)
    return builder.call(fn, list(args))


def fallback_emit_math(builder: ir.IRBuilder, name: str, args: Sequence[ir.Value]) -> ir.Value:
    """Intrinsics and C library calls (the stand-in until the vectorized library)."""
    if name in _INTRINSIC:
        return _intrinsic(builder, _INTRINSIC[name], args)
    if name in _LIBM:
        return _libm(builder, _LIBM[name], args[0])
    (x,) = args
    zero = ir.Constant(x.type, 0.0)
    one = ir.Constant(x.type, 1.0)
    if name == "sigmoid":
        e = _intrinsic(builder, "llvm.exp", [builder.fneg(_intrinsic(builder, "llvm.fabs", [x]))])
        d = builder.fadd(one, e)
        pos = builder.fdiv(one, d)
        neg = builder.fdiv(e, d)
        return builder.select(builder.fcmp_ordered(">=", x, zero), pos, neg)
    if name == "softplus":
        e = _intrinsic(builder, "llvm.exp", [builder.fneg(_intrinsic(builder, "llvm.fabs", [x]))])
        m = builder.select(builder.fcmp_ordered(">", x, zero), x, zero)
        return builder.fadd(m, _libm(builder, "log1p", e))
    raise KeyError(f"no math function {name!r}")


def vector_emit_math(builder: ir.IRBuilder, name: str, args: Sequence[ir.Value]) -> ir.Value:
    """The polynomial library, through one always-inline function per (name, type, variant)
    so that the unoptimized IR stays small; the inliner expands it before the vectorizer
    runs; the latency-bound variant in a kernel whose mode asks for it (:class:`MathMode`)."""
    latency = math_mode(builder.module).latency_bound
    fn = vecmath.math_function(builder.module, name, args[0].type, latency)
    return builder.call(fn, list(args))


def _type_name(t: ir.Type) -> str:
    if isinstance(t, ir.VectorType):
        return f"v{t.count}{_type_name(t.element)}"
    return "f32" if t == ir.FloatType() else "f64"


def _define(module: ir.Module, name: str, fn: str, ty: ir.Type) -> ir.Function:
    # always vecmath's default variant: the function is readnone, and latency-bound code
    # loads its constants
    func = ir.Function(module, ir.FunctionType(ty, [ty] * vecmath.ARITY[fn]), name)
    func.attributes.add("noinline")
    func.attributes.add("nounwind")
    func.attributes.add("readnone")
    b = ir.IRBuilder(func.append_basic_block("entry"))
    b.ret(vecmath.emit_math(b, fn, list(func.args)))
    return func


def shared_emit_math(builder: ir.IRBuilder, name: str, args: Sequence[ir.Value]) -> ir.Value:
    """A call to one out-of-line copy of the function per module, with vector variants the
    loop vectorizer substitutes (VFABI ``vector-function-abi-variant``): large kernels call
    math functions instead of inlining each use, which keeps LLVM's time and the object
    code small (the vector variants are kept alive by external linkage)."""
    module = builder.module
    ty = args[0].type
    scalar_name = f"symgrad.math.{name}.{_type_name(ty)}"
    scalar = module.globals.get(scalar_name)
    if scalar is None:
        scalar = _define(module, scalar_name, name, ty)
        scalar.linkage = "internal"
    # the widths the loop may use: set by the code generator when it fixes the loop's
    # width, else around the native one
    widths = math_mode(module).widths
    if not widths:
        native = vecmath.preferred_width("float32" if ty == ir.FloatType() else "float64")
        widths = (native // 2, native, native * 2)
    variants = []
    for width in widths:
        if width < 2:
            continue
        # vector variants are external (so they stay until the vectorizer uses them):
        # their names carry the module's, as several objects may share one engine
        vname = f"{module.name}.math.{name}.{_type_name(ir.VectorType(ty, width))}"
        if vname not in module.globals:
            _define(module, vname, name, ir.VectorType(ty, width))
        variants.append(f"_ZGV_LLVM_N{width}{'v' * len(args)}_{scalar_name}({vname})")
    call = builder.call(scalar, list(args))
    # llvmlite knows no string attributes; the set holds what it prints
    set.add(call.attributes, f'"vector-function-abi-variant"="{",".join(variants)}"')
    return call


# Switching libraries is this one line.
emit_math: Callable[[ir.IRBuilder, str, Sequence[ir.Value]], ir.Value] = vector_emit_math

# Kernels with more transcendental calls than this call shared copies (see above).
INLINE_MATH_LIMIT = 12
