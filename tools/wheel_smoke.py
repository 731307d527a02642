"""Smoke test of an installed symgrad (run from a fresh virtual environment, outside the
source tree, after installing the wheel): every backend compiles, every bundle target
emits, the CUDA source runs on the CPU through the host shim, and ``symgrad ops`` runs.

Used by ``make check-wheel``; exits non-zero on the first failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

import symgrad as sg


def main() -> int:
    here = Path(sg.__file__).resolve()
    if "site-packages" not in here.parts:
        print(f"symgrad was imported from {here}, not from an installed wheel", file=sys.stderr)
        return 1
    x = sg.placeholder("x", shape=(None, 3), dtype="float32")
    w = sg.placeholder("w", shape=(3,), dtype="float32")
    loss = sg.mean((sg.tanh(x @ w + 1.0) - 2.0) ** 2)
    gw = sg.grad(loss, w)
    rng = np.random.default_rng(0)
    xv = rng.standard_normal((5, 3)).astype(np.float32)
    wv = rng.standard_normal(3).astype(np.float32)

    want = sg.compile([loss, gw], backend="numpy")(x=xv, w=wv)
    for backend in ("llvm", "cuda"):
        if backend == "cuda":
            os.environ["SYMGRAD_CUDA_DEVICE"] = "shim"
        got = sg.compile([loss, gw], backend=backend)(x=xv, w=wv)
        for g, e in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), e, rtol=1e-5, atol=1e-6)
        print(f"compile on {backend}: ok")

    with tempfile.TemporaryDirectory() as tmp:
        for target in ("c", "cuda", "llvm", "numpy"):
            bundle = sg.emit([loss, gw], [x, w], target=target, out_dir=Path(tmp) / target, name="smoke")
            files = sorted(p.name for p in Path(bundle.out_dir).iterdir())
            print(f"emit {target}: {', '.join(files)}")
            if target == "cuda" and "shim.h" not in files:
                print("the cuda bundle lacks shim.h", file=sys.stderr)
                return 1
        run = subprocess.run(["make", "-C", str(Path(tmp) / "c"), "test"], capture_output=True, text=True)
        if run.returncode != 0:
            print(run.stdout + run.stderr, file=sys.stderr)
            return 1
        print("c bundle make test: ok")

    ops = subprocess.run(["symgrad", "ops"], capture_output=True, text=True)
    if ops.returncode != 0 or "exp" not in ops.stdout:
        print(ops.stdout + ops.stderr, file=sys.stderr)
        return 1
    print(f"symgrad ops: {len(ops.stdout.splitlines())} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
