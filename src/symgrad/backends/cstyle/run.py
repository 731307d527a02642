"""Build rendered C source into a shared library and call it through the C ABI.

Used by the tests and by ``sg.emit`` to check a bundle right away; it also shows how a
Python program can load an emitted library with nothing but ``ctypes`` and NumPy::

    lib = CLibrary.build(rendered, workdir)
    outs = lib(x=X, w=W)             # NumPy arrays in, NumPy arrays out

Everything goes through the exported ABI (``NAME_num_inputs``, ``NAME_output_shape``,
``NAME_workspace_size``, ``NAME``...), never through knowledge of the graph.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from symgrad.backends.cstyle.render import DTYPE_CODES, RenderedSource

NP_OF_CODE = {code: np.dtype("bool" if dt == "bool" else dt) for dt, code in DTYPE_CODES.items()}


class ABIError(RuntimeError):
    """The emitted function returned a nonzero code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"error {code}: {message}")
        self.code = code


def find_cc() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


class CLibrary:
    """A loaded shared library exporting one emitted function ``NAME``."""

    def __init__(self, path: str | Path, name: str, cuda: bool = False) -> None:
        self.path = str(path)
        self.name = name
        self.cuda = cuda
        self.lib = ctypes.CDLL(self.path)
        L = self.lib
        i32, i64, p = ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p
        entry = [p, p, p, p, p] if cuda else [p, p, p, p]
        for fn, res, args in (
            ("", i32, entry),
            ("_num_inputs", i32, []), ("_num_outputs", i32, []), ("_num_dims", i32, []),
            ("_abi_version", i32, []),
            ("_input_name", ctypes.c_char_p, [i32]), ("_output_name", ctypes.c_char_p, [i32]),
            ("_dim_name", ctypes.c_char_p, [i32]),
            ("_input_dtype", i32, [i32]), ("_output_dtype", i32, [i32]),
            ("_input_rank", i32, [i32]), ("_output_rank", i32, [i32]),
            ("_input_shape", i32, [i32, p, p]), ("_output_shape", i32, [i32, p, p]),
            ("_dim_source", i32, [i32, p, p]), ("_workspace_size", i32, [p, p]),
            ("_check_dims", i32, [p]), ("_error_string", ctypes.c_char_p, [i32]),
            ("_input_dim", i64, [i32, i32]), ("_output_dim", i64, [i32, i32]),
            ("_input_shape_text", ctypes.c_char_p, [i32]), ("_output_shape_text", ctypes.c_char_p, [i32]),
        ):
            f = getattr(L, name + fn)
            f.restype = res
            f.argtypes = args
        self.n_in = L[name + "_num_inputs"]()
        self.n_out = L[name + "_num_outputs"]()
        self.n_dims = L[name + "_num_dims"]()
        self.inputs = [getattr(L, name + "_input_name")(i).decode() for i in range(self.n_in)]
        self.outputs = [getattr(L, name + "_output_name")(i).decode() for i in range(self.n_out)]

    @classmethod
    def build(cls, src: RenderedSource, workdir: str | Path, cc: str | None = None,
              flags: Sequence[str] = ("-O1",)) -> CLibrary:
        """Write ``NAME.c``/``NAME.h`` into ``workdir`` and build ``libNAME.so``."""
        if src.dialect != "c":
            raise ValueError("only C sources build into a host library")
        cc = cc or find_cc()
        if cc is None:
            raise RuntimeError("no C compiler found (set CC)")
        wd = Path(workdir)
        wd.mkdir(parents=True, exist_ok=True)
        (wd / f"{src.name}.c").write_text(src.source)
        (wd / f"{src.name}.h").write_text(src.header)
        lib = wd / f"lib{src.name}.so"
        cmd = [cc, "-std=c99", "-shared", "-fPIC", *flags, "-o", str(lib), str(wd / f"{src.name}.c"), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        return cls(lib, src.name)

    @classmethod
    def build_cuda_host(cls, src: RenderedSource, workdir: str | Path, shim: str | Path,
                        cxx: str = "g++", flags: Sequence[str] = ("-O1",)) -> CLibrary:
        """Build CUDA source for the CPU through the host shim header (device pointers are
        host pointers there); calls pass a NULL stream."""
        if src.dialect != "cuda":
            raise ValueError("expected CUDA source")
        wd = Path(workdir)
        wd.mkdir(parents=True, exist_ok=True)
        (wd / f"{src.name}.cu").write_text(src.source)
        (wd / f"{src.name}.h").write_text(src.header)
        lib = wd / f"lib{src.name}_host.so"
        cmd = [cxx, "-std=c++20", "-shared", "-fPIC", "-fno-strict-aliasing", *flags, "-include",
               str(shim), "-x", "c++", "-o", str(lib), str(wd / f"{src.name}.cu")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        out = cls(lib, src.name, cuda=True)
        out.lib[src.name + "_status"].restype = ctypes.c_int32
        out.lib[src.name + "_status"].argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        return out

    def fn(self, suffix: str) -> Any:
        return getattr(self.lib, self.name + suffix)

    def dims_for(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        dims = np.zeros(max(self.n_dims, 1), np.int64)
        for k in range(self.n_dims):
            pos, axis = ctypes.c_int32(), ctypes.c_int32()
            assert self.fn("_dim_source")(k, ctypes.byref(pos), ctypes.byref(axis)) == 0
            dims[k] = arrays[pos.value].shape[axis.value]
        return dims

    def call(self, arrays: Sequence[np.ndarray], dims: np.ndarray | None = None,
             outputs: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        """Run with ``arrays`` (converted to each input's dtype, C order)."""
        ins = []
        for i, a in enumerate(arrays):
            dt = NP_OF_CODE[self.fn("_input_dtype")(i)]
            ins.append(np.ascontiguousarray(np.asarray(a, dtype=dt)))
        if dims is None:
            dims = self.dims_for(ins)
        dims = np.ascontiguousarray(dims, dtype=np.int64)
        dptr = dims.ctypes.data_as(ctypes.c_void_p)
        rc = self.fn("_check_dims")(dptr)
        if rc != 0:
            raise ABIError(rc, self.fn("_error_string")(rc).decode())
        if outputs is None:
            outputs = []
            for i in range(self.n_out):
                rank = self.fn("_output_rank")(i)
                shape = np.zeros(max(rank, 1), np.int64)
                rc = self.fn("_output_shape")(i, dptr, shape.ctypes.data_as(ctypes.c_void_p))
                if rc != 0:
                    raise ABIError(rc, self.fn("_error_string")(rc).decode())
                dt = NP_OF_CODE[self.fn("_output_dtype")(i)]
                outputs.append(np.empty(tuple(int(s) for s in shape[:rank]), dt))
        nbytes = ctypes.c_int64()
        rc = self.fn("_workspace_size")(dptr, ctypes.byref(nbytes))
        if rc != 0:
            raise ABIError(rc, self.fn("_error_string")(rc).decode())
        ws = np.empty(nbytes.value + 64, np.uint8)
        base = ws.ctypes.data
        ws_ptr = base + (-base) % 64
        in_ptrs = (ctypes.c_void_p * max(len(ins), 1))(*[a.ctypes.data for a in ins])
        out_ptrs = (ctypes.c_void_p * max(len(outputs), 1))(*[o.ctypes.data for o in outputs])
        if self.cuda:
            rc = self.fn("")(in_ptrs, out_ptrs, dptr, ctypes.c_void_p(ws_ptr), None)
            if rc == 0:
                rc = self.fn("_status")(ctypes.c_void_p(ws_ptr), None)
        else:
            rc = self.fn("")(in_ptrs, out_ptrs, dptr, ctypes.c_void_p(ws_ptr))
        if rc != 0:
            raise ABIError(rc, self.fn("_error_string")(rc).decode())
        return list(outputs)

    def __call__(self, *args: np.ndarray, **kwargs: np.ndarray) -> list[np.ndarray]:
        arrays = list(args) + [kwargs[n] for n in self.inputs[len(args):]]
        return self.call(arrays)


__all__ = ["ABIError", "CLibrary", "find_cc"]
