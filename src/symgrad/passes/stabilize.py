"""Numerical stabilization: rewrite unstable compositions into ops that cannot overflow
or lose precision, and keep NaNs of unselected ``where`` branches out of gradients.

Run it before autodiff, so gradients are derived from the stable forms (the gradient of
``-sum(onehot * log(softmax(z)))`` becomes ``softmax(z) - onehot`` instead of a division
by a softmax that underflows), and again after autodiff on the backward graph.

Rewrites (each reported as ``stabilize/<name>``)::

    log(sum(exp(x)))           -> logsumexp(x)          logsumexp
    log(softmax(x))            -> log_softmax(x)        log-softmax
    exp(x) / sum(exp(x))       -> softmax(x)            softmax
    1 / (1 + exp(-x))          -> sigmoid(x)            sigmoid
    log(1 + x)                 -> log1p(x)              log1p
    exp(x) - 1                 -> expm1(x)              expm1
    log(1 + exp(x))            -> softplus(x)           softplus
    log(sigmoid(x))            -> -softplus(-x)         log-sigmoid
    log(1 - sigmoid(x))        -> -softplus(x)          log-one-minus-sigmoid
    sqrt(x * x)                -> abs(x)                sqrt-square

NaN through ``where`` (rule ``where-guard``). ``where(c, f(x), y)`` selects ``f(x)`` only
where ``c`` holds, but its gradient is ``where(c, g, 0) * f'(x)``, and ``0 * f'(x)`` is NaN
where ``f'`` is infinite (``sqrt``, ``log``, ``log1p``, ``pow`` and the denominator of
``div`` at their singular points). The convention: *an unselected branch contributes an
exact zero to the gradient*. It is implemented by guarding the singular operand inside
each branch with the same condition, ``where(c, f(where(c, x, safe)), y)``, where ``safe``
is a point where ``f`` is smooth (1 for sqrt, log, pow and div; 0 for log1p). Where ``c``
holds nothing changes; where it does not, ``f`` is evaluated at ``safe``, its derivative is
finite, and the zero cotangent stays zero. The guard goes through up to 32 elementwise
nodes of each branch, and is only added while the graph still holds derivative requests
(afterwards it would only cost work).

Nodes that a derivative request differentiates with respect to are never rewritten or
matched through (see :mod:`symgrad.passes.patterns`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import symgrad.ops.api as F
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.graph import toposort_by_creation
from symgrad.ir.tensor import Tensor
from symgrad.passes.canonicalize import _strip_ones, fit
from symgrad.passes.patterns import (
    Ctx,
    RuleFn,
    const_value,
    is_const_number,
    run_table,
)

Inputs = tuple[Tensor, ...]


def _free(t: Tensor, op: str, ctx: Ctx) -> bool:
    return t.op.name == op and not ctx.is_blocked(t)


def _one_plus(t: Tensor, ctx: Ctx) -> Tensor | None:
    """``x`` when ``t`` is ``1 + x`` or ``x + 1``."""
    if _free(t, "add", ctx):
        a, b = t.inputs
        if is_const_number(b, 1, ctx.blocked):
            return a
        if is_const_number(a, 1, ctx.blocked):
            return b
    return None


def _one_minus(t: Tensor, ctx: Ctx) -> Tensor | None:
    """``x`` when ``t`` is ``1 - x``."""
    if _free(t, "sub", ctx) and is_const_number(t.inputs[0], 1, ctx.blocked):
        return t.inputs[1]
    return None


def log_rules(node: Tensor, i: Inputs, ctx: Ctx) -> tuple[str, Tensor] | None:
    (a,) = i
    if _free(a, "sum", ctx) and _free(a.inputs[0], "exp", ctx):
        return "logsumexp", F.OPS["logsumexp"](a.inputs[0].inputs[0], axes=a.attr("axes"), keepdims=a.attr("keepdims"))
    if _free(a, "softmax", ctx):
        return "log-softmax", F.OPS["log_softmax"](a.inputs[0], axis=a.attr("axis"))
    if _free(a, "sigmoid", ctx):
        return "log-sigmoid", F.neg(F.softplus(F.neg(a.inputs[0])))
    sig = _one_minus(a, ctx)
    if sig is not None and _free(sig, "sigmoid", ctx):
        return "log-one-minus-sigmoid", fit(F.neg(F.softplus(sig.inputs[0])), node)
    inc = _one_plus(a, ctx)
    if inc is not None:
        if _free(inc, "exp", ctx):
            return "softplus", fit(F.softplus(inc.inputs[0]), node)
        return "log1p", fit(F.log1p(inc), node)
    return None


def log1p_rules(node: Tensor, i: Inputs, ctx: Ctx) -> tuple[str, Tensor] | None:
    (a,) = i
    if _free(a, "exp", ctx):
        return "softplus", F.softplus(a.inputs[0])
    if _free(a, "neg", ctx) and _free(a.inputs[0], "sigmoid", ctx):
        return "log-one-minus-sigmoid", F.neg(F.softplus(a.inputs[0].inputs[0]))
    return None


def expm1_rules(node: Tensor, i: Inputs, ctx: Ctx) -> tuple[str, Tensor] | None:
    a, b = i
    if node.op.name == "sub" and _free(a, "exp", ctx) and is_const_number(b, 1, ctx.blocked):
        return "expm1", fit(F.expm1(a.inputs[0]), node)
    if node.op.name == "add":
        for e, c in ((a, b), (b, a)):
            if _free(e, "exp", ctx) and is_const_number(c, -1, ctx.blocked):
                return "expm1", fit(F.expm1(e.inputs[0]), node)
    return None


def sqrt_rules(node: Tensor, i: Inputs, ctx: Ctx) -> tuple[str, Tensor] | None:
    (a,) = i
    if _free(a, "mul", ctx) and a.inputs[0] is a.inputs[1]:
        return "sqrt-square", F.abs(a.inputs[0])
    return None


def _reduced_under(d: Tensor, ctx: Ctx) -> tuple[Tensor, Tensor] | None:
    """Look through broadcasts and reshapes: (the reduction, the shape-giving node)."""
    top = None
    for _ in range(6):
        if d.op.name == "broadcast_to" and not ctx.is_blocked(d):
            d = d.inputs[0]
            continue
        if top is None:
            top = d
        if d.op.name == "reshape" and not ctx.is_blocked(d):
            d = d.inputs[0]
            continue
        break
    return (d, top) if top is not None else None


def div_rules(node: Tensor, i: Inputs, ctx: Ctx) -> tuple[str, Tensor] | None:
    a, b = i
    if _free(a, "exp", ctx):
        found = _reduced_under(b, ctx)
        if found is not None:
            s, top = found
            x = a.inputs[0]
            if (_free(s, "sum", ctx) and s.inputs[0] is a and len(s.attr("axes")) == 1
                    and a.ndim > 0):
                (ax,) = s.attr("axes")
                kept = tuple(1 if k == ax else n for k, n in enumerate(a.shape))
                if _strip_ones(top.shape) == _strip_ones(kept):
                    return "softmax", fit(F.OPS["softmax"](x, axis=ax), node)
    if is_const_number(a, 1, ctx.blocked):
        e = _one_plus(b, ctx)
        if e is not None and _free(e, "exp", ctx) and _free(e.inputs[0], "neg", ctx):
            return "sigmoid", fit(F.sigmoid(e.inputs[0].inputs[0]), node)
    return None


# -- where: keep the unselected branch's singular derivatives out of the gradient -------------
_SINGULAR: dict[str, tuple[int, float, Callable[[float], bool]]] = {
    "sqrt": (0, 1.0, lambda v: v > 0),
    "log": (0, 1.0, lambda v: v > 0),
    "pow": (0, 1.0, lambda v: v > 0),
    "div": (1, 1.0, lambda v: v != 0),
    "log1p": (0, 0.0, lambda v: v > -1),
}
GUARD_BUDGET = 32


def _is_guard(u: Tensor, c: Tensor) -> bool:
    return u.op.name == "where" and u.inputs[0] is c and (
        const_value(u.inputs[1]) is not None or const_value(u.inputs[2]) is not None
    )


def _guard(t: Tensor, c: Tensor, selected: bool, ctx: Ctx, budget: list[int]) -> Tensor:
    if (budget[0] <= 0 or ctx.is_blocked(t) or t.op.kind != "elementwise" or t.dtype not in FLOATS
            or not t.inputs or _is_guard(t, c)):
        return t
    budget[0] -= 1
    new = [_guard(x, c, selected, ctx, budget) for x in t.inputs]
    spec = _SINGULAR.get(t.op.name)
    if spec is not None:
        k, safe, smooth = spec
        u = new[k]
        v = const_value(u, ctx.blocked)
        if not _is_guard(u, c) and not (v is not None and not isinstance(v, bool) and smooth(v)):
            new[k] = F.where(c, u, safe) if selected else F.where(c, safe, u)
    if all(x is y for x, y in zip(new, t.inputs)):
        return t
    return Tensor.make(t.op, tuple(new), t.attrs)


def where_rules(node: Tensor, i: Inputs, ctx: Ctx) -> tuple[str, Tensor] | None:
    if not ctx.data.get("has_requests"):
        return None
    c, a, b = i
    if a.dtype not in FLOATS:
        return None
    budget = [GUARD_BUDGET]
    na = _guard(a, c, True, ctx, budget)
    nb = _guard(b, c, False, ctx, budget)
    if na is a and nb is b:
        return None
    return "where-guard", fit(Tensor.make(node.op, (c, na, nb), node.attrs), node)


def table() -> dict[str, list[tuple[str, RuleFn]]]:
    """The rules by op name (each returns the name of the rewrite that fired)."""
    return {
        "log": [("log", log_rules)],
        "log1p": [("log1p", log1p_rules)],
        "sub": [("expm1", expm1_rules)],
        "add": [("expm1", expm1_rules)],
        "sqrt": [("sqrt", sqrt_rules)],
        "div": [("div", div_rules)],
        "where": [("where-guard", where_rules)],
    }


def triggers() -> dict[str, frozenset[str]]:
    return {
        "log": frozenset({"sum", "softmax", "sigmoid", "sub", "add"}),
        "log1p": frozenset({"exp", "neg"}),
        "sub": frozenset({"exp"}),
        "add": frozenset({"exp"}),
        "sqrt": frozenset({"mul"}),
        "div": frozenset({"exp", "constant", "broadcast_to", "reshape"}),
    }


@dataclass(frozen=True)
class Stabilize:
    """Rewrite overflow- and cancellation-prone compositions into stable ops, and guard
    singular ops in ``where`` branches; see the module doc for the list and conventions."""

    name: str = "stabilize"

    def run(self, outputs: Sequence[Tensor]) -> list[Tensor]:
        order = toposort_by_creation(outputs)
        has_requests = any(n.op.kind == "transform" for n in order)
        return run_table(self.name, table(), outputs, order, data={"has_requests": has_requests},
                         triggers=triggers())
