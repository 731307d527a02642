"""From a fused partition to kernels: index maps, scalar bodies, stores, loop orders.

Every value a kernel reads from outside itself comes from a *memory view*: a buffer plus
an element offset and one stride per axis of the value. Inputs, constants and stored
values are contiguous views; transposes, broadcasts, slices and reshapes of a view are
views too (a reshape only of a contiguous one), so they cost nothing. A value is stored
(given a buffer and a store in the kernel that computes it) only when something outside
its kernel reads it, or when it is an output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from symgrad.backends.base import Namer, Program
from symgrad.backends.lower.decompose import decompose
from symgrad.backends.lower.fusion import GENERATED_OPS, Group, category, partition, strip1
from symgrad.backends.lower.kernel import (
    Access,
    Buffer,
    Instr,
    Kernel,
    LibCall,
    LoopKernel,
    LoweredProgram,
    Reduction,
    Store,
    contiguous_strides,
)
from symgrad.backends.lower.memory import plan_buffers
from symgrad.errors import UnsupportedError
from symgrad.ir import shape as S
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.graph import toposort, users
from symgrad.ir.shape import Shape, Size
from symgrad.ir.tensor import Tensor

# an affine index map: per axis of a value, (offset, coefficient per domain axis)
AxisMap = tuple[Size, tuple[Size, ...]]
AMap = tuple[AxisMap, ...]


@dataclass(frozen=True)
class MemView:
    """A value laid out in memory: ``buffer[offset + sum(strides[j] * index[j])]``."""

    buffer: Buffer
    offset: Size
    strides: tuple[Size, ...]


def is_contiguous(mv: MemView, shape: Shape) -> bool:
    want = contiguous_strides(shape)
    return all(s == 1 or a == b for s, a, b in zip(shape, mv.strides, want))


def derive_view(node: Tensor, base: MemView) -> MemView | None:
    """The memory view of view op ``node`` over its input's view, or None (a reshape of a
    non-contiguous view)."""
    name = node.op.name
    x = node.inputs[0]
    st = base.strides
    if name == "transpose":
        return MemView(base.buffer, base.offset, tuple(st[p] for p in node.attr("perm")))
    if name == "broadcast_to":
        lead = node.ndim - x.ndim
        out: list[Size] = [0] * lead
        for j, s in enumerate(x.shape):
            out.append(0 if s == 1 else st[j])
        return MemView(base.buffer, base.offset, tuple(out))
    if name == "slice":
        offset = base.offset
        strides: list[Size] = []
        for (start, _stop, step), s in zip(node.attr("index"), st):
            offset = S.add(offset, S.mul(start, s))
            strides.append(S.mul(step, s))
        return MemView(base.buffer, offset, tuple(strides))
    if name == "reshape":
        if strip1(x.shape) == strip1(node.shape):
            real = iter(s for s, n in zip(st, x.shape) if n != 1)
            return MemView(base.buffer, base.offset,
                           tuple(0 if n == 1 else next(real) for n in node.shape))
        if is_contiguous(base, x.shape):
            return MemView(base.buffer, base.offset, contiguous_strides(node.shape))
        return None
    raise AssertionError(f"not a view op: {name}")


def compose(mv: MemView, amap: AMap, ndom: int) -> tuple[Size, tuple[Size, ...]]:
    """Offset and per-domain-axis coefficients of reading ``mv`` through ``amap``."""
    offset = mv.offset
    coeffs: list[Size] = [0] * ndom
    for stride, (off, co) in zip(mv.strides, amap):
        if stride == 0:
            continue
        offset = S.add(offset, S.mul(stride, off))
        for a, c in enumerate(co):
            if c != 0:
                coeffs[a] = S.add(coeffs[a], S.mul(stride, c))
    return offset, tuple(coeffs)


def _unit(a: int, n: int) -> tuple[Size, ...]:
    return tuple(1 if k == a else 0 for k in range(n))


def aligned_map(shape: Shape, axes: Sequence[int], ndom: int) -> AMap:
    """The map sending the non-1 axes of ``shape`` to domain ``axes`` in order."""
    it = iter(axes)
    out: list[AxisMap] = []
    zero: tuple[Size, ...] = (0,) * ndom
    for s in shape:
        out.append((0, zero) if s == 1 else (0, _unit(next(it), ndom)))
    return tuple(out)


def broadcast_map(cmap: AMap, c: Tensor, p: Tensor) -> AMap:
    """The map of input ``p`` of an elementwise ``c`` (NumPy broadcasting)."""
    lead = c.ndim - p.ndim
    ndom = len(cmap[0][1]) if cmap else 0
    zero: tuple[Size, ...] = (0,) * ndom
    return tuple((0, zero) if s == 1 else cmap[j + lead] for j, s in enumerate(p.shape))


def acc_dtype(op: str, dtype: str, out: str) -> str:
    if op == "sum":
        return "float64" if dtype in FLOATS else "int64"
    if op == "prod":
        return out
    return dtype


def _scalar_leaf(q: Tensor) -> Tensor | None:
    """The one-element constant or size that ``q`` is a view of, if any: every element of
    ``q`` then has that value, so kernels use it as an immediate."""
    while category(q) == "view":
        q = q.inputs[0]
    if q.op.name == "dim" or (q.op.name == "constant" and q.attr("value").array.size == 1):
        return q
    return None


class _Body:
    """A kernel under construction: operands, SSA instructions, stores."""

    def __init__(self, ndom: int) -> None:
        self.ndom = ndom
        self.operands: list[Access] = []
        self.op_index: dict[Any, int] = {}
        self.instrs: list[Instr] = []
        self.memo: dict[Any, int] = {}
        self.stores: list[Store] = []
        self.reductions: list[Reduction] = []

    def emit(self, ins: Instr, key: Any = None) -> int:
        if key is not None and key in self.memo:
            return self.memo[key]
        self.instrs.append(ins)
        k = len(self.instrs) - 1
        if key is not None:
            self.memo[key] = k
        return k

    def load(self, mv: MemView, amap: AMap, phase: str) -> int:
        offset, coeffs = compose(mv, amap, self.ndom)
        key = (id(mv.buffer), offset, coeffs)
        k = self.op_index.get(key)
        if k is None:
            k = len(self.operands)
            self.op_index[key] = k
            self.operands.append(Access(mv.buffer, offset, coeffs))
        return self.emit(Instr("load", (), mv.buffer.dtype, k, phase), ("load", k, phase))

    def store(self, buf: Buffer, shape: Shape, amap: AMap, value: int, phase: str) -> None:
        offset, coeffs = compose(MemView(buf, 0, contiguous_strides(shape)), amap, self.ndom)
        self.stores.append(Store(Access(buf, offset, coeffs), value, phase))


@dataclass(eq=False)
class _GroupKernel:
    group: Group
    body: _Body
    ssa: dict[int, int]
    maps: dict[int, AMap]
    kernel: LoopKernel | None = None


class Lowering:
    """Builds a :class:`LoweredProgram` from a program (see :func:`lower`)."""

    def __init__(self, program: Program, backend: str,
                 elementwise: frozenset[str] | None = None) -> None:
        self.program = program
        self.backend = backend
        self.outs = decompose(program.outputs)
        self.order = toposort(self.outs)
        bad = [n for n in self.order if category(n) == "unsupported" or (
            elementwise is not None and category(n) == "ew" and n.op.name not in elementwise)]
        if bad:
            lines = [f"  {n.op.name} {n.dtype}{list(n.shape)} (built at {n.loc})" for n in bad]
            raise UnsupportedError(
                f"backend {backend!r} cannot compile {len(bad)} op{'s' if len(bad) > 1 else ''} "
                "of this graph:\n" + "\n".join(lines))
        self.part = partition(self.order)
        self.users = users(self.order)
        self.namer = Namer()
        self.inputs = [Buffer(self.namer.fresh(t.name or "x"), t.dtype, t.shape, "input", k)
                       for k, t in enumerate(program.inputs)]
        self.input_of = {id(t): b for t, b in zip(program.inputs, self.inputs)}
        self.output_ids = {id(o) for o in self.outs}
        self.out_buf: dict[int, Buffer] = {}
        self.consts: list[Buffer] = []
        self.const_of: dict[int, Buffer] = {}
        self.temps: list[Buffer] = []
        self.mv: dict[int, MemView] = {}
        self.stored: dict[int, Buffer] = {}
        self.gk: dict[int, _GroupKernel] = {}
        self.kernels: list[tuple[tuple[int, int], Kernel | _GroupKernel]] = []
        self.pos = {id(n): k for k, n in enumerate(self.order)}
        self.group_rank = {g.gid: r for r, g in enumerate(self.part.groups)}

    # -- buffers ---------------------------------------------------------------------------
    def _buffer_for(self, n: Tensor) -> Buffer:
        """The buffer a stored value goes to: its output buffer, else a new temporary."""
        if id(n) in self.output_ids:
            buf = self.out_buf.get(id(n))
            if buf is None:
                k = len(self.out_buf)
                buf = Buffer(f"out{k}", n.dtype, n.shape, "output", k)
                self.out_buf[id(n)] = buf
            return buf
        buf = Buffer(f"t{len(self.temps)}", n.dtype, n.shape, "temp")
        self.temps.append(buf)
        return buf

    def _const_buffer(self, n: Tensor) -> Buffer:
        buf = self.const_of.get(id(n))
        if buf is None:
            arr = np.ascontiguousarray(n.attr("value").array)
            buf = Buffer(f"c{len(self.consts)}", n.dtype, n.shape, "const", len(self.consts),
                         value=arr)
            self.consts.append(buf)
            self.const_of[id(n)] = buf
        return buf

    # -- memory views ----------------------------------------------------------------------
    def memview(self, n: Tensor) -> MemView:
        mv = self.mv.get(id(n))
        if mv is not None:
            return mv
        name = n.op.name
        cat = category(n)
        if name == "placeholder":
            buf = self.input_of.get(id(n))
            if buf is None:
                raise ValueError(f"placeholder {n.name!r} is not among the inputs")
            mv = MemView(buf, 0, contiguous_strides(n.shape))
        elif name == "constant":
            mv = MemView(self._const_buffer(n), 0, contiguous_strides(n.shape))
        elif cat == "view" and id(n) not in self.stored:
            mv = self._derived(n)
        else:
            mv = self.store(n)
        self.mv[id(n)] = mv
        return mv

    def _derived(self, n: Tensor) -> MemView:
        """The view op ``n`` as a view of its input (made contiguous first if needed)."""
        x = n.inputs[0]
        mv = derive_view(n, self.memview(x))
        if mv is None:
            mv = derive_view(n, self.contiguous(x))
        assert mv is not None
        return mv

    def contiguous(self, n: Tensor) -> MemView:
        mv = self.memview(n)
        if not is_contiguous(mv, n.shape):
            mv = self.store(n)
            self.mv[id(n)] = mv
        return mv

    def store(self, n: Tensor) -> MemView:
        """Make sure the kernel computing ``n`` writes it to a buffer; return that view."""
        buf = self.stored.get(id(n))
        if buf is None:
            cat = category(n)
            if cat == "lib":
                raise AssertionError("library calls are built before their users")
            buf = self._buffer_for(n)
            self.stored[id(n)] = buf
            if cat == "leaf":
                self._leaf_copy(n, buf)
            elif self._store_through_transpose(n, buf):
                pass
            else:
                g = self.part.group_of[id(n)]
                gk = self.gk.get(g.gid) or self._build_group(g)
                phase = "point" if gk.group.level[id(n)] == "full" else "out"
                gk.body.store(buf, n.shape, gk.maps[id(n)], gk.ssa[id(n)], phase)
        return MemView(buf, 0, contiguous_strides(n.shape))

    def _store_through_transpose(self, n: Tensor, buf: Buffer) -> bool:
        """A transposed output of a value nothing else reads: the kernel computing the value
        writes it straight into the output's layout (no temporary, no copy)."""
        if n.op.name != "transpose" or len(self.part.group_of[id(n)].members) > 1:
            return False
        p = n.inputs[0]
        g = self.part.group_of.get(id(p))
        if (g is None or g.lib or id(p) in self.stored or id(p) in self.output_ids
                or len(self.users.get(id(p), ())) != 1):
            return False
        gk = self.gk.get(g.gid) or self._build_group(g)
        out = contiguous_strides(n.shape)
        strides: list[Size] = [0] * p.ndim
        for k, axis in enumerate(n.attr("perm")):
            strides[axis] = out[k]
        offset, coeffs = compose(MemView(buf, 0, tuple(strides)), gk.maps[id(p)], gk.body.ndom)
        phase = "point" if g.level[id(p)] == "full" else "out"
        gk.body.stores.append(Store(Access(buf, offset, coeffs), gk.ssa[id(p)], phase))
        return True

    # -- loop kernels ----------------------------------------------------------------------
    def _value(self, body: _Body, gk: _GroupKernel | None, q: Tensor, amap: AMap,
               phase: str) -> int:
        if gk is not None and self.part.group_of.get(id(q)) is gk.group:
            return gk.ssa[id(q)]
        leaf = _scalar_leaf(q)
        if leaf is not None:
            q = leaf
        name = q.op.name
        if name == "constant":
            arr = q.attr("value").array
            if arr.size == 1:
                v = arr.reshape(-1)[0].item()
                return body.emit(Instr("const", (), q.dtype, v, phase), ("const", q.dtype, repr(v), phase))
        if name == "dim":
            size = q.attr("size")
            return body.emit(Instr("size", (), q.dtype, size, phase), ("size", q.dtype, size, phase))
        return body.load(self.memview(q), amap, phase)

    def _build_group(self, g: Group) -> _GroupKernel:
        ndom = len(g.domain)
        body = _Body(ndom)
        gk = _GroupKernel(g, body, {}, {})
        self.gk[g.gid] = gk
        axes = g.axes or ()
        out_axes = [a for a in range(ndom) if a not in axes]
        for n in g.members:
            level = g.level[id(n)]
            cat = category(n)
            phase = "point" if level == "full" else "out"
            if cat == "red":
                x = n.inputs[0]
                xmap = aligned_map(x.shape, range(ndom), ndom)
                value = self._value(body, gk, x, xmap, "point")
                op = n.op.name
                body.reductions.append(Reduction(op, value, n.dtype, acc_dtype(op, x.dtype, n.dtype)))
                gk.maps[id(n)] = aligned_map(n.shape, out_axes, ndom)
                gk.ssa[id(n)] = body.emit(Instr("acc", (), n.dtype, len(body.reductions) - 1, "out"))
                continue
            amap = aligned_map(n.shape, range(ndom) if level == "full" else out_axes, ndom)
            gk.maps[id(n)] = amap
            if cat == "view":
                x = n.inputs[0]
                if self.part.group_of.get(id(x)) is g:
                    gk.ssa[id(n)] = gk.ssa[id(x)]
                elif _scalar_leaf(n) is not None:
                    gk.ssa[id(n)] = self._value(body, None, n, amap, phase)
                else:
                    gk.ssa[id(n)] = body.load(self._derived(n), amap, phase)
                continue
            args = tuple(self._value(body, gk, i, broadcast_map(amap, n, i), phase) for i in n.inputs)
            if n.op.name in GENERATED_OPS:
                # the element's row-major position in n's shape, as an affine index
                pos = compose(MemView(None, 0, contiguous_strides(n.shape)), amap, ndom)  # type: ignore[arg-type]
                index = body.emit(Instr("index", (), "int64", pos, phase), ("index", pos, phase))
                args = (*args, index)
            gk.ssa[id(n)] = body.emit(Instr(n.op.name, args, n.dtype, None, phase))
        rank = self.group_rank[g.gid]
        self.kernels.append(((rank, 0), gk))
        for n in g.members:
            if id(n) in self.output_ids:
                self.store(n)
        return gk

    def _copy_kernel(self, src: Tensor, buf: Buffer, shape: Shape, offset: Size,
                     strides: tuple[Size, ...], rank: tuple[int, int], label: str,
                     accumulate: bool = False) -> None:
        """A loop writing ``src`` into ``buf`` at ``offset`` with ``strides`` (adding it to
        what is there when ``accumulate``)."""
        dom = strip1(shape)
        ndom = len(dom)
        body = _Body(ndom)
        amap = aligned_map(shape, range(ndom), ndom)
        value = self._value(body, None, src, amap, "point")
        dest = MemView(buf, offset, strides)
        if accumulate:
            current = body.load(dest, amap, "point")
            value = body.emit(Instr("add", (current, value), buf.dtype))
        off, coeffs = compose(dest, amap, ndom)
        body.stores.append(Store(Access(buf, off, coeffs), value))
        k = self._finish(label, dom, (), body, [src])
        self.kernels.append((rank, k))

    def _fill_kernel(self, buf: Buffer, value: Any, rank: tuple[int, int]) -> None:
        dom = strip1(buf.shape)
        ndom = len(dom)
        body = _Body(ndom)
        v = body.emit(Instr("const", (), buf.dtype, value))
        amap = aligned_map(buf.shape, range(ndom), ndom)
        off, coeffs = compose(MemView(buf, 0, contiguous_strides(buf.shape)), amap, ndom)
        body.stores.append(Store(Access(buf, off, coeffs), v))
        self.kernels.append((rank, self._finish("fill", dom, (), body, [])))

    def _leaf_copy(self, n: Tensor, buf: Buffer) -> None:
        self._copy_kernel(n, buf, n.shape, 0, contiguous_strides(n.shape), (-1, self.pos[id(n)]),
                          "copy")


    # -- library calls ---------------------------------------------------------------------
    def _lib_buffer(self, n: Tensor) -> Buffer:
        """Where a library call writes: its buffer, or, for a scatter whose one user is an
        output that reshapes it (the same elements in the same order), that output's buffer
        (the scatter's loops index by its own shape, so the buffer's shape may differ)."""
        us = self.users.get(id(n), ())
        if n.op.name in ("slice_grad", "scatter_sum") and id(n) not in self.output_ids and len(us) == 1:
            (u,) = us
            if u.op.name == "reshape" and id(u) in self.output_ids and id(u) not in self.stored:
                buf = self._buffer_for(u)
                self.stored[id(u)] = buf
                self.mv[id(u)] = MemView(buf, 0, contiguous_strides(u.shape))
                return buf
        return self._buffer_for(n)

    def _lib(self, g: Group) -> None:
        (n,) = g.members
        rank = (self.group_rank[g.gid], 0)
        name = n.op.name
        buf = self._lib_buffer(n)
        self.stored[id(n)] = buf
        self.mv[id(n)] = MemView(buf, 0, contiguous_strides(n.shape))
        if name == "concatenate":
            ax = n.attr("axis")
            strides = contiguous_strides(n.shape)
            offset: Size = 0
            for k, x in enumerate(n.inputs):
                self._copy_kernel(x, buf, x.shape, S.mul(offset, strides[ax]), strides,
                                  (rank[0], k), "concat")
                offset = S.add(offset, x.shape[ax])
            return
        if name in ("slice_grad", "scatter_sum"):
            strides = contiguous_strides(n.shape)
            ndense = n.attr("dense") or 0
            if ndense == 0:
                self._fill_kernel(buf, 0, (rank[0], 0))
            for k, d in enumerate(n.inputs[:ndense]):
                self._copy_kernel(d, buf, n.shape, 0, strides, (rank[0], k), "sum",
                                  accumulate=k > 0)
            indices = n.attr("indices") if name == "scatter_sum" else (n.attr("index"),)
            for k, (x, index) in enumerate(zip(n.inputs[ndense:], indices)):
                off: Size = 0
                sub: list[Size] = []
                for (start, _stop, step), st in zip(index, strides):
                    off = S.add(off, S.mul(start, st))
                    sub.append(S.mul(step, st))
                self._copy_kernel(x, buf, x.shape, off, tuple(sub), (rank[0], ndense + k + 1),
                                  "scatter", accumulate=k > 0 or ndense > 0)
            return
        inputs: list[Access] = []
        shapes: list[Shape] = []
        attrs: dict[str, Any] = {}
        if name == "matmul":
            a, b = n.inputs
            batch = n.shape[:-2]
            attrs["batch"] = len(batch)
            for x in (a, b):
                mv = self.memview(x)
                if x.dtype in FLOATS and blas_layout(x.shape[-2:], mv.strides[-2:]) is None:
                    mv = self.contiguous(x)
                lead = len(batch) - (x.ndim - 2)
                co: list[Size] = [0] * lead
                co += [0 if s == 1 else st for s, st in zip(x.shape[:-2], mv.strides[:-2])]
                inputs.append(Access(mv.buffer, mv.offset, (*co, *mv.strides[-2:])))
                shapes.append((*batch, *x.shape[-2:]))
        else:
            for x in n.inputs:
                mv = self.memview(x)
                inputs.append(Access(mv.buffer, mv.offset, mv.strides))
                shapes.append(x.shape)
            for key in ("axis", "size", "depth"):
                if n.attr(key) is not None:
                    attrs[key] = n.attr(key)
        call = LibCall(name, name, inputs, shapes, buf, attrs, [n])
        self.kernels.append((rank, call))

    # -- finishing ---------------------------------------------------------------------------
    def _finish(self, label: str, domain: tuple[Size, ...], axes: tuple[int, ...], body: _Body,
                nodes: list[Tensor]) -> LoopKernel:
        """Choose the loop order and strategy, merge contiguous axes, add scratch buffers."""
        ndom = len(domain)
        args = any(r.op in ("argmax", "argmin") for r in body.reductions)
        if not axes:
            strategy = "map"
        elif len(axes) == ndom and not args:
            strategy = "full"
        elif (ndom - 1) in axes or args:
            strategy = "inner"
        else:
            strategy = "outer"
        if strategy in ("inner", "full"):
            order = [a for a in range(ndom) if a not in axes] + list(axes)
        else:
            order = list(range(ndom))
        accesses = body.operands + [st.access for st in body.stores]
        indexes = [Access(None, *ins.attr) for ins in body.instrs if ins.op == "index"]  # type: ignore[arg-type]
        accesses = accesses + indexes
        # merge neighbouring loops that walk every access contiguously
        runs: list[list[int]] = []
        for a in order:
            if runs:
                prev = runs[-1][-1]
                if (prev in axes) == (a in axes) and all(
                        acc.coeffs[prev] == S.mul(acc.coeffs[a], domain[a]) for acc in accesses):
                    runs[-1].append(a)
                    continue
            runs.append([a])
        new_domain = tuple(S.prod([domain[a] for a in run]) for run in runs)
        new_axes = tuple(k for k, run in enumerate(runs) if run[0] in axes)

        def remap(acc: Access) -> Access:
            return replace(acc, coeffs=tuple(acc.coeffs[run[-1]] for run in runs))

        operands = [remap(acc) for acc in body.operands]
        instrs = [replace(ins, attr=(ins.attr[0], remap(Access(None, *ins.attr)).coeffs))  # type: ignore[arg-type]
                  if ins.op == "index" else ins for ins in body.instrs]
        stores = [replace(st, access=remap(st.access)) for st in body.stores]
        scratch: list[Buffer] = []
        if strategy == "outer":
            out_shape = tuple(s for k, s in enumerate(new_domain) if k not in new_axes)
            for j, r in enumerate(body.reductions):
                scratch.append(Buffer(f"acc{j}", r.acc_dtype, out_shape, "scratch"))
        ops: list[str] = []
        for ins in body.instrs:
            if ins.op not in ("load", "const", "size", "acc", "cast") and ins.op not in ops:
                ops.append(ins.op)
        for r in body.reductions:
            if r.op not in ops:
                ops.append(r.op)
        if label == "fused":
            label = "_".join(["fused", *ops[:3]]) if ops else "copy"
        return LoopKernel(label, new_domain, new_axes, tuple(range(len(new_domain))), strategy,
                          operands, instrs, stores, list(body.reductions), scratch, nodes)

    def run(self) -> LoweredProgram:
        for g in self.part.groups:
            if g.lib:
                self._lib(g)
            elif len(g.members) > 1 or category(g.members[0]) != "view":
                if g.gid not in self.gk:
                    self._build_group(g)
        # values read outside their kernel but never stored yet were handled on demand;
        # outputs that are inputs, constants, sizes or views need a copy
        for o in self.outs:
            if id(o) not in self.stored:
                self.store(o)
        kernels: list[tuple[tuple[int, int], Kernel]] = []
        for key, k in self.kernels:
            if isinstance(k, _GroupKernel):
                g = k.group
                if not k.body.stores:
                    continue
                k = self._finish("fused", g.domain, g.axes or (), k.body, list(g.members))
            kernels.append((key, k))
        kernels.sort(key=lambda kv: kv[0])
        final = [k for _, k in kernels]
        for i, k in enumerate(final):
            k.name = f"{k.name}_{i}"
        outputs = [self.out_buf[id(o)] for o in self.outs]
        symbols = sorted(self.program.size_sources)
        plan = plan_buffers(final, self.temps)
        return LoweredProgram(self.inputs, outputs, self.consts, self.temps, final, symbols,
                              dict(self.program.size_sources), plan)


def blas_layout(shape: Shape, strides: tuple[Size, ...]) -> tuple[str, Size] | None:
    """How BLAS can read a (rows, cols) matrix with these element strides: ``("row", ld)``
    for row-major, ``("col", ld)`` for column-major, None if neither."""
    rows, cols = shape
    sr, sc = strides
    if (sc == 1 or cols == 1) and (rows == 1 or sr == cols or (
            isinstance(sr, int) and isinstance(cols, int) and sr >= cols)):
        return ("row", cols if rows == 1 else sr)
    if (sr == 1 or rows == 1) and (cols == 1 or sc == rows or (
            isinstance(sc, int) and isinstance(rows, int) and sc >= rows)):
        return ("col", rows if cols == 1 else sc)
    return None


def lower(program: Program, backend: str = "lowered",
          elementwise: frozenset[str] | None = None) -> LoweredProgram:
    """Lower an optimized program to kernels (fusion, index maps, buffer plan).

    ``elementwise`` names the elementwise ops the code generator can emit (default: all).
    Raises :class:`~symgrad.errors.UnsupportedError` listing every op that has no
    lowering, with the line that built it.
    """
    return Lowering(program, backend, elementwise).run()
