"""SymPy-backed simplification of elementwise clusters, under a hard budget.

A cluster is a maximal connected set of elementwise float nodes in which every node but
the root has exactly one use, and that use is inside the cluster: a tree of scalar
arithmetic over leaves (placeholders, shared nodes, non-elementwise results). Each
cluster is turned into one SymPy expression with the ops' scalar forms, simplified
(``cancel``, ``factor_terms``, and ``simplify`` for small ones), and rebuilt from graph ops
only if the result is smaller (fewer ops) and uses only ops symgrad has.

Budget: clusters with more than ``max_size`` ops are skipped before SymPy sees them
(noted as ``simplify/too-large``); each SymPy call runs under a ``timeout`` (a timer
signal in the main thread) and the whole pass under ``budget`` seconds; a timeout or an
unconvertible result keeps the original and is noted (``simplify/timeout``,
``simplify/budget``). Results are cached by the cluster's structure, so repeated
structures (unrolled loops, layers) cost one SymPy call.

Semantics: SymPy treats the leaves as finite real numbers, so like a fast-math flag
this pass may turn ``x/x`` into 1 or ``x - x`` into 0 where ``x`` could be 0, NaN or
infinite. It is therefore not in the default pipeline; ask for it by name. Ops whose
scalar form is a composition that would be less stable if rebuilt from primitives
(``sigmoid``, ``softplus``, ``log1p``, ``expm1``) enter SymPy as opaque functions.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import sympy as sp

import symgrad.ops.api as F
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.graph import toposort_by_creation
from symgrad.ir.tensor import Tensor, constant
from symgrad.ops.base import OPS
from symgrad.passes.manager import count_rewrite, note
from symgrad.passes.patterns import const_value, protected_ids
from symgrad.passes.rewrite import rewrite

# ops entering SymPy through their scalar form, and ops entering as opaque functions
SCALAR_OPS = frozenset({"add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt",
                        "sin", "cos", "tanh", "abs", "erf"})
OPAQUE_OPS = frozenset({"sigmoid", "softplus", "log1p", "expm1"})
CLUSTER_OPS = SCALAR_OPS | OPAQUE_OPS
_OPAQUE = {name: sp.Function(name) for name in OPAQUE_OPS}
_FUNCS: dict[Any, str] = {sp.exp: "exp", sp.log: "log", sp.sin: "sin", sp.cos: "cos",
                          sp.tanh: "tanh", sp.Abs: "abs", sp.erf: "erf"}
_FUNCS.update({f: name for name, f in _OPAQUE.items()})


class _Timeout(BaseException):
    """Raised by the timer inside SymPy (a BaseException, so SymPy cannot swallow it)."""


class _Unsupported(Exception):
    """The SymPy result needs an op symgrad does not have."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`_Timeout` after ``seconds`` (main thread with no other timer only)."""
    usable = (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
              and signal.getitimer(signal.ITIMER_REAL)[0] == 0)
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Timeout

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- clusters ---------------------------------------------------------------------------------
@dataclass
class Cluster:
    root: Tensor
    size: int            # ops in the cluster
    key: tuple[Any, ...]  # the structure with leaves numbered by first use
    leaves: list[Tensor]  # leaf k of the key (constants that enter SymPy as numbers excluded)


def _exact_number(v: Any) -> sp.Rational | None:
    """A constant that SymPy may hold as an exact number (integers, small binary fractions)."""
    if isinstance(v, bool) or not np.isfinite(v):
        return None
    fr = Fraction(float(v))
    if fr.denominator > 1024 or abs(fr.numerator) > 2**24:
        return None
    return sp.Rational(fr.numerator, fr.denominator)


class _TooLarge(Exception):
    pass


def clusters(order: Sequence[Tensor], outputs: Sequence[Tensor], max_size: int) -> list[Cluster]:
    """The clusters of the graph, in graph order; one larger than ``max_size`` is returned
    with an empty key (its walk stops there, so a huge cluster costs little)."""
    protected = protected_ids(order)
    out_ids = {id(o) for o in outputs}
    uses: dict[int, int] = {}
    user: dict[int, Tensor] = {}
    for n in order:
        for i in n.inputs:
            uses[id(i)] = uses.get(id(i), 0) + 1
            user[id(i)] = n

    eligible = {id(n) for n in order
                if n.op.name in CLUSTER_OPS and n.dtype in FLOATS and id(n) not in protected}
    inner = {k for k in eligible
             if uses.get(k) == 1 and k not in out_ids and id(user[k]) in eligible}

    found = []
    for root in order:
        if id(root) not in eligible or id(root) in inner:
            continue
        walk = _Walk(root, inner, max_size, protected)
        try:
            key = walk.key(root)
        except _TooLarge:
            key = ()
        found.append(Cluster(root, walk.size, key, walk.leaves))
    return found


class _Walk:
    """The structure of one cluster, leaves numbered by first use."""

    def __init__(self, root: Tensor, inner: set[int], max_size: int, protected: set[int]) -> None:
        self.root = root
        self.inner = inner
        self.protected = protected
        self.max_size = max_size
        self.size = 0
        self.leaves: list[Tensor] = []
        self.index: dict[int, int] = {}

    def key(self, n: Tensor) -> Any:
        if n is not self.root and id(n) not in self.inner:
            v = (const_value(n, self.protected) if n.op.name in ("constant", "broadcast_to")
                 else None)
            if v is not None:
                num = _exact_number(v)
                if num is not None:
                    return ("c", num)
            k = self.index.get(id(n))
            if k is None:
                k = self.index[id(n)] = len(self.leaves)
                self.leaves.append(n)
            return k
        self.size += 1
        if self.size > self.max_size:
            raise _TooLarge
        return (n.op.name, *[self.key(i) for i in n.inputs])


# -- graph <-> SymPy ------------------------------------------------------------------------
def to_sympy(key: Any, symbols: list[sp.Symbol]) -> sp.Expr:
    if isinstance(key, int):
        return symbols[key]
    if key[0] == "c":
        return key[1]
    name, *args = key
    xs = [to_sympy(a, symbols) for a in args]
    if name in _OPAQUE:
        return _OPAQUE[name](*xs)
    return OPS[name].scalar(*xs)  # type: ignore[misc]


Step = tuple[Any, ...]


class Builder:
    """Records a SymPy expression as a program of graph ops over numbered values:
    ``("leaf", k)``, ``("num", value)``, ``("op", name, *value indices)``. Replaying the
    program on a cluster's leaves needs no SymPy, so a cached result is cheap to reuse."""

    def __init__(self) -> None:
        self.steps: list[Step] = []
        self.ops = 0

    def _push(self, step: Step) -> int:
        self.steps.append(step)
        return len(self.steps) - 1

    def op(self, name: str, *args: int) -> int:
        self.ops += 1
        return self._push(("op", name, *args))

    def number(self, value: Any) -> int:
        return self._push(("num", float(value)))

    def leaf(self, k: int) -> int:
        return self._push(("leaf", k))


def replay(steps: Sequence[Step], leaves: Sequence[Tensor], dtype: str) -> Tensor:
    """Build the recorded program's graph on ``leaves``; the last value is the result."""
    values: list[Tensor] = []
    for step in steps:
        kind = step[0]
        if kind == "leaf":
            values.append(leaves[step[1]])
        elif kind == "num":
            values.append(constant(np.asarray(step[1], dtype=dtype)))
        else:
            values.append(getattr(F, step[1])(*[values[k] for k in step[2:]]))
    return values[-1]


def _is_pow2(q: int) -> bool:
    return q > 0 and q & (q - 1) == 0


def from_sympy(e: sp.Expr, b: Builder) -> Any:
    if e.is_Symbol:
        return b.leaf(int(e.name[1:]))  # the symbols are v0, v1, ...
    if e.is_Rational:
        p, q = int(e.p), int(e.q)
        if _is_pow2(q):
            return b.number(e)
        return b.op("div", b.number(p), b.number(q))
    if e.is_Number or e.is_number:
        if not (e.is_real and e.is_finite):
            raise _Unsupported(str(e))
        return b.number(float(e))
    if e.is_Add:
        pos: list[sp.Expr] = []
        neg: list[sp.Expr] = []
        for t in e.as_ordered_terms():
            c, _ = t.as_coeff_Mul()
            (neg if c.is_negative else pos).append(-t if c.is_negative else t)
        out = None
        for t in pos:
            x = from_sympy(t, b)
            out = x if out is None else b.op("add", out, x)
        for t in neg:
            x = from_sympy(t, b)
            out = b.op("neg", x) if out is None else b.op("sub", out, x)
        return out
    if e.is_Mul:
        c, rest = e.as_coeff_Mul()
        num, den = [], []
        for f in sp.Mul.make_args(rest):
            if f.is_Pow and f.exp.is_Number and f.exp.is_negative:
                den.append(f.base ** (-f.exp))
            else:
                num.append(f)
        negative = bool(c.is_negative)
        c = -c if negative else c
        out = None
        for f in num:
            x = from_sympy(f, b)
            out = x if out is None else b.op("mul", out, x)
        if c != 1:
            if c.is_Rational and not _is_pow2(int(c.q)):
                if c.p != 1:
                    out = b.number(c.p) if out is None else b.op("mul", out, b.number(c.p))
                den.append(sp.Integer(c.q))
            else:
                out = b.number(c) if out is None else b.op("mul", out, b.number(c))
        if out is None:
            out = b.number(1)
        for f in den:
            out = b.op("div", out, from_sympy(f, b))
        return b.op("neg", out) if negative else out
    if e.is_Pow:
        base, ex = e.args
        if ex.is_Number and ex.is_negative:
            return b.op("div", b.number(1), from_sympy(base ** (-ex), b))
        if ex == sp.Rational(1, 2):
            return b.op("sqrt", from_sympy(base, b))
        if ex == 2:
            x = from_sympy(base, b)
            return b.op("mul", x, x)
        return b.op("pow", from_sympy(base, b), from_sympy(ex, b))
    name = _FUNCS.get(e.func)
    if name is not None and len(e.args) == 1:
        return b.op(name, from_sympy(e.args[0], b))
    raise _Unsupported(type(e).__name__)


def program(e: sp.Expr) -> Builder | None:
    """``e`` as a program of graph ops, or None if it needs an op symgrad does not have."""
    b = Builder()
    try:
        from_sympy(e, b)
    except _Unsupported:
        return None
    return b


_cache: dict[tuple[Any, ...], list[Step] | None] = {}
_warm: list[bool] = []


def _warm_up() -> None:
    """SymPy loads much of itself on first use; do that outside the per-cluster timer."""
    if not _warm:
        a, b = sp.symbols("a b", real=True)
        e = (a * b + a * sp.exp(b)) / a
        sp.simplify(sp.factor_terms(sp.cancel(e)))
        _warm.append(True)


@dataclass(frozen=True)
class Simplify:
    """Simplify elementwise clusters with SymPy (fast-math semantics; see the module doc)."""

    name: str = "simplify"
    max_size: int = 40
    timeout: float = 0.5
    budget: float = 5.0
    deep_size: int = 12  # clusters up to this size also try sympy.simplify

    def run(self, outputs: Sequence[Tensor]) -> list[Tensor]:
        order = toposort_by_creation(outputs)
        start = time.perf_counter()
        plans: dict[int, tuple[Cluster, list[Step]]] = {}
        for cl in clusters(order, outputs, self.max_size):
            if cl.size < 2:
                continue
            if cl.size > self.max_size:
                note("simplify/too-large")
                continue
            ckey = (cl.key, self.max_size, self.deep_size)
            if ckey in _cache:
                best = _cache[ckey]
            else:
                if time.perf_counter() - start > self.budget:
                    note("simplify/budget")
                    continue
                best = self._best(cl)
                if best is _TIMED_OUT:
                    note("simplify/timeout")
                    continue
                if len(_cache) > 4096:
                    _cache.clear()
                _cache[ckey] = best
            if best is not None:
                plans[id(cl.root)] = (cl, best)
        if not plans:
            return list(outputs)

        def rule(node: Tensor, inputs: tuple[Tensor, ...]) -> Tensor | None:
            plan = plans.get(id(node))
            if plan is None:
                return None
            cl, steps = plan
            out = replay(steps, _leaf_map(cl, node, inputs), node.dtype)
            if out.shape != node.shape:
                out = F.broadcast_to(out, node.shape)
            count_rewrite("simplify/cluster")
            return out

        return rewrite(outputs, rule, order)

    def _best(self, cl: Cluster) -> Any:
        _warm_up()
        symbols = [sp.Symbol(f"v{k}", real=True) for k in range(len(cl.leaves))]
        try:
            with time_limit(self.timeout):
                expr = to_sympy(cl.key, symbols)
                best: Builder | None = None
                tries: list[Callable[[sp.Expr], sp.Expr]] = [
                    lambda x: x, sp.cancel, sp.factor_terms, lambda x: sp.factor_terms(sp.cancel(x))]
                if cl.size <= self.deep_size:
                    tries.append(sp.simplify)
                for attempt in tries:
                    cand = program(attempt(expr))
                    if cand is not None and cand.ops < (cl.size if best is None else best.ops):
                        best = cand
        except _Timeout:
            return _TIMED_OUT
        except Exception:  # SymPy failed on this cluster: keep the original
            note("simplify/sympy-error")
            return None
        return None if best is None else best.steps


_TIMED_OUT = object()


def _leaf_map(cl: Cluster, node: Tensor, inputs: tuple[Tensor, ...]) -> list[Tensor]:
    """The rewritten graph's leaves, found by walking the old and new cluster together."""
    index = {id(t): k for k, t in enumerate(cl.leaves)}
    out: list[Tensor | None] = [None] * len(cl.leaves)
    stack = list(zip(node.inputs, inputs))
    seen_interior = {id(cl.root)}
    while stack:
        old, new = stack.pop()
        k = index.get(id(old))
        if k is not None:
            out[k] = new
            continue
        if old.op.name in CLUSTER_OPS and id(old) not in seen_interior and new.op is old.op:
            seen_interior.add(id(old))
            stack.extend(zip(old.inputs, new.inputs))
    assert all(t is not None for t in out), f"simplify: a leaf of the {node.op.name} cluster was not found"
    return out  # type: ignore[return-value]
