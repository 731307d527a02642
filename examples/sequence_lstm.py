"""A recurrent sequence model: continue a sine wave.

    python examples/sequence_lstm.py [--cell lstm|gru|rnn] [--epochs 30] [--out out]

Each example is 24 samples of ``sin(f t + phase)`` with a random frequency and phase; an
LSTM (or GRU / Elman RNN), unrolled over the 24 steps, reads them and a dense layer
predicts the next sample. After training, the model continues unseen waves on its own
(feeding back its predictions); OUT/sequence_lstm.png shows the continuations.
"""

from __future__ import annotations

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import output_dir, parser, pyplot  # noqa: E402

import symgrad as sg  # noqa: E402

CELLS = {"lstm": sg.nn.LSTM, "gru": sg.nn.GRU, "rnn": sg.nn.RNN}


def waves(n: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` windows of ``steps + 1`` samples; inputs (n, steps, 1), targets (n, 1)."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.3, 0.6, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    t = np.arange(steps + 1)[None, :]
    s = np.sin(freq * t + phase).astype(np.float32)
    return s[:, :steps, None], s[:, steps:]


def build_model(cell: str = "lstm", hidden: int = 32) -> sg.nn.Sequential:
    return sg.nn.Sequential([CELLS[cell](1, hidden, return_sequences=False), sg.nn.Dense(hidden, 1)])


def train_sequence(epochs: int = 30, cell: str = "lstm", backend: str = "numpy", progress: bool = True, *,
                   steps: int = 24, n_train: int = 2000, hidden: int = 32, seed: int = 0,
                   ) -> tuple[sg.train.Trainer, sg.train.History, float]:
    """Train; return (trainer, history, test MSE of the one-step prediction)."""
    x, y = waves(n_train, steps, seed)
    xt, yt = waves(500, steps, seed + 1)
    trainer = sg.train.Trainer(build_model(cell, hidden), "mse",
                               sg.optim.Adam(sg.optim.cosine(1e-2, epochs * -(-n_train // 64), 1e-4),
                                             clip_norm=1.0),
                               backend=backend, seed=seed)
    history = trainer.fit(x, y, epochs=epochs, batch_size=64, progress=progress, desc=f"sine {cell}")
    return trainer, history, trainer.evaluate(xt, yt)["loss"]


def continue_wave(trainer: sg.train.Trainer, start: np.ndarray, n: int) -> np.ndarray:
    """Feed the model its own predictions for ``n`` steps after the window ``start`` (steps, 1)."""
    window = start.copy()
    out = []
    for _ in range(n):
        nxt = trainer.predict(window[None])[0, 0]
        out.append(nxt)
        window = np.concatenate([window[1:], [[nxt]]]).astype(np.float32)
    return np.array(out)


def plot(trainer: sg.train.Trainer, history: sg.train.History, path: str, steps: int = 24) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    axes[0].plot(history.loss, lw=0.6)
    axes[0].set_yscale("log")
    axes[0].set_title("training loss (MSE)")
    rng = np.random.default_rng(7)
    for ax in axes[1:]:
        f, ph = rng.uniform(0.3, 0.6), rng.uniform(0, 2 * np.pi)
        t = np.arange(steps + 40)
        s = np.sin(f * t + ph).astype(np.float32)
        pred = continue_wave(trainer, s[:steps, None], 40)
        ax.plot(t, s, "k-", lw=1, label="true")
        ax.plot(t[steps:], pred, "r--", label="model (fed back)")
        ax.axvline(steps - 0.5, color="gray", lw=0.5)
        ax.set_title(f"f = {f:.2f}")
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> float:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--cell", choices=sorted(CELLS), default="lstm")
    args = p.parse_args(argv)
    trainer, history, mse = train_sequence(args.epochs, args.cell, args.backend, not args.no_progress)
    path = os.path.join(output_dir(args.out), "sequence_lstm.png")
    plot(trainer, history, path)
    print(f"{args.cell}: test MSE of the next sample {mse:.2e} after {history.steps} steps; "
          f"{history.time_per_step * 1e3:.2f} ms per step; plot: {path}")
    return mse


if __name__ == "__main__":
    main()
