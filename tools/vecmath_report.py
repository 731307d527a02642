"""Measure the vectorized math library: accuracy table and speed table for docs/vecmath.md.

    python tools/vecmath_report.py accuracy   # max ulp error per function and dtype, on the
                                              # test sweeps, FMA and non-FMA code, default
                                              # and latency-bound (two tables)
    python tools/vecmath_report.py speed      # ns/element per function vs NumPy/SciPy, and
                                              # the 4M-element float32 softplus*tanh + sigmoid^2
                                              # loop vs NumPy (single thread, medians)

It reuses the kernel builders and references of ``tests/test_vecmath.py``.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import test_vecmath as T  # noqa: E402

vm = T.vm
ir = T.ir
llvm = T.llvm


def _median_ms(fn: Callable[[], Any], reps: int) -> tuple[float, float]:
    """(median wall ms with time.perf_counter, median CPU ms with time.process_time)."""
    fn()
    wall, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.median(wall)) * 1e3, float(np.median(cpu)) * 1e3


def accuracy(fma: bool, latency_bound: bool = False) -> dict[tuple[str, str], float]:
    out = {}
    for dtype in T.DTYPES:
        lib = T.Lib(dtype, scalar=False, fma=fma, latency_bound=latency_bound)
        for fn in T.UNARY:
            x = T.sweep(fn, dtype)
            out[(fn, dtype)] = float(T.ulp_error(lib(fn, x), T.reference(fn, x, dtype), dtype).max())
        worst = 0.0
        rng = np.random.default_rng(7)
        n = 400_000
        for a, b in [(np.abs(T.all_floats(dtype, n, 3)), None),
                     (1 + rng.uniform(-1e-3, 1e-3, n), rng.uniform(-1e5, 1e5, n)),
                     (rng.uniform(-10, 10, n), rng.integers(-40, 40, n)),
                     (rng.uniform(0, 5, n), rng.uniform(-30, 30, n))]:
            a = a.astype(dtype)
            if b is None:
                lx = np.log(np.maximum(a.astype(np.float64), 1e-320))
                reach = 700.0 if dtype == "float64" else 88.0
                b = rng.uniform(-1, 1, a.size) * np.minimum(reach / np.maximum(np.abs(lx), 1e-300), 1e6)
            b = np.asarray(b).astype(dtype)
            err = T.ulp_error(lib("pow", a, b), T.reference("pow", a, dtype, b), dtype)
            worst = max(worst, float(err.max()))
        out[("pow", dtype)] = worst
    return out


NUMPY: dict[str, Callable[..., Any]] = {
    "exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh,
    "sin": np.sin, "cos": np.cos, "pow": np.power,
    "softplus": lambda x: np.logaddexp(x.dtype.type(0), x),
}


def speed() -> None:
    from scipy.special import erf, expit

    NUMPY["sigmoid"] = expit
    NUMPY["erf"] = erf
    n = 1 << 20
    rng = np.random.default_rng(0)
    print(f"per function, {n} elements, ns/element (median wall), one thread; "
          f"host {llvm.get_host_cpu_name()}, vector width 16/8")
    print("| function | float32 vecmath | float32 NumPy | float64 vecmath | float64 NumPy |")
    print("|---|---|---|---|---|")
    libs = {d: T.Lib(d) for d in T.DTYPES}
    for fn in T.UNARY + ["pow"]:
        row = [fn]
        for dtype in T.DTYPES:
            lib = libs[dtype]
            x = (rng.standard_normal(n) * 3).astype(dtype)
            if fn in ("log", "pow"):
                x = np.abs(x)
            x2 = rng.uniform(-3, 3, n).astype(dtype)
            w = lib.width
            y = np.empty(n, dtype)
            k = lib.fns[f"vec_{fn}"]
            m = n - n % w

            def ours_call(k: Any = k, x: Any = x, x2: Any = x2, y: Any = y, m: int = m) -> None:
                k(x.ctypes.data, x2.ctypes.data, y.ctypes.data, m)

            def numpy_call(ref: Any = NUMPY[fn], x: Any = x, x2: Any = x2, fn: str = fn) -> None:
                with np.errstate(all="ignore"):
                    ref(x, x2) if fn == "pow" else ref(x)

            ours, _ = _median_ms(ours_call, 21)
            theirs, _ = _median_ms(numpy_call, 7)
            row += [f"{ours * 1e6 / n:.2f}", f"{theirs * 1e6 / n:.2f}"]
        print("| " + " | ".join(row) + " |")
    w1()


def w1() -> None:
    """softplus(x)*tanh(x) + sigmoid(x)^2 over 4M float32: a scalar loop that LLVM vectorizes
    (how the code generator uses the library), explicit 16-wide vectors, and NumPy."""
    mod = ir.Module(name="w1")
    mod.triple = llvm.get_process_triple()
    ft = ir.FloatType()
    for name, width in [("w1_loop", None), ("w1_vec16", 16)]:
        vt = ft if width is None else ir.VectorType(ft, width)
        f = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ft.as_pointer(), ft.as_pointer(), T.I64]), name=name)
        for a in f.args[:2]:
            a.add_attribute("noalias")
        x, y, n = f.args
        b = ir.IRBuilder(f.append_basic_block("entry"))

        def body(i: Any, b: Any = b, x: Any = x, y: Any = y, vt: Any = vt) -> None:
            v = b.load(b.bitcast(b.gep(x, [i]), vt.as_pointer()), align=4)
            sp = vm.emit_math(b, "softplus", [v])
            th = vm.emit_math(b, "tanh", [v])
            sg = vm.emit_math(b, "sigmoid", [v])
            b.store(b.fadd(b.fmul(sp, th), b.fmul(sg, sg)), b.bitcast(b.gep(y, [i]), vt.as_pointer()), align=4)

        T._loop(b, n, width or 1, body)
        b.ret_void()
    t0 = time.perf_counter()
    ee, _ = T._compile(mod, vectorize=True)
    compile_s = time.perf_counter() - t0
    N = 4 * 1024 * 1024
    xs = (np.random.default_rng(1).standard_normal(N) * 3).astype(np.float32)
    out = np.empty_like(xs)

    def np_w1() -> Any:
        s = 1 / (1 + np.exp(-xs))
        return np.logaddexp(np.float32(0), xs) * np.tanh(xs) + s * s

    def np_w1_log1p() -> Any:
        s = 1 / (1 + np.exp(-xs))
        sp = np.maximum(xs, np.float32(0)) + np.log1p(np.exp(-np.abs(xs)))
        return sp * np.tanh(xs) + s * s

    print(f"\nW1 forward, {N} float32, medians of 21 runs (compile of both kernels {compile_s:.2f} s):")
    print("| implementation | wall ms (perf_counter) | CPU ms (process_time) |")
    print("|---|---|---|")
    wall, cpu = _median_ms(np_w1, 21)
    print(f"| NumPy, softplus as logaddexp(0, x) | {wall:.2f} | {cpu:.2f} |")
    wall, cpu = _median_ms(np_w1_log1p, 21)
    print(f"| NumPy, softplus as maximum(x, 0) + log1p(exp(-abs(x))) | {wall:.2f} | {cpu:.2f} |")
    for name in ["w1_loop", "w1_vec16"]:
        fp = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)(ee.get_function_address(name))
        wall, cpu = _median_ms(lambda fp=fp: fp(xs.ctypes.data, out.ctypes.data, N), 21)
        label = "vecmath, scalar loop auto-vectorized" if name == "w1_loop" else "vecmath, explicit <16 x float>"
        print(f"| {label} | {wall:.2f} | {cpu:.2f} |")
    print(f"load average during the run: {os.getloadavg()}")


def main(argv: list[str]) -> None:
    what = argv[0] if argv else "all"
    if what in ("accuracy", "all"):
        for latency_bound in (False, True):
            fma = accuracy(fma=True, latency_bound=latency_bound)
            nofma = accuracy(fma=False, latency_bound=latency_bound)
            print("latency-bound code" if latency_bound else "default code")
            print("| function | float32 (FMA) | float32 (no FMA) | float64 (FMA) | float64 (no FMA) "
                  "| bound f32 / f64 |")
            print("|---|---|---|---|---|---|")
            for fn in T.UNARY + ["pow"]:
                print(f"| {fn} | {fma[(fn, 'float32')]:.2f} | {nofma[(fn, 'float32')]:.2f} | "
                      f"{fma[(fn, 'float64')]:.2f} | {nofma[(fn, 'float64')]:.2f} | "
                      f"{vm.ULP_BOUNDS[(fn, 'float32')]} / {vm.ULP_BOUNDS[(fn, 'float64')]} |")
    if what in ("speed", "all"):
        speed()


if __name__ == "__main__":
    main(sys.argv[1:])
