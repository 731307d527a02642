"""Helpers the examples share: the digits data, the output folder, the plotting backend."""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np


def digits(test_fraction: float = 0.25, seed: int = 0, images: bool = False) -> tuple[np.ndarray, ...]:
    """scikit-learn's bundled 8x8 digits (1797 images, no download), scaled to [0, 1] and
    split into train and test sets with a fixed permutation. ``images`` keeps (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)
    x = x[:, None, :, :] if images else x.reshape(len(x), -1)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(len(x) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend (writes files only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def output_dir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default="out", help="folder for the PNG plots (default ./out)")
    p.add_argument("--backend", default="numpy", help="symgrad backend (default numpy)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


