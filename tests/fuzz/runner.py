"""Run a program on every backend, check it, shrink a failure, print a reproducer.

Checks, for one :class:`~.program.Program` and its data:

* it builds (no error for a valid program);
* it compiles on each backend (numpy, llvm, cuda on the CPU host shim);
* errors: where the NumPy oracle or the numpy backend raises for the data, every backend
  raises the numpy backend's error class (an :class:`~symgrad.InputError`);
* values: each output has NumPy's dtype and shape, and its values are within the running
  error bound of the float64 oracle (integers and bools exactly NumPy's);
* outputs never share memory with each other or with the inputs, and inputs are not written;
* derived outputs (grad, jvp, hvp, hessian) on each backend agree with the numpy backend's
  float64 ones, which agree with float64 central finite differences and, where PyTorch is
  installed, with PyTorch's.
"""

from __future__ import annotations

import math
import os
import time
import traceback
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy as sp
import scipy.special  # noqa: F401

from .known import DISABLED, known_bug
from .program import (
    NP_HELPERS,
    UNIT,
    Derived,
    Invalid,
    Meta,
    Node,
    Program,
    compact,
    derived_labels,
    derived_sources,
    features_of,
    infer,
    inputs,
    program_lines,
    reducer_source,
    tangent_placeholders,
)

os.environ.setdefault("SYMGRAD_CUDA_DEVICE", "shim")
import symgrad as sg  # noqa: E402

BACKENDS = ("numpy", "llvm", "cuda")
EPS = 1e-6
SAFETY = 8.0  # times the running error bound
DERIVED_RTOL = {"float32": 2e-3, "float64": 1e-8}


@dataclass(frozen=True)
class Failure:
    check: str    # build, compile, call, error, dtype, shape, value, alias, input-written, derived, fd, torch
    backend: str
    what: str     # the exception class or the output, so that shrinking keeps the same failure
    message: str

    @property
    def signature(self) -> tuple[str, str, str]:
        return self.check, self.backend, self.what

    def __str__(self) -> str:
        return f"[{self.check} on {self.backend}: {self.what}] {self.message}"


# -- building and the oracle ------------------------------------------------------------------
def _widen_data(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v.astype(np.float64) if v.dtype == np.float32 else v for k, v in data.items()}


def build(prog: Program, metas: list[Meta], widen: bool = False
          ) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """The outputs, the derived outputs and the namespace that built them (``v<i>`` for
    each node, ``P`` the placeholders by name) as symgrad tensors."""
    ns: dict[str, Any] = {"sg": sg, "np": np}
    for i, line in enumerate(program_lines(prog, "sg", widen)):
        exec(compile(line, f"<program line {i + 1}>", "exec"), ns)
    P = {n.p["name"]: ns[f"v{i}"] for i, n in enumerate(prog.nodes) if n.op == "placeholder"}
    for name, spec, dtype in tangent_placeholders(prog, metas):
        P[name] = sg.placeholder(name, spec, "float64" if widen and dtype == "float32" else dtype)
    ns["P"] = P
    outs = [ns[f"v{i}"] for i in prog.outputs]
    derived = [eval(compile(src, f"<derived output {k + 1}>", "eval"), ns)
               for k, src in enumerate(derived_sources(prog))]
    return outs, derived, ns


def oracle(prog: Program, data: dict[str, np.ndarray], lib: str = "np") -> list[np.ndarray]:
    """The outputs computed by NumPy (``lib="np"``) from the same program text."""
    ns: dict[str, Any] = {"np": np, "sp": sp, "data": data}
    exec(NP_HELPERS, ns)
    if lib == "T":
        from .torch_ops import T
        ns["T"] = T
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's "mean of empty slice"
        for line in program_lines(prog, lib):
            exec(line, ns)
    return [np.asarray(ns[f"v{i}"]) for i in prog.outputs]


# -- comparing ------------------------------------------------------------------------------
def _close(got: np.ndarray, want: np.ndarray, tol: np.ndarray | float) -> tuple[bool, str]:
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    bad_nan = np.isnan(got) != np.isnan(want)
    fin = np.isfinite(want) & np.isfinite(got)
    inf_bad = (np.isinf(want) | np.isinf(got)) & ~np.isnan(want) & ~np.isnan(got) & (got != want)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(fin, np.abs(got - want), 0.0)
    over = fin & (diff > tol)
    bad = bad_nan | inf_bad | over
    if not bad.any():
        return True, ""
    k = int(np.flatnonzero(bad.ravel())[0])
    t = np.broadcast_to(tol, want.shape).ravel()[k] if np.ndim(tol) else tol
    return False, (f"{int(bad.sum())} of {want.size} elements differ; first at flat index {k}: "
                   f"got {got.ravel()[k]!r}, want {want.ravel()[k]!r} (tolerance {float(t):.3g}, "
                   f"max abs diff {float(diff.max()) if diff.size else 0.0:.3g})")


def _value_tol(m: Meta) -> float:
    if m.nonfinite:
        return 1e-3 * max(1.0, m.mag) if math.isfinite(m.mag) else math.inf
    return SAFETY * m.err + 16 * UNIT.get(m.dtype, 0.0) * m.mag + 1e-30


def _derived_tol(dtype: str, ref: np.ndarray) -> float:
    scale = 1.0 + (float(np.max(np.abs(ref[np.isfinite(ref)]))) if np.isfinite(ref).any() else 0.0)
    return DERIVED_RTOL.get(dtype, 1e-8) * scale


@dataclass
class Run:
    outs: list[np.ndarray] | None
    error: BaseException | None


def _call(f: Any, data: dict[str, np.ndarray]) -> Run:
    try:
        res = f(**{k: data[k] for k in f.inputs})
        res = list(res) if isinstance(res, tuple) else [res]
        return Run([np.asarray(r) if not isinstance(r, np.ndarray) else r for r in res], None)
    except Exception as e:  # noqa: BLE001 - every error is compared across backends
        return Run(None, e)


def _torch() -> Any:
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    return torch


# -- the checks -----------------------------------------------------------------------------
def check(prog: Program, backends: Sequence[str] = BACKENDS, derived: bool = True,
          torch: bool = True) -> list[Failure]:
    """Every failure of ``prog`` (empty when it passes)."""
    prog = compact(prog)  # the oracle computes every node; the backends only those needed
    metas = infer(prog)
    data = inputs(prog, metas)
    fails: list[Failure] = []
    try:
        ref_native = oracle(prog, {k: v.copy() for k, v in data.items()})
        oracle_error: BaseException | None = None
    except Exception as e:  # noqa: BLE001 - NumPy refusing the data is a result to compare
        ref_native, oracle_error = [], e
    ref64 = oracle(prog, _widen_data(data)) if oracle_error is None else []

    try:
        outs, dvs, _ = build(prog, metas)
    except Exception as e:  # noqa: BLE001
        return [Failure("build", "-", type(e).__name__, _short(e))]
    n_out = len(outs)
    runs: dict[str, Run] = {}
    for b in backends:
        try:
            f = sg.compile(outs + dvs, backend=b)
        except Exception as e:  # noqa: BLE001
            fails.append(Failure("compile", b, type(e).__name__, _short(e)))
            continue
        copies = {k: v.copy() for k, v in data.items()}
        runs[b] = r = _call(f, copies)
        for name in data:
            if not np.array_equal(copies[name], data[name], equal_nan=True):
                fails.append(Failure("input-written", b, name, f"the call changed input {name!r}"))
        if r.outs is not None:
            arrays = [o for o in r.outs if isinstance(o, np.ndarray) and o.size]
            for x in range(len(arrays)):
                for y in range(x + 1, len(arrays)):
                    if np.shares_memory(arrays[x], arrays[y]):
                        fails.append(Failure("alias", b, "outputs",
                                             "two outputs share memory"))
                for name, v in copies.items():
                    if v.size and np.shares_memory(arrays[x], v):
                        fails.append(Failure("alias", b, "input", f"an output shares memory with {name!r}"))

    ref_run = runs.get("numpy")
    # errors
    for b, r in runs.items():
        if b == "numpy":
            if r.error is not None and not isinstance(r.error, sg.InputError):
                fails.append(Failure("call", b, type(r.error).__name__, _short(r.error)))
            elif oracle_error is not None and r.error is None:
                fails.append(Failure("error", b, "missing",
                                     f"NumPy raises {type(oracle_error).__name__}: {oracle_error}; "
                                     "the numpy backend returns"))
            elif oracle_error is None and r.error is not None:
                fails.append(Failure("error", b, "extra",
                                     f"NumPy computes it; the numpy backend raises {_short(r.error)}"))
            continue
        want = ref_run.error if ref_run is not None else (oracle_error and sg.InputError(""))
        if (want is None) != (r.error is None) or (
                want is not None and r.error is not None and type(want) is not type(r.error)):
            fails.append(Failure("error", b, type(r.error).__name__ if r.error else "none",
                                 f"{b} {'raises ' + _short(r.error) if r.error else 'returns'}; "
                                 f"numpy {'raises ' + type(want).__name__ if want else 'returns'}"))
    if oracle_error is not None:
        return fails

    # values
    for b, r in runs.items():
        if r.outs is None:
            continue
        for k in range(n_out):
            got, expect, m = r.outs[k], ref_native[k], metas[prog.outputs[k]]
            what = f"output {k}"
            if got.dtype != expect.dtype:
                fails.append(Failure("dtype", b, what, f"dtype {got.dtype}, NumPy gives {expect.dtype}"))
                continue
            if got.shape != expect.shape:
                fails.append(Failure("shape", b, what, f"shape {got.shape}, NumPy gives {expect.shape}"))
                continue
            if got.dtype.kind in "fc":
                ok, msg = _close(got, ref64[k], _value_tol(m))
            else:
                ok, msg = bool(np.array_equal(got, expect)), f"got {got!r}, want {expect!r}"
            if not ok:
                fails.append(Failure("value", b, what, msg))

    if derived and prog.derived and "numpy" in runs:
        fails += check_derived(prog, metas, data, runs, n_out, torch)
    return fails


def check_derived(prog: Program, metas: list[Meta], data: dict[str, np.ndarray],
                  runs: dict[str, Run], n_out: int, use_torch: bool) -> list[Failure]:
    fails: list[Failure] = []
    labels = derived_labels(prog)
    wide = _widen_data(data)
    try:
        _, dvs64, ns = build(prog, metas, widen=True)
        P64 = ns["P"]
        # the forward terms that finite differences need: f for grad, y for jvp, grad f for hvp
        terms = []
        for d, w in labels:
            f = eval(reducer_source(d.reducer, f"v{d.target}", "sg"), ns)
            if d.kind == "grad":
                terms.append(f)
            elif d.kind == "jvp":
                terms.append(ns[f"v{d.target}"])
            else:
                terms.append(sg.grad(f, P64[w]))
        f64 = sg.compile(dvs64 + terms, backend="numpy")
    except Exception as e:  # noqa: BLE001
        return [Failure("compile", "numpy-float64", type(e).__name__, _short(e))]
    base = _call(f64, wide)
    if base.outs is None:
        return [Failure("call", "numpy-float64", type(base.error).__name__, _short(base.error))]
    nd = len(labels)
    d64, t64 = base.outs[:nd], base.outs[nd:]

    # each backend against the float64 numpy backend, within the rounding of the lowest
    # precision the program computes in
    low = "float32" if any(m.dtype == "float32" for m in metas) else "float64"
    for b, r in runs.items():
        if r.outs is None:
            continue
        for k, (d, w) in enumerate(labels):
            got = r.outs[n_out + k]
            what = f"{d.kind} d/d{w}"
            if got.shape != d64[k].shape:
                fails.append(Failure("shape", b, what, f"shape {got.shape}, float64 gives {d64[k].shape}"))
                continue
            ok, msg = _close(got, d64[k], _derived_tol(low, d64[k]))
            if not ok:
                fails.append(Failure("derived", b, what, msg))

    # the float64 derivatives against finite differences
    rng = np.random.default_rng([prog.seed, 7])
    for k, (d, w) in enumerate(labels):
        if not all(np.isfinite(a).all() for a in (d64[k], t64[k])):
            continue
        x = wide[w]
        if d.kind in ("jvp", "hvp"):
            direction = wide[f"d_{w}"]
        else:
            direction = rng.uniform(-1, 1, x.shape)
        plus, minus = dict(wide), dict(wide)
        plus[w] = x + EPS * direction
        minus[w] = x - EPS * direction
        rp, rm = _call(f64, plus), _call(f64, minus)
        if rp.outs is None or rm.outs is None:
            continue
        fd = (rp.outs[nd + k] - rm.outs[nd + k]) / (2 * EPS)
        if d.kind == "grad":
            sym = np.asarray(np.sum(d64[k] * direction))
        elif d.kind == "hessian":
            sym = np.tensordot(d64[k], direction, axes=x.ndim) if x.ndim else d64[k] * direction
        else:
            sym = d64[k]
        scale = 1.0 + max(float(np.max(np.abs(fd))) if fd.size else 0.0,
                          float(np.max(np.abs(sym))) if np.size(sym) else 0.0)
        big = float(np.max(np.abs(t64[k]))) if t64[k].size else 0.0
        ok, msg = _close(sym, fd, 1e-5 * scale + 1e-9 * big)
        if not ok:
            fails.append(Failure("fd", "numpy-float64", f"{d.kind} d/d{w}",
                                 f"symbolic against finite differences: {msg}"))

    if use_torch and _torch() is not None:
        fails += check_torch(prog, metas, wide, labels, d64)
    return fails


def check_torch(prog: Program, metas: list[Meta], wide: dict[str, np.ndarray],
                labels: list[tuple[Derived, str]], d64: list[np.ndarray]) -> list[Failure]:
    """The float64 derivatives against PyTorch's autograd on the same program."""
    import torch

    from .torch_ops import T

    fails: list[Failure] = []
    for k, (d, w) in enumerate(labels):
        if d.kind not in ("grad", "jvp"):
            continue
        tdata = {name: torch.tensor(v) for name, v in wide.items()}
        x = tdata[w].clone().requires_grad_(True)
        tdata[w] = x
        ns: dict[str, Any] = {"T": T, "data": tdata, "np": np}
        try:
            for line in program_lines(prog, "T"):
                exec(line, ns)
            y = ns[f"v{d.target}"]
            if d.kind == "grad":
                f = eval(reducer_source(d.reducer, "y", "T"), {"T": T, "y": y})
                (g,) = torch.autograd.grad(f, x, allow_unused=True)
                got = np.zeros(x.shape) if g is None else g.detach().numpy()
            else:
                def fn(xx: Any, _w: str = w, _data: dict[str, Any] = tdata, _t: int = d.target) -> Any:
                    dd = dict(_data)
                    dd[_w] = xx
                    n2: dict[str, Any] = {"T": T, "data": dd, "np": np}
                    for line in program_lines(prog, "T"):
                        exec(line, n2)
                    return n2[f"v{_t}"]
                _, g = torch.func.jvp(fn, (x.detach(),), (tdata[f"d_{w}"],))
                got = g.detach().numpy()
        except Exception as e:  # noqa: BLE001 - an op PyTorch lacks is not symgrad's failure
            if os.environ.get("SYMGRAD_FUZZ_DEBUG"):
                traceback.print_exc()
            del e
            continue
        ok, msg = _close(d64[k], got, 1e-7 * (1 + float(np.max(np.abs(got))) if got.size else 1.0))
        if not ok:
            fails.append(Failure("torch", "numpy-float64", f"{d.kind} d/d{w}",
                                 f"symgrad against PyTorch: {msg}"))
    return fails


def _short(e: BaseException | None) -> str:
    if e is None:
        return ""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {' | '.join(text[:3])}"[:600]


# -- shrinking ------------------------------------------------------------------------------
def _leaf_for(m: Meta, name: str) -> Node | None:
    spec: list[Any] = []
    for k, _ in m.dims:
        if isinstance(k, int) or ("[" not in k and "*" not in k):
            spec.append(k)
        else:
            return None
    if m.dtype == "bool":
        return None
    data = ("int" if m.dtype in ("int32", "int64") else "zeros" if m.zeros else
            "positive" if m.lo >= 0.5 else "grid" if m.exact else "normal")
    return Node("placeholder", (), (("name", name), ("spec", tuple(spec)), ("dtype", m.dtype), ("data", data)))


def candidates(prog: Program, metas: list[Meta]) -> list[Program]:
    """Smaller programs to try, most promising first."""
    out: list[Program] = []
    if prog.derived:
        if prog.outputs:
            out.append(prog.copy(outputs=[]))
        out.append(prog.copy(derived=[]))
        if len(prog.derived) > 1:
            out += [prog.copy(derived=[d]) for d in prog.derived]
        for k, d in enumerate(prog.derived):
            if len(d.wrt) > 1:
                out += [prog.copy(derived=prog.derived[:k] + [Derived(d.kind, d.target, (w,), d.reducer)]
                                  + prog.derived[k + 1:]) for w in d.wrt]
            if d.reducer != "sum":
                out.append(prog.copy(derived=prog.derived[:k] + [Derived(d.kind, d.target, d.wrt)]
                                     + prog.derived[k + 1:]))
    if len(prog.outputs) > 1:
        out += [prog.copy(outputs=[o]) for o in dict.fromkeys(prog.outputs)]
    used_names = {n.p["name"] for n in prog.nodes if n.op == "placeholder"}
    for i in range(len(prog.nodes) - 1, -1, -1):
        node = prog.nodes[i]
        if node.op in ("placeholder", "constant"):
            continue
        # bypass: use an argument of the same shape and dtype instead
        for a in dict.fromkeys(node.args):
            if metas[a].dims == metas[i].dims and metas[a].dtype == metas[i].dtype:
                out.append(_redirect(prog, i, a))
        k = 0
        while f"s{k}" in used_names:
            k += 1
        leaf = _leaf_for(metas[i], f"s{k}")
        if leaf is not None:
            nodes = list(prog.nodes)
            nodes[i] = leaf
            out.append(prog.copy(nodes=nodes))
    for i, node in enumerate(prog.nodes):
        if node.op == "placeholder" and any(not isinstance(s, int) for s in node.p["spec"]):
            p = node.p
            spec = tuple(metas[i].shape)
            nodes = list(prog.nodes)
            nodes[i] = Node("placeholder", (), tuple({**p, "spec": spec}.items()))
            out.append(prog.copy(nodes=nodes))
    return [compact(c) for c in out]


def _redirect(prog: Program, i: int, a: int) -> Program:
    """Every use of node ``i`` becomes a use of node ``a``."""
    def sub(x: int) -> int:
        return a if x == i else x
    nodes = [Node(n.op, tuple(sub(x) for x in n.args), n.params) for n in prog.nodes]
    return prog.copy(nodes=nodes, outputs=[sub(o) for o in prog.outputs],
                     derived=[Derived(d.kind, sub(d.target), d.wrt, d.reducer) for d in prog.derived])


def _backends_for(f: Failure) -> tuple[str, ...]:
    if f.backend in BACKENDS and f.backend != "numpy":
        return ("numpy", f.backend)
    return ("numpy",)


def shrink(prog: Program, failure: Failure, seconds: float = 60.0, log: Callable[[str], None] | None = None
           ) -> tuple[Program, Failure]:
    """A smaller program that fails the same way (same check, backend and output kind)."""
    deadline = time.monotonic() + seconds
    backends = _backends_for(failure)
    derived = failure.check in ("derived", "fd", "torch") or failure.what.startswith(
        ("grad", "jvp", "hvp", "hessian"))
    torch = failure.check == "torch"
    best, best_f = compact(prog), failure
    improved = True
    while improved and time.monotonic() < deadline:
        improved = False
        try:
            metas = infer(best)
        except Invalid:
            break
        for cand in candidates(best, metas):
            if time.monotonic() > deadline:
                break
            if len(cand.nodes) > len(best.nodes) or (not cand.outputs and not cand.derived):
                continue
            if (len(cand.nodes), len(cand.outputs), len(cand.derived)) >= (
                    len(best.nodes), len(best.outputs), len(best.derived)) and cand.nodes == best.nodes:
                continue
            try:
                infer(cand)
                if features_of(cand) & DISABLED.keys():
                    continue
                fs = check(cand, backends, derived=derived, torch=torch)
            except Invalid:
                continue
            except Exception:  # noqa: BLE001 - a candidate that breaks the fuzzer is not smaller
                continue
            same = [f for f in fs if f.signature == failure.signature]
            if same:
                best, best_f, improved = cand, same[0], True
                if log:
                    log(f"  shrunk to {len(best.nodes)} nodes")
                break
    return best, best_f


# -- the reproducer -------------------------------------------------------------------------
def reproducer(prog: Program, failure: Failure) -> str:
    """A standalone Python script that shows the failure."""
    metas = infer(prog)
    data = inputs(prog, metas)
    backends = _backends_for(failure) if failure.backend in BACKENDS else ("numpy",)
    lines = [
        f"# symgrad fuzz reproducer (seed {prog.seed}): {failure.check} on {failure.backend}, {failure.what}",
        *[f"#   {t}" for t in failure.message.splitlines()],
        "import os",
        "os.environ.setdefault('SYMGRAD_CUDA_DEVICE', 'shim')  # the cuda backend on the CPU host shim",
        "import numpy as np",
        "import scipy as sp",
        "import scipy.special",
        "import symgrad as sg",
        "",
        "data = {",
        *[f"    {k!r}: np.array({v.tolist()!r}, dtype={str(v.dtype)!r})"
          + (f".reshape({v.shape!r})," if v.ndim > 1 and not v.size else ",") for k, v in data.items()],
        "}",
        "",
        "# the program",
        *program_lines(prog, "sg"),
        "P = {" + ", ".join(f"{n.p['name']!r}: v{i}" for i, n in enumerate(prog.nodes)
                            if n.op == "placeholder") + "}",
        *[f"P[{name!r}] = sg.placeholder({name!r}, {spec!r}, {dtype!r})"
          for name, spec, dtype in tangent_placeholders(prog, metas)],
        "outputs = [" + ", ".join([f"v{o}" for o in prog.outputs] + derived_sources(prog)) + "]",
        "",
        "# the same program in NumPy, in float64: what the outputs (not the derived ones) should be",
        *NP_HELPERS.splitlines(),
        "",
        "",
        "def numpy_reference(data):",
        *[f"    {line}" for line in program_lines(prog, "np")],
        "    return [" + ", ".join(f"np.asarray(v{o})" for o in prog.outputs) + "]",
        "",
        "with np.errstate(all='ignore'):",
        "    try:",
        "        want = numpy_reference({k: v.astype('float64') if v.dtype == np.float32 else v",
        "                                for k, v in data.items()})",
        "    except Exception as e:",
        "        want = []",
        "        print('NumPy raises', type(e).__name__, e)",
        "np.set_printoptions(precision=6, threshold=20)",
        f"for backend in {backends!r}:",
        "    try:",
        "        f = sg.compile(outputs, backend=backend)",
        "        got = f(**{k: data[k] for k in f.inputs})",
        "    except Exception as e:",
        "        print(backend, 'raises', type(e).__name__, str(e).splitlines()[0])",
        "        continue",
        "    got = got if isinstance(got, tuple) else (got,)",
        "    for k, g in enumerate(got):",
        "        print(backend, 'output', k, g.dtype, g.shape, g.ravel()[:8])",
        "        if k < len(want) and g.shape == want[k].shape:",
        "            print('    NumPy float64 gives', want[k].ravel()[:8], 'max abs diff',",
        "                  np.max(np.abs(g - want[k]), initial=0.0))",
    ]
    return "\n".join(lines) + "\n"


# -- a session --------------------------------------------------------------------------------
@dataclass
class Found:
    seed: int
    failure: Failure
    program: Program
    script: str
    known: str | None = None  # the known bug it matches (see known.py), if any


def first_failure(prog: Program, backends: Sequence[str]) -> tuple[Failure | None, str | None]:
    """The first failure not known as an open bug (or the first known one), and its bug."""
    try:
        fails = check(prog, backends)
    except Exception as e:  # noqa: BLE001 - a crash of the checks is reported like a failure
        return Failure("fuzzer", "-", type(e).__name__,
                       _short(e) + "\n" + traceback.format_exc(limit=4)), None
    if not fails:
        return None, None
    feats = features_of(prog)
    for f in fails:
        if known_bug(f.check, f.backend, f.message, feats) is None:
            return f, None
    return fails[0], known_bug(fails[0].check, fails[0].backend, fails[0].message, feats)


def run_seed(seed: int, backends: Sequence[str] = BACKENDS, shrink_seconds: float = 60.0,
             log: Callable[[str], None] | None = None, skip: Callable[[Failure], bool] | None = None
             ) -> Found | None:
    """Generate and check one program; a failure comes back shrunk, with its reproducer.
    ``skip(failure)`` true: do not shrink it (a failure of a kind already found)."""
    from .gen import generate

    prog = generate(seed)
    first, known = first_failure(prog, backends)
    if first is None:
        return None
    if log:
        log(f"seed {seed}: {first}" + (f" (known: {known})" if known else ""))
    if known or first.check == "fuzzer" or (skip is not None and skip(first)) or shrink_seconds <= 0:
        return Found(seed, first, prog, reproducer(prog, first), known)
    small, sf = shrink(prog, first, shrink_seconds, log)
    return Found(seed, sf, small, reproducer(small, sf))


@dataclass
class Report:
    ran: int = 0
    seconds: float = 0.0
    found: list[Found] = field(default_factory=list)

    @property
    def failures(self) -> list[Found]:
        return [f for f in self.found if f.known is None]

    @property
    def known(self) -> list[Found]:
        return [f for f in self.found if f.known is not None]

    def summary(self) -> str:
        kinds: dict[tuple[str, str, str], list[int]] = {}
        for f in self.failures:
            kinds.setdefault(f.failure.signature, []).append(f.seed)
        lines = [f"{self.ran} programs in {self.seconds:.1f} s: {len(self.failures)} failed, "
                 f"{len(self.known)} hit known bugs"]
        for sig, seeds in kinds.items():
            lines.append(f"  {' / '.join(sig)}: seeds {', '.join(map(str, seeds[:10]))}"
                         + (" ..." if len(seeds) > 10 else ""))
        bugs: dict[str, int] = {}
        for f in self.known:
            bugs[f.known or ""] = bugs.get(f.known or "", 0) + 1
        for bug, n in bugs.items():
            lines.append(f"  known ({n}x): {bug}")
        return "\n".join(lines)


def session(seeds: Iterable[int], seconds: float, backends: Sequence[str] = BACKENDS,
            shrink_seconds: float = 60.0, log: Callable[[str], None] | None = None) -> Report:
    """Run the seeds in order until they are done or ``seconds`` have passed (a seed that
    has started finishes). Each kind of failure is shrunk the first time it is seen."""
    report = Report()
    start = time.monotonic()
    seen: set[tuple[str, str, str]] = set()
    for seed in seeds:
        if time.monotonic() - start > seconds:
            break
        found = run_seed(seed, backends, shrink_seconds, log, skip=lambda f: f.signature in seen)
        report.ran += 1
        if found is not None:
            if found.known is None:
                seen.add(found.failure.signature)
            report.found.append(found)
    report.seconds = time.monotonic() - start
    return report
