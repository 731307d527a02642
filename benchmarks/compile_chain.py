"""Compile time of value+gradient for a chain of N elementwise steps,
y = sin(y)*1.01 + 0.1*tanh(y) (about 5 ops each), N = 10 ... 3000: building the graph, the
pass pipeline, and the backend (for LLVM: lowering, code generation and LLVM itself, with
the compile cache off). The time per step shows whether growth is linear.

Peers, when installed: JAX (``jax.jit(jax.value_and_grad(f))``, traced, lowered and
compiled by XLA for a new input shape each time, so nothing is cached) and PyTensor
(``pytensor.function`` with its default mode; its C code cache is on disk and kept, as a
user would have it). They are timed up to N = 300 only (JAX took 48 s at N = 300 on a
machine of this kind); each result is checked against the float64 reference.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Env, Row, with_peer  # noqa: E402

NAME = "compile chain (value+grad)"


def chain(n: int) -> tuple[object, list[object]]:
    import symgrad as sg

    x = sg.placeholder("x", (None,), "float64")
    y = x
    for _ in range(n):
        y = sg.sin(y) * 1.01 + 0.1 * sg.tanh(y)
    f = sg.sum(y)
    return x, [f, sg.grad(f, x)]


def run(quick: bool = False) -> list[Row]:
    import symgrad as sg
    from symgrad.backends.llvm import clear_memory_cache

    sizes = (10, 100, 300) if quick else (10, 100, 1000, 3000)
    rows: list[Row] = []
    xv = np.linspace(-1, 1, 7)
    with tempfile.TemporaryDirectory() as tmp, Env(SYMGRAD_CACHE_DIR="off"):
        for backend in ("numpy", "llvm"):
            results = {}
            for n in sizes:
                clear_memory_cache()
                t0 = time.perf_counter()
                x, outs = chain(n)
                f = sg.compile(outs, backend=backend)
                dt = time.perf_counter() - t0
                results[n] = f(x=xv)
                kernels = ""
                if backend == "llvm":
                    kernels = f", {f._impl.kernels.count('kernel ')} kernels"
                rows.append(Row(NAME, f"{backend} N={n}", dt, dt,
                                note=f"{dt / n * 1e3:.2f} ms per step{kernels}"))
            if backend == "llvm":
                ref = sg.compile(chain(sizes[1])[1], backend="numpy")(x=xv)
                ok = all(np.allclose(a, b, rtol=1e-9) for a, b in zip(results[sizes[1]], ref))
                rows[-1].note += "" if ok else "; MISMATCH with the numpy backend"
        del tmp
    peer_sizes = (10, 100) if quick else (10, 100, 300)
    want = {n: _reference(n, xv) for n in peer_sizes}

    def jax_rows(jax: Any) -> None:
        jax.config.update("jax_enable_x64", True)
        jnp = jax.numpy

        def f(v: Any, n: int) -> Any:
            y = v
            for _ in range(n):
                y = jnp.sin(y) * 1.01 + 0.1 * jnp.tanh(y)
            return jnp.sum(y)

        for k, n in enumerate(peer_sizes):
            xk = xv + 1e-3 * k  # a new array each time; the shape below forces a new compile
            t0 = time.perf_counter()
            fn = jax.jit(jax.value_and_grad(lambda v, n=n: f(v, n)))
            lowered = fn.lower(jnp.asarray(np.resize(xk, xk.size + k)))  # traced and lowered
            compiled = lowered.compile()
            dt = time.perf_counter() - t0
            arg = np.resize(xk, xk.size + k)
            val, grad = compiled(jnp.asarray(arg))
            ref_val, ref_grad = _reference(n, arg)
            ok = np.allclose(float(val), ref_val, rtol=1e-9) and np.allclose(np.asarray(grad), ref_grad,
                                                                              rtol=1e-9)
            rows.append(Row(NAME, f"JAX jit N={n}", dt, dt,
                            note=f"{dt / n * 1e3:.2f} ms per step" + ("" if ok else "; MISMATCH")))

    def pytensor_rows(pt: Any) -> None:
        import pytensor.tensor as ptt

        for n in peer_sizes:
            t0 = time.perf_counter()
            v = ptt.dvector("x")
            y = v
            for _ in range(n):
                y = ptt.sin(y) * 1.01 + 0.1 * ptt.tanh(y)
            total = ptt.sum(y)
            fn = pt.function([v], [total, pt.grad(total, v)])
            dt = time.perf_counter() - t0
            val, grad = fn(xv)
            ok = np.allclose(val, want[n][0], rtol=1e-9) and np.allclose(grad, want[n][1], rtol=1e-9)
            rows.append(Row(NAME, f"PyTensor N={n}", dt, dt,
                            note=f"{dt / n * 1e3:.2f} ms per step" + ("" if ok else "; MISMATCH")))

    with_peer(rows, NAME, [f"JAX jit N={n}" for n in peer_sizes], "jax", jax_rows)
    with_peer(rows, NAME, [f"PyTensor N={n}" for n in peer_sizes], "pytensor", pytensor_rows)
    return rows


def _reference(n: int, xv: np.ndarray) -> tuple[float, np.ndarray]:
    """sum(y) and its gradient in float64 by forward differentiation, by hand."""
    y = xv.astype(np.float64)
    dy = np.ones_like(y)
    for _ in range(n):
        dy = dy * (np.cos(y) * 1.01 + 0.1 * (1 - np.tanh(y) ** 2))
        y = np.sin(y) * 1.01 + 0.1 * np.tanh(y)
    return float(y.sum()), dy


if __name__ == "__main__":
    from common import fmt_time

    for r in run("--quick" in sys.argv):
        print(f"{r.workload:28s} {r.contender:16s} {fmt_time(r.median_s):>12s} {r.note}")
