"""The LLVM backend: fused, vectorized, multi-threaded CPU kernels through llvmlite.

``build(program)`` lowers the program to kernels (:mod:`symgrad.backends.lower`),
generates LLVM IR for them (:mod:`.codegen`), optimizes it for the host CPU and loads the
object code (:mod:`.jit`, with the compile cache), and returns a callable
(:mod:`.runtime`). Ops it cannot compile are reported together at build time, each with
the line that built it; nothing is ever run on another backend behind the user's back.
"""

from __future__ import annotations

import os

from symgrad.backends.base import Program, gc_paused
from symgrad.backends.llvm import fastcall, jit
from symgrad.backends.llvm.codegen import SUPPORTED_OPS, Codegen, module_info, module_parts
from symgrad.backends.llvm.jit import cache_stats, clear_memory_cache
from symgrad.backends.llvm.runtime import EmptyReduction, LLVMFunction, num_threads
from symgrad.backends.lower import lower

BACKEND_VERSION = "1"


class LLVMBackend:
    name = "llvm"

    def build(self, program: Program) -> LLVMFunction:
        with gc_paused():
            return self._build(program)

    def _build(self, program: Program) -> LLVMFunction:
        lp = lower(program, backend="llvm", elementwise=SUPPORTED_OPS)
        bounds = os.environ.get("SYMGRAD_LLVM_CHECK_BOUNDS", "") not in ("", "0")
        key = jit.cache_key(f"llvm backend {BACKEND_VERSION} bounds={bounds} "
                            f"fast={fastcall.available()}\n" + lp.text())
        ir_texts: list[str] = []

        def build_objects() -> list[bytes]:
            tm = jit.target_machine()
            cg = Codegen(lp, jit.process_triple(), str(tm.target_data),
                         module_parts(lp, num_threads()), bounds, blas_threads=jit.blas_threads())
            # each module goes to LLVM as soon as it is generated
            objs = jit.optimize_to_objects(cg.iter_texts(), cg.parts, num_threads())
            ir_texts.extend(cg.texts)
            return objs

        engine, how = jit.load(key, build_objects)
        return LLVMFunction(lp, engine, module_info(lp), how,
                            "\n".join(ir_texts) if ir_texts else None,
                            EmptyReduction.of(program, lp.symbols))


__all__ = ["BACKEND_VERSION", "LLVMBackend", "LLVMFunction", "cache_stats", "clear_memory_cache",
           "num_threads"]
