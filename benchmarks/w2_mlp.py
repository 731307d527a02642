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
from common import Row, check, peer, timeit  # noqa: E402

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

    def add(name: str, fn: Any, note: str = "") -> None:
        bad = check(name, fn(), want, 1e-3, 1e-4)
        if bad:
            rows.append(Row(NAME, name, None, note=f"FAILED CHECK: {bad}"))
            return
        med, lo = timeit(fn, min_seconds=0.5 if quick else 2.0)
        rows.append(Row(NAME, name, med, lo, note))

    add("NumPy by hand", lambda: numpy_by_hand(vals))
    ins, outs = graph()
    order = [t.name for t in ins]
    args = [vals[k] for k in order]
    for backend in ("numpy", "llvm"):
        f = sg.compile(outs, ins, backend=backend)
        add(f"symgrad {backend}", lambda f=f: f(*args))
    torch = peer("torch")
    if torch is None:
        rows.append(Row(NAME, "PyTorch eager", None, note="not installed"))
    else:
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
    jax = peer("jax")
    if jax is None:
        rows.append(Row(NAME, "JAX jit", None, note="not installed"))
    else:
        import jax.numpy as jnp

        def jloss(ps: list[Any], X: Any, y: Any) -> Any:
            h = X
            for k in range(2):
                h = jax.nn.relu(h @ ps[2 * k] + ps[2 * k + 1])
            z = h @ ps[4] + ps[5]
            return -jnp.mean(jnp.sum(jax.nn.one_hot(y, SIZES[-1]) * jax.nn.log_softmax(z), -1))

        @jax.jit
        def jstep(ps: list[Any], X: Any, y: Any) -> Any:
            loss, gs = jax.value_and_grad(jloss)(ps, X, y)
            return [loss] + [p - LR * g for p, g in zip(ps, gs)]

        jps = [jnp.asarray(vals[f"{p}{k}"]) for k in range(3) for p in ("W", "b")]
        jX, jy = jnp.asarray(vals["X"]), jnp.asarray(vals["y"])
        add("JAX jit", lambda: [np.asarray(a) for a in jax.block_until_ready(jstep(jps, jX, jy))])
    if peer("pytensor") is None:
        rows.append(Row(NAME, "PyTensor", None, note="not installed"))
    return rows


if __name__ == "__main__":
    result = run("--quick" in sys.argv)
    if "--json" in sys.argv:
        print(json.dumps([r.__dict__ for r in result]))
    else:
        from common import fmt_time

        for r in result:
            print(f"{r.workload:20s} {r.contender:20s} {fmt_time(r.median_s):>12s} {r.note}")
