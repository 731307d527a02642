"""The two C-style languages: portable C99 and CUDA C++.

A :class:`Dialect` is data: type names, qualifiers, literals for non-finite values, the
text of the helper functions every kernel may call, and the launch parameters of the
GPU schedules. The renderer (:mod:`symgrad.backends.cstyle.render`) reads these tables;
adding a third C-like language means writing a third table, not new control flow.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Dialect:
    """Everything that differs between the C-like languages symgrad writes.

    Attributes
    ----------
    name : ``"c"`` or ``"cuda"``.
    types : dtype name -> scalar type in generated code (``bool`` is one byte, 0 or 1).
    unsigned : dtype name -> unsigned type of the same width (wrapping integer arithmetic).
    index : the signed 64-bit type of loop indices and sizes.
    helper : qualifiers of scalar helper functions.
    kernel : qualifiers and return type of a kernel function.
    restrict : the ``restrict`` spelling.
    parallel : whether kernels run on a grid of threads (CUDA) or as plain loops (C).
    inf, nan : dtype -> expression of +inf / NaN usable inside a function body.
    block : threads per block of elementwise and reduction kernels.
    tile : the side of the square tiles of the matrix-product kernel.
    max_grid : most blocks along grid x (grid-stride loops cover the rest).
    serial_reduce_max : a reduction over at most this many elements (static) is done by
        one thread per output point instead of one block per output point.
    """

    name: str
    types: dict[str, str]
    unsigned: dict[str, str]
    index: str
    helper: str
    kernel: str
    restrict: str
    parallel: bool
    inf: dict[str, str]
    nan: dict[str, str]
    block: int = 256
    tile: int = 16
    max_grid: int = 65535
    serial_reduce_max: int = 64
    includes: tuple[str, ...] = field(default_factory=tuple)

    def ctype(self, dtype: str) -> str:
        return self.types[dtype]


C99 = Dialect(
    name="c",
    types={"float32": "float", "float64": "double", "int32": "int32_t", "int64": "int64_t",
           "bool": "uint8_t"},
    unsigned={"int32": "uint32_t", "int64": "uint64_t", "bool": "uint8_t"},
    index="int64_t",
    helper="static inline",
    kernel="static void",
    restrict="restrict",
    parallel=False,
    inf={"float32": "INFINITY", "float64": "((double)INFINITY)"},
    nan={"float32": "NAN", "float64": "((double)NAN)"},
    includes=("<math.h>", "<stddef.h>", "<stdint.h>", "<string.h>"),
)

CUDA = Dialect(
    name="cuda",
    types={"float32": "float", "float64": "double", "int32": "int", "int64": "long long",
           "bool": "unsigned char"},
    unsigned={"int32": "unsigned int", "int64": "unsigned long long", "bool": "unsigned char"},
    index="long long",
    helper="static __device__ __forceinline__",
    kernel='extern "C" __global__ void',
    restrict="__restrict__",
    parallel=True,
    inf={"float32": "sg_bits_f32(0x7f800000u)", "float64": "sg_bits_f64(0x7ff0000000000000ull)"},
    nan={"float32": "sg_bits_f32(0x7fc00000u)", "float64": "sg_bits_f64(0x7ff8000000000000ull)"},
)

DIALECTS = {"c": C99, "cuda": CUDA}

__all__ = ["C99", "CUDA", "DIALECTS", "Dialect"]
