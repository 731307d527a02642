"""Reductions, shape ops, matrix products and indexing."""

from __future__ import annotations

from typing import Any

import numpy as np

import symgrad.ops.api as F
from symgrad.errors import DTypeError, ShapeError, op_error
from symgrad.ir import shape as S
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.shape import Shape, Size, shape_str
from symgrad.ir.tensor import Tensor
from symgrad.ops.base import Check, Info, Op, broadcast_shapes, register, shapes_of


def _kept_shape(shape: Shape, axes: tuple[int, ...]) -> Shape:
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _reduced_shape(shape: Shape, axes: tuple[int, ...], keepdims: bool) -> Shape:
    if keepdims:
        return _kept_shape(shape, axes)
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _expand(g: Tensor, x: Tensor, axes: tuple[int, ...]) -> Tensor:
    """Bring a reduced tensor back to ``x``'s shape by broadcasting."""
    return F.broadcast_to(F.reshape(g, _kept_shape(x.shape, axes)), x.shape)


# -- reductions -------------------------------------------------------------------------------
def _reduction_infer(name: str, dtype_rule: str) -> Any:
    def infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
        (x,) = inputs
        axes = attrs["axes"]
        if any(not 0 <= a < max(x.ndim, 1) for a in axes) or (x.ndim == 0 and axes):
            raise op_error(ShapeError, name, f"axes {axes} out of range", shape_str(x.shape))
        if name in ("max", "min", "argmax", "argmin"):
            for a in axes:
                if x.shape[a] == 0:
                    raise op_error(ShapeError, name, f"zero-size axis {a} has no {name[-3:]}",
                                   shape_str(x.shape))
        if dtype_rule == "sum":
            dtype = x.dtype if x.dtype in FLOATS else "int64"
        elif dtype_rule == "index":
            dtype = "int64"
        elif dtype_rule == "float":
            if x.dtype not in FLOATS:
                raise op_error(DTypeError, name, f"needs a float operand, got {x.dtype}",
                               shape_str(x.shape))
            dtype = x.dtype
        else:
            dtype = x.dtype
        return Info(_reduced_shape(x.shape, axes, attrs["keepdims"]), dtype)

    return infer


def _sum_pullback(node: Tensor, g: Tensor) -> list[Tensor | None]:
    (x,) = node.inputs
    if x.dtype not in FLOATS:
        return [None]
    return [_expand(g, x, node.attr("axes"))]


def _extremum_pullback(node: Tensor, g: Tensor) -> list[Tensor | None]:
    (x,) = node.inputs
    if x.dtype not in FLOATS:
        return [None]
    axes = node.attr("axes")
    mask = F.cast(F.equal(x, _expand(node, x, axes)), x.dtype)
    count = F.sum(mask, axes, keepdims=True)
    return [F.div(F.mul(_expand(g, x, axes), mask), count)]


def _prod_pullback(node: Tensor, g: Tensor) -> list[Tensor | None]:
    """d prod(x) / dx_i = prod_{k != i} x_k, as A_i * B_i: A_i the product of the other
    non-zero elements, B_i that of the other zeros (Z, the zeros of x).

    Each factor is written so that its own derivative is right at zeros too, which
    makes second derivatives exact there: A_i = prod(where(Z, 1, x)) / where(Z, 1, x)_i
    does not depend on the zeros; B_i is prod(where(Z, x, 1)) off Z, and on Z (with m
    zeros) 1 for m = 1, the other zero x_j for m = 2 (sum of x over Z, less x_i), and 0
    for m >= 3, whose value and gradient are then 0 (so third derivatives at points with
    three or more zeros are not exact).
    """
    (x,) = node.inputs
    if x.dtype not in FLOATS:
        return [None]
    axes = node.attr("axes")
    is_zero = F.equal(x, 0)
    zeros = F.sum(F.cast(is_zero, x.dtype), axes, keepdims=True)
    nonzero = F.where(is_zero, 1, x)
    others_nonzero = F.div(F.prod(nonzero, axes, keepdims=True), nonzero)
    zero_prod = F.prod(F.where(is_zero, x, 1), axes, keepdims=True)
    zero_sum = F.sum(F.where(is_zero, x, 0), axes, keepdims=True)
    on_zero = F.where(F.equal(zeros, 1), 1, F.where(F.equal(zeros, 2), F.sub(zero_sum, x), 0))
    others_zero = F.where(is_zero, on_zero, zero_prod)
    return [F.mul(_expand(g, x, axes), F.mul(others_nonzero, others_zero))]


def _sum_pushforward(node: Tensor, t: list[Tensor | None]) -> Tensor | None:
    if t[0] is None:
        return None
    return F.sum(t[0], node.attr("axes"), node.attr("keepdims"))


def _reduction_pushforward(node: Tensor, t: list[Tensor | None]) -> Tensor | None:
    """Forward mode for a reduction y_j = f(x_j,:): dy_j = sum_i dy_j/dx_ji t_ji, where the
    partials are the pullback of a ones cotangent."""
    if t[0] is None or node.op.pullback is None:
        return None
    (partials,) = node.op.pullback(node, F.ones_like(node))
    if partials is None:  # not differentiable in its operand (an integer one)
        return None
    return F.sum(F.mul(t[0], partials), node.attr("axes"), node.attr("keepdims"))


def _np_reduce(fn: Any) -> Any:
    def ref(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.asarray(fn(x, axis=axes, keepdims=keepdims))

    return ref


def _np_sum(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    out = np.sum(x, axis=axes, keepdims=keepdims)
    return np.asarray(out, dtype=x.dtype if x.dtype.kind == "f" else np.int64)


def _np_arg(fn: Any) -> Any:
    def ref(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
        return np.asarray(fn(x, axis=axes[0], keepdims=keepdims), dtype=np.int64)

    return ref


def _np_logsumexp(x: np.ndarray, *, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    if x.size == 0:
        return np.asarray(np.log(np.sum(np.exp(x), axis=axes, keepdims=keepdims)))
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    if not keepdims:
        out = np.squeeze(out, axis=axes)
    return np.asarray(out, dtype=x.dtype)


register(Op("sum", "reduction", _reduction_infer("sum", "sum"), _np_sum,
            pullback=_sum_pullback, pushforward=_sum_pushforward,
            doc="Sum over ``axes``. d/dx = 1 (the cotangent is broadcast back).",
            numpy_expr="np.sum({0}, axis={axes}, keepdims={keepdims})"))
register(Op("max", "reduction", _reduction_infer("max", "same"), _np_reduce(np.max),
            pullback=_extremum_pullback, pushforward=_reduction_pushforward,
            doc="Max over ``axes``. The cotangent is shared evenly among tied maxima.",
            numpy_expr="np.max({0}, axis={axes}, keepdims={keepdims})"))
register(Op("min", "reduction", _reduction_infer("min", "same"), _np_reduce(np.min),
            pullback=_extremum_pullback, pushforward=_reduction_pushforward,
            doc="Min over ``axes``. The cotangent is shared evenly among tied minima.",
            numpy_expr="np.min({0}, axis={axes}, keepdims={keepdims})"))
register(Op("prod", "reduction", _reduction_infer("prod", "sum"), _np_reduce(np.prod),
            pullback=_prod_pullback, pushforward=_reduction_pushforward,
            doc="Product over ``axes``. d/dx_i = prod of the others, exact at zeros "
            "(one zero: only it gets a nonzero gradient; two or more: all zero); second "
            "derivatives are exact at zeros too.",
            numpy_expr="np.prod({0}, axis={axes}, keepdims={keepdims})"))
register(Op("argmax", "reduction", _reduction_infer("argmax", "index"), _np_arg(np.argmax),
            nondiff="integer result", doc="Index of the first maximum along one axis."))
register(Op("argmin", "reduction", _reduction_infer("argmin", "index"), _np_arg(np.argmin),
            nondiff="integer result", doc="Index of the first minimum along one axis."))


def _lse_pullback(node: Tensor, g: Tensor) -> list[Tensor | None]:
    (x,) = node.inputs
    axes = node.attr("axes")
    return [F.mul(_expand(g, x, axes), F.exp(F.sub(x, _expand(node, x, axes))))]


register(Op("logsumexp", "reduction", _reduction_infer("logsumexp", "float"), _np_logsumexp,
            pullback=_lse_pullback, pushforward=_reduction_pushforward,
            doc="log(sum(exp(x))) over ``axes``, shifted by the max so it cannot overflow. "
            "d/dx = softmax(x)."))


def _axis_infer(name: str) -> Any:
    def infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
        (x,) = inputs
        if x.dtype not in FLOATS:
            raise op_error(DTypeError, name, f"needs a float operand, got {x.dtype}",
                           shape_str(x.shape))
        if not 0 <= attrs["axis"] < x.ndim:
            raise op_error(ShapeError, name, f"axis {attrs['axis']} out of range",
                           shape_str(x.shape))
        return Info(x.shape, x.dtype)

    return infer


def _np_softmax(x: np.ndarray, *, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True) if x.size else 0
    e = np.exp(x - np.where(np.isfinite(m), m, 0))
    return np.asarray(e / np.sum(e, axis=axis, keepdims=True), dtype=x.dtype)


def _np_log_softmax(x: np.ndarray, *, axis: int) -> np.ndarray:
    # (x - m) - log(sum(exp(x - m))): x - m is exact, so large logits keep full precision
    m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros((), x.dtype)
    s = x - np.where(np.isfinite(m), m, 0)
    return np.asarray(s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True)), dtype=x.dtype)


def _softmax_pullback(node: Tensor, g: Tensor) -> list[Tensor | None]:
    ax = node.attr("axis")
    return [F.mul(node, F.sub(g, F.sum(F.mul(g, node), ax, keepdims=True)))]


def _log_softmax_pullback(node: Tensor, g: Tensor) -> list[Tensor | None]:
    ax = node.attr("axis")
    return [F.sub(g, F.mul(F.exp(node), F.sum(g, ax, keepdims=True)))]


register(Op("softmax", "reduction", _axis_infer("softmax"), _np_softmax,
            pullback=_softmax_pullback,
            pushforward=lambda n, t: None if t[0] is None else _softmax_pullback(n, t[0])[0],
            doc="exp(x)/sum(exp(x)) along ``axis`` (shifted by the max). "
            "Pullback: s * (g - sum(g * s))."))
register(Op("log_softmax", "reduction", _axis_infer("log_softmax"), _np_log_softmax,
            pullback=_log_softmax_pullback,
            pushforward=lambda n, t: None if t[0] is None else F.sub(
                t[0], F.sum(F.mul(t[0], F.exp(n)), n.attr("axis"), keepdims=True)),
            doc="x - logsumexp(x) along ``axis``. Pullback: g - softmax(x) * sum(g)."))


# -- shape ops ---------------------------------------------------------------------------------
def _reshape_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    (x,) = inputs
    shape = attrs["shape"]
    a, b = x.size, S.prod(shape)
    checks: tuple[Check, ...] = ()
    if a != b:
        if isinstance(a, int) and isinstance(b, int):
            raise op_error(ShapeError, "reshape",
                           f"cannot reshape {a} elements into {shape_str(shape)}",
                           shape_str(x.shape))
        checks = (("==", a, b, f"reshape to {shape_str(shape)}"),)
    return Info(shape, x.dtype, checks)


register(Op("reshape", "shape", _reshape_infer,
            lambda x, *, shape: np.reshape(x, shape),
            pullback=lambda n, g: [F.reshape(g, n.inputs[0].shape)],
            pushforward=lambda n, t: None if t[0] is None else F.reshape(t[0], n.shape),
            doc="Same elements, new shape (C order). Pullback: reshape back.",
            numpy_expr="np.reshape({0}, {shape})"))


def _transpose_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    (x,) = inputs
    perm = attrs["perm"]
    if sorted(perm) != list(range(x.ndim)):
        raise op_error(ShapeError, "transpose", f"{perm} is not a permutation",
                       shape_str(x.shape))
    return Info(tuple(x.shape[p] for p in perm), x.dtype)


register(Op("transpose", "shape", _transpose_infer,
            lambda x, *, perm: np.transpose(x, perm),
            pullback=lambda n, g: [F.transpose(g, tuple(np.argsort(n.attr("perm"))))],
            pushforward=lambda n, t: None if t[0] is None else F.transpose(t[0], n.attr("perm")),
            doc="Permute axes. Pullback: the inverse permutation.",
            numpy_expr="np.transpose({0}, {perm})"))


def _broadcast_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    (x,) = inputs
    target = attrs["shape"]
    if len(target) < x.ndim:
        raise op_error(ShapeError, "broadcast_to", f"cannot broadcast to {shape_str(target)}",
                       shape_str(x.shape))
    checks: list[Check] = []
    for s, t in zip(x.shape, target[len(target) - x.ndim:]):
        if s == 1 or s == t:
            continue
        if isinstance(s, int) and isinstance(t, int):
            raise op_error(ShapeError, "broadcast_to",
                           f"cannot broadcast to {shape_str(target)}", shape_str(x.shape))
        checks.append(("==", s, t, "broadcast_to"))
    return Info(target, x.dtype, tuple(checks))


register(Op("broadcast_to", "shape", _broadcast_infer,
            lambda x, *, shape: np.broadcast_to(x, shape),
            pullback=lambda n, g: [F.sum_to(g, n.inputs[0].shape)],
            pushforward=lambda n, t: None if t[0] is None else F.broadcast_to(t[0], n.shape),
            doc="Repeat along broadcast axes. Pullback: sum over them.",
            numpy_expr="np.broadcast_to({0}, {shape})"))


def _concat_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    ax = attrs["axis"]
    first = inputs[0]
    checks: list[Check] = []
    total: Size = 0
    for t in inputs:
        if t.ndim != first.ndim or t.dtype != first.dtype:
            raise op_error(ShapeError, "concatenate", "operands differ in rank or dtype",
                           shapes_of(inputs))
        for i, (a, b) in enumerate(zip(first.shape, t.shape)):
            if i == ax or a == b:
                continue
            if isinstance(a, int) and isinstance(b, int):
                raise op_error(ShapeError, "concatenate", f"sizes differ at axis {i}",
                               shapes_of(inputs))
            checks.append(("==", a, b, f"concatenate: axis {i}"))
        total = S.add(total, t.shape[ax])
    shape = list(first.shape)
    shape[ax] = total
    return Info(tuple(shape), first.dtype, tuple(checks))


def _concat_pullback(node: Tensor, g: Tensor) -> list[Tensor | None]:
    ax = node.attr("axis")
    out: list[Tensor | None] = []
    offset: Size = 0
    for t in node.inputs:
        end = S.add(offset, t.shape[ax])
        index = tuple((offset, end, 1) if i == ax else (0, s, 1) for i, s in enumerate(g.shape))
        out.append(F.OPS["slice"](g, index=index, checks=()))
        offset = end
    return out


def _concat_pushforward(node: Tensor, t: list[Tensor | None]) -> Tensor | None:
    if all(x is None for x in t):
        return None
    parts = [x if x is not None else F.zeros_like(i) for x, i in zip(t, node.inputs)]
    return F.concatenate(parts, node.attr("axis"))


register(Op("concatenate", "shape", _concat_infer,
            lambda *xs, axis: np.concatenate(xs, axis=axis),
            pullback=_concat_pullback, pushforward=_concat_pushforward,
            doc="Join along ``axis``. Pullback: the matching slice of the cotangent.",
            numpy_expr="np.concatenate([{args}], axis={axis})"))


def _slice_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    (x,) = inputs
    index = attrs["index"]
    if len(index) != x.ndim:
        raise op_error(ShapeError, "slice", f"index of rank {len(index)} for rank {x.ndim}",
                       shape_str(x.shape))
    shape: list[Size] = []
    for start, stop, step in index:
        if isinstance(start, int) and isinstance(stop, int):
            shape.append(len(range(start, stop, step)) if step < 0 or stop >= start else 0)
        else:
            shape.append(S.floordiv(S.add(S.sub(stop, start), step - 1), step))
    return Info(tuple(shape), x.dtype, attrs.get("checks", ()))


def _np_slice_of(start: int, stop: int, step: int) -> slice:
    """A normalized (start, stop, step), as ``slice.indices`` gives it, as a Python slice.

    With a negative step, -1 stands for "before element 0", which Python would read as the
    last element: a stop of -1 becomes None, and a start of -1 means the slice is empty.
    """
    if step > 0:
        return slice(start, stop, step)
    if start < 0:
        return slice(0, 0, 1)
    return slice(start, None if stop < 0 else stop, step)


def _np_slices(index: tuple[tuple[int, int, int], ...]) -> tuple[slice, ...]:
    return tuple(_np_slice_of(*triple) for triple in index)


def _np_slice(x: np.ndarray, *, index: Any, checks: Any = ()) -> np.ndarray:
    return x[_np_slices(index)]


def _slice_grad_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    (g,) = inputs
    return Info(attrs["shape"], g.dtype)


def _np_slice_grad(g: np.ndarray, *, index: Any, shape: Any) -> np.ndarray:
    out = np.zeros(shape, dtype=g.dtype)
    out[_np_slices(index)] = g
    return out


register(Op("slice", "shape", _slice_infer, _np_slice,
            pullback=lambda n, g: [F.OPS["slice_grad"](g, index=n.attr("index"),
                                                       shape=n.inputs[0].shape)],
            pushforward=lambda n, t: None if t[0] is None else F.OPS["slice"](
                t[0], index=n.attr("index"), checks=n.attr("checks")),
            doc="Basic slicing: per axis (start, stop, step). Pullback: slice_grad."))
register(Op("slice_grad", "shape", _slice_grad_infer, _np_slice_grad,
            pullback=lambda n, g: [F.OPS["slice"](g, index=n.attr("index"), checks=())],
            pushforward=lambda n, t: None if t[0] is None else F.OPS["slice_grad"](
                t[0], index=n.attr("index"), shape=n.attr("shape")),
            doc="Zeros of ``shape`` with the operand written into the slice ``index`` "
            "(the adjoint of slice). Pullback: slice."))


# -- matrix product -----------------------------------------------------------------------------
def _matmul_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    a, b = inputs
    if a.dtype != b.dtype or a.dtype == "bool":
        raise op_error(DTypeError, "matmul", f"operands must share a numeric dtype, got "
                       f"{a.dtype} and {b.dtype}", shapes_of(inputs))
    if a.ndim < 2 or b.ndim < 2:
        raise op_error(ShapeError, "matmul", "primitive matmul needs rank >= 2 operands",
                       shapes_of(inputs))
    checks: list[Check] = []
    k1, k2 = a.shape[-1], b.shape[-2]
    if k1 != k2:
        if isinstance(k1, int) and isinstance(k2, int):
            raise op_error(ShapeError, "matmul",
                           f"contracted sizes differ: {k1} (axis -1 of a) vs {k2} (axis -2 of b)",
                           shapes_of(inputs))
        checks.append(("==", k1, k2, "matmul: contracted axis"))
    try:
        batch, bchecks = broadcast_shapes("matmul", [a.shape[:-2], b.shape[:-2]])
    except ShapeError:  # say it with the whole operand shapes
        raise op_error(ShapeError, "matmul", f"cannot broadcast batch axes {shape_str(a.shape[:-2])}"
                       f" and {shape_str(b.shape[:-2])}", shapes_of(inputs)) from None
    return Info((*batch, a.shape[-2], b.shape[-1]), a.dtype, tuple(checks) + bchecks)


def _matmul_pullback(node: Tensor, g: Tensor) -> list[Tensor | None]:
    a, b = node.inputs
    return [F.matmul(g, F.swapaxes(b, -1, -2)), F.matmul(F.swapaxes(a, -1, -2), g)]


def _matmul_pushforward(node: Tensor, t: list[Tensor | None]) -> Tensor | None:
    a, b = node.inputs
    out = None
    if t[0] is not None:
        out = F.matmul(t[0], b)
    if t[1] is not None:
        term = F.matmul(a, t[1])
        out = term if out is None else F.add(out, term)
    return out


register(Op("matmul", "linalg", _matmul_infer, np.matmul,
            pullback=_matmul_pullback, pushforward=_matmul_pushforward,
            doc="Batched matrix product a @ b (rank >= 2, batch axes broadcast). "
            "Pullback: g @ b^T and a^T @ g (summed over broadcast batch axes).",
            numpy_expr="({0} @ {1})"))


# -- indexing ------------------------------------------------------------------------------------
def _take_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    x, idx = inputs
    ax = attrs["axis"]
    if idx.dtype != "int64":
        raise op_error(DTypeError, "take", f"indices must be int64, got {idx.dtype}")
    return Info((*x.shape[:ax], *idx.shape, *x.shape[ax + 1:]), x.dtype)


def _np_take(x: np.ndarray, idx: np.ndarray, *, axis: int) -> np.ndarray:
    n = x.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = idx[(idx < -n) | (idx >= n)].flat[0]
        raise IndexError(f"take: index {bad} is out of range for axis {axis} of size {n}")
    return np.take(x, idx, axis=axis)


def _take_grad_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    g, idx = inputs
    ax, size = attrs["axis"], attrs["size"]
    return Info((*g.shape[:ax], size, *g.shape[ax + idx.ndim:]), g.dtype)


def _np_take_grad(g: np.ndarray, idx: np.ndarray, *, axis: int, size: int) -> np.ndarray:
    pre = g.shape[:axis]
    post = g.shape[axis + idx.ndim:]
    out = np.zeros((*pre, size, *post), dtype=g.dtype)
    flat_idx = idx.reshape(-1) % max(size, 1)
    g3 = g.reshape(int(np.prod(pre)), flat_idx.size, int(np.prod(post)))
    o3 = out.reshape(int(np.prod(pre)), size, int(np.prod(post)))
    where: Any = (slice(None), flat_idx, slice(None))
    np.add.at(o3, where, g3)
    return out


register(Op("take", "index", _take_infer, _np_take,
            pullback=lambda n, g: [
                F.OPS["take_grad"](g, n.inputs[1], axis=n.attr("axis"),
                                   size=n.inputs[0].shape[n.attr("axis")])
                if n.dtype in FLOATS else None,
                None,
            ],
            pushforward=lambda n, t: None if t[0] is None else F.OPS["take"](
                t[0], n.inputs[1], axis=n.attr("axis")),
            doc="Gather along ``axis`` with integer indices. Pullback: take_grad "
            "(scatter-add; repeated indices accumulate). Indices are not differentiable."))
register(Op("take_grad", "index", _take_grad_infer, _np_take_grad,
            pullback=lambda n, g: [F.OPS["take"](g, n.inputs[1], axis=n.attr("axis")), None],
            pushforward=lambda n, t: None if t[0] is None else F.OPS["take_grad"](
                t[0], n.inputs[1], axis=n.attr("axis"), size=n.attr("size")),
            doc="Scatter-add the operand into zeros with ``size`` entries along ``axis`` "
            "(the adjoint of take). Pullback: take."))


def _one_hot_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    (lab,) = inputs
    if attrs["depth"] < 0:
        raise op_error(ShapeError, "one_hot", f"depth {attrs['depth']} is negative",
                       shape_str(lab.shape))
    return Info((*lab.shape, attrs["depth"]), attrs["dtype"])


def _np_one_hot(lab: np.ndarray, *, depth: int, dtype: str) -> np.ndarray:
    if lab.size and (lab.min() < 0 or lab.max() >= depth):
        bad = lab[(lab < 0) | (lab >= depth)].flat[0]
        raise IndexError(f"one_hot: label {bad} is out of range [0, {depth})")
    return (lab[..., None] == np.arange(depth)).astype(dtype)


register(Op("one_hot", "index", _one_hot_infer, _np_one_hot, nondiff="integer input",
            doc="one_hot(labels)[..., k] = (labels == k). Labels outside [0, depth) are an "
            "error at call time. Not differentiable."))
