"""Run-time sizes of a rendered program: names, checked evaluation, constraints.

Every symbolic size the kernels use (domain extents, strides, offsets, element and byte
counts) gets one variable. The host code computes them all once from ``dims`` with
overflow-checked arithmetic before anything runs, so a kernel only ever sees sizes that
are known to fit and to satisfy the graph's constraints.
"""

from __future__ import annotations

from dataclasses import dataclass

from symgrad.backends.cstyle.names import Mangler, comment_text
from symgrad.ir import shape as S
from symgrad.ir.shape import Dim, FloorDiv, Size


def int_literal(v: int) -> str:
    if -(2**31) < v < 2**31:
        return str(v)
    if v == -(2**63):
        return "(-9223372036854775807LL - 1)"
    return f"{v}LL"


@dataclass
class SizeVar:
    name: str
    value: Dim | FloorDiv
    code: str  # checked C expression over earlier variables (uses ``ovf``)
    extent: bool = False  # must be >= 0 (it is a shape or a domain size)


class SizeTable:
    """Variables for the symbolic sizes of one program, in dependency order."""

    def __init__(self, symbols: list[str]) -> None:
        self.symbols = list(symbols)
        self.mangler = Mangler()
        self.sym_var = {s: "d_" + self.mangler.mangle(s, "n") for s in symbols}
        self.vars: list[SizeVar] = []
        self._by_key: dict[object, SizeVar] = {}
        self.checks: list[tuple[str, str, str, str]] = []  # (lhs, rel, rhs, what)
        self._check_keys: set[tuple[str, str, str]] = set()

    # -- references ------------------------------------------------------------------------
    def ref(self, s: Size, extent: bool = False) -> str:
        """An expression of ``s``: a literal or a variable name."""
        if isinstance(s, int):
            return int_literal(s)
        if s.is_symbol():
            sym = s.terms[0][0][0]
            assert isinstance(sym, str)
            if sym not in self.sym_var:
                raise KeyError(f"size symbol {sym!r} is not among the program's dims")
            return self.sym_var[sym]
        var = self._by_key.get(s)
        if var is None:
            code = self._poly(s)
            var = SizeVar(f"e{len(self.vars)}", s, code)
            self._by_key[s] = var
            self.vars.append(var)
        if extent:
            var.extent = True
        return var.name

    def _atom(self, a: str | FloorDiv) -> str:
        if isinstance(a, str):
            return self.ref(Dim.symbol(a))
        var = self._by_key.get(a)
        if var is None:
            num = self.ref(a.num)
            var = SizeVar(f"e{len(self.vars)}", a, f"sg_floordiv({num}, {int_literal(a.den)})")
            self._by_key[a] = var
            self.vars.append(var)
        return var.name

    def _poly(self, d: Dim) -> str:
        total = ""
        for mono, coeff in d.terms:
            term = ""
            for a in mono:
                x = self._atom(a)
                term = x if not term else f"sg_ck_mul({term}, {x}, &ovf)"
            if coeff != 1 or not term:
                term = int_literal(coeff) if not term else f"sg_ck_mul({int_literal(coeff)}, {term}, &ovf)"
            total = term if not total else f"sg_ck_add({total}, {term}, &ovf)"
        return total

    def product(self, sizes: tuple[Size, ...] | list[Size], extent: bool = True) -> str:
        return self.ref(S.prod(tuple(sizes)), extent=extent)

    def check(self, rel: str, a: Size, b: Size, what: str) -> None:
        """A constraint ``a rel b`` the dims must satisfy (``==`` or ``<=``)."""
        if isinstance(a, int) and isinstance(b, int):
            return
        key = (rel, self.ref(a), self.ref(b))
        if key in self._check_keys:
            return
        self._check_keys.add(key)
        self.checks.append((key[1], rel, key[2], what))

    # -- host code -------------------------------------------------------------------------
    def comment(self, var: SizeVar) -> str:
        return f"/* {comment_text(str(var.value))} */"


__all__ = ["SizeTable", "SizeVar", "int_literal"]
