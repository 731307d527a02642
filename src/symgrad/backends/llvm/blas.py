"""The BLAS that the generated matrix products call.

Two providers come with the Python stack this package depends on, and both are already in
the process once NumPy and SciPy are imported:

- ``numpy``: the OpenBLAS that NumPy's wheels ship (64-bit integers; its Fortran-interface
  symbols are ``scipy_sgemm_64_``/``scipy_dgemm_64_`` from NumPy 2.0, ``sgemm_64_``/
  ``dgemm_64_`` before). The NumPy backend's ``@`` runs through it, so with it both backends
  compute the same matrix products.
- ``scipy``: ``scipy.linalg.cython_blas`` (32-bit integers), whatever BLAS SciPy was built
  with.

``SYMGRAD_BLAS=numpy`` or ``scipy`` chooses; by default NumPy's when this process has it
(measured here: NumPy 2.4's OpenBLAS 0.3.31 runs the W2 products 5-20% faster than SciPy
1.17's OpenBLAS 0.3.30, and the 10-column ones 2x faster), else SciPy's. The choice is part
of the generated code (the integer width) and of the cache key.

Threads: a product of ``m x k`` by ``k x n`` with ``m * k * n`` below
:data:`ONE_THREAD_BELOW` runs on one BLAS thread, a larger one on ``SYMGRAD_BLAS_THREADS``
(default: what the OpenBLAS would use; read once per process), on both backends, through
the OpenBLAS's own thread setting (:class:`ThreadSwitch`), called only when the wanted
count changes. Where no OpenBLAS with that setting is found, its threads are left alone.
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# the Fortran-interface symbols of the OpenBLAS that NumPy's wheels ship (NumPy 2, NumPy 1)
NUMPY_SYMBOLS = (("scipy_sgemm_64_", "scipy_dgemm_64_"), ("sgemm_64_", "dgemm_64_"))
# the C functions that set and get an OpenBLAS's thread count: NumPy 2's, NumPy 1's, SciPy's
THREAD_SYMBOLS = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                  ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
                  ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
                  ("openblas_set_num_threads", "openblas_get_num_threads"))
# Products with fewer multiply-adds (m * k * n) run on one BLAS thread. Chosen from
# benchmarks/blas_threads.py on a 2-core machine (results: benchmarks/blas_threads.md).
ONE_THREAD_BELOW = 1 << 23


@dataclass(frozen=True)
class Blas:
    name: str  # "numpy" or "scipy"
    int_bits: int  # width of the integer arguments (passed by pointer)
    sgemm: int  # addresses of the Fortran-interface routines
    dgemm: int
    where: str  # the library or module, for reports


def _loaded_libraries() -> list[str]:
    """Paths of the shared libraries mapped into this process (Linux); [] elsewhere."""
    try:
        text = Path("/proc/self/maps").read_text()
    except OSError:
        return []
    seen: dict[str, None] = {}
    for line in text.splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if path.startswith("/") and ".so" in path:
            seen.setdefault(path, None)
    return list(seen)


def _numpy_blas() -> Blas | None:
    np.dot(np.ones((2, 2), np.float32), np.ones((2, 2), np.float32))  # BLAS is loaded by now
    for path in _loaded_libraries():
        if "openblas" not in Path(path).name.lower():
            continue
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for names in NUMPY_SYMBOLS:
            try:
                s, d = (ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in names)
            except AttributeError:
                continue
            if s and d:
                return Blas("numpy", 64, s, d, path)
    return None


def _capsule_pointer(capsule: Any) -> int:
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return int(api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule)))


def _scipy_blas() -> Blas:
    from scipy.linalg import cython_blas

    capi = cython_blas.__pyx_capi__
    return Blas("scipy", 32, _capsule_pointer(capi["sgemm"]), _capsule_pointer(capi["dgemm"]),
                "scipy.linalg.cython_blas")


@functools.cache
def provider() -> Blas:
    """The BLAS of this process (``SYMGRAD_BLAS``; see the module's docstring)."""
    want = os.environ.get("SYMGRAD_BLAS", "").strip().lower()
    if want not in ("", "numpy", "scipy"):
        raise ValueError(f"SYMGRAD_BLAS={want!r}: expected 'numpy' or 'scipy'")
    if want == "scipy":
        return _scipy_blas()
    found = _numpy_blas()
    if found is not None:
        return found
    if want == "numpy":
        names = " or ".join("/".join(pair) for pair in NUMPY_SYMBOLS)
        raise RuntimeError(f"SYMGRAD_BLAS=numpy: this NumPy does not ship an OpenBLAS with {names}; "
                           "use SYMGRAD_BLAS=scipy")
    return _scipy_blas()


# -- threads ---------------------------------------------------------------------------------
class ThreadSwitch:
    """The thread setting of one OpenBLAS library.

    ``large`` (the count for products of :data:`ONE_THREAD_BELOW` multiply-adds or more)
    and ``current`` (the count this switch set last) are C ints that the generated code of
    the LLVM backend reads and writes too, so the library is called only when the wanted
    count changes, whichever backend ran the last product.
    """

    def __init__(self, where: str, set_address: int, get_address: int) -> None:
        self.where = where
        self.set_address = set_address
        self._set = ctypes.CFUNCTYPE(None, ctypes.c_int)(set_address)
        self._get = ctypes.CFUNCTYPE(ctypes.c_int)(get_address)
        self.default = max(1, int(self._get()))
        self.large = ctypes.c_int(configured_threads(self.default))
        self.current = ctypes.c_int(self.default)

    def set(self, threads: int) -> None:
        self._set(threads)
        self.current.value = threads

    def get(self) -> int:
        """The library's own count now (a foreign call; for tests and reports)."""
        return int(self._get())

    def for_product(self, m: int, k: int, n: int) -> None:
        """Set the count for one product of ``m x k`` by ``k x n``."""
        want = 1 if m * k * n < ONE_THREAD_BELOW else self.large.value
        if want != self.current.value:
            self.set(want)


def configured_threads(default: int) -> int:
    """``SYMGRAD_BLAS_THREADS``, else ``default``."""
    env = os.environ.get("SYMGRAD_BLAS_THREADS", "").strip()
    if not env:
        return default
    try:
        threads = int(env)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"SYMGRAD_BLAS_THREADS must be a positive integer, got {env!r}")
    return threads


def _switch_in(path: str, names: tuple[tuple[str, str], ...]) -> ThreadSwitch | None:
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for set_name, get_name in names:
        try:
            s, g = (ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in (set_name, get_name))
        except AttributeError:
            continue
        if s and g:
            return ThreadSwitch(path, s, g)
    return None


@functools.cache
def numpy_threads() -> ThreadSwitch | None:
    """The thread switch of the OpenBLAS that NumPy ships (NumPy's ``@`` runs there), or None."""
    found = _numpy_blas()
    return None if found is None else _switch_in(found.where, THREAD_SYMBOLS[:2])


@functools.cache
def provider_threads() -> ThreadSwitch | None:
    """The thread switch of :func:`provider`'s library, or None where it has none."""
    lib = provider()
    if lib.name == "numpy":
        return numpy_threads()
    skip = {sw.where for sw in (numpy_threads(),) if sw is not None}
    for path in _loaded_libraries():
        if "openblas" in Path(path).name.lower() and path not in skip:
            found = _switch_in(path, THREAD_SYMBOLS[2:])
            if found is not None:
                return found
    return None


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` (rank >= 2) on NumPy's OpenBLAS with the threads for the size of each
    matrix product (one of a batch). The NumPy backend's float matrix products call this."""
    switch = numpy_threads()
    if switch is not None:
        switch.for_product(a.shape[-2], a.shape[-1], b.shape[-1])
    return np.matmul(a, b)
