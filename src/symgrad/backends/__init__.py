"""Backends: the protocol, the registry, and the built-in backends."""

from symgrad.backends.base import BACKENDS, Backend, Program, get_backend, register_backend


def _numpy() -> Backend:
    from symgrad.backends.numpy import NumpyBackend

    return NumpyBackend()


def _llvm() -> Backend:
    from symgrad.backends.llvm import LLVMBackend

    return LLVMBackend()


def _cuda() -> Backend:
    from symgrad.backends.cuda import CudaBackend

    return CudaBackend()


register_backend("numpy", _numpy)
register_backend("llvm", _llvm)
register_backend("cuda", _cuda)

__all__ = ["BACKENDS", "Backend", "Program", "get_backend", "register_backend"]
