"""The user-facing functions (NumPy names and semantics) that build graph nodes.

These functions do the user-level conveniences (Python scalars, dtype promotion, ``-1``
in reshape, negative axes, 1-D matmul, indexing) and emit primitive ops, so every pass
and backend sees a small, regular set of primitives.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

import numpy as np

from symgrad.errors import DTypeError, ShapeError, op_error
from symgrad.ir import shape as S
from symgrad.ir.dtypes import as_dtype, float_of, promote
from symgrad.ir.shape import Dim, Shape, Size, shape_str
from symgrad.ir.tensor import Tensor, constant
from symgrad.ops.base import OPS, normalize_axes

TensorLike = Any


def _op(name: str) -> Any:
    return OPS[name]


# -- conversion -----------------------------------------------------------------------------
def _is_scalar(x: Any) -> bool:
    return isinstance(x, (bool, int, float, np.bool_, np.integer, np.floating)) and not isinstance(
        x, Tensor
    )


def as_tensor(x: TensorLike, dtype: str | None = None) -> Tensor:
    """``x`` as a tensor: tensors pass through, arrays and scalars become constants."""
    if isinstance(x, Tensor):
        return x if dtype is None or x.dtype == dtype else cast(x, dtype)
    if isinstance(x, Dim):  # a symbolic size, read at call time; an int64 as a Python int
        return dim_value(x, dtype or "int64")
    if dtype is not None:
        return constant(np.asarray(x, dtype=dtype))
    if isinstance(x, bool):
        return constant(np.asarray(x))
    if isinstance(x, (int, np.integer)) and not isinstance(x, np.ndarray):
        return constant(np.asarray(x, dtype=np.int64))
    return constant(np.asarray(x))


def cast(x: TensorLike, dtype: Any) -> Tensor:
    """Convert ``x`` to ``dtype`` (NumPy's ``astype``)."""
    dtype = as_dtype(dtype)
    x = as_tensor(x)
    if x.dtype == dtype:
        return x
    return _op("cast")(x, dtype=dtype)


astype = cast


_promoted: dict[tuple[Any, ...], str] = {}


def _operands(*xs: TensorLike) -> list[Tensor]:
    """Promote operands to one dtype: tensors by NumPy's rules, Python scalars weakly.
    A symbolic size promotes as a Python int."""
    if any(isinstance(x, Dim) for x in xs):
        stand_ins = [0 if isinstance(x, Dim) else x for x in xs]
        common = _operands_slow(*stand_ins)[0].dtype
        return [as_tensor(x, common) for x in xs]
    if len(xs) == 2:
        a, b = xs
        if isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype == b.dtype:
            return [a, b]
        key = tuple(x.dtype if isinstance(x, Tensor) else type(x) for x in xs)
        dtype = _promoted.get(key)
        if dtype is not None and all(isinstance(x, (Tensor, float, int, bool)) for x in xs):
            return [as_tensor(x, dtype) for x in xs]
        out = _operands_slow(*xs)
        if all(isinstance(x, (Tensor, float, int, bool)) for x in xs):
            _promoted[key] = out[0].dtype
        return out
    return _operands_slow(*xs)


def _operands_slow(*xs: TensorLike) -> list[Tensor]:
    keys = [x.dtype if isinstance(x, Tensor) else x for x in xs]
    if not any(isinstance(x, Tensor) for x in xs):
        keys = [np.asarray(x).dtype.name for x in xs]
    dtype = promote(*[k if isinstance(k, str) else k for k in keys])
    return [as_tensor(x, dtype) for x in xs]


def _binary(name: str, a: TensorLike, b: TensorLike) -> Tensor:
    ta, tb = _operands(a, b)
    return _op(name)(ta, tb)


def _float_unary(name: str, x: TensorLike) -> Tensor:
    t = as_tensor(x)
    return _op(name)(cast(t, float_of(t.dtype)))


# -- elementwise ------------------------------------------------------------------------------
def add(a: TensorLike, b: TensorLike) -> Tensor:
    """a + b with broadcasting."""
    return _binary("add", a, b)


def sub(a: TensorLike, b: TensorLike) -> Tensor:
    """a - b with broadcasting."""
    return _binary("sub", a, b)


subtract = sub


def mul(a: TensorLike, b: TensorLike) -> Tensor:
    """a * b with broadcasting."""
    return _binary("mul", a, b)


multiply = mul


def div(a: TensorLike, b: TensorLike) -> Tensor:
    """True division a / b (integers are divided as float64, like NumPy)."""
    ta, tb = _operands(a, b)
    dtype = float_of(ta.dtype)
    return _op("div")(cast(ta, dtype), cast(tb, dtype))


divide = true_divide = div


def pow(a: TensorLike, b: TensorLike) -> Tensor:  # noqa: A001 - NumPy's name
    """a ** b. ``x ** 2`` is built as ``x * x``."""
    if isinstance(b, (int, np.integer)) and not isinstance(b, bool) and isinstance(a, Tensor):
        if b == 1:
            return a
        if b == 2:
            return mul(a, a)
    ta, tb = _operands(a, b)
    dtype = "float64" if ta.dtype == "bool" else ta.dtype  # int ** int stays int, as in NumPy
    return _op("pow")(cast(ta, dtype), cast(tb, dtype))


power = pow


def neg(x: TensorLike) -> Tensor:
    """-x."""
    return _op("neg")(as_tensor(x))


negative = neg


def maximum(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise max; on ties the gradient is split evenly."""
    return _binary("maximum", a, b)


def minimum(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise min; on ties the gradient is split evenly."""
    return _binary("minimum", a, b)


def less(a: TensorLike, b: TensorLike) -> Tensor:
    return _binary("less", a, b)


def less_equal(a: TensorLike, b: TensorLike) -> Tensor:
    return _binary("less_equal", a, b)


def greater(a: TensorLike, b: TensorLike) -> Tensor:
    return _binary("greater", a, b)


def greater_equal(a: TensorLike, b: TensorLike) -> Tensor:
    return _binary("greater_equal", a, b)


def equal(a: TensorLike, b: TensorLike) -> Tensor:
    """Elementwise ``a == b`` (on tensors ``==`` is structural identity)."""
    return _binary("equal", a, b)


def not_equal(a: TensorLike, b: TensorLike) -> Tensor:
    return _binary("not_equal", a, b)


def logical_and(a: TensorLike, b: TensorLike) -> Tensor:
    return _op("logical_and")(as_tensor(a, "bool"), as_tensor(b, "bool"))


def logical_or(a: TensorLike, b: TensorLike) -> Tensor:
    return _op("logical_or")(as_tensor(a, "bool"), as_tensor(b, "bool"))


def logical_not(a: TensorLike) -> Tensor:
    return _op("logical_not")(as_tensor(a, "bool"))


def where(cond: TensorLike, a: TensorLike, b: TensorLike) -> Tensor:
    """``a`` where ``cond`` else ``b``; the gradient reaches only the selected branch."""
    c = as_tensor(cond)
    if c.dtype != "bool":
        c = not_equal(c, 0)
    ta, tb = _operands(a, b)
    return _op("where")(c, ta, tb)


def clip(x: TensorLike, lo: TensorLike | None, hi: TensorLike | None) -> Tensor:
    """Limit values to [lo, hi]; the gradient is 1 inside, 0 outside, 1/2 at the bounds."""
    out = as_tensor(x)
    if lo is not None:
        out = maximum(out, lo)
    if hi is not None:
        out = minimum(out, hi)
    return out


def exp(x: TensorLike) -> Tensor:
    return _float_unary("exp", x)


def log(x: TensorLike) -> Tensor:
    return _float_unary("log", x)


def log1p(x: TensorLike) -> Tensor:
    return _float_unary("log1p", x)


def expm1(x: TensorLike) -> Tensor:
    return _float_unary("expm1", x)


def sqrt(x: TensorLike) -> Tensor:
    return _float_unary("sqrt", x)


def sin(x: TensorLike) -> Tensor:
    return _float_unary("sin", x)


def cos(x: TensorLike) -> Tensor:
    return _float_unary("cos", x)


def tanh(x: TensorLike) -> Tensor:
    return _float_unary("tanh", x)


def erf(x: TensorLike) -> Tensor:
    return _float_unary("erf", x)


def sigmoid(x: TensorLike) -> Tensor:
    return _float_unary("sigmoid", x)


def softplus(x: TensorLike) -> Tensor:
    return _float_unary("softplus", x)


def _rounding(name: str, x: TensorLike) -> Tensor:
    t = as_tensor(x)
    if t.dtype in ("int32", "int64"):
        return t  # NumPy 2 keeps integers: rounding them is the identity
    return _float_unary(name, t)


def floor(x: TensorLike) -> Tensor:
    return _rounding("floor", x)


def ceil(x: TensorLike) -> Tensor:
    return _rounding("ceil", x)


def round(x: TensorLike) -> Tensor:  # noqa: A001 - NumPy's name
    return _rounding("round", x)


def abs(x: TensorLike) -> Tensor:  # noqa: A001 - NumPy's name
    return _op("abs")(as_tensor(x))


absolute = abs


def sign(x: TensorLike) -> Tensor:
    return _op("sign")(as_tensor(x))


def relu(x: TensorLike) -> Tensor:
    """max(x, 0) with gradient 0 at x = 0."""
    return _op("relu")(as_tensor(x))


def square(x: TensorLike) -> Tensor:
    t = as_tensor(x)
    return mul(t, t)


def reciprocal(x: TensorLike) -> Tensor:
    return div(1.0, x)


# -- sizes and fills -----------------------------------------------------------------------------
def dim_value(size: Size, dtype: str = "float64") -> Tensor:
    """A scalar tensor holding ``size`` (symbolic sizes are read at call time)."""
    dtype = as_dtype(dtype)
    if isinstance(size, (int, np.integer)) and not isinstance(size, (bool, np.bool_)):
        return constant(np.asarray(size, dtype=dtype))
    if not isinstance(size, Dim):
        raise op_error(DTypeError, "dim", f"expected a size (an int or a symbolic size such as "
                       f"x.shape[0]), got {size!r}")
    return _op("dim")(size=size, dtype=dtype)


def arange(size: Size) -> Tensor:
    """0, 1, ..., size - 1 as int64 (``size`` may be symbolic)."""
    return _op("arange")(size=size)


def eye(n: Size, dtype: str = "float32") -> Tensor:
    """The n x n identity matrix (``n`` may be symbolic)."""
    return one_hot(arange(n), n, dtype) if isinstance(n, int) else cast(
        equal(reshape(arange(n), (n, 1)), reshape(arange(n), (1, n))), dtype)


def full(shape: Shape, value: Any, dtype: str = "float32") -> Tensor:
    """A tensor of ``shape`` filled with ``value`` (a broadcast scalar constant)."""
    return broadcast_to(constant(np.asarray(value, dtype=dtype)), tuple(shape))


def zeros(shape: Shape, dtype: str = "float32") -> Tensor:
    return full(shape, 0, dtype)


def ones(shape: Shape, dtype: str = "float32") -> Tensor:
    return full(shape, 1, dtype)


def zeros_like(x: Tensor, dtype: str | None = None) -> Tensor:
    return full(x.shape, 0, dtype or x.dtype)


def ones_like(x: Tensor, dtype: str | None = None) -> Tensor:
    return full(x.shape, 1, dtype or x.dtype)


# -- reductions ---------------------------------------------------------------------------------
def _reduce(name: str, x: TensorLike, axis: Any, keepdims: bool) -> Tensor:
    t = as_tensor(x)
    axes = normalize_axes(name, axis, t.ndim, t.shape)
    return _op(name)(t, axes=axes, keepdims=bool(keepdims))


def sum(x: TensorLike, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Sum over ``axis`` (all axes by default). Integer and bool sums are int64."""
    return _reduce("sum", x, axis, keepdims)


def mean(x: TensorLike, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Mean over ``axis``: the sum divided by the (possibly symbolic) count."""
    t = as_tensor(x)
    t = cast(t, float_of(t.dtype))
    axes = normalize_axes("mean", axis, t.ndim, t.shape)
    count = S.prod([t.shape[a] for a in axes])
    return div(sum(t, axes, keepdims), dim_value(count, t.dtype))


def var(x: TensorLike, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    """Variance over ``axis`` (``ddof`` as in NumPy)."""
    t = as_tensor(x)
    t = cast(t, float_of(t.dtype))
    axes = normalize_axes("var", axis, t.ndim, t.shape)
    centered = sub(t, mean(t, axes, keepdims=True))
    count = S.sub(S.prod([t.shape[a] for a in axes]), ddof)
    return div(sum(mul(centered, centered), axes, keepdims), dim_value(count, t.dtype))


def std(x: TensorLike, axis: Any = None, keepdims: bool = False, ddof: int = 0) -> Tensor:
    return sqrt(var(x, axis, keepdims, ddof))


def max(x: TensorLike, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Max over ``axis``; tied maxima share the gradient evenly."""
    return _reduce("max", x, axis, keepdims)


amax = max


def min(x: TensorLike, axis: Any = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """Min over ``axis``; tied minima share the gradient evenly."""
    return _reduce("min", x, axis, keepdims)


amin = min


def prod(x: TensorLike, axis: Any = None, keepdims: bool = False) -> Tensor:
    """Product over ``axis``; the gradient is exact also where entries are zero."""
    return _reduce("prod", x, axis, keepdims)


def _arg(name: str, x: TensorLike, axis: int | None, keepdims: bool) -> Tensor:
    t = as_tensor(x)
    if axis is None:  # over the flattened tensor; keepdims keeps every axis, as size 1
        flat = _op(name)(reshape(t, (-1,)), axes=(0,), keepdims=False)
        return reshape(flat, (1,) * t.ndim) if keepdims else flat
    (ax,) = normalize_axes(name, axis, t.ndim, t.shape)
    return _op(name)(t, axes=(ax,), keepdims=bool(keepdims))


def argmax(x: TensorLike, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """Index of the first maximum (int64). Not differentiable."""
    return _arg("argmax", x, axis, keepdims)


def argmin(x: TensorLike, axis: int | None = None, keepdims: bool = False) -> Tensor:
    """Index of the first minimum (int64). Not differentiable."""
    return _arg("argmin", x, axis, keepdims)


def logsumexp(x: TensorLike, axis: Any = None, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) computed without overflow."""
    t = as_tensor(x)
    t = cast(t, float_of(t.dtype))
    axes = normalize_axes("logsumexp", axis, t.ndim, t.shape)
    return _op("logsumexp")(t, axes=axes, keepdims=bool(keepdims))


def softmax(x: TensorLike, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along ``axis``, computed without overflow."""
    t = as_tensor(x)
    t = cast(t, float_of(t.dtype))
    (ax,) = normalize_axes("softmax", axis, t.ndim, t.shape)
    return _op("softmax")(t, axis=ax)


def log_softmax(x: TensorLike, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along ``axis``."""
    t = as_tensor(x)
    t = cast(t, float_of(t.dtype))
    (ax,) = normalize_axes("log_softmax", axis, t.ndim, t.shape)
    return _op("log_softmax")(t, axis=ax)


# -- shapes ---------------------------------------------------------------------------------------
def reshape(x: TensorLike, shape: Any) -> Tensor:
    """Reshape; one entry may be -1 (inferred). Sizes may be symbolic."""
    t = as_tensor(x)
    if isinstance(shape, (int, np.integer, Dim)):
        shape = (shape,)
    target = list(shape)
    holes = [i for i, s in enumerate(target) if isinstance(s, (int, np.integer)) and s == -1]
    if len(holes) > 1:
        raise op_error(ShapeError, "reshape", f"only one -1 allowed in {tuple(shape)}",
                       shape_str(t.shape))
    for s in target:
        if not isinstance(s, (int, np.integer, Dim)) or (isinstance(s, (int, np.integer)) and s < -1):
            raise op_error(ShapeError, "reshape", f"bad size {s!r} in {tuple(shape)}",
                           shape_str(t.shape))
    target = [int(s) if isinstance(s, (int, np.integer)) else s for s in target]
    if holes:
        known = S.prod([s for i, s in enumerate(target) if i != holes[0]])
        inferred = S.exact_div(t.size, known)
        if inferred is None:
            raise op_error(
                ShapeError, "reshape",
                f"cannot infer -1: {t.size} elements are not a multiple of {known}",
                shape_str(t.shape),
            )
        target[holes[0]] = inferred
    new = tuple(target)
    if new == t.shape:
        return t
    return _op("reshape")(t, shape=new)


def transpose(x: TensorLike, axes: Sequence[int] | None = None) -> Tensor:
    """Permute axes (reverse them by default)."""
    t = as_tensor(x)
    if axes is None:
        perm = tuple(range(t.ndim))[::-1]
    else:  # negative axes count from the end; anything out of range is not a permutation
        perm = tuple(int(a) + t.ndim if -t.ndim <= int(a) < 0 else int(a) for a in axes)
    if sorted(perm) != list(range(t.ndim)):
        raise op_error(ShapeError, "transpose", f"{tuple(axes or ())} is not a permutation",
                       shape_str(t.shape))
    if perm == tuple(range(t.ndim)):
        return t
    return _op("transpose")(t, perm=perm)


def permute_dims(x: TensorLike, axes: Sequence[int]) -> Tensor:
    return transpose(x, axes)


def swapaxes(x: TensorLike, a: int, b: int) -> Tensor:
    t = as_tensor(x)
    (a,), (b,) = (normalize_axes("swapaxes", v, t.ndim, t.shape) for v in (a, b))
    perm = list(range(t.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return transpose(t, perm)


def moveaxis(x: TensorLike, source: int, destination: int) -> Tensor:
    t = as_tensor(x)
    (source,), (destination,) = (normalize_axes("moveaxis", v, t.ndim, t.shape)
                                 for v in (source, destination))
    perm = list(range(t.ndim))
    src = perm.pop(source)
    perm.insert(destination, src)
    return transpose(t, perm)


def broadcast_to(x: TensorLike, shape: Any) -> Tensor:
    """Broadcast to ``shape`` (NumPy rules)."""
    t = as_tensor(x)
    if isinstance(shape, (int, np.integer, Dim)):
        shape = (shape,)
    for s in shape:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer, Dim)) or (
                isinstance(s, (int, np.integer)) and s < 0):
            raise op_error(ShapeError, "broadcast_to", f"bad size {s!r} in {tuple(shape)!r} "
                           "(sizes are ints or symbolic sizes such as x.shape[0])",
                           shape_str(t.shape))
    target = tuple(int(s) if isinstance(s, (int, np.integer)) else s for s in shape)
    if target == t.shape:
        return t
    return _op("broadcast_to")(t, shape=target)


def expand_dims(x: TensorLike, axis: int | Sequence[int]) -> Tensor:
    t = as_tensor(x)
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    ndim = t.ndim + len(axes)
    norm = normalize_axes("expand_dims", axes, ndim, t.shape)
    shape = list(t.shape)
    for a in norm:
        shape.insert(a, 1)
    return reshape(t, tuple(shape))


def squeeze(x: TensorLike, axis: int | Sequence[int] | None = None) -> Tensor:
    t = as_tensor(x)
    if axis is None:
        axes = tuple(i for i, s in enumerate(t.shape) if s == 1)
    else:
        axes = normalize_axes("squeeze", axis, t.ndim, t.shape)
        for a in axes:
            if t.shape[a] != 1:
                raise op_error(ShapeError, "squeeze", f"axis {a} has size {t.shape[a]}, not 1",
                               shape_str(t.shape))
    return reshape(t, tuple(s for i, s in enumerate(t.shape) if i not in axes))


def flatten(x: TensorLike, start_axis: int = 0) -> Tensor:
    """Collapse the axes from ``start_axis`` on into one."""
    t = as_tensor(x)
    start = start_axis % builtins.max(t.ndim, 1)
    return reshape(t, (*t.shape[:start], S.prod(t.shape[start:])))


def ravel(x: TensorLike) -> Tensor:
    return reshape(x, (-1,))


def concatenate(xs: Sequence[TensorLike], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis."""
    ts = _operands(*xs)
    if not ts:
        raise op_error(ShapeError, "concatenate", "needs at least one tensor")
    (ax,) = normalize_axes("concatenate", axis, ts[0].ndim, ts[0].shape)
    if len(ts) == 1:
        return ts[0]
    return _op("concatenate")(*ts, axis=ax)


def stack(xs: Sequence[TensorLike], axis: int = 0) -> Tensor:
    """Join tensors along a new axis."""
    ts = _operands(*xs)
    if not ts:
        raise op_error(ShapeError, "stack", "needs at least one tensor")
    for t in ts[1:]:
        if t.ndim != ts[0].ndim or any(isinstance(p, int) and isinstance(q, int) and p != q
                                       for p, q in zip(t.shape, ts[0].shape)):
            raise op_error(ShapeError, "stack", "all operands must have the same shape",
                           ", ".join(shape_str(u.shape) for u in ts))
    (ax,) = normalize_axes("stack", axis, ts[0].ndim + 1, ts[0].shape)
    return concatenate([expand_dims(t, ax) for t in ts], ax)


def sum_to(x: Tensor, shape: Shape) -> Tensor:
    """Sum ``x`` over the axes along which ``shape`` was broadcast to ``x.shape``."""
    if x.shape == tuple(shape):
        return x
    lead = x.ndim - len(shape)
    if lead < 0:
        raise op_error(ShapeError, "sum_to", f"cannot sum {shape_str(x.shape)} to {shape_str(shape)}")
    axes = list(range(lead)) + [
        lead + i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1
    ]
    out = sum(x, tuple(axes), keepdims=True) if axes else x
    return reshape(out, tuple(shape))


# -- linear algebra -----------------------------------------------------------------------------
def matmul(a: TensorLike, b: TensorLike) -> Tensor:
    """Matrix product with NumPy's rules (1-D operands, broadcast batch axes)."""
    ta, tb = _operands(a, b)
    if ta.ndim == 0 or tb.ndim == 0:
        raise op_error(ShapeError, "matmul", "operands must have at least one axis",
                       f"{shape_str(ta.shape)}, {shape_str(tb.shape)}")
    ka, kb = ta.shape[-1], tb.shape[0 if tb.ndim == 1 else -2]
    if isinstance(ka, int) and isinstance(kb, int) and ka != kb:  # report the user's shapes
        raise op_error(ShapeError, "matmul", f"contracted sizes differ: {ka} (last axis of a) vs "
                       f"{kb} (axis {0 if tb.ndim == 1 else -2} of b)",
                       f"{shape_str(ta.shape)}, {shape_str(tb.shape)}")
    squeeze_a = ta.ndim == 1
    squeeze_b = tb.ndim == 1
    if squeeze_a:
        ta = reshape(ta, (1, ta.shape[0]))
    if squeeze_b:
        tb = reshape(tb, (tb.shape[0], 1))
    out = _op("matmul")(ta, tb)
    if squeeze_a or squeeze_b:
        shape = list(out.shape)
        if squeeze_b:
            shape.pop(-1)
        if squeeze_a:
            shape.pop(-2 if not squeeze_b else -1)
        out = reshape(out, tuple(shape))
    return out


def dot(a: TensorLike, b: TensorLike) -> Tensor:
    """NumPy's ``dot``: scalars multiply, otherwise sum over a's last and b's
    second-to-last axis."""
    ta, tb = _operands(a, b)
    if ta.ndim == 0 or tb.ndim == 0:
        return mul(ta, tb)
    if tb.ndim <= 2:
        return matmul(ta, tb)
    ka, kb = ta.shape[-1], tb.shape[-2]
    if isinstance(ka, int) and isinstance(kb, int) and ka != kb:
        raise op_error(ShapeError, "dot", f"contracted sizes differ: {ka} (last axis of a) vs "
                       f"{kb} (axis -2 of b)", f"{shape_str(ta.shape)}, {shape_str(tb.shape)}")
    # a[..., k] . b[..., k, n] -> a.shape[:-1] + b.shape[:-2] + b.shape[-1:]
    bt = moveaxis(tb, -2, 0)
    rest = bt.shape[1:]
    out = matmul(reshape(ta, (S.prod(ta.shape[:-1]), ta.shape[-1])),
                 reshape(bt, (bt.shape[0], S.prod(rest))))
    return reshape(out, (*ta.shape[:-1], *rest))


def outer(a: TensorLike, b: TensorLike) -> Tensor:
    ta, tb = as_tensor(a), as_tensor(b)
    return mul(reshape(ta, (-1, 1)), reshape(tb, (1, -1)))


def inner(a: TensorLike, b: TensorLike) -> Tensor:
    """NumPy's ``inner``: sum over the last axes; shape a.shape[:-1] + b.shape[:-1]."""
    ta, tb = _operands(a, b)
    if ta.ndim == 0 or tb.ndim == 0:
        return mul(ta, tb)
    if ta.ndim == 1 and tb.ndim == 1:
        prods = mul(ta, tb)
        total = sum(prods, -1)  # NumPy's inner keeps the operands' dtype, as matmul does
        return total if total.dtype == prods.dtype else cast(total, prods.dtype)
    k = tb.shape[-1]
    out = matmul(reshape(ta, (S.prod(ta.shape[:-1]), ta.shape[-1])),
                 transpose(reshape(tb, (S.prod(tb.shape[:-1]), k))))
    return reshape(out, (*ta.shape[:-1], *tb.shape[:-1]))


def tensordot_last(a: TensorLike, b: TensorLike) -> Tensor:
    return sum(mul(a, b))


# -- indexing -------------------------------------------------------------------------------------
def take(x: TensorLike, indices: TensorLike, axis: int | None = None) -> Tensor:
    """Gather along ``axis`` with an integer array (NumPy's ``take``, negative indices wrap;
    an index out of range raises at call time)."""
    t = as_tensor(x)
    idx = as_tensor(indices)
    if idx.dtype not in ("int32", "int64"):
        raise op_error(DTypeError, "take", f"indices must be integers, got {idx.dtype}",
                       f"{shape_str(t.shape)}, {shape_str(idx.shape)}")
    if axis is None:
        t = reshape(t, (-1,))
        axis = 0
    (ax,) = normalize_axes("take", axis, t.ndim, t.shape)
    return _op("take")(t, cast(idx, "int64"), axis=ax)


def one_hot(labels: TensorLike, depth: int, dtype: Any = "float32") -> Tensor:
    """``labels[..., None] == arange(depth)`` as ``dtype``; a label outside
    ``[0, depth)`` raises at call time."""
    lab = as_tensor(labels)
    if lab.dtype not in ("int32", "int64"):
        raise op_error(DTypeError, "one_hot", f"labels must be integers, got {lab.dtype}",
                       shape_str(lab.shape))
    return _op("one_hot")(cast(lab, "int64"), depth=int(depth), dtype=as_dtype(dtype))


def _norm_index(op: str, k: int, n: Size, shape: str | None = None
                ) -> tuple[Size, list[tuple[str, Size, Size, str]]]:
    if isinstance(n, int):
        if not -n <= k < n:
            raise op_error(ShapeError, op, f"index {k} is out of bounds for size {n}", shape)
        return (k % n if n else 0), []
    if k >= 0:
        return k, [("<=", k + 1, n, f"{op}: index {k} needs size >= {k + 1}")]
    return S.add(n, k), [("<=", -k, n, f"{op}: index {k} needs size >= {-k}")]


def _norm_slice(op: str, s: slice, n: Size, shape: str | None = None
                ) -> tuple[tuple[Size, Size, int], Size, list[Any]]:
    for v in (s.start, s.stop, s.step):
        if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool)):
            raise op_error(DTypeError, op, f"slice bounds must be integers or None, got {v!r} "
                           "(count from the end with negative bounds instead)", shape)
    step = 1 if s.step is None else int(s.step)
    if step == 0:
        raise op_error(ShapeError, op, "slice step cannot be zero", shape)
    if isinstance(n, int):
        lo, hi, st = s.indices(n)
        return (lo, hi, st), len(range(lo, hi, st)), []
    if step < 0:
        raise op_error(ShapeError, op, f"a negative step on an axis of symbolic size {n}", shape)
    checks: list[Any] = []

    def bound(v: int | None, default: Size) -> Size:
        if v is None:
            return default
        if v >= 0:
            checks.append(("<=", v, n, f"{op}: slice bound {v} needs size >= {v}"))
            return int(v)
        checks.append(("<=", -v, n, f"{op}: slice bound {v} needs size >= {-v}"))
        return S.add(n, int(v))

    start: Size = bound(s.start, 0)
    stop: Size = bound(s.stop, n)
    length = S.floordiv(S.add(S.sub(stop, start), step - 1), step)
    return (start, stop, step), length, checks


def getitem(x: Tensor, key: Any) -> Tensor:
    """Basic indexing (ints, slices, ``None``, ``...``) and one integer-array index."""
    if not isinstance(key, tuple):
        key = (key,)
    n_real = builtins.sum(1 for k in key if k is not None and k is not Ellipsis)
    if builtins.sum(1 for k in key if k is Ellipsis) > 1:
        raise op_error(ShapeError, "getitem", "at most one ... in an index")
    expanded: list[Any] = []
    for k in key:
        if k is Ellipsis:
            expanded += [slice(None)] * (x.ndim - n_real)
        else:
            expanded.append(k)
    if builtins.sum(1 for k in expanded if k is not None) > x.ndim:
        raise op_error(ShapeError, "getitem", f"too many indices for rank {x.ndim}",
                       shape_str(x.shape))
    while builtins.sum(1 for k in expanded if k is not None) < x.ndim:
        expanded.append(slice(None))

    arrays = [(i, k) for i, k in enumerate(expanded) if isinstance(k, (Tensor, np.ndarray, list))]
    if arrays:
        if len(arrays) > 1:
            raise op_error(ShapeError, "getitem", "only one integer-array index is supported; "
                           "use sg.take for more")
        pos, arr = arrays[0]
        idx = as_tensor(np.asarray(arr) if isinstance(arr, list) else arr)
        if idx.dtype == "bool":
            raise op_error(ShapeError, "getitem", "boolean masks give data-dependent shapes; "
                           "use sg.where instead", shape_str(x.shape))
        # the indexed axis's place after the basic indexing: slices and None make axes, ints don't
        axis = builtins.sum(1 for k in expanded[:pos] if k is None or isinstance(k, slice))
        # NumPy: integers next to the array index are advanced indices too; when they are
        # separated from it by a slice or None, the array's axes go first
        advanced = [i for i, k in enumerate(expanded) if i == pos or (
            isinstance(k, (int, np.integer)) and not isinstance(k, bool))]
        expanded[pos] = slice(None)
        out = take(getitem(x, tuple(expanded)), idx, axis)
        if advanced[-1] - advanced[0] + 1 != len(advanced) and axis > 0:
            moved = list(range(axis, axis + idx.ndim))
            out = transpose(out, moved + [a for a in range(out.ndim) if a not in moved])
        return out

    index: list[tuple[Size, Size, int]] = []
    out_shape: list[Size] = []
    checks: list[Any] = []
    axis = 0
    for k in expanded:
        if k is None:
            out_shape.append(1)
            continue
        n = x.shape[axis]
        if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            start, ch = _norm_index("getitem", int(k), n, shape_str(x.shape))
            checks += ch
            index.append((start, S.add(start, 1), 1))
        elif isinstance(k, slice):
            triple, length, ch = _norm_slice("getitem", k, n, shape_str(x.shape))
            checks += ch
            index.append(triple)
            out_shape.append(length)
        else:
            raise op_error(ShapeError, "getitem", f"unsupported index {k!r}", shape_str(x.shape))
        axis += 1
    full_slice = all(
        start == 0 and stop == n and step == 1 for (start, stop, step), n in zip(index, x.shape)
    )
    out = x
    if not full_slice:
        out = _op("slice")(x, index=tuple(index), checks=tuple(checks))
    return reshape(out, tuple(out_shape))
