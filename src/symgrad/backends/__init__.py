"""Backends: the protocol, the registry, and the built-in backends."""

from symgrad.backends.base import BACKENDS, Backend, Program, get_backend, register_backend


def _numpy() -> Backend:
    from symgrad.backends.numpy import NumpyBackend

    return NumpyBackend()


register_backend("numpy", _numpy)

__all__ = ["BACKENDS", "Backend", "Program", "get_backend", "register_backend"]
