"""Reading graphs: let-bound formulas, SymPy, LaTeX, DOT and pictures.

Every reader first runs a pipeline (by default the one that makes derived gradients
readable: autodiff plus the clean-up passes that are registered), then prints the graph
with each shared subexpression bound once to a name, so a formula is never exponentially
larger than its graph.

Readability conventions in ``pretty``: implicit broadcasting (``broadcast_to``) and
reshapes that only add or drop axes of size 1 are not shown; a symbolic size prints as
``x.shape[0]``; ``one_hot(y, 10)`` prints as ``onehot(y)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy as sp

from symgrad.ir.graph import toposort, users
from symgrad.ir.shape import Dim, Size
from symgrad.ir.tensor import Tensor, size_owners
from symgrad.passes.manager import known_passes, run_pipeline

_READABLE = ["canonicalize", "stabilize", "autodiff", "stabilize", "canonicalize", "fold",
             "canonicalize", "cse", "dce"]


def readable_pipeline() -> str:
    """The pipeline the readers run: autodiff plus whichever clean-up passes exist."""
    have = known_passes()
    return ",".join(p for p in _READABLE if p in have)


def _prepare(outputs: Tensor | Sequence[Tensor], pipeline: str | None) -> tuple[list[Tensor], bool]:
    single = isinstance(outputs, Tensor)
    outs: list[Tensor] = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    outs, _ = run_pipeline(outs, pipeline if pipeline is not None else readable_pipeline())
    return outs, single


# -- let-bound text --------------------------------------------------------------------------
_INFIX = {
    "add": ("+", 1), "sub": ("-", 1), "mul": ("*", 2), "div": ("/", 2), "matmul": ("@", 2),
    "pow": ("**", 4), "less": ("<", 0), "less_equal": ("<=", 0), "greater": (">", 0),
    "greater_equal": (">=", 0), "equal": ("==", 0), "not_equal": ("!=", 0),
    "logical_and": ("&", 0), "logical_or": ("|", 0),
}
_HIDDEN = {"broadcast_to", "cast"}


def _size_text(s: Size, names: dict[str, str]) -> str:
    if isinstance(s, int):
        return str(s)
    if s.is_symbol():
        sym = s.terms[0][0][0]
        assert isinstance(sym, str)
        return names.get(sym, sym)
    return "(" + str(s) + ")"


def _size_names(order: list[Tensor]) -> dict[str, str]:
    """Readable names of the unnamed symbolic sizes (``None`` in a placeholder's shape):
    ``x.shape[0]`` for the size symbol ``x.0``."""
    names: dict[str, str] = {}
    symbols = {sym for n in order for s in n.shape if isinstance(s, Dim) for sym in s.symbols}
    symbols |= {sym for n in order if n.op.name == "dim" and isinstance(n.attr("size"), Dim)
                for sym in n.attr("size").symbols}
    placeholders = [n for n in order if n.op.name == "placeholder"]
    for sym in sorted(symbols):
        # the placeholder may be in the graph, or used only for its sizes
        for n in placeholders + size_owners(sym):
            for axis, s in enumerate(n.shape):
                if isinstance(s, Dim) and s.is_symbol() and sym == s.terms[0][0][0] == f"{n.name}.{axis}":
                    names.setdefault(sym, f"{n.name}.shape[{axis}]")
    return names


def _is_unit_reshape(node: Tensor) -> bool:
    """A reshape that only adds or drops size-1 axes (or renames equal symbolic sizes)."""
    if node.op.name != "reshape":
        return False
    a = [s for s in node.inputs[0].shape if s != 1]
    b = [s for s in node.shape if s != 1]
    return len(a) == len(b) and all(
        x == y or not (isinstance(x, int) and isinstance(y, int)) for x, y in zip(a, b)
    )


class _Printer:
    def __init__(self, outputs: list[Tensor], hide: bool = True) -> None:
        self.order = toposort(outputs)
        self.hide = hide
        self.uses = {k: len(v) for k, v in users(self.order).items()}
        self.outputs = {id(o) for o in outputs}
        self.names: dict[int, str] = {
            id(n): n.name or "x" for n in self.order if n.op.name == "placeholder"}
        self.sizes = _size_names(self.order)
        self.lets: list[tuple[str, str]] = []
        self.text: dict[int, tuple[str, int]] = {}
        self.counter: dict[str, int] = {}

    def transparent(self, n: Tensor) -> bool:
        return self.hide and (n.op.name in _HIDDEN or _is_unit_reshape(n))

    def leaf(self, n: Tensor) -> tuple[str, int] | None:
        op = n.op.name
        if op == "placeholder":
            return self.names[id(n)], 9
        if op == "constant":
            arr = n.attr("value").array
            if arr.size == 1:
                v = arr.reshape(()).item()
                text = repr(v) if not isinstance(v, float) else f"{v:g}"
                return text, (9 if not text.startswith("-") else 3)
            return f"const{list(arr.shape)}", 9
        if op == "dim":
            return _size_text(n.attr("size"), self.sizes), 9
        return None

    def expr(self, n: Tensor) -> tuple[str, int]:
        op = n.op.name
        args = [self.ref(i) for i in n.inputs]
        if op in _INFIX:
            sym, prec = _INFIX[op]
            (a, pa), (b, pb) = args
            left = a if pa >= prec else f"({a})"
            right_ok = pb > prec or (pb == prec and op in ("add", "mul"))
            if op == "pow":
                left = a if pa > prec else f"({a})"
                right_ok = pb >= prec
            right = b if right_ok else f"({b})"
            return f"{left} {sym} {right}", prec
        if op == "neg":
            a, pa = args[0]
            return (f"-{a}" if pa >= 3 else f"-({a})"), 3
        if op == "transpose":
            a, pa = args[0]
            perm = n.attr("perm")
            if tuple(perm) == tuple(range(len(perm)))[::-1]:
                return (f"{a}.T" if pa >= 9 else f"({a}).T"), 9
            return f"transpose({a}, {tuple(perm)})", 9
        if op == "one_hot":
            return f"onehot({args[0][0]})", 9
        if op in ("sum", "max", "min", "prod", "logsumexp", "argmax", "argmin"):
            axes = n.attr("axes")
            full = len(axes) == n.inputs[0].ndim
            ax = "" if full else f", axis={axes[0] if len(axes) == 1 else axes}"
            return f"{op}({args[0][0]}{ax})", 9
        if op in ("softmax", "log_softmax"):
            ax = n.attr("axis")
            tail = "" if ax == n.ndim - 1 else f", axis={ax}"
            return f"{op}({args[0][0]}{tail})", 9
        if op == "reshape":
            shape = ", ".join(_size_text(s, self.sizes) for s in n.shape)
            return f"reshape({args[0][0]}, ({shape}{',' if n.ndim == 1 else ''}))", 9
        if op == "cast":
            return f"{n.dtype}({args[0][0]})", 9
        if op == "grad":
            return f"grad({args[0][0]}, {args[1][0]})", 9
        inner = ", ".join(a for a, _ in args)
        return f"{op}({inner})", 9

    def ref(self, n: Tensor) -> tuple[str, int]:
        if id(n) in self.text:
            return self.text[id(n)]
        leaf = self.leaf(n)
        if leaf is not None:
            self.text[id(n)] = leaf
            return leaf
        if self.transparent(n):
            out = self.ref(n.inputs[0])
            self.text[id(n)] = out
            return out
        text, prec = self.expr(n)
        if self.uses.get(id(n), 0) > 1 and len(text) > 12 and not (
            id(n) in self.outputs and self.uses.get(id(n), 0) < 2
        ):
            k = self.counter.get(n.op.name, 0)
            self.counter[n.op.name] = k + 1
            name = f"{n.op.name}{k}"
            self.lets.append((name, text))
            self.text[id(n)] = (name, 9)
        else:
            self.text[id(n)] = (text, prec)
        return self.text[id(n)]

    def run(self, outputs: list[Tensor], labels: list[str]) -> str:
        for n in self.order:  # inputs first, so lets come out in dependency order
            if id(n) not in self.outputs:
                self.ref(n)
        finals = [(label, self.ref(o)[0]) for label, o in zip(labels, outputs)]
        lines = [f"{name} = {text}" for name, text in self.lets]
        lines += [f"{label} = {text}" for label, text in finals]
        return "\n".join(lines)


def pretty(outputs: Tensor | Sequence[Tensor], names: Sequence[str] | None = None,
           pipeline: str | None = None) -> str:
    """A readable let-bound formula for each output (after autodiff and clean-up).

    Each subexpression used more than once is computed once and bound to a name.
    """
    outs, single = _prepare(outputs, pipeline)
    labels = list(names) if names is not None else (
        ["out"] if single else [f"out{k}" for k in range(len(outs))])
    return _Printer(outs).run(outs, labels)


# -- SymPy --------------------------------------------------------------------------------------
_TENSOR_FUNCS: dict[str, Any] = {}


def _func(name: str) -> Any:
    if name not in _TENSOR_FUNCS:
        _TENSOR_FUNCS[name] = sp.Function(name)
    return _TENSOR_FUNCS[name]


def _tree_sizes(order: list[Tensor]) -> dict[int, int]:
    size: dict[int, int] = {}
    for n in order:
        size[id(n)] = 1 + sum(size[id(i)] for i in n.inputs)
    return size


# SymPy walks expressions recursively: the let form keeps each inlined expression at most
# this deep, so graphs of any depth convert
_MAX_INLINE_DEPTH = 48


def to_sympy(
    outputs: Tensor | Sequence[Tensor],
    pipeline: str | None = None,
    bindings: bool | None = None,
    max_inline: int = 400,
) -> Any:
    """A SymPy expression for an elementwise or scalar graph.

    Placeholders become Symbols named after them; elementwise ops use their scalar SymPy
    forms; tensor ops (sums, matrix products, reshapes...) appear as SymPy functions of
    the same name. When the fully inlined expression would exceed ``max_inline`` nodes or
    nest deeper than 48 (or ``bindings=True``), shared nodes, and nodes at every 48th level
    of nesting, become Symbols and the result is
    ``(bindings, expr)`` with ``bindings`` a list of ``(Symbol, expr)`` in dependency order.
    Several outputs give a list of expressions (or ``(bindings, [exprs])``).
    """
    outs, single = _prepare(outputs, pipeline)
    order = toposort(outs)
    size_names = _size_names(order)
    sizes = _tree_sizes(order)
    depth: dict[int, int] = {}
    for n in order:
        depth[id(n)] = 1 + max((depth[id(i)] for i in n.inputs), default=0)
    use_let = bindings if bindings is not None else (
        max(sizes[id(o)] for o in outs) > max_inline or max(depth.values()) > _MAX_INLINE_DEPTH)
    uses = {k: len(v) for k, v in users(order).items()}
    exprs: dict[int, Any] = {}
    lets: list[tuple[Any, Any]] = []
    counter = [0]
    for n in order:
        op = n.op
        args = [exprs[id(i)] for i in n.inputs]
        if op.name == "placeholder":
            e: Any = sp.Symbol(n.name or "x", real=True)
        elif op.name == "constant":
            arr = n.attr("value").array
            if arr.size == 1:
                v = arr.reshape(()).item()
                e = sp.Integer(v) if isinstance(v, (int, bool, np.integer)) else sp.Float(v)
                if isinstance(v, float) and float(v).is_integer():
                    e = sp.Integer(int(v))
            else:
                e = sp.Symbol(f"c{counter[0]}")
                counter[0] += 1
        elif op.name == "dim":
            e = sp.Symbol(_size_text(n.attr("size"), size_names), positive=True, integer=True)
        elif op.name in ("broadcast_to", "cast") or _is_unit_reshape(n):
            e = args[0]
        elif op.scalar is not None and op.kind == "elementwise":
            e = op.scalar(*args)
        else:
            extra = []
            axes = n.attr("axes")
            if axes is not None and len(axes) != n.inputs[0].ndim:
                extra = [sp.Tuple(*axes)]
            e = _func(op.name)(*args, *extra)
        # in the let form, shared nodes are bound to Symbols, and so is every node whose
        # inlined expression would nest deeper than SymPy can walk without recursing on it
        # (real, as every value here is: SymPy's assumption queries on a plain Symbol
        # deep inside nested functions take exponential time)
        inline_depth = 1 + max((depth[id(i)] for i in n.inputs), default=0)
        if use_let and n.inputs and (uses.get(id(n), 0) > 1 or inline_depth > _MAX_INLINE_DEPTH):
            sym = sp.Symbol(f"{op.name}{len(lets)}", real=True)
            lets.append((sym, e))
            e = sym
            inline_depth = 0
        depth[id(n)] = inline_depth
        exprs[id(n)] = e
    results = [exprs[id(o)] for o in outs]
    result: Any = results[0] if single else results
    return (lets, result) if use_let else result


def latex(outputs: Tensor | Sequence[Tensor], pipeline: str | None = None) -> str:
    """LaTeX for the let-bound SymPy form (an ``aligned`` block when there are bindings)."""
    lets, result = to_sympy(outputs, pipeline, bindings=True)
    results = result if isinstance(result, list) else [result]
    lines = [f"{sp.latex(s)} &= {sp.latex(e)}" for s, e in lets]
    lines += [f"\\mathrm{{out}}_{{{k}}} &= {sp.latex(r)}" for k, r in enumerate(results)]
    if len(lines) == 1:
        return lines[0].split("&= ", 1)[1]
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


# -- pictures ------------------------------------------------------------------------------------
_DERIVATIVE_OPS = ("grad", "jvp", "jacobian")


def _forward_roots(outs: list[Tensor]) -> list[Tensor]:
    roots = []
    for n in toposort(outs):
        if n.op.name in _DERIVATIVE_OPS:
            roots.append(n.inputs[0])
    roots += [o for o in outs if o.op.name not in _DERIVATIVE_OPS]
    return roots


def _classify(outputs: Tensor | Sequence[Tensor], pipeline: str | None) -> tuple[list[Tensor], set[int]]:
    raw = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    pipe = pipeline if pipeline is not None else readable_pipeline()
    outs, _ = run_pipeline(raw, pipe)
    roots = _forward_roots(raw)
    fwd, _ = run_pipeline(roots, pipe) if roots else ([], None)
    return outs, {id(n) for n in toposort(fwd)}


def _label(n: Tensor) -> str:
    from symgrad.ir.graph import type_text

    if n.op.name == "placeholder":
        head = n.name or "?"
    elif n.op.name == "constant":
        head = _Printer([n]).leaf(n)[0]  # type: ignore[index]
    else:
        head = n.op.name
    return f"{head}\n{type_text(n)}"


def to_dot(outputs: Tensor | Sequence[Tensor], pipeline: str | None = None) -> str:
    """Graphviz DOT text: inputs grey, forward nodes blue, backward (derived) nodes orange."""
    outs, forward = _classify(outputs, pipeline)
    order = toposort(outs)
    ids = {id(n): f"n{k}" for k, n in enumerate(order)}
    out_ids = {id(o) for o in outs}
    lines = ["digraph symgrad {", "  rankdir=TB;", '  node [shape=box, style="rounded,filled", '
             'fontname="Helvetica", fontsize=10];']
    for n in order:
        if n.op.kind == "source":
            color = "#dddddd"
        elif id(n) in forward:
            color = "#cfe2ff"
        else:
            color = "#ffd8b0"
        label = _label(n).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        border = ", penwidth=2.5" if id(n) in out_ids else ""
        lines.append(f'  {ids[id(n)]} [label="{label}", fillcolor="{color}"{border}];')
    for n in order:
        for i in n.inputs:
            lines.append(f"  {ids[id(i)]} -> {ids[id(n)]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(outputs: Tensor | Sequence[Tensor], path: str, pipeline: str | None = None) -> str:
    """Draw the graph to ``path`` (.png or .svg): Graphviz's ``dot`` when installed, else
    a layered drawing with networkx and matplotlib. Forward and backward nodes differ in
    colour as in :func:`to_dot`."""
    import shutil
    import subprocess

    fmt = path.rsplit(".", 1)[-1].lower()
    if fmt not in ("png", "svg", "pdf"):
        raise ValueError(f"render: unsupported format {fmt!r} (use .png, .svg or .pdf)")
    dot = shutil.which("dot")
    if dot is not None:
        subprocess.run([dot, f"-T{fmt}", "-o", path], input=to_dot(outputs, pipeline).encode(),
                       check=True)
        return path
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("render needs Graphviz's `dot` or matplotlib "
                          "(pip install 'symgrad[examples]')") from exc
    import networkx as nx

    outs, forward = _classify(outputs, pipeline)
    order = toposort(outs)
    g = nx.DiGraph()
    for k in range(len(order)):
        g.add_node(k, layer=0)
    index = {id(n): k for k, n in enumerate(order)}
    for n in order:
        for i in n.inputs:
            g.add_edge(index[id(i)], index[id(n)])
    for depth, layer in enumerate(nx.topological_generations(g)):
        for k in layer:
            g.nodes[k]["layer"] = depth
    pos = nx.multipartite_layout(g, subset_key="layer", align="horizontal")
    pos = {k: (x, -y) for k, (x, y) in pos.items()}
    colors = ["#dddddd" if n.op.kind == "source" else "#cfe2ff" if id(n) in forward else "#ffd8b0"
              for n in order]
    layers = 1 + max((g.nodes[k]["layer"] for k in g.nodes), default=0)
    fig, ax = plt.subplots(figsize=(max(6, len(order) ** 0.5 * 2.5), max(4, layers * 0.9)))
    nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowsize=8, edge_color="#888888")
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colors, node_size=900, edgecolors="#444444")
    labels = {index[id(n)]: _label(n).split("\n")[0] for n in order}
    nx.draw_networkx_labels(g, pos, labels, ax=ax, font_size=7)
    ax.set_title("forward (blue) and backward (orange)")
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, format=fmt)
    plt.close(fig)
    return path


# -- which rule produced which term -------------------------------------------------------------
def _rule_text(op_doc: str) -> str:
    for sentence in op_doc.replace("\n", " ").split(". "):
        if "d/d" in sentence or "ullback" in sentence or "otangent" in sentence:
            return sentence.strip().rstrip(".")
    return op_doc.split(". ")[0].strip()


def explain_grad(y: Tensor, wrt: Tensor, pipeline: str | None = None) -> str:
    """For each term of dy/dwrt: the forward op whose derivative rule produced it, the
    rule, where the op was built, and the chain of ops back to ``y``."""
    from symgrad.ops.api import sum_to
    from symgrad.passes.autodiff import expand

    ys = expand([y])
    y2 = ys[0]
    if y2.shape != ():
        raise ValueError("explain_grad: y must be a scalar")
    wnew = expand([wrt])[0]
    from symgrad.ir.tensor import constant

    seed = constant(np.asarray(1, dtype=y2.dtype))
    order = toposort([y2])
    cts: dict[int, Tensor] = {id(y2): seed}
    contrib: dict[int, list[tuple[Tensor, int, Tensor]]] = {}
    from symgrad.ops import api as F

    for node in reversed(order):
        g = cts.get(id(node))
        if g is None or not node.inputs or node.op.pullback is None:
            continue
        for k, (inp, ct) in enumerate(zip(node.inputs, node.op.pullback(node, g))):
            if ct is None or inp.dtype not in ("float32", "float64"):
                continue
            if ct.shape != inp.shape:
                ct = sum_to(ct, inp.shape)
            contrib.setdefault(id(inp), []).append((node, k, ct))
            prev = cts.get(id(inp))
            cts[id(inp)] = ct if prev is None else F.add(prev, ct)
    terms = contrib.get(id(wnew), [])
    label = wrt.name or wrt.op.name
    if not terms:
        return f"d{y2.op.name}/d{label}: no path from the output to {label!r}; the gradient is 0"
    lines = [f"gradient of the output with respect to {label!r}: {len(terms)} term(s)"]
    for k, (node, idx, ct) in enumerate(terms, 1):
        chain = []
        cur = node
        while cur is not y2 and id(cur) in contrib:
            cur = contrib[id(cur)][0][0]
            chain.append(cur.op.name)
        formula = pretty(ct, names=[f"term{k}"], pipeline=pipeline).replace("\n", "\n      ")
        lines.append(f"  term {k}: from {node.op.name} (operand {idx}) built at {node.loc}")
        lines.append(f"    rule: {_rule_text(node.op.doc)}")
        if chain:
            lines.append(f"    path to the output: {node.op.name} -> " + " -> ".join(chain))
        lines.append(f"    {formula}")
    return "\n".join(lines)


__all__ = ["explain_grad", "latex", "pretty", "readable_pipeline", "render", "to_dot", "to_sympy"]

