"""Vectorizable elementary functions emitted as inline LLVM IR.

``emit_math(builder, fn, args)`` emits branch-free IR (arithmetic, integer bit operations,
compares and selects; no calls except a few LLVM intrinsics that every vector unit lowers to
single instructions: ``fmuladd``, ``fabs``, ``copysign``, ``sqrt``, ``floor``, ``ceil``,
``trunc``, ``roundeven``) for ``float``, ``double``, ``<N x float>`` and ``<N x double>``
values. A loop that calls it on scalars still vectorizes, and a loop that calls it on vectors
needs no libm. Accuracy bounds and special values are listed in ``docs/vecmath.md`` and in
:data:`ULP_BOUNDS`; the tests in ``tests/test_vecmath.py`` assert them.

Algorithms (range reduction, then a minimax polynomial):

- exp, expm1: ``x = k ln2 + r`` (Cody-Waite, ``|r| <= ln2/2``), ``expm1(r) = r + r^2 Q(r)``;
  the result is scaled by ``2^k`` as two factors so that overflow gives inf and underflow
  gives the correctly scaled denormal or zero.
- log, log1p: ``x = 2^e m`` with ``m`` in ``[sqrt(1/2), sqrt(2))``; float32 uses a polynomial
  in ``f = m - 1``, float64 the ``s = f / (2 + f)`` form; log1p adds the rounding error of
  ``1 + x`` back as a first-order correction.
- sigmoid, softplus, tanh: from ``t = e^(-|x|)`` (never overflows): ``1/(1+t)`` or
  ``t/(1+t)``; ``max(x, 0) + log1p(t)`` (``1 + t = 2^e (1 + f)`` by a select, no
  exponent extraction); ``|x| + |x|^3 P(x^2)`` for ``|x| < 0.625``, else
  ``n - t^2 n / (1 + t^2)`` with ``n = -m (2 + m) = 1 - t^2`` and ``m = expm1(-|x|)`` rebuilt
  from the same reduction, signed by ``copysign``. All three emit the same instructions for
  ``t``, so LLVM's CSE leaves one exp polynomial when they appear in one kernel.
- erf: ``x + x E(x^2)`` for ``|x| < 0.875``, else ``1 - e^(-x^2) R(|x|)`` with ``R`` fitted
  to ``erfc(t) e^(t^2)``.
- sin, cos: ``x = q pi/2 + r`` in double precision with pi/2 in four parts (exact for
  ``|q| < 2^26``), then sine and cosine polynomials on ``|r| <= pi/4`` chosen by quadrant.
- pow: ``exp(y log|x|)`` with C99 special cases; float32 computes the core in double,
  float64 carries ``log|x|`` and ``y log|x|`` as double-double (Dekker products, no FMA
  needed), so the result keeps its accuracy when ``|y log|x||`` is large.

Polynomials are evaluated by Horner's rule. For a loop bound by the latency of each
element's chain (``latency_bound``: a body so large that the loop interleaves few vectors),
exp's and float32 log's polynomials, which sit back to back on the chain from x to softplus,
use Estrin's scheme instead (a chain of about log2 of the degree), and the float constants
are loaded from internal globals instead of written as literals (see :meth:`_Emit.c`).

The coefficients below were derived by ``tools/vecmath_coeffs.py`` (weighted Remez exchange
in mpmath, then coefficient-by-coefficient rounding to the target format); the comment above
each set gives the interval and the weighted error of the rounded set.

Floating-point flags: the only contraction used is ``llvm.fmuladd`` in polynomial
evaluation and reductions, where the error bounds hold whether or not the target fuses it.
No instruction carries ``nnan``, ``ninf``, ``nsz``, ``reassoc``, ``arcp`` or ``afn``: the
special-value selects and the exact error-free transformations (Cody-Waite reduction,
``1 + x`` correction, Dekker products) depend on IEEE semantics. For the same reason the
enclosing function must not carry ``"unsafe-fp-math"``/``"no-nans-fp-math"``-style
attributes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from llvmlite import ir

__all__ = [
    "ACCURATE_TRIG_RANGE",
    "ARITY",
    "MATH_FUNCTIONS",
    "ULP_BOUNDS",
    "emit_math",
    "math_function",
    "preferred_width",
    "vector_type",
]

# ---- public tables -----------------------------------------------------------------------

#: name -> number of arguments
ARITY: dict[str, int] = {
    "exp": 1,
    "expm1": 1,
    "log": 1,
    "log1p": 1,
    "tanh": 1,
    "sigmoid": 1,
    "softplus": 1,
    "erf": 1,
    "sin": 1,
    "cos": 1,
    "pow": 2,
    "sqrt": 1,
    "fabs": 1,
    "floor": 1,
    "ceil": 1,
    "trunc": 1,
    "round": 1,
}

#: every function name ``emit_math`` accepts
MATH_FUNCTIONS: tuple[str, ...] = tuple(ARITY)

#: |x| up to which sin and cos meet their bound (both dtypes); beyond it the result is a value
#: in [-1, 1] without accuracy guarantee, and +-inf or nan give nan
ACCURATE_TRIG_RANGE = 1.0e8

#: documented max error in ulp (of the exact result, measured where it is a normal number;
#: denormal results are within the same count of units of the smallest denormal) per
#: (function, dtype); sqrt, fabs, floor, ceil, trunc and round are exact (0.5 ulp for sqrt)
ULP_BOUNDS: dict[tuple[str, str], float] = {
    ("exp", "float32"): 1.5, ("exp", "float64"): 1.5,
    ("expm1", "float32"): 2.0, ("expm1", "float64"): 2.5,
    ("log", "float32"): 1.5, ("log", "float64"): 1.5,
    ("log1p", "float32"): 1.5, ("log1p", "float64"): 1.5,
    ("tanh", "float32"): 2.0, ("tanh", "float64"): 2.0,
    ("sigmoid", "float32"): 3.0, ("sigmoid", "float64"): 3.0,
    ("softplus", "float32"): 2.0, ("softplus", "float64"): 2.5,
    ("erf", "float32"): 1.5, ("erf", "float64"): 1.5,
    ("sin", "float32"): 2.0, ("sin", "float64"): 2.5,
    ("cos", "float32"): 2.0, ("cos", "float64"): 3.0,
    ("pow", "float32"): 1.0, ("pow", "float64"): 1.5,
}


def vector_type(dtype: str, width: int | None = None) -> ir.Type:
    """The LLVM type for ``dtype`` ("float32" or "float64"), a vector when ``width`` is given."""
    if dtype == "float32":
        elem: ir.Type = ir.FloatType()
    elif dtype == "float64":
        elem = ir.DoubleType()
    else:
        raise TypeError(f"vecmath: dtype must be float32 or float64, got {dtype!r}")
    if width is None:
        return elem
    if width < 1:
        raise ValueError(f"vecmath: vector width must be positive, got {width}")
    return ir.VectorType(elem, width)


def preferred_width(dtype: str, features: str | None = None) -> int:
    """Lanes of one native vector register for ``dtype`` on the target CPU (or given features).

    ``features`` is an LLVM feature string such as ``llvm.get_host_cpu_features().flatten()``
    (default: the extensions of the target CPU, ``SYMGRAD_LLVM_CPU``): AVX-512 gives 16
    float32 / 8 float64 lanes, AVX 8 / 4, anything else 4 / 2.
    """
    if features is None:
        from symgrad.backends.llvm import jit

        features = jit.target_cpu().isa
    flags = set(features.split(","))
    bits = 512 if "+avx512f" in flags else 256 if "+avx" in flags else 128
    return bits // (32 if dtype == "float32" else 64)


def emit_math(builder: ir.IRBuilder, fn: str, args: Sequence[ir.Value],
              latency_bound: bool = False) -> ir.Value:
    """Emit ``fn(*args)`` inline at the builder's position and return the result.

    Parameters
    ----------
    builder
        Positioned where the instructions go; constants and intrinsic declarations are added
        to ``builder.module``.
    fn
        One of :data:`MATH_FUNCTIONS`.
    args
        ``ARITY[fn]`` values, all of one type: ``float``, ``double``, ``<N x float>`` or
        ``<N x double>`` (any N). The result has the same type.
    latency_bound
        For a loop whose speed is bound by the latency of each element's chain rather than
        by the number of instructions: a body so large that the loop interleaves few vectors
        (the code generator passes it for such kernels). The exp and float32 log polynomials
        then take Estrin's scheme (one or two more multiplies each, a chain half as long or
        less), and the coefficients and other float constants (all but 0, +-1/2, +-1, +-2,
        inf and nan) are loaded from internal globals (see :meth:`_Emit.c`); such code reads
        memory, so it must not sit in a function marked ``readnone``. The results stay within
        the same bounds.
    """
    if fn not in ARITY:
        raise ValueError(f"vecmath: unknown function {fn!r}; supported: {', '.join(MATH_FUNCTIONS)}")
    args = list(args)
    if len(args) != ARITY[fn]:
        raise TypeError(f"vecmath: {fn} takes {ARITY[fn]} argument(s), got {len(args)}")
    ty = args[0].type
    for a in args[1:]:
        if a.type != ty:
            raise TypeError(f"vecmath: {fn} arguments must share one type, got {ty} and {a.type}")
    m = _Emit(builder, ty, latency_bound)
    if fn in _INTRINSICS:
        return m.intr(_INTRINSICS[fn], *args)
    method = getattr(m, "f_" + fn)
    return method(*args)


def math_function(module: ir.Module, fn: str, ty: ir.Type, latency_bound: bool = False) -> ir.Function:
    """An internal, always-inline function ``ty fn(ty, ...)`` wrapping :func:`emit_math`.

    Defined once per (module, fn, type, latency_bound) and reused; call it from generated
    code to keep the unoptimized IR small (the inliner expands it before the loop vectorizer
    runs).
    """
    name = f"symgrad.vecmath.{fn}.{_mangle(ty)}{'.latency' if latency_bound else ''}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    if fn not in ARITY:
        raise ValueError(f"vecmath: unknown function {fn!r}; supported: {', '.join(MATH_FUNCTIONS)}")
    func = ir.Function(module, ir.FunctionType(ty, [ty] * ARITY[fn]), name=name)
    func.linkage = "internal"
    func.attributes.add("alwaysinline")
    func.attributes.add("nounwind")
    b = ir.IRBuilder(func.append_basic_block("entry"))
    b.ret(emit_math(b, fn, list(func.args), latency_bound=latency_bound))
    return func


# ---- constants ---------------------------------------------------------------------------


def _h(*values: str) -> tuple[float, ...]:
    return tuple(float.fromhex(v) for v in values)


class _K32:
    """float32 constants."""

    mant = 23
    bias = 127
    bits = 32
    min_normal = 2.0**-126
    shifter = 1.5 * 2.0**23  # x + shifter - shifter rounds to an integer for |x| < 2^22
    log2e = 1.4426950408889634
    ln2 = _h("0x1.62e4000000000p-1", "0x1.7f7d1c0000000p-20")  # 16-bit high part: |k| < 2^8
    sqrt_half_bits = 0x3F3504F3
    # exp/expm1 inputs are clamped to these; beyond, the results are 0, -1 or inf anyway
    exp_lo, exp_hi, expm1_lo = -110.0, 100.0, -40.0
    erf_end = 4.0  # erf rounds to +-1 beyond 3.92
    # exp_q_f32: (e^r - 1 - r) / r^2 on [-0.346658, 0.346658], 5 terms, weighted error 2^-26.0
    exp_q = _h("0x1.fffffe0000000p-2", "0x1.5554aa0000000p-3", "0x1.5557b20000000p-5",
               "0x1.122cd00000000p-7", "0x1.6a96620000000p-10")
    # log1p_p_f32: (log1p(f) - f + f^2/2) / f^3 on [-0.292894, 0.414214], 8 terms, 2^-27.3
    log1p_p = _h("0x1.5555540000000p-2", "-0x1.0002280000000p-2", "0x1.99a0360000000p-3",
                 "-0x1.5472260000000p-3", "0x1.22d5dc0000000p-3", "-0x1.0d81ba0000000p-3",
                 "0x1.0575dc0000000p-3", "-0x1.39070c0000000p-4")
    # log1p_unit_p_f32: the same function on [-0.25, 0.5] (1 + 2^-20) (softplus's log1p),
    # 8 terms, 2^-26.7 (9 terms would give 2^-30.0)
    log1p_unit_p = _h("0x1.5555a40000000p-2", "-0x1.fffdb40000000p-3", "0x1.99646e0000000p-3",
                      "-0x1.5557dc0000000p-3", "0x1.2996c40000000p-3", "-0x1.0a7cde0000000p-3",
                      "0x1.937ae20000000p-4", "-0x1.463dd00000000p-5")
    # sin_s_f32: (sin r - r) / r^3 in z = r^2 on [0, 0.616851], 3 terms, 2^-27.9
    sin_s = _h("-0x1.5555460000000p-3", "0x1.1107780000000p-7", "-0x1.9954080000000p-13")
    # cos_c_f32: (cos r - 1 + z/2) / z^2 on [0, 0.616851], 3 terms, 2^-33.0
    cos_c = _h("0x1.55554a0000000p-5", "-0x1.6c0c280000000p-10", "0x1.99e80c0000000p-16")
    # tanh_t_f32: (tanh x - x) / x^3 in z = x^2 on [0, 0.390625], 5 terms, 2^-27.7
    tanh_t = _h("-0x1.5555320000000p-2", "0x1.1106f60000000p-3", "-0x1.b835a40000000p-5",
                "0x1.51f8ce0000000p-6", "-0x1.750ce20000000p-8")
    # erf_e_f32: erf(x)/x - 1 in z = x^2 on [0, 0.765625], 6 terms, 2^-26.1
    erf_e = _h("0x1.06eba60000000p-3", "-0x1.8126ec0000000p-2", "0x1.ce1b860000000p-4",
               "-0x1.b69b8e0000000p-6", "0x1.479c180000000p-8", "-0x1.3ba5aa0000000p-11")
    # erfcx_f32: erfc(t) e^(t^2) in (t - 2.4375) on [0.875, 4], 9 terms, 2^-27.2
    erfcx = _h("0x1.b974cc0000000p-3", "-0x1.3da9a40000000p-4", "0x1.b13ff20000000p-6",
               "-0x1.2301d80000000p-7", "0x1.4441320000000p-9", "-0x1.474ef40000000p-11",
               "0x1.a6d3920000000p-11", "0x1.7fe4b40000000p-12", "0x1.3131020000000p-13")
    erfcx_center = 2.4375


class _K64:
    """float64 constants."""

    mant = 52
    bias = 1023
    bits = 64
    min_normal = 2.0**-1022
    shifter = 1.5 * 2.0**52
    log2e = 1.4426950408889634
    ln2 = _h("0x1.62e42fefa3800p-1", "0x1.ef35793c76730p-45")  # 42-bit high part: |k| < 2^11
    sqrt_half_bits = 0x3FE6A09E667F3BCD
    exp_lo, exp_hi, expm1_lo = -760.0, 720.0, -80.0
    erf_end = 6.0  # erf rounds to +-1 beyond 5.93
    two_over_pi = 0.6366197723675814
    # pi/2 = sum of these; the first three have 27 significant bits: q * part is exact
    # for |q| < 2^26, which bounds the accurate range of sin and cos
    pio2 = _h("0x1.921fb54000000p+0", "0x1.10b4610000000p-30", "0x1.a626330000000p-58",
              "0x1.45c06e0e68948p-86")
    pi4_max = 0.7853981633974483 * (1 + 2.0**-10)
    two_thirds = _h("0x1.5555555555555p-1", "0x1.5555555555555p-55")
    # exp_q_f64: [-0.346658, 0.346658], 10 terms, 2^-54.7
    exp_q = _h("0x1.0000000000004p-1", "0x1.555555555553bp-3", "0x1.555555555246ap-5",
               "0x1.1111111118973p-7", "0x1.6c16c17e8385bp-10", "0x1.a01a0176f7b38p-13",
               "0x1.a019a84d1e066p-16", "0x1.71de8438ba9e9p-19", "0x1.28a1212292fcap-22",
               "0x1.ae7124c1147bbp-26")
    # log_g_f64: (2 atanh(s)/s - 2) / z in z = s^2 on [0, 0.0294516], 7 terms, 2^-59.5
    log_g = _h("0x1.5555555555592p-1", "0x1.999999997fefcp-2", "0x1.24924941e4993p-2",
               "0x1.c71c521057642p-3", "0x1.74663e014f712p-3", "0x1.39a1c67959338p-3",
               "0x1.2f0552e015c68p-3")
    # log_h_f64: (2 atanh(s)/s - 2 - 2z/3) / z^2 on [0, 0.0294516], 7 terms, 2^-66.3
    log_h = _h("0x1.9999999999b30p-2", "0x1.2492492457d2fp-2", "0x1.c71c722d6ef4ap-3",
               "0x1.745ce9def0b26p-3", "0x1.3b1eed169f05bp-3", "0x1.0f7fcbcc6c0e5p-3",
               "0x1.0e43f06daed81p-3")
    # sin_s_f64: [0, 0.616851], 6 terms, 2^-57.9
    sin_s = _h("-0x1.5555555555548p-3", "0x1.111111110f730p-7", "-0x1.a01a019be9218p-13",
               "0x1.71de35552b6b4p-19", "-0x1.ae5e4b83fba24p-26", "0x1.5d8b559b5f606p-33")
    # cos_c_f64: [0, 0.616851], 6 terms, 2^-63.9
    cos_c = _h("0x1.555555555554bp-5", "-0x1.6c16c16c15015p-10", "0x1.a01a019c8f254p-16",
               "-0x1.27e4f7f191486p-22", "0x1.1ee9dbcefb0dbp-29", "-0x1.8fa684864fe49p-37")
    # tanh_t_f64: [0, 0.390625], 11 terms, 2^-56.4
    tanh_t = _h("-0x1.55555555554ffp-2", "0x1.111111110ac94p-3", "-0x1.ba1ba1b503b01p-5",
                "0x1.664f477a63b0ep-6", "-0x1.226e161fcf94ap-7", "0x1.d6cf26878513fp-9",
                "-0x1.7d689385a109cp-10", "0x1.3365ac6576a4ep-11", "-0x1.df523ce6ef9b0p-13",
                "0x1.4389c35190919p-14", "-0x1.0d98b97bc50e9p-16")
    # erf_e_f64: erf(x)/x - 1 on [0, 0.765625], 11 terms, 2^-55.3
    erf_e = _h("0x1.06eba8214db68p-3", "-0x1.812746b03796dp-2", "0x1.ce2f21a03c3b5p-4",
               "-0x1.b82ce3106d82fp-6", "0x1.565bccb5af7a3p-8", "-0x1.c02da2ffbfae3p-11",
               "0x1.f9a11ea5163fep-14", "-0x1.f4aa4b031b9b3p-17", "0x1.b7e84b924b97ap-20",
               "-0x1.4f7a2da25b1fep-23", "0x1.6783fbc1c7461p-27")
    # erfcx_f64: erfc(t) e^(t^2) in (t - 3.4375) on [0.875, 6], 22 terms, 2^-56.7
    erfcx = _h("0x1.436adf6072a91p-3", "-0x1.5db3a1a7be17ep-5", "0x1.6e4807380299cp-7",
               "-0x1.74927cfa7ccb9p-9", "0x1.70d104b5ed5f4p-11", "-0x1.63f869242318fp-13",
               "0x1.4f87d3e3935ebp-15", "-0x1.34ec276019926p-17", "0x1.17febf70840dbp-19",
               "-0x1.f37d109847cacp-22", "0x1.6be13bd8b0703p-24", "-0x1.126f3867bdd77p-25",
               "0x1.61c3555051042p-28", "0x1.8385c2d675f6dp-28", "0x1.542b72069f0b1p-28",
               "0x1.3047f4107763fp-30", "-0x1.13378e17670a1p-31", "-0x1.23b3b0edcb74fp-31",
               "-0x1.cfcebd36b74e3p-33", "-0x1.a45586a490933p-35", "-0x1.aaefbac7a344dp-38",
               "-0x1.89023d9cad3f2p-42")
    erfcx_center = 3.4375


# float constants that stay literal in latency-bound code (see _Emit.c): x86 folds them into
# other instructions, or LLVM simplifies with them
_LITERAL = frozenset({0.0, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0})
_TANH_SPLIT = 0.625
_LN2_F32 = struct.unpack("<f", struct.pack("<f", 0.6931471805599453))[0]  # ln 2 rounded to float32
# exp of x <= 0 scales by 2^(k + B) in the exponent field, then by 2^-B (see exp_parts):
# p 2^(k + B) must be normal down to k = exp_lo / ln2 (B >= 34 for f32, 75 for f64), and
# 2^-B normal too
_EXP_NONPOS_BIAS = {32: 64, 64: 128}
assert all(round(K.exp_lo * K.log2e) - 1 + _EXP_NONPOS_BIAS[K.bits] > 2 - K.bias
           and _EXP_NONPOS_BIAS[K.bits] < K.bias - 1 for K in (_K32, _K64))
_LOG1P_UNIT_SPLIT = 0.41421356237309503  # sqrt(2) - 1 (the polynomials tolerate rounding)
_ERF_SPLIT = 0.875

_INTRINSICS = {
    "sqrt": "sqrt",
    "fabs": "fabs",
    "floor": "floor",
    "ceil": "ceil",
    "trunc": "trunc",
    "round": "roundeven",
}


def _mangle(ty: ir.Type) -> str:
    if isinstance(ty, ir.VectorType):
        return f"v{ty.count}{_mangle(ty.element)}"
    if isinstance(ty, ir.FloatType):
        return "f32"
    if isinstance(ty, ir.DoubleType):
        return "f64"
    if isinstance(ty, ir.IntType):
        return f"i{ty.width}"
    raise TypeError(f"vecmath: unsupported type {ty}")


# ---- the emitter -------------------------------------------------------------------------


class _Emit:
    """Instruction helpers for one floating type (scalar or vector) and the functions."""

    def __init__(self, builder: ir.IRBuilder, ty: ir.Type, latency_bound: bool = False) -> None:
        self.b = builder
        self.ty = ty
        self.latency_bound = latency_bound
        if isinstance(ty, ir.VectorType):
            self.width: int | None = ty.count
            elem = ty.element
        else:
            self.width = None
            elem = ty
        if isinstance(elem, ir.FloatType):
            self.K: type[_K32] | type[_K64] = _K32
        elif isinstance(elem, ir.DoubleType):
            self.K = _K64
        else:
            raise TypeError(f"vecmath: expected float, double or a vector of them, got {ty}")
        self.f64 = self.K is _K64
        self.ity = self._like(ir.IntType(self.K.bits))

    def _like(self, elem: ir.Type) -> ir.Type:
        return elem if self.width is None else ir.VectorType(elem, self.width)

    def other(self, elem: ir.Type) -> _Emit:
        return _Emit(self.b, self._like(elem), self.latency_bound)

    # constants
    def c(self, v: float) -> ir.Value:
        """The constant v (splatted for a vector type).

        In latency-bound code, any v but the few that fold into other instructions is a
        load from an internal global instead of a literal (one global per value and type,
        ``externally_initialized`` so that LLVM cannot fold its value, the load marked
        ``!invariant.load``). A loop hoists such a load and keeps the value in a register,
        or spills it once and reads it as a memory operand where it is used. A literal
        splat is instead rebuilt at each use once registers run short, and in JIT code (the
        large code model) that is two instructions, an address and a broadcast. W1's loop
        went from 140.5 to 134 instructions per 8 elements (docs/vecmath.md). Loops with
        small bodies hoist literal constants into registers anyway.
        """
        if not self.latency_bound or v in _LITERAL or v != v or v in (float("inf"), -float("inf")):
            if self.width is None:
                return ir.Constant(self.ty, v)
            return ir.Constant(self.ty, [v] * self.width)
        elem = self.ty if self.width is None else self.ty.element
        module = self.b.module
        if not self.f64:  # the float32 value it holds names it
            v = struct.unpack("<f", struct.pack("<f", v))[0]
        name = f"symgrad.vecmath.k.{_mangle(elem)}.{float(v).hex()}"
        g = module.globals.get(name)
        if g is None:
            g = ir.GlobalVariable(module, elem, name)
            g.initializer = ir.Constant(elem, v)
            g.linkage = "internal"
            g.storage_class = "externally_initialized"
        value = self.b.load(g, typ=elem)
        value.set_metadata("invariant.load", module.add_metadata([]))
        if self.width is None:
            return value
        i32 = ir.IntType(32)
        one = self.b.insert_element(ir.Constant(self.ty, ir.Undefined), value, ir.Constant(i32, 0))
        return self.b.shuffle_vector(one, ir.Constant(self.ty, ir.Undefined),
                                     ir.Constant(ir.VectorType(i32, self.width), [0] * self.width))

    def i(self, v: int, ity: ir.Type | None = None) -> ir.Constant:
        ity = ity or self.ity
        if isinstance(ity, ir.VectorType):
            return ir.Constant(ity, [v] * ity.count)
        return ir.Constant(ity, v)

    # floating-point arithmetic (no fast-math flags)
    def add(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fadd(a, b)

    def sub(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fsub(a, b)

    def mul(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fmul(a, b)

    def div(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fdiv(a, b)

    def neg(self, a: ir.Value) -> ir.Value:
        return self.b.fneg(a)

    def intr(self, name: str, *args: ir.Value) -> ir.Value:
        ty = args[0].type
        full = f"llvm.{name}.{_mangle(ty)}"
        fn = self.b.module.globals.get(full)
        if fn is None:
            fn = ir.Function(self.b.module, ir.FunctionType(ty, [a.type for a in args]), name=full)
        return self.b.call(fn, list(args))

    def fma(self, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
        """a * b + c, fused where the target has FMA (bounds hold either way)."""
        return self.intr("fmuladd", a, b, c)

    def fabs(self, a: ir.Value) -> ir.Value:
        return self.intr("fabs", a)

    def copysign(self, mag: ir.Value, sgn: ir.Value) -> ir.Value:
        return self.intr("copysign", mag, sgn)

    def poly(self, x: ir.Value, coeffs: Sequence[float]) -> ir.Value:
        """Horner: coeffs[0] + x * (coeffs[1] + x * (...))."""
        acc = self.c(coeffs[-1])
        for c in reversed(coeffs[:-1]):
            acc = self.fma(acc, x, self.c(c))
        return acc

    def chain_poly(self, x: ir.Value, x2: ir.Value, coeffs: Sequence[float]) -> ir.Value:
        """The polynomial of :meth:`poly`, by :meth:`estrin` in latency-bound code (``x2`` =
        x^2), else by Horner's rule (fewer instructions)."""
        return self.estrin(x, x2, coeffs) if self.latency_bound else self.poly(x, coeffs)

    def estrin(self, x: ir.Value, x2: ir.Value, coeffs: Sequence[float]) -> ir.Value:
        """The same polynomial as :meth:`poly` by Estrin's scheme, with ``x2`` = x^2: pairs
        c[2i] + c[2i+1] x, then pairs of those in x^2, x^4, ... The chain is about log2 of
        the degree long instead of the degree, for one multiply per level past x^2."""
        terms: list[ir.Value] = [
            self.fma(self.c(coeffs[i + 1]), x, self.c(coeffs[i])) if i + 1 < len(coeffs)
            else self.c(coeffs[i])
            for i in range(0, len(coeffs), 2)
        ]
        power = x2
        while len(terms) > 1:
            terms = [self.fma(terms[i + 1], power, terms[i]) if i + 1 < len(terms) else terms[i]
                     for i in range(0, len(terms), 2)]
            if len(terms) > 1:
                power = self.mul(power, power)
        return terms[0]

    # compares and selects (ordered: false when an operand is nan)
    def lt(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fcmp_ordered("<", a, b)

    def le(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fcmp_ordered("<=", a, b)

    def gt(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fcmp_ordered(">", a, b)

    def ge(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fcmp_ordered(">=", a, b)

    def eq(self, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.fcmp_ordered("==", a, b)

    def isnan(self, a: ir.Value) -> ir.Value:
        return self.b.fcmp_unordered("uno", a, a)

    def sel(self, cond: ir.Value, a: ir.Value, b: ir.Value) -> ir.Value:
        return self.b.select(cond, a, b)

    def negative(self, v: ir.Value) -> ir.Value:
        """Whether the sign bit of ``v`` (a float or an integer of the float's width) is
        set: x86 blends on that bit alone, so a select on it needs no compare."""
        iv = v if v.type == self.ity else self.bits(v)
        return self.b.icmp_signed("<", iv, self.i(0))

    def below(self, a: ir.Value, bound: float) -> ir.Value:
        """a < bound, for a with its sign bit clear (a nan then gives false) and bound >= 0:
        the bits compared by an integer subtraction whose sign a blend reads (see
        :meth:`negative`)."""
        return self.negative(self.b.sub(self.bits(a), self.bits(self.c(bound))))

    def above(self, a: ir.Value, bound: float) -> ir.Value:
        """a > bound, for a with its sign bit clear (a nan then gives true) and bound >= 0,
        as :meth:`below` does it."""
        return self.negative(self.b.sub(self.bits(self.c(bound)), self.bits(a)))

    def clamp(self, x: ir.Value, lo: float, hi: float) -> ir.Value:
        """Clamp to [lo, hi]; nan stays nan."""
        x = self.sel(self.gt(x, self.c(hi)), self.c(hi), x)
        return self.sel(self.lt(x, self.c(lo)), self.c(lo), x)

    # bits
    def bits(self, x: ir.Value) -> ir.Value:
        return self.b.bitcast(x, self.ity)

    def flt(self, i: ir.Value) -> ir.Value:
        return self.b.bitcast(i, self.ty)

    def pow2(self, k: ir.Value) -> ir.Value:
        """2^k for integer k in the normal exponent range."""
        K = self.K
        return self.flt(self.b.shl(self.b.add(k, self.i(K.bias)), self.i(K.mant)))

    def itof(self, k: ir.Value) -> ir.Value:
        """Small integer (in the float's integer type) to float; through i32 for doubles,
        which every vector unit converts in one instruction."""
        if self.f64:
            k = self.b.trunc(k, self._like(ir.IntType(32)))
        return self.b.sitofp(k, self.ty)

    def ldexp(self, p: ir.Value, k: ir.Value) -> ir.Value:
        """p * 2^k for any k the exp reduction produces: two factors, one rounding."""
        k1 = self.b.ashr(k, self.i(1))
        k2 = self.b.sub(k, k1)
        return self.mul(self.mul(p, self.pow2(k1)), self.pow2(k2))

    # ---- exp family ----------------------------------------------------------------------

    def exp_reduce(self, x: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
        """x = k ln2 + r: returns (r, k as float, k as integer); needs |x / ln2| < 2^21."""
        K = self.K
        s = self.c(K.shifter)
        t = self.fma(x, self.c(K.log2e), s)
        kf = self.sub(t, s)
        ki = self.b.sub(self.bits(t), self.bits(s))
        r = self.fma(kf, self.c(-K.ln2[0]), x)  # exact: k * ln2_hi has trailing zeros
        r = self.fma(kf, self.c(-K.ln2[1]), r)
        return r, kf, ki

    def expm1_poly(self, r: ir.Value) -> ir.Value:
        r2 = self.mul(r, r)
        return self.fma(r2, self.chain_poly(r, r2, self.K.exp_q), r)

    def exp_narrow(self, x: ir.Value) -> ir.Value:
        """exp for x known to lie in [-87, 88] (f32) or [-708, 709] (f64), where 2^k is
        normal: one scaling, no clamps (erf uses it)."""
        r, _, k = self.exp_reduce(x)
        return self.mul(self.add(self.c(1.0), self.expm1_poly(r)), self.pow2(k))

    def exp_parts(self, x: ir.Value, nonpos: bool = False) -> tuple[ir.Value, ir.Value, ir.Value]:
        """(exp(x), expm1(r), k) with x clamped to [exp_lo, exp_hi] and reduced as k ln2 + r
        (``nonpos``: x <= 0 or nan, so only the lower clamp is needed)."""
        K = self.K
        if nonpos:
            x = self.sel(self.lt(x, self.c(K.exp_lo)), self.c(K.exp_lo), x)  # nan stays nan
        else:
            x = self.clamp(x, K.exp_lo, K.exp_hi)
        r, _, k = self.exp_reduce(x)
        em1 = self.expm1_poly(r)
        p = self.add(self.c(1.0), em1)
        if not nonpos:
            return self.ldexp(p, k), em1, k
        # k <= 0: p 2^(k + B) is normal, so its exponent field takes k + B exactly (integer
        # work); one multiply by 2^-B then rounds once where the result is a denormal. A nan
        # x leaves k meaningless: the factor is 2^-B + (x - x), which is 2^-B exactly, or nan
        # for a nan (computed from x alone, so it adds nothing to the chain through p).
        B = _EXP_NONPOS_BIAS[K.bits]
        scaled = self.flt(self.b.add(self.bits(p), self.b.shl(self.b.add(k, self.i(B)), self.i(K.mant))))
        return self.mul(scaled, self.add(self.c(2.0 ** -B), self.sub(x, x))), em1, k

    def f_exp(self, x: ir.Value) -> ir.Value:
        return self.exp_parts(x)[0]

    def f_expm1(self, x: ir.Value) -> ir.Value:
        K = self.K
        r, _, k = self.exp_reduce(self.clamp(x, K.expm1_lo, K.exp_hi))
        em1 = self.expm1_poly(r)
        one = self.c(1.0)
        # k <= 0: 2^k em1 + (2^k - 1); 2^k is normal since k >= expm1_lo / ln2
        t = self.pow2(k)
        neg = self.fma(t, em1, self.sub(t, one))
        # k > 0: (em1 + (1 - 2^-k)) 2^k, no cancellation; 2^-k only matters for small k
        kc = self.b.select(self.b.icmp_signed(">", k, self.i(60)), self.i(60), k)
        tinv = self.pow2(self.b.neg(kc))
        pos = self.ldexp(self.add(em1, self.sub(one, tinv)), k)
        res = self.sel(self.b.icmp_signed("<=", k, self.i(0)), neg, pos)
        return self.sel(self.eq(x, self.c(0.0)), x, res)  # keeps -0

    # ---- log family ----------------------------------------------------------------------

    def decompose(self, x: ir.Value) -> tuple[ir.Value, ir.Value]:
        """x = 2^e m with m in [sqrt(1/2), sqrt(2)) for positive normal x: (e as int, m)."""
        K = self.K
        ix = self.bits(x)
        tmp = self.b.sub(ix, self.i(K.sqrt_half_bits))
        e = self.b.ashr(tmp, self.i(K.mant))
        im = self.b.sub(ix, self.b.and_(tmp, self.i(-(1 << K.mant))))
        return e, self.flt(im)

    def log_core(self, e: ir.Value, m: ir.Value, corr: ir.Value | None) -> ir.Value:
        """e ln2 + log(m) + corr, where corr is a tiny additive correction (or None)."""
        K = self.K
        lm = self.log1p_small(self.sub(m, self.c(1.0)), corr)
        ef = self.itof(e)
        return self.fma(ef, self.c(K.ln2[0]), self.fma(ef, self.c(K.ln2[1]), lm))

    def log1p_small(self, f: ir.Value, corr: ir.Value | None,
                    p32: Sequence[float] = _K32.log1p_p) -> ir.Value:
        """log1p(f) + corr for f = m - 1 in [sqrt(1/2) - 1, sqrt(2) - 1], or in the range of
        ``p32`` (float32 only)."""
        if not self.f64:
            # f + f^2 (f P(f) - 1/2): one multiply fewer than f - f^2/2 + f^3 P(f)
            f2 = self.mul(f, f)
            q = self.fma(f, self.chain_poly(f, f2, p32), self.c(-0.5))
            if corr is not None:
                return self.add(f, self.fma(f2, q, corr))
            return self.fma(f2, q, f)
        hfsq = self.mul(self.c(0.5), self.mul(f, f))
        s = self.div(f, self.add(self.c(2.0), f))
        z = self.mul(s, s)
        rz = self.mul(z, self.poly(z, _K64.log_g))
        inner = self.mul(s, self.add(hfsq, rz))
        if corr is not None:
            inner = self.add(inner, corr)
        return self.sub(f, self.sub(hfsq, inner))

    def log_pos(self, x: ir.Value) -> ir.Value:
        """log for finite x > 0 (denormals included); other inputs give garbage."""
        K = self.K
        den = self.lt(x, self.c(K.min_normal))
        xs = self.sel(den, self.mul(x, self.c(2.0 ** (K.mant + 1))), x)
        e, m = self.decompose(xs)
        e = self.b.add(e, self.b.select(den, self.i(-(K.mant + 1)), self.i(0)))
        return self.log_core(e, m, None)

    def f_log(self, x: ir.Value) -> ir.Value:
        inf = float("inf")
        res = self.log_pos(x)
        ok = self.b.and_(self.gt(x, self.c(0.0)), self.lt(x, self.c(inf)))
        special = self.sel(
            self.eq(x, self.c(0.0)),
            self.c(-inf),
            self.sel(self.eq(x, self.c(inf)), self.c(inf), self.c(float("nan"))),
        )
        return self.sel(ok, res, special)

    def log1p_corr(self, e: ir.Value, m: ir.Value, u: ir.Value, c: ir.Value) -> ir.Value:
        """c / u, the first-order correction for the rounding error c of u = 1 + x."""
        if self.f64:
            return self.div(c, u)
        # float32: c 2^-e / m with 1/m ~ 1 - f + f^2 (f = m - 1): the truncation error is
        # below 0.2 ulp of the result; avoids a second division
        ec = self.b.select(self.b.icmp_signed(">", e, self.i(100)), self.i(100), e)
        f = self.sub(m, self.c(1.0))
        inv = self.fma(f, self.sub(f, self.c(1.0)), self.c(1.0))
        return self.mul(self.mul(c, self.pow2(self.b.neg(ec))), inv)

    def log1p_unit(self, t: ir.Value) -> ir.Value:
        """log1p(t) for t in [0, 1] (used by softplus); nan gives nan, whatever its sign.

        No exponent extraction: 1 + t = 2^e (1 + f) with e = 0, f = t below the split, else
        e = 1, f = t/2 - 1/2. float32 splits at 1/2, where f = (t - 1)/2 is exact (a multiple
        of 2^-25 below 1/4 in magnitude) and f in [-1/4, 1/2] has its own polynomial. float64
        splits at sqrt(2) - 1 to stay in the range of the log polynomial; for t < 1/2 that f
        is rounded, and its error c = h - (f + 1/2) (h = t/2; f + 1/2 is exact by Sterbenz)
        enters as c / (1 + f) ~ c (1 - f)."""
        # big: t > split, which the selects below read without a compare (see above()); e ln2
        # with e in {0, 1} is then an addition of a selected constant (or of +0): ln 2 as one
        # float32, or in float64 its two parts, in the order of log_core's two multiply-adds.
        # A nan t gives a nan f either way.
        K = self.K
        zero = self.c(0.0)
        if not self.f64:
            big = self.above(t, 0.5)
            f = self.sel(big, self.fma(t, self.c(0.5), self.c(-0.5)), t)
            lm = self.log1p_small(f, None, _K32.log1p_unit_p)
        else:
            big = self.above(t, _LOG1P_UNIT_SPLIT)
            h = self.mul(t, self.sel(big, self.c(0.5), self.c(1.0)))
            k = self.sel(big, self.c(0.5), zero)
            f = self.sub(h, k)
            cn = self.sub(self.add(f, k), h)  # -c; 0 when f = t
            lm = self.log1p_small(f, self.mul(cn, self.sub(f, self.c(1.0))))
        if not self.f64:
            # ln2 as one float32: its error (1.9e-9) is 0.06 ulp of the smallest result this
            # branch gives (log 1.5 = 0.405), and one addition leaves the chain
            return self.add(lm, self.sel(big, self.c(_LN2_F32), zero))
        lm = self.add(lm, self.sel(big, self.c(K.ln2[1]), zero))
        return self.add(lm, self.sel(big, self.c(K.ln2[0]), zero))

    def f_log1p(self, x: ir.Value) -> ir.Value:
        inf = float("inf")
        one = self.c(1.0)
        u = self.add(one, x)
        c_small = self.sub(x, self.sub(u, one))  # exact when |x| <= 1
        c_big = self.sub(one, self.sub(u, x))  # exact when |x| > 1
        c = self.sel(self.le(self.fabs(x), one), c_small, c_big)
        e, m = self.decompose(u)  # u >= 2^-24 (f32) / 2^-53 (f64) is normal for x > -1
        res = self.log_core(e, m, self.log1p_corr(e, m, u, c))
        ok = self.b.and_(self.gt(x, self.c(-1.0)), self.lt(x, self.c(inf)))
        special = self.sel(
            self.eq(x, self.c(-1.0)),
            self.c(-inf),
            self.sel(self.eq(x, self.c(inf)), self.c(inf), self.c(float("nan"))),
        )
        res = self.sel(ok, res, special)
        return self.sel(self.eq(x, self.c(0.0)), x, res)  # keeps -0

    # ---- logistic family -----------------------------------------------------------------

    def exp_neg_abs_parts(self, x: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
        # sigmoid, softplus and tanh emit exactly this sequence, so LLVM's CSE shares it
        return self.exp_parts(self.neg(self.fabs(x)), nonpos=True)

    def exp_neg_abs(self, x: ir.Value) -> ir.Value:
        return self.exp_neg_abs_parts(x)[0]

    def f_sigmoid(self, x: ir.Value) -> ir.Value:
        t = self.exp_neg_abs(x)
        # x < 0: e^x / (1 + e^x); -0 and a nan with its sign set take this side as well,
        # where t is 1 (as for +0) or nan
        num = self.sel(self.negative(x), t, self.c(1.0))
        return self.div(num, self.add(self.c(1.0), t))

    def f_softplus(self, x: ir.Value) -> ir.Value:
        t = self.exp_neg_abs(x)
        # max(x, 0) as the bits of x with those of negative x cleared (integer work, off the
        # multiply units); a nan that loses its sign here still gives nan through t
        ix = self.bits(x)
        sign = self.b.ashr(ix, self.i(self.K.bits - 1))
        relu = self.flt(self.b.and_(ix, self.b.xor(sign, self.i(-1))))
        return self.add(relu, self.log1p_unit(t))

    def f_tanh(self, x: ir.Value) -> ir.Value:
        K = self.K
        a = self.fabs(x)
        z = self.mul(x, x)
        small = self.fma(self.mul(a, z), self.poly(z, K.tanh_t), a)  # +0 for +-0
        # |x| >= 0.625: with t = e^-|x| (shared with sigmoid and softplus) and
        # m = expm1(-|x|) = 2^k expm1(r) + (2^k - 1) from the same reduction (k <= -1),
        # tanh|x| = (1 - t^2) / (1 + t^2) = -m (2 + m) / (1 + t^2) without cancellation.
        # k is raised to the least normal exponent so that 2^k stays a normal number: that
        # only happens where |x| > 87 (f32) or 708 (f64), and there m rounds to -1 either
        # way and the result to 1 (as it does from |x| = 9.02 or 19.06 on); a nan stays nan.
        t, em1, k = self.exp_neg_abs_parts(x)
        one = self.c(1.0)
        least = self.i(1 - K.bias)
        p = self.pow2(self.b.select(self.b.icmp_signed("<", k, least), least, k))
        m = self.fma(p, em1, self.sub(p, one))
        num = self.neg(self.fma(m, m, self.add(m, m)))  # -m (2 + m), one rounding
        t2 = self.mul(t, t)
        # num / (1 + t^2) = num - t^2 num / (1 + t^2): the rounding of 1 + t^2 only reaches
        # the small second term
        big = self.sub(num, self.div(self.mul(t2, num), self.add(one, t2)))
        # one copysign for both branches, which also gives -0 for -0
        return self.copysign(self.sel(self.below(a, _TANH_SPLIT), small, big), x)

    def f_erf(self, x: ir.Value) -> ir.Value:
        K = self.K
        a = self.fabs(x)
        small = self.fma(x, self.poly(self.mul(x, x), K.erf_e), x)
        ac = self.sel(self.gt(a, self.c(K.erf_end)), self.c(K.erf_end), a)
        r = self.poly(self.sub(ac, self.c(K.erfcx_center)), K.erfcx)
        g = self.exp_narrow(self.neg(self.mul(ac, ac)))
        big = self.copysign(self.fma(self.neg(g), r, self.c(1.0)), x)
        return self.sel(self.lt(a, self.c(_ERF_SPLIT)), small, big)

    # ---- sin, cos ------------------------------------------------------------------------

    def _trig(self, x: ir.Value, cos: bool) -> ir.Value:
        K64 = _K64
        w = self if self.f64 else self.other(ir.DoubleType())
        xw = x if self.f64 else self.b.fpext(x, w.ty)
        s = w.c(K64.shifter)
        t = w.fma(xw, w.c(K64.two_over_pi), s)
        qf = w.sub(t, s)
        q = w.b.sub(w.bits(t), w.bits(s))
        r = xw
        for part in K64.pio2:
            r = w.fma(qf, w.c(-part), r)
        r = w.clamp(r, -K64.pi4_max, K64.pi4_max)  # only acts beyond the accurate range
        if not self.f64:
            r = self.b.fptrunc(r, self.ty)
            q = self.b.trunc(q, self.ity)
        K = self.K
        z = self.mul(r, r)
        sin_r = self.fma(self.mul(r, z), self.poly(z, K.sin_s), r)
        cos_r = self.fma(self.mul(z, z), self.poly(z, K.cos_c), self.fma(z, self.c(-0.5), self.c(1.0)))
        if cos:
            q = self.b.add(q, self.i(1))  # cos x = sin(x + pi/2)
        swap = self.b.icmp_signed("!=", self.b.and_(q, self.i(1)), self.i(0))
        res = self.sel(swap, cos_r, sin_r)
        sign = self.b.shl(self.b.and_(q, self.i(2)), self.i(K.bits - 2))
        return self.flt(self.b.xor(self.bits(res), sign))

    def f_sin(self, x: ir.Value) -> ir.Value:
        return self.sel(self.eq(x, self.c(0.0)), x, self._trig(x, cos=False))  # keeps -0

    def f_cos(self, x: ir.Value) -> ir.Value:
        return self._trig(x, cos=True)

    # ---- pow -----------------------------------------------------------------------------

    def is_int(self, v: ir.Value) -> ir.Value:
        """v (>= 0 or nan) is an integer; inf counts as one (an even one)."""
        big = self.c(2.0**self.K.mant)
        rounded = self.sub(self.add(v, big), big)
        return self.b.or_(self.ge(v, big), self.eq(rounded, v))

    def split(self, a: ir.Value) -> tuple[ir.Value, ir.Value]:
        t = self.mul(a, self.c(134217729.0))  # 2^27 + 1 (Veltkamp)
        hi = self.sub(t, self.sub(t, a))
        return hi, self.sub(a, hi)

    def two_prod(self, a: ir.Value, b: ir.Value) -> tuple[ir.Value, ir.Value]:
        """a * b = p + e exactly (Dekker; |a|, |b| < 2^995)."""
        p = self.mul(a, b)
        ah, al = self.split(a)
        bh, bl = self.split(b)
        e = self.add(self.sub(self.mul(ah, bh), p), self.mul(ah, bl))
        e = self.add(self.add(e, self.mul(al, bh)), self.mul(al, bl))
        return p, e

    def fast_two_sum(self, a: ir.Value, b: ir.Value) -> tuple[ir.Value, ir.Value]:
        """a + b = s + e exactly when |a| >= |b| or a = 0."""
        s = self.add(a, b)
        return s, self.sub(b, self.sub(s, a))

    def log_dd(self, x: ir.Value) -> tuple[ir.Value, ir.Value]:
        """log(x) as hi + lo with about 2^-64 relative error, for finite x > 0 (float64)."""
        K = _K64
        den = self.lt(x, self.c(K.min_normal))
        xs = self.sel(den, self.mul(x, self.c(2.0**54)), x)
        e, m = self.decompose(xs)
        e = self.b.add(e, self.b.select(den, self.i(-54), self.i(0)))
        two = self.c(2.0)
        f = self.sub(m, self.c(1.0))
        u = self.add(two, f)
        u_lo = self.sub(f, self.sub(u, two))
        s = self.div(f, u)
        p, pe = self.two_prod(s, u)
        rho = self.sub(self.sub(self.sub(f, p), pe), self.mul(s, u_lo))
        s_lo = self.div(rho, u)  # s + s_lo = f / (2 + f) to about 2^-100
        z, z_lo = self.two_prod(s, s)
        c_hi, c_lo = self.two_prod(s, z)
        c_lo = self.fma(s, z_lo, c_lo)  # s^3
        d_hi, d_lo = self.two_prod(self.c(K.two_thirds[0]), c_hi)
        d_lo = self.add(d_lo, self.add(self.mul(self.c(K.two_thirds[0]), c_lo),
                                       self.mul(self.c(K.two_thirds[1]), c_hi)))
        # log(m) = 2s + (2/3) s^3 + s^5 H(s^2) + (2 + 2 s^2) s_lo
        tail = self.mul(self.mul(s, self.mul(z, z)), self.poly(z, K.log_h))
        h, he = self.fast_two_sum(self.mul(two, s), d_hi)
        lo = self.add(he, self.add(d_lo, self.fma(s_lo, self.fma(z, two, two), tail)))
        ef = self.itof(e)
        hi, lo2 = self.fast_two_sum(self.mul(ef, self.c(K.ln2[0])), h)
        lo = self.add(lo2, self.fma(ef, self.c(K.ln2[1]), lo))
        return self.fast_two_sum(hi, lo)

    def pow_core_dd(self, a: ir.Value, y: ir.Value) -> ir.Value:
        """a^y for finite a > 0 and |y| <= 2^64 (float64, double-double exponent)."""
        K = _K64
        l_hi, l_lo = self.log_dd(a)
        p_hi, p_lo = self.two_prod(y, l_hi)
        p_lo = self.fma(y, l_lo, p_lo)
        p_hi, p_lo = self.fast_two_sum(p_hi, p_lo)
        pc = self.clamp(p_hi, K.exp_lo, K.exp_hi)
        p_lo = self.sel(self.eq(pc, p_hi), p_lo, self.c(0.0))
        r, kf, k = self.exp_reduce_hi(pc)
        r = self.add(r, self.fma(kf, self.c(-K.ln2[1]), p_lo))
        return self.ldexp(self.add(self.c(1.0), self.expm1_poly(r)), k)

    def exp_reduce_hi(self, x: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
        """Like exp_reduce but stops after the exact high part: (x - k ln2_hi, k, k int)."""
        K = self.K
        s = self.c(K.shifter)
        t = self.fma(x, self.c(K.log2e), s)
        kf = self.sub(t, s)
        ki = self.b.sub(self.bits(t), self.bits(s))
        return self.fma(kf, self.c(-K.ln2[0]), x), kf, ki

    def f_pow(self, x: ir.Value, y: ir.Value) -> ir.Value:
        inf = float("inf")
        zero, one = self.c(0.0), self.c(1.0)
        ax = self.fabs(x)
        ay = self.fabs(y)
        finite_pos = self.b.and_(self.gt(ax, zero), self.lt(ax, self.c(inf)))
        a = self.sel(finite_pos, ax, one)
        yc = self.clamp(y, -(2.0**64), 2.0**64)  # beyond, a^y is 0 or inf unless a = 1
        if self.f64:
            core = self.pow_core_dd(a, yc)
        else:
            w = self.other(ir.DoubleType())
            ad, yd = self.b.fpext(a, w.ty), self.b.fpext(yc, w.ty)
            core = self.b.fptrunc(w.f_exp(w.mul(yd, w.log_pos(ad))), self.ty)
        y_int = self.is_int(ay)
        y_odd = self.b.and_(y_int, self.b.not_(self.is_int(self.mul(ay, self.c(0.5)))))
        y_neg = self.lt(y, zero)
        res = self.sel(self.eq(ax, zero), self.sel(y_neg, self.c(inf), zero), core)
        res = self.sel(self.eq(ax, self.c(inf)), self.sel(y_neg, zero, self.c(inf)), res)
        big = self.sel(self.b.xor(self.lt(ax, one), self.gt(y, zero)), self.c(inf), zero)
        res = self.sel(self.eq(ay, self.c(inf)), self.sel(self.eq(ax, one), one, big), res)
        x_signbit = self.b.icmp_signed("<", self.bits(x), self.i(0))
        res = self.sel(self.b.and_(x_signbit, y_odd), self.neg(res), res)
        bad = self.b.and_(self.b.and_(self.lt(x, zero), self.gt(ax, zero)), self.lt(ax, self.c(inf)))
        res = self.sel(self.b.and_(bad, self.b.not_(y_int)), self.c(float("nan")), res)
        res = self.sel(self.b.or_(self.isnan(x), self.isnan(y)), self.c(float("nan")), res)
        return self.sel(self.b.or_(self.eq(y, zero), self.eq(x, one)), one, res)
