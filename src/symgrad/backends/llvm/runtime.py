"""Calling compiled programs: buffers, sizes, threads.

A call binds the arrays' data pointers into a *frame* (one pointer per input, output,
constant and workspace slot) and the size symbols into a ``dims`` array, then either runs
the whole program with one native call, or, when some kernel is large, runs the kernels
one by one and splits each large one across a thread pool (the native calls release the
GIL). ``SYMGRAD_NUM_THREADS`` sets the number of threads (default: the cores this process
may use); small kernels always stay on the calling thread. A split kernel's range is cut
into several chunks per thread, which the threads take in turn, so a core that runs slower
(shared with another process, or a smaller core) simply takes fewer chunks; the chunks
shrink towards the end, so the threads finish close together. A reduction keeps one
partial result per chunk, so its value does not depend on which thread ran what.

Per-size state (output shapes, the workspace, the frame) is cached per thread, so calls
with the same sizes allocate only their outputs.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from symgrad.backends.llvm import fastcall
from symgrad.backends.llvm.codegen import (
    ERR_BOUNDS,
    ERR_INDEX,
    ERR_LAYOUT,
    OBJECT_LAYOUT,
    KernelInfo,
    ModuleInfo,
)
from symgrad.backends.llvm.jit import Engine
from symgrad.backends.lower import LibCall, LoopKernel, LoweredProgram
from symgrad.errors import InputError
from symgrad.ir import shape as S
from symgrad.ir.dtypes import DTYPES

PROGRAM = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)
PROGRAM_OBJECTS = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.py_object, ctypes.py_object,
                                   ctypes.c_void_p, ctypes.c_void_p)
KERNEL = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                          ctypes.c_int64, ctypes.c_void_p)
FINISH = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_int64)

# a kernel is split when (points x body cost) per thread is at least this much
PARALLEL_MIN_WORK = 1 << 20
# a split kernel's chunks shrink towards its end (see chunk_bounds), to no less than
# 1 / LAST_CHUNKS_PER_THREAD of a thread's share, nor less than CHUNK_MIN_WORK of work
LAST_CHUNKS_PER_THREAD = 64
CHUNK_MIN_WORK = PARALLEL_MIN_WORK // 16
# calls whose workspace is at most this size, and whose work (points x body cost, as for
# threads) is at most this much, take the fast native call (fastcall.py); it holds the GIL,
# so a longer call takes the general path, which releases it
FAST_MAX_WORKSPACE = 1 << 20
FAST_MAX_WORK = PARALLEL_MIN_WORK
# so a split call (at least 2 PARALLEL_MIN_WORK in one kernel) never takes the fast call
assert FAST_MAX_WORK < 2 * PARALLEL_MIN_WORK
ALIGN = 64

_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pool_lock = threading.Lock()


def _object_layout_ok() -> bool:
    """Whether tuples and arrays are laid out as :data:`OBJECT_LAYOUT` says."""
    lay = OBJECT_LAYOUT
    if tuple.__basicsize__ != lay["tuple_items"] or ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    for arr in (np.zeros((3, 2), np.float32), np.ones(5)[::2], np.zeros(()), np.arange(4)):
        addr = id(arr)
        if ctypes.c_void_p.from_address(addr + lay["data"]).value != arr.ctypes.data:
            return False
        if ctypes.c_int.from_address(addr + lay["flags"]).value != arr.flags.num:
            return False
        tup = (arr, arr)
        if ctypes.c_void_p.from_address(id(tup) + lay["tuple_items"] + 8).value != addr:
            return False
    return True


OBJECT_ENTRY = _object_layout_ok()


def num_threads() -> int:
    """Threads for large kernels: ``SYMGRAD_NUM_THREADS``, else the usable cores."""
    env = os.environ.get("SYMGRAD_NUM_THREADS", "").strip()
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"SYMGRAD_NUM_THREADS must be a positive integer, got {env!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def _run_chunks(fn: Any, frame: int, dims: int, plan: _Plan, step: int, partials: int) -> int:
    """Run ``fn`` over ``plan.chunks`` chunks of ``range(plan.extent)`` on ``plan.parts``
    threads (this one and pool threads), each taking the next chunk when it is done with
    one; a reduction (``step`` > 0) writes chunk ``c``'s partial at ``partials + c * step``.
    The first nonzero return code, or 0."""
    chunks, bounds = plan.chunks, plan.bounds
    ticket = itertools.count()
    lock = threading.Lock()  # itertools.count is atomic only under the GIL

    def work() -> int:
        while True:
            with lock:
                c = next(ticket)
            if c >= chunks:
                return 0
            rc = fn(frame, dims, bounds[c], bounds[c + 1], partials + c * step if step else None)
            if rc:
                return int(rc)

    pool = _get_pool(plan.parts - 1)
    futures = [pool.submit(work) for _ in range(plan.parts - 1)]
    rc = work()
    for fut in futures:
        rc = rc or fut.result()
    return rc


def chunk_bounds(extent: int, parts: int, least: int) -> list[int]:
    """Where the chunks of ``range(extent)`` for ``parts`` threads begin (and the last ends):
    each chunk takes ``1 / (2 parts)`` of what is left, and at least ``least`` points, so
    chunks shrink towards the end, and the threads finish close together however fast each
    ran. Depends on the sizes and the thread count alone, so a reduction's partials do
    too."""
    bounds = [0]
    while bounds[-1] < extent:
        left = extent - bounds[-1]
        size = max(least, left // (2 * parts))
        bounds.append(bounds[-1] + size if left - size >= least else extent)
    return bounds


def _forget_pool_in_child() -> None:
    """A forked child has none of the pool's threads: it starts a pool of its own (the
    inherited one would take work that no thread runs)."""
    global _pool, _pool_size, _pool_lock
    _pool, _pool_size, _pool_lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _work(fn: LLVMFunction, k: LoopKernel | LibCall, kinfo: KernelInfo, env: dict[str, int]) -> int:
    """A kernel's rough work for these sizes: its points times its body's cost; for a
    product, its output's points times its inner length, twice; for another library call,
    twice the points of its largest operand (``take_grad`` loops over its gradient input)."""
    if isinstance(k, LibCall):
        sizes = [S.evaluate(S.prod([1, *shape]), env) for shape in [k.output.shape, *k.input_shapes]]
        if k.op == "matmul":  # (batch, m, k) @ (batch, k, n)
            return sizes[0] * max(S.evaluate(k.input_shapes[0][-1], env), 1) * 2
        return max(sizes) * 2
    return S.evaluate(S.prod([1, *fn.domain_sizes(kinfo.name)]), env) * kinfo.cost


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size < n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="symgrad")
            _pool_size = n
        return _pool


def _ready(arrays: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
    """The arrays, with those that are not C-contiguous and aligned copied."""
    return tuple([a if a.flags.c_contiguous and a.flags.aligned else np.array(a, order="C")
                  for a in arrays])


@dataclass
class _Plan:
    extent: int
    parts: int  # threads
    bounds: list[int]  # chunk c covers range(bounds[c], bounds[c + 1])

    @property
    def chunks(self) -> int:
        return len(self.bounds) - 1


# NumPy refuses these reductions over no elements (it has no identity for them)
NO_IDENTITY = {"max": "zero-size array to reduction operation maximum which has no identity",
               "min": "zero-size array to reduction operation minimum which has no identity",
               "argmax": "attempt to get argmax of an empty sequence",
               "argmin": "attempt to get argmin of an empty sequence"}


@dataclass(frozen=True)
class EmptyReduction:
    """A reduction of the program (before lowering) that NumPy refuses when the axes it
    reduces hold no elements: checked for each new set of sizes, before anything runs, so
    it raises NumPy's error where the NumPy backend does. (Reductions the lowering adds,
    such as the max shift of ``softmax``, keep their identity.)"""

    op: str
    loc: str
    sizes: tuple[S.Size, ...]  # of the reduced axes

    @staticmethod
    def of(program: Any, symbols: list[str]) -> list[EmptyReduction]:
        known = set(symbols)
        out = []
        for t in program.nodes:
            if t.op.name not in NO_IDENTITY or not t.inputs:
                continue
            shape = t.inputs[0].shape
            axes = t.attr("axes")
            sizes = tuple(shape[a] for a in (range(len(shape)) if axes is None else axes))
            # a static size is checked at build time; a size the call cannot give is not checked
            if any(not isinstance(s, int) for s in sizes) and S.symbols_of(sizes) <= known:
                out.append(EmptyReduction(t.op.name, str(t.loc), sizes))
        return out

    def check(self, env: dict[str, int]) -> None:
        if any(S.evaluate(s, env) == 0 for s in self.sizes):
            raise InputError(f"{NO_IDENTITY[self.op]} (op {self.op} built at {self.loc})")


class _State:
    """Everything that depends only on the sizes of a call."""

    def __init__(self, fn: LLVMFunction, dims: tuple[int, ...]) -> None:
        lp = fn.lp
        self.dims = dims
        env = dict(zip(lp.symbols, dims))
        self.dims_arr = np.array(dims if dims else (0,), dtype=np.int64)
        self.dims_addr = self.dims_arr.ctypes.data
        self.out_specs = [(tuple(S.evaluate(s, env) for s in b.shape), DTYPES[b.dtype])
                          for b in fn.distinct_outputs]
        layout = fn.info.layout
        sizes = [max((S.evaluate(b.nbytes, env) for b in slot), default=0) for slot in lp.plan.slots]
        offsets = []
        total = 0
        for n in sizes:
            offsets.append(total)
            total += (max(n, 1) + ALIGN - 1) // ALIGN * ALIGN
        self.workspace = np.empty(total + ALIGN, dtype=np.uint8)
        base = (self.workspace.ctypes.data + ALIGN - 1) // ALIGN * ALIGN
        self.frame = np.zeros(max(layout.size, 1), dtype=np.uintp)
        self.frame_addr = self.frame.ctypes.data
        first_const = layout.n_inputs + layout.n_outputs
        for k, b in enumerate(lp.consts):
            assert b.value is not None
            self.frame[first_const + k] = b.value.ctypes.data
        first_slot = first_const + layout.n_consts
        for k, off in enumerate(offsets):
            self.frame[first_slot + k] = base + off
        threads = num_threads()
        works = [_work(fn, k, kinfo, env) for k, kinfo in zip(lp.kernels, fn.info.kernels)]
        self.work = sum(works)
        self.plans = []
        parallel = False
        for kinfo, work in zip(fn.info.kernels, works):
            extent = S.evaluate(kinfo.extent, env)
            parts = 1
            bounds = [0, extent]
            if kinfo.split != "none" and threads > 1 and extent > 1:
                parts = int(min(threads, extent, max(1, work // PARALLEL_MIN_WORK)))
                if parts > 1:
                    per_point = max(1, work // extent)
                    least = max(extent // (parts * LAST_CHUNKS_PER_THREAD), CHUNK_MIN_WORK // per_point, 1)
                    bounds = chunk_bounds(extent, parts, least)
            parallel = parallel or parts > 1
            self.plans.append(_Plan(extent, parts, bounds))
        self.parallel = parallel
        nred = max([k.n_reductions for k in fn.info.kernels] + [1])
        most = max([p.chunks for p in self.plans] + [1])  # one partial per chunk
        self.partials = np.zeros(most * nred, dtype=np.int64)
        self.partials_addr = self.partials.ctypes.data
        self.nred = nred


class LLVMFunction:
    """A compiled program: ``fn(*arrays) -> tuple of arrays``.

    ``source`` and ``kernels`` are the lowered kernels as text; ``llvm_ir`` generates
    the (unoptimized) LLVM IR on demand; ``cache`` says where the machine code came from
    (``built``, ``disk`` or ``memory``).
    """

    def __init__(self, lp: LoweredProgram, engine: Engine, info: ModuleInfo, how: str,
                 ir_text: str | None = None, empty_checks: list[EmptyReduction] | None = None) -> None:
        self.lp = lp
        self._empty_checks = empty_checks or []
        self.info = info
        self.engine = engine
        self.cache = how
        self.source = lp.text()
        self.kernels = self.source
        # every call returns arrays it has just allocated (np.empty), none an input's view
        self.outputs_are_fresh = True
        self._ir_text = ir_text
        self._entry = PROGRAM(engine.address(info.entry))
        self._entry_objects = PROGRAM_OBJECTS(engine.address(info.entry + "_objects")) \
            if OBJECT_ENTRY else None
        self._kfns = [KERNEL(engine.address(k.name)) for k in info.kernels]
        self._fins = {k.name: FINISH(engine.address(k.name + ".finish"))
                      for k in info.kernels if k.split == "partial"}
        outs: dict[int, Any] = {}
        for b in lp.outputs:
            outs.setdefault(b.index, b)
        self.distinct_outputs = [outs[i] for i in sorted(outs)]
        self._out_pos = [b.index for b in lp.outputs]
        # outputs the lowering gave one buffer (the same values, e.g. a reduction over
        # axes of size 1 and its operand) are returned as copies after the first
        self._copies = [j for j, i in enumerate(self._out_pos) if i in self._out_pos[:j]]
        self._dim_sources = [lp.size_sources[s] for s in lp.symbols]
        self._n_in = len(lp.inputs)
        self._domains = {k.name: getattr(k, "domain", ()) for k in lp.kernels}
        self._local = threading.local()
        layout = fastcall.FastLayout.of(lp) if fastcall.available() else None
        self._fast = fastcall.FastCall(layout, engine.address(info.entry + "_fast")) \
            if layout is not None else None
        # what a fast call returns when the call needs the general path
        self.SLOW = fastcall.SLOW
        if self._fast is not None and not lp.symbols:
            self._prepare_fast(_State(self, ()), own=True)

    def fast_callable(self, single: bool) -> Any:
        """A builtin ``f(*arrays)`` for the common call (see :mod:`.fastcall`): the
        outputs (the array alone when ``single``), or :attr:`SLOW` when the call needs
        this object's ``__call__``; None when this program has no fast call."""
        # the builtin keeps this object (the engine, the constants) alive
        return self._fast.callable(single, self) if self._fast is not None else None

    def reset(self) -> None:
        """Forget the per-size states (thread split, workspace, the fast call's sizes):
        the next call of each size plans again, e.g. after ``SYMGRAD_NUM_THREADS`` changed."""
        self._local = threading.local()
        if self._fast is not None:
            self._fast.disable()
            if not self.lp.symbols:
                self._prepare_fast(_State(self, ()), own=True)

    def _prepare_fast(self, st: _State, own: bool = False) -> None:
        """Let fast calls use sizes ``st.dims`` (the state itself when ``own``)."""
        fast = self._fast
        if (fast is None or st.parallel or st.workspace.nbytes > FAST_MAX_WORKSPACE
                or st.work > FAST_MAX_WORK):
            return
        if fast.state is None or fast.state.dims != st.dims:
            # a state of its own: the thread-local ones are used with the GIL released
            fast.prepare(st if own else _State(self, st.dims))

    @property
    def llvm_ir(self) -> str:
        if self._ir_text is None:
            from symgrad.backends.llvm.codegen import Codegen
            from symgrad.backends.llvm.jit import blas_threads

            self._ir_text = "\n".join(Codegen(self.lp, blas_threads=blas_threads()).texts)
        return self._ir_text

    def domain_sizes(self, name: str) -> tuple[Any, ...]:
        return tuple(self._domains.get(name, ()))

    def _state(self, dims: tuple[int, ...]) -> _State:
        st: _State | None = getattr(self._local, "state", None)
        if st is None or st.dims != dims:
            if self._empty_checks:  # before the state is kept (and given to the fast call)
                env = dict(zip(self.lp.symbols, dims))
                for check in self._empty_checks:
                    check.check(env)
            st = _State(self, dims)
            self._local.state = st
            self._prepare_fast(st)
        return st

    def __call__(self, *arrays: Any) -> tuple[np.ndarray, ...]:
        dims = tuple([arrays[p].shape[ax] for p, ax in self._dim_sources]) \
            if self._dim_sources else ()
        st: _State | None = getattr(self._local, "state", None)
        if st is None or st.dims != dims:
            st = self._state(dims)
        outs = tuple([np.empty(shape, dtype) for shape, dtype in st.out_specs])
        entry = self._entry_objects
        ndarray = np.ndarray
        if entry is not None and not st.parallel and all(
                [isinstance(a, ndarray) for a in arrays]):
            rc = entry(arrays, outs, st.frame_addr, st.dims_addr)
            if rc == ERR_LAYOUT:
                rc = entry(_ready(arrays), outs, st.frame_addr, st.dims_addr)
            if rc:
                self._raise(rc, arrays, st)
            return self._results(outs)
        ready = _ready(arrays)
        frame = st.frame
        for k, a in enumerate(ready):
            frame[k] = a.ctypes.data
        n = self._n_in
        for j, o in enumerate(outs):
            frame[n + j] = o.ctypes.data
        if st.parallel:
            rc = self._run_parallel(st)
        else:
            rc = self._entry(st.frame_addr, st.dims_addr)
        if rc:
            self._raise(rc, ready, st)
        return self._results(outs)

    def _results(self, outs: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        res = [outs[i] for i in self._out_pos]
        for j in self._copies:
            res[j] = res[j].copy()
        return tuple(res)

    def _read_index(self, kern: LibCall, pos: int, arrays: tuple[Any, ...], st: _State | None,
                    env: dict[str, int]) -> np.ndarray | None:
        """The values a library call read as its operand ``pos`` (to name a bad index), or
        None where they cannot be read back."""
        acc, shape = kern.inputs[pos], kern.input_shapes[pos]
        buf = acc.buffer
        try:
            dims = tuple(S.evaluate(s, env) for s in shape)
            if buf.kind == "input" and buf.index < len(arrays):
                flat = np.ascontiguousarray(arrays[buf.index], dtype=np.int64).reshape(-1)
            elif buf.kind == "const" and buf.value is not None:
                flat = np.ascontiguousarray(buf.value, dtype=np.int64).reshape(-1)
            elif buf.kind == "temp" and st is not None and buf.slot >= 0 and buf.dtype == "int64":
                layout = self.info.layout
                first_slot = layout.n_inputs + layout.n_outputs + layout.n_consts
                size = S.evaluate(buf.size, env)
                addr = int(st.frame[first_slot + buf.slot])
                flat = np.ctypeslib.as_array((ctypes.c_int64 * size).from_address(addr)).copy()
            else:
                return None
            at = np.full(dims, S.evaluate(acc.offset, env), dtype=np.int64)
            for a, c in enumerate(acc.coeffs):
                shape_a = [1] * len(dims)
                shape_a[a] = dims[a]
                at = at + S.evaluate(c, env) * np.arange(dims[a], dtype=np.int64).reshape(shape_a)
            return flat[at.reshape(-1)] if at.size and at.max() < flat.size else flat[:0]
        except (KeyError, TypeError, ValueError, IndexError):
            return None

    def _run_parallel(self, st: _State) -> int:
        frame, dims = st.frame_addr, st.dims_addr
        for k, (fn, plan, kinfo) in enumerate(zip(self._kfns, st.plans, self.info.kernels)):
            if plan.parts <= 1:
                rc = fn(frame, dims, 0, plan.extent, None)
            else:
                rc = _run_chunks(fn, frame, dims, plan, 8 * st.nred if kinfo.split == "partial"
                                 else 0, st.partials_addr)
                if not rc and kinfo.split == "partial":
                    rc = self._fins[kinfo.name](frame, dims, st.partials_addr, plan.chunks)
            if rc:
                return ((k + 1) << 4) | rc
        return 0

    def _raise(self, rc: int, arrays: tuple[Any, ...] = (), st: _State | None = None) -> None:
        k = (rc >> 4) - 1
        code = rc & 15
        kern = self.lp.kernels[k] if 0 <= k < len(self.lp.kernels) else None
        node = kern.nodes[0] if kern is not None and kern.nodes else None
        where = f" (op {node.op.name} built at {node.loc})" if node is not None else ""
        if code == ERR_INDEX and isinstance(kern, LibCall):
            # the NumPy backend's message, with the first index out of range
            env = dict(zip(self.lp.symbols, st.dims)) if st is not None else {}
            if kern.op == "one_hot":
                depth = int(kern.attrs["depth"])
                values = self._read_index(kern, 0, arrays, st, env)
                bad = [] if values is None else values[(values < 0) | (values >= depth)].tolist()
                msg = (f"one_hot: label {bad[0]} is out of range [0, {depth})" if bad else
                       f"one_hot: a label is out of range [0, {depth})")
            else:
                axis = int(kern.attrs.get("axis", 0))
                values = self._read_index(kern, 1, arrays, st, env)
                n = 0
                try:
                    n = S.evaluate(kern.input_shapes[0][axis], env)
                except (KeyError, TypeError, IndexError):
                    values = None
                bad = [] if values is None else values[(values < -n) | (values >= n)].tolist()
                msg = (f"{kern.op}: index {bad[0]} is out of range for axis {axis} of size {n}"
                       if bad else f"{kern.op}: an index is out of range for axis {axis}")
            raise InputError(msg + where)
        if code == ERR_BOUNDS:
            raise RuntimeError(f"kernel {kern.name if kern else k} would have read or written "
                               f"outside a buffer (caught by the bounds-checking build){where}")
        raise InputError(f"kernel {kern.name if kern else k} failed with code {code}{where}")
