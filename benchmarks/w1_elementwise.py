"""W1: value and gradient of sum(softplus(x)*tanh(x) + sigmoid(x)**2), 4,194,304 float32.

Contenders: a hand-written NumPy version, symgrad's NumPy and LLVM backends (LLVM on 1
thread and on ``SYMGRAD_NUM_THREADS`` threads), and JAX / PyTorch / PyTensor / a Numba
hand-fused loop (w1_numba.py: polynomial expm1 and log1p, on as many threads as symgrad's
multi-thread row) when they are installed. Also the W1 compile time (pipeline + codegen +
LLVM): cold (cache off) and from the on-disk cache.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Env, Rounds, Row, check, pytensor_mode, with_peer  # noqa: E402

N = 4_194_304
NAME = "W1 elementwise value+grad"


def reference(x: np.ndarray) -> tuple[float, np.ndarray]:
    x = x.astype(np.float64)
    sp = np.logaddexp(0.0, x)
    th = np.tanh(x)
    s = 1.0 / (1.0 + np.exp(-x))
    value = float(np.sum(sp * th + s * s))
    grad = s * th + sp * (1.0 - th * th) + 2.0 * s * s * (1.0 - s)
    return value, grad


def numpy_by_hand(x: np.ndarray) -> tuple[Any, np.ndarray]:
    e = np.exp(-np.abs(x))
    sp = np.maximum(x, 0) + np.log1p(e)
    th = np.tanh(x)
    s = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    value = np.sum(sp * th + s * s)
    grad = s * th + sp * (1 - th * th) + 2 * s * s * (1 - s)
    return value, grad


def graph() -> tuple[Any, Any]:
    import symgrad as sg

    x = sg.placeholder("x", (None,), "float32")
    f = sg.sum(sg.softplus(x) * sg.tanh(x) + sg.sigmoid(x) ** 2)
    return x, [f, sg.grad(f, x)]


def _thread_count(f: Any, count: str) -> Any:
    """A context factory: ``f`` (LLVM) runs on ``count`` threads inside it."""
    @contextlib.contextmanager
    def ctx() -> Iterator[None]:
        with Env(SYMGRAD_NUM_THREADS=count):
            f._impl.reset()  # plan the thread split again for this thread count
            try:
                yield
            finally:
                f._impl.reset()
    return ctx


def run(quick: bool = False) -> list[Row]:
    import symgrad as sg

    rng = np.random.default_rng(0)
    n = N // 16 if quick else N
    x = (rng.standard_normal(n) * 3).astype(np.float32)
    want = reference(x)
    rtol, atol = 2e-4, 2e-4 * np.sqrt(n)  # the sum of n float32 terms
    rows: list[Row] = []
    timed = Rounds(rows, seconds=1.0)

    def add(name: str, fn: Any, note: str = "", to_host: Any = None, context: Any = None) -> None:
        """Check ``fn()`` (through ``to_host`` if given) against the reference; if it passes,
        ``fn`` is timed with the others at the end (``context``: see :class:`Rounds`)."""
        got = fn() if to_host is None else to_host(fn())
        bad = check(name, [got[0]], [want[0]], rtol, atol) or check(name, [got[1]], [want[1]], 1e-4, 1e-5)
        if bad:
            rows.append(Row(NAME, name, None, note=f"FAILED CHECK: {bad}"))
            return
        timed.enter(NAME, name, fn, note, context)

    add("NumPy by hand", lambda: numpy_by_hand(x))
    xs, outs = graph()
    f_np = sg.compile(outs, backend="numpy")
    add("symgrad numpy", lambda: f_np(x=x))
    f_llvm = sg.compile(outs, backend="llvm")
    threads = os.environ.get("SYMGRAD_NUM_THREADS") or str(len(os.sched_getaffinity(0)))
    for count, label in (("1", "1 thread"), (threads, f"{threads} threads")):
        ctx = _thread_count(f_llvm, count)
        with ctx():
            add(f"symgrad llvm, {label}", lambda: f_llvm(x=x), context=ctx)

    def jax_peer(jax: Any) -> None:
        import jax.numpy as jnp

        def jf(v: Any) -> Any:
            return jnp.sum(jax.nn.softplus(v) * jnp.tanh(v) + jax.nn.sigmoid(v) ** 2)

        vg = jax.jit(jax.value_and_grad(jf))
        xj = jnp.asarray(x)
        # Timed: the call until its results are ready; the first (checked) call compiles.
        add("JAX jit", lambda: jax.block_until_ready(vg(xj)), to_host=lambda r: [np.asarray(a) for a in r])

    def torch_peer(torch: Any) -> None:
        xt = torch.from_numpy(x)

        def tf() -> Any:
            v = xt.clone().requires_grad_(True)
            y = torch.sum(torch.nn.functional.softplus(v) * torch.tanh(v) + torch.sigmoid(v) ** 2)
            y.backward()
            return y.detach().numpy(), v.grad.numpy()

        add("PyTorch eager", tf)

    def pytensor_peer(pt: Any) -> None:
        import pytensor.tensor as ptt

        v = ptt.vector("x", dtype="float32")
        y = ptt.sum(ptt.softplus(v) * ptt.tanh(v) + ptt.sigmoid(v) ** 2)
        fpt = pt.function([v], [y, pt.grad(y, v)])
        add("PyTensor", lambda: fpt(x), note=pytensor_mode(fpt))

    def numba_peer(numba: Any) -> None:
        from w1_numba import build

        n_threads = min(int(threads), numba.config.NUMBA_NUM_THREADS)
        w1 = build(n_threads)
        add(numba_name, lambda: w1(x), note="polynomial expm1/log1p, float32, prange")

    numba_name = f"Numba hand-fused loop, {threads} threads"
    with_peer(rows, NAME, ["JAX jit"], "jax", jax_peer)
    with_peer(rows, NAME, ["PyTorch eager"], "torch", torch_peer)
    with_peer(rows, NAME, ["PyTensor"], "pytensor", pytensor_peer)
    with_peer(rows, NAME, [numba_name], "numba", numba_peer)
    timed.run()
    rows += compile_times()
    return rows


def compile_times() -> list[Row]:
    """The W1 graph through pipeline + codegen + LLVM: cold, then from the disk cache."""
    import symgrad as sg
    from symgrad.backends.llvm import clear_memory_cache

    rows = []
    with tempfile.TemporaryDirectory() as tmp, Env(SYMGRAD_CACHE_DIR=tmp):
        for label in ("cold", "from the disk cache"):
            clear_memory_cache()
            t0 = time.perf_counter()
            _, outs = graph()  # building the graph is part of what a user waits for
            f = sg.compile(outs, backend="llvm")
            dt = time.perf_counter() - t0
            rows.append(Row("W1 compile (llvm)", label, dt, dt, note=f"cache: {f._impl.cache}"))
    return rows


if __name__ == "__main__":
    from common import fmt_time

    for r in run("--quick" in sys.argv):
        print(f"{r.workload:32s} {r.contender:28s} {fmt_time(r.median_s):>12s} {r.note}")
