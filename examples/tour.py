"""A short tour of symgrad: derive, read, compile and run gradients.

Run by `make demo`. Prints derived gradient formulas, fits the linear-regression example,
and checks a Hessian against finite differences.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import symgrad as sg  # noqa: E402
from linear_regression import fit  # noqa: E402


def main() -> None:
    print("== 1. a gradient you can read")
    w = sg.placeholder("w")
    x = sg.placeholder("x")
    b = sg.placeholder("b")
    y = sg.sigmoid(w * x + b)
    print("d/dw sigmoid(w*x + b):")
    print("  " + sg.pretty(sg.grad(y, w), names=["dy/dw"]).replace("\n", "\n  "))

    print("\n== 2. linear regression by gradient descent (derived gradients)")
    r = fit()
    print("  " + r.grad_w_formula.replace("\n", "\n  "))
    print(f"  {r.iterations} iterations: w = {r.w:.5f}, b = {r.b:.5f}, loss = {r.loss:.2g}")

    print("\n== 3. a Hessian from one batched forward-over-reverse pass")
    v = sg.placeholder("v", shape=(6,), dtype="float64")
    rosen = sg.sum(100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2)
    h = sg.compile(sg.hessian(rosen, v))
    point = np.linspace(-1, 1, 6)
    print(np.array2string(h(point), precision=1, suppress_small=True, max_line_width=100))


if __name__ == "__main__":
    main()
