"""Target CPU, optimization, object code, and the compile cache.

A program is compiled to object code for the target CPU (``SYMGRAD_LLVM_CPU``: ``host``,
the default, or an LLVM CPU name such as ``x86-64-v3``; see :func:`target_cpu`) after
LLVM's O3 pipeline with loop and SLP vectorization. A small program is one module and one
object; a large one is several modules, compiled on worker threads while the next
modules are still being generated, each object loaded into an MCJIT execution engine of
its own and linked to the first through a table of kernel addresses. The cache is keyed
by a hash of everything that affects the code (the lowered program's text, this
backend's sources, the LLVM version, the target CPU's name and features, the BLAS
provider and whether its threads are set, the optimization settings): in memory it holds
loaded engines, on disk (``SYMGRAD_CACHE_DIR``, default ``$XDG_CACHE_HOME/symgrad`` or
``~/.cache/symgrad``; ``SYMGRAD_CACHE_DIR=off`` disables it) it holds the object files
(one entry per program), so a hit skips code generation and LLVM entirely.

Disk entries are written to a temporary file and renamed into place (two processes
compiling the same function both succeed, and a reader never sees half a file); each
carries a SHA-256 of its contents, and an entry that fails the check is deleted and
rebuilt, never loaded. :func:`cache_stats` counts hits and misses and says why the last
miss happened.
"""

from __future__ import annotations

import ctypes
import functools
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
CPU_ENV = "SYMGRAD_LLVM_CPU"
_lock = threading.RLock()
_tms: dict[str, Any] = {}


# -- the target CPU --------------------------------------------------------------------------
# What the code generator needs to know of a target CPU beyond its name: which of these
# instruction set extensions it has. LLVM finds a named CPU's features itself but does not
# list them, so each is found by compiling a probe and looking for the instruction that only
# that extension provides. (The x86-64 levels: v2 adds SSE4.1 and POPCNT, v3 AVX, AVX2 and
# FMA, v4 AVX-512.)
_PROBES = {
    "avx512f": ("define <16 x float> @f(<16 x float> %a, <16 x float> %b) {\n"
                "  %c = fadd <16 x float> %a, %b\n  ret <16 x float> %c\n}", "zmm"),
    "avx2": ("define <8 x i32> @f(<8 x i32> %a, <8 x i32> %b) {\n"
             "  %c = add <8 x i32> %a, %b\n  ret <8 x i32> %c\n}", "vpaddd\t%ymm"),
    "avx": ("define <8 x float> @f(<8 x float> %a, <8 x float> %b) {\n"
            "  %c = fadd <8 x float> %a, %b\n  ret <8 x float> %c\n}", "ymm"),
    "fma": ("declare float @llvm.fma.f32(float, float, float)\n"
            "define float @f(float %a, float %b, float %c) {\n"
            "  %d = call float @llvm.fma.f32(float %a, float %b, float %c)\n  ret float %d\n}",
            "vfmadd"),
    "sse4.1": ("declare float @llvm.floor.f32(float)\ndefine float @f(float %a) {\n"
               "  %d = call float @llvm.floor.f32(float %a)\n  ret float %d\n}", "rounds"),
    "popcnt": ("declare i64 @llvm.ctpop.i64(i64)\ndefine i64 @f(i64 %a) {\n"
               "  %d = call i64 @llvm.ctpop.i64(i64 %a)\n  ret i64 %d\n}", "popcnt"),
}

# Run in a child process: LLVM only warns on stderr about a CPU name it does not know, then
# aborts the process when it generates code for it.
_PROBE_SCRIPT = """
import json, sys
import llvmlite.binding as llvm
llvm.initialize_native_target()
llvm.initialize_native_asmprinter()
cpu, probes = sys.argv[1], json.loads(sys.argv[2])
tm = llvm.Target.from_triple(llvm.get_process_triple()).create_target_machine(cpu=cpu, opt=0)
sys.stderr.flush()
print(json.dumps([name for name, (text, mark) in probes.items()
                  if mark in tm.emit_assembly(llvm.parse_assembly(text))]))
"""


@dataclass(frozen=True)
class TargetCPU:
    """The CPU that code is generated for (``SYMGRAD_LLVM_CPU``; default ``host``).

    ``name`` and ``features`` go to LLVM's target machine (``features`` is empty for a
    named CPU: LLVM takes those of the name); ``isa`` lists the extensions of
    :data:`_PROBES` that the CPU has, as an LLVM feature string (``+avx,+avx2,...``).
    """

    setting: str
    name: str
    features: str
    isa: str

    def missing_on_host(self) -> list[str]:
        """The extensions this CPU has and the host's CPU lacks (code for it would stop
        the process with an illegal instruction)."""
        host = _host_features()
        return [f[1:] for f in self.isa.split(",") if f and f not in host]


_cpus: dict[str, TargetCPU] = {}


@functools.cache
def _host_features() -> frozenset[str]:
    return frozenset(llvm.get_host_cpu_features().flatten().split(","))


def _host_isa() -> str:
    host = _host_features()
    return ",".join(f"+{name}" for name in _PROBES if f"+{name}" in host)


def cpu_setting() -> str:
    """``SYMGRAD_LLVM_CPU`` as set (``host`` when unset or empty)."""
    return os.environ.get(CPU_ENV, "").strip() or "host"


def target_cpu(setting: str | None = None) -> TargetCPU:
    """The target CPU of ``setting`` (default: ``SYMGRAD_LLVM_CPU``): ``host``, or an LLVM
    CPU name such as ``x86-64-v2``, ``x86-64-v3``, ``x86-64-v4``, ``znver4``,
    ``skylake-avx512``. A name LLVM does not know raises ``ValueError``. Checked once per
    name and process (a named CPU costs one short child process)."""
    setting = cpu_setting() if setting is None else (setting.strip() or "host")
    with _lock:
        found = _cpus.get(setting)
        if found is not None:
            return found
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        if setting == "host":
            found = TargetCPU("host", str(llvm.get_host_cpu_name()),
                              str(llvm.get_host_cpu_features().flatten()), _host_isa())
        else:
            found = TargetCPU(setting, setting, "", _probe(setting))
        _cpus[setting] = found
        return found


def _probe(name: str) -> str:
    import json
    import subprocess
    import sys

    def bad(why: str) -> ValueError:
        return ValueError(f"{CPU_ENV}={name!r}: {why}; expected 'host' or an LLVM CPU name for "
                          f"{llvm.get_process_triple()}, such as x86-64-v2, x86-64-v3, x86-64-v4, "
                          f"znver4 (this host is {llvm.get_host_cpu_name()})")

    if not all(c.isalnum() or c in "-_." for c in name):
        raise bad("not a CPU name")
    try:
        run = subprocess.run([sys.executable, "-c", _PROBE_SCRIPT, name, json.dumps(_PROBES)],
                             capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"{CPU_ENV}={name!r}: could not check the CPU name: {e}") from None
    if "not a recognized processor" in run.stderr:
        raise bad("LLVM does not know this CPU")
    if run.returncode != 0:
        raise bad(f"LLVM cannot generate code for it ({run.stderr.strip()[-300:]})")
    found = json.loads(run.stdout.strip().splitlines()[-1])
    return ",".join(f"+{f}" for f in _PROBES if f in found)


def _new_target_machine(cpu: TargetCPU | None = None) -> Any:
    cpu = cpu or target_cpu()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=cpu.name, features=cpu.features, opt=OPT_LEVEL,
                                         reloc="pic", codemodel="jitdefault")


def runnable_target_cpu() -> TargetCPU:
    """:func:`target_cpu`, checked to run on this host: code for a CPU with extensions the
    host lacks would stop the process, so it raises ``ValueError`` instead."""
    cpu = target_cpu()
    missing = cpu.missing_on_host()
    if missing:
        raise ValueError(f"{CPU_ENV}={cpu.setting!r}: that CPU has {', '.join(missing)}, which this "
                         f"host's CPU ({llvm.get_host_cpu_name()}) lacks, so code generated for it "
                         "cannot run here; choose an older target (e.g. x86-64-v2) or 'host'")
    return cpu


def target_machine() -> Any:
    """The target machine of the configured target CPU (created once per CPU setting)."""
    with _lock:
        cpu = runnable_target_cpu()
        tm = _tms.get(cpu.setting)
        if tm is None:
            tm = _tms[cpu.setting] = _new_target_machine(cpu)
            _register_blas()
        return tm


def process_triple() -> str:
    return str(llvm.get_process_triple())


def host_description() -> str:
    """Triple, target CPU name and features (they go into every cache key)."""
    cpu = runnable_target_cpu()
    return f"{llvm.get_process_triple()} {cpu.name} {cpu.features} {cpu.isa}"


def _register_blas() -> None:
    """Make the process's BLAS ``sgemm``/``dgemm`` (see :mod:`.blas`) callable from
    generated code."""
    lib = blas.provider()
    llvm.add_symbol("symgrad_sgemm", lib.sgemm)
    llvm.add_symbol("symgrad_dgemm", lib.dgemm)
    switch = blas.provider_threads()
    if switch is not None:  # see Codegen._blas_threads
        llvm.add_symbol("symgrad_blas_set_threads", switch.set_address)
        llvm.add_symbol("symgrad_blas_threads_large", ctypes.addressof(switch.large))
        llvm.add_symbol("symgrad_blas_threads_current", ctypes.addressof(switch.current))


def blas_threads() -> bool:
    """Whether generated matrix products set the BLAS's threads (its library has the setting)."""
    return blas.provider_threads() is not None


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
    """A target machine owned by the calling thread (created once per thread and CPU)."""
    tms = getattr(_threads, "tms", None)
    if tms is None:
        tms = _threads.tms = {}
    target_machine()
    cpu = target_cpu()
    tm = tms.get(cpu.setting)
    if tm is None:
        tm = tms[cpu.setting] = _new_target_machine(cpu)
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


def optimized_ir(ir_text: str, cpu: str | None = None) -> str:
    """The optimized IR of ``ir_text`` (for reading, not used to run), for the configured
    target CPU or the CPU setting ``cpu`` (which need not run on this host)."""
    tm = None if cpu is None else _new_target_machine(target_cpu(cpu))
    return str(_optimize(ir_text, tm, context=llvm.create_context()))


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
                 f"llvm {llvm.llvm_version_info}", host_description(),
                 f"blas {blas.provider().name} threads={blas_threads()}",
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
