"""The ``cuda`` backend: lowered program -> CUDA C++ -> NVRTC cubin -> launches.

``sg.compile(..., backend="cuda")`` lowers the optimized graph to kernels (the same
fusion and buffer plan as the LLVM backend), renders them as CUDA C++ with the C-style
renderer's CUDA dialect, compiles the source with NVRTC to a cubin for the GPU's exact
architecture (PTX as a fallback; both cached on disk) and runs the launches the renderer
planned through the driver API.

Inputs may be NumPy arrays (copied to the device) or device arrays (CuPy, PyTorch, Numba,
anything with ``__cuda_array_interface__`` or DLPack; used in place). Outputs come back as
NumPy arrays, or stay on the device as :class:`DeviceArray` (``__cuda_array_interface__``,
so ``cupy.asarray``/``torch.as_tensor`` take them without a copy) when an input was a
device array, or always with ``SYMGRAD_CUDA_OUTPUTS=device``.

Where the pieces are: ``SYMGRAD_CUDA_DEVICE`` (or ``CudaBackend(device=...)``) picks the
device: ``gpu`` (the default; ``gpu:1`` or ``1`` for another ordinal) or ``shim``, which
runs the same source on the CPU through shim.h (slow, for testing). On a machine without
NVRTC or without a driver, ``build`` raises :class:`CudaUnavailableError` saying which
piece is missing and how to install it; :meth:`CudaBackend.render` (CUDA source, no device
needed) still works there.
"""

from __future__ import annotations

import os
from typing import Any

from symgrad.backends.base import Program
from symgrad.backends.cuda import nvrtc
from symgrad.backends.cuda.device import Device
from symgrad.backends.cuda.errors import CudaUnavailableError
from symgrad.backends.cuda.runtime import OUTPUT_MODES, CudaFunction

PROGRAM_NAME = "symgrad"


def parse_device(spec: str) -> tuple[str, int]:
    """``("gpu", ordinal)`` or ``("shim", 0)`` from ``gpu``, ``gpu:1``, ``1`` or ``shim``."""
    s = spec.strip().lower()
    if s in ("shim", "host", "cpu-shim"):
        return "shim", 0
    if s in ("", "gpu", "cuda"):
        return "gpu", 0
    for prefix in ("gpu:", "cuda:"):
        if s.startswith(prefix):
            s = s[len(prefix):]
    if s.isdigit():
        return "gpu", int(s)
    raise ValueError(f"unknown CUDA device {spec!r}: use 'gpu', 'gpu:N' or 'shim'")


def check_gpu_available() -> None:
    """Raise :class:`CudaUnavailableError` naming every missing piece (NVRTC, the
    bindings, a driver, a GPU) and how to get each; return if all are there."""
    from symgrad.backends.cuda.driver import load_driver

    problems: list[tuple[str, str]] = []
    try:
        nvrtc.load_nvrtc()
    except CudaUnavailableError as e:
        problems.append((e.missing, str(e)))
    if not any(m == "cuda-bindings" for m, _ in problems):
        try:
            load_driver()
        except CudaUnavailableError as e:
            problems.append((e.missing, str(e)))
    if not problems:
        return
    missing = ", ".join(m for m, _ in problems)
    lines = "\n".join(f"  - {m}: {text}" for m, text in problems)
    raise CudaUnavailableError(
        problems[0][0],
        f"backend 'cuda' cannot run here; missing: {missing}\n{lines}\n"
        "CUDA source can still be generated and checked without them: sg.emit(..., "
        "target='cuda'), symgrad.backends.cuda.render(program), SYMGRAD_CUDA_DEVICE=shim "
        "(runs the same source on the CPU).")


def render(program: Program, name: str = PROGRAM_NAME) -> tuple[Any, Any]:
    """The lowered program and its CUDA rendering (needs neither NVRTC nor a GPU)."""
    from symgrad.backends.cstyle.render import empty_reductions, render_program
    from symgrad.backends.lower import lower

    lp = lower(program, backend="cuda")
    return lp, render_program(lp, dialect="cuda", name=name, reductions=empty_reductions(program.nodes))


class CudaBackend:
    """CUDA kernels compiled with NVRTC at run time (see the module docstring).

    Parameters
    ----------
    device : ``"gpu"``, ``"gpu:N"``, ``"shim"`` or None for ``$SYMGRAD_CUDA_DEVICE``
        (default ``gpu``).
    outputs : ``"auto"`` (NumPy arrays, or device arrays when some input was a device
        array), ``"host"`` or ``"device"``; None for ``$SYMGRAD_CUDA_OUTPUTS`` (default
        ``auto``), which is how ``sg.compile(..., backend="cuda")`` chooses.
    """

    name = "cuda"

    def __init__(self, device: str | None = None, outputs: str | None = None) -> None:
        if outputs is None:
            outputs = os.environ.get("SYMGRAD_CUDA_OUTPUTS", "auto").strip().lower() or "auto"
        if outputs not in OUTPUT_MODES:
            raise ValueError(f"outputs must be one of {OUTPUT_MODES}, got {outputs!r}")
        self.device_spec = device if device is not None else os.environ.get("SYMGRAD_CUDA_DEVICE", "gpu")
        self.kind, self.ordinal = parse_device(self.device_spec)
        self.outputs = outputs

    def device(self) -> Device:
        if self.kind == "shim":
            from symgrad.backends.cuda.hostshim import shim_device

            return shim_device()
        check_gpu_available()
        from symgrad.backends.cuda.driver import gpu_device

        return gpu_device(self.ordinal)

    def render(self, program: Program) -> tuple[Any, Any]:
        return render(program)

    def build(self, program: Program) -> CudaFunction:
        device = self.device()
        lp, rendered = render(program)
        return CudaFunction(lp, rendered, device, self.outputs, program=program)
