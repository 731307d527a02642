"""An autoencoder on scikit-learn's bundled digits: 64 -> 32 -> 10 -> 32 -> 64.

    python examples/autoencoder.py [--epochs 60] [--out out]

The encoder squeezes each 8x8 image into 10 numbers and the decoder rebuilds it; the
loss is the binary cross-entropy of the pixels (intensities in [0, 1]) on the decoder's
logits. OUT/autoencoder.png shows test images above their reconstructions.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import digits, output_dir, parser, pyplot  # noqa: E402

import symgrad as sg  # noqa: E402


def build_model(code: int = 10) -> sg.nn.Sequential:
    encoder = sg.nn.Sequential([sg.nn.Dense(64, 32, "relu"), sg.nn.Dense(32, code)], name="enc")
    decoder = sg.nn.Sequential([sg.nn.Dense(code, 32, "relu"), sg.nn.Dense(32, 64)], name="dec")
    return sg.nn.Sequential([encoder, decoder])  # parameters enc.dense1.w ... dec.dense2.b


def train_autoencoder(epochs: int = 60, backend: str = "numpy", progress: bool = True, *,
                      code: int = 10, seed: int = 0) -> tuple[sg.train.Trainer, sg.train.History, float]:
    """Train; return (trainer, history, test reconstruction MSE of the pixels)."""
    x_train, _, x_test, _ = digits()
    trainer = sg.train.Trainer(build_model(code), "binary_cross_entropy_with_logits",
                               sg.optim.Adam(3e-3), backend=backend, seed=seed)
    history = trainer.fit(x_train, x_train, epochs=epochs, batch_size=32, progress=progress,
                          desc="autoencoder")
    recon = 1.0 / (1.0 + np.exp(-trainer.predict(x_test)))
    return trainer, history, float(np.mean((recon - x_test) ** 2))


def plot(trainer: sg.train.Trainer, history: sg.train.History, path: str, n: int = 10) -> None:
    plt = pyplot()
    _, _, x_test, _ = digits()
    recon = 1.0 / (1.0 + np.exp(-trainer.predict(x_test[:n])))
    fig, axes = plt.subplots(3, n, figsize=(n * 1.1, 4))
    for k in range(n):
        axes[0, k].imshow(x_test[k].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        axes[1, k].imshow(recon[k].reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
        axes[0, k].axis("off")
        axes[1, k].axis("off")
    axes[0, 0].set_title("test images", loc="left", fontsize=9)
    axes[1, 0].set_title("reconstructions", loc="left", fontsize=9)
    for k in range(n):
        axes[2, k].remove()
    ax = fig.add_subplot(3, 1, 3)
    ax.plot(history.epoch_loss)
    ax.set_xlabel("epoch")
    ax.set_ylabel("BCE")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> float:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=60)
    args = p.parse_args(argv)
    trainer, history, mse = train_autoencoder(args.epochs, args.backend, not args.no_progress)
    path = os.path.join(output_dir(args.out), "autoencoder.png")
    plot(trainer, history, path)
    print(f"test reconstruction MSE {mse:.4f} (pixel variance {np.var(digits()[2]):.4f}) after "
          f"{history.steps} steps; plot: {path}")
    return mse


if __name__ == "__main__":
    main()
