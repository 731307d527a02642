"""Run every benchmark and write a markdown table (``benchmarks/results.md``).

    python benchmarks/run_all.py            # full sizes
    python benchmarks/run_all.py --quick    # smaller sizes, shorter timing (a smoke test)

Peers (JAX, PyTorch, PyTensor, Numba) are used when installed (``pip install -e '.[bench]'``)
and listed as "not installed" otherwise (a peer that fails is listed with its error). Every
contender is checked against a float64 reference before it is timed; JAX is timed up to
``block_until_ready`` and after its compiling first call. W2 runs a second time in a subprocess with
``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` unset (they halve OpenBLAS GEMM speed on
this machine). Times are medians; ``min`` is the fastest run. The contenders of W1 and W2
are timed in alternating rounds, so that bursts of other load fall on all of them alike.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from common import Row, fmt_time, peer_versions  # noqa: E402


def _blas() -> str:
    from symgrad.backends.llvm import blas

    lib = blas.provider()
    return f"{lib.name} ({Path(lib.where).name}, {lib.int_bits}-bit integers)"


def _w2_without_openblas_vars(quick: bool) -> list[Row]:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    cmd = [sys.executable, str(HERE / "w2_mlp.py"), "--json"] + (["--quick"] if quick else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return [Row("W2 MLP SGD step (OpenBLAS vars unset)", "all", None,
                    note=f"failed: {proc.stderr.strip()[-300:]}")]
    rows = [Row(**r) for r in json.loads(proc.stdout.strip().splitlines()[-1])]
    for r in rows:
        r.workload += " (OpenBLAS vars unset)"
    return rows


def main() -> None:
    quick = "--quick" in sys.argv
    import compile_chain
    import w1_elementwise
    import w2_mlp
    import w4_call_overhead
    import w5_hessian

    started = time.time()
    rows: list[Row] = []
    for mod in (w1_elementwise, w2_mlp):
        rows += mod.run(quick)
        print(f"done: {mod.__name__}", flush=True)
    rows += _w2_without_openblas_vars(quick)
    for mod in (w4_call_overhead, w5_hessian, compile_chain):
        rows += mod.run(quick)
        print(f"done: {mod.__name__}", flush=True)

    lines = [
        "# symgrad benchmarks",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average at the start {os.getloadavg()[0]:.1f}; "
        f"SYMGRAD_NUM_THREADS={os.environ.get('SYMGRAD_NUM_THREADS', 'unset')}; "
        f"{'quick sizes' if quick else 'full sizes'}; {time.time() - started:.0f} s in all.",
        "",
        f"Peers: {peer_versions()}.",
        "",
        f"OpenBLAS variables: OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}, "
        f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', 'unset')} (W2 also runs with both "
        f"unset). symgrad llvm's BLAS: {_blas()}. W1 and W2 contenders are timed in "
        "alternating rounds.",
        "",
        "| workload | contender | median | min | vs first row | note |",
        "|---|---|---|---|---|---|",
    ]
    base: dict[str, float] = {}
    for r in rows:
        if r.workload not in base and r.median_s:
            base[r.workload] = r.median_s
        ratio = ""
        if r.median_s and base.get(r.workload):
            ratio = f"{r.median_s / base[r.workload]:.2f}x"
        lines.append(f"| {r.workload} | {r.contender} | {fmt_time(r.median_s)} | {fmt_time(r.min_s)} "
                     f"| {ratio} | {r.note} |")
    text = "\n".join(lines) + "\n"
    out = HERE / ("results-quick.md" if quick else "results.md")
    out.write_text(text)
    print(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
