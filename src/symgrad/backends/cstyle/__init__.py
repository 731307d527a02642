"""C-style source from the lowered kernel form: portable C99 and CUDA.

The one entry point is :func:`render_program`::

    from symgrad.backends.lower import lower
    from symgrad.backends.cstyle import render_program

    src = render_program(lower(program), dialect="cuda", name="mlp_step",
                         input_names=[...], output_names=[...])
    src.source          # NAME.c / NAME.cu: kernels + host code implementing the C ABI
    src.header          # NAME.h: the ABI (docs/abi.md)
    src.device_source   # CUDA: kernels and helpers only, no #include (NVRTC input)
    src.kernels         # generated kernel function names, in run order
    src.launches        # CUDA: Launch(kernel, origin, params, block, grid, uses_sync)
    src.regions         # workspace regions; src.workspace_layout(env) -> (offsets, total)

A CUDA :class:`Launch` is everything needed to run one kernel from Python: its
``extern "C"`` name, ``grid_for(env)`` (env: size symbol -> value), ``block``, and its
parameters in order (:class:`KernelParam`): ``size`` (a ``long long`` value,
``S.evaluate(param.size, env)``), ``buffer`` (a device pointer to ``param.buffer``'s
elements; temporaries may live anywhere, e.g. at their region's offset of a workspace
laid out by ``workspace_layout``), ``error`` (a device ``int32`` set to 0 before the
first launch; nonzero afterwards means an ABI error code, e.g. 5 for an index out of
range) and ``partials`` (``param.nbytes`` bytes of device scratch, reusable by every
launch). Kernels with ``uses_sync`` need one fiber per thread under the host shim.
Constants are ``__device__`` arrays inside the source, not parameters.
"""

from symgrad.backends.cstyle.dialect import C99, CUDA, DIALECTS, Dialect
from symgrad.backends.cstyle.render import (
    ABI_VERSION,
    DTYPE_CODES,
    ERROR_CODES,
    GridDim,
    KernelParam,
    Launch,
    Region,
    RenderedSource,
    render_frame_glue,
    render_program,
)
from symgrad.backends.cstyle.scalar import SUPPORTED_OPS

__all__ = [
    "ABI_VERSION",
    "C99",
    "CUDA",
    "DIALECTS",
    "DTYPE_CODES",
    "ERROR_CODES",
    "Dialect",
    "GridDim",
    "KernelParam",
    "Launch",
    "Region",
    "RenderedSource",
    "SUPPORTED_OPS",
    "render_frame_glue",
    "render_program",
]
