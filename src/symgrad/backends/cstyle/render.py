"""Render a :class:`~symgrad.backends.lower.LoweredProgram` as C99 or CUDA source.

The renderer walks the lowered program once and writes, for either dialect:

* a prelude: includes (C), the scalar helpers the kernels call, constant arrays;
* one function per kernel: plain loops in C; in CUDA one or two ``__global__`` kernels
  (grid-stride loops for elementwise work, one block per output point with warp shuffles
  and shared memory for long reductions, one thread per output point for short or
  strided ones, a two-stage reduction when everything is reduced, a tiled shared-memory
  kernel for matrix products);
* host code implementing the C ABI of ``docs/abi.md``: size computation from ``dims``
  with overflow checks and the graph's constraints, the workspace layout, the entry
  point ``NAME`` and the metadata functions;
* the header ``NAME.h``.

What differs between C and CUDA lives in :mod:`.dialect` and :mod:`.scalar` tables; the
few places that choose a GPU schedule read ``dialect.parallel``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from symgrad.backends.cstyle import scalar as SC
from symgrad.backends.cstyle.dialect import DIALECTS, Dialect
from symgrad.backends.cstyle.names import Mangler, comment_text, identifier, public_name
from symgrad.backends.cstyle.sizes import SizeTable, int_literal
from symgrad.backends.lower.kernel import (
    ITEMSIZE,
    Access,
    Buffer,
    LibCall,
    LoopKernel,
    LoweredProgram,
)
from symgrad.errors import UnsupportedError
from symgrad.ir import shape as S
from symgrad.ir.shape import Size

if TYPE_CHECKING:
    from symgrad.ir.tensor import Tensor

ABI_VERSION = 1
ALIGN = 64
MAX_PARTS = 1024  # most blocks of the first stage of a two-stage reduction

DTYPE_CODES = {"float32": 1, "float64": 2, "int32": 3, "int64": 4, "bool": 5}

# (macro suffix, value, meaning): the error codes of the ABI, in the order they are tested
ERROR_CODES: list[tuple[str, int, str]] = [
    ("OK", 0, "success"),
    ("ERR_NULL", 1, "a required pointer is NULL (dims, inputs, outputs, a buffer with elements, "
                    "or the workspace when its size is not 0)"),
    ("ERR_NEGATIVE_DIM", 2, "some dims[k] is negative"),
    ("ERR_OVERFLOW", 3, "a size, element count or byte count computed from dims does not fit "
                        "in int64_t"),
    ("ERR_DIM_MISMATCH", 4, "dims contradict the shapes the graph was built with (two sizes that "
                            "must be equal differ, a derived size is negative, a window does not "
                            "fit, a max/min/argmax over an empty axis)"),
    ("ERR_INDEX", 5, "an index (take) or label (one_hot) is out of range"),
    ("ERR_BAD_ARGUMENT", 6, "a metadata function was given an out-of-range input/output/dims "
                            "number or a NULL result pointer"),
    ("ERR_CUDA", 7, "a CUDA launch or copy failed (CUDA target only)"),
]
ERR = {name: code for name, code, _ in ERROR_CODES}

_IDENTITY = {"sum": "zero", "prod": "one", "max": "low", "argmax": "low", "min": "high",
             "argmin": "high"}


# -- what the renderer returns ------------------------------------------------------------
@dataclass(frozen=True)
class KernelParam:
    """One parameter of a generated kernel, in order.

    ``kind`` is ``size`` (a ``long long`` by value: evaluate ``size`` for the call's
    sizes), ``buffer`` (a pointer to the elements of ``buffer``), ``error`` (a pointer to
    one ``int32`` error word, 0 before the first launch; a kernel sets it to an ABI error
    code) or ``partials`` (a pointer to ``nbytes`` bytes of scratch for a two-stage
    reduction; may be shared by every kernel).
    """

    kind: str
    name: str
    ctype: str
    size: Size | None = None
    buffer: Buffer | None = None
    nbytes: int = 0


@dataclass(frozen=True)
class GridDim:
    """``max(1, min(cap, ceil(count / per)))`` blocks along one grid axis."""

    count: Size
    per: int = 1
    cap: int = 65535

    def value(self, env: Mapping[str, int]) -> int:
        n = S.evaluate(self.count, dict(env))
        return max(1, min(self.cap, -(-n // self.per)))


@dataclass(frozen=True)
class Launch:
    """How to launch one CUDA kernel (host launchers do exactly this)."""

    kernel: str  # the extern "C" symbol
    origin: str  # the lowered kernel it comes from
    params: tuple[KernelParam, ...]
    block: tuple[int, int, int]
    grid: tuple[GridDim, GridDim, GridDim]
    shared_bytes: int = 0
    uses_sync: bool = False

    def grid_for(self, env: Mapping[str, int]) -> tuple[int, int, int]:
        gx, gy, gz = (g.value(env) for g in self.grid)
        return gx, gy, gz


@dataclass(frozen=True)
class Region:
    """One block of the workspace: the buffers that share it, or a special use.

    Its size at run time is the largest of ``sizes`` (byte counts)."""

    what: str  # "slot k", "temp NAME", "scratch NAME", "error", "partials"
    buffers: tuple[Buffer, ...]
    sizes: tuple[Size, ...]

    def nbytes(self, env: Mapping[str, int]) -> int:
        return max((S.evaluate(s, dict(env)) for s in self.sizes), default=0)


@dataclass
class RenderedSource:
    """The result of :func:`render_program`.

    Attributes
    ----------
    name : the NAME prefix of every exported symbol.
    dialect : ``"c"`` or ``"cuda"``.
    source : the whole translation unit (``NAME.c`` or ``NAME.cu``).
    header : ``NAME.h``.
    device_source : CUDA only: the kernels and their helpers without any ``#include``
        or host code, ready for NVRTC (empty for C).
    kernels : names of the generated kernel functions, in the order they run.
    launches : CUDA only: every launch of the entry point, in order.
    regions : the workspace layout, in order; each region starts at a multiple of 64
        bytes (see :meth:`workspace_layout`).
    names : user name -> C identifier, for inputs (``input:NAME``), outputs
        (``output:NAME``) and sizes (``dim:NAME``).
    """

    name: str
    dialect: str
    source: str
    header: str
    device_source: str
    kernels: list[str]
    launches: list[Launch]
    regions: list[Region]
    names: dict[str, str]
    helpers: list[str] = field(default_factory=list)

    def workspace_layout(self, env: Mapping[str, int]) -> tuple[list[int], int]:
        """Byte offset of every region and the total workspace size for these sizes."""
        offsets = []
        off = 0
        for r in self.regions:
            offsets.append(off)
            n = r.nbytes(env)
            off += -(-n // ALIGN) * ALIGN
        return offsets, off


# -- helpers ------------------------------------------------------------------------------
def _indent(lines: Sequence[str], n: int = 1) -> list[str]:
    pad = "  " * n
    return [pad + line if line else line for line in lines]


def _nz(s: Size) -> bool:
    return not (isinstance(s, int) and s == 0)


class _Program:
    """State of one rendering."""

    def __init__(self, lp: LoweredProgram, dialect: Dialect, name: str,
                 input_names: Sequence[str] | None, output_names: Sequence[str] | None,
                 checks: Sequence[tuple[str, Size, Size, str]], consts: str) -> None:
        self.lp = lp
        self.d = dialect
        self.name = public_name(name)
        self.user_name = name
        self.consts_mode = consts
        self.sizes = SizeTable(lp.symbols)
        self.helpers: set[tuple[str, str]] = set()
        self.mangler = Mangler()
        self.var: dict[int, str] = {}  # id(buffer) -> variable / array name
        self.names: dict[str, str] = {}
        self.kernel_names = Mangler()
        self.functions: list[str] = []  # kernel function sources, in order
        self.calls: list[str] = []  # host statements running the kernels, in order
        self.kernel_list: list[str] = []
        self.launches: list[Launch] = []
        self.uses_err = False
        self.parts_bytes = 0
        self.index_checks: list[str] = []
        self.problems: list[str] = []
        # (reduced extent, output extent or None, what): the dims are refused when the
        # reduced extent is 0 (and the output extent, where given, is not)
        self.nonempty: list[tuple[str, str | None, str]] = []
        self.derive_nonempty = True  # from the kernels, unless the graph's reductions are given

        in_names = list(input_names) if input_names is not None else [b.name for b in lp.inputs]
        out_names = list(output_names) if output_names is not None else [
            f"out{k}" for k in range(len(lp.outputs))]
        if len(in_names) != len(lp.inputs) or len(out_names) != len(lp.outputs):
            raise ValueError("input_names/output_names must have one entry per input/output")
        self.in_names, self.out_names = in_names, out_names
        self.in_ids = [self.mangler.mangle("in_" + identifier(n, "x")) for n in in_names]
        self.out_ids = [self.mangler.mangle("out_" + identifier(n, "y")) for n in out_names]
        for n, i in zip(in_names, self.in_ids):
            self.names[f"input:{n}"] = i[3:]
        for n, i in zip(out_names, self.out_ids):
            self.names[f"output:{n}"] = i[4:]
        for sym in lp.symbols:
            self.names[f"dim:{sym}"] = self.sizes.sym_var[sym][2:]
        for b, v in zip(lp.inputs, self.in_ids):
            self.var[id(b)] = v
        # the first output position holding a buffer is its home; later ones are copies
        self.home: dict[int, int] = {}
        for pos, b in enumerate(lp.outputs):
            self.home.setdefault(id(b), pos)
            if self.home[id(b)] == pos:
                self.var[id(b)] = self.out_ids[pos]
        for b in lp.consts:
            self.var[id(b)] = f"{self.name}_{identifier(b.name, 'c')}"
        for b in lp.temps + lp.scratch:
            if id(b) not in self.var:
                self.var[id(b)] = self.mangler.mangle(("s_" if b.kind == "scratch" else "t_")
                                                      + identifier(b.name, "t"))
        for rel, a, b2, what in checks:
            self.sizes.check(rel, a, b2, what)
        for buf in lp.inputs + lp.outputs:
            for s in buf.shape:
                self.sizes.ref(s, extent=True)
            self.sizes.ref(S.mul(buf.size, ITEMSIZE[buf.dtype]), extent=True)
        self.regions = self._regions()

    # -- workspace ---------------------------------------------------------------------------
    def _regions(self) -> list[Region]:
        regions: list[Region] = []
        seen: set[int] = set()
        plan_slots = self.lp.plan.slots if self.lp.plan is not None else []
        self.slot_region: dict[int, int] = {}
        for k, members in enumerate(plan_slots):
            bufs = tuple(b for b in members if b.kind in ("temp", "scratch"))
            self.slot_region[k] = len(regions)
            regions.append(Region(f"slot {k}", bufs, self._max_bytes(bufs)))
            seen.update(id(b) for b in bufs)
        for b in self.lp.temps + self.lp.scratch:
            if id(b) not in seen:
                seen.add(id(b))
                regions.append(Region(f"{b.kind} {b.name}", (b,), self._max_bytes((b,))))
        return regions

    def _max_bytes(self, bufs: Sequence[Buffer]) -> tuple[Size, ...]:
        out: list[Size] = []
        for b in bufs:
            s = S.mul(b.size, ITEMSIZE[b.dtype])
            self.sizes.ref(s, extent=True)
            if all(s != x for x in out):
                out.append(s)
        static = [s for s in out if isinstance(s, int)]
        dynamic = [s for s in out if not isinstance(s, int)]
        return tuple(dynamic) + ((max(static),) if static else ())

    # -- references --------------------------------------------------------------------------
    def ctype(self, dtype: str) -> str:
        return self.d.types[dtype]

    def size(self, s: Size, extent: bool = False) -> str:
        return self.sizes.ref(s, extent)

    def divisor(self, s: Size) -> str:
        """An extent used to split a flat index: a static 0 becomes 1 (the loop around
        it never runs, and ``% 0`` would not compile cleanly)."""
        return "1" if s == 0 else self.size(s, True)

    def index_expr(self, offset: Size, coeffs: Sequence[Size], idx: Sequence[str | None]) -> str:
        terms = []
        for c, i in zip(coeffs, idx):
            if not _nz(c):
                continue
            assert i is not None, "an access depends on an axis that is not in scope"
            if isinstance(c, int):
                terms.append(i if c == 1 else f"{int_literal(c)} * {i}" if c > 0
                             else f"({int_literal(c)}) * {i}")
            else:
                terms.append(f"{self.size(c)} * {i}")
        if _nz(offset):
            terms.append(self.size(offset) if not isinstance(offset, int) or offset > 0
                         else f"({int_literal(offset)})")
        return " + ".join(terms) if terms else "0"

    def access(self, acc: Access, idx: Sequence[str | None]) -> str:
        return f"{self.var[id(acc.buffer)]}[{self.index_expr(acc.offset, acc.coeffs, idx)}]"

    def lit(self, value: Any, dtype: str) -> str:
        text = SC.literal(value, dtype, self.d)
        if "sg_bits" in text:
            self.helpers.add(("sg_bits", dtype))
        return text

    def identity(self, op: str, dtype: str) -> str:
        which = _IDENTITY[op]
        if which == "zero":
            return self.lit(0, dtype)
        if which == "one":
            return self.lit(1, dtype)
        if dtype in ("float32", "float64"):
            return self.lit(-math.inf if which == "low" else math.inf, dtype)
        if dtype == "bool":
            return self.lit(which == "high", dtype)
        bits = 32 if dtype == "int32" else 64
        return self.lit(-(2 ** (bits - 1)) if which == "low" else 2 ** (bits - 1) - 1, dtype)

    # -- kernel parameters ---------------------------------------------------------------------
    def params(self, sizes: list[str], reads: Sequence[Buffer], writes: Sequence[Buffer],
               extra: Sequence[KernelParam] = ()) -> list[KernelParam]:
        out: list[KernelParam] = []
        seen_sizes: set[str] = set()
        for s in sizes:
            if s in seen_sizes or s[0].isdigit() or s.startswith("("):
                continue
            seen_sizes.add(s)
            out.append(KernelParam("size", s, self.d.index, size=self._size_of(s)))
        bufs: list[Buffer] = []
        written = {id(b) for b in writes}
        for b in list(reads) + list(writes):
            if b.kind == "const" and self.consts_mode == "embed":
                continue
            if all(b is not x for x in bufs):
                bufs.append(b)
        slots: dict[int, int] = {}
        for b in bufs:
            if b.kind in ("temp", "scratch") and b.slot >= 0:
                slots[b.slot] = slots.get(b.slot, 0) + 1
        for b in bufs:
            shared = b.kind in ("temp", "scratch") and slots.get(b.slot, 0) > 1
            const = "" if id(b) in written else "const "
            restrict = "" if shared else f" {self.d.restrict}"
            out.append(KernelParam("buffer", self.var[id(b)],
                                   f"{const}{self.ctype(b.dtype)}*{restrict}", buffer=b))
        out.extend(extra)
        return out

    def _size_of(self, var: str) -> Size:
        for sym, v in self.sizes.sym_var.items():
            if v == var:
                return S.Dim.symbol(sym)
        for sv in self.sizes.vars:
            if sv.name == var:
                value = sv.value
                if isinstance(value, S.FloorDiv):
                    return S.Dim.make({(value,): 1})
                return value
        raise KeyError(var)

    def signature(self, fname: str, params: Sequence[KernelParam]) -> str:
        ps = ", ".join(f"{p.ctype} {p.name}" for p in params) or "void"
        return f"{self.d.kernel} {fname}({ps})"

    def call_args(self, params: Sequence[KernelParam]) -> str:
        args = []
        for p in params:
            if p.kind == "error":
                args.append("sg_err")
            elif p.kind == "partials":
                args.append("sg_parts")
            else:
                args.append(p.name)
        return ", ".join(args)

    def kernel_symbol(self, base: str) -> str:
        return self.kernel_names.mangle(f"{self.name}_{identifier(base, 'kernel')}")

    # -- sizes used by a piece of code ------------------------------------------------------------
    @staticmethod
    def used_sizes(text: str, table: SizeTable) -> list[str]:
        import re

        names = set(re.findall(r"\b(d_\w+|e\d+)\b", text))
        order = list(table.sym_var.values()) + [v.name for v in table.vars]
        return [n for n in order if n in names]

    # ==== loop kernels ==========================================================================
    def loop_kernel(self, k: LoopKernel) -> None:
        bad = [ins.op for ins in k.instrs if ins.op not in ("load", "const", "size", "acc", "index")
               and not SC.supports(ins.op, k.instrs[ins.args[0]].dtype if ins.args else ins.dtype)]
        if bad:
            locs = sorted({n.loc for n in k.nodes if n.op.name in bad})
            self.problems.append(f"{', '.join(sorted(set(bad)))} in kernel {k.name}"
                                 + (f" (built at {', '.join(locs)})" if locs else ""))
            return
        if self.derive_nonempty and any(r.op in NO_IDENTITY for r in k.reductions):
            red = set(k.reduce_axes)
            total_red = S.prod(tuple(s for a, s in enumerate(k.domain) if a in red))
            total_out = S.prod(tuple(s for a, s in enumerate(k.domain) if a not in red))
            if not isinstance(total_red, int):
                self.nonempty.append((self.size(total_red, True), self.size(total_out, True),
                                      f"kernel {k.name} reduces over an empty axis"))
        if self.d.parallel:
            self._cuda_loop_kernel(k)
        else:
            self._c_loop_kernel(k)

    def _hoisted(self, k: LoopKernel) -> tuple[list[str], dict[int, str]]:
        lines: list[str] = []
        vals: dict[int, str] = {}
        for j, ins in enumerate(k.instrs):
            if ins.op == "const":
                vals[j] = f"v{j}"
                lines.append(f"const {self.ctype(ins.dtype)} v{j} = {self.lit(ins.attr, ins.dtype)};")
            elif ins.op == "size":
                vals[j] = f"v{j}"
                lines.append(f"const {self.ctype(ins.dtype)} v{j} = "
                             f"({self.ctype(ins.dtype)}){self.size(ins.attr)};")
        return lines, vals

    def _phase(self, k: LoopKernel, phase: str, idx: Sequence[str | None], vals: dict[int, str],
               accs: Sequence[str] | None = None) -> list[str]:
        """Statements evaluating ``phase`` instructions and their stores."""
        lines: list[str] = []
        for j, ins in enumerate(k.instrs):
            if ins.phase != phase or ins.op in ("const", "size"):
                continue
            t = self.ctype(ins.dtype)
            if ins.op == "load":
                text = self.access(k.operands[ins.attr], idx)
                if k.operands[ins.attr].buffer.dtype != ins.dtype:
                    text = f"({t}){text}"
            elif ins.op == "index":
                off, coeffs = ins.attr
                text = f"({t})({self.index_expr(off, coeffs, idx)})"
            elif ins.op == "acc":
                assert accs is not None
                r = k.reductions[ins.attr]
                text = accs[ins.attr]
                if r.op in ("argmax", "argmin"):
                    text = f"({t}){text}"
                elif r.acc_dtype != ins.dtype:
                    text = SC.expr("cast", [text], [r.acc_dtype], ins.dtype, self.d, self.helpers)
            else:
                args = [vals[a] for a in ins.args]
                dts = [k.instrs[a].dtype for a in ins.args]
                text = SC.expr(ins.op, args, dts, ins.dtype, self.d, self.helpers)
            vals[j] = f"v{j}"
            lines.append(f"const {t} v{j} = {text};")
        for st in k.stores:
            if st.phase != phase:
                continue
            src = k.instrs[st.value].dtype
            value = vals[st.value]
            if src != st.access.buffer.dtype:
                value = SC.expr("cast", [value], [src], st.access.buffer.dtype, self.d, self.helpers)
            lines.append(f"{self.access(st.access, idx)} = {value};")
        return lines

    def _combine_serial(self, k: LoopKernel, vals: dict[int, str], accs: list[str],
                        flat: str | None) -> list[str]:
        """Fold this point's values into the accumulators (in index order)."""
        lines = []
        for j, r in enumerate(k.reductions):
            src = k.instrs[r.value].dtype
            v = vals[r.value]
            if r.op in ("argmax", "argmin"):
                rel = ">" if r.op == "argmax" else "<"
                if src != r.acc_dtype:
                    v = SC.expr("cast", [v], [src], r.acc_dtype, self.d, self.helpers)
                cond = f"{v} {rel} {accs[j]}v"
                if r.acc_dtype in ("float32", "float64"):
                    cond = f"{cond} || ({v} != {v} && {accs[j]}v == {accs[j]}v)"
                lines.append(f"if ({cond}) {{ {accs[j]}v = {v}; {accs[j]} = {flat}; }}")
                continue
            if src != r.acc_dtype:
                v = SC.expr("cast", [v], [src], r.acc_dtype, self.d, self.helpers)
            lines.append(f"{accs[j]} = {self._combine(r.op, r.acc_dtype, accs[j], v)};")
        return lines

    def _combine(self, op: str, dtype: str, a: str, b: str) -> str:
        if op == "sum":
            if dtype == "bool":
                return f"(({self.ctype(dtype)})({a} | {b}))"
            return SC.expr("add", [a, b], [dtype, dtype], dtype, self.d, self.helpers)
        if op == "prod":
            return SC.expr("mul", [a, b], [dtype, dtype], dtype, self.d, self.helpers)
        if dtype == "bool":
            return f"(({self.ctype(dtype)})({a} {'|' if op == 'max' else '&'} {b}))"
        return SC.expr("maximum" if op == "max" else "minimum", [a, b], [dtype, dtype], dtype,
                       self.d, self.helpers)

    def _acc_decls(self, k: LoopKernel, accs: list[str]) -> list[str]:
        lines = []
        for r, a in zip(k.reductions, accs):
            if r.op in ("argmax", "argmin"):
                lines.append(f"{self.ctype(r.acc_dtype)} {a}v = {self.identity(r.op, r.acc_dtype)};")
                lines.append(f"{self.d.index} {a} = 0;")
            else:
                lines.append(f"{self.ctype(r.acc_dtype)} {a} = {self.identity(r.op, r.acc_dtype)};")
        return lines

    def _flat(self, k: LoopKernel, axes: Sequence[int]) -> str:
        """Row-major flat index over ``axes`` (the position an argmax reports)."""
        expr = ""
        for a in axes:
            expr = f"i{a}" if not expr else f"({expr}) * {self.size(k.domain[a])} + i{a}"
        return expr or "0"

    def _nest(self, axes: Sequence[int], k: LoopKernel, body: list[str]) -> list[str]:
        lines = []
        for depth, a in enumerate(axes):
            lines.append("  " * depth + f"for ({self.d.index} i{a} = 0; i{a} < "
                         f"{self.size(k.domain[a], True)}; ++i{a}) {{")
        lines += _indent(body, len(axes))
        for depth in reversed(range(len(axes))):
            lines.append("  " * depth + "}")
        return lines

    def _header_comment(self, k: LoopKernel | LibCall) -> list[str]:
        return ["/* " + comment_text(line) + " */" for line in k.text().splitlines()]

    def _c_loop_kernel(self, k: LoopKernel) -> None:
        nd = len(k.domain)
        red = set(k.reduce_axes)
        order = list(k.order)
        out_order = [a for a in order if a not in red]
        red_order = [a for a in order if a in red]
        idx_all: list[str | None] = [f"i{a}" for a in range(nd)]
        idx_out: list[str | None] = [None if a in red else f"i{a}" for a in range(nd)]
        hoist, vals = self._hoisted(k)
        accs = [f"acc{j}" for j in range(len(k.reductions))]
        body: list[str] = list(hoist)
        if k.strategy == "map" or not k.reductions:
            body += self._nest(order, k, self._phase(k, "point", idx_all, vals))
        elif k.strategy == "outer" and len(k.scratch) == len(k.reductions):
            out_axes = [a for a in range(nd) if a not in red]
            strides = _cstrides(tuple(k.domain[a] for a in out_axes))
            coeffs: list[Size] = [0] * nd
            for a, st in zip(out_axes, strides):
                coeffs[a] = st
            lin = self.index_expr(0, coeffs, idx_all)
            sv = [self.var[id(b)] for b in k.scratch]
            init = [f"{sv[j]}[{lin}] = {self.identity(r.op, r.acc_dtype)};"
                    for j, r in enumerate(k.reductions)]
            body += self._nest(out_order, k, init)
            point = self._phase(k, "point", idx_all, vals)
            cur = [f"{sv[j]}[{lin}]" for j in range(len(k.reductions))]
            for j, r in enumerate(k.reductions):
                v = vals[r.value]
                src = k.instrs[r.value].dtype
                if src != r.acc_dtype:
                    v = SC.expr("cast", [v], [src], r.acc_dtype, self.d, self.helpers)
                point.append(f"{cur[j]} = {self._combine(r.op, r.acc_dtype, cur[j], v)};")
            body += self._nest(order, k, point)
            epi = self._phase(k, "out", idx_out, vals, cur)
            body += self._nest(out_order, k, epi)
        else:
            inner = self._phase(k, "point", idx_all, vals)
            inner += self._combine_serial(k, vals, accs, self._flat(k, sorted(red)))
            per_out = self._acc_decls(k, accs) + self._nest(red_order, k, inner)
            per_out += self._phase(k, "out", idx_out, vals, accs)
            body += self._nest(out_order, k, per_out)
        body = _drop_unused(body)
        text = "\n".join(body)
        fname = self.kernel_symbol(k.name)
        params = self.params(self.used_sizes(text, self.sizes), k.reads() + k.scratch,
                             k.writes() + k.scratch)
        self._emit_function(k, fname, params, body)
        self.calls.append(f"{fname}({self.call_args(params)});")
        self.kernel_list.append(fname)

    def _emit_function(self, k: LoopKernel | LibCall, fname: str, params: Sequence[KernelParam],
                       body: list[str], qual_extra: str = "") -> None:
        body = _drop_unused(body)
        lines = self._header_comment(k)
        lines.append(self.signature(fname, params) + " {")
        lines += _indent(body)
        lines.append("}")
        self.functions.append("\n".join(lines))

    # -- CUDA schedules ---------------------------------------------------------------------------
    def _decompose(self, axes: Sequence[int], k_domain: Sequence[Size], var: str) -> list[str]:
        """Index variables i<a> from the flat index ``var`` (last axis fastest)."""
        if not axes:
            return []
        if len(axes) == 1:
            return [f"const {self.d.index} i{axes[0]} = {var};"]
        lines = [f"{self.d.index} r_ = {var};"]
        for a in reversed(axes[1:]):
            n = self.divisor(k_domain[a])
            lines.append(f"const {self.d.index} i{a} = r_ % {n}; r_ /= {n};")
        lines.append(f"const {self.d.index} i{axes[0]} = r_;")
        return lines

    def _grid_loop(self, total: str, body: list[str]) -> list[str]:
        ix = self.d.index
        return [f"for ({ix} t_ = ({ix})blockIdx.x * blockDim.x + threadIdx.x; t_ < {total}; "
                f"t_ += ({ix})gridDim.x * blockDim.x) {{", *_indent(body), "}"]

    def _launch(self, fname: str, origin: str, params: list[KernelParam], grid: tuple[GridDim, ...],
                block: tuple[int, int, int], sync: bool) -> None:
        g = (grid + (GridDim(1), GridDim(1)))[:3]
        self.launches.append(Launch(fname, origin, tuple(params), block,
                                    (g[0], g[1], g[2]), 0, sync))
        self.kernel_list.append(fname)

    def _cuda_loop_kernel(self, k: LoopKernel) -> None:
        nd = len(k.domain)
        red = set(k.reduce_axes)
        order = list(k.order)
        out_order = [a for a in order if a not in red]
        red_order = [a for a in order if a in red]
        idx_all: list[str | None] = [f"i{a}" for a in range(nd)]
        idx_out: list[str | None] = [None if a in red else f"i{a}" for a in range(nd)]
        hoist, vals = self._hoisted(k)
        accs = [f"acc{j}" for j in range(len(k.reductions))]
        total_out = S.prod(tuple(k.domain[a] for a in out_order))
        total_red = S.prod(tuple(k.domain[a] for a in red_order))
        bs = self.d.block
        if k.strategy == "map" or not k.reductions:
            total = S.prod(tuple(k.domain))
            body = hoist + self._grid_loop(self.size(total, True), self._decompose(order, k.domain, "t_")
                                           + self._phase(k, "point", idx_all, vals))
            self._cuda_kernel(k, k.name, body, (GridDim(total, bs, self.d.max_grid),), (bs, 1, 1), False)
            return
        small = isinstance(total_red, int) and total_red <= self.d.serial_reduce_max
        if k.strategy == "outer" or (k.strategy == "inner" and small) or (
                k.strategy == "full" and small):
            inner = self._phase(k, "point", idx_all, vals)
            inner += self._combine_serial(k, vals, accs, self._flat(k, sorted(red)))
            per_out = self._decompose(out_order, k.domain, "t_") + self._acc_decls(k, accs)
            per_out += self._nest(red_order, k, inner) + self._phase(k, "out", idx_out, vals, accs)
            body = hoist + self._grid_loop(self.size(total_out, True), per_out)
            self._cuda_kernel(k, k.name, body, (GridDim(total_out, bs, self.d.max_grid),), (bs, 1, 1),
                              False)
            return
        if k.strategy == "inner" or (isinstance(total_red, int) and total_red <= 16 * bs):
            # one block per output point
            row = self._decompose(out_order, k.domain, "row_")
            red_loop = self._red_loop(k, red_order, total_red, "threadIdx.x", "blockDim.x", vals, idx_all,
                                      accs)
            fin = self._block_reduce(k, accs)
            tail = ["if (threadIdx.x == 0) {", *_indent(self._phase(k, "out", idx_out, vals, accs)), "}",
                    "__syncthreads();"]
            shared = self._shared_decls(k)
            ix = self.d.index
            body = hoist + shared + [
                f"for ({ix} row_ = blockIdx.x; row_ < {self.size(total_out, True)}; row_ += gridDim.x) {{",
                *_indent(row + self._acc_decls(k, accs) + red_loop + fin + tail), "}"]
            self._cuda_kernel(k, k.name, body, (GridDim(total_out, 1, self.d.max_grid),), (bs, 1, 1), True)
            return
        # everything reduced, many elements: two stages through a partials buffer
        nparts = f"sg_nparts_({self.size(total_red, True)})"
        self.helpers.add(("sg_nparts", "int64"))
        part_params = [KernelParam("partials", "sg_parts", "unsigned char* __restrict__",
                                   nbytes=MAX_PARTS * 8 * self._n_part_arrays(k))]
        self.parts_bytes = max(self.parts_bytes, part_params[0].nbytes)
        red_loop = self._red_loop(k, red_order, total_red,
                                  f"({self.d.index})blockIdx.x * blockDim.x + threadIdx.x",
                                  f"({self.d.index})gridDim.x * blockDim.x", vals, idx_all, accs)
        shared = self._shared_decls(k)
        views = self._part_views(k)
        st1 = hoist + shared + views + self._acc_decls(k, accs) + red_loop + self._block_reduce(k, accs)
        st1 += ["if (threadIdx.x == 0) {"]
        for j, r in enumerate(k.reductions):
            if r.op in ("argmax", "argmin"):
                st1 += [f"  pv{j}[blockIdx.x] = {accs[j]}v;", f"  pi{j}[blockIdx.x] = {accs[j]};"]
            else:
                st1 += [f"  pv{j}[blockIdx.x] = {accs[j]};"]
        st1 += ["}"]
        self._cuda_kernel(k, k.name + "_part", st1, (GridDim(total_red, bs, MAX_PARTS),), (bs, 1, 1),
                          True, part_params)
        # stage 2: one block folds the partials in index order, then runs the epilogue
        fold = []
        for j, r in enumerate(k.reductions):
            if r.op in ("argmax", "argmin"):
                rel = ">" if r.op == "argmax" else "<"
                cond = f"pv{j}[p_] {rel} {accs[j]}v"
                if r.acc_dtype in ("float32", "float64"):
                    cond += f" || (pv{j}[p_] != pv{j}[p_] && {accs[j]}v == {accs[j]}v)"
                fold.append(f"if ({cond}) {{ {accs[j]}v = pv{j}[p_]; {accs[j]} = pi{j}[p_]; }}")
            else:
                fold.append(f"{accs[j]} = {self._combine(r.op, r.acc_dtype, accs[j], f'pv{j}[p_]')};")
        ix = self.d.index
        st2 = hoist + shared + views + self._acc_decls(k, accs) + [
            f"const {ix} np_ = {nparts};",
            f"for ({ix} p_ = threadIdx.x; p_ < np_; p_ += blockDim.x) {{", *_indent(fold), "}"]
        st2 += self._block_reduce(k, accs)
        st2 += ["if (threadIdx.x == 0) {", *_indent(self._phase(k, "out", idx_out, vals, accs)), "}"]
        self._cuda_kernel(k, k.name + "_final", st2, (GridDim(1),), (bs, 1, 1), True, part_params,
                          force_sizes=[self.size(total_red, True)])

    def _n_part_arrays(self, k: LoopKernel) -> int:
        return sum(2 if r.op in ("argmax", "argmin") else 1 for r in k.reductions)

    def _part_views(self, k: LoopKernel) -> list[str]:
        lines = []
        slot = 0
        for j, r in enumerate(k.reductions):
            t = self.ctype(r.acc_dtype)
            lines.append(f"{t}* pv{j} = ({t}*)(sg_parts + {slot * MAX_PARTS * 8});")
            slot += 1
            if r.op in ("argmax", "argmin"):
                lines.append(f"{self.d.index}* pi{j} = ({self.d.index}*)(sg_parts + {slot * MAX_PARTS * 8});")
                slot += 1
        return lines

    def _red_loop(self, k: LoopKernel, red_order: list[int], total: Size, start: str, step: str,
                  vals: dict[int, str], idx_all: list[str | None], accs: list[str]) -> list[str]:
        ix = self.d.index
        body = self._decompose(red_order, k.domain, "q_")
        body += self._phase(k, "point", idx_all, vals)
        body += self._combine_serial(k, vals, accs, "q_")
        return [f"for ({ix} q_ = {start}; q_ < {self.size(total, True)}; q_ += {step}) {{",
                *_indent(body), "}"]

    def _shared_decls(self, k: LoopKernel) -> list[str]:
        lines = []
        for j, r in enumerate(k.reductions):
            lines.append(f"__shared__ {self.ctype(r.acc_dtype)} sh{j}[32];")
            if r.op in ("argmax", "argmin"):
                lines.append(f"__shared__ {self.d.index} shi{j}[32];")
        return lines

    def _block_reduce(self, k: LoopKernel, accs: list[str]) -> list[str]:
        """Combine the accumulators of all threads of the block (result in every thread)."""
        lines: list[str] = []
        warp: list[str] = []
        for j, r in enumerate(k.reductions):
            a = accs[j]
            t = self.ctype(r.acc_dtype)
            if r.op in ("argmax", "argmin"):
                rel = ">" if r.op == "argmax" else "<"
                better = f"(ov_ {rel} {a}v || (ov_ == {a}v && oi_ < {a}))"
                if r.acc_dtype in ("float32", "float64"):
                    better = (f"((ov_ != ov_) ? ({a}v == {a}v || oi_ < {a}) : "
                              f"({a}v == {a}v && {better}))")
                warp.append(f"{{ const {t} ov_ = __shfl_down_sync(0xffffffffu, {a}v, o_); "
                            f"const {self.d.index} oi_ = __shfl_down_sync(0xffffffffu, {a}, o_); "
                            f"if {better} {{ {a}v = ov_; {a} = oi_; }} }}")
            else:
                warp.append(f"{a} = {self._combine(r.op, r.acc_dtype, a, f'__shfl_down_sync(0xffffffffu, {a}, o_)')};")
        loop = ["for (int o_ = 16; o_ > 0; o_ >>= 1) {", *_indent(warp), "}"]
        lines += loop
        lines.append("if ((threadIdx.x & 31) == 0) {")
        for j, r in enumerate(k.reductions):
            a = accs[j]
            if r.op in ("argmax", "argmin"):
                lines += [f"  sh{j}[threadIdx.x >> 5] = {a}v;", f"  shi{j}[threadIdx.x >> 5] = {a};"]
            else:
                lines.append(f"  sh{j}[threadIdx.x >> 5] = {a};")
        lines.append("}")
        lines.append("__syncthreads();")
        lines.append("if (threadIdx.x < 32) {")
        for j, r in enumerate(k.reductions):
            a = accs[j]
            if r.op in ("argmax", "argmin"):
                lines += [f"  {a}v = threadIdx.x < (blockDim.x >> 5) ? sh{j}[threadIdx.x] : "
                          f"{self.identity(r.op, r.acc_dtype)};",
                          f"  {a} = threadIdx.x < (blockDim.x >> 5) ? shi{j}[threadIdx.x] : 0;"]
            else:
                lines.append(f"  {a} = threadIdx.x < (blockDim.x >> 5) ? sh{j}[threadIdx.x] : "
                             f"{self.identity(r.op, r.acc_dtype)};")
        lines += _indent(loop)
        lines.append("  if (threadIdx.x == 0) {")
        for j, r in enumerate(k.reductions):
            a = accs[j]
            if r.op in ("argmax", "argmin"):
                lines += [f"    sh{j}[0] = {a}v;", f"    shi{j}[0] = {a};"]
            else:
                lines.append(f"    sh{j}[0] = {a};")
        lines += ["  }", "}", "__syncthreads();"]
        for j, r in enumerate(k.reductions):
            a = accs[j]
            if r.op in ("argmax", "argmin"):
                lines += [f"{a}v = sh{j}[0];", f"{a} = shi{j}[0];"]
            else:
                lines.append(f"{a} = sh{j}[0];")
        lines.append("__syncthreads();")
        return lines

    def _cuda_kernel(self, k: LoopKernel | LibCall, base: str, body: list[str], grid: tuple[GridDim, ...],
                     block: tuple[int, int, int], sync: bool, extra: Sequence[KernelParam] = (),
                     force_sizes: Sequence[str] = (), reads: Sequence[Buffer] | None = None,
                     writes: Sequence[Buffer] | None = None) -> None:
        body = _drop_unused(body)
        text = "\n".join(body) + " " + " ".join(force_sizes)
        fname = self.kernel_symbol(base)
        if reads is None:
            reads = k.reads()
        if writes is None:
            writes = k.writes()
        params = self.params(self.used_sizes(text, self.sizes), reads, writes, extra)
        self._emit_function(k, fname, params, body)
        self._launch(fname, k.name, params, grid, block, sync)

    # ==== library calls ===========================================================================
    def libcall(self, c: LibCall) -> None:
        handler = getattr(self, f"_lib_{c.op}", None)
        if handler is None:
            locs = sorted({n.loc for n in c.nodes})
            self.problems.append(f"{c.op} (library call {c.name})"
                                 + (f" (built at {', '.join(locs)})" if locs else ""))
            return
        handler(c)

    def _out_nest_c(self, shape: Sequence[Size], body: list[str], prefix: str = "o") -> list[str]:
        lines = []
        for depth, s in enumerate(shape):
            lines.append("  " * depth + f"for ({self.d.index} {prefix}{depth} = 0; {prefix}{depth} < "
                         f"{self.size(s, True)}; ++{prefix}{depth}) {{")
        lines += _indent(body, len(shape))
        for depth in reversed(range(len(shape))):
            lines.append("  " * depth + "}")
        return lines

    def _out_map(self, shape: Sequence[Size], body: list[str], prefix: str = "o") -> list[str]:
        """Run ``body`` at every index (``o0, o1, ...``) of ``shape``: loops in C, a
        grid-stride loop in CUDA."""
        if not self.d.parallel:
            return self._out_nest_c(shape, body, prefix)
        ix = self.d.index
        dec: list[str] = []
        if len(shape) == 1:
            dec = [f"const {ix} {prefix}0 = t_;"]
        elif shape:
            dec = [f"{ix} r_ = t_;"]
            for a in reversed(range(1, len(shape))):
                n = self.divisor(shape[a])
                dec.append(f"const {ix} {prefix}{a} = r_ % {n}; r_ /= {n};")
            dec.append(f"const {ix} {prefix}0 = r_;")
        return self._grid_loop(self.size(S.prod(tuple(shape)), True), dec + body)

    def _finish_lib(self, c: LibCall, base: str, body: list[str], total: Size, sync: bool = False,
                    extra: Sequence[KernelParam] = (), reads: Sequence[Buffer] | None = None,
                    writes: Sequence[Buffer] | None = None) -> None:
        if self.d.parallel:
            self._cuda_kernel(c, base, body, (GridDim(total, self.d.block, self.d.max_grid),),
                              (self.d.block, 1, 1), sync, extra, reads=reads, writes=writes)
            return
        text = "\n".join(body)
        fname = self.kernel_symbol(base)
        params = self.params(self.used_sizes(text, self.sizes), c.reads() if reads is None else reads,
                             c.writes() if writes is None else writes, extra)
        self._emit_function(c, fname, params, body)
        self.calls.append(f"{fname}({self.call_args(params)});")
        self.kernel_list.append(fname)

    def _err_param(self) -> KernelParam:
        self.uses_err = True
        return KernelParam("error", "sg_err", "int*" if self.d.parallel else "int32_t*")

    def _lib_take(self, c: LibCall) -> None:
        (xa, ia), (xs, is_) = c.inputs, c.input_shapes
        ax = c.attrs["axis"]
        out = c.output
        nd, ki = len(out.shape), len(is_)
        o = [f"o{a}" for a in range(nd)]
        n = self.size(xs[ax], True)
        ix = self.d.index
        iidx = self.index_expr(ia.offset, ia.coeffs, o[ax:ax + ki])
        xidx = self.index_expr(xa.offset, list(xa.coeffs[:ax]) + list(xa.coeffs[ax + 1:]),
                               o[:ax] + o[ax + ki:])
        step = self.size(xa.coeffs[ax]) if not isinstance(xa.coeffs[ax], int) else int_literal(xa.coeffs[ax])
        oidx = self.index_expr(0, _cstrides(out.shape), o)
        xv, iv, ov = self.var[id(xa.buffer)], self.var[id(ia.buffer)], self.var[id(out)]
        body = [f"{ix} k_ = ({ix}){iv}[{iidx}];",
                f"if (k_ < 0) k_ += {n};",
                f"if (k_ < 0 || k_ >= {n}) {{ *sg_err = {ERR['ERR_INDEX']}; "
                f"{ov}[{oidx}] = {self.lit(0, out.dtype)}; }}",
                f"else {ov}[{oidx}] = {xv}[{xidx} + k_ * {step}];"]
        self._index_precheck(ia, is_, f"k_ < -({n}) || k_ >= {n}")
        self._finish_lib(c, c.name, self._out_map(out.shape, body), out.size, extra=[self._err_param()])

    def _lib_one_hot(self, c: LibCall) -> None:
        (la,), (ls,) = c.inputs, c.input_shapes
        depth = int(c.attrs["depth"])
        out = c.output
        nd = len(out.shape)
        o = [f"o{a}" for a in range(nd)]
        ix = self.d.index
        lidx = self.index_expr(la.offset, la.coeffs, o[:-1])
        oidx = self.index_expr(0, _cstrides(out.shape), o)
        lv, ov = self.var[id(la.buffer)], self.var[id(out)]
        t = self.ctype(out.dtype)
        body = [f"const {ix} k_ = ({ix}){lv}[{lidx}];",
                f"if (o{nd - 1} == 0 && (k_ < 0 || k_ >= {depth})) *sg_err = {ERR['ERR_INDEX']};",
                f"{ov}[{oidx}] = ({t})(k_ == o{nd - 1});"]
        self._index_precheck(la, ls, f"k_ < 0 || k_ >= {depth}")
        self._finish_lib(c, c.name, self._out_map(out.shape, body), out.size, extra=[self._err_param()])

    def _lib_take_grad(self, c: LibCall) -> None:
        (ga, ia), (gs, is_) = c.inputs, c.input_shapes
        ax = c.attrs["axis"]
        out = c.output
        nd, ki = len(gs), len(is_)
        o = [f"o{a}" for a in range(nd)]
        ix = self.d.index
        n = self.divisor(c.attrs["size"])
        ostr = _cstrides(out.shape)
        iidx = self.index_expr(ia.offset, ia.coeffs, o[ax:ax + ki])
        gidx = self.index_expr(ga.offset, ga.coeffs, o)
        oidx = self.index_expr(0, list(ostr[:ax]) + list(ostr[ax + 1:]), o[:ax] + o[ax + ki:])
        step = self.size(ostr[ax]) if not isinstance(ostr[ax], int) else int_literal(ostr[ax])
        gv, iv, ov = self.var[id(ga.buffer)], self.var[id(ia.buffer)], self.var[id(out)]
        zero = [f"{ov}[o0] = {self.lit(0, out.dtype)};"]
        where = f"{ov}[{oidx} + k_ * {step}]"
        add = (f"atomicAdd(&{where}, {gv}[{gidx}]);" if self.d.parallel
               else f"{where} += {gv}[{gidx}];")
        scatter = [f"if ({n} > 0) {{",
                   f"  const {ix} k_ = ((({ix}){iv}[{iidx}] % {n}) + {n}) % {n};",
                   f"  {add}", "}"]
        if self.d.parallel:
            self._finish_lib(c, c.name + "_zero", self._out_map((out.size,), zero), out.size,
                             reads=[], writes=[out])
            self._finish_lib(c, c.name, self._out_map(gs, scatter), S.prod(tuple(gs)))
        else:
            body = self._out_nest_c((out.size,), zero) + self._out_nest_c(gs, scatter)
            self._finish_lib(c, c.name, body, out.size)

    def _index_precheck(self, acc: Access, shape: Sequence[Size], bad: str) -> None:
        """C: check an index operand that is an input before anything is written."""
        if self.d.parallel or acc.buffer.kind != "input":
            return
        o = [f"o{a}" for a in range(len(shape))]
        ix = self.d.index
        body = [f"const {ix} k_ = ({ix}){self.var[id(acc.buffer)]}"
                f"[{self.index_expr(acc.offset, acc.coeffs, o)}];",
                f"if ({bad}) return {self.name}_ERR_INDEX;"]
        self.index_checks += ["{", *_indent(self._out_nest_c(shape, body)), "}"]

    def _lib_matmul(self, c: LibCall) -> None:
        (aa, ba), (ash, bsh) = c.inputs, c.input_shapes
        nb = int(c.attrs.get("batch", len(ash) - 2))
        out = c.output
        m, kk, n = ash[-2], ash[-1], bsh[-1]
        dt = out.dtype
        ix = self.d.index
        bidx = [f"b{a}" for a in range(nb)]
        a_off = self.index_expr(aa.offset, aa.coeffs[:nb], bidx)
        b_off = self.index_expr(ba.offset, ba.coeffs[:nb], bidx)
        c_off = self.index_expr(0, _cstrides(out.shape)[:nb], bidx)
        sai, sak = (self.size(s) for s in aa.coeffs[-2:])
        sbk, sbj = (self.size(s) for s in ba.coeffs[-2:])
        M, N, K = self.size(m, True), self.size(n, True), self.size(kk, True)
        av, bv, cv = self.var[id(aa.buffer)], self.var[id(ba.buffer)], self.var[id(out)]
        if not self.d.parallel:
            self.helpers.add(("sg_gemm", dt))
            call = [f"sg_gemm_{SC.TAG[dt]}({M}, {N}, {K}, {av} + {a_off}, {sai}, {sak}, "
                    f"{bv} + {b_off}, {sbk}, {sbj}, {cv} + {c_off});"]
            body = self._out_nest_c(out.shape[:nb], call, "b")
            self._finish_lib(c, c.name, body, out.size)
            return
        tile = self.d.tile
        t = self.ctype(dt)
        zero = self.lit(0, dt)
        nbatch = S.prod(tuple(out.shape[:nb]))
        dec: list[str] = []
        if nb == 1:
            dec = [f"const {ix} b0 = bt_;"]
        elif nb > 1:
            dec = [f"{ix} r_ = bt_;"]
            for a in reversed(range(1, nb)):
                s = self.divisor(out.shape[a])
                dec.append(f"const {ix} b{a} = r_ % {s}; r_ /= {s};")
            dec.append(f"const {ix} b0 = r_;")
        body = [
            f"__shared__ {t} as_[{tile}][{tile + 1}];",
            f"__shared__ {t} bs_[{tile}][{tile + 1}];",
            "const int tx_ = threadIdx.x, ty_ = threadIdx.y;",
            f"for ({ix} bt_ = blockIdx.z; bt_ < {self.size(nbatch, True)}; bt_ += gridDim.z) {{",
            *_indent(dec),
            f"  const {t}* A_ = {av} + {a_off};",
            f"  const {t}* B_ = {bv} + {b_off};",
            f"  {t}* C_ = {cv} + {c_off};",
            f"  for ({ix} i0_ = ({ix})blockIdx.y * {tile}; i0_ < {M}; i0_ += ({ix})gridDim.y * {tile}) {{",
            f"    for ({ix} j0_ = ({ix})blockIdx.x * {tile}; j0_ < {N}; j0_ += ({ix})gridDim.x * {tile}) {{",
            f"      const {ix} i_ = i0_ + ty_, j_ = j0_ + tx_;",
            f"      {t} s_ = {zero};",
            f"      for ({ix} k0_ = 0; k0_ < {K}; k0_ += {tile}) {{",
            f"        as_[ty_][tx_] = (i_ < {M} && k0_ + tx_ < {K}) ? A_[i_ * {sai} + (k0_ + tx_) * {sak}] : {zero};",
            f"        bs_[ty_][tx_] = (k0_ + ty_ < {K} && j_ < {N}) ? B_[(k0_ + ty_) * {sbk} + j_ * {sbj}] : {zero};",
            "        __syncthreads();",
            f"        for (int kk_ = 0; kk_ < {tile}; ++kk_) s_ += as_[ty_][kk_] * bs_[kk_][tx_];",
            "        __syncthreads();",
            "      }",
            f"      if (i_ < {M} && j_ < {N}) C_[i_ * {N} + j_] = s_;",
            "    }",
            "  }",
            "}",
        ]
        grid = (GridDim(n, tile, 65535), GridDim(m, tile, 65535), GridDim(nbatch, 1, 65535))
        self._cuda_kernel(c, c.name, body, grid, (tile, tile, 1), True)

    # -- convolution and pooling: one output element per iteration (gather form) -------------------
    def _at(self, acc: Access, idx: Sequence[str]) -> str:
        return f"{self.var[id(acc.buffer)]}[{self.index_expr(acc.offset, acc.coeffs, list(idx))}]"

    def _pairs(self, c: LibCall, *keys: str) -> list[tuple[int, int]]:
        return [tuple(int(v) for v in c.attrs[k]) for k in keys]  # type: ignore[misc]

    def _lib_conv2d(self, c: LibCall) -> None:
        (xa, wa), (xs, ws) = c.inputs, c.input_shapes
        out = c.output
        (sh, sw), (ph, pw), (dh, dw) = self._pairs(c, "stride", "padding", "dilation")
        ix, t = self.d.index, self.ctype(out.dtype)
        C, H, W = (self.size(s, True) for s in xs[1:])
        kh, kw = _static(ws[2]), _static(ws[3])
        body = [f"{t} s_ = {self.lit(0, out.dtype)};",
                f"for ({ix} c_ = 0; c_ < {C}; ++c_) {{",
                f"  for ({ix} a_ = 0; a_ < {kh}; ++a_) {{",
                f"    const {ix} h_ = o2 * {sh} + a_ * {dh} - {ph};",
                f"    if (h_ < 0 || h_ >= {H}) continue;",
                f"    for ({ix} b_ = 0; b_ < {kw}; ++b_) {{",
                f"      const {ix} w_ = o3 * {sw} + b_ * {dw} - {pw};",
                f"      if (w_ < 0 || w_ >= {W}) continue;",
                f"      s_ += {self._at(xa, ['o0', 'c_', 'h_', 'w_'])} * {self._at(wa, ['o1', 'c_', 'a_', 'b_'])};",
                "    }", "  }", "}",
                f"{self.var[id(out)]}[{self.index_expr(0, _cstrides(out.shape), ['o0', 'o1', 'o2', 'o3'])}] = s_;"]
        self._finish_lib(c, c.name, self._out_map(out.shape, body), out.size)

    def _lib_conv2d_grad_input(self, c: LibCall) -> None:
        (ga, wa), (gs, ws) = c.inputs, c.input_shapes
        out = c.output
        (sh, sw), (ph, pw), (dh, dw) = self._pairs(c, "stride", "padding", "dilation")
        ix, t = self.d.index, self.ctype(out.dtype)
        nout, Ho, Wo = (self.size(s, True) for s in gs[1:])
        kh, kw = _static(ws[2]), _static(ws[3])
        body = [f"{t} s_ = {self.lit(0, out.dtype)};",
                f"for ({ix} q_ = 0; q_ < {nout}; ++q_) {{",
                f"  for ({ix} a_ = 0; a_ < {kh}; ++a_) {{",
                f"    const {ix} hh_ = o2 + {ph} - a_ * {dh};",
                f"    if (hh_ < 0 || hh_ % {sh} != 0 || hh_ / {sh} >= {Ho}) continue;",
                f"    for ({ix} b_ = 0; b_ < {kw}; ++b_) {{",
                f"      const {ix} ww_ = o3 + {pw} - b_ * {dw};",
                f"      if (ww_ < 0 || ww_ % {sw} != 0 || ww_ / {sw} >= {Wo}) continue;",
                f"      s_ += {self._at(ga, ['o0', 'q_', f'(hh_ / {sh})', f'(ww_ / {sw})'])} * "
                f"{self._at(wa, ['q_', 'o1', 'a_', 'b_'])};",
                "    }", "  }", "}",
                f"{self.var[id(out)]}[{self.index_expr(0, _cstrides(out.shape), ['o0', 'o1', 'o2', 'o3'])}] = s_;"]
        self._finish_lib(c, c.name, self._out_map(out.shape, body), out.size)

    def _lib_conv2d_grad_weight(self, c: LibCall) -> None:
        (xa, ga), (xs, gs) = c.inputs, c.input_shapes
        out = c.output
        (sh, sw), (ph, pw), (dh, dw) = self._pairs(c, "stride", "padding", "dilation")
        ix, t = self.d.index, self.ctype(out.dtype)
        N, H, W = self.size(xs[0], True), self.size(xs[2], True), self.size(xs[3], True)
        Ho, Wo = self.size(gs[2], True), self.size(gs[3], True)
        body = [f"{t} s_ = {self.lit(0, out.dtype)};",
                f"for ({ix} n_ = 0; n_ < {N}; ++n_) {{",
                f"  for ({ix} i_ = 0; i_ < {Ho}; ++i_) {{",
                f"    const {ix} h_ = i_ * {sh} + o2 * {dh} - {ph};",
                f"    if (h_ < 0 || h_ >= {H}) continue;",
                f"    for ({ix} j_ = 0; j_ < {Wo}; ++j_) {{",
                f"      const {ix} w_ = j_ * {sw} + o3 * {dw} - {pw};",
                f"      if (w_ < 0 || w_ >= {W}) continue;",
                f"      s_ += {self._at(ga, ['n_', 'o0', 'i_', 'j_'])} * {self._at(xa, ['n_', 'o1', 'h_', 'w_'])};",
                "    }", "  }", "}",
                f"{self.var[id(out)]}[{self.index_expr(0, _cstrides(out.shape), ['o0', 'o1', 'o2', 'o3'])}] = s_;"]
        self._finish_lib(c, c.name, self._out_map(out.shape, body), out.size)

    def _window_argmax(self, xa: Access, dtype: str, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int,
                       H: str, W: str, i: str, j: str, n: str, ch: str) -> list[str]:
        """(ba_, bb_): the first maximum of window (i, j) of the -inf padded input."""
        ix, t = self.d.index, self.ctype(dtype)
        ninf = self.lit(-math.inf, dtype)
        return [f"{t} bv_ = {ninf};",
                f"{ix} ba_ = 0, bb_ = 0;",
                f"for ({ix} a_ = 0; a_ < {kh}; ++a_) {{",
                f"  for ({ix} b_ = 0; b_ < {kw}; ++b_) {{",
                f"    const {ix} h_ = {i} * {sh} + a_ - {ph}, w_ = {j} * {sw} + b_ - {pw};",
                f"    const {t} v_ = (h_ < 0 || h_ >= {H} || w_ < 0 || w_ >= {W}) ? {ninf} : "
                f"{self._at(xa, [n, ch, 'h_', 'w_'])};",
                "    if ((a_ == 0 && b_ == 0) || v_ > bv_ || (v_ != v_ && bv_ == bv_)) "
                "{ bv_ = v_; ba_ = a_; bb_ = b_; }",
                "  }", "}"]

    def _lib_max_pool2d(self, c: LibCall) -> None:
        (xa,), (xs,) = c.inputs, c.input_shapes
        out = c.output
        (kh, kw), (sh, sw), (ph, pw) = self._pairs(c, "kernel", "stride", "padding")
        ix, t = self.d.index, self.ctype(out.dtype)
        H, W = self.size(xs[2], True), self.size(xs[3], True)
        ninf = self.lit(-math.inf, out.dtype)
        mx = SC.expr("maximum", ["m_", "v_"], [out.dtype, out.dtype], out.dtype, self.d, self.helpers)
        body = [f"{t} m_ = {ninf};",
                f"for ({ix} a_ = 0; a_ < {kh}; ++a_) {{",
                f"  const {ix} h_ = o2 * {sh} + a_ - {ph};",
                f"  if (h_ < 0 || h_ >= {H}) continue;",
                f"  for ({ix} b_ = 0; b_ < {kw}; ++b_) {{",
                f"    const {ix} w_ = o3 * {sw} + b_ - {pw};",
                f"    if (w_ < 0 || w_ >= {W}) continue;",
                f"    const {t} v_ = {self._at(xa, ['o0', 'o1', 'h_', 'w_'])};",
                f"    m_ = {mx};",
                "  }", "}",
                f"{self.var[id(out)]}[{self.index_expr(0, _cstrides(out.shape), ['o0', 'o1', 'o2', 'o3'])}] = m_;"]
        self._finish_lib(c, c.name, self._out_map(out.shape, body), out.size)

    def _lib_max_pool2d_gather(self, c: LibCall) -> None:
        (xa, ca), (xs, _cs) = c.inputs, c.input_shapes
        out = c.output
        (kh, kw), (sh, sw), (ph, pw) = self._pairs(c, "kernel", "stride", "padding")
        H, W = self.size(xs[2], True), self.size(xs[3], True)
        ix = self.d.index
        body = self._window_argmax(xa, out.dtype, kh, kw, sh, sw, ph, pw, H, W, "o2", "o3", "o0", "o1")
        body += [f"const {ix} h_ = o2 * {sh} + ba_ - {ph}, w_ = o3 * {sw} + bb_ - {pw};",
                 f"{self.var[id(out)]}[{self.index_expr(0, _cstrides(out.shape), ['o0', 'o1', 'o2', 'o3'])}] = "
                 f"(h_ < 0 || h_ >= {H} || w_ < 0 || w_ >= {W}) ? {self.lit(0, out.dtype)} : "
                 f"{self._at(ca, ['o0', 'o1', 'h_', 'w_'])};"]
        self._finish_lib(c, c.name, self._out_map(out.shape, body), out.size)

    def _lib_max_pool2d_grad(self, c: LibCall) -> None:
        (xa, ga), (xs, gs) = c.inputs, c.input_shapes
        out = c.output
        (kh, kw), (sh, sw), (ph, pw) = self._pairs(c, "kernel", "stride", "padding")
        H, W = self.size(xs[2], True), self.size(xs[3], True)
        Ho, Wo = self.size(gs[2], True), self.size(gs[3], True)
        ix, t = self.d.index, self.ctype(out.dtype)
        inner = self._window_argmax(xa, out.dtype, kh, kw, sh, sw, ph, pw, H, W, "i_", "j_", "o0", "o1")
        body = [f"{t} s_ = {self.lit(0, out.dtype)};",
                f"for ({ix} i_ = 0; i_ < {Ho}; ++i_) {{",
                f"  const {ix} ra_ = o2 + {ph} - i_ * {sh};",
                f"  if (ra_ < 0 || ra_ >= {kh}) continue;",
                f"  for ({ix} j_ = 0; j_ < {Wo}; ++j_) {{",
                f"    const {ix} rb_ = o3 + {pw} - j_ * {sw};",
                f"    if (rb_ < 0 || rb_ >= {kw}) continue;",
                *["    " + line for line in inner],
                f"    if (ba_ == ra_ && bb_ == rb_) s_ += {self._at(ga, ['o0', 'o1', 'i_', 'j_'])};",
                "  }", "}",
                f"{self.var[id(out)]}[{self.index_expr(0, _cstrides(out.shape), ['o0', 'o1', 'o2', 'o3'])}] = s_;"]
        self._finish_lib(c, c.name, self._out_map(out.shape, body), out.size)

    def _lib_avg_pool2d(self, c: LibCall) -> None:
        (xa,), (xs,) = c.inputs, c.input_shapes
        out = c.output
        (kh, kw), (sh, sw), (ph, pw) = self._pairs(c, "kernel", "stride", "padding")
        H, W = self.size(xs[2], True), self.size(xs[3], True)
        ix, t = self.d.index, self.ctype(out.dtype)
        body = [f"{t} s_ = {self.lit(0, out.dtype)};",
                f"for ({ix} a_ = 0; a_ < {kh}; ++a_) {{",
                f"  const {ix} h_ = o2 * {sh} + a_ - {ph};",
                f"  if (h_ < 0 || h_ >= {H}) continue;",
                f"  for ({ix} b_ = 0; b_ < {kw}; ++b_) {{",
                f"    const {ix} w_ = o3 * {sw} + b_ - {pw};",
                f"    if (w_ < 0 || w_ >= {W}) continue;",
                f"    s_ += {self._at(xa, ['o0', 'o1', 'h_', 'w_'])};",
                "  }", "}",
                f"{self.var[id(out)]}[{self.index_expr(0, _cstrides(out.shape), ['o0', 'o1', 'o2', 'o3'])}] = "
                f"s_ / {self.lit(kh * kw, out.dtype)};"]
        self._finish_lib(c, c.name, self._out_map(out.shape, body), out.size)

    def _lib_avg_pool2d_grad(self, c: LibCall) -> None:
        (ga,), (gs,) = c.inputs, c.input_shapes
        out = c.output
        (kh, kw), (sh, sw), (ph, pw) = self._pairs(c, "kernel", "stride", "padding")
        Ho, Wo = self.size(gs[2], True), self.size(gs[3], True)
        ix, t = self.d.index, self.ctype(out.dtype)
        body = [f"{t} s_ = {self.lit(0, out.dtype)};",
                f"for ({ix} i_ = 0; i_ < {Ho}; ++i_) {{",
                f"  const {ix} ra_ = o2 + {ph} - i_ * {sh};",
                f"  if (ra_ < 0 || ra_ >= {kh}) continue;",
                f"  for ({ix} j_ = 0; j_ < {Wo}; ++j_) {{",
                f"    const {ix} rb_ = o3 + {pw} - j_ * {sw};",
                f"    if (rb_ < 0 || rb_ >= {kw}) continue;",
                f"    s_ += {self._at(ga, ['o0', 'o1', 'i_', 'j_'])} / {self.lit(kh * kw, out.dtype)};",
                "  }", "}",
                f"{self.var[id(out)]}[{self.index_expr(0, _cstrides(out.shape), ['o0', 'o1', 'o2', 'o3'])}] = s_;"]
        self._finish_lib(c, c.name, self._out_map(out.shape, body), out.size)

    # ==== the program ===============================================================================
    def render(self) -> None:
        for k in self.lp.kernels:
            if isinstance(k, LoopKernel):
                self.loop_kernel(k)
            else:
                self.libcall(k)
        if self.problems:
            raise UnsupportedError(
                f"the {self.d.name} renderer cannot handle {len(self.problems)} part"
                f"{'s' if len(self.problems) > 1 else ''} of this program:\n  "
                + "\n  ".join(self.problems))
        if self.d.parallel:
            if self.uses_err:
                self.regions.insert(0, Region("error", (), (4,)))
            if self.parts_bytes:
                self.regions.append(Region("partials", (), (self.parts_bytes,)))


# reductions without an identity: NumPy refuses them over an empty extent
NO_IDENTITY = ("max", "min", "argmax", "argmin")


def empty_reductions(nodes: Iterable[Tensor]) -> list[tuple[Size, str, str]]:
    """``(reduced extent, op, loc)`` of every reduction in ``nodes`` that has no identity
    and whose reduced extent may be 0. A decomposed softmax's max shift is not among them:
    it is not a node of the graph."""
    out: list[tuple[Size, str, str]] = []
    for n in nodes:
        if n.op.name in NO_IDENTITY:
            x = n.inputs[0]
            extent = S.prod(tuple(x.shape[a] for a in n.attr("axes")))
            if not (isinstance(extent, int) and extent > 0):
                out.append((extent, n.op.name, n.loc))
    return out


def _graph_reductions(p: _Program, reductions: Sequence[tuple[Size, str, str]] | None) -> None:
    if reductions is None:
        return
    p.derive_nonempty = False
    for extent, op, loc in reductions:
        p.nonempty.append((p.size(extent, True), None, f"{op} reduces over an empty axis (built at {loc})"))


def _static(s: Size) -> int:
    if not isinstance(s, int):
        raise UnsupportedError(f"a kernel size must be static here, got {s}")
    return s


def _drop_unused(body: list[str]) -> list[str]:
    """Drop hoisted ``const T vN = ...;`` lines whose value the body never uses."""
    import re

    text = "\n".join(body)
    out = []
    for line in body:
        m = re.match(r"const [\w ]+ (v\d+) = ", line)
        if m and len(re.findall(rf"\b{m.group(1)}\b", text)) == 1:
            continue
        out.append(line)
    return out


def _cstrides(shape: Sequence[Size]) -> list[Size]:
    strides: list[Size] = []
    acc: Size = 1
    for s in reversed(tuple(shape)):
        strides.append(acc)
        acc = S.mul(acc, s)
    return list(reversed(strides))


# -- assembling the files ----------------------------------------------------------------------------
def _helpers_text(p: _Program) -> list[str]:
    from symgrad.backends.cstyle import host as H

    out = []
    for h, dt in sorted(p.helpers):
        if h == "sg_bits":
            out.append(H.bits_helper(p.d.helper, dt))
    if any(h == "sg_nparts" for h, _ in p.helpers):
        out.append(H.nparts_helper(p.d.helper, p.d.block, MAX_PARTS))
    for h, dt in sorted(p.helpers):
        if h in SC.HELPERS:
            out.append(SC.helper_source(h, dt, p.d))
    for h, dt in sorted(p.helpers):
        if h == "sg_gemm":
            out.append(H.gemm_helper(dt, p.name))
    return out


def render_program(
    lowered: LoweredProgram,
    dialect: str = "c",
    name: str = "model",
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    checks: Sequence[tuple[str, Size, Size, str]] = (),
    header_name: str | None = None,
    block: int | None = None,
    target: str | None = None,
    reductions: Sequence[tuple[Size, str, str]] | None = None,
) -> RenderedSource:
    """Render a lowered program as C99 (``dialect="c"``) or CUDA (``dialect="cuda"``).

    Parameters
    ----------
    lowered : the program from :func:`symgrad.backends.lower.lower`.
    dialect : ``"c"`` or ``"cuda"``.
    name : the NAME prefix of every exported symbol; made a valid C identifier
        (``RenderedSource.name`` is the one used).
    input_names, output_names : the user's names of the inputs and outputs (for the
        metadata functions and the header); default the buffers' names / ``out0``...
    checks : size constraints ``(rel, a, b, what)`` with ``rel`` ``"=="`` or ``"<="``
        that the dims must satisfy (the graph's ``node.checks``); the constraints of the
        nodes in the kernels are added automatically.
    header_name : the file name the source includes (default ``NAME.h``).
    block : CUDA threads per block (default 256; a multiple of 32, at most 1024).
    target : the word written into the header's first line (default the dialect).
    reductions : ``(reduced extent, op, loc)`` of the graph's reductions that have no
        identity (:func:`empty_reductions`): the dims are refused (code 4) where one
        reduces over nothing, as NumPy refuses it. Default: derived from the kernels.

    Raises
    ------
    UnsupportedError : listing every op or library call the dialect cannot render.
    """
    from symgrad.backends.cstyle import host as H

    d = DIALECTS[dialect]
    if block is not None:
        if block % 32 or not 32 <= block <= 1024:
            raise ValueError(f"block must be a multiple of 32 in [32, 1024], got {block}")
        from dataclasses import replace

        d = replace(d, block=block)
    all_checks = list(checks)
    for k in lowered.kernels:
        for n in k.nodes:
            for rel, a, b, what in n.checks:
                all_checks.append((rel, a, b, f"{what} (built at {n.loc})"))
    p = _Program(lowered, d, name, input_names, output_names, all_checks, "embed")
    _graph_reductions(p, reductions)
    consts = H.const_arrays(p) if lowered.consts else []  # may rename: before the kernels
    p.render()
    prep, slots = H.prepare(p)
    entry = H.entry(p, slots)
    meta = H.metadata(p, slots)
    hdr = H.header(p, target or dialect)
    nm = p.name
    hname = header_name or f"{nm}.h"
    title = (f"/* {nm}.{'cu' if d.parallel else 'c'}: generated by symgrad (target {target or dialect}); "
             f"the ABI is in {hname} and docs/abi.md. */")
    device: list[str] = []
    helpers = _helpers_text(p)
    if helpers:
        device += ["/* -- scalar helpers -- */", *helpers]
    if consts:
        device += ["/* -- constants -- */", *consts]
    device += ["/* -- kernels, in the order they run -- */", *p.functions]
    host = ["/* -- sizes, constraints and workspace layout, from dims -- */", prep,
            "/* -- the entry point -- */", entry, "/* -- metadata -- */", meta]
    if d.parallel:
        extra = [
            f'extern "C" __global__ void {nm}_sg_clear(int* err) {{\n'
            "  if (threadIdx.x == 0 && blockIdx.x == 0) *err = 0;\n}",
            f'extern "C" __global__ void {nm}_sg_copy(const unsigned char* __restrict__ src, '
            "unsigned char* __restrict__ dst, long long n) {\n"
            "  for (long long t_ = (long long)blockIdx.x * blockDim.x + threadIdx.x; t_ < n; "
            "t_ += (long long)gridDim.x * blockDim.x) dst[t_] = src[t_];\n}",
        ]
        glue = [
            "/* -- host code: nvcc, or g++ -std=c++20 -include shim.h (symgrad's CUDA host shim) -- */",
            "#include <stddef.h>", "#include <stdint.h>", "#include <string.h>",
            "#if defined(SYMGRAD_SHIM)",
            "typedef struct CUstream_st* cudaStream_t;",
            f"#define {nm}_LAUNCH(k, g, b, s, st, ...) sgshim::launch((k), (g), (b), (s), __VA_ARGS__)",
            f"#define {nm}_LAUNCH_LOOPS(k, g, b, s, st, ...) "
            "sgshim::launch_loops((k), (g), (b), (s), __VA_ARGS__)",
            f"#define {nm}_LAST_ERROR() 0",
            f"#define {nm}_READ_ERROR(dst, src, st) ((void)(st), memcpy((dst), (src), 4), 0)",
            "#else",
            "#include <cuda_runtime.h>",
            f"#define {nm}_LAUNCH(k, g, b, s, st, ...) (k<<<(g), (b), (s), (st)>>>(__VA_ARGS__), 0)",
            f"#define {nm}_LAUNCH_LOOPS {nm}_LAUNCH",
            f"#define {nm}_LAST_ERROR() ((int)cudaGetLastError())",
            f"#define {nm}_READ_ERROR(dst, src, st) ((int)cudaMemcpyAsync((dst), (src), 4, "
            "cudaMemcpyDeviceToHost, (st)) | (int)cudaStreamSynchronize(st))",
            "#endif",
            f'#include "{hname}"',
            H.host_helpers("\n".join(host)),
            "static unsigned int sg_grid_(int64_t n, int64_t per, int64_t cap) {\n"
            "  int64_t g = n / per + (n % per != 0);\n"
            "  return (unsigned int)(g < 1 ? 1 : (g > cap ? cap : g));\n}",
        ]
        device_src = "\n\n".join(device) + "\n"
        source = "\n\n".join([title, "/* -- device code (compiles alone with NVRTC) -- */", *device,
                              *extra, *glue, *host]) + "\n"
    else:
        includes = [f"#include {i}" for i in d.includes] + [
            f'#include "{hname}"', f"#ifdef {nm}_USE_CBLAS", "#include <cblas.h>", "#endif"]
        device_src = ""
        body = "\n\n".join([*device, *host])
        source = "\n\n".join([title, "\n".join(includes), H.host_helpers(body), body]) + "\n"
    return RenderedSource(nm, dialect, source, hdr, device_src, list(p.kernel_list), list(p.launches),
                          list(p.regions), dict(p.names), [h for h, _ in sorted(p.helpers)])


def render_frame_glue(
    lowered: LoweredProgram,
    name: str,
    program_symbol: str,
    gemm_prefix: str,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    checks: Sequence[tuple[str, Size, Size, str]] = (),
    header_name: str | None = None,
    target: str = "llvm",
    reductions: Sequence[tuple[Size, str, str]] | None = None,
) -> RenderedSource:
    """The C ABI around separately compiled kernels that take a *frame*.

    ``program_symbol`` is ``int32_t f(void** frame, const int64_t* dims)`` running every
    kernel of ``lowered``, with one frame pointer per input (by ``Buffer.index``), per
    distinct output (by ``Buffer.index``), per constant and per workspace slot, in that
    order, and returning nonzero for an out-of-range index. The glue validates dims and
    pointers, checks index inputs, lays out the workspace, fills the frame, calls it, and
    defines ``<gemm_prefix>_sgemm``/``_dgemm`` (Fortran BLAS conventions) for the kernels'
    matrix products (``-D<NAME>_USE_CBLAS`` forwards them to CBLAS).
    """
    from symgrad.backends.cstyle import host as H

    d = DIALECTS["c"]
    all_checks = list(checks)
    for k in lowered.kernels:
        for n in k.nodes:
            for rel, a, b, what in n.checks:
                all_checks.append((rel, a, b, f"{what} (built at {n.loc})"))
    p = _Program(lowered, d, name, input_names, output_names, all_checks, "embed")
    _graph_reductions(p, reductions)
    for k in lowered.kernels:
        if isinstance(k, LibCall) and k.op == "take":
            size = p.size(k.input_shapes[0][k.attrs["axis"]], True)
            p._index_precheck(k.inputs[1], k.input_shapes[1], f"k_ < -({size}) || k_ >= {size}")
        elif isinstance(k, LibCall) and k.op == "one_hot":
            depth = int(k.attrs["depth"])
            p._index_precheck(k.inputs[0], k.input_shapes[0], f"k_ < 0 || k_ >= {depth}")
        if p.derive_nonempty and isinstance(k, LoopKernel) and any(r.op in NO_IDENTITY
                                                                   for r in k.reductions):
            red = set(k.reduce_axes)
            total_red = S.prod(tuple(s for a, s in enumerate(k.domain) if a in red))
            total_out = S.prod(tuple(s for a, s in enumerate(k.domain) if a not in red))
            if not isinstance(total_red, int):
                p.nonempty.append((p.size(total_red, True), p.size(total_out, True),
                                   f"kernel {k.name} reduces over an empty axis"))
    consts = H.const_arrays(p) if lowered.consts else []
    prep, slots = H.prepare(p)
    entry = H.entry_frame(p, slots, program_symbol)
    meta = H.metadata(p, slots)
    hdr = H.header(p, target)
    nm = p.name
    hname = header_name or f"{nm}.h"
    title = (f"/* {nm}_abi.c: generated by symgrad (target {target}): the C ABI ({hname}, "
             f"docs/abi.md) around the compiled kernels. */")
    includes = [f"#include {i}" for i in d.includes] + [
        f'#include "{hname}"', f"#ifdef {nm}_USE_CBLAS", "#include <cblas.h>", "#endif"]
    decl = f"int32_t {program_symbol}(void** frame, const int64_t* dims);"
    gemms = [H.fortran_gemm(dt, gemm_prefix, nm) for dt in ("float32", "float64")]
    body = "\n\n".join([*consts, "/* -- the compiled kernels -- */", decl, *gemms, prep,
                         "/* -- the entry point -- */", entry, "/* -- metadata -- */", meta])
    source = "\n\n".join([title, "\n".join(includes), H.host_helpers(body), body]) + "\n"
    return RenderedSource(nm, "c", source, hdr, "", [program_symbol], [], list(p.regions),
                          dict(p.names), [])
