"""The scalar expression of every elementwise op, for both C-like dialects.

One table, :data:`EXPR`, maps an op name to a template per operand kind (``f`` float,
``i`` integer, ``b`` bool; ``*`` any). Templates name their operands ``{0} {1} {2}`` and
may use ``{T}`` (the result's type), ``{A}`` (the first operand's type), ``{U}`` (the
unsigned type of the first operand's width), ``{m}`` (the C math suffix: ``f`` for
float32, empty for float64) and ``{s}`` (the dtype tag of helper functions: ``f32``,
``f64``, ``i32``, ``i64``). Helpers (``sg_sigmoid_f32``...) are written into the source
only when used, with the dialect's qualifiers, so a dialect changes the tables here,
never the control flow.

Semantics follow the NumPy references: ``maximum``/``minimum``/``relu`` propagate NaN,
``sigmoid`` and ``softplus`` are evaluated in forms that cannot overflow, ``round`` is
round-half-to-even (``rint`` in the default rounding mode), integer ``+ - * neg abs``
wrap around like NumPy's (through unsigned arithmetic, never signed overflow), and
comparisons give 0 or 1 in a one-byte bool.
"""

from __future__ import annotations

import math
from typing import Any

from symgrad.backends.cstyle.dialect import Dialect

TAG = {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "b8"}

_UNARY_MATH = ("exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "erf", "floor", "ceil")
_COMPARE = {"less": "<", "less_equal": "<=", "greater": ">", "greater_equal": ">=",
            "equal": "==", "not_equal": "!="}

EXPR: dict[str, dict[str, str]] = {
    "neg": {"f": "(-{0})", "i": "(({T})(({U})0 - ({U}){0}))"},
    "abs": {"f": "fabs{m}({0})", "i": "sg_abs_{s}({0})"},
    "sign": {"f": "sg_sign_{s}({0})", "i": "(({T})(({0} > 0) - ({0} < 0)))"},
    "round": {"f": "rint{m}({0})"},
    "sigmoid": {"f": "sg_sigmoid_{s}({0})"},
    "softplus": {"f": "sg_softplus_{s}({0})"},
    "relu": {"f": "sg_relu_{s}({0})", "i": "({0} > 0 ? {0} : ({T})0)"},
    "add": {"f": "({0} + {1})", "i": "(({T})(({U}){0} + ({U}){1}))"},
    "sub": {"f": "({0} - {1})", "i": "(({T})(({U}){0} - ({U}){1}))"},
    "mul": {"f": "({0} * {1})", "i": "(({T})(({U}){0} * ({U}){1}))", "b": "(({T})({0} & {1}))"},
    "div": {"f": "({0} / {1})"},
    "pow": {"f": "pow{m}({0}, {1})", "i": "sg_pow_{s}({0}, {1})"},
    "maximum": {"f": "sg_max_{s}({0}, {1})", "i": "({0} > {1} ? {0} : {1})"},
    "minimum": {"f": "sg_min_{s}({0}, {1})", "i": "({0} < {1} ? {0} : {1})"},
    "logical_and": {"b": "(({T})({0} && {1}))"},
    "logical_or": {"b": "(({T})({0} || {1}))"},
    "logical_not": {"b": "(({T})!{0})"},
    "where": {"*": "({0} ? {1} : {2})"},
    "arange": {"*": "(({T}){0})"},  # its operand is the element's row-major position
}
for _op in _UNARY_MATH:
    EXPR[_op] = {"f": f"{_op}{{m}}({{0}})"}
for _op, _sym in _COMPARE.items():
    EXPR[_op] = {"*": f"(({{T}})({{0}} {_sym} {{1}}))"}

# the elementwise ops the renderer can write (pass to ``lower(..., elementwise=...)``)
SUPPORTED_OPS = frozenset(EXPR) | {"cast"}

# Helper functions by name pattern; ``{Q}`` is the dialect's helper qualifier.
HELPERS: dict[str, str] = {
    "sg_max": "{Q} {T} sg_max_{s}({T} a, {T} b) {{ return (a != a || a > b) ? a : b; }}",
    "sg_min": "{Q} {T} sg_min_{s}({T} a, {T} b) {{ return (a != a || a < b) ? a : b; }}",
    "sg_relu": "{Q} {T} sg_relu_{s}({T} x) {{ return (x != x || x > 0) ? x : ({T})0; }}",
    "sg_sign": "{Q} {T} sg_sign_{s}({T} x) {{ return x > 0 ? ({T})1 : (x < 0 ? ({T})-1 : x); }}",
    "sg_sigmoid": (
        "{Q} {T} sg_sigmoid_{s}({T} x) {{\n"
        "  const {T} e = exp{m}(-fabs{m}(x));\n"
        "  return x >= 0 ? ({T})1 / (({T})1 + e) : e / (({T})1 + e);\n"
        "}}"
    ),
    "sg_softplus": (
        "{Q} {T} sg_softplus_{s}({T} x) {{\n"
        "  return (x > 0 ? x : ({T})0) + log1p{m}(exp{m}(-fabs{m}(x)));\n"
        "}}"
    ),
    "sg_abs": "{Q} {T} sg_abs_{s}({T} x) {{ return x < 0 ? ({T})(({U})0 - ({U})x) : x; }}",
    "sg_pow": (
        "{Q} {T} sg_pow_{s}({T} a, {T} b) {{\n"
        "  {U} r = 1, p = ({U})a;\n"
        "  if (b < 0) return a == 1 ? ({T})1 : (a == -1 ? ((b & 1) ? ({T})-1 : ({T})1) : ({T})0);\n"
        "  while (b) {{ if (b & 1) r *= p; p *= p; b >>= 1; }}\n"
        "  return ({T})r;\n"
        "}}"
    ),
}


def kind(dtype: str) -> str:
    if dtype in ("float32", "float64"):
        return "f"
    if dtype == "bool":
        return "b"
    return "i"


def _fields(dialect: Dialect, out: str, first: str) -> dict[str, str]:
    return {
        "T": dialect.types[out],
        "A": dialect.types[first],
        "U": dialect.unsigned.get(first, dialect.types[first]),
        "m": "f" if first == "float32" else "",
        "s": TAG[first],
    }


def supports(op: str, dtype: str) -> bool:
    """Whether :func:`expr` can render ``op`` on operands of ``dtype``."""
    if op == "cast":
        return True
    table = EXPR.get(op)
    if table is None:
        return False
    return "*" in table or kind(dtype) in table


def expr(op: str, args: list[str], arg_dtypes: list[str], out: str, dialect: Dialect,
         used: set[tuple[str, str]]) -> str:
    """The C expression of ``op`` applied to the already-rendered ``args``.

    ``used`` collects the helper functions the expression calls, as (helper, dtype).
    """
    if op == "cast":
        src = arg_dtypes[0]
        if out == "bool":
            return f"(({dialect.types[out]})({args[0]} != 0))"
        if src == out:
            return args[0]
        return f"(({dialect.types[out]}){args[0]})"
    # where's first operand is the bool condition; the branches give the type
    first = arg_dtypes[1] if op == "where" else arg_dtypes[0]
    table = EXPR[op]
    k = kind(first)
    template = table.get(k) or table.get("*") or table.get("i")
    assert template is not None, (op, first)
    text = template.format(*args, **_fields(dialect, out, first))
    for helper in HELPERS:
        if helper + "_" in text:
            used.add((helper, first))
    return text


def helper_source(helper: str, dtype: str, dialect: Dialect) -> str:
    return HELPERS[helper].format(Q=dialect.helper, **_fields(dialect, dtype, dtype))


def literal(value: Any, dtype: str, dialect: Dialect) -> str:
    """An exact literal of ``value`` as ``dtype``."""
    import numpy as np

    if dtype == "bool":
        return f"(({dialect.types['bool']}){1 if value else 0})"
    if dtype in ("int32", "int64"):
        v = int(value)
        bits = 32 if dtype == "int32" else 64
        v = (v + (1 << (bits - 1))) % (1 << bits) - (1 << (bits - 1))
        if dtype == "int32":
            return f"({v + 1} - 1)" if v == -(1 << 31) else str(v)
        return f"({v + 1}LL - 1)" if v == -(1 << 63) else f"{v}LL"
    f = float(np.float32(value)) if dtype == "float32" else float(value)
    if math.isnan(f):
        return dialect.nan[dtype]
    if math.isinf(f):
        return dialect.inf[dtype] if f > 0 else f"(-{dialect.inf[dtype]})"
    if dtype == "float32":
        text = str(np.float32(f))
        if "e" not in text and "." not in text and "inf" not in text:
            text += ".0"
        return text + "f"
    text = repr(f)
    if "e" not in text and "." not in text:
        text += ".0"
    return text


__all__ = ["EXPR", "HELPERS", "SUPPORTED_OPS", "TAG", "expr", "helper_source", "kind", "literal", "supports"]
