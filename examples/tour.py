"""A short tour of symgrad, run by `make demo`.

1. Trains the digits MLP (scikit-learn's bundled 8x8 digits) with a progress bar.
2. Prints the derived gradient formula of one layer, with the parameters' names.
3. Fits the linear-regression example and checks a Hessian from one batched pass.
4. Emits the MLP's training-loss gradient as a standalone C bundle and runs its self-test.
5. Says where the plots and the bundle went.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import digits, output_dir  # noqa: E402
from digits_mlp import plot, train_digits_mlp  # noqa: E402
from linear_regression import fit  # noqa: E402

import symgrad as sg  # noqa: E402
from symgrad.emit import run_bundle_test  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="a short tour of symgrad")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--out", default="out")
    args = ap.parse_args(argv)
    out = output_dir(args.out)

    print(f"== 1. training the digits MLP ({args.backend} backend)")
    trainer, history, acc = train_digits_mlp(args.epochs, args.backend, progress=True)
    curve = os.path.join(out, "tour_digits_mlp.png")
    plot(history, curve)
    print(f"test accuracy {acc:.3f}; {history.time_per_step * 1e3:.2f} ms per training step")

    print("\n== 2. the derived gradient of the last layer's weights")
    model = trainer.model
    x = sg.placeholder("x", shape=(None, 64))
    y = sg.placeholder("y", shape=(None,), dtype="int64")
    loss = sg.nn.cross_entropy(model(x), y)
    last_w = [p for name, p in model.params.items() if name.endswith(".w")][-1]
    print(sg.pretty(sg.grad(loss, last_w), names=[f"dloss/d{last_w.name}"]))

    print("\n== 3. linear regression by gradient descent, and a Hessian")
    r = fit()
    print(r.grad_w_formula)
    print(f"{r.iterations} iterations: w = {r.w:.5f}, b = {r.b:.5f}")
    v = sg.placeholder("v", shape=(5,), dtype="float64")
    rosen = sg.sum(100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2)
    h = sg.compile(sg.hessian(rosen, v))
    print("Hessian of Rosenbrock at 0:")
    print(np.array2string(h(np.zeros(5)), precision=1, suppress_small=True))

    print("\n== 4. a standalone C kernel of the loss and its gradients")
    grads = sg.grad(loss, list(model.params.values()))
    outputs = {"loss": loss, **{f"d_{n}": g for n, g in zip(model.params, grads)}}
    # the bundle's self-test runs on a real batch and the trained weights
    _, _, x_test, y_test = digits()
    example = {"x": x_test[:32], "y": y_test[:32], **trainer.params}
    bundle = sg.emit(outputs, [x, y, *model.params.values()], target="c",
                     out_dir=os.path.join(out, "digits_mlp_c"), name="digits_mlp_grad",
                     example=example)
    result = run_bundle_test(bundle)
    print(f"wrote {len(bundle.files)} files to {bundle.out_dir}; `make test` there: "
          f"{result.strip().splitlines()[-1] if result.strip() else 'ok'}")

    print(f"\n== 5. plot: {curve}; C bundle: {bundle.out_dir}")


if __name__ == "__main__":
    main()
