"""Algebraic canonicalization: identities that make a graph smaller and more regular.

Every rule keeps the node's shape and dtype, symbolic sizes included: where two
operands have different symbolic sizes (checked equal when the function is called), a
broadcasting op takes the first one's, so a rule that swaps operands broadcasts its
result back to the node's shape (a no-op at run time). Rules that could change a NaN or an
infinity into a number are taken only where that cannot happen:

- ``x * 0 -> 0`` and ``x - x -> 0`` need ``x`` known finite (integers, bools, finite
  constants, sizes, ``one_hot``, and bounded functions of those; see
  :func:`~symgrad.passes.patterns.known_finite`): ``inf * 0`` and ``inf - inf`` are NaN, so
  for a float input the rewrite is not taken.
- ``exp(log x) -> x`` needs every element of ``x`` to be >= 0 or NaN (``x`` is an ``exp``,
  ``sqrt``, ``abs``, ``sigmoid``, ``softplus``, ``relu``, ``softmax``, ``one_hot``, ``y*y``
  or a non-negative constant): for ``x < 0`` the left side is NaN.
- ``log(exp x) -> x`` always holds (and is exact where ``exp`` would overflow).
- ``sum(broadcast_to(s)) -> s * count`` needs a static non-zero count or a finite ``s``
  (an empty sum is 0 while ``inf * 0`` is NaN).
- ``sum(one_hot(y), axis=-1) -> 1`` is taken only where the same ``one_hot`` has another
  use, so its label range check still runs.
- Signed zeros are not preserved: ``x + 0 -> x`` and ``0 - x -> -x`` may turn ``+0.0`` into
  ``-0.0`` or back.
- ``cast(cast(x, m), t) -> cast(x, t)`` only where ``m`` holds every value of ``x`` exactly.
- Factoring (``a*c + b*c -> (a + b)*c``, ``sum(a*b) -> a*sum(b)`` for ``a`` constant along the
  summed axes) rounds differently in the last bits and can only avoid an overflow, not
  add one; NaN and infinity propagate as before.

Rules look through and rewrite only nodes that no derivative request differentiates
with respect to (see :mod:`symgrad.passes.patterns`). The pass first looks for a node
a rule fires on and returns the graph untouched if there is none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np

import symgrad.ops.api as F
from symgrad.ir import shape as S
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.shape import Shape
from symgrad.ir.tensor import Tensor
from symgrad.ops.base import OPS, broadcast_shapes
from symgrad.passes.patterns import (
    Ctx,
    RuleFn,
    const_value,
    full_like_shape,
    is_const_number,
    known_finite,
    known_nonneg_or_nan,
    other_uses,
    run_table,
)

Inputs = tuple[Tensor, ...]


def fit(t: Tensor, node: Tensor) -> Tensor:
    """``t`` broadcast to ``node``'s shape (``t`` has its dtype and broadcasts to it)."""
    if t.shape == node.shape:
        return t
    out: Tensor = OPS["broadcast_to"](t, shape=tuple(node.shape))
    return out


def _free(t: Tensor, op: str, ctx: Ctx) -> bool:
    return t.op.name == op and not ctx.is_blocked(t)


def _strip_ones(shape: Shape) -> Shape:
    k = 0
    while k < len(shape) and shape[k] == 1:
        k += 1
    return tuple(shape[k:])


# -- mul, add, sub, neg, div, pow -------------------------------------------------------------
def _number(v: object) -> float | None:
    return None if v is None or isinstance(v, bool) else cast(float, v)


def mul_const(node: Tensor, i: Inputs, ctx: Ctx) -> tuple[str, Tensor] | None:
    """x*1 -> x, x*-1 -> -x, x*0 -> 0 (the last only for finite x)."""
    a, b = i
    va, vb = _number(const_value(a, ctx.blocked)), _number(const_value(b, ctx.blocked))
    for x, v in ((a, vb), (b, va)):
        if v == 1:
            return "mul-one", fit(x, node)
        if v == -1:
            return "mul-neg-one", fit(ctx.settle(F.neg(x)), node)
        if v == 0 and known_finite(x):
            return "mul-zero", full_like_shape(0, node.shape, node.dtype)
    return None


def mul_neg(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """(-a) * (-b) -> a * b; (-a) * b -> -(a * b): negation outermost (exact)."""
    a, b = i
    na, nb = _free(a, "neg", ctx), _free(b, "neg", ctx)
    if na and nb:
        return ctx.settle(Tensor.make(node.op, (a.inputs[0], b.inputs[0]), node.attrs))
    if na or nb:
        inner = Tensor.make(node.op, (a.inputs[0] if na else a, b.inputs[0] if nb else b), node.attrs)
        return ctx.settle(F.neg(ctx.settle(inner)))
    return None


def add_zero(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    a, b = i
    if is_const_number(b, 0, ctx.blocked):
        return fit(a, node)
    if is_const_number(a, 0, ctx.blocked):
        return fit(b, node)
    return None


def add_self(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """x + x -> 2 * x (exact: doubling only changes the exponent)."""
    a, b = i
    if a is not b or node.dtype not in FLOATS:
        return None
    return fit(ctx.settle(F.mul(F.as_tensor(2.0, node.dtype), a)), node)


def add_neg(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    a, b = i
    if _free(b, "neg", ctx):
        return ctx.settle(F.sub(a, b.inputs[0]))
    if _free(a, "neg", ctx):  # operands swap: keep the node's (symbolic) sizes
        return fit(ctx.settle(F.sub(b, a.inputs[0])), node)
    return None


def factor_common(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """a*c + b*c -> (a + b)*c, a*c - b*c -> (a - b)*c (one multiplication fewer)."""
    x, y = i
    if not (_free(x, "mul", ctx) and _free(y, "mul", ctx)) or x.dtype not in FLOATS:
        return None
    for p, c in ((x.inputs[0], x.inputs[1]), (x.inputs[1], x.inputs[0])):
        for q, d in ((y.inputs[0], y.inputs[1]), (y.inputs[1], y.inputs[0])):
            if c is d:
                inner = ctx.settle(Tensor.make(node.op, (p, q), node.attrs))
                return fit(ctx.settle(F.mul(inner, c)), node)
    return None


def sub_zero(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    a, b = i
    if is_const_number(b, 0, ctx.blocked):
        return fit(a, node)
    if is_const_number(a, 0, ctx.blocked):
        return fit(ctx.settle(F.neg(b)), node)
    return None


def sub_neg(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    a, b = i
    if _free(b, "neg", ctx):
        return ctx.settle(F.add(a, b.inputs[0]))
    return None


def sub_self(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    a, b = i
    if a is b and known_finite(a):
        return full_like_shape(0, node.shape, node.dtype)
    return None


def neg_neg(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    (a,) = i
    if _free(a, "neg", ctx):
        return a.inputs[0]
    if _free(a, "sub", ctx):  # operands swap: keep the node's (symbolic) sizes
        return fit(ctx.settle(F.sub(a.inputs[1], a.inputs[0])), node)
    return None


def div_one(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    a, b = i
    if is_const_number(b, 1, ctx.blocked):
        return fit(a, node)
    return None


def div_neg(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    a, b = i
    na, nb = _free(a, "neg", ctx), _free(b, "neg", ctx)
    if na and nb:
        return ctx.settle(F.div(a.inputs[0], b.inputs[0]))
    if na or nb:
        inner = F.div(a.inputs[0] if na else a, b.inputs[0] if nb else b)
        return ctx.settle(F.neg(ctx.settle(inner)))
    return None


def pow_const(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """x**1 -> x, x**2 -> x*x, x**0 -> 1, x**0.5 -> sqrt(x), x**-1 -> 1/x (NumPy's own
    special cases of ``power``, so the values are unchanged)."""
    a, b = i
    v = const_value(b, ctx.blocked)
    if v is None or isinstance(v, bool):
        return None
    if v == 1:
        return fit(a, node)
    if v == 0:
        return full_like_shape(1, node.shape, node.dtype)
    if v == 2:
        return fit(ctx.settle(F.mul(a, a)), node)
    if v == 0.5:
        return fit(ctx.settle(F.sqrt(a)), node)
    if v == -1:
        return fit(ctx.settle(F.div(F.as_tensor(1, a.dtype), a)), node)
    return None


# -- exp, log -------------------------------------------------------------------------------
def exp_log(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    (a,) = i
    if _free(a, "log", ctx) and known_nonneg_or_nan(a.inputs[0]):
        return a.inputs[0]
    if _free(a, "log_softmax", ctx):
        return F.softmax(a.inputs[0], a.attr("axis"))
    return None


def log_exp(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    (a,) = i
    if _free(a, "exp", ctx):
        return a.inputs[0]
    return None


# -- shape ops -------------------------------------------------------------------------------
def transpose_transpose(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    (a,) = i
    if not _free(a, "transpose", ctx):
        return None
    p1, p2 = a.attr("perm"), node.attr("perm")
    perm = tuple(p1[j] for j in p2)
    x = a.inputs[0]
    return x if perm == tuple(range(len(perm))) else ctx.settle(OPS["transpose"](x, perm=perm))


def _scatter_leaves(t: Tensor, ctx: Ctx, leaves: list[Tensor], depth: int = 0) -> bool:
    """Collect the ``slice_grad`` leaves of a tree of ``add`` over 1-D values of ``t``'s
    shape; False if something else is in the tree (or the tree is very deep)."""
    if _free(t, "slice_grad", ctx) and t.inputs[0].ndim == 1:
        leaves.append(t)
        return True
    if _free(t, "add", ctx) and depth < 64 and all(x.shape == t.shape for x in t.inputs):
        return all(_scatter_leaves(x, ctx, leaves, depth + 1) for x in t.inputs)
    return False


MAX_SCATTER_CHECK = 1 << 22  # positions checked one by one at compile time, at most


def transpose_scatter(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """transpose(reshape(s)) -> reshape(s') where ``s`` is a sum of 1-D strided scatters
    (``slice_grad``) whose positions, transposed, still form an arithmetic progression (a
    diagonal or a band of a matrix does): the scatters then write the transposed layout
    directly and no copy is made."""
    (a,) = i
    if not _free(a, "reshape", ctx) or a.inputs[0].ndim != 1:
        return None
    sizes = [n for n in a.shape if isinstance(n, int)]
    if len(sizes) != a.ndim:
        return None
    leaves: list[Tensor] = []
    if not _scatter_leaves(a.inputs[0], ctx, leaves):
        return None
    perm = node.attr("perm")
    moved: dict[int, Tensor] = {}
    for leaf in leaves:
        ((start, stop, step),) = leaf.attr("index")
        if not all(isinstance(v, int) for v in (start, stop, step)):
            return None
        count = len(range(start, stop, step))
        if count > MAX_SCATTER_CHECK:
            return None
        pos = np.arange(start, start + step * count, step, dtype=np.int64)[:count]
        coords = np.unravel_index(pos, sizes)
        new = np.ravel_multi_index([coords[p] for p in perm], [sizes[p] for p in perm])
        steps = np.diff(new)
        new_step = int(steps[0]) if count > 1 else 1
        if count > 2 and not (steps == new_step).all():
            return None
        new_start = int(new[0]) if count else 0
        values = leaf.inputs[0]
        if new_step < 0:  # the same positions from the other end, the values reversed
            values = ctx.settle(OPS["slice"](values, index=((count - 1, -1, -1),), checks=()))
            new_start, new_step = new_start + new_step * (count - 1), -new_step
        index = ((new_start, new_start + new_step * (count - 1) + 1, new_step),)
        moved[id(leaf)] = OPS["slice_grad"](values, index=index, shape=leaf.shape)

    def build(t: Tensor) -> Tensor:
        hit = moved.get(id(t))
        return hit if hit is not None else F.add(build(t.inputs[0]), build(t.inputs[1]))

    return ctx.settle(OPS["reshape"](build(a.inputs[0]), shape=tuple(node.shape)))


def slice_broadcast(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """slice(broadcast_to(x)) -> broadcast_to(slice(x)): only x's own axes are sliced (not
    taken where the slice carries run-time size checks, which must keep running)."""
    (a,) = i
    if not _free(a, "broadcast_to", ctx) or node.checks:
        return None
    x = a.inputs[0]
    lead = a.ndim - x.ndim
    index = tuple((0, 1, 1) if n == 1 else row for n, row in zip(x.shape, node.attr("index")[lead:]))
    if all(row == (0, n, 1) for row, n in zip(index, x.shape)):
        return fit(x, node)
    return fit(ctx.settle(OPS["slice"](x, index=index, checks=())), node)


def reshape_chain(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """Reshape chains merge; a reshape moves inside negations and products with scalars
    (so add/sub and sums can absorb them); reshaping a keepdims sum to its plain shape is
    the sum without keepdims; a reshaped broadcast scalar is broadcast directly."""
    (a,) = i
    shape = node.attr("shape")
    if _free(a, "neg", ctx):
        return ctx.settle(F.neg(ctx.settle(OPS["reshape"](a.inputs[0], shape=shape))))
    if _free(a, "mul", ctx) and any(x.ndim == 0 for x in a.inputs):
        s, t = a.inputs if a.inputs[0].ndim == 0 else a.inputs[::-1]
        if t.shape == a.shape:
            return ctx.settle(F.mul(s, ctx.settle(OPS["reshape"](t, shape=shape))))
    if _free(a, "sum", ctx) and a.attr("keepdims"):
        x, axes = a.inputs[0], a.attr("axes")
        if a.dtype == x.dtype and node.shape == tuple(n for k, n in enumerate(x.shape) if k not in axes):
            return ctx.settle(OPS["sum"](x, axes=axes, keepdims=False))
    if _free(a, "reshape", ctx):
        x = a.inputs[0]
        return x if x.shape == node.shape else ctx.settle(OPS["reshape"](x, shape=node.attr("shape")))
    if _free(a, "broadcast_to", ctx) and S.prod(a.inputs[0].shape) == 1:
        s = a.inputs[0]
        if s.ndim:
            s = ctx.settle(OPS["reshape"](s, shape=()))
        return fit(s, node)
    return None


def broadcast_chain(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """broadcast_to(broadcast_to(x)) and broadcast_to(reshape(x)) where the reshape only
    adds or drops leading 1s: broadcast ``x`` directly."""
    (a,) = i
    if _free(a, "broadcast_to", ctx) or (
        _free(a, "reshape", ctx) and _strip_ones(a.shape) == _strip_ones(a.inputs[0].shape)
        and a.inputs[0].ndim <= node.ndim
    ):
        return fit(a.inputs[0], node)
    return None


# -- reductions ----------------------------------------------------------------------------------
def _reduced(shape: Shape, axes: tuple[int, ...], keepdims: bool) -> Shape:
    if keepdims:
        return tuple(1 if k in axes else s for k, s in enumerate(shape))
    return tuple(s for k, s in enumerate(shape) if k not in axes)


def _aligned_reduce(t: Tensor, ndim: int, axes: tuple[int, ...], keepdims: bool,
                    ctx: Ctx) -> Tensor | None:
    """``t`` (broadcastable to rank ``ndim``, size 1 along ``axes``) as it looks after a
    reduction over ``axes``; None if ``t`` is not size 1 there."""
    off = ndim - t.ndim
    if any(ax >= off and t.shape[ax - off] != 1 for ax in axes):
        return None
    aligned = (1,) * off + tuple(t.shape)
    target = _strip_ones(_reduced(aligned, axes, keepdims))
    return t if target == t.shape else ctx.settle(OPS["reshape"](t, shape=target))


def sum_empty(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    (a,) = i
    if node.attr("axes") == () and a.dtype == node.dtype:
        return a
    return None


def sum_broadcast(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """sum(broadcast_to(s, shape)) over broadcast axes -> s * count."""
    (a,) = i
    if not _free(a, "broadcast_to", ctx):
        return None
    s = a.inputs[0]
    axes, keep = node.attr("axes"), node.attr("keepdims")
    count = S.prod([a.shape[k] for k in axes])
    if count == 0 or not (isinstance(count, int) or known_finite(s)):
        return None
    r = _aligned_reduce(s, a.ndim, axes, keep, ctx)
    if r is None:
        return None
    r = F.cast(r, node.dtype)
    if count != 1:
        r = ctx.settle(F.mul(r, F.dim_value(count, node.dtype)))
    return fit(r, node)


def sum_factor(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """sum(a * b) -> a * sum(b) where ``a`` is constant along the summed axes."""
    (m,) = i
    if not _free(m, "mul", ctx) or m.dtype not in FLOATS:
        return None
    axes, keep = node.attr("axes"), node.attr("keepdims")
    x, y = m.inputs
    for a, b in ((x, y), (y, x)):
        if b.shape != m.shape:
            continue
        r = _aligned_reduce(a, m.ndim, axes, keep, ctx)
        if r is None:
            continue
        inner = ctx.settle(OPS["sum"](b, axes=axes, keepdims=keep))
        return fit(ctx.settle(F.mul(r, inner)), node)
    return None


def sum_neg(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    (a,) = i
    if _free(a, "neg", ctx):
        inner = ctx.settle(Tensor.make(node.op, (a.inputs[0],), node.attrs))
        return ctx.settle(F.neg(inner))
    return None


def sum_reshape(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """sum(reshape(t)) -> reshape(sum(t)) when the reshape leaves the summed axes and all
    later ones alone (it only renames or regroups leading sizes)."""
    (a,) = i
    if not _free(a, "reshape", ctx) or not node.attr("axes"):
        return None
    t = a.inputs[0]
    first = min(node.attr("axes"))
    if t.ndim != a.ndim or t.shape[first:] != a.shape[first:]:
        return None
    inner = ctx.settle(Tensor.make(node.op, (t,), node.attrs))
    return inner if inner.shape == node.shape else ctx.settle(OPS["reshape"](inner, shape=node.shape))


def sum_sum(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """sum(sum(x, a1), a2) -> sum(x, a1 + a2) (both without or both with keepdims)."""
    (a,) = i
    if not _free(a, "sum", ctx) or a.attr("keepdims") != node.attr("keepdims") or a.dtype != node.dtype:
        return None
    x = a.inputs[0]
    inner = a.attr("axes")
    if node.attr("keepdims"):
        outer = node.attr("axes")
    else:
        rest = [k for k in range(x.ndim) if k not in inner]
        outer = tuple(rest[k] for k in node.attr("axes"))
    axes = tuple(sorted(set(inner) | set(outer)))
    return ctx.settle(OPS["sum"](x, axes=axes, keepdims=node.attr("keepdims")))


def sum_one_hot(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """sum(one_hot(y), axis=-1) -> 1 (one 1 per row; labels out of range raise)."""
    (a,) = i
    if a.op.name == "one_hot" and node.attr("axes") == (a.ndim - 1,) and other_uses(ctx, a, node) > 0:
        return full_like_shape(1, node.shape, node.dtype)
    return None


def sum_where_one_hot(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """sum(where(one_hot(y), a, 0), axis=-1) -> a when a is the same along that axis: each
    row holds a once and zeros elsewhere, so the sum is a exactly (inf and NaN included;
    labels out of range raise in the one_hot, which keeps its other use)."""
    (w,) = i
    if not _free(w, "where", ctx):
        return None
    c, a, b = w.inputs
    if c.op.name != "one_hot" or node.attr("axes") != (w.ndim - 1,) or other_uses(ctx, c, w) == 0:
        return None
    if const_value(b, ctx.blocked) != 0 or (a.ndim == w.ndim and a.shape[-1] != 1):
        return None
    if a.ndim == w.ndim and not node.attr("keepdims"):
        a = F.reshape(a, a.shape[:-1])
    return fit(a, node)


# -- cast, where, elementwise broadcasting ----------------------------------------------------------
_EXACT_CASTS = {("int32", "int64"), ("int32", "float64"), ("float32", "float64")}


def cast_cast(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    (a,) = i
    if not _free(a, "cast", ctx):
        return None
    x = a.inputs[0]
    if x.dtype != "bool" and (x.dtype, a.dtype) not in _EXACT_CASTS:
        return None
    return F.cast(x, node.dtype)


def where_same(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    c, a, b = i
    if a is b:
        return fit(a, node)
    v = const_value(c, ctx.blocked)
    if v is True:
        return fit(a, node)
    if v is False:
        return fit(b, node)
    if _free(c, "logical_not", ctx):  # branches swap: keep the node's (symbolic) sizes
        return fit(ctx.settle(Tensor.make(node.op, (c.inputs[0], b, a), node.attrs)), node)
    return None


def where_select(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """where(c, a, 0) -> cast(c) * a for a known finite (exact: a * 1 = a, a * 0 = 0);
    one_hot conditions become float one_hots, so one_hot algebra applies downstream."""
    c, a, b = i
    if node.dtype not in FLOATS or const_value(b, ctx.blocked) != 0 or not known_finite(a):
        return None
    if c.op.name == "one_hot" and not ctx.is_blocked(c):
        mask = F.one_hot(c.inputs[0], c.attr("depth"), node.dtype)
    else:
        mask = F.cast(c, node.dtype)
    return fit(ctx.settle(F.mul(mask, a)), node)


def elementwise_unbroadcast(node: Tensor, i: Inputs, ctx: Ctx) -> Tensor | None:
    """op(broadcast_to(x), y) -> op(x, y), broadcast after the op if still needed:
    elementwise ops commute with broadcasting, and the op then runs on fewer elements."""
    changed = False
    new = []
    for t in i:
        if t.op.name == "broadcast_to" and not ctx.is_blocked(t):
            t = t.inputs[0]
            changed = True
        elif t.op.name == "reshape" and not ctx.is_blocked(t) and \
                _strip_ones(t.shape) == _strip_ones(t.inputs[0].shape) and t.inputs[0].ndim < t.ndim:
            t = t.inputs[0]
            changed = True
        new.append(t)
    if not changed:
        return None
    shape, _ = broadcast_shapes(node.op.name, [t.shape for t in new])
    if len(shape) > node.ndim:
        return None
    inner = ctx.settle(Tensor.make(node.op, tuple(new), node.attrs))
    return fit(inner, node)


def table() -> dict[str, list[tuple[str, RuleFn]]]:
    """The rules by op name (every elementwise op also gets ``unbroadcast``)."""
    rules: dict[str, list[tuple[str, RuleFn]]] = {
        "mul": [("mul-const", mul_const), ("mul-neg", mul_neg)],
        "add": [("add-zero", add_zero), ("add-self", add_self), ("add-neg", add_neg),
                ("factor", factor_common)],
        "sub": [("sub-zero", sub_zero), ("sub-neg", sub_neg), ("sub-self", sub_self),
                ("factor", factor_common)],
        "neg": [("neg-neg", neg_neg)],
        "div": [("div-one", div_one), ("div-neg", div_neg)],
        "pow": [("pow-const", pow_const)],
        "exp": [("exp-log", exp_log)],
        "log": [("log-exp", log_exp)],
        "transpose": [("transpose-transpose", transpose_transpose),
                      ("transpose-scatter", transpose_scatter)],
        "slice": [("slice-broadcast", slice_broadcast)],
        "reshape": [("reshape-chain", reshape_chain)],
        "broadcast_to": [("broadcast-chain", broadcast_chain)],
        "sum": [("sum-empty", sum_empty), ("sum-broadcast", sum_broadcast),
                ("sum-factor", sum_factor), ("sum-neg", sum_neg), ("sum-one_hot", sum_one_hot),
                ("sum-where-one_hot", sum_where_one_hot),
                ("sum-reshape", sum_reshape), ("sum-sum", sum_sum)],
        "cast": [("cast-cast", cast_cast)],
        "where": [("where-same", where_same), ("where-select", where_select)],
    }
    for name, op in OPS.items():
        if op.kind == "elementwise":
            rules.setdefault(name, []).append(("unbroadcast", elementwise_unbroadcast))
    return rules


_CONSTISH = frozenset({"constant", "broadcast_to", "reshape", "transpose"})
_SHAPEISH = frozenset({"broadcast_to", "reshape"})


def triggers() -> dict[str, frozenset[str]]:
    """Which input ops can make a rule fire, by op (the others are skipped quickly)."""
    out = {
        "mul": _CONSTISH | {"neg"},
        "add": _CONSTISH | {"neg", "mul", "="},
        "sub": _CONSTISH | {"neg", "mul", "="},
        "div": _CONSTISH | {"neg"},
        "pow": _CONSTISH,
        "neg": _SHAPEISH | {"neg", "sub"},
        "exp": _SHAPEISH | {"log", "log_softmax"},
        "log": _SHAPEISH | {"exp"},
        "transpose": frozenset({"transpose", "reshape"}),
        "slice": frozenset({"broadcast_to"}),
        "reshape": frozenset({"reshape", "broadcast_to", "neg", "mul", "sum"}),
        "broadcast_to": frozenset({"reshape", "broadcast_to"}),
        "cast": _SHAPEISH | {"cast"},
    }
    for name, op in OPS.items():
        if op.kind == "elementwise" and name not in out and name != "where":
            out[name] = _SHAPEISH
    return out


@dataclass(frozen=True)
class Canonicalize:
    """Algebraic identities (x*1, x+0, --x, exp(log x), transpose and reshape chains, sum of
    a broadcast, ...), each taken only where it cannot hide a NaN; see the module doc."""

    name: str = "canonicalize"

    def run(self, outputs: Sequence[Tensor]) -> list[Tensor]:
        return run_table(self.name, table(), outputs, triggers=triggers())


__all__ = ["Canonicalize", "fit"]
