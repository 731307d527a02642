"""Errors of the CUDA backend: a missing piece, a failed compile, a failed launch."""

from __future__ import annotations

from symgrad.errors import SymgradError

INSTALL_HINT = "pip install 'symgrad[cuda]'"


class CudaUnavailableError(SymgradError, RuntimeError):
    """A piece the CUDA backend needs (NVRTC, the bindings, a driver, a GPU) is missing.

    ``missing`` names the piece: ``cuda-bindings``, ``nvrtc``, ``driver`` or ``device``.
    """

    def __init__(self, missing: str, message: str) -> None:
        super().__init__(message)
        self.missing = missing


class NvrtcError(SymgradError, RuntimeError):
    """NVRTC rejected a source; the message holds its log and the lines it points at."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log


class CudaDriverError(SymgradError, RuntimeError):
    """A CUDA driver call failed; the message names the call and the driver's error."""


class ShimError(SymgradError, RuntimeError):
    """Building or running CUDA source on the CPU through shim.h failed."""
