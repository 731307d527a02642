"""W5: the Hessian of the extended Rosenbrock function, n = 200, float64.

f(x) = sum_i 100 (x[2i+1] - x[2i]^2)^2 + (1 - x[2i])^2. The baseline is the analytic
Hessian written with NumPy (2x2 blocks on the diagonal).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, check, pytensor_mode, timeit_batched, with_peer  # noqa: E402

N = 200
NAME = "W5 Hessian Rosenbrock"


def analytic(x: np.ndarray) -> np.ndarray:
    u, v = x[0::2], x[1::2]
    h = np.zeros((x.size, x.size))
    i = np.arange(0, x.size, 2)
    h[i, i] = 1200 * u * u - 400 * v + 2
    h[i, i + 1] = h[i + 1, i] = -400 * u
    h[i + 1, i + 1] = 200.0
    return h


def run(quick: bool = False) -> list[Row]:
    import symgrad as sg

    x = np.random.default_rng(0).uniform(-2, 2, N)
    want = analytic(x)
    rows: list[Row] = []

    def add(name: str, fn: Any, note: str = "", to_host: Any = None) -> None:
        """Check ``fn()`` (through ``to_host`` if given) against the reference, then time ``fn``."""
        bad = check(name, fn() if to_host is None else to_host(fn()), want, 1e-10, 1e-8)
        if bad:
            rows.append(Row(NAME, name, None, note=f"FAILED CHECK: {bad}"))
            return
        med, lo = timeit_batched(fn, batch=50 if quick else 500, rounds=9)
        rows.append(Row(NAME, name, med, lo, note))

    add("NumPy analytic", lambda: analytic(x))
    xs = sg.placeholder("x", (N,), "float64")
    u, v = xs[0::2], xs[1::2]
    f = sg.sum(100.0 * (v - u * u) ** 2 + (1.0 - u) ** 2)
    hess = sg.hessian(f, xs)
    for backend in ("numpy", "llvm"):
        try:
            fn = sg.compile(hess, backend=backend)
        except Exception as exc:  # noqa: BLE001 - reported in the table
            rows.append(Row(NAME, f"symgrad {backend}", None, note=f"compile failed: {exc}"[:200]))
            continue
        add(f"symgrad {backend}", lambda fn=fn: fn(x=x))

    def jax_peer(jax: Any) -> None:
        import jax.numpy as jnp

        def jf(t: Any) -> Any:
            a, b = t[0::2], t[1::2]
            return jnp.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)

        # float64 needs JAX's x64 mode: on for this workload only (compile and calls).
        if hasattr(jax, "enable_x64"):
            x64 = jax.enable_x64(True)
        else:  # older JAX
            from jax.experimental import enable_x64  # type: ignore[attr-defined]

            x64 = enable_x64()
        with x64:
            hj = jax.jit(jax.hessian(jf))
            xj = jnp.asarray(x)
            # Timed: the call until its result is ready; the first (checked) call compiles.
            add("JAX jit", lambda: jax.block_until_ready(hj(xj)), note="jax.hessian (forward over reverse)",
                to_host=np.asarray)

    def torch_peer(torch: Any) -> None:
        def tf(t: Any) -> Any:
            a, b = t[0::2], t[1::2]
            return torch.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)

        xt = torch.from_numpy(x)
        add("PyTorch (vectorized)", lambda: torch.autograd.functional.hessian(tf, xt, vectorize=True).numpy())

    def pytensor_peer(pt: Any) -> None:
        import pytensor.gradient as ptg
        import pytensor.tensor as ptt

        v = ptt.vector("x", dtype="float64")
        a, b = v[0::2], v[1::2]
        cost = ptt.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)
        by_rows = pt.function([v], ptg.hessian(cost, v))
        add("PyTensor", lambda: by_rows(x), note=f"{pytensor_mode(by_rows)}; hessian (a scan over rows)")
        vectorized = pt.function([v], ptg.jacobian(pt.grad(cost, v), v, vectorize=True))
        add("PyTensor (vectorized jacobian)", lambda: vectorized(x), note="jacobian(grad, vectorize=True)")

    with_peer(rows, NAME, ["JAX jit"], "jax", jax_peer)
    with_peer(rows, NAME, ["PyTensor", "PyTensor (vectorized jacobian)"], "pytensor", pytensor_peer)
    with_peer(rows, NAME, ["PyTorch (vectorized)"], "torch", torch_peer)
    return rows


if __name__ == "__main__":
    from common import fmt_time

    for r in run("--quick" in sys.argv):
        print(f"{r.workload:22s} {r.contender:22s} {fmt_time(r.median_s):>12s} {r.note}")
