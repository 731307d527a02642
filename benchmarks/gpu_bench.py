"""GPU benchmarks of the CUDA backend: W1 and W2, against PyTorch and CuPy when present.

W1: value and gradient of sum(softplus(x)*tanh(x) + sigmoid(x)**2), x of 4,194,304 float32.
    The fewest bytes the GPU must move are one read of x and one write of the gradient
    (32 MiB); achieved bandwidth is that over the time, next to the device-to-device copy
    peak measured in the same run (bytes read plus written) and the H200's nominal 4.3 TB/s.
W2: one SGD step of an MLP 784-512-512-10 (relu, softmax cross-entropy), batch 256, float32:
    loss and the six updated parameters, parameters kept on the device between steps.

Times are medians. ``call`` is wall time per call with device arrays in and out, the GPU
synchronized once per batch of calls (what a training loop sees); ``gpu`` is the sum of the
kernels' own times measured with CUDA events around each launch (no launch gaps). Inputs
rotate among several buffers so that repeated calls do not just read the 60 MB L2 cache.

    python benchmarks/gpu_bench.py [--only w1|w2] [--json out.json] [--torch-compile]

With ``SYMGRAD_CUDA_DEVICE=shim`` and ``--small`` it runs on the CPU through the host shim
(tiny sizes, meaningless times): a check of this script on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import symgrad as sg  # noqa: E402

NOMINAL_COPY_TBS = 4.3


def optional(name: str) -> Any:
    try:
        return __import__(name)
    except Exception:
        return None


cp = optional("cupy")
torch = optional("torch")
if torch is not None and not torch.cuda.is_available():
    torch = None


def median_time(fn: Callable[[], Any], sync: Callable[[], None], reps: int = 20,
                inner: int = 10, budget: float = 10.0) -> float:
    """Median over ``reps`` batches of the wall time per call of ``inner`` calls, the GPU
    synchronized before and after each batch."""
    fn()
    sync()
    samples = []
    start = time.perf_counter()
    for _ in range(reps):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync()
        samples.append((time.perf_counter() - t0) / inner)
        if time.perf_counter() - start > budget:
            break
    return statistics.median(samples)


def rel_err(got: Any, want: np.ndarray) -> float:
    g = np.asarray(got, dtype=np.float64)
    w = np.asarray(want, dtype=np.float64)
    return float(np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-300))


def host(a: Any) -> np.ndarray:
    if hasattr(a, "get") and not isinstance(a, np.ndarray):
        return np.asarray(a.get())
    if torch is not None and isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


class Env:
    """The symgrad device, how to put arrays on it, how to synchronize."""

    def __init__(self) -> None:
        from symgrad.backends.cuda import CudaBackend

        self.backend = CudaBackend()
        self.device = self.backend.device()
        self.gpu = self.device.kind == "gpu"

    def put(self, a: np.ndarray) -> Any:
        if self.gpu and cp is not None:
            return cp.asarray(a)
        return self.device.to_device(a)

    def sync(self) -> None:
        self.device.synchronize()


def copy_peak(env: Env, nbytes: int) -> float | None:
    """Device-to-device copy bandwidth in TB/s (bytes read + written)."""
    if not env.gpu:
        return None
    dev = env.device
    a = dev.alloc(nbytes)
    b = dev.alloc(nbytes)
    dev.memset(a.ptr, 1, nbytes)
    timer = dev.timer()  # type: ignore[attr-defined]
    for _ in range(3):
        dev.copy(b.ptr, a.ptr, nbytes)
    samples = []
    for _ in range(10):
        timer.start()
        dev.copy(b.ptr, a.ptr, nbytes)
        samples.append(timer.stop())
    return 2 * nbytes / statistics.median(samples) / 1e12


# -- W1 ---------------------------------------------------------------------------------------
def w1(env: Env, n: int, rotate: int, torch_compile: bool) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    xs_host = [(rng.standard_normal(n) * 3).astype(np.float32) for _ in range(rotate)]
    x = sg.placeholder("x", (None,), "float32")
    f = sg.sum(sg.softplus(x) * sg.tanh(x) + sg.sigmoid(x) ** 2)
    outs = [f, sg.grad(f, x)]
    t0 = time.perf_counter()
    fn = sg.compile(outs, backend="cuda")
    compile_s = time.perf_counter() - t0
    impl = fn._impl
    xs = [env.put(a) for a in xs_host]

    x64 = xs_host[0].astype(np.float64)
    sp = np.logaddexp(0.0, x64)
    th = np.tanh(x64)
    sg_ = 1.0 / (1.0 + np.exp(-x64))
    want_v = float(np.sum(sp * th + sg_ ** 2))
    want_g = sg_ * th + sp * (1.0 - th ** 2) + 2.0 * sg_ * sg_ * (1.0 - sg_)
    got_v, got_g = fn(x=xs[0])
    result: dict[str, Any] = {
        "n": n, "compile_s": compile_s, "kernels": [launch.kernel for launch in impl.rendered.launches],
        "module": impl.module_info,
        "err_value": abs(float(host(got_v)) - want_v) / abs(want_v), "err_grad": rel_err(host(got_g), want_g),
    }
    k = [0]

    def call() -> None:
        k[0] = (k[0] + 1) % rotate
        fn(x=xs[k[0]])

    result["symgrad_call_s"] = median_time(call, env.sync)
    prof = impl.profile(xs[1 % rotate], repeat=20)
    result["symgrad_kernels"] = prof[:-1]
    result["symgrad_gpu_s"] = prof[-1][1]
    min_bytes = 2 * 4 * n
    result["min_bytes"] = min_bytes
    result["symgrad_gbs"] = min_bytes / result["symgrad_gpu_s"] / 1e9

    if cp is not None and env.gpu:
        cxs = [cp.asarray(a) for a in xs_host]

        def cupy_by_hand() -> None:
            k[0] = (k[0] + 1) % rotate
            v = cxs[k[0]]
            sp_ = cp.logaddexp(0.0, v)
            th_ = cp.tanh(v)
            s_ = 1 / (1 + cp.exp(-v))
            _val = cp.sum(sp_ * th_ + s_ * s_)
            _grad = s_ * th_ + sp_ * (1 - th_ * th_) + 2 * s_ * s_ * (1 - s_)

        grad_kernel = cp.ElementwiseKernel(
            "float32 v", "float32 g",
            "float sp = v > 0 ? v + log1pf(expf(-v)) : log1pf(expf(v)); float th = tanhf(v);"
            "float s = 1.f / (1.f + expf(-v)); g = s * th + sp * (1.f - th * th) + 2.f * s * s * (1.f - s);",
            "w1_grad")
        val_kernel = cp.ReductionKernel(
            "float32 v", "float32 y",
            "(v > 0 ? v + log1pf(expf(-v)) : log1pf(expf(v))) * tanhf(v) + 1.f / ((1.f + expf(-v)) * (1.f + expf(-v)))",
            "a + b", "y = a", "0", "w1_val")

        def cupy_fused() -> None:
            k[0] = (k[0] + 1) % rotate
            v = cxs[k[0]]
            val_kernel(v)
            grad_kernel(v)

        sync = cp.cuda.Device().synchronize
        result["cupy_by_hand_call_s"] = median_time(cupy_by_hand, sync)
        result["cupy_fused_call_s"] = median_time(cupy_fused, sync)
        result["cupy_fused_err_grad"] = rel_err(host(grad_kernel(cxs[0])), want_g)

    if torch is not None:
        txs = [torch.from_numpy(a).cuda() for a in xs_host]

        def torch_step(v: Any) -> Any:
            v = v.detach().requires_grad_(True)
            y = (torch.nn.functional.softplus(v) * torch.tanh(v) + torch.sigmoid(v) ** 2).sum()
            (g,) = torch.autograd.grad(y, v)
            return y, g

        def torch_eager() -> None:
            k[0] = (k[0] + 1) % rotate
            torch_step(txs[k[0]])

        result["torch_eager_call_s"] = median_time(torch_eager, torch.cuda.synchronize)
        result["torch_err_grad"] = rel_err(host(torch_step(txs[0])[1]), want_g)
        if torch_compile:
            try:
                t0 = time.perf_counter()
                compiled = torch.compile(torch_step)
                compiled(txs[0])
                torch.cuda.synchronize()
                result["torch_compile_s"] = time.perf_counter() - t0

                def torch_comp() -> None:
                    k[0] = (k[0] + 1) % rotate
                    compiled(txs[k[0]])

                result["torch_compiled_call_s"] = median_time(torch_comp, torch.cuda.synchronize)
            except Exception as e:  # report, do not fail the run
                result["torch_compile_error"] = f"{type(e).__name__}: {e}"[:300]
    return result


# -- W2 ---------------------------------------------------------------------------------------
def w2(env: Env, batch: int, sizes: tuple[int, ...], lr: float = 0.1) -> dict[str, Any]:
    rng = np.random.default_rng(2)
    X_h = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    y_h = rng.integers(0, sizes[-1], batch).astype(np.int64)
    params_h = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        params_h.append((rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32))
        params_h.append(np.zeros(b, np.float32))

    X = sg.placeholder("X", (None, sizes[0]), "float32")
    y = sg.placeholder("y", (None,), "int64")
    ps = []
    for i, p in enumerate(params_h):
        ps.append(sg.placeholder(f"{'W' if p.ndim == 2 else 'b'}{i // 2 + 1}", p.shape, "float32"))
    h = X
    for i in range(0, len(ps), 2):
        h = h @ ps[i] + ps[i + 1]
        if i + 2 < len(ps):
            h = sg.relu(h)
    loss = sg.nn.cross_entropy(h, y)
    grads = sg.grad(loss, ps)
    outs = [loss, *[p - lr * g for p, g in zip(ps, grads)]]
    t0 = time.perf_counter()
    fn = sg.compile(outs, backend="cuda")
    compile_s = time.perf_counter() - t0
    ref = sg.compile(outs, backend="numpy")
    impl = fn._impl
    names = fn.inputs

    values_h = {"X": X_h, "y": y_h, **{t.name: v for t, v in zip(ps, params_h)}}
    want = ref(**values_h)
    Xd, yd = env.put(X_h), env.put(y_h)
    state = [env.put(p) for p in params_h]
    got = fn(X=Xd, y=yd, **{t.name: v for t, v in zip(ps, state)})
    result: dict[str, Any] = {
        "batch": batch, "sizes": list(sizes), "compile_s": compile_s,
        "kernels": [launch.kernel for launch in impl.rendered.launches], "module": impl.module_info,
        "err_loss": abs(float(host(got[0])) - float(want[0])) / abs(float(want[0])),
        "err_params": max(rel_err(host(g), w) for g, w in zip(got[1:], want[1:])),
        "cublas": getattr(impl, "blas_info", "none"),
    }
    current = list(state)

    def step() -> None:
        out = fn(X=Xd, y=yd, **{t.name: v for t, v in zip(ps, current)})
        current[:] = out[1:]

    result["symgrad_call_s"] = median_time(step, env.sync)
    args = [{"X": Xd, "y": yd, **{t.name: v for t, v in zip(ps, state)}}[nm] for nm in names]
    prof = impl.profile(*args, repeat=10)
    result["symgrad_kernels"] = prof[:-1]
    result["symgrad_gpu_s"] = prof[-1][1]
    flops = 0
    for a, b in zip(sizes[:-1], sizes[1:]):
        flops += 3 * 2 * batch * a * b
    result["flops"] = flops

    if torch is not None:
        dev = "cuda"
        Xt = torch.from_numpy(X_h).to(dev)
        yt = torch.from_numpy(y_h).to(dev)
        pt = [torch.from_numpy(p).to(dev).requires_grad_(True) for p in params_h]

        def torch_loss() -> Any:
            hh = Xt
            for i in range(0, len(pt), 2):
                hh = hh @ pt[i] + pt[i + 1]
                if i + 2 < len(pt):
                    hh = torch.relu(hh)
            return torch.nn.functional.cross_entropy(hh, yt)

        def torch_step() -> None:
            lo = torch_loss()
            gs = torch.autograd.grad(lo, pt)
            with torch.no_grad():
                for p, g in zip(pt, gs):
                    p.sub_(lr * g)

        result["torch_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
        lo = torch_loss()
        result["torch_err_loss"] = abs(float(lo) - float(want[0])) / abs(float(want[0]))
        result["torch_eager_call_s"] = median_time(torch_step, torch.cuda.synchronize)

    if cp is not None and env.gpu:
        Xc, yc = cp.asarray(X_h), cp.asarray(y_h)
        pc = [cp.asarray(p) for p in params_h]

        def cupy_step() -> None:
            acts = [Xc]
            hh = Xc
            for i in range(0, len(pc), 2):
                hh = hh @ pc[i] + pc[i + 1]
                if i + 2 < len(pc):
                    hh = cp.maximum(hh, 0)
                acts.append(hh)
            z = acts[-1]
            z = z - z.max(axis=1, keepdims=True)
            e = cp.exp(z)
            sm = e / e.sum(axis=1, keepdims=True)
            d = sm
            d[cp.arange(batch), yc] -= 1
            d /= batch
            for i in range(len(pc) - 2, -1, -2):
                a = acts[i // 2]
                gW = a.T @ d
                gb = d.sum(axis=0)
                if i > 0:
                    d = (d @ pc[i].T) * (a > 0)
                pc[i] -= lr * gW
                pc[i + 1] -= lr * gb

        result["cupy_by_hand_call_s"] = median_time(cupy_step, cp.cuda.Device().synchronize)
    return result


# -- report -----------------------------------------------------------------------------------
def us(s: float | None) -> str:
    return "-" if s is None else f"{s * 1e6:9.1f}"


def report(res: dict[str, Any]) -> str:
    lines = []
    if "device" in res:
        lines.append(f"device: {res['device']} (module {res.get('w1', res.get('w2', {})).get('module', '?')})")
    peak = res.get("copy_peak_tbs")
    if peak:
        lines.append(f"device-to-device copy peak measured: {peak:.2f} TB/s (nominal {NOMINAL_COPY_TBS})")
    r = res.get("w1")
    if r:
        lines.append(f"\nW1  value+grad, n={r['n']:,} float32; {len(r['kernels'])} kernels; "
                     f"rel. error value {r['err_value']:.1e}, grad {r['err_grad']:.1e}")
        lines.append(f"{'':28s}{'us/call':>10s}{'GPU us':>10s}{'GB/s':>10s}{'% of 4.3TB/s':>14s}{'% of copy':>11s}")
        gbs = r["symgrad_gbs"]
        pk = (peak or NOMINAL_COPY_TBS) * 1e3
        lines.append(f"{'symgrad cuda':28s}{us(r['symgrad_call_s']):>10s}{us(r['symgrad_gpu_s']):>10s}"
                     f"{gbs:10.0f}{100 * gbs / (NOMINAL_COPY_TBS * 1e3):13.0f}%{100 * gbs / pk:10.0f}%")
        for key, label in [("cupy_fused_call_s", "CuPy hand-fused (2 kernels)"),
                           ("cupy_by_hand_call_s", "CuPy by hand"),
                           ("torch_eager_call_s", "PyTorch eager"),
                           ("torch_compiled_call_s", "PyTorch torch.compile")]:
            if key in r:
                eff = r["min_bytes"] / r[key] / 1e9
                lines.append(f"{label:28s}{us(r[key]):>10s}{'':>10s}{eff:10.0f}"
                             f"{100 * eff / (NOMINAL_COPY_TBS * 1e3):13.0f}%{100 * eff / pk:10.0f}%")
        lines.append("  kernels (GPU us): " + ", ".join(f"{k} {t * 1e6:.1f}" for k, t in r["symgrad_kernels"]))
    r = res.get("w2")
    if r:
        lines.append(f"\nW2  SGD step, batch {r['batch']}, {'-'.join(map(str, r['sizes']))}; "
                     f"{len(r['kernels'])} kernels; matmuls via {r['cublas']}; rel. error loss "
                     f"{r['err_loss']:.1e}, params {r['err_params']:.1e}")
        lines.append(f"{'':28s}{'us/step':>10s}{'GPU us':>10s}{'vs PyTorch':>12s}")
        base = r.get("torch_eager_call_s")
        for key, label, gpu in [("symgrad_call_s", "symgrad cuda", r.get("symgrad_gpu_s")),
                                ("torch_eager_call_s", "PyTorch eager", None),
                                ("cupy_by_hand_call_s", "CuPy by hand", None)]:
            if key in r:
                ratio = f"{r[key] / base:11.2f}x" if base else "-"
                lines.append(f"{label:28s}{us(r[key]):>10s}{us(gpu):>10s}{ratio:>12s}")
        top = sorted(r["symgrad_kernels"], key=lambda kt: -kt[1])[:6]
        lines.append("  slowest kernels (GPU us): " + ", ".join(f"{k} {t * 1e6:.1f}" for k, t in top))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["w1", "w2"])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--torch-compile", action="store_true")
    ap.add_argument("--small", action="store_true", help="tiny sizes (a check on the host shim)")
    ap.add_argument("--report", type=Path, nargs="+", help="print the table of earlier --json files")
    args = ap.parse_args()
    if args.report:
        merged: dict[str, Any] = {}
        for path in args.report:
            if path.exists():
                data = json.loads(path.read_text())
                for key, value in data.items():
                    if key == "w1" and "w1" in merged:  # keep torch.compile figures from a later run
                        merged["w1"].update({k: v for k, v in value.items() if k.startswith("torch_comp")})
                    elif value is not None:
                        merged.setdefault(key, value)
        print(report(merged))
        return
    env = Env()
    res: dict[str, Any] = {"device": env.device.name, "kind": env.device.kind,
                           "symgrad_cuda_device": os.environ.get("SYMGRAD_CUDA_DEVICE", "gpu")}
    res["copy_peak_tbs"] = copy_peak(env, 1 << 30)
    if args.only in (None, "w1"):
        n = 4096 if args.small else 4_194_304
        res["w1"] = w1(env, n, rotate=2 if args.small else 8, torch_compile=args.torch_compile)
        print(report({"w1": res["w1"], "copy_peak_tbs": res["copy_peak_tbs"]}), flush=True)
    if args.only in (None, "w2"):
        if args.small:
            res["w2"] = w2(env, 8, (20, 16, 16, 10))
        else:
            res["w2"] = w2(env, 256, (784, 512, 512, 10))
        print(report({"w2": res["w2"]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))
    print("\n" + "=" * 78 + "\n" + report(res))


if __name__ == "__main__":
    main()
