"""The backend protocol, the registry, and what every backend is handed.

A backend turns a :class:`Program` (the optimized graph plus how to read each symbolic
size from the inputs) into a callable ``impl(*arrays) -> tuple of arrays`` and the
source it generated. Input checking, casting and size binding happen once, above the
backends, in :mod:`symgrad.compile`.
"""

from __future__ import annotations

import builtins
import gc
import keyword
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from symgrad.ir.graph import toposort
from symgrad.ir.shape import Dim, FloorDiv, Size
from symgrad.ir.tensor import Tensor


@dataclass
class Program:
    """What a backend compiles: inputs, outputs, and where each size symbol is read."""

    inputs: list[Tensor]
    outputs: list[Tensor]
    # symbol -> (input position, axis)
    size_sources: dict[str, tuple[int, int]]

    _nodes: list[Tensor] | None = None

    @property
    def nodes(self) -> list[Tensor]:
        """The program's nodes, inputs first (computed once)."""
        if self._nodes is None:
            self._nodes = toposort(self.outputs)
        return self._nodes


class Built(Protocol):
    source: str

    def __call__(self, *arrays: Any) -> tuple[Any, ...]: ...


class Backend(Protocol):
    name: str

    def build(self, program: Program) -> Built: ...


BACKENDS: dict[str, Callable[[], Backend]] = {}
_eps_loaded = False


def register_backend(name: str, factory: Callable[[], Backend]) -> None:
    if name in BACKENDS and BACKENDS[name] is not factory:
        raise ValueError(f"backend {name!r} is registered twice")
    BACKENDS[name] = factory


def get_backend(name: str) -> Backend:
    global _eps_loaded
    if not _eps_loaded:
        _eps_loaded = True
        for ep in metadata.entry_points(group="symgrad.backends"):
            if ep.name in BACKENDS:
                raise ValueError(f"backend {ep.name!r} from entry point {ep.value} clashes "
                                 "with a built-in backend")
            BACKENDS[ep.name] = ep.load()
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(sorted(BACKENDS))}")
    return BACKENDS[name]()


# -- on-disk caches --------------------------------------------------------------------------
def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one,
    never a partial one (temp file in the same folder, then ``os.replace``). Two
    processes writing the same entry both succeed. Raises ``OSError`` on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# -- names in generated code ----------------------------------------------------------------
_RESERVED = set(keyword.kwlist) | set(keyword.softkwlist) | set(dir(builtins)) | {"np", "self"}


class Namer:
    """Deterministic, collision-free identifiers for generated code.

    Anything a user chose (placeholder names, size names) is reduced to
    ``[A-Za-z0-9_]`` before use, never starts with ``_`` (reserved for generated
    helpers) and never equals a keyword, builtin or another name in the scope.
    """

    def __init__(self, reserved: Sequence[str] = ()) -> None:
        self.used: set[str] = set(_RESERVED) | set(reserved)

    def fresh(self, base: str) -> str:
        ident = re.sub(r"\W", "_", base, flags=re.ASCII).strip("_") or "v"
        if ident[0].isdigit():
            ident = "v" + ident
        name = ident
        k = 1
        while name in self.used:
            name = f"{ident}_{k}"
            k += 1
        self.used.add(name)
        return name


def size_expr(size: Size, names: dict[str, str]) -> str:
    """A size as an expression over the variables that hold the size symbols."""
    if isinstance(size, int):
        return str(size)
    parts = []
    for mono, coeff in size.terms:
        factors = [names[a] if isinstance(a, str) else _floordiv_expr(a, names) for a in mono]
        if coeff != 1 or not factors:
            factors.insert(0, str(coeff))
        parts.append(" * ".join(factors))
    return "(" + " + ".join(parts) + ")"


def _floordiv_expr(a: FloorDiv, names: dict[str, str]) -> str:
    return f"({size_expr(a.num, names)} // {a.den})"


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cycle collector paused: compiling a large program allocates hundreds of
    thousands of long-lived objects (graph, kernels, llvmlite IR), and the collector's
    full passes over them took about a fifth of the compile time of a long chain."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


__all__ = ["BACKENDS", "Backend", "Built", "Dim", "Namer", "Program", "atomic_write", "gc_paused",
           "get_backend", "register_backend", "size_expr"]
