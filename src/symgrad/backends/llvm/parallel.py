"""Running a split kernel's chunks on OpenMP threads.

A split kernel is cut into chunks that threads take in turn (see :mod:`.runtime`). Through
Python threads, each call wakes a pool thread (on a virtual machine often 0.1-0.2 ms) and
every chunk goes back through the GIL. When the process can load GNU OpenMP (``libgomp``,
which gcc installs), one native call does it all instead: a small driver, compiled once per
process, passes the chunk loop to ``GOMP_parallel``, whose team threads wait for work by
spinning briefly before they sleep, and take chunks from an atomic counter. The chunks, and
so every result, are the same either way: chunk ``c`` of ``chunks`` covers
``[extent * c // chunks, extent * (c + 1) // chunks)`` and writes its reduction partial at
``partials + c * step``.

``SYMGRAD_THREADING=python`` keeps the Python threads; ``openmp`` requires OpenMP. The
default is OpenMP where it loads. A process forked from one that used OpenMP uses the Python
threads (GNU OpenMP's threads do not survive a fork).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
from pathlib import Path
from typing import Any

from llvmlite import ir

from symgrad.backends.llvm import jit

DRIVER = "symgrad.parallel_for"
# GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_PTR = ir.PointerType()
# the shared state of one call: these fields, each a 64-bit integer (pointers as their
# addresses), in this order
_FIELDS = ("kernel", "frame", "dims", "extent", "chunks", "partials", "step", "counter", "rc")
_TYPES = (_PTR, _PTR, _PTR, _I64, _I64, _PTR, _I64)  # the first seven, as the driver takes them

_used = False  # whether this process has run OpenMP threads
_forked = False  # whether it was forked from a process that had


def _after_fork_in_child() -> None:
    global _forked
    _forked = _forked or _used


os.register_at_fork(after_in_child=_after_fork_in_child)


def _loaded_gomp() -> str | None:
    """A libgomp already mapped into this process (another library's OpenMP), if any."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        path = line.split()[-1] if line.split() else ""
        if path.startswith("/") and Path(path).name.startswith("libgomp"):
            return path
    return None


@functools.cache
def _gomp_parallel() -> int | None:
    """The address of ``GOMP_parallel``, or None when no libgomp loads."""
    candidates = [p for p in (_loaded_gomp(), ctypes.util.find_library("gomp"), "libgomp.so.1") if p]
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            addr = ctypes.cast(lib.GOMP_parallel, ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
        if addr:
            return int(addr)
    return None


def _field(b: ir.IRBuilder, state: ir.Value, name: str) -> ir.Value:
    return b.gep(state, [_I64(_FIELDS.index(name))], source_etype=_I64)


def driver_ir() -> str:
    """The driver module: ``symgrad.parallel_for(gomp_parallel, kernel, frame, dims, extent,
    chunks, partials, step, threads) -> i32``, the first nonzero code a chunk returned."""
    mod = ir.Module(name="symgrad_parallel")
    mod.triple = jit.process_triple()
    kernel_type = ir.FunctionType(_I32, [_PTR, _PTR, _I64, _I64, _PTR])

    # the team's function: take chunks until none is left or one failed
    body = ir.Function(mod, ir.FunctionType(ir.VoidType(), [_PTR]), DRIVER + ".team")
    body.linkage = "internal"
    state = body.args[0]
    b = ir.IRBuilder(body.append_basic_block("entry"))
    loop, run, fail, done = (body.append_basic_block(n) for n in ("loop", "run", "fail", "done"))
    # the kernel is loaded as a pointer typed with its signature, which llvmlite needs to
    # call through it (printed as ``ptr``)
    types = [ir.PointerType(kernel_type), *_TYPES[1:]]
    vals = {n: b.load(_field(b, state, n), typ=_I64) for n in _FIELDS[:7]}
    vals = {n: v if t == _I64 else b.inttoptr(v, t) for (n, v), t in zip(vals.items(), types, strict=True)}
    counter = _field(b, state, "counter")
    b.branch(loop)
    b.position_at_end(loop)
    c = b.atomic_rmw("add", counter, _I64(1), "monotonic")
    b.cbranch(b.icmp_signed(">=", c, vals["chunks"]), done, run)
    b.position_at_end(run)
    extent, chunks = vals["extent"], vals["chunks"]
    lo = b.sdiv(b.mul(extent, c), chunks)
    hi = b.sdiv(b.mul(extent, b.add(c, _I64(1))), chunks)
    has = b.icmp_unsigned("!=", b.ptrtoint(vals["partials"], _I64), _I64(0))
    part = b.gep(vals["partials"], [b.mul(c, vals["step"])], source_etype=ir.IntType(8))
    part = b.select(has, part, ir.Constant(_PTR, None))
    rc = b.call(vals["kernel"], [vals["frame"], vals["dims"], lo, hi, part])
    b.cbranch(b.icmp_signed("!=", rc, _I32(0)), fail, loop)
    b.position_at_end(fail)
    b.cmpxchg(_field(b, state, "rc"), _I64(0), b.zext(rc, _I64), "monotonic", "monotonic")
    b.atomic_rmw("xchg", counter, chunks, "monotonic")  # the others stop taking chunks
    b.branch(done)
    b.position_at_end(done)
    b.ret_void()

    gomp_type = ir.FunctionType(ir.VoidType(), [_PTR, _PTR, _I32, _I32])
    fn = ir.Function(mod, ir.FunctionType(_I32, [ir.PointerType(gomp_type), *_TYPES, _I32]),
                     DRIVER)
    gomp, *args, threads = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    st = b.alloca(_I64, len(_FIELDS))
    for name, v in zip(_FIELDS[:7], args, strict=True):
        b.store(v if v.type == _I64 else b.ptrtoint(v, _I64), _field(b, st, name))
    b.store(_I64(0), _field(b, st, "counter"))
    b.store(_I64(0), _field(b, st, "rc"))
    b.call(gomp, [body, st, threads, _I32(0)])
    b.ret(b.trunc(b.load(_field(b, st, "rc"), typ=_I64), _I32))
    return str(mod)


DRIVER_TYPE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                               ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                               ctypes.c_int64, ctypes.c_int32)
_driver_lock = threading.Lock()
_driver: tuple[Any, jit.Engine, int] | None = None


def forked() -> bool:
    """Whether this process was forked from one that had run OpenMP threads: they did not
    come along (and GNU OpenMP would wait for them), so split kernels take Python threads."""
    return _forked


def mode() -> str:
    """``openmp`` or ``python``: how split kernels run (``SYMGRAD_THREADING``)."""
    want = os.environ.get("SYMGRAD_THREADING", "").strip().lower()
    if want not in ("", "openmp", "python"):
        raise ValueError(f"SYMGRAD_THREADING={want!r}: expected 'openmp' or 'python'")
    if want == "python":
        return "python"
    if _forked or _gomp_parallel() is None:
        if want == "openmp":
            why = "this process was forked after using it" if _forked else "no libgomp loads"
            raise RuntimeError(f"SYMGRAD_THREADING=openmp: {why}; use SYMGRAD_THREADING=python")
        return "python"
    return "openmp"


def driver() -> tuple[Any, int]:
    """The compiled driver and the address of ``GOMP_parallel`` (compiled on first use)."""
    global _driver
    with _driver_lock:
        if _driver is None:
            gomp = _gomp_parallel()
            assert gomp is not None
            engine = jit.Engine([jit.optimize_to_object(driver_ir())])
            _driver = (DRIVER_TYPE(engine.address(DRIVER)), engine, gomp)
        return _driver[0], _driver[2]


def run_chunks(kernel: int, frame: int, dims: int, extent: int, chunks: int, partials: int | None,
               step: int, threads: int) -> int:
    """Run the kernel at address ``kernel`` over ``chunks`` chunks of ``range(extent)`` on
    ``threads`` OpenMP threads; the first nonzero return code, or 0."""
    global _used
    fn, gomp = driver()
    _used = True
    return int(fn(gomp, kernel, frame, dims, extent, chunks, partials, step, threads))
