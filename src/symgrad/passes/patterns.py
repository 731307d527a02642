"""What the rewriting passes share: reading constants, value-range facts, protected
nodes, and a rule table applied to a local fixed point.

Protected nodes. Before autodiff a graph still holds derivative requests
(``grad(y, wrt, seed)``, ``jvp(y, x, v)``, ``jacobian(y, x)``: every ``transform`` op, whose
second operand is what it differentiates with respect to). A rewrite that looked
*through* ``wrt`` (say ``log(exp(wrt)) -> ...``, or ``x * wrt -> x`` for a constant ``wrt`` of
ones) would leave ``y`` without the node the derivative is asked for, and the derivative
would silently become zero. So those operands are protected: no rule fires on them, no
pattern matches across them, constants among them are not read as numbers, and no other
node is merged into them; they are only rebuilt over rewritten inputs.

Rule tables. A pass is a table ``op name -> [(rule name, rule)]``; :func:`run_table`
rebuilds the graph bottom-up and applies each node's rules until none fires (rules
settle the nodes they build with :meth:`Ctx.settle`, so results are local fixed points).
``triggers`` say which input ops a rule needs, so most nodes are skipped at the cost of
a set lookup, and a first dry scan returns the graph untouched when no rule can fire.
Every rule that fires is counted as ``<pass>/<rule>`` in the compiled function's report.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from symgrad.ir.dtypes import FLOATS
from symgrad.ir.graph import toposort_by_creation
from symgrad.ir.shape import Shape
from symgrad.ir.tensor import Tensor
from symgrad.ops.base import OPS
from symgrad.passes.manager import count_rewrite
from symgrad.passes.rewrite import rebuild, rewrite

Scalar = float | int | bool
# A rule returns the replacement, or (a more specific rule name, the replacement), or None.
RuleFn = Callable[[Tensor, tuple[Tensor, ...], "Ctx"], "Tensor | tuple[str, Tensor] | None"]

# -- constants ------------------------------------------------------------------------------
_uniform_cache: dict[str, Scalar | None] = {}


def _uniform(data: Any) -> Scalar | None:
    arr = data.array
    if arr.size == 1:
        return arr.item()
    hit = _uniform_cache.get(data.digest, _uniform_cache)
    if hit is not _uniform_cache:
        return hit  # type: ignore[return-value]
    value: Scalar | None = None
    if arr.size:
        first = arr.flat[0]
        if arr.dtype.kind == "f" and np.isnan(first):
            same = bool(np.isnan(arr).all())
        else:
            same = bool((arr == first).all())
            if same and arr.dtype.kind == "f" and first == 0:
                same = bool((np.signbit(arr) == np.signbit(first)).all())
        if same:
            value = first.item()
    if len(_uniform_cache) > 4096:
        _uniform_cache.clear()
    _uniform_cache[data.digest] = value
    return value


_SEE_THROUGH = frozenset({"broadcast_to", "reshape", "transpose"})


_NONE: frozenset[int] = frozenset()


def const_value(t: Tensor, blocked: set[int] | frozenset[int] = _NONE) -> Scalar | None:
    """The value of ``t`` when it is a constant whose elements are all equal (looking
    through broadcasts, reshapes and transposes), else ``None``; also ``None`` when one of
    those nodes is in ``blocked`` (a protected node must not be folded away)."""
    name = t.op.name
    while name in _SEE_THROUGH:
        if blocked and id(t) in blocked:
            return None
        t = t.inputs[0]
        name = t.op.name
    if name != "constant" or (blocked and id(t) in blocked):
        return None
    return _uniform(t.attrs[0][1])


def is_const_number(t: Tensor, value: float, blocked: set[int] | frozenset[int] = _NONE) -> bool:
    """``t`` is the constant ``value`` (signed zeros compare equal)."""
    v = const_value(t, blocked)
    return v is not None and not isinstance(v, bool) and v == value


def scalar_const(value: Scalar, dtype: str) -> Tensor:
    from symgrad.ir.tensor import constant

    return constant(np.asarray(value, dtype=dtype))


def full_like_shape(value: Scalar, shape: Shape, dtype: str) -> Tensor:
    c = scalar_const(value, dtype)
    return c if shape == () else OPS["broadcast_to"](c, shape=tuple(shape))


# -- value facts ------------------------------------------------------------------------------
_BOUNDED = frozenset({"sigmoid", "tanh", "sin", "cos", "erf", "sign", "neg", "abs", "relu",
                      "broadcast_to", "reshape", "transpose", "slice", "floor", "ceil", "round"})
_NONNEG = frozenset({"exp", "sqrt", "abs", "sigmoid", "softplus", "relu", "softmax"})


def known_finite(t: Tensor, depth: int = 8) -> bool:
    """``t`` can hold no NaN or infinity, whatever the inputs (a conservative answer).

    True for integer and bool tensors, finite constants, sizes, ``one_hot``, casts from
    integers or bools, ``where`` of finite branches, and bounded functions and shape ops
    of finite values. Sums and products are never assumed finite (they can overflow).
    """
    if t.dtype not in FLOATS:
        return True
    name = t.op.name
    if name == "constant":
        return bool(np.isfinite(t.attr("value").array).all())
    if name in ("dim", "one_hot"):
        return True
    if depth <= 0:
        return False
    if name == "cast":
        return known_finite(t.inputs[0], depth - 1)
    if name == "where":
        return known_finite(t.inputs[1], depth - 1) and known_finite(t.inputs[2], depth - 1)
    if name in _BOUNDED:
        return known_finite(t.inputs[0], depth - 1)
    return False


def known_nonneg_or_nan(t: Tensor) -> bool:
    """Every element of ``t`` is >= 0 or NaN (so ``exp(log(t)) == t``)."""
    name = t.op.name
    if name in _NONNEG or name == "one_hot":
        return True
    if name == "mul" and t.inputs[0] is t.inputs[1]:
        return True
    if name == "constant":
        arr = t.attr("value").array
        return bool(((arr >= 0) | np.isnan(arr)).all()) if arr.dtype.kind == "f" else bool((arr >= 0).all())
    if name in ("broadcast_to", "reshape", "transpose"):
        return known_nonneg_or_nan(t.inputs[0])
    return False


# -- the rule engine ---------------------------------------------------------------------------
def protected_ids(order: Sequence[Tensor]) -> set[int]:
    """The nodes derivative requests differentiate with respect to."""
    return {id(n.inputs[1]) for n in order if n.op.kind == "transform"}


@dataclass
class Ctx:
    """What a rule sees besides the node: protection, and a way to settle new nodes."""

    prefix: str
    table: dict[str, list[tuple[str, RuleFn]]]
    # op name -> the input ops without which no rule of that op can fire ("=": two equal
    # operands); ops not listed always try their rules
    triggers: dict[str, frozenset[str]] = field(default_factory=dict)
    blocked: set[int] = field(default_factory=set)
    settled: dict[int, tuple[Tensor, Tensor]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    max_steps: int = 16
    dry: bool = False  # looking for work only: fire nothing, count nothing

    def is_blocked(self, t: Tensor) -> bool:
        return id(t) in self.blocked

    def apply(self, node: Tensor, inputs: tuple[Tensor, ...]) -> Tensor | None:
        """Rewrite ``node`` (with ``inputs``) until no rule fires; None if none did."""
        out: Tensor | None = None
        cur, cur_inputs = node, inputs
        for _ in range(self.max_steps):
            name = cur.op.name
            fns = self.table.get(name)
            if not fns:
                break
            trig = self.triggers.get(name)
            if trig is not None:
                for t in cur_inputs:
                    if t.op.name in trig:
                        break
                else:
                    if not ("=" in trig and len(cur_inputs) > 1 and cur_inputs[0] is cur_inputs[1]):
                        break
            r: Tensor | None = None
            for rule_name, fn in fns:
                hit = fn(cur, cur_inputs, self)
                if isinstance(hit, tuple):
                    rule_name, hit = hit
                if hit is not None and hit is not cur:
                    r = hit
                    if self.dry:
                        return r
                    count_rewrite(f"{self.prefix}/{rule_name}")
                    break
            if r is None:
                break
            if r.shape != cur.shape or r.dtype != cur.dtype:  # pragma: no cover - a rule bug
                raise AssertionError(f"{self.prefix}/{rule_name} changed {cur.dtype}{cur.shape} "
                                     f"into {r.dtype}{r.shape}")
            out = cur = r
            cur_inputs = r.inputs
        return out

    def settle(self, t: Tensor) -> Tensor:
        """``t`` (built by a rule from settled parts) rewritten to a local fixed point."""
        hit = self.settled.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1]
        r = self.apply(t, t.inputs)
        out = t if r is None else r
        self.settled[id(t)] = (t, out)
        return out


def run_table(
    prefix: str,
    table: dict[str, list[tuple[str, RuleFn]]],
    outputs: Sequence[Tensor],
    order: Sequence[Tensor] | None = None,
    data: dict[str, Any] | None = None,
    triggers: dict[str, frozenset[str]] | None = None,
) -> list[Tensor]:
    """Rewrite ``outputs`` bottom-up with the rules in ``table`` (keyed by op name);
    ``data`` is handed to the rules as ``ctx.data``; see :class:`Ctx` for ``triggers``."""
    order = toposort_by_creation(outputs) if order is None else order
    protected = protected_ids(order)
    ctx = Ctx(prefix, table, triggers or {}, data=dict(data or {}))
    ctx.data["outputs"] = outputs
    # Find the first node a rule fires on; none: the graph is already canonical, and
    # rebuilding it would only cost time. Nodes before it keep their inputs, so no rule
    # fires on them in the rebuild either.
    ctx.blocked.update(protected)
    ctx.dry = True
    first = -1
    for k, n in enumerate(order):
        if n.op.name in table and id(n) not in protected and ctx.apply(n, n.inputs) is not None:
            first = k
            break
    ctx.dry = False
    ctx.settled.clear()  # settled while dry: fixed points were not reached nor counted
    if first < 0:
        return list(outputs)
    position = iter(range(len(order)))

    if not protected:
        def rule(node: Tensor, inputs: tuple[Tensor, ...]) -> Tensor | None:
            if next(position) < first:
                return None
            return ctx.apply(node, inputs) if node.op.name in table else None

        return rewrite(outputs, rule, order)

    def guarded(node: Tensor, inputs: tuple[Tensor, ...]) -> Tensor | None:
        if next(position) < first:
            return None
        if id(node) in protected:
            kept = rebuild(node, inputs)
            ctx.blocked.add(id(kept))
            return kept
        if node.op.name not in table:
            return None
        out = ctx.apply(node, inputs)
        if out is not None and id(out) in ctx.blocked:  # never merge a node into a protected one
            return rebuild(node, inputs)
        return out

    return rewrite(outputs, guarded, order)


def other_uses(ctx: Ctx, t: Tensor, user: Tensor) -> int:
    """How often the pass's input graph uses ``t`` other than as an input of ``user``."""
    counts: dict[int, int] | None = ctx.data.get("users")
    if counts is None:
        counts = {}
        for n in toposort_by_creation(ctx.data["outputs"]):
            counts.setdefault(id(n), 0)
            for i in n.inputs:
                counts[id(i)] = counts.get(id(i), 0) + 1
        ctx.data["users"] = counts
    if id(user) in counts:  # ``user`` is a node of the input graph: discount its own use
        return counts.get(id(t), 0) - sum(1 for i in user.inputs if i is t)
    return counts.get(id(t), 0)
