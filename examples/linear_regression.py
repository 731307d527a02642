"""Gradient-descent linear regression with symbolically derived gradients.

Fits y = w x + b to X = [[1], [2], [3], [4], [5]], y = [1, 2, 3, 4, 5] with learning rate
0.01, stopping when the loss falls below a threshold or after a maximum number of
iterations, and prints the derived gradient formulas and the learned values (w -> 1,
b -> 0).

A hand-derived version of this example that circulates gets the gradient's sign wrong
and mixes (5, 1) and (5,) shapes (so ``pred - y`` silently broadcasts to (5, 5)); here
the gradient is derived from the loss, and the shapes are declared, so neither can
happen.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

import symgrad as sg

X_DATA = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
Y_DATA = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


@dataclass
class Result:
    w: float
    b: float
    loss: float
    iterations: int
    grad_w_formula: str
    grad_b_formula: str
    losses: list[float]


def build(backend: str = "numpy") -> tuple[sg.Function, str, str]:
    x = sg.placeholder("x", shape=(None, 1), dtype="float64")
    y = sg.placeholder("y", shape=(None,), dtype="float64")
    w = sg.placeholder("w", shape=(1,), dtype="float64")
    b = sg.placeholder("b", shape=(), dtype="float64")
    pred = x @ w + b  # shape (n,), the same as y
    loss = sg.mean((pred - y) ** 2)
    gw, gb = sg.grad(loss, [w, b])
    step = sg.compile([loss, gw, gb], inputs=[x, y, w, b], backend=backend)
    return step, sg.pretty(gw, names=["dloss/dw"]), sg.pretty(gb, names=["dloss/db"])


def fit(lr: float = 0.01, tol: float = 1e-10, max_iter: int = 50_000, backend: str = "numpy") -> Result:
    step, fw, fb = build(backend)
    w = np.zeros(1)
    b = np.zeros(())
    losses = []
    for it in range(1, max_iter + 1):
        loss, gw, gb = step(X_DATA, Y_DATA, w, b)
        losses.append(float(loss))
        if not np.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at iteration {it}")
        if loss < tol:
            break
        w = w - lr * gw
        b = b - lr * gb
    return Result(float(w[0]), float(b), float(loss), it, fw, fb, losses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--max-iter", type=int, default=50_000)
    ap.add_argument("--backend", default="numpy")
    args = ap.parse_args()
    r = fit(args.lr, args.tol, args.max_iter, args.backend)
    print("derived gradients:")
    print("  " + r.grad_w_formula.replace("\n", "\n  "))
    print("  " + r.grad_b_formula.replace("\n", "\n  "))
    print(f"stopped after {r.iterations} iterations, loss {r.loss:.3g}")
    print(f"learned w = {r.w:.6f} (expected 1), b = {r.b:.6f} (expected 0)")


if __name__ == "__main__":
    main()
