"""The batching transform: run a graph for many values of some inputs at once.

``vectorize(outputs, {node: batched}, B)`` rewrites the graph so that ``node`` is
replaced by ``batched`` (its shape with a leading axis of size ``B``) and every value
that depends on it gains the same leading axis. Jacobians and Hessians use it over the
seed of a vjp or jvp: one batched backward (or forward) graph instead of ``B`` copies.

Rules go by op kind (all elementwise ops share one, reductions shift their axes) with
specific rules for shape, indexing and matrix ops. Convolution-style ops that treat
their leading axis as a batch are batched by merging the two leading axes.

Basis seeds stay symbolic. A Jacobian batches over the standard basis (an identity
matrix), and everything linear in it stays sparse: a value of node shape ``s`` batched
over the basis is kept as a few *bands*, ``out[j, i] = coef[i] if j == b + a . i else 0``
(``coef`` of shape ``s``, an affine batch index ``b + a . i``), so an elementwise chain, a
slice, a ``slice_grad`` or a sum along the band costs what the unbatched node costs, not
``n`` times that. Linear ops map bands to bands (``mul`` and ``div`` by unbatched values,
``add``/``sub``/``neg``, shape ops, sums that keep the band, one-band casts, ``where`` with
an unbatched condition and a zero branch, products that do not contract the band's
axes); any other use turns the bands into a dense batched tensor: one strided
``slice_grad`` per band (or per ``slice_grad`` piece of its coefficient) into the
flattened ``(n, *s)`` result, where the positions form an arithmetic progression, else a
``take_grad`` scatter at computed positions (a transposed band, a band over a sub-block). The structural zeros stay exact
zeros: where a dense identity seed would give ``0 * inf = nan`` off the band, the bands
give 0, the derivative's value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import symgrad.ops.api as F
from symgrad.errors import UnsupportedError
from symgrad.ir import shape as S
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.graph import toposort_by_creation
from symgrad.ir.shape import Size
from symgrad.ir.tensor import Tensor
from symgrad.ops.base import OPS

Rule = Callable[[Tensor, list[Tensor], list[bool], Size], Tensor]

# ops whose first operand's leading axis is a batch axis and whose other operands are
# shared: batched by folding B into that axis
MERGE_LEADING = {"conv2d", "conv2d_grad_input", "max_pool2d", "avg_pool2d", "avg_pool2d_grad",
                 "max_pool2d_grad", "max_pool2d_gather"}


def _lift(t: Tensor, rank: int) -> Tensor:
    """A batched value (B, *shape) padded with size-1 axes to logical rank ``rank``."""
    logical = t.ndim - 1
    if logical >= rank:
        return t
    return F.reshape(t, (t.shape[0], *([1] * (rank - logical)), *t.shape[1:]))


def _make(node: Tensor, inputs: list[Tensor], **changes: Any) -> Tensor:
    attrs = dict(node.attrs)
    attrs.update(changes)
    return Tensor.make(node.op, tuple(inputs), tuple(sorted(attrs.items())))


def _elementwise(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    r = node.ndim
    return _make(node, [_lift(a, r) if b else a for a, b in zip(args, batched)])


def _shift_axes(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    if node.attr("axes") is not None:
        return _make(node, args, axes=tuple(a + 1 for a in node.attr("axes")))
    return _make(node, args, axis=node.attr("axis") + 1)


def _reshape(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    return F.reshape(args[0], (B, *node.shape))


def _transpose(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    return F.transpose(args[0], (0, *(p + 1 for p in node.attr("perm"))))


def _broadcast(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    return F.broadcast_to(_lift(args[0], node.ndim), (B, *node.shape))


def _matmul(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    a, b = node.inputs
    rank = max(a.ndim, b.ndim)
    ins = [_lift(x, rank) if bt else x for x, bt in zip(args, batched)]
    return Tensor.make(node.op, tuple(ins), node.attrs)


def _slice(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    return _make(node, args, index=((0, B, 1), *node.attr("index")))


def _slice_grad(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    return _make(node, args, index=((0, B, 1), *node.attr("index")), shape=(B, *node.shape))


def _concatenate(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    ins = [a if b else F.broadcast_to(a, (B, *a.shape)) for a, b in zip(args, batched)]
    return _make(node, ins, axis=node.attr("axis") + 1)


def _indexed(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    if batched[1]:
        raise UnsupportedError(f"batching: {node.op.name} with batched indices")
    return _make(node, args, axis=node.attr("axis") + 1)


def _merge_leading(node: Tensor, args: list[Tensor], batched: list[bool], B: Size) -> Tensor:
    if any(batched[1:]):
        raise UnsupportedError(f"batching: {node.op.name} with a batched second operand "
                               f"(built at {node.loc})")
    x = args[0]
    merged = F.reshape(x, (S.mul(B, x.shape[1]), *x.shape[2:]))
    out = Tensor.make(node.op, (merged, *args[1:]), node.attrs)
    return F.reshape(out, (B, *node.shape))


RULES: dict[str, Rule] = {
    "reshape": _reshape,
    "transpose": _transpose,
    "broadcast_to": _broadcast,
    "matmul": _matmul,
    "slice": _slice,
    "slice_grad": _slice_grad,
    "concatenate": _concatenate,
    "take": _indexed,
    "take_grad": _indexed,
}


def rule_for(name: str) -> Rule | None:
    if name in RULES:
        return RULES[name]
    op = OPS.get(name)
    if op is None:
        return None
    if "batch" in op.extra:
        rule: Rule = op.extra["batch"]
        return rule
    if op.kind == "elementwise":
        return _elementwise
    if op.kind == "reduction":
        return _shift_axes
    if name in MERGE_LEADING:
        return _merge_leading
    return None


# -- bands: values batched over a basis seed, kept sparse ------------------------------------
MAX_BANDS = 16  # more bands than this: the value is made dense


@dataclass(frozen=True)
class Band:
    """``out[j, i] = coef[i]`` where ``j == offset + sum(a[d] * i[d])``, else 0."""

    coef: Tensor
    a: tuple[int, ...]
    offset: int


@dataclass(frozen=True)
class Bands:
    """A batched value of static node shape ``shape``: the sum of its bands."""

    shape: tuple[int, ...]
    dtype: str
    bands: tuple[Band, ...]


def _static(shape: tuple[Size, ...]) -> tuple[int, ...] | None:
    out = tuple(s for s in shape if isinstance(s, int))
    return out if len(out) == len(shape) else None


def _strides(shape: Sequence[int]) -> tuple[int, ...]:
    out, acc = [], 1
    for s in reversed(shape):
        out.append(acc)
        acc *= s
    return tuple(reversed(out))


def basis_bands(seed: Tensor, B: Size) -> Bands | None:
    """The bands of a stacked standard basis ``reshape(one_hot(arange(n), n), (n, *s))``
    (what :func:`symgrad.passes.autodiff.jacobian` seeds with), else None."""
    t = seed
    while t.op.name == "reshape":
        t = t.inputs[0]
    if t.op.name != "one_hot" or t.inputs[0].op.name != "arange" or not isinstance(B, int):
        return None
    shape = _static(seed.shape[1:])
    if shape is None or t.attr("depth") != B or t.inputs[0].attr("size") != B or S.prod(shape) != B:
        return None
    ones = F.full(shape, 1, seed.dtype)
    return Bands(shape, seed.dtype, (Band(ones, _strides(shape), 0),))


def _merge(bands: Sequence[Band], shape: tuple[int, ...], dtype: str) -> Bands | None:
    by_key: dict[tuple[tuple[int, ...], int], Tensor] = {}
    for b in bands:
        key = (b.a, b.offset)
        prev = by_key.get(key)
        by_key[key] = b.coef if prev is None else F.add(prev, b.coef)
    if len(by_key) > MAX_BANDS:
        return None
    return Bands(shape, dtype, tuple(Band(c, a, off) for (a, off), c in by_key.items()))


def _broadcast_a(a: tuple[int, ...], frm: Sequence[Size], to: Sequence[Size]) -> tuple[int, ...]:
    """Band coefficients of a value broadcast from shape ``frm`` to ``to``."""
    lead = len(to) - len(frm)
    return (0,) * lead + tuple(0 if f == 1 else c for f, c in zip(frm, a))


def _to_shape(v: Bands, shape: tuple[int, ...]) -> list[Band]:
    if v.shape == shape:
        return list(v.bands)
    return [Band(F.broadcast_to(b.coef, shape), _broadcast_a(b.a, v.shape, shape), b.offset)
            for b in v.bands]


def _is_zero(t: Any) -> bool:
    from symgrad.passes.patterns import const_value

    return isinstance(t, Tensor) and const_value(t) == 0


BandRule = Callable[[Tensor, list["Tensor | Bands"], list[bool]], "Bands | None"]


def _band_linear(node: Tensor, args: list[Tensor | Bands], batched: list[bool]) -> Bands | None:
    """add, sub, neg, mul, div, cast, where: the elementwise ops linear in banded operands."""
    shape = _static(node.shape)
    if shape is None:
        return None
    name = node.op.name
    if name in ("add", "sub"):
        x, y = args
        if not (isinstance(x, Bands) and isinstance(y, Bands)):
            return None
        ys = _to_shape(y, shape)
        if name == "sub":
            ys = [Band(F.neg(b.coef), b.a, b.offset) for b in ys]
        return _merge(_to_shape(x, shape) + ys, shape, node.dtype)
    if name == "neg":
        (x,) = args
        assert isinstance(x, Bands), f"batching {name}: the operand is not banded"
        return Bands(shape, node.dtype, tuple(Band(F.neg(b.coef), b.a, b.offset) for b in x.bands))
    if name in ("mul", "div"):
        k = [i for i, f in enumerate(batched) if f]
        if len(k) != 1 or (name == "div" and k != [0]):
            return None
        x = args[k[0]]
        assert isinstance(x, Bands), f"batching {name}: the batched operand is not banded"
        out = []
        for b in _to_shape(x, shape):
            out.append(Band(Tensor.make(node.op, _replaced(args, k[0], b.coef), node.attrs),
                            b.a, b.offset))
        return Bands(shape, node.dtype, tuple(out))
    if name == "cast":
        (x,) = args
        assert isinstance(x, Bands), f"batching {name}: the operand is not banded"
        if len(x.bands) != 1 or node.dtype not in FLOATS:  # a cast of a sum is not the sum of the casts
            return None
        (b,) = x.bands
        return Bands(shape, node.dtype, (Band(F.cast(b.coef, node.dtype), b.a, b.offset),))
    if name == "where":
        c, x, y = args
        if batched[0] or not all(isinstance(v, Bands) or _is_zero(v) for v in (x, y)):
            return None
        assert isinstance(c, Tensor), "batching where: the condition is batched"
        zero = F.zeros(shape, node.dtype)
        out = []
        for v, first in ((x, True), (y, False)):
            if isinstance(v, Bands):
                for b in _to_shape(v, shape):
                    sel = (c, b.coef, zero) if first else (c, zero, b.coef)
                    out.append(Band(Tensor.make(node.op, sel, node.attrs), b.a, b.offset))
        return _merge(out, shape, node.dtype)
    return None


def _replaced(args: list[Tensor | Bands], k: int, coef: Tensor) -> tuple[Tensor, ...]:
    """``args`` with the batched one (number ``k``) replaced by a band's coefficient; the
    others are plain tensors."""
    out = []
    for i, a in enumerate(args):
        v = coef if i == k else a
        assert isinstance(v, Tensor), "batching: an unbatched operand is banded"
        out.append(v)
    return tuple(out)


def _band_each(node: Tensor, args: list[Tensor | Bands],
               fn: Callable[[Band, tuple[int, ...]], Band | None]) -> Bands | None:
    """Apply ``fn`` to each band of the one (banded) operand."""
    shape = _static(node.shape)
    x = args[0]
    if shape is None or not isinstance(x, Bands):
        return None
    out = []
    for b in x.bands:
        nb = fn(b, shape)
        if nb is None:
            return None
        out.append(nb)
    return _merge(out, shape, node.dtype)


def _band_slice(node: Tensor, args: list[Tensor | Bands], batched: list[bool]) -> Bands | None:
    index = node.attr("index")
    if not all(isinstance(v, int) for row in index for v in row):
        return None

    def fn(b: Band, shape: tuple[int, ...]) -> Band:
        a = tuple(ad * step for ad, (_, _, step) in zip(b.a, index))
        off = b.offset + sum(ad * start for ad, (start, _, _) in zip(b.a, index))
        return Band(Tensor.make(node.op, (b.coef,), node.attrs), a, off)

    return _band_each(node, args, fn)


def _band_slice_grad(node: Tensor, args: list[Tensor | Bands], batched: list[bool]) -> Bands | None:
    index = node.attr("index")
    counts = node.inputs[0].shape
    if not all(isinstance(v, int) for row in index for v in row):
        return None

    def fn(b: Band, shape: tuple[int, ...]) -> Band | None:
        # i_new = start + step * i_old, so a_old . i_old = (a_old / step) . (i_new - start)
        a: list[int] = []
        off = b.offset
        for ad, (start, _, step), n in zip(b.a, index, counts):
            if n == 1 or ad == 0:
                a.append(0)
            elif ad % step:
                return None
            else:
                a.append(ad // step)
                off -= (ad // step) * start
        return Band(Tensor.make(node.op, (b.coef,), node.attrs), tuple(a), off)

    return _band_each(node, args, fn)


def _band_transpose(node: Tensor, args: list[Tensor | Bands], batched: list[bool]) -> Bands | None:
    perm = node.attr("perm")
    return _band_each(node, args, lambda b, shape: Band(
        Tensor.make(node.op, (b.coef,), node.attrs), tuple(b.a[p] for p in perm), b.offset))


def _band_broadcast(node: Tensor, args: list[Tensor | Bands], batched: list[bool]) -> Bands | None:
    frm = node.inputs[0].shape
    return _band_each(node, args, lambda b, shape: Band(
        F.broadcast_to(b.coef, shape), _broadcast_a(b.a, frm, shape), b.offset))


def _band_reshape(node: Tensor, args: list[Tensor | Bands], batched: list[bool]) -> Bands | None:
    frm = _static(node.inputs[0].shape)
    if frm is None:
        return None
    old = _strides(frm)

    def fn(b: Band, shape: tuple[int, ...]) -> Band | None:
        coef = F.reshape(b.coef, shape)
        real = [(ad, st) for ad, st, n in zip(b.a, old, frm) if n != 1]
        if [n for n in frm if n != 1] == [n for n in shape if n != 1]:
            it = iter(ad for ad, _ in real)
            return Band(coef, tuple(0 if n == 1 else next(it) for n in shape), b.offset)
        # a band affine in the flat index stays affine in any shape
        alpha = real[-1][0] if real else 0
        if any(ad != alpha * st for ad, st in real):
            return None
        return Band(coef, tuple(alpha * st for st in _strides(shape)), b.offset)

    return _band_each(node, args, fn)


def _band_sum(node: Tensor, args: list[Tensor | Bands], batched: list[bool]) -> Bands | None:
    axes, keep = node.attr("axes"), node.attr("keepdims")
    frm = node.inputs[0].shape

    def fn(b: Band, shape: tuple[int, ...]) -> Band | None:
        if any(b.a[d] != 0 and frm[d] != 1 for d in axes):
            return None  # the band runs along a summed axis
        a = tuple(0 if d in axes else ad for d, ad in enumerate(b.a) if keep or d not in axes)
        return Band(Tensor.make(node.op, (b.coef,), node.attrs), a, b.offset)

    return _band_each(node, args, fn)


def _band_matmul(node: Tensor, args: list[Tensor | Bands], batched: list[bool]) -> Bands | None:
    """A product that does not contract along the band: each band's coefficient times the
    other (unbatched) operand."""
    shape = _static(node.shape)
    if shape is None or batched[0] == batched[1]:
        return None
    k = 0 if batched[0] else 1
    x = args[k]
    assert isinstance(x, Bands), f"batching {node.op.name}: the batched operand is not banded"
    xs = node.inputs[k].shape
    contracted = len(xs) - 1 if k == 0 else len(xs) - 2
    out = []
    for b in x.bands:
        if b.a[contracted] != 0 and xs[contracted] != 1:
            return None
        frm = tuple(1 if d == contracted else n for d, n in enumerate(xs))
        coef = Tensor.make(node.op, _replaced(args, k, b.coef), node.attrs)
        out.append(Band(coef, _broadcast_a(b.a, frm, shape), b.offset))
    return _merge(out, shape, node.dtype)


def _band_concatenate(node: Tensor, args: list[Tensor | Bands], batched: list[bool]) -> Bands | None:
    """Each operand's bands moved to its place along the axis (zero operands drop out)."""
    shape = _static(node.shape)
    ax = node.attr("axis")
    if shape is None:
        return None
    out: list[Band] = []
    at = 0
    for x, inp in zip(args, node.inputs):
        n = inp.shape[ax]
        if not isinstance(n, int):
            return None
        if isinstance(x, Bands):
            index = tuple((at, at + n, 1) if d == ax else (0, s, 1) for d, s in enumerate(shape))
            for b in x.bands:
                coef = OPS["slice_grad"](b.coef, index=index, shape=shape)
                out.append(Band(coef, b.a, b.offset - b.a[ax] * at))
        elif not _is_zero(x):
            return None
        at += n
    return _merge(out, shape, node.dtype)


BAND_RULES: dict[str, BandRule] = {
    "add": _band_linear, "sub": _band_linear, "neg": _band_linear, "mul": _band_linear,
    "div": _band_linear, "cast": _band_linear, "where": _band_linear,
    "slice": _band_slice, "slice_grad": _band_slice_grad, "transpose": _band_transpose,
    "broadcast_to": _band_broadcast, "reshape": _band_reshape, "sum": _band_sum,
    "matmul": _band_matmul, "concatenate": _band_concatenate,
}


def _pieces(coef: Tensor, shape: tuple[int, ...], depth: int = 0
            ) -> list[tuple[Tensor, tuple[tuple[int, int], ...]]]:
    """``coef`` as a sum of pieces, each written at ``start + step * k`` per axis: the
    operands of ``slice_grad`` nodes (under a tree of ``add``) are written where they go
    instead of with the zeros around them."""
    ident = tuple((0, 1) for _ in shape)
    name = coef.op.name
    if depth > 32:
        return [(coef, ident)]
    if name == "add" and all(i.shape == coef.shape and i.dtype == coef.dtype for i in coef.inputs):
        parts = _pieces(coef.inputs[0], shape, depth + 1) + _pieces(coef.inputs[1], shape, depth + 1)
        if any(e != ident for _, e in parts):
            return parts
    if name == "slice_grad" and all(isinstance(v, int) for row in coef.attr("index") for v in row):
        inner = _static(coef.inputs[0].shape)
        if inner is not None and all(step > 0 for _, _, step in coef.attr("index")):
            out = []
            for p, emb in _pieces(coef.inputs[0], inner, depth + 1):
                out.append((p, tuple((start + step * s, step * t) for (s, t), (start, _, step)
                                     in zip(emb, coef.attr("index")))))
            return out
    return [(coef, ident)]


@dataclass(frozen=True)
class _Placement:
    """Where a piece of shape ``shape`` goes in the flattened ``(B, *node shape)`` result:
    element ``k`` to ``pos0 + sum(sig[d] * k[d])``, batch row ``j0 + sum(jk[d] * k[d])``."""

    shape: tuple[int, ...]
    pos0: int
    sig: tuple[int, ...]
    j0: int
    jk: tuple[int, ...]


def _place(p: Tensor, emb: tuple[tuple[int, int], ...], b: Band, shape: tuple[int, ...]) -> _Placement:
    P = S.prod(shape)
    assert isinstance(P, int), "batching: a banded value has a symbolic size"
    st = _strides(shape)
    pshape = _static(p.shape)
    assert pshape is not None, f"batching: a band piece has symbolic shape {p.shape}"
    j0 = b.offset + sum(ad * s for ad, (s, _) in zip(b.a, emb))
    pos0 = j0 * P + sum(s * sd for (s, _), sd in zip(emb, st))
    jk = tuple(0 if n == 1 else ad * t for ad, (_, t), n in zip(b.a, emb, pshape))
    sig = tuple(0 if n == 1 else k * P + t * sd for k, (_, t), sd, n in zip(jk, emb, st, pshape))
    return _Placement(pshape, pos0, sig, j0, jk)


def _strided_scatter(p: Tensor, pl: _Placement, B: int, size: int) -> Tensor | None | bool:
    """The piece written as one strided 1-D ``slice_grad`` into the flattened result, when
    its positions form one arithmetic progression in its own row-major order (True:
    nothing of it lies in the result; None: no progression)."""
    kst = _strides(pl.shape)
    real = [d for d, n in enumerate(pl.shape) if n != 1]
    dj = pl.jk[real[-1]] if real else 0
    ds = pl.sig[real[-1]] if real else 1
    if ds == 0 or any(pl.jk[d] != dj * kst[d] or pl.sig[d] != ds * kst[d] for d in real):
        return None
    count = S.prod(pl.shape)
    assert isinstance(count, int), "batching: a band piece has a symbolic size"
    j0 = pl.j0
    # keep the flat positions f whose batch row j0 + dj * f lies in [0, B)
    if dj == 0:
        lo, hi = (0, count) if 0 <= j0 < B else (0, 0)
    elif dj > 0:
        lo, hi = max(0, -(j0 // dj)), min(count, (B - 1 - j0) // dj + 1)
    else:
        lo, hi = max(0, (j0 - B) // -dj + 1), min(count, j0 // -dj + 1)
    if lo >= hi:
        return True
    flat = F.reshape(p, (count,))
    if ds > 0:
        if (lo, hi) != (0, count):
            flat = OPS["slice"](flat, index=((lo, hi, 1),), checks=())
        start = pl.pos0 + ds * lo
    else:  # write the progression from its low end: the piece reversed
        flat = OPS["slice"](flat, index=((hi - 1, lo - 1 if lo else -1, -1),), checks=())
        start, ds = pl.pos0 + ds * (hi - 1), -ds
    out: Tensor = OPS["slice_grad"](flat, index=((start, start + ds * (hi - lo - 1) + 1, ds),),
                                    shape=(size,))
    return out


def _axis_ramp(n: int, d: int, r: int, scale: int) -> Tensor:
    return F.mul(F.reshape(F.arange(n), tuple(n if k == d else 1 for k in range(r))), scale)


def _indexed_scatter(p: Tensor, pl: _Placement, B: int, size: int) -> Tensor:
    """The piece scatter-added (``take_grad``) at computed positions: for bands whose
    positions are no single progression (a transposed band, a band over a sub-block)."""
    r = len(pl.shape)
    count = S.prod(pl.shape)
    assert isinstance(count, int), "batching: a band piece has a symbolic size"
    pos: Tensor = F.full((1,) * r, pl.pos0, "int64")
    row: Tensor = F.full((1,) * r, pl.j0, "int64")
    for d, n in enumerate(pl.shape):
        if pl.sig[d]:
            pos = F.add(pos, _axis_ramp(n, d, r, pl.sig[d]))
        if pl.jk[d]:
            row = F.add(row, _axis_ramp(n, d, r, pl.jk[d]))
    pos = F.broadcast_to(pos, pl.shape)
    lo = pl.j0 + sum(min(0, k * (n - 1)) for k, n in zip(pl.jk, pl.shape))
    hi = pl.j0 + sum(max(0, k * (n - 1)) for k, n in zip(pl.jk, pl.shape))
    if lo < 0 or hi >= B:  # rows outside the result add a zero at position 0 instead
        keep = F.logical_and(F.greater_equal(row, 0), F.less(row, B))
        pos = F.where(keep, pos, 0)
        p = F.where(keep, p, F.zeros((), p.dtype))
    flat_pos = F.reshape(pos, (count,))
    out: Tensor = OPS["take_grad"](F.reshape(p, (count,)), flat_pos, axis=0, size=size)
    return out


def densify(v: Bands, B: int) -> Tensor:
    """The dense batched ``(B, *shape)`` tensor of a banded value: each band written into
    the flattened result by strided scatters of its pieces (see :func:`_pieces`), or of
    its whole coefficient, or else by an index scatter."""
    P = S.prod(v.shape)
    assert isinstance(P, int), "batching: a banded value has a symbolic size"
    size = B * P
    terms: list[Tensor] = []
    for b in v.bands:
        pieces = [(p, _place(p, emb, b, v.shape)) for p, emb in _pieces(b.coef, v.shape)]
        written = [_strided_scatter(p, pl, B, size) for p, pl in pieces]
        if any(w is None for w in written) and len(pieces) > 1:
            whole = (b.coef, _place(b.coef, tuple((0, 1) for _ in v.shape), b, v.shape))
            w = _strided_scatter(*whole, B, size)
            if w is not None:
                pieces, written = [whole], [w]
        for (p, pl), w in zip(pieces, written):
            if w is None:
                terms.append(_indexed_scatter(p, pl, B, size))
            elif isinstance(w, Tensor):
                terms.append(w)
    total: Tensor | None = None
    for t in terms:
        total = t if total is None else F.add(total, t)
    return F.zeros((B, *v.shape), v.dtype) if total is None else F.reshape(total, (B, *v.shape))


def vectorize(outputs: Sequence[Tensor], replace: Mapping[int, Tensor], B: Size) -> list[Tensor]:
    """Replace nodes by batched values and batch everything that depends on them.

    Returns each output with a leading axis of size ``B`` (outputs that do not depend on
    the replaced nodes are broadcast). A replacement that is a stacked standard basis
    (see :func:`basis_bands`) is carried as bands while the graph stays linear in it.
    """
    new: dict[int, tuple[Tensor | Bands, bool]] = {}
    made_dense: dict[int, Tensor] = {}  # banded values written out, once each

    def dense(node: Tensor) -> Tensor:
        v, _ = new[id(node)]
        if not isinstance(v, Bands):
            return v
        hit = made_dense.get(id(node))
        if hit is None:
            assert isinstance(B, int), f"batching {node.op.name}: bands over a symbolic batch size"
            hit = made_dense[id(node)] = densify(v, B)
        return hit

    def node_value(v: Tensor | Bands) -> Tensor:
        assert isinstance(v, Tensor), "batching: an unbatched value is banded"
        return v

    for node in toposort_by_creation(outputs):
        if id(node) in replace:
            seed = replace[id(node)]
            new[id(node)] = (basis_bands(seed, B) or seed, True)
            continue
        vals = [new[id(i)] for i in node.inputs]
        flags = [b for _, b in vals]
        if not any(flags):
            plain = [node_value(v) for v, _ in vals]
            same = all(a is i for a, i in zip(plain, node.inputs))
            new[id(node)] = (node if same else Tensor.make(node.op, tuple(plain), node.attrs), False)
            continue
        if any(isinstance(v, Bands) for v, _ in vals):
            band_rule = BAND_RULES.get(node.op.name)
            banded = band_rule(node, [v for v, _ in vals], flags) if band_rule is not None else None
            if banded is not None:
                new[id(node)] = (banded, True)
                continue
        args = [dense(i) if f else node_value(v) for i, (v, f) in zip(node.inputs, vals)]
        rule = rule_for(node.op.name)
        if rule is None:
            raise UnsupportedError(
                f"batching: no rule for op {node.op.name} (built at {node.loc}); Jacobians and "
                "Hessians through it are not supported"
            )
        new[id(node)] = (rule(node, args, flags, B), True)
    result = []
    for o in outputs:
        v, b = new[id(o)]
        if b:
            result.append(dense(o))
        else:
            assert isinstance(v, Tensor), f"batching {o.op.name}: an unbatched output is banded"
            result.append(F.broadcast_to(v, (B, *v.shape)))
    return result
