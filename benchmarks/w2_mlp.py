"""W2: one SGD step of an MLP, batch 256, 784-512-512-10, relu, softmax cross-entropy
(-mean(sum(one_hot(y, 10) * log_softmax(z), -1))), float32: forward, backward and the
parameter update in one call that returns the loss and the new parameters.

Run as a script with ``--json`` to print the rows as JSON (``run_all.py`` uses that to
measure W2 a second time with ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` unset).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Rounds, Row, check, pytensor_mode, with_peer  # noqa: E402

SIZES = (784, 512, 512, 10)
BATCH = 256
LR = 0.1
NAME = "W2 MLP SGD step"


def data(dtype: Any = np.float32) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    vals: dict[str, np.ndarray] = {"X": rng.standard_normal((BATCH, SIZES[0])).astype(dtype),
                                   "y": rng.integers(0, SIZES[-1], BATCH)}
    for k, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        vals[f"W{k}"] = (rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(dtype)
        vals[f"b{k}"] = np.zeros(b, dtype)
    return vals


def numpy_by_hand(v: dict[str, np.ndarray]) -> list[Any]:
    """Forward, backward, update, written out with NumPy."""
    X, y = v["X"], v["y"]
    hs = [X]
    h = X
    for k in range(2):
        h = np.maximum(h @ v[f"W{k}"] + v[f"b{k}"], 0)
        hs.append(h)
    z = h @ v["W2"] + v["b2"]
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    logp = z - m - np.log(s)
    n = X.shape[0]
    loss = -logp[np.arange(n), y].mean()
    g = e / s
    g[np.arange(n), y] -= 1
    g /= n
    new = {}
    for k in (2, 1, 0):
        new[f"W{k}"] = v[f"W{k}"] - LR * (hs[k].T @ g)
        new[f"b{k}"] = v[f"b{k}"] - LR * g.sum(axis=0)
        if k:
            g = (g @ v[f"W{k}"].T) * (hs[k] > 0)
    return [loss] + [new[f"{p}{k}"] for k in range(3) for p in ("W", "b")]


def graph() -> tuple[list[Any], list[Any]]:
    import symgrad as sg

    X = sg.placeholder("X", (None, SIZES[0]), "float32")
    y = sg.placeholder("y", (None,), "int64")
    params = []
    for k, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        params += [sg.placeholder(f"W{k}", (a, b), "float32"), sg.placeholder(f"b{k}", (b,), "float32")]
    h = X
    for k in range(2):
        h = sg.relu(h @ params[2 * k] + params[2 * k + 1])
    z = h @ params[4] + params[5]
    loss = -sg.mean(sg.sum(sg.one_hot(y, SIZES[-1]) * sg.log_softmax(z), -1))
    grads = sg.grad(loss, params)
    return [X, y, *params], [loss] + [p - LR * g for p, g in zip(params, grads)]


def run(quick: bool = False) -> list[Row]:
    import symgrad as sg

    vals = data()
    want = numpy_by_hand(data(np.float64))
    rows: list[Row] = []
    timed = Rounds(rows, seconds=0.5 if quick else 2.0, rounds=10)

    def add(name: str, fn: Any, note: str = "", to_host: Any = None) -> None:
        """Check ``fn()`` (through ``to_host`` if given) against the reference; if it passes,
        ``fn`` is timed with the others at the end."""
        bad = check(name, fn() if to_host is None else to_host(fn()), want, 1e-3, 1e-4)
        if bad:
            rows.append(Row(NAME, name, None, note=f"FAILED CHECK: {bad}"))
            return
        timed.enter(NAME, name, fn, note)

    add("NumPy by hand", lambda: numpy_by_hand(vals))
    ins, outs = graph()
    order = [t.name for t in ins]
    args = [vals[k] for k in order]
    for backend in ("numpy", "llvm"):
        f = sg.compile(outs, ins, backend=backend)
        add(f"symgrad {backend}", lambda f=f: f(*args))

    def torch_peer(torch: Any) -> None:
        tv = {k: torch.from_numpy(v) for k, v in vals.items()}

        def torch_step() -> list[Any]:
            ps = [tv[f"{p}{k}"].clone().requires_grad_(True) for k in range(3) for p in ("W", "b")]
            h = tv["X"]
            for k in range(2):
                h = torch.relu(h @ ps[2 * k] + ps[2 * k + 1])
            z = h @ ps[4] + ps[5]
            loss = torch.nn.functional.cross_entropy(z, tv["y"])
            loss.backward()
            with torch.no_grad():
                return [loss.detach().numpy()] + [(p - LR * p.grad).numpy() for p in ps]

        add("PyTorch eager", torch_step)

    def jax_peer(jax: Any) -> None:
        import jax.numpy as jnp

        def jloss(ps: list[Any], X: Any, y: Any) -> Any:
            h = X
            for k in range(2):
                h = jax.nn.relu(h @ ps[2 * k] + ps[2 * k + 1])
            z = h @ ps[4] + ps[5]
            onehot = jax.nn.one_hot(y, SIZES[-1], dtype=jnp.float32)
            return -jnp.mean(jnp.sum(onehot * jax.nn.log_softmax(z), -1))

        @jax.jit
        def jstep(ps: list[Any], X: Any, y: Any) -> Any:
            loss, gs = jax.value_and_grad(jloss)(ps, X, y)
            return [loss] + [p - LR * g for p, g in zip(ps, gs)]

        jps = [jnp.asarray(vals[f"{p}{k}"]) for k in range(3) for p in ("W", "b")]
        jX, jy = jnp.asarray(vals["X"]), jnp.asarray(vals["y"])
        # Timed: the step until its results are ready; the first (checked) call compiles.
        add("JAX jit", lambda: jax.block_until_ready(jstep(jps, jX, jy)),
            to_host=lambda r: [np.asarray(a) for a in r])

    def pytensor_peer(pt: Any) -> None:
        import pytensor.tensor as ptt

        X = ptt.matrix("X", dtype="float32")
        y = ptt.vector("y", dtype="int64")
        ps = []
        for k in range(3):
            ps += [ptt.matrix(f"W{k}", dtype="float32"), ptt.vector(f"b{k}", dtype="float32")]
        h = X
        for k in range(2):
            h = ptt.maximum(h @ ps[2 * k] + ps[2 * k + 1], 0)
        z = h @ ps[4] + ps[5]
        onehot = ptt.cast(ptt.eq(y[:, None], ptt.arange(SIZES[-1])), "float32")
        loss = -ptt.mean(ptt.sum(onehot * ptt.special.log_softmax(z, axis=-1), axis=-1))
        grads = pt.grad(loss, ps)
        step = pt.function([X, y, *ps], [loss] + [p - np.float32(LR) * g for p, g in zip(ps, grads)])
        pargs = [vals["X"], vals["y"]] + [vals[f"{p}{k}"] for k in range(3) for p in ("W", "b")]
        blas = "" if pt.config.blas__ldflags else "; no BLAS library found by PyTensor: GEMM through NumPy's C API"
        add("PyTensor", lambda: step(*pargs), note=pytensor_mode(step) + blas)

    with_peer(rows, NAME, ["PyTorch eager"], "torch", torch_peer)
    with_peer(rows, NAME, ["JAX jit"], "jax", jax_peer)
    with_peer(rows, NAME, ["PyTensor"], "pytensor", pytensor_peer)
    timed.run()
    return rows


if __name__ == "__main__":
    result = run("--quick" in sys.argv)
    if "--json" in sys.argv:
        print(json.dumps([r.__dict__ for r in result]))
    else:
        from common import fmt_time

        for r in result:
            print(f"{r.workload:20s} {r.contender:20s} {fmt_time(r.median_s):>12s} {r.note}")
