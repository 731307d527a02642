"""The lowered kernel form shared by the native code generators.

``lower(program)`` decomposes composite ops, fuses the graph into kernels (see
:mod:`.fusion`), gives every kernel strided index maps and a scalar body (see
:mod:`.build`) and plans buffer reuse (see :mod:`.memory`). The result, a
:class:`LoweredProgram`, prints as readable text (``program.text()``); code generators
read its objects (:mod:`.kernel`) and never the graph.
"""

from symgrad.backends.lower.build import blas_layout, lower
from symgrad.backends.lower.fusion import MAX_GROUP_NODES, Partition, partition
from symgrad.backends.lower.kernel import (
    ITEMSIZE,
    Access,
    Buffer,
    BufferPlan,
    Instr,
    Kernel,
    LibCall,
    LoopKernel,
    LoweredProgram,
    Reduction,
    Store,
    contiguous_strides,
)

__all__ = [
    "ITEMSIZE",
    "MAX_GROUP_NODES",
    "Access",
    "Buffer",
    "BufferPlan",
    "Instr",
    "Kernel",
    "LibCall",
    "LoopKernel",
    "LoweredProgram",
    "Partition",
    "Reduction",
    "Store",
    "blas_layout",
    "contiguous_strides",
    "lower",
    "partition",
]
