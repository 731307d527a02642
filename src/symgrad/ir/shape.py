"""Shapes whose sizes may be symbolic.

A size is an ``int`` or a :class:`Dim`: a polynomial with integer coefficients over named
size symbols (and opaque ``floordiv`` atoms for the sizes convolutions produce). ``None``
in a placeholder's shape becomes a fresh symbol; a string names a symbol, so two
placeholders that share ``"batch"`` must agree at call time. A :class:`Dim` that reduces
to a constant is always returned as a plain ``int``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Union

import numpy as np

Atom = Union[str, "FloorDiv"]
Monomial = tuple[Atom, ...]


@dataclass(frozen=True)
class FloorDiv:
    """``num // den`` that does not divide exactly; acts as a symbol in polynomials."""

    num: Dim
    den: int

    def __str__(self) -> str:
        return f"({self.num})//{self.den}"


def _atom_key(a: Atom) -> tuple[int, str]:
    return (0, a) if isinstance(a, str) else (1, str(a))


@dataclass(frozen=True)
class Dim:
    """A symbolic size: ``sum(coeff * prod(atoms))`` in a canonical order."""

    terms: tuple[tuple[Monomial, int], ...]

    @staticmethod
    def symbol(name: str) -> Dim:
        return Dim((((name,), 1),))

    @staticmethod
    def make(terms: Mapping[Monomial, int]) -> Size:
        items = sorted(
            ((m, c) for m, c in terms.items() if c != 0),
            key=lambda mc: [_atom_key(a) for a in mc[0]],
        )
        if not items:
            return 0
        if len(items) == 1 and items[0][0] == ():
            return items[0][1]
        return Dim(tuple(items))

    def as_terms(self) -> dict[Monomial, int]:
        return dict(self.terms)

    @property
    def symbols(self) -> frozenset[str]:
        out: set[str] = set()
        for mono, _ in self.terms:
            for a in mono:
                if isinstance(a, str):
                    out.add(a)
                else:
                    out |= a.num.symbols
        return frozenset(out)

    def is_symbol(self) -> bool:
        return len(self.terms) == 1 and self.terms[0][1] == 1 and len(self.terms[0][0]) == 1 \
            and isinstance(self.terms[0][0][0], str)

    def evaluate(self, env: Mapping[str, int]) -> int:
        total = 0
        for mono, coeff in self.terms:
            v = coeff
            for a in mono:
                v *= env[a] if isinstance(a, str) else evaluate(a.num, env) // a.den
            total += v
        return total

    def __str__(self) -> str:
        parts = []
        for mono, coeff in self.terms:
            factors = [str(a) for a in mono]
            if coeff != 1 or not factors:
                factors.insert(0, str(coeff))
            parts.append("*".join(factors))
        return "+".join(parts).replace("+-", "-")

    __repr__ = __str__

    # With another size (an int or a Dim) the arithmetic is on sizes; with anything else
    # (a float, an array, a tensor) the size is a scalar value read at call time, and the
    # result a tensor, as for ``x.shape[0] * 2.0`` or ``1 / x.shape[0]``.
    def __add__(self, other: Any) -> Any:
        o = _size_of(other)
        return _api().add(self, other) if o is None else add(self, o)

    def __radd__(self, other: Any) -> Any:
        o = _size_of(other)
        return _api().add(other, self) if o is None else add(o, self)

    def __mul__(self, other: Any) -> Any:
        o = _size_of(other)
        return _api().mul(self, other) if o is None else mul(self, o)

    def __rmul__(self, other: Any) -> Any:
        o = _size_of(other)
        return _api().mul(other, self) if o is None else mul(o, self)

    def __sub__(self, other: Any) -> Any:
        o = _size_of(other)
        return _api().sub(self, other) if o is None else sub(self, o)

    def __rsub__(self, other: Any) -> Any:
        o = _size_of(other)
        return _api().sub(other, self) if o is None else sub(o, self)

    def __neg__(self) -> Size:
        return neg(self)

    def __floordiv__(self, other: int) -> Size:
        if not isinstance(other, (int, np.integer)) or isinstance(other, (bool, np.bool_)) or other <= 0:
            raise TypeError(f"a symbolic size can be floor-divided by a positive int only, got "
                            f"{self} // {other!r}")
        return floordiv(self, int(other))

    def __truediv__(self, other: Any) -> Any:
        return _api().div(self, other)

    def __rtruediv__(self, other: Any) -> Any:
        return _api().div(other, self)

    def __pow__(self, other: Any) -> Any:
        return _api().pow(self, other)


def _size_of(v: Any) -> Size | None:
    """``v`` as a size when it is one (an int or a Dim), else None."""
    if isinstance(v, Dim):
        return v
    if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
        return int(v)
    return None


def _api() -> Any:
    from symgrad.ops import api  # tensors of sizes are built by the ops, as Tensor's operators are

    return api


Size = int | Dim
Shape = tuple[Size, ...]


def _terms(a: Size) -> dict[Monomial, int]:
    return {(): a} if isinstance(a, int) else a.as_terms()


def add(a: Size, b: Size) -> Size:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    t = _terms(a)
    for m, c in _terms(b).items():
        t[m] = t.get(m, 0) + c
    return Dim.make(t)


def neg(a: Size) -> Size:
    return mul(a, -1)


def sub(a: Size, b: Size) -> Size:
    return add(a, neg(b))


def mul(a: Size, b: Size) -> Size:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    out: dict[Monomial, int] = {}
    for ma, ca in _terms(a).items():
        for mb, cb in _terms(b).items():
            m = tuple(sorted(ma + mb, key=_atom_key))
            out[m] = out.get(m, 0) + ca * cb
    return Dim.make(out)


def floordiv(a: Size, b: int) -> Size:
    if b <= 0:
        raise ValueError("size divisor must be positive")
    if isinstance(a, int):
        return a // b
    t = a.as_terms()
    if all(c % b == 0 for c in t.values()):
        return Dim.make({m: c // b for m, c in t.items()})
    return Dim.make({(FloorDiv(a, b),): 1})


def exact_div(a: Size, b: Size) -> Size | None:
    """``a / b`` when it is a polynomial, else ``None``."""
    if isinstance(b, int):
        if b == 0:
            return None
        if isinstance(a, int):
            return a // b if a % b == 0 else None
        t = a.as_terms()
        if all(c % b == 0 for c in t.values()):
            return Dim.make({m: c // b for m, c in t.items()})
        return None
    # divide by a single monomial term
    if len(b.terms) != 1:
        return a if a == b else None
    (mb, cb), = b.terms
    out: dict[Monomial, int] = {}
    for ma, ca in _terms(a).items():
        rest = list(ma)
        for atom in mb:
            if atom not in rest:
                return None
            rest.remove(atom)
        if ca % cb:
            return None
        out[tuple(rest)] = out.get(tuple(rest), 0) + ca // cb
    return Dim.make(out)


def prod(sizes: tuple[Size, ...] | list[Size]) -> Size:
    out: Size = 1
    for s in sizes:
        out = mul(out, s)
    return out


def evaluate(a: Size, env: Mapping[str, int]) -> int:
    return a if isinstance(a, int) else a.evaluate(env)


def symbols_of(shape: Shape) -> frozenset[str]:
    out: frozenset[str] = frozenset()
    for s in shape:
        if isinstance(s, Dim):
            out |= s.symbols
    return out


def is_static(shape: Shape) -> bool:
    return all(isinstance(s, int) for s in shape)


def shape_str(shape: Shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
