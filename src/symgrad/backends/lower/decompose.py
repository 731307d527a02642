"""Rewrite composite ops into the primitives the kernel form handles.

``logsumexp``, ``softmax`` and ``log_softmax`` become max / exp / sum / log chains that
follow their NumPy references step by step (the max shift is replaced by 0 where it is
not finite, as the references do), so fusion can put the elementwise work around each
reduction into the reduction's kernel. Reductions over axes of static size 1 only are
reshapes (plus the dtype change a sum of integers makes).

Convolutions become im2col + matrix products: the input is padded, each kernel tap is a
strided view of it, the taps are stacked into an (N, C*kh*kw, Ho*Wo) matrix and multiplied
by the weights; the adjoints scatter tap by tap into a padded zero tensor and crop (col2im).
Pooling takes the maximum or sum over the tap views; its gradients pick the first maximum
tap by tap. Each follows its NumPy reference's order of operations, so results agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import symgrad.ops.api as F
from symgrad.ir import shape as S
from symgrad.ir.graph import toposort
from symgrad.ir.shape import Size
from symgrad.ir.tensor import Tensor
from symgrad.ops.base import Info, Op
from symgrad.passes.rewrite import rewrite

_REDUCTIONS = ("sum", "max", "min", "prod", "argmax", "argmin")


def _finite_or_zero(m: Tensor) -> Tensor:
    return F.where(F.less(F.abs(m), np.inf), m, 0.0)


def _has_static_zero(shape: tuple[Size, ...], axes: Sequence[int]) -> bool:
    return any(shape[a] == 0 for a in axes)


def _logsumexp(x: Tensor, axes: tuple[int, ...], keepdims: bool, shape: tuple[Size, ...]) -> Tensor:
    kept = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
    if _has_static_zero(x.shape, axes):
        out = F.full(kept, -np.inf, x.dtype)
    else:
        m = _finite_or_zero(_reduce("max", x, axes, True))
        out = F.add(F.log(_reduce("sum", F.exp(F.sub(x, m)), axes, True)), m)
    return F.reshape(out, shape)


def _softmax(x: Tensor, axis: int) -> Tensor:
    if _has_static_zero(x.shape, (axis,)):
        return F.full(x.shape, 0.0, x.dtype)
    m = _finite_or_zero(_reduce("max", x, (axis,), True))
    e = F.exp(F.sub(x, m))
    return F.div(e, _reduce("sum", e, (axis,), True))


def _reduce(op: str, x: Tensor, axes: Sequence[int], keepdims: bool) -> Tensor:
    """Reduction ``op`` of ``x`` over ``axes``, with axes of static size 1 dropped (and no
    reduction at all when none is left)."""
    axes = tuple(axes)
    node = F.OPS[op](x, axes=axes, keepdims=keepdims)
    real = tuple(a for a in axes if x.shape[a] != 1)
    if real == axes and real:
        return node
    if not real:
        if op in ("argmax", "argmin"):
            return F.full(node.shape, 0, "int64")
        return F.reshape(F.cast(x, node.dtype), node.shape)
    return F.reshape(F.OPS[op](x, axes=real, keepdims=True), node.shape)


def _reduction(node: Tensor, x: Tensor) -> Tensor | None:
    out = _reduce(node.op.name, x, node.attr("axes"), node.attr("keepdims"))
    return None if out is node else out


# -- convolution and pooling: padding, one strided view per kernel tap, matrix products ------
Pair = tuple[int, int]


def _pad(x: Tensor, padding: Pair, value: float) -> Tensor:
    """``x`` (N, C, H, W) padded by ``padding`` on both sides of H and W with ``value``."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    if value == 0.0:
        index = ((0, n, 1), (0, c, 1), (ph, S.add(h, ph), 1), (pw, S.add(w, pw), 1))
        return F.OPS["slice_grad"](x, index=index, shape=(n, c, S.add(h, 2 * ph), S.add(w, 2 * pw)))
    if ph:
        band = F.full((n, c, ph, w), value, x.dtype)
        x = F.concatenate([band, x, band], 2)
    if pw:
        band = F.full((n, c, x.shape[2], pw), value, x.dtype)
        x = F.concatenate([band, x, band], 3)
    return x


def _tap_index(shape: tuple[Size, ...], a: int, b: int, out_hw: tuple[Size, Size], stride: Pair,
               dilation: Pair) -> tuple[tuple[Size, Size, int], ...]:
    """Slice index of tap (a, b) of every window of a padded (N, C, Hp, Wp) tensor."""
    (ho, wo), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return ((0, shape[0], 1), (0, shape[1], 1),
            (a * dh, S.add(a * dh + 1, S.mul(sh, S.sub(ho, 1))), sh),
            (b * dw, S.add(b * dw + 1, S.mul(sw, S.sub(wo, 1))), sw))


def _tap(xp: Tensor, a: int, b: int, out_hw: tuple[Size, Size], stride: Pair,
         dilation: Pair) -> Tensor:
    return F.OPS["slice"](xp, index=_tap_index(xp.shape, a, b, out_hw, stride, dilation), checks=())


def _scatter_taps(parts: list[tuple[int, int, Tensor]], in_hw: tuple[Size, Size], padding: Pair,
                  out_hw: tuple[Size, Size], stride: Pair, dilation: Pair) -> Tensor:
    """Add each tap's (N, C, Ho, Wo) values at its window positions of a zero (N, C, H, W)
    tensor padded by ``padding`` (in tap order), then drop the padding (col2im)."""
    (h, w), (ph, pw) = in_hw, padding
    first = parts[0][2]
    n, c = first.shape[0], first.shape[1]
    padded = (n, c, S.add(h, 2 * ph), S.add(w, 2 * pw))
    total: Tensor | None = None
    for a, b, v in parts:
        index = _tap_index(padded, a, b, out_hw, stride, dilation)
        term = F.OPS["slice_grad"](v, index=index, shape=padded)
        total = term if total is None else F.add(total, term)
    assert total is not None
    if ph == 0 and pw == 0:
        return total
    crop = ((0, n, 1), (0, c, 1), (ph, S.add(h, ph), 1), (pw, S.add(w, pw), 1))
    return F.OPS["slice"](total, index=crop, checks=())


def _im2col(x: Tensor, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair,
            out_hw: tuple[Size, Size]) -> Tensor:
    """The windows of ``x`` as an (N, C*kh*kw, Ho*Wo) matrix per example."""
    xp = _pad(x, padding, 0.0)
    taps = [_tap(xp, a, b, out_hw, stride, dilation)
            for a in range(kernel[0]) for b in range(kernel[1])]
    cols = F.stack(taps, 2) if len(taps) > 1 else F.expand_dims(taps[0], 2)
    n, c = x.shape[0], x.shape[1]
    return F.reshape(cols, (n, S.mul(c, kernel[0] * kernel[1]), S.mul(out_hw[0], out_hw[1])))


def _conv(node: Tensor, inputs: tuple[Tensor, ...]) -> Tensor:
    name = node.op.name
    stride, padding, dilation = (node.attr(k) for k in ("stride", "padding", "dilation"))
    if name == "conv2d":
        x, w = inputs
        o, c, kh, kw = w.shape
        assert isinstance(kh, int) and isinstance(kw, int)  # kernel sizes are static
        out_hw = (node.shape[2], node.shape[3])
        cols = _im2col(x, (kh, kw), stride, padding, dilation, out_hw)
        out = F.matmul(F.reshape(w, (o, S.mul(c, kh * kw))), cols)
        return F.reshape(out, node.shape)
    if name == "conv2d_grad_weight":
        x, g = inputs
        o, c, kh, kw = node.attr("w_shape")
        out_hw = (g.shape[2], g.shape[3])
        cols = _im2col(x, (kh, kw), stride, padding, dilation, out_hw)
        g3 = F.reshape(g, (g.shape[0], g.shape[1], S.mul(out_hw[0], out_hw[1])))
        per_example = F.matmul(g3, F.swapaxes(cols, 1, 2))
        return F.reshape(_reduce("sum", per_example, (0,), False), node.shape)
    g, w = inputs  # conv2d_grad_input
    o, c, kh, kw = w.shape
    assert isinstance(kh, int) and isinstance(kw, int)
    n, _, ho, wo = g.shape
    cols = F.matmul(F.transpose(F.reshape(w, (o, S.mul(c, kh * kw)))),
                    F.reshape(g, (n, o, S.mul(ho, wo))))
    cols6 = F.reshape(cols, (n, c, kh, kw, ho, wo))
    parts = [(a, b, cols6[:, :, a, b]) for a in range(kh) for b in range(kw)]
    return _scatter_taps(parts, node.attr("in_hw"), padding, (ho, wo), stride, dilation)


def _first_max_tap(x: Tensor, kernel: Pair, stride: Pair, padding: Pair,
                   out_hw: tuple[Size, Size]) -> Tensor:
    """For every window, the row-major number of the tap holding its first maximum."""
    xp = _pad(x, padding, -np.inf)
    best = _tap(xp, 0, 0, out_hw, stride, (1, 1))
    tap = F.full(best.shape, 0, "int64")
    for k in range(1, kernel[0] * kernel[1]):
        cand = _tap(xp, k // kernel[1], k % kernel[1], out_hw, stride, (1, 1))
        nan_c, nan_b = F.not_equal(cand, cand), F.not_equal(best, best)
        wins = F.logical_or(F.greater(cand, best), F.logical_and(nan_c, F.logical_not(nan_b)))
        best = F.where(wins, cand, best)
        tap = F.where(wins, k, tap)
    return tap


def _pool(node: Tensor, inputs: tuple[Tensor, ...]) -> Tensor:
    name = node.op.name
    kernel, stride, padding = (node.attr(k) for k in ("kernel", "stride", "padding"))
    taps = [(k // kernel[1], k % kernel[1]) for k in range(kernel[0] * kernel[1])]
    if name in ("max_pool2d", "avg_pool2d"):
        (x,) = inputs
        out_hw = (node.shape[2], node.shape[3])
        xp = _pad(x, padding, -np.inf if name == "max_pool2d" else 0.0)
        views = [_tap(xp, a, b, out_hw, stride, (1, 1)) for a, b in taps]
        out = views[0]
        for v in views[1:]:
            out = F.maximum(out, v) if name == "max_pool2d" else F.add(out, v)
        return out if name == "max_pool2d" else F.div(out, float(len(taps)))
    if name == "avg_pool2d_grad":
        (g,) = inputs
        share = F.div(g, float(len(taps)))
        return _scatter_taps([(a, b, share) for a, b in taps], node.attr("in_hw"), padding,
                             (g.shape[2], g.shape[3]), stride, (1, 1))
    x, t = inputs
    if name == "max_pool2d_grad":  # t: the cotangent of the pooled output
        out_hw = (t.shape[2], t.shape[3])
        tap = _first_max_tap(x, kernel, stride, padding, out_hw)
        parts = [(a, b, F.where(F.equal(tap, k), t, 0.0)) for k, (a, b) in enumerate(taps)]
        return _scatter_taps(parts, (x.shape[2], x.shape[3]), padding, out_hw, stride, (1, 1))
    out_hw = (node.shape[2], node.shape[3])  # max_pool2d_gather: t has x's shape
    tap = _first_max_tap(x, kernel, stride, padding, out_hw)
    tp = _pad(t, padding, 0.0)
    out = F.full(node.shape, 0.0, node.dtype)
    for k, (a, b) in enumerate(taps):
        out = F.where(F.equal(tap, k), _tap(tp, a, b, out_hw, stride, (1, 1)), out)
    return out


_CONV = ("conv2d", "conv2d_grad_input", "conv2d_grad_weight")
_POOL = ("max_pool2d", "max_pool2d_grad", "max_pool2d_gather", "avg_pool2d", "avg_pool2d_grad")


def _rule(node: Tensor, inputs: tuple[Tensor, ...]) -> Tensor | None:
    name = node.op.name
    if name in _CONV:
        return _conv(node, inputs)
    if name in _POOL:
        return _pool(node, inputs)
    if name == "logsumexp":
        return _logsumexp(inputs[0], node.attr("axes"), node.attr("keepdims"), node.shape)
    if name == "softmax":
        return _softmax(inputs[0], node.attr("axis"))
    if name == "log_softmax":
        x = inputs[0]
        ax = node.attr("axis")
        kept = tuple(1 if i == ax else s for i, s in enumerate(x.shape))
        return F.sub(x, _logsumexp(x, (ax,), True, kept))
    if name in _REDUCTIONS:
        return _reduction(node, inputs[0])
    return None


# -- sums of slice_grad: one buffer, one scatter per term ---------------------------------
def _scatter_sum_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    return Info(attrs["shape"], inputs[0].dtype)


SCATTER_SUM = Op(
    "scatter_sum", "index", _scatter_sum_infer, None,
    doc="scatter_sum(d_1..d_m, a_1..a_k; dense=m, indices, shape): d_1 + ... + d_m (zeros "
    "when m = 0) with each a_j added into the slice ``indices[j]``. Made by lowering from a "
    "sum of slice_grads (the gradient of slicing a tensor several ways); never built by users.")


def _scatter_sums(outputs: list[Tensor]) -> list[Tensor]:
    """Replace each maximal tree of ``add`` (same shape throughout) with at least one
    ``slice_grad`` leaf used nowhere else by one ``scatter_sum``: the terms go into one
    buffer instead of a zero-filled full-size tensor each plus the additions."""
    order = toposort(outputs)
    n_users: dict[int, int] = {}
    for n in order:
        for i in n.inputs:
            n_users[id(i)] = n_users.get(id(i), 0) + 1
    for o in outputs:
        n_users[id(o)] = n_users.get(id(o), 0) + 1

    def tree(root: Tensor, inner: list[Tensor], dense: list[Tensor], scatter: list[Tensor]) -> None:
        # depth first, left operand first, on an explicit stack: an unrolled loop's
        # gradient is a chain of thousands of additions
        stack = [root]
        while stack:
            n = stack.pop()
            single = n is root or n_users.get(id(n), 0) == 1
            if single and n is not root and n.op.name == "slice_grad" and n.dtype == root.dtype:
                scatter.append(n)
            elif single and n.op.name == "add" and all(i.shape == root.shape for i in n.inputs):
                inner.append(n)
                stack.append(n.inputs[1])
                stack.append(n.inputs[0])
            else:
                dense.append(n)

    claimed: set[int] = set()
    plans: dict[int, tuple[list[Tensor], list[Tensor]]] = {}
    walked: set[int] = set()  # inner nodes of trees without a slice_grad leaf
    for n in reversed(order):  # users before inputs: the largest trees first
        if id(n) in claimed or id(n) in walked or n.op.name != "add" \
                or n.dtype not in ("float32", "float64"):
            continue
        inner: list[Tensor] = []
        dense: list[Tensor] = []
        scatter: list[Tensor] = []
        tree(n, inner, dense, scatter)
        if scatter:
            plans[id(n)] = (dense, scatter)
            claimed.update(id(m) for m in inner + scatter)
        else:  # a subtree has a subset of these leaves: none is tried as a root again
            walked.update(id(m) for m in inner)
    if not plans:
        return list(outputs)
    new: dict[int, Tensor] = {}
    for n in order:
        plan = plans.get(id(n))
        if plan is not None:
            dense, scatter = plan
            args = [new[id(d)] for d in dense] + [new[id(t.inputs[0])] for t in scatter]
            new[id(n)] = SCATTER_SUM(*args, dense=len(dense), shape=n.shape,
                                     indices=tuple(t.attr("index") for t in scatter))
        else:
            inputs = tuple(new[id(i)] for i in n.inputs)
            same = all(a is b for a, b in zip(inputs, n.inputs))
            new[id(n)] = n if same else Tensor.make(n.op, inputs, n.attrs)
    return [new[id(o)] for o in outputs]


def decompose(outputs: Sequence[Tensor]) -> list[Tensor]:
    """The same values computed with primitive reductions and elementwise ops only."""
    return _scatter_sums(rewrite(outputs, _rule))
