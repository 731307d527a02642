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
from symgrad.ops.tensor_ops import _np_slice_of

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
                return self._fn(*arrays)
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


def _slice_grad_sums(program: Program) -> tuple[dict[int, tuple[list[Tensor], list[Tensor]]], set[int]]:
    """The sums of slice gradients to compute into one buffer each.

    Each maximal tree of float ``add`` (one shape throughout) with at least one
    ``slice_grad`` leaf, whose inner nodes and ``slice_grad`` leaves have no other user,
    becomes a plan ``root id -> (dense leaves, slice_grad leaves)``: the dense terms are
    summed into a fresh buffer and each slice gradient's operand added into its slice, so
    no zero-padded full tensor is made per slice. Also returns the ids of the nodes a plan
    absorbs (never emitted on their own).
    """
    users: dict[int, int] = {}
    for n in program.nodes:
        for i in n.inputs:
            users[id(i)] = users.get(id(i), 0) + 1
    for o in program.outputs:
        users[id(o)] = users.get(id(o), 0) + 1
    plans: dict[int, tuple[list[Tensor], list[Tensor]]] = {}
    claimed: set[int] = set()
    walked: set[int] = set()
    for root in reversed(program.nodes):  # users first: the largest trees first
        if id(root) in claimed or id(root) in walked or root.op.name != "add" \
                or root.dtype not in ("float32", "float64") or root.ndim == 0:
            continue
        inner: list[Tensor] = []
        dense: list[Tensor] = []
        scatter: list[Tensor] = []
        stack = [root]  # an explicit stack: an unrolled loop's gradient sums thousands of terms
        while stack:
            n = stack.pop()
            single = n is root or users.get(id(n), 0) == 1
            if single and n is not root and n.op.name == "slice_grad" and n.dtype == root.dtype \
                    and _static_steps(n.attr("index")):
                scatter.append(n)
            elif single and n.op.name == "add" and all(i.shape == root.shape for i in n.inputs):
                inner.append(n)
                stack += [n.inputs[1], n.inputs[0]]
            else:
                dense.append(n)
        if scatter:
            plans[id(root)] = (dense, scatter)
            claimed.update(id(m) for m in inner + scatter if m is not root)
        else:  # a subtree has a subset of these leaves: none is tried as a root again
            walked.update(id(m) for m in inner)
    return plans, claimed


def _static_steps(index: tuple[Any, ...]) -> bool:
    """Whether NumPy's reading of each axis's (start, stop, step) is known before the call:
    bounds known, or a positive step (a negative one over a symbolic size is read at run time)."""
    return all(step > 0 or (isinstance(start, int) and isinstance(stop, int))
               for start, stop, step in index)


def _index_text(index: tuple[Any, ...], shape: tuple[Any, ...], lit: Any) -> str:
    """``index`` (per axis (start, stop, step), see :func:`_static_steps`) as subscript text."""
    parts = []
    for (start, stop, step), size in zip(index, shape):
        if start == 0 and step == 1 and stop == size:
            parts.append(":")
            continue
        if isinstance(start, int) and isinstance(stop, int):
            s = _np_slice_of(start, stop, step)
            start, stop, step = ("" if v is None else v for v in (s.start, s.stop, s.step))
        else:
            start, stop = lit(start), lit(stop)
        parts.append(f"{start}:{stop}" + (f":{step}" if step != 1 else ""))
    return ", ".join(parts)


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

    plans, claimed = _slice_grad_sums(program)

    def reads(n: Tensor) -> list[Tensor]:
        if id(n) in plans:
            dense, scatter = plans[id(n)]
            return dense + [t.inputs[0] for t in scatter]
        return list(n.inputs)

    # each temporary is deleted after the statement that reads it last, so that a long
    # program holds only the arrays it still needs (outputs are never deleted)
    last_reader: dict[int, int] = {}
    for n in program.nodes:
        if id(n) not in claimed:
            for i in reads(n):
                last_reader[id(i)] = id(n)
    outputs = {id(o) for o in program.outputs}
    temps: dict[int, str] = {}

    def drop(n: Tensor) -> None:
        ids = dict.fromkeys(id(i) for i in reads(n))
        if id(n) not in last_reader:
            ids[id(n)] = None
        dead = [temps.pop(i) for i in ids if i in temps and last_reader.get(i, id(n)) == id(n)]
        if dead:
            lines.append(f"del {', '.join(dead)}")

    counts: dict[str, int] = {}
    for node in program.nodes:
        if id(node) in names or id(node) in claimed:
            continue
        op = node.op.name
        if id(node) in plans:
            k = counts.get(op, 0)
            counts[op] = k + 1
            var = namer.fresh(f"{op}_{k}")
            names[id(node)] = var
            dense, scatter = plans[id(node)]
            dtype = f"np.{node.dtype}"
            # (statement, the node it computes, the value it reads)
            steps: list[tuple[str, Tensor, Tensor | None]] = []
            if dense:  # a copy: the buffer is never an input, a constant or a value in use
                first = names[id(dense[0])]
                copy = f"{first}.copy()" if dense[0].dtype == node.dtype else f"{first}.astype({dtype})"
                steps.append((f"{var} = {copy}", node, dense[0]))
                steps += [(f"{var} += {names[id(d)]}", node, d) for d in dense[1:]]
            else:
                steps.append((f"{var} = np.zeros({lit(node.shape)}, dtype={dtype})", node, None))
            for t in scatter:
                where = _index_text(t.attr("index"), node.shape, lit)
                steps.append((f"{var}[{where}] += {names[id(t.inputs[0])]}", t, t.inputs[0]))
            last_step = {id(v): k for k, (_, _, v) in enumerate(steps) if v is not None}
            for k, (text, computes, value) in enumerate(steps):
                lines.append(text)
                line_nodes[len(lines) + 1] = computes
                if value is not None and last_step[id(value)] == k and id(value) in temps \
                        and last_reader[id(value)] == id(node):
                    lines.append(f"del {temps.pop(id(value))}")
            if id(node) not in outputs:
                temps[id(node)] = var
            drop(node)
            continue
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
        if op == "matmul" and node.dtype in ("float32", "float64"):
            # a @ b on the BLAS threads for this product's size (see backends/llvm/blas.py)
            from symgrad.backends.llvm.blas import matmul

            namespace["_ref_matmul"] = matmul
            expr = f"_ref_matmul({args[0]}, {args[1]})"
        lines.append(f"{var} = {expr}")
        line_nodes[len(lines) + 1] = node  # +1: the def line comes first
        if id(node) not in outputs:
            temps[id(node)] = var
        drop(node)

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
