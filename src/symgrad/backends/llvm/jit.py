"""Host target, optimization, object code, and the compile cache.

A program is compiled to an object file for the host CPU (its name and features) after
LLVM's O3 pipeline with loop and SLP vectorization; the object is loaded into an MCJIT
execution engine. The cache is keyed by a hash of everything that affects the code (the
lowered program's text, this backend's sources, the LLVM version, the CPU name and
features, the optimization settings): in memory it holds loaded engines, on disk
(``SYMGRAD_CACHE_DIR``, default ``$XDG_CACHE_HOME/symgrad`` or ``~/.cache/symgrad``;
``SYMGRAD_CACHE_DIR=off`` disables it) it holds object files, so a hit skips code
generation and LLVM entirely.

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llvmlite
import llvmlite.binding as llvm

from symgrad.backends.base import atomic_write

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


def _capsule_pointer(capsule: Any) -> int:
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return int(api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule)))


def _register_blas() -> None:
    """Make SciPy's BLAS ``sgemm``/``dgemm`` callable from generated code."""
    from scipy.linalg import cython_blas

    for name in ("sgemm", "dgemm"):
        llvm.add_symbol(f"symgrad_{name}", _capsule_pointer(cython_blas.__pyx_capi__[name]))


def _optimize(ir_text: str, tm: Any = None, context: Any = None) -> Any:
    tm = tm or target_machine()
    mod = llvm.parse_assembly(ir_text, context=context) if context is not None else \
        llvm.parse_assembly(ir_text)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=OPT_LEVEL)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    # The loop unroller multiplies code size (and LLVM time, 2-3x) for no measurable gain
    # on these kernels: the vectorizer still interleaves the hot loops.
    pto.loop_unrolling = False
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def optimize_to_object(ir_text: str) -> bytes:
    """Parse, verify, run O3 (loop and SLP vectorization on) and emit an object file."""
    return bytes(target_machine().emit_object(_optimize(ir_text)))


def optimize_to_objects(ir_texts: list[str]) -> list[bytes]:
    """Object files of several modules, compiled on parallel threads (LLVM runs without
    the GIL; each thread has its own LLVM context and target machine)."""
    if len(ir_texts) == 1:
        return [optimize_to_object(ir_texts[0])]
    target_machine()

    def one(text: str) -> bytes:
        tm = _new_target_machine()
        return bytes(tm.emit_object(_optimize(text, tm, llvm.create_context())))

    with ThreadPoolExecutor(max_workers=len(ir_texts)) as pool:
        return list(pool.map(one, ir_texts))


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
    return str(_optimize(ir_text))


class Engine:
    """Loaded object files (one program): function addresses by name."""

    def __init__(self, objs: list[bytes]) -> None:
        target_machine()
        with _lock:
            # the engine takes ownership of (and frees) the target machine it is given
            self._ee = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _new_target_machine())
            for obj in objs:
                self._ee.add_object_file(llvm.ObjectFileRef.from_data(obj))
            self._ee.finalize_object()
        self.nbytes = sum(len(o) for o in objs)

    def address(self, name: str) -> int:
        addr = int(self._ee.get_function_address(name))
        if not addr:
            raise KeyError(f"no function {name!r} in the compiled object")
        return addr


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
                 f"llvm {llvm.llvm_version_info}", host_description(), f"O{OPT_LEVEL} vectorize no-unroll parts"):
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
