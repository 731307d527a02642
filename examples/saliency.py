"""Input-gradient saliency on the digits MLP: which pixels move a class score?

    python examples/saliency.py [--epochs 40] [--out out]

Trains the digits MLP (examples/digits_mlp.py), then differentiates the score (logit) of
each image's predicted class with respect to the image: ``sg.grad(score, x)``. The
gradient is a symbolic graph like any other, so it prints as a formula and compiles into
one function; OUT/saliency.png shows ten test digits with their gradients (red raises
the score, blue lowers it).
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import digits, output_dir, parser, pyplot  # noqa: E402
from digits_mlp import train_digits_mlp  # noqa: E402

import symgrad as sg  # noqa: E402


def saliency_function(trainer: sg.train.Trainer, backend: str = "numpy") -> tuple[sg.Function, list[str]]:
    """A compiled ``(x, class, *params) -> (scores, d score / d x)`` for a batch of images."""
    x = sg.placeholder("image", (None, 64))
    cls = sg.placeholder("cls", (None,), "int64")
    logits = trainer.model(x)  # evaluation mode
    score = sg.sum(sg.where(sg.one_hot(cls, 10, "bool"), logits, 0.0), axis=1)
    # the examples are independent, so the gradient of the summed scores is each
    # example's own input gradient
    sal = sg.grad(sg.sum(score), x)
    params = list(trainer.model.params.values())
    f = sg.compile([score, sal], [x, cls, *params], backend=backend)
    return f, [p.name or "" for p in params]


def saliency(trainer: sg.train.Trainer, images: np.ndarray, classes: np.ndarray,
             backend: str = "numpy") -> tuple[np.ndarray, np.ndarray]:
    """Class scores and their gradients with respect to the images."""
    f, names = saliency_function(trainer, backend)
    values = trainer.params
    scores, grads = f(images, classes, *[values[n] for n in names])
    return scores, grads


def plot(images: np.ndarray, grads: np.ndarray, labels: np.ndarray, pred: np.ndarray, path: str) -> None:
    plt = pyplot()
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(n * 1.2, 2.8))
    for k in range(n):
        axes[0, k].imshow(images[k].reshape(8, 8), cmap="gray_r")
        axes[0, k].set_title(f"{labels[k]} -> {pred[k]}", fontsize=8)
        lim = np.abs(grads[k]).max() or 1.0
        axes[1, k].imshow(grads[k].reshape(8, 8), cmap="RdBu_r", vmin=-lim, vmax=lim)
        for r in range(2):
            axes[r, k].axis("off")
    fig.suptitle("d score(predicted class) / d pixel")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> float:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    args = p.parse_args(argv)
    trainer, _, acc = train_digits_mlp(args.epochs, args.backend, not args.no_progress)
    _, _, x_test, y_test = digits()
    picks = np.array([np.flatnonzero(y_test == c)[0] for c in range(10)])
    images, labels = x_test[picks], y_test[picks]
    pred = trainer.predict(images).argmax(1)
    _, grads = saliency(trainer, images, pred, args.backend)
    path = os.path.join(output_dir(args.out), "saliency.png")
    plot(images, grads, labels, pred, path)
    print(f"model test accuracy {acc:.4f}; saliency of 10 test digits: {path}")
    return acc


if __name__ == "__main__":
    main()
