"""Random programs over symgrad's public API, as data.

A :class:`Program` is a list of :class:`Node` s in SSA form (each node's arguments are
earlier nodes), the nodes whose values are outputs, and derived outputs (``sg.grad``,
``sg.jvp``, ``sg.hvp``, ``sg.hessian``) of some of them. Every node prints itself as one
line of Python for three libraries: ``sg`` (symgrad, the program under test), ``np``
(NumPy and SciPy, the oracle) and ``T`` (PyTorch through :mod:`tests.fuzz.torch_ops`).
Building, the oracle and a reproducer script all run that same text, so what a
reproducer shows is what was checked.

Alongside, :func:`infer` derives what the generator and the checks need to know about each
node: its shape (each axis a static size or a symbolic one, and the size it has in this
program's data), its dtype, an interval that holds its values and a bound on the absolute
rounding error a float computation of it can make (a running error analysis: each op adds
a few units of rounding of its result's magnitude and scales its inputs' errors by its
Lipschitz bound). Value checks use that bound, so the tolerance follows the magnitude of
what was summed, not only of the result.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .known import DISABLED

FLOATS = ("float32", "float64")
INTS = ("int32", "int64")
# unit roundoff by dtype; integers and bools compute exactly
UNIT = {"float32": 2.0**-24, "float64": 2.0**-53}

# Every feature the generator knows; a feature not in known.DISABLED is generated.
FEATURES = (
    "neg_step_slice",     # x[-5::-1] and friends on static axes (issue 14 bug 1)
    "jvp",                # sg.jvp, also through broadcasting add/sub (bug 2)
    "int_cast",           # casts to int32/int64/bool and back (bug 3)
    "alias_outputs",      # an output and a slice of it, the same output twice (bug 4)
    "prod_zeros",         # prod over data with exact zeros, with hessians (bug 5)
    "mixed_dtypes",       # float32 and float64 placeholders in one program (bug 6)
    "size_only",          # placeholders used only for their sizes: zeros_like, full, arange (bug 7)
    "inner_zero",         # inner/dot/matmul over a contracted axis of length 0 (bug 8)
    "int_inner",          # inner/matmul of int32 operands (bug 9)
    "hessian",            # sg.hvp and sg.hessian
    "empty_max",          # max/min over an empty axis: an error on every backend
    "symbolic_slice",     # slices of symbolic axes (bounds checked at call time)
    "dim_value",          # symbolic sizes used as scalar values: x * x.shape[0] (issue 14 item 5)
    "dim_value_size_only",  # ... of a placeholder used for nothing else (items 5 and bug 7)
    "symbolic_meet",      # two different symbolic sizes meet in a broadcast (bug 6)
    "gather",             # an integer-list index, x[[1, -3, 2], 1:] (bug 11)
)


def enabled(feature: str) -> bool:
    assert feature in FEATURES, feature
    return feature not in DISABLED


# -- the program -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    """One value: ``op`` applied to earlier nodes ``args`` with parameters ``params``.

    Leaves are ``placeholder`` (params: name, spec, dtype, data) and ``constant`` (params:
    value, a nested list, and dtype)."""

    op: str
    args: tuple[int, ...] = ()
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def p(self) -> dict[str, Any]:
        return dict(self.params)


@dataclass(frozen=True)
class Derived:
    """A derived output: ``kind`` in grad, jvp, hvp, hessian, of node ``target``, with
    respect to placeholders ``wrt``. grad, hvp and hessian differentiate
    ``reducer(target)``, a scalar; jvp pushes the tangents (placeholders named
    ``d_<name>``) through ``target`` itself."""

    kind: str
    target: int
    wrt: tuple[str, ...]
    reducer: str = "sum"


@dataclass
class Program:
    nodes: list[Node]
    outputs: list[int]
    derived: list[Derived] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)  # symbolic size -> its size in the data
    seed: int = 0

    def copy(self, **changes: Any) -> Program:
        fields = {"nodes": list(self.nodes), "outputs": list(self.outputs),
                  "derived": list(self.derived), "sizes": dict(self.sizes), **changes}
        return replace(self, **fields)


# -- what is known about each node ---------------------------------------------------------
Dim = tuple[Any, int]  # (static size or the name of a symbolic one, size in this program's data)


@dataclass(frozen=True)
class Meta:
    dims: tuple[Dim, ...]
    dtype: str
    lo: float = 0.0
    hi: float = 0.0
    err: float = 0.0         # bound on the absolute rounding error against exact arithmetic
    nonfinite: bool = False  # may hold NaN or Inf (a mean over nothing, ...)
    zeros: bool = False      # may hold exact zeros where a kink would spoil finite differences
    deps: frozenset[str] = frozenset()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s for _, s in self.dims)

    @property
    def keys(self) -> tuple[Any, ...]:
        return tuple(k for k, _ in self.dims)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def mag(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    @property
    def exact(self) -> bool:
        return self.err == 0.0 and not self.nonfinite

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOATS


class Invalid(Exception):
    """The node's arguments do not meet its preconditions (the generator avoids these; a
    shrinking step that makes one is dropped)."""


def promote(a: str, b: str) -> str:
    if a == b:
        return a
    order = ["bool", "int32", "int64", "float32", "float64"]
    if {a, b} == {"int64", "float32"} or {a, b} == {"int32", "float32"}:
        return "float64"
    return max(a, b, key=order.index)


def broadcast(a: tuple[Dim, ...], b: tuple[Dim, ...]) -> tuple[Dim, ...] | None:
    """NumPy broadcasting on static sizes (a symbolic size only meets itself or a static 1)."""
    out: list[Dim] = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else (1, 1)
        y = b[-i] if i <= len(b) else (1, 1)
        if x[0] == y[0]:
            out.append(x)
        elif not isinstance(x[0], int) and not isinstance(y[0], int) and x[1] == y[1]:
            out.append(x)  # two symbolic sizes meet: equal when called, as symgrad checks
        elif x[0] == 1:
            out.append(y)
        elif y[0] == 1:
            out.append(x)
        else:
            return None
    return tuple(reversed(out))


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(sorted(a % ndim for a in axis))


def _interval(vals: list[float]) -> tuple[float, float]:
    return min(vals), max(vals)


def _finite(m: Meta) -> None:
    if not all(math.isfinite(v) for v in (m.lo, m.hi, m.err)):
        raise Invalid("unbounded")


def _ew(ms: list[Meta], dtype: str, lo: float, hi: float, err: float, **kw: Any) -> Meta:
    dims: tuple[Dim, ...] = ms[0].dims
    for m in ms[1:]:
        b = broadcast(dims, m.dims)
        if b is None:
            raise Invalid("shapes do not broadcast")
        dims = b
    u = UNIT.get(dtype, 0.0)
    mag = max(abs(lo), abs(hi))
    out = Meta(dims, dtype, lo, hi, err + (u * mag if u else 0.0),
               nonfinite=any(m.nonfinite for m in ms), zeros=any(m.zeros for m in ms),
               deps=frozenset().union(*(m.deps for m in ms)), **kw)
    return out


def _unary(name: str, m: Meta, p: dict[str, Any]) -> Meta:
    if not m.is_float:
        raise Invalid("float op on a non-float")
    lo, hi, e, d = m.lo, m.hi, m.err, m.dtype
    k = 4 * UNIT[d]  # a few units for library functions
    if name == "exp":
        if hi > 6:
            raise Invalid("exp of a large value")
        return _ew([m], d, math.exp(lo), math.exp(hi), math.exp(hi) * (e + k))
    if name == "log":
        if lo < 0.05:
            raise Invalid("log needs positive values")
        big = max(abs(math.log(lo)), abs(math.log(hi)), 1.0)
        return _ew([m], d, math.log(lo), math.log(hi), e / lo + k * big)
    if name == "sqrt":
        if lo < 0.05:
            raise Invalid("sqrt needs positive values")
        return _ew([m], d, math.sqrt(lo), math.sqrt(hi), e / (2 * math.sqrt(lo)) + k * math.sqrt(hi))
    if name == "tanh":
        return _ew([m], d, math.tanh(lo), math.tanh(hi), e + k)
    if name == "sigmoid":
        s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
        return _ew([m], d, s(max(lo, -700)), s(min(hi, 700)), e / 4 + k)
    if name == "sin":
        return _ew([m], d, -1.0, 1.0, e + k * max(1.0, m.mag))
    if name == "softplus":
        sp = lambda v: max(v, 0.0) + math.log1p(math.exp(-abs(v)))  # noqa: E731
        return _ew([m], d, sp(lo), sp(hi), e + k * (sp(hi) + 1))
    if name == "abs":
        return _ew([m], d, 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi)), m.mag, e, )
    if name == "relu":
        return _ew([m], d, max(lo, 0.0), max(hi, 0.0), e)
    if name == "square":
        lo2 = 0.0 if lo <= 0 <= hi else min(lo * lo, hi * hi)
        return _ew([m], d, lo2, m.mag**2, 2 * m.mag * e + e * e)
    if name == "negative":
        return replace(m, lo=-hi, hi=-lo)
    raise AssertionError(name)


def _binary(name: str, a: Meta, b: Meta) -> Meta:
    d = promote(a.dtype, b.dtype)
    if name in ("maximum", "minimum"):
        f = max if name == "maximum" else min
        return _ew([a, b], d, f(a.lo, b.lo), f(a.hi, b.hi), max(a.err, b.err) if a.dtype == b.dtype
                   else max(a.err, b.err) + UNIT.get(d, 0) * max(a.mag, b.mag))
    if name == "add":
        return _ew([a, b], d, a.lo + b.lo, a.hi + b.hi, a.err + b.err)
    if name == "subtract":
        return _ew([a, b], d, a.lo - b.hi, a.hi - b.lo, a.err + b.err)
    if name == "multiply":
        lo, hi = _interval([a.lo * b.lo, a.lo * b.hi, a.hi * b.lo, a.hi * b.hi])
        return _ew([a, b], d, lo, hi, a.mag * b.err + b.mag * a.err + a.err * b.err)
    if name == "divide":
        if b.lo <= 0.2 and b.hi >= -0.2:
            raise Invalid("division by values near zero")
        dmin = min(abs(b.lo), abs(b.hi))
        q = a.mag / dmin
        return _ew([a, b], d if d in FLOATS else "float64", -q, q,
                   a.err / dmin + a.mag * b.err / dmin**2 * 2)
    raise AssertionError(name)


def _reduce(name: str, m: Meta, p: dict[str, Any]) -> Meta:
    axes = _axes(p["axis"], len(m.dims))
    keep = p["keepdims"]
    dims: tuple[Dim, ...] = tuple((1, 1) if i in axes else dim for i, dim in enumerate(m.dims)
                                  if keep or i not in axes)
    n = math.prod(m.shape[i] for i in axes)
    d = m.dtype
    u = UNIT.get(d, 0.0)
    base: dict[str, Any] = dict(deps=m.deps, nonfinite=m.nonfinite, zeros=m.zeros)
    M, e = m.mag, m.err
    if name == "sum":
        if not m.is_float and d != "int64":
            raise Invalid("sum of a narrow int promotes by platform")
        return Meta(dims, d, n * m.lo if n else 0.0, n * m.hi if n else 0.0, n * e + n * n * u * M, **base)
    if not m.is_float:
        raise Invalid("float reduction on a non-float")
    if name == "mean":
        return Meta(dims, d, m.lo, m.hi, e + n * u * M, **{**base, "nonfinite": m.nonfinite or n == 0})
    if name in ("max", "min"):
        if any(m.dims[i][0] == 0 for i in axes):
            raise Invalid("an empty max over static axes is refused at build time")
        return Meta(dims, d, m.lo, m.hi, e, **base)
    if name == "prod":
        if M**n > 1e4:
            raise Invalid("prod too large")
        lo, hi = (m.lo**n, m.hi**n) if m.lo >= 0 else (-(M**n), M**n)
        if n == 0:
            lo = hi = 1.0
        return Meta(dims, d, lo, hi, n * M ** max(n - 1, 0) * e + 2 * n * u * M**n, **base)
    if name == "logsumexp":
        ln = math.log(n) if n else 0.0
        return Meta(dims, d, m.lo, m.hi + ln, e + 4 * u * (M + ln + 1),
                    **{**base, "nonfinite": m.nonfinite or n == 0, "zeros": False})
    raise AssertionError(name)


def _getitem_dims(m: Meta, key: tuple[Any, ...]) -> tuple[Dim, ...]:
    dims: list[Dim] = []
    axis = 0
    for k in key:
        if k is None:
            dims.append((1, 1))
            continue
        key_, n = m.dims[axis]
        axis += 1
        if isinstance(k, list):
            if not isinstance(key_, int) or any(not -n <= j < n for j in k):
                raise Invalid("a gather needs a static axis and indices in range")
            dims.append((len(k), len(k)))
            continue
        if isinstance(k, int):
            if not -n <= k < n:
                raise Invalid("index out of range")
            if not isinstance(key_, int) and k < 0:
                raise Invalid("negative index on a symbolic axis")
            continue
        length = len(range(*k.indices(n)))
        if isinstance(key_, int):
            dims.append((length, length))
        elif k == slice(None):
            dims.append((key_, n))
        else:
            if k.step is not None and k.step < 0:
                raise Invalid("negative step on a symbolic axis")
            dims.append((f"{key_}[{_slice_text(k)}]", length))
    dims += m.dims[axis:]
    return tuple(dims)


def _slice_text(s: slice) -> str:
    def t(v: int | None) -> str:
        return "" if v is None else str(v)
    return f"{t(s.start)}:{t(s.stop)}" + (f":{s.step}" if s.step is not None else "")


def key_text(key: tuple[Any, ...]) -> str:
    parts = ["None" if k is None else str(k) if isinstance(k, (int, list)) else _slice_text(k) for k in key]
    return ", ".join(parts) + ("," if len(parts) == 1 else "")


def infer_node(node: Node, ms: list[Meta], sizes: dict[str, int]) -> Meta:  # noqa: C901
    p = node.p
    op = node.op
    if op == "placeholder":
        dims = tuple((s, s) if isinstance(s, int) else
                     ((f"{p['name']}.{i}" if s is None else s),
                      sizes[f"{p['name']}.{i}" if s is None else s])
                     for i, s in enumerate(p["spec"]))
        lo, hi = DATA_RANGE[p["data"]]
        return Meta(dims, p["dtype"], lo, hi, 0.0, zeros=p["data"] == "zeros",
                    deps=frozenset([p["name"]]) if p["dtype"] in FLOATS else frozenset())
    if op == "constant":
        v = np.asarray(p["value"], dtype=p["dtype"])
        return Meta(tuple((s, s) for s in v.shape), p["dtype"],
                    float(v.min()) if v.size else 0.0, float(v.max()) if v.size else 0.0)
    if op in ("exp", "log", "sqrt", "tanh", "sigmoid", "sin", "softplus", "abs", "relu", "square",
              "negative"):
        out = _unary(op, ms[0], p)
        if op in ("abs", "relu", "sqrt", "log") and ms[0].zeros:
            raise Invalid("a kink at exact zeros")
        return out
    if op in ("add", "subtract", "multiply", "divide", "maximum", "minimum"):
        if op in ("maximum", "minimum") and (ms[0].zeros or ms[1].zeros):
            raise Invalid("a kink at exact zeros")
        return _binary(op, ms[0], ms[1])
    if op == "scalar":
        c = float(p["c"])
        cm = Meta((), ms[0].dtype, c, c)
        if not ms[0].is_float:
            raise Invalid("scalar arithmetic on a non-float")
        how = p["how"]
        if how == "mul" and c != 0 and math.log2(abs(c)).is_integer():
            return replace(ms[0], lo=min(ms[0].lo * c, ms[0].hi * c), hi=max(ms[0].lo * c, ms[0].hi * c),
                           err=ms[0].err * abs(c))
        name = {"add": "add", "sub": "subtract", "rsub": "subtract", "mul": "multiply",
                "div": "divide"}[how]
        a, b = (cm, ms[0]) if how == "rsub" else (ms[0], cm)
        return replace(_binary(name, a, b), dims=ms[0].dims, dtype=ms[0].dtype)
    if op == "greater":
        m = ms[0]
        if not m.exact:
            raise Invalid("a comparison of a rounded value")
        return Meta(m.dims, "bool", 0.0, 1.0)
    if op == "where":
        cond, a, b = ms
        if cond.dtype != "bool":
            raise Invalid("where needs a bool condition")
        out = _ew([cond, a, b], promote(a.dtype, b.dtype), min(a.lo, b.lo), max(a.hi, b.hi), max(a.err, b.err))
        return replace(out, err=max(a.err, b.err) + (UNIT.get(out.dtype, 0) * max(a.mag, b.mag)
                                                    if a.dtype != b.dtype else 0.0))
    if op in ("sum", "mean", "max", "min", "prod", "logsumexp"):
        return _reduce(op, ms[0], p)
    if op in ("softmax", "log_softmax"):
        m = ms[0]
        if not m.is_float:
            raise Invalid("softmax of a non-float")
        n = m.shape[p["axis"] % len(m.dims)] if m.dims else 1
        u = UNIT[m.dtype]
        if op == "softmax":
            return replace(m, lo=0.0, hi=1.0, err=2 * m.err + 8 * u, zeros=False)
        width = m.hi - m.lo + math.log(max(n, 1))
        return replace(m, lo=-width, hi=0.0, err=2 * m.err + 4 * u * (width + 1), zeros=False)
    if op == "getitem":
        return replace(ms[0], dims=_getitem_dims(ms[0], p["key"]))
    if op == "reshape":
        m = ms[0]
        shape = p["shape"]
        if any(not isinstance(k, int) for k in m.keys):
            if shape != (-1,):
                raise Invalid("only flattening reshapes of symbolic shapes")
            return replace(m, dims=(("*".join(map(str, m.keys)), m.size),))
        if -1 in shape:
            known = math.prod(s for s in shape if s != -1)
            if known == 0 or m.size % known:
                raise Invalid("bad reshape")
            shape = tuple(m.size // known if s == -1 else s for s in shape)
        if math.prod(shape) != m.size:
            raise Invalid("bad reshape")
        return replace(m, dims=tuple((s, s) for s in shape))
    if op == "transpose":
        m = ms[0]
        if sorted(p["axes"]) != list(range(len(m.dims))):
            raise Invalid("bad permutation")
        return replace(m, dims=tuple(m.dims[a] for a in p["axes"]))
    if op == "expand_dims":
        m = ms[0]
        a = p["axis"] % (len(m.dims) + 1)
        return replace(m, dims=m.dims[:a] + ((1, 1),) + m.dims[a:])
    if op == "squeeze":
        m = ms[0]
        a = p["axis"] % max(len(m.dims), 1)
        if not m.dims or m.dims[a][0] != 1:
            raise Invalid("squeeze of a non-1 axis")
        return replace(m, dims=m.dims[:a] + m.dims[a + 1:])
    if op == "broadcast_like":
        a, b = ms
        if broadcast(a.dims, b.dims) != b.dims:
            raise Invalid("cannot broadcast")
        return replace(a, dims=b.dims)
    if op in ("zeros_like", "ones_like", "full_like"):
        fill = {"zeros_like": 0.0, "ones_like": 1.0, "full_like": 2.0}[op]
        return Meta(ms[0].dims, p["dtype"], fill, fill)
    if op == "arange":
        m = ms[0]
        n = m.dims[p["axis"]]
        return Meta((n,), "int64", 0.0, max(n[1] - 1, 0))
    if op == "dim_value":
        m = ms[0]
        key, n = m.dims[p["axis"]]
        if isinstance(key, int):
            raise Invalid("a static size")
        return Meta((), "float64", n, n)
    if op == "concatenate":
        a, b = ms
        ax = p["axis"]
        if len(a.dims) != len(b.dims) or not a.dims or a.dtype != b.dtype:
            raise Invalid("concatenate needs equal ranks and dtypes")
        ax %= len(a.dims)
        for i, (x, y) in enumerate(zip(a.dims, b.dims)):
            if i != ax and x != y:
                raise Invalid("concatenate needs equal sizes off the axis")
        if not isinstance(a.dims[ax][0], int) or not isinstance(b.dims[ax][0], int):
            raise Invalid("concatenate along a symbolic axis")
        n = a.dims[ax][1] + b.dims[ax][1]
        dims = a.dims[:ax] + ((n, n),) + a.dims[ax + 1:]
        return Meta(dims, a.dtype, min(a.lo, b.lo), max(a.hi, b.hi), max(a.err, b.err),
                    a.nonfinite or b.nonfinite, a.zeros or b.zeros, a.deps | b.deps)
    if op in ("matmul", "inner"):
        a, b = ms
        if a.dtype != b.dtype:
            raise Invalid("matrix products of mixed dtypes")
        if not a.dims or not b.dims:
            raise Invalid("matrix products need rank >= 1")
        if op == "inner":
            if a.dims[-1] != b.dims[-1]:
                raise Invalid("inner needs equal last axes")
            k = a.dims[-1][1]
            dims = a.dims[:-1] + b.dims[:-1]
        else:
            ka = a.dims[-1]
            kb = b.dims[-2] if len(b.dims) >= 2 else b.dims[-1]
            if ka != kb:
                raise Invalid("matmul needs equal contracted axes")
            k = ka[1]
            ba = a.dims[:-2]
            bb = b.dims[:-2]
            batch = broadcast(ba, bb)
            if batch is None or (len(a.dims) > 2 and len(b.dims) > 2 and ba != bb):
                raise Invalid("matmul batches must match")
            dims = batch + (a.dims[-2:-1] if len(a.dims) >= 2 else ()) + (b.dims[-1:] if len(b.dims) >= 2 else ())
        u = UNIT.get(a.dtype, 0.0)
        bound = k * a.mag * b.mag
        if not a.is_float and bound > 2**20:
            raise Invalid("integer overflow risk")
        err = k * (a.mag * b.err + b.mag * a.err) + k * k * u * a.mag * b.mag
        return Meta(dims, a.dtype, -bound, bound, err, a.nonfinite or b.nonfinite,
                    False, a.deps | b.deps)
    if op == "cast":
        m = ms[0]
        d = p["dtype"]
        if d in FLOATS:
            if not m.is_float and m.mag > 2**24:
                raise Invalid("inexact int to float")
            err = m.err + (UNIT[d] * m.mag if m.dtype in FLOATS and UNIT[d] > UNIT[m.dtype] else 0.0)
            return replace(m, dtype=d, err=err)
        if m.is_float and not m.exact:
            raise Invalid("an int cast of a rounded value")
        # deps stay: derivatives through a cast to an integer are zero, and must be
        if d == "bool":
            return Meta(m.dims, d, 0.0, 1.0, deps=m.deps)
        return Meta(m.dims, d, float(math.trunc(m.lo)), float(math.trunc(m.hi)), deps=m.deps)
    raise AssertionError(f"unknown op {op}")


def infer(prog: Program) -> list[Meta]:
    """Each node's :class:`Meta`; raises :class:`Invalid` for a program that breaks a
    precondition (one the generator would not make)."""
    metas: list[Meta] = []
    for i, node in enumerate(prog.nodes):
        if any(a >= i for a in node.args):
            raise Invalid("arguments must come first")
        m = infer_node(node, [metas[a] for a in node.args], prog.sizes)
        if m.is_float and not m.nonfinite:
            _finite(m)
        metas.append(m)
    return metas


# -- data ------------------------------------------------------------------------------------
# value ranges by data kind: "grid" values are integers plus 0.2..0.8 (never near an
# integer, so casts to int give the same result after rounding), "zeros" holds exact zeros
DATA_RANGE = {"normal": (-2.0, 2.0), "positive": (0.5, 2.0), "grid": (-3.8, 3.8), "zeros": (-1.5, 1.5),
              "int": (-3.0, 3.0), "tangent": (-1.0, 1.0)}


def leaf_data(seed: int, name: str, kind: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """The data of placeholder ``name``: a function of the program's seed and the name only,
    so it stays the same while a failure is shrunk."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    v: np.ndarray
    if kind == "normal":
        v = rng.uniform(-2, 2, shape)
    elif kind == "positive":
        v = rng.uniform(0.5, 2, shape)
    elif kind == "grid":
        v = rng.integers(-3, 3, shape) + rng.uniform(0.2, 0.8, shape)
    elif kind == "zeros":
        v = rng.choice(np.array([0.0, 0.0, -1.25, 0.5, 1.5, -0.75]), shape)
    elif kind == "int":
        v = rng.integers(-3, 4, shape)
    elif kind == "tangent":
        v = rng.uniform(-1, 1, shape)
    else:
        raise AssertionError(kind)
    return np.asarray(v).astype(dtype)


def inputs(prog: Program, metas: list[Meta]) -> dict[str, np.ndarray]:
    """Placeholder name -> data, the jvp tangents (``d_<name>``) included."""
    data: dict[str, np.ndarray] = {}
    for node, m in zip(prog.nodes, metas):
        if node.op == "placeholder":
            p = node.p
            data[p["name"]] = leaf_data(prog.seed, p["name"], p["data"], m.shape, p["dtype"])
    for d in prog.derived:
        for w in d.wrt:
            if d.kind in ("jvp", "hvp"):
                src = data[w]
                data[f"d_{w}"] = leaf_data(prog.seed, f"d_{w}", "tangent", src.shape, str(src.dtype))
    return data


# -- printing ----------------------------------------------------------------------------------
def _dt(d: str, widen: bool) -> str:
    return "float64" if widen and d == "float32" else d


# Functions the NumPy form of a program calls that NumPy and SciPy lack (run before it, and
# printed into every reproducer).
NP_HELPERS = '''
def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) with NumPy's reduction semantics: an empty axis gives -inf."""
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0)
    s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    if not keepdims:
        s = np.squeeze(s, axis=tuple(range(x.ndim)) if axis is None else axis)
    return np.asarray(s).astype(x.dtype)
'''.strip()


def node_source(node: Node, args: list[str], lib: str, widen: bool = False) -> str:  # noqa: C901
    """``node`` as a Python expression in library ``lib`` ("sg", "np" or "T")."""
    p = node.p
    op = node.op
    m = lib
    if op == "placeholder":
        if lib == "sg":
            return f"sg.placeholder({p['name']!r}, {p['spec']!r}, {_dt(p['dtype'], widen)!r})"
        return f"data[{p['name']!r}]"
    if op == "constant":
        d = _dt(p["dtype"], widen)
        if lib == "sg":
            return f"sg.constant(np.array({p['value']!r}, dtype={d!r}))"
        if lib == "T":
            return f"T.array({p['value']!r}, {d!r})"
        return f"np.array({p['value']!r}, dtype={d!r})"
    a = args
    if op in ("exp", "log", "sqrt", "tanh", "sin", "abs", "square", "negative"):
        return f"{m}.{op}({a[0]})"
    if op in ("sigmoid", "softplus", "relu"):
        if lib == "np":
            return {"sigmoid": f"sp.special.expit({a[0]})",
                    "softplus": f"np.logaddexp(0.0, {a[0]})",
                    "relu": f"np.maximum({a[0]}, 0.0)"}[op]
        return f"{m}.{op}({a[0]})"
    if op in ("add", "subtract", "multiply", "divide", "maximum", "minimum"):
        return f"{m}.{op}({a[0]}, {a[1]})"
    if op == "scalar":
        c = repr(float(p["c"]))
        return {"add": f"({a[0]} + {c})", "sub": f"({a[0]} - {c})", "rsub": f"({c} - {a[0]})",
                "mul": f"({a[0]} * {c})", "div": f"({a[0]} / {c})"}[p["how"]]
    if op == "greater":
        return f"({a[0]} > {float(p['c'])!r})"
    if op == "where":
        return f"{m}.where({a[0]}, {a[1]}, {a[2]})"
    if op in ("sum", "mean", "max", "min", "prod", "logsumexp"):
        if op == "logsumexp" and lib == "np":  # SciPy's refuses empty arrays: NP_HELPERS has one
            return f"logsumexp({a[0]}, axis={p['axis']!r}, keepdims={p['keepdims']!r})"
        return f"{m}.{op}({a[0]}, axis={p['axis']!r}, keepdims={p['keepdims']!r})"
    if op in ("softmax", "log_softmax"):
        if lib == "np":  # SciPy's softmax refuses an empty axis; NumPy semantics give an empty result
            lse = f"logsumexp({a[0]}, axis={p['axis']!r}, keepdims=True)"
            return f"np.exp({a[0]} - {lse})" if op == "softmax" else f"({a[0]} - {lse})"
        return f"{m}.{op}({a[0]}, axis={p['axis']!r})"
    if op == "getitem":
        if lib == "T":
            return f"T.getitem({a[0]}, {p['key']!r})"
        return f"{a[0]}[{key_text(p['key'])}]"
    if op == "reshape":
        return f"{m}.reshape({a[0]}, {p['shape']!r})"
    if op == "transpose":
        return f"{m}.transpose({a[0]}, {p['axes']!r})"
    if op == "expand_dims":
        return f"{m}.expand_dims({a[0]}, {p['axis']!r})"
    if op == "squeeze":
        return f"{m}.squeeze({a[0]}, {p['axis']!r})"
    if op == "broadcast_like":
        return f"{m}.broadcast_to({a[0]}, {a[1]}.shape)"
    if op in ("zeros_like", "ones_like"):
        return f"{m}.{op}({a[0]}, dtype={_dt(p['dtype'], widen)!r})"
    if op == "full_like":
        d = _dt(p["dtype"], widen)
        if lib == "sg":
            return f"sg.full({a[0]}.shape, 2.0, {d!r})"
        return f"{m}.full({a[0]}.shape, 2.0, dtype={d!r})"
    if op == "arange":
        return f"{m}.arange({a[0]}.shape[{p['axis']}])"
    if op == "dim_value":
        if lib == "sg":
            return f"sg.as_tensor({a[0]}.shape[{p['axis']}], 'float64')"
        return f"{m}.asarray({a[0]}.shape[{p['axis']}], dtype='float64')"
    if op == "concatenate":
        return f"{m}.concatenate([{a[0]}, {a[1]}], axis={p['axis']})"
    if op == "matmul":
        return f"{m}.matmul({a[0]}, {a[1]})"
    if op == "inner":
        return f"{m}.inner({a[0]}, {a[1]})"
    if op == "cast":
        d = _dt(p["dtype"], widen)
        if lib == "sg":
            return f"sg.cast({a[0]}, {d!r})"
        if lib == "T":
            return f"T.cast({a[0]}, {d!r})"
        return f"{a[0]}.astype({d!r})"
    raise AssertionError(op)


REDUCERS = {
    # scalar functions of a derived output's target, in each library
    "sum": "{m}.sum({y})",
    "sumsin": "{m}.sum({m}.sin({y}))",
    "sumsq": "{m}.sum({y} * {y})",
}


def reducer_source(reducer: str, y: str, lib: str) -> str:
    return REDUCERS[reducer].format(m=lib, y=y)


def program_lines(prog: Program, lib: str, widen: bool = False) -> list[str]:
    """One assignment per node: ``v<i> = <expression>``."""
    return [f"v{i} = {node_source(n, [f'v{a}' for a in n.args], lib, widen)}"
            for i, n in enumerate(prog.nodes)]


def derived_sources(prog: Program) -> list[str]:
    """Each derived output as an ``sg`` expression over the ``v<i>`` names (grad and hvp of
    several placeholders give one expression per placeholder)."""
    out: list[str] = []
    for d in prog.derived:
        f = reducer_source(d.reducer, f"v{d.target}", "sg")
        for w in d.wrt:
            x = f"P[{w!r}]"
            if d.kind == "grad":
                out.append(f"sg.grad({f}, {x})")
            elif d.kind == "jvp":
                out.append(f"sg.jvp(v{d.target}, {x}, P['d_' + {w!r}])")
            elif d.kind == "hvp":
                out.append(f"sg.hvp({f}, {x}, P['d_' + {w!r}])")
            elif d.kind == "hessian":
                out.append(f"sg.hessian({f}, {x})")
            else:
                raise AssertionError(d.kind)
    return out


def derived_labels(prog: Program) -> list[tuple[Derived, str]]:
    return [(d, w) for d in prog.derived for w in d.wrt]


def tangent_placeholders(prog: Program, metas: list[Meta]) -> list[tuple[str, tuple[Any, ...], str]]:
    """(name, spec, dtype) of the tangent placeholders ``d_<name>``; a tangent shares its
    placeholder's symbolic sizes by naming them."""
    out = []
    seen = set()
    for d in prog.derived:
        if d.kind not in ("jvp", "hvp"):
            continue
        for w in d.wrt:
            if w in seen:
                continue
            seen.add(w)
            node, m = next((n, m) for n, m in zip(prog.nodes, metas)
                           if n.op == "placeholder" and n.p["name"] == w)
            spec = tuple(k if isinstance(k, int) else str(k) for k in m.keys)
            out.append((f"d_{w}", spec, node.p["dtype"]))
    return out


def compact(prog: Program) -> Program:
    """Drop the nodes no output, derived target or derived placeholder needs; renumber."""
    need: set[int] = set(prog.outputs) | {d.target for d in prog.derived}
    names = {w for d in prog.derived for w in d.wrt}
    need |= {i for i, n in enumerate(prog.nodes) if n.op == "placeholder" and n.p["name"] in names}
    for i in range(len(prog.nodes) - 1, -1, -1):
        if i in need:
            need.update(prog.nodes[i].args)
    keep = sorted(need)
    new = {old: k for k, old in enumerate(keep)}
    nodes = [Node(prog.nodes[i].op, tuple(new[a] for a in prog.nodes[i].args), prog.nodes[i].params)
             for i in keep]
    return prog.copy(nodes=nodes, outputs=[new[o] for o in prog.outputs],
                     derived=[Derived(d.kind, new[d.target], d.wrt, d.reducer) for d in prog.derived])


def features_of(prog: Program) -> set[str]:
    """The features of :data:`FEATURES` that ``prog`` uses."""
    try:
        metas = infer(prog)
    except Invalid:
        return set()
    out: set[str] = set()
    dtypes = {m.dtype for m in metas if m.is_float}
    if len(dtypes) > 1:
        out.add("mixed_dtypes")
    used_as_value = {a for n in prog.nodes if n.op not in ("zeros_like", "ones_like", "full_like",
                                                           "arange", "broadcast_like", "dim_value")
                     for a in n.args}
    used_as_value |= {n.args[0] for n in prog.nodes if n.op == "broadcast_like"}
    for i, n in enumerate(prog.nodes):
        p = n.p
        ms = [metas[a] for a in n.args]
        if n.op == "getitem":
            for k, (key, _size) in zip([k for k in p["key"] if k is not None], ms[0].dims):
                if isinstance(k, slice) and k.step is not None and k.step < 0:
                    out.add("neg_step_slice")
                if isinstance(k, slice) and not isinstance(key, int) and k != slice(None):
                    out.add("symbolic_slice")
        if n.op == "getitem" and any(isinstance(k, list) for k in p["key"]):
            out.add("gather")
        if len(ms) >= 2:
            for i1, x in enumerate(ms):
                for y in ms[i1 + 1:]:
                    if any(not isinstance(a[0], int) and not isinstance(b[0], int) and a[0] != b[0]
                           for a, b in zip(reversed(x.dims), reversed(y.dims))):
                        out.add("symbolic_meet")
        if n.op == "cast" and p["dtype"] not in FLOATS:
            out.add("int_cast")
        if n.op == "prod" and ms[0].zeros:
            out.add("prod_zeros")
        if n.op in ("zeros_like", "ones_like", "full_like", "arange", "broadcast_like"):
            src = n.args[-1]
            if prog.nodes[src].op == "placeholder" and src not in used_as_value:
                out.add("size_only")
        if n.op in ("inner", "matmul"):
            if ms[0].dims[-1][1] == 0:
                out.add("inner_zero")
            if ms[0].dtype == "int32":
                out.add("int_inner")
        if n.op in ("max", "min") and metas[i].size == 0 or (
                n.op in ("max", "min") and any(ms[0].shape[a] == 0 for a in
                                               _axes(p["axis"], len(ms[0].dims)))):
            out.add("empty_max")
        if n.op == "dim_value":
            out.add("dim_value")
            if prog.nodes[n.args[0]].op == "placeholder" and n.args[0] not in used_as_value:
                out.add("dim_value_size_only")
    if len(set(prog.outputs)) < len(prog.outputs) or any(
            prog.nodes[o].op == "getitem" and prog.nodes[o].args[0] in prog.outputs for o in prog.outputs):
        out.add("alias_outputs")
    for d in prog.derived:
        if d.kind == "jvp":
            out.add("jvp")
        if d.kind in ("hvp", "hessian"):
            out.add("hessian")
    return out
