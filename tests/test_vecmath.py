"""The vectorized math library of the LLVM backend against NumPy (and long double references).

Kernels ``void k(const T* x, const T* x2, T* y, int64 n)`` call ``emit_math`` on
``<16 x float>`` / ``<8 x double>`` vectors (inputs padded to a multiple of the width) or on
scalars in a plain loop; they are JIT-compiled once per dtype through MCJIT and called with
ctypes. Errors are measured in ulps of the exact result: float32 against NumPy in float64,
float64 against NumPy in long double (x87, 64-bit significand) and, for erf, against a long
double series. Every assertion uses the bounds documented in ``vecmath.ULP_BOUNDS``.
"""

from __future__ import annotations

import ctypes
import re
import struct
import zlib
from collections.abc import Callable
from typing import Any

import llvmlite.binding as llvm
import llvmlite.ir as ir
import numpy as np
import pytest

from symgrad.backends.llvm import jit
from symgrad.backends.llvm import vecmath as vm

UNARY = [fn for fn in ("exp", "expm1", "log", "log1p", "tanh", "sigmoid", "softplus", "erf", "sin", "cos")]
DTYPES = ["float32", "float64"]
NP = {"float32": np.float32, "float64": np.float64}
WIDTH = {"float32": 16, "float64": 8}
I64 = ir.IntType(64)

# ---- building and calling kernels --------------------------------------------------------


def _loop(b: Any, end: Any, step: int, body: Callable[[Any], None]) -> None:
    pre = b.block
    head = b.append_basic_block("head")
    blk = b.append_basic_block("body")
    done = b.append_basic_block("done")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64)
    i.add_incoming(ir.Constant(I64, 0), pre)
    b.cbranch(b.icmp_signed("<", i, end), blk, done)
    b.position_at_end(blk)
    body(i)
    i.add_incoming(b.add(i, ir.Constant(I64, step)), b.block)
    b.branch(head)
    b.position_at_end(done)


def _kernel(mod: Any, name: str, fn: str, dtype: str, width: int | None, latency_bound: bool = False) -> None:
    st = vm.vector_type(dtype)
    vt = vm.vector_type(dtype, width) if width else st
    p = st.as_pointer()
    f = ir.Function(mod, ir.FunctionType(ir.VoidType(), [p, p, p, I64]), name=name)
    x, x2, y, n = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))

    def body(i: Any) -> None:
        ptrs = [x, x2][: vm.ARITY[fn]]
        args = [b.load(b.bitcast(b.gep(q, [i]), vt.as_pointer()), align=1) for q in ptrs]
        b.store(vm.emit_math(b, fn, args, latency_bound), b.bitcast(b.gep(y, [i]), vt.as_pointer()), align=1)

    _loop(b, n, width or 1, body)
    b.ret_void()


_ALIVE: list[Any] = []  # engines must outlive the ctypes function pointers


def _target_machine(fma: bool = True, cpu: str | None = None) -> Any:
    """A target machine for the backend's target CPU (``SYMGRAD_LLVM_CPU``, default the host),
    or for the CPU setting ``cpu`` (code that is only read, not run)."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target_cpu = jit.runnable_target_cpu() if cpu is None else jit.target_cpu(cpu)
    features = [f for f in target_cpu.features.split(",") if f]
    if not fma:  # AVX-512 implies FMA, so it goes too
        features = [f for f in features if f not in ("+fma", "+avx512f")] + ["-fma", "-avx512f"]
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=target_cpu.name, features=",".join(features), opt=3, jit=True)


def _optimize(mod: Any, vectorize: bool, tm: Any) -> Any:
    """O3 through the new pass manager; loop/SLP vectorization only where the test needs it."""
    m = llvm.parse_assembly(str(mod))
    m.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = vectorize
    pto.slp_vectorization = vectorize
    pto.loop_unrolling = vectorize
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(m, pb)
    return m


def _compile(mod: Any, vectorize: bool, fma: bool = True) -> tuple[Any, str]:
    tm = _target_machine(fma)
    m = _optimize(mod, vectorize, tm)
    optimized = str(m)
    ee = llvm.create_mcjit_compiler(m, tm)
    ee.finalize_object()
    _ALIVE.append((ee, m, tm))
    return ee, optimized


_SIG = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class Lib:
    """Functions of one dtype, as vector kernels and (optionally) as scalar-loop kernels;
    ``latency_bound``: the variant for latency-bound loops (see ``vecmath.emit_math``)."""

    def __init__(self, dtype: str, fns: tuple[str, ...] = vm.MATH_FUNCTIONS, width: int | None = None,
                 scalar: bool = True, fma: bool = True, latency_bound: bool = False) -> None:
        self.dtype = dtype
        self.latency_bound = latency_bound
        self.np = NP[dtype]
        self.width = width or WIDTH[dtype]
        mod = ir.Module(name=f"vecmath_test_{dtype}")
        mod.triple = llvm.get_process_triple()
        names = []
        for fn in fns:
            _kernel(mod, f"vec_{fn}", fn, dtype, self.width, latency_bound)
            names.append(f"vec_{fn}")
            if scalar:
                _kernel(mod, f"scalar_{fn}", fn, dtype, None, latency_bound)
                names.append(f"scalar_{fn}")
        self.ir_text = str(mod)
        ee, _ = _compile(mod, vectorize=False, fma=fma)
        self.fns = {name: _SIG(ee.get_function_address(name)) for name in names}

    def __call__(self, fn: str, x: Any, x2: Any = None, scalar: bool = False) -> np.ndarray:
        x = np.asarray(x, self.np).ravel()
        x2 = x if x2 is None else np.broadcast_to(np.asarray(x2, self.np), x.shape).ravel()
        n = x.size
        w = 1 if scalar else self.width
        npad = -(-n // w) * w
        xp = np.zeros(npad, self.np)
        xp[:n] = x
        x2p = np.zeros(npad, self.np)
        x2p[:n] = x2
        y = np.empty(npad, self.np)
        self.fns[f"{'scalar' if scalar else 'vec'}_{fn}"](xp.ctypes.data, x2p.ctypes.data, y.ctypes.data, npad)
        return y[:n]


# each dtype, as emitted by default and for latency-bound loops: every test on ``lib`` holds
# for both
VARIANTS = [(dtype, latency) for dtype in DTYPES for latency in (False, True)]


@pytest.fixture(scope="module", params=VARIANTS, ids=[f"{d}{'-latency' if lb else ''}" for d, lb in VARIANTS])
def lib(request: Any) -> Lib:
    return _libs(*request.param)


_LIBS: dict[tuple[str, bool], Lib] = {}


def _libs(dtype: str, latency_bound: bool = False) -> Lib:
    if (dtype, latency_bound) not in _LIBS:
        _LIBS[dtype, latency_bound] = Lib(dtype, latency_bound=latency_bound)
    return _LIBS[dtype, latency_bound]


# ---- references and error measure --------------------------------------------------------

LD = np.longdouble
_TWO_OVER_SQRTPI = LD(2) / np.sqrt(LD("3.141592653589793238462643383279502884"))


def _erf_ld(x: np.ndarray, terms: int) -> np.ndarray:
    """erf(x) = 2/sqrt(pi) e^(-x^2) sum 2^n x^(2n+1) / (1*3*...*(2n+1)): positive terms, no
    cancellation, about 1e-18 relative in long double with enough terms (110 for |x| <= 6.5)."""
    a = np.minimum(np.abs(x), 6.5).astype(LD)
    z = a * a
    term = a.copy()
    total = a.copy()
    for k in range(1, terms):
        term = term * (2 * z) / (2 * k + 1)
        total += term
    return np.copysign(np.minimum(_TWO_OVER_SQRTPI * np.exp(-z) * total, LD(1)), x.astype(LD))


def _erf_ref(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        from scipy.special import erf

        return erf(x.astype(np.float64))
    ref = np.copysign(np.ones(x.shape, LD), x.astype(LD))
    tiny = np.abs(x) < 2.0**-20
    ref[tiny] = _erf_ld(x[tiny], 6)
    mid = ~tiny & (np.abs(x) < 6.5)
    ref[mid] = _erf_ld(x[mid], 110)
    ref[np.isnan(x)] = np.nan
    return ref


def reference(fn: str, x: np.ndarray, dtype: str, y: np.ndarray | None = None) -> np.ndarray:
    hp: Any = np.float64 if dtype == "float32" else LD
    with np.errstate(all="ignore"):
        xh = x.astype(hp)
        if fn == "erf":
            return _erf_ref(x, dtype)
        if fn == "sigmoid":
            t = np.exp(-np.abs(xh))
            return np.where(xh >= 0, 1 / (1 + t), t / (1 + t))
        if fn == "softplus":
            return np.maximum(xh, 0) + np.log1p(np.exp(-np.abs(xh)))
        if fn == "pow":
            assert y is not None
            return np.power(xh, y.astype(hp))
        return getattr(np, fn)(xh)


def ulp_error(y: np.ndarray, ref: np.ndarray, dtype: str) -> np.ndarray:
    """|y - ref| in ulps of the exact result ``ref`` (given in higher precision); units of the
    smallest denormal where ``ref`` is denormal; inf where nan-ness, infinities or overflow
    disagree."""
    fi = np.finfo(dtype)
    p = fi.nmant + 1
    hp = ref.dtype.type
    out = np.zeros(ref.shape)
    rnan, ynan = np.isnan(ref), np.isnan(y)
    with np.errstate(all="ignore"):
        overflow = np.abs(ref) >= hp(fi.max) * (1 + hp(2.0) ** -(p + 1))
    rinf = (np.isinf(ref) | overflow) & ~rnan
    out[rnan != ynan] = np.inf
    out[rinf & ~(np.isinf(y) & (np.sign(y) == np.sign(ref)))] = np.inf
    fin = ~rnan & ~rinf & ~ynan
    _, e = np.frexp(ref[fin])
    ulp = np.maximum(np.ldexp(np.ones(e.shape, hp), (e - p).astype(np.int32)), hp(fi.smallest_subnormal))
    with np.errstate(all="ignore"):
        err = (np.abs(y[fin].astype(hp) - ref[fin]) / ulp).astype(np.float64)
    err[np.isinf(y[fin])] = np.inf
    out[fin] = err
    return out


def _assert_within(fn: str, dtype: str, x: np.ndarray, y: np.ndarray, ref: np.ndarray,
                   bound: float, x2: np.ndarray | None = None) -> float:
    err = ulp_error(y, ref, dtype)
    worst = int(np.argmax(err))
    at = f"x={x[worst]!r}" + ("" if x2 is None else f", y={x2[worst]!r}")
    assert err[worst] <= bound, f"{fn} {dtype}: {err[worst]:.3f} ulp > {bound} at {at}: got {y[worst]!r}, exact {ref[worst]!r}"
    return float(err[worst])


# ---- inputs ------------------------------------------------------------------------------


def all_floats(dtype: str, n: int, seed: int) -> np.ndarray:
    """Uniform over bit patterns: log-spaced magnitudes across the whole range, both signs,
    denormals included; nan/inf removed (they are tested separately)."""
    rng = np.random.default_rng(seed)
    if dtype == "float32":
        x = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    else:
        x = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False).view(np.float64)
    return x[np.isfinite(x)]


def sweep(fn: str, dtype: str) -> np.ndarray:
    """About a million points: all magnitudes plus dense coverage of where fn is non-trivial."""
    t = NP[dtype]
    rng = np.random.default_rng(zlib.crc32(f"{fn} {dtype}".encode()))
    parts = [all_floats(dtype, 300_000, 1), rng.uniform(-1, 1, 150_000), rng.uniform(-20, 20, 150_000)]
    if fn in ("exp", "expm1", "sigmoid", "softplus"):
        lim = 110 if dtype == "float32" else 760
        parts.append(rng.uniform(-lim, lim, 150_000))
    if fn == "softplus":  # e^-|x| in [0.1, 1]: around the split of log1p(e^-|x|) at ln 2
        parts.append(rng.uniform(-2.5, 2.5, 200_000))
    if fn in ("log", "log1p"):
        parts[0] = np.abs(parts[0][:150_000])
        parts.append(np.exp(rng.uniform(-30, 30, 150_000)))
        parts.append(rng.uniform(-1, 0, 100_000))
    if fn in ("sin", "cos"):
        parts.append(rng.uniform(-1e4, 1e4, 100_000))
        parts.append(rng.uniform(-vm.ACCURATE_TRIG_RANGE, vm.ACCURATE_TRIG_RANGE, 100_000))
        k = rng.integers(1, 2**26, 50_000).astype(np.float64)
        parts.append(k * (np.pi / 2))  # near multiples of pi/2: the reduction's hard cases
    if fn == "erf":
        parts.append(rng.uniform(-6.5, 6.5, 100_000 if dtype == "float32" else 30_000))
    x = np.concatenate([np.asarray(p_).astype(t) for p_ in parts])
    if fn in ("sin", "cos"):
        x = x[np.abs(x) <= vm.ACCURATE_TRIG_RANGE]
    if fn == "erf" and dtype == "float64":  # keep the long double series affordable
        mid = (np.abs(x) >= 2.0**-20) & (np.abs(x) < 6.5)
        x = np.concatenate([x[~mid], x[mid][:60_000]])
    return x


SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 1e-3, -1e-3,
            10.0, -10.0, 88.0, 89.0, -87.0, -104.0, -110.0, 100.0, -100.0, 700.0, 710.0, -745.0,
            -746.0, -800.0, 1e10, -1e10, 1e30, -1e30, 1e300, -1e300]


def specials(dtype: str) -> np.ndarray:
    fi = np.finfo(dtype)
    extra = [fi.max, -fi.max, fi.tiny, -fi.tiny, fi.smallest_subnormal, -fi.smallest_subnormal,
             fi.tiny / 3, -fi.tiny / 3, fi.eps, -fi.eps, 1 + fi.eps, 1 - fi.epsneg, -1 + fi.epsneg]
    with np.errstate(over="ignore"):
        values = np.array(SPECIALS + [float(v) for v in extra]).astype(dtype)
    # quiet nans with the sign bit set, made from their bits (signalling ones would raise
    # NumPy's invalid-value warning wherever they are cast)
    bits = [0xFFC00001, 0xFFFFFFFF] if dtype == "float32" else [0xFFF8000000000001, 0xFFFFFFFFFFFFFFFF]
    signed_nans = np.array(bits, dtype=np.uint32 if dtype == "float32" else np.uint64).view(dtype)
    return np.concatenate([values, signed_nans])


# ---- tests: accuracy ---------------------------------------------------------------------


def test_every_function_has_a_bound() -> None:
    for fn in UNARY + ["pow"]:
        for dtype in DTYPES:
            assert vm.ULP_BOUNDS[(fn, dtype)] <= 4.0


@pytest.mark.parametrize("fn", UNARY)
def test_sweep_accuracy(lib: Lib, fn: str) -> None:
    x = sweep(fn, lib.dtype)
    y = lib(fn, x)
    ref = reference(fn, x, lib.dtype)
    _assert_within(fn, lib.dtype, x, y, ref, vm.ULP_BOUNDS[(fn, lib.dtype)])


def test_pow_accuracy(lib: Lib) -> None:
    dtype, t = lib.dtype, lib.np
    rng = np.random.default_rng(7)
    n = 200_000
    xs = np.abs(all_floats(dtype, n, 3))
    lx = np.log(np.maximum(xs.astype(np.float64), 1e-320))
    reach = 700.0 if dtype == "float64" else 88.0  # keep most results finite
    ys = rng.uniform(-1, 1, xs.size) * np.minimum(reach / np.maximum(np.abs(lx), 1e-300), 1e6)
    cases = [
        (xs, ys),  # every magnitude of x, results across the whole range
        (1 + rng.uniform(-1e-3, 1e-3, n), rng.uniform(-1e5, 1e5, n)),  # large |y log x| near 1
        (rng.uniform(-10, 10, n), rng.integers(-40, 40, n)),  # negative bases, integer exponents
        (rng.uniform(0, 5, n), rng.uniform(-30, 30, n)),
    ]
    for a, b in cases:
        a, b = np.asarray(a).astype(t), np.asarray(b).astype(t)
        _assert_within("pow", dtype, a, lib("pow", a, b), reference("pow", a, dtype, b),
                       vm.ULP_BOUNDS[("pow", dtype)], b)


@pytest.mark.parametrize("fn", UNARY)
def test_special_values(lib: Lib, fn: str) -> None:
    """inf, -inf, nan, -0.0, denormals, overflow and saturation edges: nan-ness, infinities and
    the sign of zero exactly as NumPy; finite values within the bound."""
    dtype = lib.dtype
    x = specials(dtype)
    if fn in ("sin", "cos"):
        x = x[~(np.isfinite(x) & (np.abs(x) > vm.ACCURATE_TRIG_RANGE))]
    y = lib(fn, x)
    ref = reference(fn, x, dtype)
    for xi, yi, ri in zip(x, y, ref, strict=True):
        if np.isnan(ri) or np.isinf(ri) or ri == 0:
            assert (np.isnan(yi) and np.isnan(ri)) or (yi == ri and np.signbit(yi) == np.signbit(ri)), \
                f"{fn}({xi!r}) = {yi!r}, expected {ri!r}"
    _assert_within(fn, dtype, x, y, ref, vm.ULP_BOUNDS[(fn, dtype)])


def test_documented_edges(lib: Lib) -> None:
    t = lib.np
    big = 100.0 if lib.dtype == "float32" else 710.0
    assert lib("exp", [big])[0] == np.inf
    assert lib("exp", [-200.0 if lib.dtype == "float32" else -800.0])[0] == 0.0
    tiny = lib("exp", [-100.0 if lib.dtype == "float32" else -740.0])[0]
    assert 0 < tiny < np.finfo(t).tiny  # denormal result, not flushed
    assert lib("log", [0.0])[0] == -np.inf and lib("log", [-0.0])[0] == -np.inf
    assert np.isnan(lib("log", [-1.0])[0]) and np.isnan(lib("log1p", [-2.0])[0])
    assert lib("log1p", [-1.0])[0] == -np.inf
    assert list(lib("tanh", [30.0, -30.0, 1e30])) == [1.0, -1.0, 1.0]
    assert list(lib("erf", [7.0, -7.0, np.inf, -np.inf])) == [1.0, -1.0, 1.0, -1.0]
    assert list(lib("sigmoid", [1e4, -1e4, np.inf, -np.inf])) == [1.0, 0.0, 1.0, 0.0]
    assert list(lib("softplus", [1e4, -1e4, np.inf, -np.inf])) == [1e4, 0.0, np.inf, 0.0]
    assert lib("expm1", [-np.inf, -1e4])[0] == -1.0
    for fn in ("expm1", "log1p", "tanh", "erf", "sin"):
        assert np.signbit(lib(fn, [-0.0])[0]), fn
    for fn in ("sin", "cos"):
        assert np.isnan(lib(fn, [np.inf, -np.inf, np.nan])).all(), fn


def test_pow_special_cases(lib: Lib) -> None:
    """Every pair of special operands matches C99 pow (NumPy's np.power) exactly in class and
    sign; finite results within the bound."""
    t = lib.np
    vals = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5, np.inf, -np.inf,
                     np.nan, 1e-30, -1e-30, 1e30, -1e30, np.finfo(t).smallest_subnormal], t)
    xs, ys = (a.ravel() for a in np.meshgrid(vals, vals, indexing="ij"))
    got = lib("pow", xs, ys)
    with np.errstate(all="ignore"):
        exp_ = np.power(xs, ys)
    for x, y, g, e in zip(xs, ys, got, exp_, strict=True):
        if np.isnan(e) or np.isinf(e) or e == 0 or abs(e) == 1:
            assert (np.isnan(g) and np.isnan(e)) or (g == e and np.signbit(g) == np.signbit(e)), \
                f"pow({x!r}, {y!r}) = {g!r}, expected {e!r}"
    _assert_within("pow", lib.dtype, xs, got, reference("pow", xs, lib.dtype, ys),
                   vm.ULP_BOUNDS[("pow", lib.dtype)], ys)


@pytest.mark.parametrize(("dtype", "latency_bound"), VARIANTS)
def test_bounds_hold_without_fma_and_at_other_widths(dtype: str, latency_bound: bool) -> None:
    """The reductions and Dekker products are exact without fused multiply-add too: code for
    the host with FMA (and AVX-512) disabled, at 4 float32 / 2 float64 lanes, meets the same
    bounds (on a subset of each sweep)."""
    fns = ("exp", "expm1", "log", "log1p", "tanh", "sigmoid", "softplus", "erf", "sin", "cos", "pow")
    lib = Lib(dtype, fns, width=4 if dtype == "float32" else 2, scalar=False, fma=False,
              latency_bound=latency_bound)
    assert not re.search(r"vfn?m(add|sub)", _ALIVE[-1][2].emit_assembly(_ALIVE[-1][1]))
    for fn in fns[:-1]:
        x = sweep(fn, dtype)[::4]
        _assert_within(fn, dtype, x, lib(fn, x), reference(fn, x, dtype), vm.ULP_BOUNDS[(fn, dtype)])
    rng = np.random.default_rng(2)
    a = np.concatenate([rng.uniform(0, 5, 50_000), 1 + rng.uniform(-1e-3, 1e-3, 50_000)]).astype(dtype)
    b = np.concatenate([rng.uniform(-30, 30, 50_000), rng.uniform(-1e5, 1e5, 50_000)]).astype(dtype)
    _assert_within("pow", dtype, a, lib("pow", a, b), reference("pow", a, dtype, b), vm.ULP_BOUNDS[("pow", dtype)], b)


def test_trig_beyond_accurate_range(lib: Lib) -> None:
    rng = np.random.default_rng(11)
    x = (rng.uniform(1, 10, 20_000) * 10.0 ** rng.integers(8, 38, 20_000)).astype(lib.np)
    x = np.concatenate([x, -x])
    for fn in ("sin", "cos"):
        y = lib(fn, x)
        assert np.isfinite(y).all() and (np.abs(y) <= 1).all(), fn


# ---- tests: code shape -------------------------------------------------------------------


@pytest.mark.parametrize("fn", vm.MATH_FUNCTIONS)
def test_scalar_code_matches_vector_code(lib: Lib, fn: str) -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([specials(lib.dtype), all_floats(lib.dtype, 3000, 9), rng.uniform(-20, 20, 3000)])
    x2 = None if vm.ARITY[fn] == 1 else rng.uniform(-4, 4, x.size)
    a = lib(fn, x, x2)
    b = lib(fn, x, x2, scalar=True)
    nan = np.isnan(a)
    assert np.array_equal(nan, np.isnan(b)), fn
    assert np.array_equal(a[~nan].view(f"u{a.itemsize}"), b[~nan].view(f"u{b.itemsize}")), fn


def test_latency_bound_code_loads_constants_and_shortens_chains(lib: Lib) -> None:
    """Latency-bound code loads its float constants from internal globals that LLVM may not
    fold (externally_initialized, !invariant.load) and evaluates exp's polynomial, and float32
    log's, by Estrin's scheme: it multiplies the square of the reduced argument by itself
    (r^4, and r^8 for float64's exp). The default code has literal constants and Horner's
    rule."""
    ir_text = lib.ir_text
    glob = r'@"?symgrad\.vecmath\.k\.f(?:32|64)\.[-+0-9a-fx.p]+"?'
    defined = set(re.findall(rf"({glob}) = internal externally_initialized global", ir_text))
    loaded = set(re.findall(rf"load (?:float|double), (?:ptr|float\*|double\*) ({glob}), !invariant\.load",
                            ir_text))
    if lib.latency_bound:
        assert len(defined) > 20 and loaded == defined
    else:
        assert not defined and not loaded and "externally_initialized" not in ir_text

    def squares_a_square(kernel: str) -> bool:
        body = re.search(rf"define void @\"?{kernel}\"?\(.*?\n}}\n", ir_text, re.S)
        assert body is not None, kernel
        name = r'%"?[\w.]+"?'
        squares = dict(re.findall(rf'({name}) = fmul <\d+ x \w+> ({name}), \2(?![\w."])', body.group(0)))
        return any(base in squares for base in squares.values())

    assert squares_a_square("vec_exp") == lib.latency_bound
    if lib.dtype == "float32":
        assert squares_a_square("vec_log") == lib.latency_bound


def test_exact_helpers(lib: Lib) -> None:
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.0, 3.7, -3.7, 4.0, 1e30, np.inf, -np.inf], lib.np)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(lib("round", x), np.round(x))
        np.testing.assert_array_equal(lib("floor", x), np.floor(x))
        np.testing.assert_array_equal(lib("ceil", x), np.ceil(x))
        np.testing.assert_array_equal(lib("trunc", x), np.trunc(x))
        np.testing.assert_array_equal(lib("fabs", x), np.abs(x))
        np.testing.assert_array_equal(lib("sqrt", np.abs(x)), np.sqrt(np.abs(x)))
    assert np.isnan(lib("sqrt", [-1.0])[0])


def test_emitted_ir_has_no_calls_and_no_fast_math_flags(lib: Lib) -> None:
    calls = set(re.findall(r"call \S+ @\"?([\w.]+)", lib.ir_text))
    allowed = re.compile(r"llvm\.(fmuladd|fabs|copysign|sqrt|floor|ceil|trunc|roundeven)\.")
    assert calls and all(allowed.match(c) for c in calls), sorted(calls)
    assert not re.search(r"\b(fast|nnan|ninf|nsz|arcp|afn|reassoc|contract)\b", lib.ir_text)


def _w1_module(latency_bound: bool) -> Any:
    """A plain scalar loop over softplus(x)*tanh(x) + sigmoid(x)^2 (the W1 forward body)."""
    mod = ir.Module(name="w1")
    mod.triple = llvm.get_process_triple()
    ft = ir.FloatType()
    f = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ft.as_pointer(), ft.as_pointer(), I64]), name="w1")
    for a in f.args[:2]:
        a.add_attribute("noalias")
    x, y, n = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))

    def body(i: Any) -> None:
        v = b.load(b.gep(x, [i]))
        # the always-inline wrappers, as the code generator calls them
        sp, th, sg = (b.call(vm.math_function(mod, fn, ft, latency_bound), [v])
                      for fn in ("softplus", "tanh", "sigmoid"))
        b.store(b.fadd(b.fmul(sp, th), b.fmul(sg, sg)), b.gep(y, [i]))

    _loop(b, n, 1, body)
    b.ret_void()
    softplus = vm.math_function(mod, "softplus", ft, latency_bound)
    assert softplus is vm.math_function(mod, "softplus", ft, latency_bound)
    assert softplus is not vm.math_function(mod, "softplus", ft, not latency_bound)
    return mod


def _assert_w1_vectorized(optimized: str, latency_bound: bool) -> None:
    """The optimized W1 loop is vectorized, calls nothing, and each of its vector loop bodies
    (LLVM may add more than one, e.g. a narrower epilogue) computes one exp polynomial per
    vector of results it stores."""
    w1 = re.search(r"define void @w1\(.*?\n}\n", optimized, re.S)
    assert w1 is not None
    text = w1.group(0)
    assert re.search(r"<\d+ x float>", text), "the scalar loop was not vectorized"
    assert not re.search(r"call (?!.*@llvm\.)", text), "a call is left in the loop"
    # sigmoid, softplus and tanh emit the same e^-|x| sequence, so one exp polynomial is left
    # per vector: its last float32 coefficient, 0x1.6a9662p-10 (a literal, or loaded from its
    # global and splat), is used once per vector stored
    if latency_bound:
        coefficient = r'@"?symgrad\.vecmath\.k\.f32\.0x1\.6a96620*p-10"?'
        loads = re.findall(rf"(%[\w.]+) = load float, ptr {coefficient}", text)
        assert loads, "the coefficient is not loaded from its global"
        names = set(loads)
    else:
        names = {f"0x{struct.unpack('<Q', struct.pack('<d', float.fromhex('0x1.6a9662p-10')))[0]:016X}"}
    for line in text.splitlines():  # the values that splat it
        d = re.match(r"\s*(%[\w.]+) = (insertelement|shufflevector) ", line)
        if d and any(re.search(rf"{re.escape(n)}(?![\w.])", line) for n in names):
            names.add(d.group(1))
    # basic blocks: a label line, then its instructions; a vector loop body branches to itself
    blocks = re.findall(r"^([\w.]+):.*?\n(.*?)(?=^[\w.]+:|^})", text, re.S | re.M)
    bodies = [code for label, code in blocks
              if re.search(rf"br .*label %{re.escape(label)}(?![\w.])", code) and "x float>" in code]
    assert bodies, "no vector loop body"
    for code in bodies:
        uses = [line for line in code.splitlines() if "@llvm.fmuladd.v" in line
                and any(re.search(rf"{re.escape(n)}(?![\w.])", line.split("(", 1)[1]) for n in names)]
        stores = re.findall(r"store <\d+ x float>", code)
        assert stores and len(uses) == len(stores), (uses, stores)


@pytest.mark.parametrize("latency_bound", [False, True])
def test_scalar_loop_vectorizes_and_is_correct(latency_bound: bool) -> None:
    """The W1 scalar loop is vectorized by LLVM's loop vectorizer for the target CPU:
    branch-free IR, no calls left, one exp polynomial per vector; and it is correct."""
    ee, optimized = _compile(_w1_module(latency_bound), vectorize=True)
    _assert_w1_vectorized(optimized, latency_bound)
    fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(ee.get_function_address("w1"))
    xs = np.random.default_rng(0).standard_normal(100_003).astype(np.float32) * 4
    out = np.empty_like(xs)
    fn(xs.ctypes.data, out.ctypes.data, xs.size)
    x64 = xs.astype(np.float64)
    sp64, th64 = np.logaddexp(0, x64), np.tanh(x64)
    sg64 = 1 / (1 + np.exp(-x64))
    # error relative to the size of the two terms (their difference can cancel)
    scale = np.abs(sp64 * th64) + sg64 * sg64
    assert np.max(np.abs(out - (sp64 * th64 + sg64 * sg64)) / scale) < 8 * 2.0**-24


@pytest.mark.parametrize("cpu", ["x86-64-v2", "x86-64-v3", "x86-64-v4", "znver4", "skylake-avx512"])
@pytest.mark.parametrize("latency_bound", [False, True])
def test_scalar_loop_vectorizes_for_each_target_cpu(cpu: str, latency_bound: bool) -> None:
    """The same property on pinned targets, whatever the host (the code is only read):
    SSE4, AVX2, AVX-512 with 512- and 256-bit preferred vectors, and Zen 4, where LLVM adds a
    narrower epilogue vector loop."""
    _assert_w1_vectorized(str(_optimize(_w1_module(latency_bound), True, _target_machine(cpu=cpu))),
                          latency_bound)


# ---- tests: API --------------------------------------------------------------------------


def test_api_errors() -> None:
    mod = ir.Module(name="api")
    f = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ir.FloatType(), ir.DoubleType(), ir.IntType(32)]), "f")
    b = ir.IRBuilder(f.append_basic_block())
    xf, xd, xi = f.args
    with pytest.raises(ValueError, match="unknown function 'gamma'"):
        vm.emit_math(b, "gamma", [xf])
    with pytest.raises(TypeError, match="takes 2 argument"):
        vm.emit_math(b, "pow", [xf])
    with pytest.raises(TypeError, match="share one type"):
        vm.emit_math(b, "pow", [xf, xd])
    with pytest.raises(TypeError, match="expected float, double"):
        vm.emit_math(b, "exp", [xi])
    with pytest.raises(TypeError):
        vm.vector_type("int32")
    assert str(vm.vector_type("float32", 16)) == "<16 x float>"
    assert vm.preferred_width("float32", "+avx512f,+avx") == 16
    assert vm.preferred_width("float64", "+avx,-avx512f") == 4
    assert vm.preferred_width("float64", "+sse2") == 2
    assert vm.preferred_width("float32") in (4, 8, 16)
