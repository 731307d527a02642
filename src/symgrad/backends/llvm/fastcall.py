"""The fast call: one native function that checks the arguments, allocates the outputs,
runs the program and returns them, so a small call costs a Python method call instead of
several Python frames and a ``ctypes`` foreign call.

``PROGRAM_fast(self, args, nargs)`` is a CPython ``METH_FASTCALL`` function. ``self`` is
a small handle array ``[table address, single]``; the table (:class:`FastLayout`) is an
``int64`` array the run time fills: the frame and sizes of one prepared call state, the
Python objects the checks compare against, and the output shapes for those sizes. The
function accepts exactly what the common call looks like: one argument per input, each an
exact ``numpy.ndarray`` with the input's dtype, rank and sizes, C-contiguous and aligned,
or, for a 0-d input, a NumPy scalar of the input's dtype or a Python ``float`` for a
float input (rounded to ``float32`` as NumPy's cast does, unless it overflows). Anything
else, sizes other than the prepared ones, or a nonzero result of the program returns the
table's *slow* object, and the caller takes the general path, which converts, explains
errors and prepares the state for new sizes. The function runs
holding the GIL, so the one prepared state is never used by two calls at once; the
table is rewritten by one thread at a time (:meth:`FastCall.prepare`), and each builtin
keeps alive everything its table points to (the table, the prepared state, the machine
code and the program's constants).

Object layouts (offsets into ``PyArrayObject`` and the scalar objects) and NumPy's
``PyArray_New`` slot are checked once per process against live objects
(:func:`available`); where any check fails the fast call is not used.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import sys
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir

from symgrad.backends.llvm.codegen import F32, F64, I1, I8, I32, I64, PTR
from symgrad.backends.lower import LoweredProgram
from symgrad.ir.dtypes import DTYPES
from symgrad.ir.shape import Dim

# PyArrayObject_fields and PyObject offsets (64-bit CPython), checked by `available`
OB_TYPE, A_DATA, A_ND, A_DIMS, A_DESCR, A_FLAGS = 8, 16, 24, 32, 56, 64
SCALAR_VALUE = 16  # PyObject_HEAD, then the value, in NumPy scalars and Python floats
TUPLE_ITEMS = 24  # offset of ob_item in a tuple
NEED_FLAGS = 0x1 | 0x100  # NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED
METH_FASTCALL = 0x80

# fixed table words
T_FRAME, T_DIMS, T_ENABLED, T_SLOW, T_NDARRAY, T_PYFLOAT = range(6)
T_FIXED = 6


@dataclass(frozen=True)
class FastLayout:
    """Where each value lives in the table, known from the lowered program alone.

    Per input ``k``: its dtype object at ``inputs + 3k``, its NumPy scalar type at
    ``inputs + 3k + 1`` and a word for a converted scalar; the prepared sizes at ``symbols``; per distinct output ``j``:
    its type number then its sizes at ``outputs[j]``."""

    in_specs: tuple[tuple[str, tuple[int | str, ...]], ...]  # dtype, sizes (int or symbol)
    sources: tuple[tuple[int, int], ...]  # (input, axis) giving each size symbol
    out_ranks: tuple[int, ...]  # of the distinct outputs, in frame order
    out_order: tuple[int, ...]  # distinct output of each returned position
    inputs: int
    symbols: int
    outputs: tuple[int, ...]
    size: int

    @staticmethod
    def of(lp: LoweredProgram) -> FastLayout | None:
        """The layout, or None when the program's calls need the general path (sizes
        that are expressions, or one buffer returned twice)."""
        specs = []
        for b in lp.inputs:
            sizes: list[int | str] = []
            for s in b.shape:
                if isinstance(s, int):
                    sizes.append(s)
                elif isinstance(s, Dim) and s.is_symbol():
                    sym = s.terms[0][0][0]
                    assert isinstance(sym, str)
                    sizes.append(sym)
                else:
                    return None
            specs.append((b.dtype, tuple(sizes)))
        distinct: dict[int, int] = {}
        ranks: list[int] = []
        for b in sorted({b.index: b for b in lp.outputs}.values(), key=lambda b: b.index):
            distinct[b.index] = len(ranks)
            ranks.append(len(b.shape))
        if len(distinct) != len(lp.outputs):
            return None
        order = tuple(distinct[b.index] for b in lp.outputs)
        base_in = T_FIXED
        base_sym = base_in + 3 * len(specs)
        pos = base_sym + len(lp.symbols)
        outs = []
        for r in ranks:
            outs.append(pos)
            pos += 1 + r
        return FastLayout(tuple(specs), tuple(lp.size_sources[s] for s in lp.symbols),
                          tuple(ranks), order, base_in, base_sym, tuple(outs), pos)


def emit(module: ir.Module, program: ir.Function, layout: FastLayout, name: str) -> None:
    """Define ``name(self, args, nargs) -> PyObject*`` in ``module`` (see the module text)."""
    fn = ir.Function(module, ir.FunctionType(PTR, [PTR, PTR, I64]), name)
    handle, args, nargs = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def at(p: ir.Value, offset: int, t: ir.Type) -> ir.Value:
        return b.load(b.gep(p, [ir.Constant(I64, offset)], source_etype=I8), typ=t)

    def addr(p: ir.Value, offset: int) -> ir.Value:
        return b.gep(p, [ir.Constant(I64, offset)], source_etype=I8)

    def ext(sym: str, ret: ir.Type, params: list[ir.Type]) -> ir.Function:
        f = module.globals.get(sym)
        if f is None:
            f = ir.Function(module, ir.FunctionType(ret, params), sym)
        return f

    incref = ext("symgrad_Py_IncRef", ir.VoidType(), [PTR])
    decref = ext("symgrad_Py_DecRef", ir.VoidType(), [PTR])
    new_array = ext("symgrad_PyArray_New", PTR, [PTR, I32, PTR, I32, PTR, PTR, I32, I32, PTR])
    new_tuple = ext("symgrad_PyTuple_New", PTR, [I64])
    hdata = at(handle, A_DATA, PTR)
    tab = at(hdata, 0, PTR)
    single = at(hdata, 8, I64)

    def word(k: int, t: ir.Type = I64) -> ir.Value:
        return at(tab, 8 * k, t)

    slow_block = fn.append_basic_block("slow")
    with b.goto_block(slow_block):
        slow = word(T_SLOW, PTR)
        b.call(incref, [slow])
        b.ret(slow)

    def slow_if(cond: ir.Value) -> None:
        cont = fn.append_basic_block()
        b.cbranch(cond, slow_block, cont)
        b.position_at_end(cont)

    slow_if(b.icmp_signed("==", word(T_ENABLED), ir.Constant(I64, 0)))
    slow_if(b.icmp_signed("!=", nargs, ir.Constant(I64, len(layout.in_specs))))
    frame = word(T_FRAME, PTR)
    ndarray = word(T_NDARRAY, PTR)
    seen: dict[str, ir.Value] = {}
    shapes: dict[tuple[int, int], ir.Value] = {}
    for k, (dtype, sizes) in enumerate(layout.in_specs):
        obj = b.load(b.gep(args, [ir.Constant(I64, k)], source_etype=PTR), typ=PTR)
        typ = at(obj, OB_TYPE, PTR)
        slot = b.gep(frame, [ir.Constant(I64, k)], source_etype=PTR)
        is_array = b.icmp_unsigned("==", typ, ndarray)
        if sizes:
            slow_if(b.not_(is_array))
            array_block = None
        else:  # a 0-d input may also be a NumPy scalar, or a Python float for float64
            array_block = fn.append_basic_block(f"array{k}")
            scalar_block = fn.append_basic_block(f"scalar{k}")
            done = fn.append_basic_block(f"input{k}")
            b.cbranch(is_array, array_block, scalar_block)
            b.position_at_end(scalar_block)
            ok = b.icmp_unsigned("==", typ, word(layout.inputs + 3 * k + 1, PTR))
            is_float = b.icmp_unsigned("==", typ, word(T_PYFLOAT, PTR))
            if dtype == "float64":
                ok = b.or_(ok, is_float)
            elif dtype == "float32":  # a Python float rounded as NumPy's cast does
                with b.if_then(b.and_(b.not_(ok), is_float)):
                    d = at(obj, SCALAR_VALUE, F64)
                    v = b.fptrunc(d, F32)
                    inf32, inf64 = ir.Constant(F32, float("inf")), ir.Constant(F64, float("inf"))
                    fabs32 = module.declare_intrinsic("llvm.fabs", [F32])
                    fabs64 = module.declare_intrinsic("llvm.fabs", [F64])
                    overflow = b.and_(b.fcmp_ordered("==", b.call(fabs32, [v]), inf32),
                                      b.fcmp_ordered("!=", b.call(fabs64, [d]), inf64))
                    slow_if(overflow)  # the general path warns about the overflow
                    scratch = b.gep(tab, [ir.Constant(I64, layout.inputs + 3 * k + 2)],
                                    source_etype=I64)
                    b.store(v, scratch)
                    b.store(scratch, slot)
                    b.branch(done)
            slow_if(b.not_(ok))
            b.store(addr(obj, SCALAR_VALUE), slot)
            b.branch(done)
            b.position_at_end(array_block)
        bad = b.icmp_unsigned("!=", at(obj, A_DESCR, PTR), word(layout.inputs + 3 * k, PTR))
        bad = b.or_(bad, b.icmp_signed("!=", at(obj, A_ND, I32), ir.Constant(I32, len(sizes))))
        flags = at(obj, A_FLAGS, I32)
        need = ir.Constant(I32, NEED_FLAGS)
        slow_if(b.or_(bad, b.icmp_unsigned("!=", b.and_(flags, need), need)))
        if sizes:
            dims = at(obj, A_DIMS, PTR)
            bad = ir.Constant(I1, 0)
            for axis, s in enumerate(sizes):
                got = at(dims, 8 * axis, I64)
                shapes[(k, axis)] = got
                if isinstance(s, int):
                    bad = b.or_(bad, b.icmp_signed("!=", got, ir.Constant(I64, s)))
                elif s in seen:
                    bad = b.or_(bad, b.icmp_signed("!=", got, seen[s]))
                else:
                    seen[s] = got
            slow_if(bad)
        b.store(at(obj, A_DATA, PTR), slot)
        if array_block is not None:
            b.branch(done)
            b.position_at_end(done)
    bad = ir.Constant(I1, 0)
    for i, src in enumerate(layout.sources):
        bad = b.or_(bad, b.icmp_signed("!=", shapes[src], word(layout.symbols + i)))
    slow_if(bad)

    made: list[ir.Value] = []
    null = ir.Constant(PTR, None)
    zero32 = ir.Constant(I32, 0)

    def release(upto: int) -> None:
        for o in made[:upto]:
            b.call(decref, [o])

    n_in = len(layout.in_specs)
    for j, rank in enumerate(layout.out_ranks):
        base = layout.outputs[j]
        o = b.call(new_array, [ndarray, ir.Constant(I32, rank), addr(tab, 8 * (base + 1)),
                               b.trunc(word(base), I32), null, null, zero32, zero32, null])
        with b.if_then(b.icmp_unsigned("==", o, null), likely=False):
            release(j)
            b.ret(null)  # the exception NumPy set (out of memory) reaches the caller
        made.append(o)
        b.store(at(o, A_DATA, PTR), b.gep(frame, [ir.Constant(I64, n_in + j)], source_etype=PTR))
    rc = b.call(program, [frame, word(T_DIMS, PTR)])
    with b.if_then(b.icmp_signed("!=", rc, ir.Constant(I32, 0)), likely=False):
        release(len(made))
        b.branch(slow_block)
    if len(layout.out_order) == 1:
        with b.if_then(b.icmp_signed("!=", single, ir.Constant(I64, 0))):
            b.ret(made[layout.out_order[0]])
    tup = b.call(new_tuple, [ir.Constant(I64, len(layout.out_order))])
    with b.if_then(b.icmp_unsigned("==", tup, null), likely=False):
        release(len(made))
        b.ret(null)
    for i, j in enumerate(layout.out_order):  # PyTuple_SET_ITEM: each output is stolen once
        b.store(made[j], addr(tup, TUPLE_ITEMS + 8 * i))
    b.ret(tup)


# -- the run time side ---------------------------------------------------------------------------
class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p),
                ("ml_flags", ctypes.c_int), ("ml_doc", ctypes.c_char_p)]


SLOW = type("SlowPath", (), {"__repr__": lambda self: "<take the general call path>"})()


def _api(name: str, restype: Any, argtypes: list[Any]) -> Any:
    f = getattr(ctypes.pythonapi, name)
    f.restype, f.argtypes = restype, argtypes
    return f


def _array_new_slot() -> int | None:
    """``PyArray_New``'s slot in NumPy's C-API table, from the header NumPy ships."""
    path = os.path.join(np.get_include(), "numpy", "__multiarray_api.h")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    m = re.search(r"#define PyArray_New \\\s*\n[^\n]*\\\s*\n\s*PyArray_API\[(\d+)\]\)", text)
    return int(m.group(1)) if m else None


@functools.cache
def available() -> bool:
    """Whether this process's CPython and NumPy match the layouts the fast call assumes;
    registers the C functions it calls. Checked once per process."""
    if ctypes.sizeof(ctypes.c_void_p) != 8 or tuple.__basicsize__ != TUPLE_ITEMS:
        return False
    if not getattr(sys, "_is_gil_enabled", lambda: True)():  # the one state needs the GIL
        return False
    slot = _array_new_slot()
    if slot is None:
        return False
    try:
        from numpy._core import _multiarray_umath as mu  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - NumPy 1.x
        return False
    get_name = _api("PyCapsule_GetName", ctypes.c_char_p, [ctypes.py_object])
    get_ptr = _api("PyCapsule_GetPointer", ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p])
    table = get_ptr(mu._ARRAY_API, get_name(mu._ARRAY_API))
    new_addr = ctypes.c_void_p.from_address(table + 8 * slot).value
    if not new_addr:
        return False
    new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                           ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                           ctypes.c_int, ctypes.c_void_p)(new_addr)
    dims = (ctypes.c_int64 * 2)(3, 2)
    made = new(id(np.ndarray), 2, ctypes.addressof(dims), np.dtype(np.float32).num,
               None, None, 0, 0, None)
    if type(made) is not np.ndarray or made.shape != (3, 2) or made.dtype != np.float32 \
            or not made.flags.c_contiguous:
        return False

    def word(obj: Any, offset: int, t: Any = ctypes.c_int64) -> Any:
        return t.from_address(id(obj) + offset).value

    for arr in (np.zeros((3, 2), np.float32), np.ones(5)[::2], np.zeros(()), np.arange(4)):
        if word(arr, OB_TYPE) != id(np.ndarray) or word(arr, A_DATA) != arr.ctypes.data \
                or word(arr, A_ND, ctypes.c_int) != arr.ndim \
                or word(arr, A_DESCR) != id(arr.dtype) \
                or word(arr, A_FLAGS, ctypes.c_int) != arr.flags.num:
            return False
        if arr.ndim and ctypes.c_int64.from_address(word(arr, A_DIMS)).value != arr.shape[0]:
            return False
    for dtype, value in (("float32", 1.5), ("float64", -2.25), ("int32", -7), ("int64", 1 << 40),
                         ("bool", True)):
        scalar = DTYPES[dtype].type(value)
        ct = np.ctypeslib.as_ctypes_type(DTYPES[dtype])
        if ct.from_address(id(scalar) + SCALAR_VALUE).value != value:
            return False
    if ctypes.c_double.from_address(id(0.375) + SCALAR_VALUE).value != 0.375:
        return False
    addr = ctypes.cast
    llvm.add_symbol("symgrad_PyArray_New", new_addr)
    for name in ("Py_IncRef", "Py_DecRef", "PyTuple_New"):
        llvm.add_symbol(f"symgrad_{name}", addr(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value)
    return True


class FastCall:
    """The table of one compiled program and the callables made from it."""

    def __init__(self, layout: FastLayout, address: int) -> None:
        self.layout = layout
        self.table = np.zeros(layout.size, dtype=np.int64)
        self.table[T_SLOW] = id(SLOW)
        self.table[T_NDARRAY] = id(np.ndarray)
        self.table[T_PYFLOAT] = id(float)
        self._keep: list[Any] = []
        for k, (dtype, _sizes) in enumerate(layout.in_specs):
            dt = DTYPES[dtype]
            self._keep.append(dt)
            self.table[layout.inputs + 3 * k] = id(dt)
            self.table[layout.inputs + 3 * k + 1] = id(dt.type)
        self._def = _MethodDef(b"symgrad_program", address, METH_FASTCALL, None)
        self.state: Any = None
        self._writing = threading.Lock()

    def callable(self, single: bool, owner: Any = None) -> Any:
        """A builtin ``f(*arrays)`` returning the outputs (the array alone when
        ``single``), or :data:`SLOW`. ``owner`` is kept alive as long as the builtin:
        it must hold the machine code and the constants the prepared frames point to."""
        handle = np.array([self.table.ctypes.data, int(single)], dtype=np.int64)
        new = _api("PyCFunction_NewEx", ctypes.py_object,
                   [ctypes.c_void_p, ctypes.py_object, ctypes.py_object])
        # The builtin's module slot keeps alive what it reads until it is freed: its
        # PyMethodDef, this object (the table and the prepared state) and the owner.
        # With less, a builtin that outlives its function reads freed memory.
        return new(ctypes.addressof(self._def), handle, (self._def, self, owner))

    def disable(self) -> None:
        """Send every call to the general path until :meth:`prepare` is called again."""
        with self._writing:
            self.table[T_ENABLED] = 0
            self.state = None

    def prepare(self, state: Any) -> None:
        """Use ``state`` (frame, sizes, output shapes of one call's sizes) for fast calls.

        Python may switch threads between any two of the writes below, so one thread
        writes at a time: two interleaved writers left a table mixing the frame of one
        state with the sizes and output shapes of another, freed, one (heap corruption).
        A thread that finds another writing leaves the table to it (never waiting, so a
        signal handler calling the function during a write cannot deadlock); meanwhile
        fast calls see ``T_ENABLED`` off and take the general path."""
        if not self._writing.acquire(blocking=False):
            return
        try:
            lay = self.layout
            t = self.table
            t[T_ENABLED] = 0
            t[T_FRAME] = state.frame_addr
            t[T_DIMS] = state.dims_addr
            for i, d in enumerate(state.dims):
                t[lay.symbols + i] = d
            for j, (shape, dtype) in enumerate(state.out_specs):
                base = lay.outputs[j]
                t[base] = dtype.num
                t[base + 1:base + 1 + len(shape)] = shape
            self.state = state  # last: a write cut short leaves the old state (and sizes)
            t[T_ENABLED] = 1
        finally:
            self._writing.release()
