"""Run CUDA source on the CPU: the host compiler builds it through ``shim.h``.

The ``.cu`` source is included unchanged into a small generated C++ file that adds one
entry point per kernel with ``cuLaunchKernel``'s calling convention (grid, block, an array
of pointers to the argument values), so the same launch code drives a GPU and the shim.
Kernels that use barriers, shuffles or votes (directly or through ``__device__``
functions they call) run one fiber per CUDA thread; the others run as plain loops. The
libraries are cached on disk, keyed by the source, shim.h, the compiler and its flags.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from symgrad.backends.cuda.cache import cache_enabled, cache_root, make_key
from symgrad.backends.cuda.device import ALIGN, Device, Module, Params
from symgrad.backends.cuda.errors import ShimError

SHIM_HEADER = Path(__file__).with_name("shim.h")
DEFAULT_FLAGS: tuple[str, ...] = ("-std=c++20", "-fPIC", "-shared", "-fno-strict-aliasing")


def optimization_flag() -> str:
    """``$SYMGRAD_SHIM_OPT`` (default ``-O0``: builds fastest; the shim is for checking
    results, and fibers dominate its run time). ``-O2`` runs barrier-free kernels at
    about native speed."""
    opt = os.environ.get("SYMGRAD_SHIM_OPT", "-O0").strip()
    if not re.fullmatch(r"-O[0-3sg]?", opt):
        raise ShimError(f"SYMGRAD_SHIM_OPT must be an optimization flag like -O0 or -O2, got {opt!r}")
    return opt

_SYNC_TOKENS = re.compile(
    r"\b(__syncthreads\w*|__syncwarp|__shfl\w*_sync|__ballot_sync|__any_sync|__all_sync|"
    r"__activemask)\b")
_GLOBAL = re.compile(
    r"__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(([^)]*)\)", re.S)
_FUNC_DEF = re.compile(r"\b(\w+)\s*\([^;{}()]*(?:\([^()]*\)[^;{}()]*)*\)\s*(?:const\s*)?\{")
_EXTERN_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([A-Za-z_][\w\s]*?)\s+(\w+)\s*\[\s*\]")
_TRANSPARENT = re.compile(r'(extern\s+"C"|namespace(\s+\w+)?)\s*$')
_KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "do", "else"}

_CTYPE_KINDS = {
    "float": "f32", "double": "f64",
    "int": "i32", "signed": "i32", "signed int": "i32", "int32_t": "i32",
    "unsigned": "u32", "unsigned int": "u32", "uint32_t": "u32",
    "long": "i64", "long int": "i64", "long long": "i64", "long long int": "i64", "int64_t": "i64",
    "unsigned long": "u64", "unsigned long long": "u64", "unsigned long long int": "u64",
    "uint64_t": "u64", "size_t": "u64",
    "short": "i16", "unsigned short": "u16", "char": "i8", "signed char": "i8",
    "unsigned char": "u8", "bool": "bool",
}


@dataclass(frozen=True)
class KernelSignature:
    """A ``__global__`` function: its name, parameter kinds (``ptr``, ``f32``, ``i64``...)
    and whether it synchronizes (needs one fiber per thread on the host)."""

    name: str
    params: tuple[str, ...]
    uses_sync: bool


def param_kind(decl: str, typedefs: dict[str, str] | None = None) -> str:
    """The kind of one parameter declaration (``const float* __restrict__ x`` -> ``ptr``,
    ``long long n`` -> ``i64``; ``other`` for types the runtime does not pass)."""
    if "*" in decl or "[" in decl:
        return "ptr"
    words = [w for w in re.findall(r"\w+", decl)
             if w not in ("const", "volatile", "__restrict__", "__restrict", "__grid_constant__")]
    if len(words) >= 2:
        words = words[:-1]  # drop the parameter's name
    base = " ".join(words)
    seen: set[str] = set()
    while typedefs and base in typedefs and base not in seen:
        seen.add(base)
        base = typedefs[base]
        if "*" in base:
            return "ptr"
    return _CTYPE_KINDS.get(base, "other")


def _typedefs(text: str) -> dict[str, str]:
    out = {}
    for m in re.finditer(r"\btypedef\s+([^;{}()]+?)\s*\b(\w+)\s*;", text):
        out[m.group(2)] = " ".join(m.group(1).replace("*", " * ").split())
    for m in re.finditer(r"\busing\s+(\w+)\s*=\s*([^;{}()]+?)\s*;", text):
        out[m.group(1)] = " ".join(m.group(2).replace("*", " * ").split())
    return out


def _bodies(source: str) -> dict[str, str]:
    """Function name -> body text, for functions defined outside other functions
    (``extern "C" { ... }`` and namespace blocks do not count as nesting)."""
    depth_at = []
    stack: list[bool] = []  # True: a brace that nests (not extern "C" / namespace)
    depth = 0
    for i, ch in enumerate(source):
        depth_at.append(depth)
        if ch == "{":
            real = not _TRANSPARENT.search(source[max(0, i - 120):i])
            stack.append(real)
            depth += real
        elif ch == "}" and stack:
            depth -= stack.pop()
    out: dict[str, str] = {}
    for m in _FUNC_DEF.finditer(source):
        name = m.group(1)
        if name in _KEYWORDS or depth_at[m.start()] != 0:
            continue
        start = m.end() - 1
        d = 0
        for k in range(start, len(source)):
            if source[k] == "{":
                d += 1
            elif source[k] == "}":
                d -= 1
                if d == 0:
                    out[name] = out.get(name, "") + source[start:k + 1]
                    break
    return out


def _strip_comments(source: str) -> str:
    source = re.sub(r"/\*.*?\*/", lambda m: re.sub(r"[^\n]", " ", m.group(0)), source, flags=re.S)
    return re.sub(r"//[^\n]*", "", source)


def parse_kernels(source: str) -> list[KernelSignature]:
    """Every ``__global__`` kernel of ``source``, in order of appearance."""
    text = _strip_comments(source)
    bodies = _bodies(text)
    sync: dict[str, bool] = {}

    def uses(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name in sync:
            return sync[name]
        body = bodies.get(name, "")
        found = bool(_SYNC_TOKENS.search(body))
        if not found:
            for callee in set(re.findall(r"\b(\w+)\s*\(", body)):
                if callee in bodies and callee not in seen and callee != name:
                    if uses(callee, seen | {name}):
                        found = True
                        break
        sync[name] = found
        return found

    # a barrier hidden in a macro (or anywhere outside a function body) could reach any
    # kernel: then every kernel runs with fibers
    outside = _SYNC_TOKENS.search(_outside_bodies(text, bodies))
    types = _typedefs(text)
    kernels = []
    seen_names: set[str] = set()
    for m in _GLOBAL.finditer(text):
        name, params = m.group(1), m.group(2).strip()
        if name in seen_names:
            continue
        seen_names.add(name)
        decls = [p for p in params.split(",") if p.strip() and p.strip() != "void"]
        kernels.append(KernelSignature(name, tuple(param_kind(p, types) for p in decls),
                                       bool(outside) or uses(name)))
    return kernels


def _outside_bodies(text: str, bodies: dict[str, str]) -> str:
    for body in bodies.values():
        text = text.replace(body, " ")
    return text


def dynamic_shared(source: str) -> list[tuple[str, str]]:
    """(type, name) of every ``extern __shared__ T name[]`` declaration."""
    found: dict[str, str] = {}
    for m in _EXTERN_SHARED.finditer(_strip_comments(source)):
        found.setdefault(m.group(2), " ".join(m.group(1).split()))
    return [(t, n) for n, t in found.items()]


def driver_source(cu_path: str, kernels: Sequence[KernelSignature], shared: Sequence[tuple[str, str]],
                  header: str = str(SHIM_HEADER)) -> str:
    """The C++ file that includes the unchanged source and exports the launch entry."""
    lines = [f'#include "{header}"', f'#include "{cu_path}"', ""]
    for t, n in shared:
        lines.append(f"SGSHIM_DYNAMIC_SHARED({t}, {n});")
    lines += [
        "",
        'extern "C" {',
        f"int sgshim_count(void) {{ return {len(kernels)}; }}",
        "const char* sgshim_name(int k) {",
        "    static const char* const names[] = {"
        + ", ".join(f'"{k.name}"' for k in kernels) + "};",
        f"    return k >= 0 && k < {len(kernels)} ? names[k] : (const char*)0;",
        "}",
        "const char* sgshim_message(void) { return sgshim::message(); }",
        "int sgshim_launch(int sgshim_which, const unsigned* sgshim_geom, void** sgshim_params,",
        "                  int sgshim_fibers) {",
        "    const dim3 sgshim_grid(sgshim_geom[0], sgshim_geom[1], sgshim_geom[2]);",
        "    const dim3 sgshim_block(sgshim_geom[3], sgshim_geom[4], sgshim_geom[5]);",
        "    switch (sgshim_which) {",
    ]
    for i, k in enumerate(kernels):
        fibers = "true" if k.uses_sync else "sgshim_fibers != 0"
        lines.append(f"    case {i}: return sgshim::launch_params(::{k.name}, sgshim_grid, sgshim_block, "
                     f"{fibers}, sgshim_params);")
    lines += ["    }", "    return -1;", "}", "}", ""]
    return "\n".join(lines)


def compiler() -> str:
    cxx = os.environ.get("CXX", "g++")
    path = shutil.which(cxx)
    if path is None:
        raise ShimError(f"no C++ compiler {cxx!r} on PATH: the CUDA host shim needs g++ (C++20); "
                        "set CXX to another compiler")
    return path


_version_cache: dict[str, str] = {}


def compiler_version(cxx: str) -> str:
    if cxx not in _version_cache:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False)
        _version_cache[cxx] = out.stdout.splitlines()[0] if out.stdout else cxx
    return _version_cache[cxx]


class HostLibrary:
    """A CUDA source built for the CPU: launch its kernels by name."""

    def __init__(self, path: Path, kernels: Sequence[KernelSignature], source_path: Path) -> None:
        self.path = path
        self.source_path = source_path
        self.kernels = {k.name: k for k in kernels}
        self._index = {k.name: i for i, k in enumerate(kernels)}
        self._lib = ctypes.CDLL(str(path))
        self._lib.sgshim_launch.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_uint),
                                            ctypes.c_void_p, ctypes.c_int]
        self._lib.sgshim_launch.restype = ctypes.c_int
        self._lib.sgshim_message.restype = ctypes.c_char_p
        self._lock = threading.Lock()
        self.force_fibers = os.environ.get("SYMGRAD_SHIM_FIBERS", "0") not in ("0", "")

    def launch(self, kernel: str, grid: Sequence[int], block: Sequence[int], shmem: int,
               params: int) -> None:
        """Run ``kernel``; ``params`` is the address of an array of pointers to the
        argument values (cuLaunchKernel's kernelParams)."""
        if kernel not in self._index:
            raise ShimError(f"no kernel {kernel!r} in {self.source_path}; kernels: "
                            f"{', '.join(self._index)}")
        g = (ctypes.c_uint * 6)(*_dims(grid), *_dims(block))
        with self._lock:  # the shim's state is per host thread, but keep launches ordered
            status = self._lib.sgshim_launch(self._index[kernel], g, params, int(self.force_fibers))
            message = self._lib.sgshim_message().decode() if status else ""
        if status:
            raise ShimError(f"kernel {kernel} (grid {tuple(grid)}, block {tuple(block)}) failed "
                            f"on the host shim: {message or f'status {status}'}")


def _dims(d: Sequence[int]) -> tuple[int, int, int]:
    t = tuple(int(v) for v in d) + (1, 1, 1)
    return t[0], t[1], t[2]


_build_lock = threading.Lock()
_loaded: dict[str, HostLibrary] = {}
_pch_dirs: dict[str, Path | None] = {}


def _precompiled_header(root: Path, cxx: str, flags: Sequence[str]) -> Path | None:
    """A directory holding shim.h and its precompiled form for these flags (None if the
    compiler cannot make one): it cuts each build's time by about two thirds."""
    text = SHIM_HEADER.read_text()
    key = make_key("shim-pch-v1", text, compiler_version(cxx), *flags)
    if key in _pch_dirs:
        return _pch_dirs[key]
    d = root / f"pch-{key[:16]}"
    gch = d / "shim.h.gch"
    if not gch.exists():
        d.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".pch-", dir=d))
        try:
            (tmp / "shim.h").write_text(text)
            cmd = [cxx, *(f for f in flags if f != "-shared"), "-x", "c++-header",
                   str(tmp / "shim.h"), "-o", str(tmp / "shim.h.gch")]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                _pch_dirs[key] = None
                return None
            os.replace(tmp / "shim.h", d / "shim.h")
            os.replace(tmp / "shim.h.gch", gch)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    _pch_dirs[key] = d
    return d


def build(source: str, *, name: str = "program", flags: Sequence[str] = (),
          cache_dir: Path | None = None, use_pch: bool = True,
          fibers: dict[str, bool] | None = None) -> HostLibrary:
    """Compile ``source`` (CUDA C++) with the host compiler through shim.h and load it.

    ``fibers`` overrides, per kernel name, whether it runs with one fiber per thread (the
    default comes from scanning the source for barriers and warp operations). Safe to
    call from several threads at once: builds of different sources overlap."""
    kernels = parse_kernels(source)
    if fibers:
        kernels = [KernelSignature(k.name, k.params, fibers.get(k.name, k.uses_sync)) for k in kernels]
    if not kernels:
        raise ShimError("the source defines no __global__ kernel")
    shared = dynamic_shared(source)
    cxx = compiler()
    all_flags = (*DEFAULT_FLAGS, optimization_flag(), *flags)
    modes = "".join("f" if k.uses_sync else "l" for k in kernels)
    key = make_key("shim-v2", source, SHIM_HEADER.read_text(), compiler_version(cxx), modes, *all_flags)
    with _build_lock:
        if key in _loaded:
            return _loaded[key]
        root = cache_dir or (cache_root() / "shim" if cache_enabled()
                             else Path(tempfile.gettempdir()) / f"sgshim-{os.getuid()}")
        pch = _precompiled_header(root, cxx, all_flags) if use_pch else None
    out_dir = root / key[:2] / key
    lib_path = out_dir / f"lib{_safe(name)}.so"
    cu_path = out_dir / f"{_safe(name)}.cu"
    if not (lib_path.exists() and cu_path.exists() and cu_path.read_text() == source):
        out_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=out_dir))
        try:
            (tmp / cu_path.name).write_text(source)
            os.replace(tmp / cu_path.name, cu_path)
            drv = tmp / "driver.cpp"
            header = "shim.h" if pch is not None else str(SHIM_HEADER)
            drv.write_text(driver_source(str(cu_path), kernels, shared, header))
            tmp_lib = tmp / lib_path.name
            include = ["-I", str(pch)] if pch is not None else []
            cmd = [cxx, *all_flags, *include, str(drv), "-o", str(tmp_lib)]
            res = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise ShimError(f"the host compiler rejected {name}.cu through shim.h:\n"
                                f"{' '.join(cmd)}\n{res.stderr.strip()}")
            os.replace(tmp_lib, lib_path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    with _build_lock:
        if key not in _loaded:
            _loaded[key] = HostLibrary(lib_path, kernels, cu_path)
        return _loaded[key]


def _safe(name: str) -> str:
    return re.sub(r"\W", "_", name) or "program"


# -- the shim as a device -----------------------------------------------------------------------
class ShimModule(Module):
    def __init__(self, lib: HostLibrary) -> None:
        self.lib = lib

    def launch(self, kernel: str, grid: Sequence[int], block: Sequence[int], shmem: int,
               params: Params) -> None:
        self.lib.launch(kernel, grid, block, shmem, params.address)


class ShimDevice(Device):
    """The CPU as a CUDA device: memory is host memory (256-byte aligned, like
    cuMemAlloc), sources are built through shim.h, launches run on the calling thread."""

    kind = "shim"
    name = "host shim"
    arch = None
    multiprocessors = 4

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def raw_alloc(self, nbytes: int) -> int:
        raw = np.empty(nbytes + ALIGN, dtype=np.uint8)
        ptr = (raw.ctypes.data + ALIGN - 1) // ALIGN * ALIGN
        with self._lock:
            self._blocks[ptr] = raw
        return ptr

    def raw_free(self, ptr: int) -> None:
        with self._lock:
            self._blocks.pop(ptr, None)

    def upload(self, dst: int, src: np.ndarray) -> None:
        ctypes.memmove(dst, src.ctypes.data, src.nbytes)

    def download(self, dst: np.ndarray, src: int) -> None:
        ctypes.memmove(dst.ctypes.data, src, dst.nbytes)

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        ctypes.memmove(dst, src, nbytes)

    def memset(self, dst: int, byte: int, nbytes: int) -> None:
        ctypes.memset(dst, byte, nbytes)

    def load(self, source: str, name: str) -> ShimModule:
        return ShimModule(build(source, name=name))

    def synchronize(self) -> None:
        pass


_shim_device: ShimDevice | None = None


def shim_device() -> ShimDevice:
    """The process's host-shim device."""
    global _shim_device
    if _shim_device is None:
        _shim_device = ShimDevice()
    return _shim_device
