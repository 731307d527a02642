"""Reading the text form back into a graph: the inverse of :func:`symgrad.ir.graph.to_text`.

Each line ``%k = op[attrs](%i, %j) : dtype[sizes]`` is rebuilt through the op's own
constructor, so shape rules run again and the recorded type is checked; nodes are
hash-consed, so parsing the text of a live graph returns the very same nodes. Lines
starting with ``#`` and blank lines are skipped (reproducer files start with comments).

Constants with up to 8 elements print their values exactly and parse back bit for bit.
Larger ones print as ``<float32[784, 512] #1a2b3c4d>``; pass their arrays in
``constants`` (see :func:`constants_of`). Size symbols must be names made of letters,
digits, ``_`` and ``.`` (``x.0``, ``batch``), which is what placeholders give unless the
user picked an unusual name.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from symgrad.errors import SymgradError
from symgrad.ir import shape as S
from symgrad.ir.dtypes import DTYPES
from symgrad.ir.graph import toposort
from symgrad.ir.shape import Dim, Size
from symgrad.ir.tensor import ConstData, Tensor


class ParseError(SymgradError, ValueError):
    """The text is not a graph in symgrad's text form (the message names the line)."""


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<ref>%\d+)
    |(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<float>(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)
    |(?P<int>\d+)
    |(?P<name>[A-Za-z_][\w.]*)
    |(?P<punct>//|[=\[\](),:*+\-])
    """,
    re.X,
)
_CONST_LINE = re.compile(r"^%(\d+) = constant\[value=(.*)\]\(\) : (\w+)\[(.*)\]$")
_BIG_CONST = re.compile(r"^<(\w+)\[(.*)\] #([0-9a-f]+)>$")
_SPECIAL_FLOAT = re.compile(r"(?<![\w.'])(-?)(nan|inf)(?![\w.'])")


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"unexpected character {text[pos]!r} at column {pos + 1}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
        pos = m.end()
    return out


class _Reader:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self, k: int = 0) -> tuple[str, str]:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else ("end", "")

    def next(self) -> tuple[str, str]:
        tok = self.peek()
        if tok[0] == "end":
            raise ValueError("unexpected end of line")
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.peek()[1] == text and self.peek()[0] == "punct":
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> None:
        if not self.accept(text):
            raise ValueError(f"expected {text!r}, found {self.peek()[1] or 'end of line'!r}")

    def at_end(self) -> bool:
        return self.i >= len(self.toks)

    # -- sizes: int | symbol | (expr)//int, with + - * ------------------------------------------
    def size(self) -> Size:
        negative = self.accept("-")
        out = self._term()
        if negative:
            out = S.neg(out)
        while self.peek() in (("punct", "+"), ("punct", "-")):
            sign = self.next()[1]
            term = self._term()
            out = S.add(out, term) if sign == "+" else S.sub(out, term)
        return out

    def _term(self) -> Size:
        out = self._factor()
        while self.accept("*"):
            out = S.mul(out, self._factor())
        return out

    def _factor(self) -> Size:
        kind, text = self.next()
        if kind == "int":
            return int(text)
        if kind == "name":
            return Dim.symbol(text)
        if text == "(":
            num = self.size()
            self.expect(")")
            self.expect("//")
            kind, den = self.next()
            if kind != "int":
                raise ValueError(f"expected an integer divisor, found {den!r}")
            return S.floordiv(num, int(den))
        raise ValueError(f"expected a size, found {text!r}")

    def sizes(self, close: str) -> tuple[Size, ...]:
        """Sizes separated by commas up to ``close`` (or the end, for ``""``)."""
        out: list[Size] = []
        while not (self.at_end() if close == "" else self.accept(close)):
            out.append(self.size())
            if not self.accept(","):
                if close:
                    self.expect(close)
                elif not self.at_end():
                    raise ValueError(f"unexpected {self.peek()[1]!r} in a shape")
                break
        return tuple(out)

    # -- attribute values ----------------------------------------------------------------------
    def _paren_is_floordiv(self) -> bool:
        depth = 0
        for k in range(self.i, len(self.toks)):
            text = self.toks[k][1]
            if self.toks[k][0] != "punct":
                continue
            if text == "(":
                depth += 1
            elif text == ")":
                depth -= 1
                if depth == 0:
                    return self.peek(k + 1 - self.i) == ("punct", "//")
        return False

    def value(self) -> Any:
        kind, text = self.peek()
        if kind == "punct" and text == "(":
            if self._paren_is_floordiv():
                return self.size()
            self.next()
            items = []
            while not self.accept(")"):
                items.append(self.value())
                if not self.accept(","):
                    self.expect(")")
                    break
            return tuple(items)
        if kind == "str":
            self.next()
            return ast.literal_eval(text)
        if kind == "name" and text in ("True", "False", "None"):
            self.next()
            return {"True": True, "False": False, "None": None}[text]
        if kind == "name" and text in ("inf", "nan"):
            self.next()
            return float(text)
        if kind == "float":
            self.next()
            return float(text)
        if kind == "punct" and text == "-" and self.peek(1)[0] == "float":
            self.next()
            return -float(self.next()[1])
        return self.size()


def _const_value(text: str, dtype: str, shape: tuple[Size, ...],
                 constants: Mapping[str, Any]) -> np.ndarray:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}")
    big = _BIG_CONST.match(text)
    if big:
        digest = big.group(3)
        for key, arr in constants.items():
            if key.startswith(digest) or digest.startswith(key):
                a = np.asarray(arr)
                if a.dtype.name != dtype or a.shape != shape:
                    raise ValueError(f"constant #{digest}: the array given is {a.dtype}{a.shape}, "
                                     f"the text says {dtype}{list(shape)}")
                return a
        raise ValueError(f"large constant #{digest} is not printed in full; pass its array "
                         "in constants= (see symgrad.ir.parse.constants_of)")
    literal = ast.literal_eval(_SPECIAL_FLOAT.sub(lambda m: f"'{m.group(1)}{m.group(2)}'", text))
    arr = np.array(literal, dtype=object).astype(DTYPES[dtype])
    if arr.shape != shape:
        raise ValueError(f"constant value has shape {arr.shape}, the type says {list(shape)}")
    return arr


def parse_text(text: str, constants: Mapping[str, Any] | None = None) -> list[Tensor]:
    """Rebuild the graph that :func:`~symgrad.ir.graph.to_text` printed; return its outputs.

    ``constants`` maps digests (or digest prefixes, as printed after ``#``) to the arrays of
    constants too large to print.
    """
    from symgrad.ops.base import OPS

    nodes: dict[str, Tensor] = {}
    outputs: list[Tensor] | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if outputs is not None:
                raise ValueError("text after the return line")
            if line.startswith("return"):
                rd = _Reader(line[len("return"):])
                outputs = []
                while not rd.at_end():
                    kind, ref = rd.next()
                    if kind != "ref" or ref not in nodes:
                        raise ValueError(f"unknown value {ref!r}")
                    outputs.append(nodes[ref])
                    if not rd.at_end():
                        rd.expect(",")
                continue
            m = _CONST_LINE.match(line)
            if m:
                ref = f"%{m.group(1)}"
                dtype = m.group(3)
                shape = _Reader(m.group(4)).sizes("")
                arr = _const_value(m.group(2), dtype, shape, constants or {})
                node = Tensor.make(OPS["constant"], (), (("value", ConstData(arr)),))
            else:
                rd = _Reader(line)
                kind, ref = rd.next()
                if kind != "ref":
                    raise ValueError("a line starts with %<number> = or return")
                rd.expect("=")
                kind, op_name = rd.next()
                if kind != "name" or op_name not in OPS:
                    raise ValueError(f"unknown op {op_name!r}")
                attrs: dict[str, Any] = {}
                if rd.accept("["):
                    while not rd.accept("]"):
                        kind, key = rd.next()
                        if kind != "name":
                            raise ValueError(f"expected an attribute name, found {key!r}")
                        rd.expect("=")
                        attrs[key] = rd.value()
                        if not rd.accept(","):
                            rd.expect("]")
                            break
                rd.expect("(")
                inputs = []
                while not rd.accept(")"):
                    kind, arg = rd.next()
                    if kind != "ref" or arg not in nodes:
                        raise ValueError(f"unknown value {arg!r}")
                    inputs.append(nodes[arg])
                    if not rd.accept(","):
                        rd.expect(")")
                        break
                rd.expect(":")
                kind, dtype = rd.next()
                rd.expect("[")
                shape = rd.sizes("]")
                if not rd.at_end():
                    raise ValueError(f"unexpected {rd.peek()[1]!r} after the type")
                nin = OPS[op_name].extra.get("nin")
                if nin is not None and len(inputs) != nin:
                    raise ValueError(f"{op_name} takes {nin} input{'s' if nin > 1 else ''}, "
                                     f"got {len(inputs)}")
                if op_name == "placeholder":
                    attrs["dtype"] = dtype
                    attrs["shape"] = shape
                node = Tensor.make(OPS[op_name], tuple(inputs), tuple(sorted(attrs.items())))
            if node.dtype != dtype or node.shape != shape:
                raise ValueError(f"the text says {dtype}{list(shape)} but {node.op.name} gives "
                                 f"{node.dtype}{list(node.shape)}")
            if ref in nodes:
                raise ValueError(f"{ref} is defined twice")
            nodes[ref] = node
        except SymgradError as exc:
            raise ParseError(f"line {lineno}: {exc}\n  {line}") from None
        except (ValueError, TypeError, SyntaxError, KeyError) as exc:
            raise ParseError(f"line {lineno}: {exc}\n  {line}") from None
    if outputs is None:
        raise ParseError("no return line")
    return outputs


def constants_of(outputs: Sequence[Tensor]) -> dict[str, np.ndarray]:
    """The arrays of the constants ``outputs`` use, by digest (for :func:`parse_text`)."""
    return {n.attr("value").digest: n.attr("value").array
            for n in toposort(outputs) if n.op.name == "constant"}
