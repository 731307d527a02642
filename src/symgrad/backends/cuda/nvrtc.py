"""NVRTC: CUDA C++ source to PTX or to a cubin, through ``cuda.bindings.nvrtc``.

Only the raw NVRTC bindings are used here: they need the NVRTC library (the
``nvidia-cuda-nvrtc`` wheel or a CUDA toolkit) but no driver and no GPU, so every kernel
can be compiled for ``sm_80``/``sm_90`` on a machine without either. Results go through an
on-disk cache keyed by the source, NVRTC's version, the target, the architecture and the
options.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from symgrad.backends.cuda.cache import ArtifactCache, cache_root, make_key
from symgrad.backends.cuda.errors import INSTALL_HINT, CudaUnavailableError, NvrtcError

DEFAULT_OPTIONS: tuple[str, ...] = ("-std=c++17",)

_lock = threading.Lock()
_module: ModuleType | None = None
_failure: CudaUnavailableError | None = None
_default_cache: ArtifactCache | None = None


def load_nvrtc() -> ModuleType:
    """``cuda.bindings.nvrtc`` with its library loaded, or CudaUnavailableError saying
    which piece is missing and how to install it."""
    global _module, _failure
    with _lock:
        if _module is not None:
            return _module
        if _failure is not None:
            raise _failure
        try:
            from cuda.bindings import nvrtc
        except ImportError as e:
            _failure = CudaUnavailableError(
                "cuda-bindings",
                f"the CUDA backend needs the 'cuda-bindings' package (NVIDIA's Python bindings "
                f"for NVRTC and the driver), which is not installed ({e}); install it with: "
                f"{INSTALL_HINT}",
            )
            raise _failure from None
        try:
            err, _, _ = nvrtc.nvrtcVersion()
            ok = int(err) == 0
            detail = "" if ok else f" (nvrtcVersion returned {err})"
        except Exception as e:  # the bindings raise when libnvrtc cannot be loaded
            ok, detail = False, f" ({e})"
        if not ok:
            _failure = CudaUnavailableError(
                "nvrtc",
                f"the NVRTC library (libnvrtc) could not be loaded{detail}; install the "
                f"'nvidia-cuda-nvrtc' wheel with: {INSTALL_HINT} (or a CUDA toolkit)",
            )
            raise _failure
        _module = nvrtc
        return nvrtc


def nvrtc_available() -> bool:
    try:
        load_nvrtc()
    except CudaUnavailableError:
        return False
    return True


def nvrtc_version() -> tuple[int, int]:
    """NVRTC's (major, minor) version."""
    nvrtc = load_nvrtc()
    _, major, minor = nvrtc.nvrtcVersion()
    return int(major), int(minor)


def supported_archs() -> list[int]:
    """The compute capabilities NVRTC can target, as integers (80 for sm_80)."""
    nvrtc = load_nvrtc()
    err, archs = nvrtc.nvrtcGetSupportedArchs()
    _check(nvrtc, err, "nvrtcGetSupportedArchs")
    return [int(a) for a in archs]


def arch_number(arch: str | int) -> int:
    """80 from ``80``, ``"80"``, ``"sm_80"``, ``"compute_80"`` or ``(8, 0)``-style ``"8.0"``."""
    if isinstance(arch, int):
        return arch
    m = re.fullmatch(r"(?:sm_|compute_)?(\d+)([a-z]?)", arch.strip())
    if m:
        return int(m.group(1))
    m = re.fullmatch(r"(\d+)\.(\d)", arch.strip())
    if m:
        return int(m.group(1)) * 10 + int(m.group(2))
    raise ValueError(f"not a CUDA architecture: {arch!r} (expected e.g. 'sm_90', 90 or '9.0')")


@dataclass(frozen=True)
class Compiled:
    """An NVRTC result: ``data`` is a cubin (ELF) or PTX text (NUL-free bytes); ``ptx``
    is the PTX in both cases (a cubin compile produces it on the way)."""

    target: str  # "cubin" or "ptx"
    arch: int
    data: bytes
    ptx: str
    log: str
    options: tuple[str, ...]
    cached: bool
    nvrtc_version: tuple[int, int]


def default_cache() -> ArtifactCache:
    global _default_cache
    if _default_cache is None:
        _default_cache = ArtifactCache(cache_root() / "cuda", suffix=".nvrtc")
    return _default_cache


def compile_source(
    source: str,
    *,
    arch: str | int = 90,
    target: str = "cubin",
    name: str = "program.cu",
    options: Sequence[str] = (),
    cache: ArtifactCache | None | bool = True,
) -> Compiled:
    """Compile ``source`` to a cubin for ``sm_<arch>`` or to PTX for ``compute_<arch>``.

    Raises :class:`NvrtcError` with NVRTC's log (and the source lines it cites) when the
    source does not compile, :class:`CudaUnavailableError` when NVRTC is missing.
    ``cache``: True for the default on-disk cache, an :class:`ArtifactCache`, or
    False/None for none.
    """
    if target not in ("cubin", "ptx"):
        raise ValueError(f"target must be 'cubin' or 'ptx', got {target!r}")
    nvrtc = load_nvrtc()
    number = arch_number(arch)
    supported = supported_archs()
    if number not in supported:
        raise NvrtcError(f"NVRTC {'.'.join(map(str, nvrtc_version()))} cannot target "
                         f"sm_{number}; it supports: {', '.join(f'sm_{a}' for a in supported)}")
    arch_opt = f"--gpu-architecture={'sm' if target == 'cubin' else 'compute'}_{number}"
    opts = (arch_opt, *DEFAULT_OPTIONS, *options)
    version = nvrtc_version()
    store = default_cache() if cache is True else (cache or None)
    key = make_key("nvrtc-v2", source, f"{version[0]}.{version[1]}", target, *opts)
    if store is not None:
        hit = store.get(key)
        if hit is not None and len(hit) >= 8:
            n = int.from_bytes(hit[:8], "little")
            data, ptx_text = hit[8:8 + n], hit[8 + n:].decode(errors="replace")
            return Compiled(target, number, data, ptx_text, "", opts, True, version)

    err, prog = nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], [])
    _check(nvrtc, err, "nvrtcCreateProgram")
    try:
        encoded = [o.encode() for o in opts]
        (err,) = nvrtc.nvrtcCompileProgram(prog, len(encoded), encoded)
        log = _log(nvrtc, prog)
        if int(err) != 0:
            raise NvrtcError(_failure_text(name, number, target, log, source), log)
        err, size = nvrtc.nvrtcGetPTXSize(prog)
        _check(nvrtc, err, "nvrtcGetPTXSize")
        ptx = b" " * size
        (err,) = nvrtc.nvrtcGetPTX(prog, ptx)
        _check(nvrtc, err, "nvrtcGetPTX")
        ptx = ptx.rstrip(b"\0")
        if target == "cubin":
            err, size = nvrtc.nvrtcGetCUBINSize(prog)
            _check(nvrtc, err, "nvrtcGetCUBINSize")
            buf = b" " * size
            (err,) = nvrtc.nvrtcGetCUBIN(prog, buf)
            _check(nvrtc, err, "nvrtcGetCUBIN")
        else:
            buf = ptx
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    data = bytes(buf)
    if store is not None:
        store.put(key, len(data).to_bytes(8, "little") + data + ptx)
    return Compiled(target, number, data, ptx.decode(errors="replace"), log, opts, False, version)


def compile_cubin(source: str, arch: str | int = 90, **kw: Any) -> Compiled:
    return compile_source(source, arch=arch, target="cubin", **kw)


def compile_ptx(source: str, arch: str | int = 90, **kw: Any) -> Compiled:
    return compile_source(source, arch=arch, target="ptx", **kw)


def _check(nvrtc: ModuleType, err: Any, call: str) -> None:
    if int(err) != 0:
        _, text = nvrtc.nvrtcGetErrorString(err)
        raise NvrtcError(f"{call} failed: {text.decode() if isinstance(text, bytes) else text}")


def _log(nvrtc: ModuleType, prog: Any) -> str:
    err, size = nvrtc.nvrtcGetProgramLogSize(prog)
    if int(err) != 0 or size <= 1:
        return ""
    buf = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, buf)
    return buf.rstrip(b"\0").decode(errors="replace").strip()


def _failure_text(name: str, arch: int, target: str, log: str, source: str) -> str:
    lines = source.splitlines()
    cited = sorted({int(n) for n in re.findall(re.escape(name) + r"\((\d+)\)", log)})
    shown = []
    for n in cited[:5]:
        for k in range(max(1, n - 1), min(len(lines), n + 1) + 1):
            mark = ">" if k == n else " "
            shown.append(f"{mark}{k:5d} | {lines[k - 1]}")
        shown.append("")
    text = f"NVRTC failed to compile {name} to {target} for sm_{arch}:\n{log}"
    if shown:
        text += "\n\nsource lines cited:\n" + "\n".join(shown).rstrip()
    return text
