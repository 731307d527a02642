"""The NumPy backend: readable Python source, one statement per node.

It is the reference every other backend is tested against. The generated source never
contains text a user chose: placeholder and size names pass through :class:`Namer`
(identifiers only), constants live in the function's namespace, and attributes are
rendered from ints, bools, tuples and sizes only.
"""

from __future__ import annotations

import linecache
import math
from typing import Any

import numpy as np

from symgrad.backends.base import Namer, Program, size_expr
from symgrad.errors import InputError
from symgrad.ir.shape import Dim
from symgrad.ir.tensor import ConstData, Tensor

_counter = [0]


class NumpyFunction:
    """The compiled callable: ``fn(*arrays) -> tuple of arrays``."""

    def __init__(self, source: str, fn: Any, lines: dict[int, Tensor]) -> None:
        self.source = source
        self._fn = fn
        self._lines = lines

    def __call__(self, *arrays: Any) -> tuple[Any, ...]:
        with np.errstate(all="ignore"):
            try:
                return self._fn(*arrays)  # type: ignore[no-any-return]
            except (IndexError, ValueError) as exc:
                node = self._node_of(exc)
                where = f" (op {node.op.name} built at {node.loc})" if node is not None else ""
                raise InputError(f"{exc}{where}") from None

    def _node_of(self, exc: BaseException) -> Tensor | None:
        tb = exc.__traceback__
        node = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self._fn.__code__.co_filename:
                node = self._lines.get(tb.tb_lineno)
            tb = tb.tb_next
        return node


class NumpyBackend:
    name = "numpy"

    def build(self, program: Program) -> NumpyFunction:
        return emit(program)


def _float_literal(value: float, dtype: str) -> str:
    if math.isnan(value):
        text = "np.nan"
    elif math.isinf(value):
        text = "np.inf" if value > 0 else "-np.inf"
    else:
        text = repr(float(value))
    return f"np.{dtype}({text})"


def emit(program: Program, fn_name: str = "symgrad_fn") -> NumpyFunction:
    namer = Namer(reserved=[fn_name])
    namespace: dict[str, Any] = {"np": np}
    names: dict[int, str] = {}
    sizes: dict[str, str] = {}
    lines: list[str] = []
    line_nodes: dict[int, Tensor] = {}

    params = []
    for t in program.inputs:
        names[id(t)] = namer.fresh(t.name or "x")
        params.append(names[id(t)])
    for sym, (pos, axis) in sorted(program.size_sources.items()):
        sizes[sym] = namer.fresh(sym)
        lines.append(f"{sizes[sym]} = {params[pos]}.shape[{axis}]")

    def lit(v: Any) -> str:
        if isinstance(v, bool) or v is None:
            return repr(v)
        if isinstance(v, (int, np.integer)):
            return str(int(v))
        if isinstance(v, Dim):
            return size_expr(v, sizes)
        if isinstance(v, float):
            return _float_literal(v, "float64")
        if isinstance(v, tuple):
            inner = ", ".join(lit(x) for x in v)
            return f"({inner},)" if len(v) == 1 else f"({inner})"
        if isinstance(v, str) and v.isidentifier():
            return repr(v)
        raise TypeError(f"cannot render attribute {v!r} in generated code")

    counts: dict[str, int] = {}
    for node in program.nodes:
        if id(node) in names:
            continue
        op = node.op.name
        args = [names[id(i)] for i in node.inputs]
        if op == "constant":
            arr = node.attr("value").array
            if arr.ndim == 0 and arr.dtype.kind == "f":
                names[id(node)] = _float_literal(float(arr), arr.dtype.name)
                continue
            if arr.ndim == 0 and arr.dtype.kind in "iub":
                names[id(node)] = f"np.{arr.dtype.name}({arr.item()!r})"
                continue
            name = namer.fresh(f"_const{len(namespace)}")
            namespace[name] = arr
            names[id(node)] = name
            continue
        if op == "placeholder":
            raise ValueError(f"placeholder {node.name!r} is not among the inputs")
        if op == "dim":
            expr = f"np.{node.dtype}({size_expr(node.attr('size'), sizes)})"
        elif op == "arange":
            expr = f"np.arange({size_expr(node.attr('size'), sizes)}, dtype=np.int64)"
        else:
            attrs = dict(node.attrs)
            template = node.op.numpy_expr
            if template is not None:
                rendered = {k: lit(v) for k, v in attrs.items()}
                expr = template.format(*args, args=", ".join(args), **rendered)
            else:
                if node.op.reference is None:
                    raise ValueError(f"op {op} has no NumPy reference")
                ref = f"_ref_{op}"
                namespace[ref] = node.op.reference
                # "checks" are size constraints compile.py verifies before the call
                kw = "".join(f", {k}={lit(v)}" for k, v in attrs.items()
                             if not isinstance(v, ConstData) and k != "checks")
                expr = f"{ref}({', '.join(args)}{kw})" if args else f"{ref}({kw[2:]})"
        k = counts.get(op, 0)
        counts[op] = k + 1
        var = namer.fresh(f"{op}_{k}")
        names[id(node)] = var
        lines.append(f"{var} = {expr}")
        line_nodes[len(lines) + 1] = node  # +1: the def line comes first

    outs = ", ".join(names[id(o)] for o in program.outputs)
    body = [f"def {fn_name}({', '.join(params)}):"]
    body += [f"    {line}" for line in lines]
    body.append(f"    return ({outs},)" if outs else "    return ()")
    source = "\n".join(body) + "\n"

    _counter[0] += 1
    filename = f"<symgrad-numpy-{_counter[0]}>"
    code = compile(source, filename, "exec")
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(code, namespace)  # the source holds no user text: see the module docstring
    return NumpyFunction(source, namespace[fn_name], line_nodes)
