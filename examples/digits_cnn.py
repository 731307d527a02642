"""A small CNN on scikit-learn's bundled digits (8x8 images, no download).

    python examples/digits_cnn.py [--epochs 25] [--out out] [--backend numpy]

conv 3x3 (16) -> ReLU -> max-pool 2 -> conv 3x3 (32) -> ReLU -> max-pool 2 -> dense 64 ->
dense 10, trained with AdamW on mini-batches; writes the loss/accuracy curves and the
learned first-layer filters to OUT/digits_cnn.png. The full configuration reaches
>= 98% test accuracy.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import digits, output_dir, parser, pyplot  # noqa: E402

import symgrad as sg  # noqa: E402


def build_model(channels: tuple[int, int] = (16, 32)) -> sg.nn.Sequential:
    c1, c2 = channels
    return sg.nn.Sequential([
        sg.nn.Conv2d(1, c1, 3, padding=1, activation="relu"),   # 8x8
        sg.nn.MaxPool2d(2),                                      # 4x4
        sg.nn.Conv2d(c1, c2, 3, padding=1, activation="relu"),  # 4x4
        sg.nn.MaxPool2d(2),                                      # 2x2
        sg.nn.Flatten(),
        sg.nn.Dense(c2 * 4, 64, activation="relu"),
        sg.nn.Dense(64, 10),
    ])


def train_digits_cnn(epochs: int = 25, backend: str = "numpy", progress: bool = True, *,
                     batch_size: int = 32, lr: float = 3e-3, channels: tuple[int, int] = (16, 32),
                     seed: int = 0) -> tuple[sg.train.Trainer, sg.train.History, float]:
    """Train the digits CNN; return (trainer, history, test accuracy)."""
    x_train, y_train, x_test, y_test = digits(images=True)
    model = build_model(channels)
    steps = epochs * -(-len(x_train) // batch_size)
    opt = sg.optim.AdamW(sg.optim.warmup(sg.optim.cosine(lr, max(steps - 30, 1), lr * 0.02), 30),
                         weight_decay=1e-4)
    trainer = sg.train.Trainer(model, "cross_entropy", opt, metrics={"accuracy": sg.train.accuracy},
                               backend=backend, seed=seed)
    history = trainer.fit(x_train, y_train, epochs=epochs, batch_size=batch_size, progress=progress,
                          validation=(x_test, y_test), desc="digits CNN")
    return trainer, history, history.validation["accuracy"][-1]


def plot(trainer: sg.train.Trainer, history: sg.train.History, path: str) -> None:
    plt = pyplot()
    fig = plt.figure(figsize=(12, 4))
    a = fig.add_subplot(1, 3, 1)
    a.plot(history.loss, lw=0.6)
    a.set_yscale("log")
    a.set_xlabel("step")
    a.set_title("training loss")
    b = fig.add_subplot(1, 3, 2)
    b.plot(history.metrics["accuracy"], label="train")
    b.plot(history.validation["accuracy"], label="test")
    b.set_xlabel("epoch")
    b.set_title("accuracy")
    b.legend()
    w = trainer.params["conv1.w"][:, 0]  # (16, 3, 3)
    grid = np.ones((4 * 4 - 1, 4 * 4 - 1)) * np.nan
    for k in range(min(16, len(w))):
        r, c = divmod(k, 4)
        grid[r * 4:r * 4 + 3, c * 4:c * 4 + 3] = w[k]
    ax = fig.add_subplot(1, 3, 3)
    ax.imshow(grid, cmap="RdBu")
    ax.set_title("conv1 filters")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> float:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=25)
    args = p.parse_args(argv)
    trainer, history, acc = train_digits_cnn(args.epochs, args.backend, not args.no_progress)
    path = os.path.join(output_dir(args.out), "digits_cnn.png")
    plot(trainer, history, path)
    print(f"test accuracy {acc:.4f} after {history.steps} steps; "
          f"{history.time_per_step * 1e3:.3f} ms per training step ({args.backend}); plot: {path}")
    return acc


if __name__ == "__main__":
    main()
