#!/usr/bin/env bash
# The one prepared run on a machine with an NVIDIA GPU: the gpu-marked tests, then the W1
# and W2 benchmarks against PyTorch and CuPy, then one table. About 3-5 minutes.
#
#   bash benchmarks/gpu_run.sh            (from the repository root)
#
# Needs python3 with numpy, sympy, networkx, llvmlite, scipy, pytest, cuda-bindings and an
# NVRTC (nvidia-cuda-nvrtc); CuPy and PyTorch are used when present. symgrad itself is
# taken from src/ (no install). Logs and JSON go to $OUT (or /tmp/symgrad-gpu).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${OUT:-/tmp/symgrad-gpu}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export SYMGRAD_CUDA_DEVICE=gpu
export SYMGRAD_CACHE_DIR=/tmp/symgrad-gpu-cache

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv,noheader || true
$PY - <<'PY' || true
import sys, numpy
print("python", sys.version.split()[0], "numpy", numpy.__version__)
for mod in ("cuda.bindings", "cupy", "torch"):
    try:
        m = __import__(mod, fromlist=["_"])
        print(mod, getattr(m, "__version__", "?"))
    except Exception as e:
        print(mod, "missing:", e)
from symgrad.backends.cuda import nvrtc, driver
print("NVRTC", nvrtc.nvrtc_version(), "archs", nvrtc.supported_archs())
d = driver.gpu_device()
print("device", d.name, "sm_%d" % d.arch, d.multiprocessors, "SMs, driver", d.driver_version)
PY

echo "== gpu tests (pytest -m gpu)"
timeout 200 $PY -m pytest -q -m gpu -p no:cacheprovider -rs \
    tests/test_cuda_backend.py tests/test_cuda_kernels.py 2>&1 | tee "$OUTDIR/gpu_tests.log"
TESTS=${PIPESTATUS[0]}

echo "== W1"
timeout 100 $PY benchmarks/gpu_bench.py --only w1 --json "$OUTDIR/gpu_w1.json" 2>&1 | tee "$OUTDIR/gpu_w1.log"
W1=${PIPESTATUS[0]}
echo "== W2"
timeout 120 $PY benchmarks/gpu_bench.py --only w2 --json "$OUTDIR/gpu_w2.json" 2>&1 | tee "$OUTDIR/gpu_w2.log"
W2=${PIPESTATUS[0]}
echo "== W1 with torch.compile (may be slow to compile; last on purpose)"
timeout 120 $PY benchmarks/gpu_bench.py --only w1 --torch-compile --json "$OUTDIR/gpu_w1c.json" \
    > "$OUTDIR/gpu_w1c.log" 2>&1
W1C=$?

echo
echo "================================ summary ================================"
grep -E "passed|failed|error" "$OUTDIR/gpu_tests.log" | tail -3
$PY benchmarks/gpu_bench.py --report "$OUTDIR/gpu_w1.json" "$OUTDIR/gpu_w2.json" "$OUTDIR/gpu_w1c.json"
echo "exit codes: tests $TESTS, w1 $W1, w2 $W2, w1+torch.compile $W1C"
[ "$TESTS" = 0 ] && [ "$W1" = 0 ] && [ "$W2" = 0 ]
