"""An MLP classifier on scikit-learn's bundled digits (8x8 images, no download).

    python examples/digits_mlp.py [--epochs 40] [--out out] [--backend numpy]

Trains 64 -> 128 -> 64 -> 10 (ReLU, dropout) with Adam on mini-batches of 32, each step
one compiled call, and writes the loss and accuracy curves to OUT/digits_mlp.png.
The full configuration reaches >= 97% test accuracy.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import digits, output_dir, parser, pyplot  # noqa: E402

import symgrad as sg  # noqa: E402


def build_model(hidden: int = 128, dropout: float = 0.1) -> sg.nn.Sequential:
    return sg.nn.Sequential([
        sg.nn.Dense(64, hidden, activation="relu"),
        *([sg.nn.Dropout(dropout, seed=1)] if dropout else []),
        sg.nn.Dense(hidden, 64, activation="relu"),
        sg.nn.Dense(64, 10),
    ])


def train_digits_mlp(epochs: int = 40, backend: str = "numpy", progress: bool = True, *,
                     batch_size: int = 32, lr: float = 2e-3, hidden: int = 128, dropout: float = 0.1,
                     seed: int = 0) -> tuple[sg.train.Trainer, sg.train.History, float]:
    """Train the digits MLP; return (trainer, history, test accuracy).

    ``trainer.model`` is the model (parameters ``dense1.w`` ...), ``trainer.params`` the
    trained values, ``history.loss`` the per-step losses. ``dropout=0`` leaves the dropout
    layer (and its random-number op) out."""
    x_train, y_train, x_test, y_test = digits()
    model = build_model(hidden, dropout)
    steps_per_epoch = -(-len(x_train) // batch_size)
    schedule = sg.optim.warmup(sg.optim.cosine(lr, max(epochs * steps_per_epoch - 50, 1), lr * 0.05), 50)
    trainer = sg.train.Trainer(model, "cross_entropy", sg.optim.Adam(schedule),
                               metrics={"accuracy": sg.train.accuracy}, backend=backend, seed=seed)
    history = trainer.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, progress=progress,
                          validation=(x_test, y_test), desc="digits MLP")
    return trainer, history, history.validation["accuracy"][-1]


def plot(history: sg.train.History, path: str) -> None:
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(history.loss, lw=0.6, label="step loss")
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_ylabel("cross-entropy")
    a.legend()
    b.plot(history.metrics["accuracy"], label="train (dropout on)")
    b.plot(history.validation["accuracy"], label="test")
    b.set_xlabel("epoch")
    b.set_ylabel("accuracy")
    b.legend()
    fig.suptitle("digits MLP")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> float:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=40)
    args = p.parse_args(argv)
    trainer, history, acc = train_digits_mlp(args.epochs, args.backend, not args.no_progress)
    path = os.path.join(output_dir(args.out), "digits_mlp.png")
    plot(history, path)
    print(f"test accuracy {acc:.4f} after {history.steps} steps; "
          f"{history.time_per_step * 1e3:.3f} ms per training step ({args.backend}); plot: {path}")
    return acc


if __name__ == "__main__":
    main()
