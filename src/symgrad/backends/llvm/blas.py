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
"""

from __future__ import annotations

import ctypes
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the Fortran-interface symbols of the OpenBLAS that NumPy's wheels ship (NumPy 2, NumPy 1)
NUMPY_SYMBOLS = (("scipy_sgemm_64_", "scipy_dgemm_64_"), ("sgemm_64_", "dgemm_64_"))


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
    import numpy as np

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
