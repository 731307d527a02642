"""Elementwise ops: sources, casts, math, comparisons and ``where``.

Operands of an elementwise op share one dtype (the API inserts ``cast`` nodes after
NumPy's promotion rules) and broadcast against each other. Each op's pullback returns
the cotangent in the broadcast shape; the autodiff pass sums it back to each input's
shape. Conventions at singular points are stated in each docstring and tested.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.special
import sympy as sp

import symgrad.ops.api as F
from symgrad.errors import DTypeError, op_error
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.tensor import Tensor
from symgrad.ops.base import Info, Op, broadcast_shapes, register, shapes_of

NUMERIC = frozenset({"float32", "float64", "int32", "int64"})
ALL = NUMERIC | {"bool"}


# -- sources ----------------------------------------------------------------------------
def _placeholder_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    return Info(attrs["shape"], attrs["dtype"])


register(
    Op(
        "placeholder",
        "source",
        _placeholder_infer,
        None,
        doc="A named input given at call time.",
    )
)


def _constant_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    arr = attrs["value"].array
    return Info(tuple(int(s) for s in arr.shape), arr.dtype.name)


register(
    Op(
        "constant",
        "source",
        _constant_infer,
        lambda *, value: value.array,
        doc="A constant array (held by value, hashed by its bytes).",
    )
)


def _dim_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    return Info((), attrs["dtype"])


register(
    Op(
        "dim",
        "source",
        _dim_infer,
        None,
        doc="The run-time value of a symbolic size, as a scalar (e.g. the batch size in a mean).",
    )
)


def _arange_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    return Info((attrs["size"],), "int64")


register(
    Op(
        "arange",
        "source",
        _arange_infer,
        None,
        nondiff="integer result",
        doc="0, 1, ..., size - 1 as int64 (size may be symbolic).",
    )
)


# -- cast -------------------------------------------------------------------------------
def _cast_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    return Info(inputs[0].shape, attrs["dtype"])


def _cast_pullback(node: Tensor, g: Tensor) -> list[Tensor | None]:
    (x,) = node.inputs
    if x.dtype not in FLOATS or node.dtype not in FLOATS:
        return [None]
    return [F.cast(g, x.dtype)]


def _cast_pushforward(node: Tensor, t: list[Tensor | None]) -> Tensor | None:
    (x,) = node.inputs
    if t[0] is None or x.dtype not in FLOATS or node.dtype not in FLOATS:
        return None  # an integer or bool value has no tangent
    return F.cast(t[0], node.dtype)


register(
    Op(
        "cast",
        "elementwise",
        _cast_infer,
        lambda x, *, dtype: np.asarray(x).astype(dtype),
        pullback=_cast_pullback,
        pushforward=_cast_pushforward,
        scalar=lambda x: x,
        doc="Convert to ``dtype``. d/dx = 1 between float dtypes; zero from or to ints/bool.",
        numpy_expr="{0}.astype({dtype})",
    )
)


# -- declaration helpers ------------------------------------------------------------------
def _ew_infer(name: str, accepts: frozenset[str], out: str | None) -> Callable[..., Info]:
    def infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
        first = inputs[0]
        if first.dtype in accepts and all(
            t.shape == first.shape and t.dtype == first.dtype for t in inputs
        ):
            return Info(first.shape, out or first.dtype)
        dtypes = {t.dtype for t in inputs}
        if len(dtypes) != 1:
            raise op_error(
                DTypeError, name, f"operands have different dtypes {sorted(dtypes)}",
                shapes_of(inputs),
            )
        (dtype,) = dtypes
        if dtype not in accepts:
            raise op_error(
                DTypeError, name, f"dtype {dtype} is not accepted (takes {sorted(accepts)})",
                shapes_of(inputs),
            )
        shape, checks = broadcast_shapes(name, [t.shape for t in inputs])
        return Info(shape, out or dtype, checks)

    return infer


def elementwise(
    name: str,
    nin: int,
    reference: Callable[..., Any],
    scalar: Callable[..., Any] | None,
    pullback: Callable[..., list[Tensor | None]] | None,
    doc: str,
    *,
    accepts: frozenset[str] = FLOATS,
    out: str | None = None,
    nondiff: str | None = None,
    numpy_expr: str | None = None,
    pushforward: Callable[..., Tensor | None] | None = None,
) -> Op:
    """Declare an elementwise op.

    ``pullback(g, *inputs, y)`` returns one cotangent per input (broadcast shape).
    Without an explicit pushforward, forward mode reuses the pullback: an elementwise
    op's Jacobian is diagonal and its pullback is linear in ``g``, so the tangent of the
    output is the sum over inputs of the pullback applied to that input's tangent, each
    broadcast to the output's shape (a pullback may return ``g`` itself, in the shape of
    the operand's tangent).
    """

    pb: Callable[[Tensor, Tensor], list[Tensor | None]] | None = None
    pf: Callable[[Tensor, list[Tensor | None]], Tensor | None] | None = None
    if pullback is not None:
        rule = pullback

        def pb(node: Tensor, g: Tensor) -> list[Tensor | None]:
            return rule(g, *node.inputs, node)

        def pf(node: Tensor, tangents: list[Tensor | None]) -> Tensor | None:
            # A pullback may hand back its cotangent unbroadcast (add's is ``[g, g]``):
            # a tangent of a broadcast operand must be broadcast to the output's shape.
            total: Tensor | None = None
            for i, t in enumerate(tangents):
                if t is None:
                    continue
                dt = rule(t, *node.inputs, node)[i]
                if dt is None:
                    continue
                dt = F.broadcast_to(dt, node.shape)
                total = dt if total is None else F.add(total, dt)
            return total

    return register(
        Op(
            name,
            "elementwise",
            _ew_infer(name, accepts, out),
            reference,
            pullback=pb,
            pushforward=pushforward or pf,
            scalar=scalar,
            nondiff=nondiff,
            doc=doc,
            numpy_expr=numpy_expr,
            extra={"nin": nin},
        )
    )


# -- unary math ---------------------------------------------------------------------------
def _sigmoid_np(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _erf_np(x: np.ndarray) -> np.ndarray:
    return np.asarray(scipy.special.erf(x)).astype(np.asarray(x).dtype, copy=False)


elementwise(
    "neg", 1, np.negative, lambda x: -x, lambda g, x, y: [F.neg(g)],
    "-x. d/dx = -1.", accepts=NUMERIC, numpy_expr="(-{0})",
)
elementwise(
    "exp", 1, np.exp, sp.exp, lambda g, x, y: [F.mul(g, y)],
    "e**x. d/dx = e**x (reuses the output).", numpy_expr="np.exp({0})",
)
elementwise(
    "log", 1, np.log, sp.log, lambda g, x, y: [F.div(g, x)],
    "Natural log. d/dx = 1/x; at x = 0 the derivative is +inf (and log(0) = -inf).",
    numpy_expr="np.log({0})",
)
elementwise(
    "log1p", 1, np.log1p, lambda x: sp.log(1 + x), lambda g, x, y: [F.div(g, F.add(x, 1))],
    "log(1 + x), accurate near 0. d/dx = 1/(1 + x).", numpy_expr="np.log1p({0})",
)
elementwise(
    "expm1", 1, np.expm1, lambda x: sp.exp(x) - 1, lambda g, x, y: [F.mul(g, F.add(y, 1))],
    "e**x - 1, accurate near 0. d/dx = e**x = expm1(x) + 1.", numpy_expr="np.expm1({0})",
)
elementwise(
    "sqrt", 1, np.sqrt, sp.sqrt, lambda g, x, y: [F.div(g, F.mul(y, 2))],
    "Square root. d/dx = 1/(2 sqrt(x)); at x = 0 the derivative is +inf (sqrt(x) is not "
    "differentiable there; the one-sided limit is reported).",
    numpy_expr="np.sqrt({0})",
)
elementwise(
    "abs", 1, np.abs, sp.Abs, lambda g, x, y: [F.mul(g, F.sign(x))],
    "|x|. d/dx = sign(x); at x = 0 the derivative is 0 (the middle of the subgradient).",
    accepts=NUMERIC, numpy_expr="np.abs({0})",
)
elementwise(
    "sign", 1, np.sign, sp.sign, None,
    "Sign of x (-1, 0, 1). Piecewise constant: its derivative is taken as 0 everywhere.",
    accepts=NUMERIC, nondiff="piecewise constant", numpy_expr="np.sign({0})",
)
elementwise(
    "sin", 1, np.sin, sp.sin, lambda g, x, y: [F.mul(g, F.cos(x))],
    "sin x. d/dx = cos x.", numpy_expr="np.sin({0})",
)
elementwise(
    "cos", 1, np.cos, sp.cos, lambda g, x, y: [F.neg(F.mul(g, F.sin(x)))],
    "cos x. d/dx = -sin x.", numpy_expr="np.cos({0})",
)
elementwise(
    "tanh", 1, np.tanh, sp.tanh, lambda g, x, y: [F.mul(g, F.sub(1, F.mul(y, y)))],
    "tanh x. d/dx = 1 - tanh(x)**2 (reuses the output).", numpy_expr="np.tanh({0})",
)
elementwise(
    "erf", 1, _erf_np, sp.erf,
    lambda g, x, y: [F.mul(g, F.mul(F.exp(F.neg(F.mul(x, x))), 2 / math.sqrt(math.pi)))],
    "Error function. d/dx = 2/sqrt(pi) * exp(-x**2).",
)
elementwise(
    "sigmoid", 1, _sigmoid_np, lambda x: 1 / (1 + sp.exp(-x)),
    lambda g, x, y: [F.mul(g, F.mul(y, F.sub(1, y)))],
    "1/(1 + e**-x), computed without overflow. d/dx = s(1 - s) with s the output.",
)
elementwise(
    "softplus", 1, lambda x: np.logaddexp(0, x), lambda x: sp.log(1 + sp.exp(x)),
    lambda g, x, y: [F.mul(g, F.sigmoid(x))],
    "log(1 + e**x), computed without overflow. d/dx = sigmoid(x).",
    numpy_expr="np.logaddexp(0, {0})",
)
elementwise(
    "relu", 1, lambda x: np.maximum(x, 0), lambda x: sp.Max(x, 0),
    lambda g, x, y: [F.where(F.greater(x, 0), g, 0)],
    "max(x, 0). d/dx = 1 for x > 0, else 0 (0 at x = 0).",
    accepts=NUMERIC, numpy_expr="np.maximum({0}, 0)",
)
_fn: Any
_sym: Any
for _name, _fn, _sym in (("floor", np.floor, sp.floor), ("ceil", np.ceil, sp.ceiling),
                         ("round", np.round, None)):
    elementwise(
        _name, 1, _fn, _sym, None,
        f"{_name}(x){' (half to even)' if _name == 'round' else ''}. Piecewise constant: "
        "derivative taken as 0.",
        nondiff="piecewise constant", numpy_expr=f"np.{_name}({{0}})",
    )


# -- binary math --------------------------------------------------------------------------
def _div_pullback(g: Tensor, a: Tensor, b: Tensor, y: Tensor) -> list[Tensor | None]:
    gb = F.div(g, b)
    return [gb, F.neg(F.mul(gb, y))]


def _pow_pullback(g: Tensor, a: Tensor, b: Tensor, y: Tensor) -> list[Tensor | None]:
    da = F.mul(g, F.mul(b, F.pow(a, F.sub(b, 1))))
    safe_a = F.where(F.equal(a, 0), 1, a)
    db = F.mul(g, F.mul(y, F.log(safe_a)))
    return [da, db]


def _extremum_pullback(strict: Callable[..., Tensor]) -> Callable[..., list[Tensor | None]]:
    def pb(g: Tensor, a: Tensor, b: Tensor, y: Tensor) -> list[Tensor | None]:
        half = F.mul(g, 0.5)
        tie = F.equal(a, b)
        ga = F.where(strict(a, b), g, F.where(tie, half, 0))
        gb = F.where(strict(b, a), g, F.where(tie, half, 0))
        return [ga, gb]

    return pb


elementwise(
    "add", 2, np.add, lambda a, b: a + b, lambda g, a, b, y: [g, g],
    "a + b. d/da = d/db = 1.", accepts=NUMERIC, numpy_expr="({0} + {1})",
)
elementwise(
    "sub", 2, np.subtract, lambda a, b: a - b, lambda g, a, b, y: [g, F.neg(g)],
    "a - b. d/da = 1, d/db = -1.", accepts=NUMERIC, numpy_expr="({0} - {1})",
)
elementwise(
    "mul", 2, np.multiply, lambda a, b: a * b, lambda g, a, b, y: [F.mul(g, b), F.mul(g, a)],
    "a * b. d/da = b, d/db = a.", accepts=ALL, numpy_expr="({0} * {1})",
)
elementwise(
    "div", 2, np.divide, lambda a, b: a / b, _div_pullback,
    "a / b (true division). d/da = 1/b, d/db = -a/b**2 = -y/b.", numpy_expr="({0} / {1})",
)
elementwise(
    "pow", 2, np.power, lambda a, b: a**b, _pow_pullback,
    "a ** b. d/da = b a**(b-1); d/db = a**b log(a), taken as 0 where a = 0.",
    accepts=NUMERIC, numpy_expr="({0} ** {1})",
)
elementwise(
    "maximum", 2, np.maximum, sp.Max, _extremum_pullback(F.greater),
    "Elementwise max. The larger operand gets the cotangent; on a tie each gets half.",
    accepts=NUMERIC, numpy_expr="np.maximum({0}, {1})",
)
elementwise(
    "minimum", 2, np.minimum, sp.Min, _extremum_pullback(F.less),
    "Elementwise min. The smaller operand gets the cotangent; on a tie each gets half.",
    accepts=NUMERIC, numpy_expr="np.minimum({0}, {1})",
)

# -- comparisons and logic -----------------------------------------------------------------
for _name, _fn, _sym, _src in (
    ("less", np.less, sp.StrictLessThan, "({0} < {1})"),
    ("less_equal", np.less_equal, sp.LessThan, "({0} <= {1})"),
    ("greater", np.greater, sp.StrictGreaterThan, "({0} > {1})"),
    ("greater_equal", np.greater_equal, sp.GreaterThan, "({0} >= {1})"),
    ("equal", np.equal, sp.Eq, "({0} == {1})"),
    ("not_equal", np.not_equal, sp.Ne, "({0} != {1})"),
):
    elementwise(
        _name, 2, _fn, _sym, None,
        f"Comparison {_src.format('a', 'b')} giving bool. Not differentiable: no cotangent "
        "flows through it (its derivative is taken as 0).",
        accepts=ALL, out="bool", nondiff="boolean result", numpy_expr=_src,
    )
for _name, _fn, _sym, _src in (
    ("logical_and", np.logical_and, sp.And, "({0} & {1})"),
    ("logical_or", np.logical_or, sp.Or, "({0} | {1})"),
):
    elementwise(
        _name, 2, _fn, _sym, None, f"Logical {_name[8:]} of bools. Not differentiable.",
        accepts=frozenset({"bool"}), nondiff="boolean", numpy_expr=_src,
    )
elementwise(
    "logical_not", 1, np.logical_not, sp.Not, None, "Logical not of bools. Not differentiable.",
    accepts=frozenset({"bool"}), nondiff="boolean", numpy_expr="(~{0})",
)


# -- where --------------------------------------------------------------------------------
def _where_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    c, a, b = inputs
    if c.dtype != "bool":
        raise op_error(DTypeError, "where", f"condition must be bool, got {c.dtype}",
                       shapes_of(inputs))
    if a.dtype != b.dtype:
        raise op_error(DTypeError, "where", f"branches differ in dtype: {a.dtype} vs {b.dtype}",
                       shapes_of(inputs))
    shape, checks = broadcast_shapes("where", [c.shape, a.shape, b.shape])
    return Info(shape, a.dtype, checks)


def _where_pullback(node: Tensor, g: Tensor) -> list[Tensor | None]:
    c = node.inputs[0]
    return [None, F.where(c, g, 0), F.where(c, 0, g)]


def _where_pushforward(node: Tensor, t: list[Tensor | None]) -> Tensor | None:
    c = node.inputs[0]
    if t[1] is None and t[2] is None:
        return None
    ta = t[1] if t[1] is not None else F.zeros_like(node.inputs[1])
    tb = t[2] if t[2] is not None else F.zeros_like(node.inputs[2])
    return F.where(c, ta, tb)


register(
    Op(
        "where",
        "elementwise",
        _where_infer,
        np.where,
        pullback=_where_pullback,
        pushforward=_where_pushforward,
        scalar=lambda c, a, b: sp.Piecewise((a, c), (b, True)),
        doc="where(c, a, b): a where c else b. The cotangent goes to the selected branch "
        "only; the other branch gets an exact zero.",
        numpy_expr="np.where({0}, {1}, {2})",
        extra={"nin": 3},
    )
)
