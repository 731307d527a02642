"""Peak memory and step time of an unrolled char-LSTM's gradient, per backend and length.

    python benchmarks/rnn_memory.py [--steps 32,128,512] [--backends numpy,llvm] [--calls 3]

The model is ``Embedding(V, 32) -> LSTM(32, 128) -> Dense(128, V)`` with a mean
cross-entropy over every step, batch 16, V = 64; one step computes the loss and the
gradients of all parameters. The LSTM is unrolled over T steps, so the graph grows with T.

Each (backend, T) runs in a fresh subprocess, so its peak resident set size
(``ru_maxrss`` of the child) is that configuration's alone: building, compiling and
calling the function included. The child prints the time to compile and the median time
of a call.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

VOCAB, EMBED, HIDDEN, BATCH = 64, 32, 128, 16


def child(backend: str, steps: int, calls: int) -> dict[str, float]:
    """Build, compile and time one configuration in this process."""
    import numpy as np

    import symgrad as sg

    model = sg.nn.Sequential([sg.nn.Embedding(VOCAB, EMBED),
                              sg.nn.LSTM(EMBED, HIDDEN, return_sequences=True),
                              sg.nn.Dense(HIDDEN, VOCAB)])
    x = sg.placeholder("x", (BATCH, steps), "int64")
    y = sg.placeholder("y", (BATCH, steps), "int64")
    loss = sg.nn.cross_entropy(model(x), y)
    params = model.params
    names = sorted(params)
    grads = sg.grad(loss, [params[n] for n in names])
    t0 = time.perf_counter()
    fn = sg.compile([loss, *grads], inputs=[x, y, *(params[n] for n in names)], backend=backend)
    compile_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    values = model.init(0)
    args = [rng.integers(0, VOCAB, (BATCH, steps)), rng.integers(0, VOCAB, (BATCH, steps)),
            *(values[n] for n in names)]
    fn(*args)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return {"compile_s": compile_s, "step_s": statistics.median(times), "loss": float(out[0])}


def measure(backend: str, steps: int, calls: int) -> dict[str, float]:
    """Run one configuration in a fresh subprocess; its peak RSS (``ru_maxrss``) in MB."""
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", backend, str(steps),
                           str(calls)], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["peak_mb"] = row.pop("self_peak_kb") / 1024
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", default="32,128,512", help="sequence lengths T, comma-separated")
    p.add_argument("--backends", default="numpy,llvm", help="backends, comma-separated")
    p.add_argument("--calls", type=int, default=3, help="timed calls per configuration")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        backend, steps, calls = args.child[0], int(args.child[1]), int(args.child[2])
        row = child(backend, steps, calls)
        row["self_peak_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(row))
        return
    print(f"char-LSTM: embedding {EMBED}, hidden {HIDDEN}, batch {BATCH}, vocabulary {VOCAB}")
    print(f"{'backend':8} {'T':>5} {'peak RSS MB':>12} {'compile s':>10} {'step ms':>10}")
    for steps in (int(s) for s in args.steps.split(",")):
        for backend in args.backends.split(","):
            row = measure(backend, steps, args.calls)
            if "error" in row:
                print(f"{backend:8} {steps:5} error: {row['error']}")
            else:
                print(f"{backend:8} {steps:5} {row['peak_mb']:12.0f} {row['compile_s']:10.1f} "
                      f"{row['step_s'] * 1e3:10.1f}", flush=True)


if __name__ == "__main__":
    main()
