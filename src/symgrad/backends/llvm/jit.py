"""Host target, optimization, object code, and the compile cache.

A program is compiled to object code for the host CPU (its name and features) after
LLVM's O3 pipeline with loop and SLP vectorization. A small program is one module and one
object; a large one is several modules, compiled on worker threads while the next
modules are still being generated, each object loaded into an MCJIT execution engine of
its own and linked to the first through a table of kernel addresses. The cache is keyed
by a hash of everything that affects the code (the lowered program's text, this
backend's sources, the LLVM version, the CPU name and features, the BLAS provider, the
optimization settings): in memory it holds loaded engines, on disk
(``SYMGRAD_CACHE_DIR``, default ``$XDG_CACHE_HOME/symgrad`` or ``~/.cache/symgrad``;
``SYMGRAD_CACHE_DIR=off`` disables it) it holds the object files (one entry per
program), so a hit skips code generation and LLVM entirely.

Disk entries are written to a temporary file and renamed into place (two processes
compiling the same function both succeed, and a reader never sees half a file); each
carries a SHA-256 of its contents, and an entry that fails the check is deleted and
rebuilt, never loaded. :func:`cache_stats` counts hits and misses and says why the last
miss happened.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from ctypes import c_char_p, string_at
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llvmlite
import llvmlite.binding as llvm
from llvmlite.binding import ffi
from llvmlite.binding.module import ModuleRef

from symgrad.backends.base import atomic_write
from symgrad.backends.llvm import blas

OPT_LEVEL = 3
MAGIC = b"SYMGRAD-LLVM-OBJECT-1\n"
_lock = threading.RLock()
_tm: Any = None


def _new_target_machine() -> Any:
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
        opt=OPT_LEVEL, reloc="pic", codemodel="jitdefault")


def target_machine() -> Any:
    """The host's target machine (created once)."""
    global _tm
    with _lock:
        if _tm is None:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _tm = _new_target_machine()
            _register_blas()
        return _tm


def process_triple() -> str:
    return str(llvm.get_process_triple())


_host: list[str] = []


def host_description() -> str:
    """Triple, CPU name and CPU features (they go into every cache key)."""
    if not _host:
        target_machine()
        _host.append(f"{llvm.get_process_triple()} {llvm.get_host_cpu_name()} "
                     f"{llvm.get_host_cpu_features().flatten()}")
    return _host[0]


def _register_blas() -> None:
    """Make the process's BLAS ``sgemm``/``dgemm`` (see :mod:`.blas`) callable from
    generated code."""
    lib = blas.provider()
    llvm.add_symbol("symgrad_sgemm", lib.sgemm)
    llvm.add_symbol("symgrad_dgemm", lib.dgemm)


# -- compiling modules ------------------------------------------------------------------------
# llvmlite runs every call into LLVM under one process-wide lock, which would serialize
# modules compiled on different threads. The three calls that do the work (parsing,
# the optimization pipeline, code generation) only touch objects the calling thread owns
# (its own LLVM context, module and target machine), which LLVM allows to run
# concurrently, so they are called without that lock; everything else takes it as usual.
def _unlocked(name: str) -> Any:
    fn = getattr(ffi.lib, name)
    return getattr(fn, "_cfn", fn)


_threads = threading.local()


def _thread_target_machine() -> Any:
    """A target machine owned by the calling thread (created once per thread)."""
    tm = getattr(_threads, "tm", None)
    if tm is None:
        target_machine()
        tm = _threads.tm = _new_target_machine()
    return tm


def _parse(ir_text: str, context: Any) -> Any:
    with ffi.OutputString() as err:
        mod = ModuleRef(_unlocked("LLVMPY_ParseAssembly")(context, c_char_p(ir_text.encode()), err),
                        context)
        if err:
            mod.close()
            raise RuntimeError(f"LLVM IR parsing error\n{err}")
    with ffi.OutputString() as err:
        if _unlocked("LLVMPY_VerifyModule")(mod, err):
            raise RuntimeError(str(err))
    return mod


def _optimize(ir_text: str, tm: Any = None, context: Any = None) -> Any:
    tm = tm or _thread_target_machine()
    mod = _parse(ir_text, context if context is not None else llvm.create_context())
    pto = llvm.create_pipeline_tuning_options(speed_level=OPT_LEVEL)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    # The loop unroller multiplies code size (and LLVM time, 2-3x) for no measurable gain
    # on these kernels: the vectorizer still interleaves the hot loops.
    pto.loop_unrolling = False
    pb = llvm.create_pass_builder(tm, pto)
    _unlocked("LLVMPY_RunNewModulePassManager")(pb.getModulePassManager(), mod, pb)
    return mod


def _emit(tm: Any, mod: Any) -> bytes:
    with ffi.OutputString() as err:
        buf = _unlocked("LLVMPY_TargetMachineEmitToMemory")(tm, mod, 1, err)
        if not buf:
            raise RuntimeError(str(err))
    try:
        return string_at(ffi.lib.LLVMPY_GetBufferStart(buf), ffi.lib.LLVMPY_GetBufferSize(buf))
    finally:
        ffi.lib.LLVMPY_DisposeMemoryBuffer(buf)


# Loop strength reduction is switched off while a large program (several modules) is
# compiled: on kernels with many buffers it searched long (about a third of code
# generation time for a chain of 1000 steps) and made the code larger. LLVM keeps the
# setting process-wide, so it is set only while such compiles run; small programs are
# compiled as before.
_no_lsr_users = 0
_no_lsr_lock = threading.Lock()


@contextmanager
def _without_lsr() -> Iterator[None]:
    global _no_lsr_users
    with _no_lsr_lock:
        if _no_lsr_users == 0:
            llvm.set_option("", "-disable-lsr")
        _no_lsr_users += 1
    try:
        yield
    finally:
        with _no_lsr_lock:
            _no_lsr_users -= 1
            if _no_lsr_users == 0:
                llvm.set_option("", "-disable-lsr=false")


def _compile(ir_text: str) -> bytes:
    """Parse, verify, optimize and emit one module on the calling thread."""
    tm = _thread_target_machine()
    context = llvm.create_context()
    mod = _optimize(ir_text, tm, context)
    try:
        return _emit(tm, mod)
    finally:
        mod.close()


def optimize_to_object(ir_text: str) -> bytes:
    """Parse, verify, run O3 (loop and SLP vectorization on) and emit an object file."""
    return _compile(ir_text)


def optimize_to_objects(ir_texts: Iterable[str], parts: int | None = None,
                        threads: int | None = None) -> list[bytes]:
    """Object files of several modules, in order, compiled on up to ``threads`` worker
    threads (default: the usable cores). ``ir_texts`` may be a generator: each module
    is handed to a worker as soon as it is yielded, while the caller goes on generating
    the next. ``parts``: how many modules will come (one is compiled on this thread)."""
    if parts is None:
        ir_texts = list(ir_texts)
        parts = len(ir_texts)
    if parts <= 1:
        return [_compile(text) for text in ir_texts]
    with _without_lsr():
        if threads is None:
            threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else \
                (os.cpu_count() or 1)
        target_machine()
        with ThreadPoolExecutor(max_workers=max(1, min(threads, parts)),
                                thread_name_prefix="symgrad-llvm") as pool:
            futures = [pool.submit(_compile, text) for text in ir_texts]
            return [f.result() for f in futures]


def pack(objs: list[bytes]) -> bytes:
    return b"".join(len(o).to_bytes(8, "little") + o for o in objs)


def unpack(data: bytes) -> list[bytes]:
    out = []
    k = 0
    while k < len(data):
        n = int.from_bytes(data[k:k + 8], "little")
        out.append(data[k + 8:k + 8 + n])
        k += 8 + n
    return out


def optimized_ir(ir_text: str) -> str:
    """The optimized IR of ``ir_text`` (for reading, not used to run)."""
    return str(_optimize(ir_text, context=llvm.create_context()))


# A program compiled as several modules: each object is loaded into an execution engine of
# its own (objects sharing one MCJIT engine here read their constant pools wrongly), so
# nothing links them. The first module calls the kernels of the others through a table of
# function pointers, LINK_TABLE, which the loader fills from the comma-separated names in
# the string LINK_NAMES of the same module (the object files stay free of addresses).
LINK_TABLE = "symgrad.link.table"
LINK_NAMES = "symgrad.link.names"


class Engine:
    """Loaded object files (one program): function addresses by name."""

    def __init__(self, objs: list[bytes]) -> None:
        target_machine()
        self._ees: list[Any] = []
        with _lock:
            for obj in objs:
                # the engine takes ownership of (and frees) the target machine it is given
                ee = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _new_target_machine())
                ee.add_object_file(llvm.ObjectFileRef.from_data(obj))
                ee.finalize_object()
                self._ees.append(ee)
        self.nbytes = sum(len(o) for o in objs)
        if len(self._ees) > 1:
            self._link()

    def _link(self) -> None:
        first = self._ees[0]
        names_at = int(first.get_global_value_address(LINK_NAMES))
        table_at = int(first.get_global_value_address(LINK_TABLE))
        if not names_at or not table_at:
            raise RuntimeError("a program of several objects without its link table")
        names = ctypes.string_at(names_at).decode().split(",")
        table = (ctypes.c_void_p * len(names)).from_address(table_at)
        for k, name in enumerate(names):
            table[k] = self.address(name, start=1)

    def address(self, name: str, start: int = 0) -> int:
        for ee in self._ees[start:]:
            addr = int(ee.get_function_address(name))
            if addr:
                return addr
        raise KeyError(f"no function {name!r} in the compiled object")


# -- the cache -----------------------------------------------------------------------------
@dataclass
class CacheStats:
    memory_hits: int = 0
    disk_hits: int = 0
    misses: int = 0
    corrupted: int = 0
    last_miss: str = ""
    reasons: dict[str, int] = field(default_factory=dict)

    def miss(self, reason: str) -> None:
        self.misses += 1
        self.last_miss = reason
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


STATS = CacheStats()
_memory: dict[str, Engine] = {}
_sources_digest: str | None = None


def cache_stats() -> CacheStats:
    """Hit and miss counts of the compile cache in this process."""
    return STATS


def clear_memory_cache() -> None:
    with _lock:
        _memory.clear()


def cache_dir() -> Path | None:
    """The on-disk cache folder, or None when ``SYMGRAD_CACHE_DIR`` is ``off``."""
    env = os.environ.get("SYMGRAD_CACHE_DIR")
    if env is not None:
        if env.strip().lower() in ("", "0", "off", "none", "false"):
            return None
        return Path(env).expanduser() / "llvm"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symgrad" / "llvm"


def _sources() -> str:
    """A digest of the code generator's sources: a change to them changes every key."""
    global _sources_digest
    if _sources_digest is None:
        h = hashlib.sha256()
        here = Path(__file__).parent
        lower = here.parent / "lower"
        for p in sorted(list(here.glob("*.py")) + list(lower.glob("*.py"))):
            h.update(p.name.encode())
            h.update(p.read_bytes())
        _sources_digest = h.hexdigest()
    return _sources_digest


def cache_key(program_text: str) -> str:
    h = hashlib.sha256()
    for part in (program_text, _sources(), f"llvmlite {llvmlite.__version__}",
                 f"llvm {llvm.llvm_version_info}", host_description(), f"blas {blas.provider().name}",
                 f"O{OPT_LEVEL} vectorize no-unroll parts"):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _path(key: str) -> Path | None:
    d = cache_dir()
    return None if d is None else d / key[:2] / f"{key}.o"


def _read(path: Path) -> bytes | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        return None
    head = len(MAGIC)
    digest = data[head:head + 32]
    body = data[head + 32:]
    if not data.startswith(MAGIC) or hashlib.sha256(body).digest() != digest:
        STATS.corrupted += 1
        try:
            path.unlink()
        except OSError:
            pass
        return b""
    return body


def _write(path: Path, obj: bytes) -> None:
    try:
        atomic_write(path, MAGIC + hashlib.sha256(obj).digest() + obj)
    except OSError:
        pass  # a read-only or full cache folder only costs the next compile


def load(key: str, build: Callable[[], list[bytes]]) -> tuple[Engine, str]:
    """The engine for ``key``: from memory, from disk, or by calling ``build`` (which
    returns object files). Also returns how it was found: ``memory``, ``disk`` or ``built``."""
    with _lock:
        eng = _memory.get(key)
    if eng is not None:
        STATS.memory_hits += 1
        return eng, "memory"
    path = _path(key)
    obj = None
    how = "built"
    if path is None:
        STATS.miss("disk cache off")
    else:
        obj = _read(path)
        if obj is None:
            STATS.miss("not in the cache")
        elif obj == b"":
            obj = None
            STATS.miss("corrupted entry (deleted and rebuilt)")
        else:
            STATS.disk_hits += 1
            how = "disk"
    if obj is None:
        obj = pack(build())
        if path is not None:
            _write(path, obj)
    eng = Engine(unpack(obj))
    with _lock:
        _memory[key] = eng
    return eng, how
