"""Compile time of value+gradient for a chain of N elementwise steps,
y = sin(y)*1.01 + 0.1*tanh(y) (about 5 ops each), N = 10 ... 3000: building the graph, the
pass pipeline, and the backend (for LLVM: lowering, code generation and LLVM itself, with
the compile cache off). The time per step shows whether growth is linear.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Env, Row  # noqa: E402

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
    return rows


if __name__ == "__main__":
    from common import fmt_time

    for r in run("--quick" in sys.argv):
        print(f"{r.workload:28s} {r.contender:16s} {fmt_time(r.median_s):>12s} {r.note}")
