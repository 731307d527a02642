"""Time one training step (forward, backward, Adam update) of the digits MLP and CNN.

    python examples/train_step_timing.py [--backends numpy,llvm] [--steps 200] [--threads 1]

Each step is one call of the compiled ``sg.optim.TrainStep`` on a batch of 32 images; the
median over ``--steps`` calls after a warm-up is printed, and, when PyTorch is installed,
the same models and optimizer in PyTorch eager mode on the CPU for comparison. Dropout is
left out so every backend runs the same graph.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import digits_cnn  # noqa: E402
import digits_mlp  # noqa: E402
from _common import digits  # noqa: E402

import symgrad as sg  # noqa: E402


def median_time(fn: Callable[[], object], steps: int, warmup: int = 10) -> tuple[float, float]:
    """(median, fastest) seconds per call; the fastest is the figure least disturbed by
    other work on a busy machine."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), float(np.min(times))


def symgrad_step(model: sg.nn.Layer, x: np.ndarray, y: np.ndarray, backend: str) -> tuple[Callable[[], object], float]:
    xp = sg.placeholder("x", ("batch", *x.shape[1:]))
    yp = sg.placeholder("y", ("batch",), "int64")
    out, updates = model.apply(xp)
    loss = sg.nn.cross_entropy(out, yp)
    t = time.perf_counter()
    step = sg.optim.TrainStep(loss, model.init_params(0), sg.optim.Adam(1e-3), inputs=[xp, yp],
                              buffers=model.init_buffers(0), updates=updates, backend=backend)
    build = time.perf_counter() - t
    return (lambda: step(x, y)), build


def torch_steps(x: np.ndarray, y: np.ndarray) -> dict[str, Callable[[], object]]:
    import torch

    nn = torch.nn
    mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    cnn = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    out = {}
    for name, model, xin in (("mlp", mlp, x.reshape(len(x), -1)), ("cnn", cnn, x)):
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        xt, yt = torch.from_numpy(xin), torch.from_numpy(y)

        def step(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt, xt: torch.Tensor = xt,
                 yt: torch.Tensor = yt) -> float:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(xt), yt)
            loss.backward()
            opt.step()
            return float(loss.detach())

        out[name] = step
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="numpy")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--threads", type=int, default=1, help="BLAS / PyTorch threads (default 1)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    x_img, y, _, _ = digits(images=True)
    x_img, y = x_img[:32], y[:32]
    rows: list[tuple[str, str, tuple[float, float], float]] = []
    with threadpool_limits(args.threads, user_api="blas"):
        for backend in args.backends.split(","):
            for name, model, xin in (("mlp", digits_mlp.build_model(dropout=0.0), x_img.reshape(32, -1)),
                                     ("cnn", digits_cnn.build_model(), x_img)):
                try:
                    fn, build = symgrad_step(model, xin, y, backend)
                except sg.UnsupportedError as exc:
                    print(f"symgrad {backend} {name}: {str(exc).splitlines()[0]}")
                    continue
                rows.append((f"symgrad {backend}", name, median_time(fn, args.steps, args.warmup), build))
        try:
            if args.no_torch:
                raise ImportError
            import torch
        except ImportError:
            print("(no PyTorch comparison: not installed or --no-torch)")
        else:
            torch.set_num_threads(args.threads)
            for name, fn in torch_steps(x_img, y).items():
                rows.append((f"PyTorch {torch.__version__} eager", name, median_time(fn, args.steps, args.warmup), 0.0))
    print(f"{'framework':<28} {'model':<5} {'median ms':>9} {'min ms':>8} {'build s':>8}   "
          f"(batch 32, {args.threads} thread(s))")
    for fw, name, (med, fastest), build in rows:
        print(f"{fw:<28} {name:<5} {med * 1e3:9.3f} {fastest * 1e3:8.3f} {build:8.2f}")


if __name__ == "__main__":
    main()
