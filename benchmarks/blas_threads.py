"""BLAS threads: float32 matrix products m x k @ k x n on 1 thread and on 2 (the OpenBLAS
that NumPy ships, switched with its own ``openblas_set_num_threads``), to choose the size
below which symgrad runs a product on one thread (``blas.ONE_THREAD_BELOW``).

Each size is timed in rounds that alternate the thread counts, so load from other processes
falls on both alike. The table gives the median time per product (what a loaded machine
sees) and the fastest (close to what an idle one sees), and their ratios. Results:
``benchmarks/blas_threads.md``.

    .venv/bin/python benchmarks/blas_threads.py [--seconds 0.2] [--dtype float32]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import numpy as np

# (m, k, n): square products, the W2 MLP's (batch 256, 784-512-512-10) and a char-LSTM's
# (batch 16, hidden 128, 4 gates) shapes, from small to large
SIZES = [
    (16, 16, 16), (32, 32, 32), (16, 128, 512), (64, 64, 64), (16, 256, 512), (256, 512, 10),
    (96, 96, 96), (128, 128, 128), (64, 256, 256), (192, 192, 192), (256, 256, 256),
    (256, 784, 128), (256, 512, 512), (384, 384, 384), (256, 784, 512), (512, 512, 512),
    (1024, 1024, 1024),
]


def _time(fn: Callable[[], object], seconds: float) -> list[float]:
    """Seconds per call of ``fn``, for about ``seconds`` of calls."""
    fn()
    times: list[float] = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or len(times) < 5:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.2, help="per size, thread count and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    from symgrad.backends.llvm import blas

    switch = blas.numpy_threads()
    if switch is None:
        raise SystemExit("this NumPy has no OpenBLAS with a thread setting")
    rng = np.random.default_rng(0)
    print(f"OpenBLAS {switch.where}; {switch.default} threads by default")
    print(f"{'m x k x n':>18} {'m*k*n':>13} | median: {'1 thread':>10} {'2 threads':>10} {'2 / 1':>7} "
          f"| fastest: {'1 thread':>10} {'2 threads':>10} {'2 / 1':>6}")
    for m, k, n in SIZES:
        a = rng.standard_normal((m, k)).astype(args.dtype)
        b = rng.standard_normal((k, n)).astype(args.dtype)
        best: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.rounds):
            for threads in (1, 2):
                switch.set(threads)
                best[threads] += _time(functools.partial(np.matmul, a, b), args.seconds)
        one, two = (statistics.median(best[t]) for t in (1, 2))
        fast1, fast2 = (min(best[t]) for t in (1, 2))
        print(f"{f'{m} x {k} x {n}':>18} {m * k * n:>13,} |         {one * 1e6:>8.1f}us {two * 1e6:>8.1f}us "
              f"{two / one:>7.2f} |          {fast1 * 1e6:>8.1f}us {fast2 * 1e6:>8.1f}us {fast2 / fast1:>6.2f}")
    switch.set(switch.default)


if __name__ == "__main__":
    main()
