"""The random program generator: one seed gives one :class:`~.program.Program`.

Programs are small (2 to 6 ops before the derived outputs) and numerically safe: each op
is only applied where its preconditions hold (``log`` and ``sqrt`` of values bounded away
from 0, ``exp`` of bounded values, division by values bounded away from 0, casts to int of
values that are never near an integer); where they do not, the generator first inserts
ops that make them hold (``sqrt(abs(x) + 0.1)``, ``exp(tanh(x))``, ...).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .program import (
    Derived,
    Invalid,
    Meta,
    Node,
    Program,
    _axes,
    _finite,
    broadcast,
    compact,
    enabled,
    infer_node,
)

UNARY = ("exp", "log", "sqrt", "tanh", "sigmoid", "sin", "softplus", "abs", "relu", "square", "negative")
BINARY = ("add", "subtract", "multiply", "divide", "maximum", "minimum")
REDUCE = ("sum", "mean", "max", "min", "prod", "logsumexp")
CATEGORIES = {
    "unary": 22, "binary": 18, "scalar": 6, "reduce": 14, "softmax": 4, "slice": 10,
    "reshape": 5, "transpose": 4, "expand": 4, "matmul": 6, "concat": 3, "cast": 4, "where": 4,
    "size_only": 3, "int_chain": 3, "prod_zeros": 2, "dim_value": 2, "canon": 3,
}


class Gen:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.prog = Program([], [], [], {}, seed)
        self.metas: list[Meta] = []
        self.pool: list[int] = []
        self.n_leaves = 0
        self.int_outputs: list[int] = []
        r = self.rng.random()
        self.dtype = "float32" if r < 0.7 else "float64"
        self.mixed = enabled("mixed_dtypes") and self.rng.random() < 0.2
        # shared symbolic sizes
        for name in ("n", "m")[: int(self.rng.integers(0, 3))]:
            self.prog.sizes[name] = self.size()

    # -- helpers ---------------------------------------------------------------------------
    def size(self) -> int:
        return int(self.rng.choice([0, 1, 1, 2, 2, 3, 3, 4, 5], p=[0.06] + [0.94 / 8] * 8))

    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def choice(self, seq: Any) -> Any:
        return seq[int(self.rng.integers(len(seq)))]

    def add(self, op: str, args: tuple[int, ...] = (), pool: bool = True, **params: Any) -> int | None:
        node = Node(op, args, tuple(params.items()))
        try:
            m = infer_node(node, [self.metas[a] for a in args], self.prog.sizes)
            if m.is_float and not m.nonfinite:
                _finite(m)
            if m.is_float and m.mag > 1e6:
                raise Invalid("too large")
        except Invalid:
            return None
        self.prog.nodes.append(node)
        self.metas.append(m)
        i = len(self.prog.nodes) - 1
        if pool:
            self.pool.append(i)
        return i

    def leaf_dtype(self) -> str:
        if self.mixed and self.chance(0.5):
            return "float64" if self.dtype == "float32" else "float32"
        return self.dtype

    def placeholder(self, spec: tuple[Any, ...], dtype: str | None = None, data: str | None = None,
                    pool: bool = True, fixed: dict[int, int] | None = None) -> int:
        name = f"x{self.n_leaves}"
        self.n_leaves += 1
        for i, s in enumerate(spec):
            if s is None:
                self.prog.sizes[f"{name}.{i}"] = (fixed or {}).get(i, self.size())
        dtype = dtype or self.leaf_dtype()
        if data is None:
            data = "int" if dtype in ("int32", "int64") else self.choice(["normal", "normal", "positive", "grid"])
        made = self.add("placeholder", (), pool, name=name, spec=spec, dtype=dtype, data=data)
        assert made is not None
        return made

    def random_spec(self) -> tuple[Any, ...]:
        rank = int(self.rng.choice([0, 1, 1, 2, 2, 2, 3]))
        spec: list[Any] = []
        for _ in range(rank):
            r = self.rng.random()
            if r < 0.15:
                spec.append(None)
            elif r < 0.25 and self.prog.sizes.keys() & {"n", "m"}:
                spec.append(self.choice(sorted(self.prog.sizes.keys() & {"n", "m"})))
            else:
                spec.append(self.size())
        return tuple(spec)

    @staticmethod
    def spec_of(dims: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """A placeholder spec with these sizes, or None where a size is an expression."""
        out: list[Any] = []
        for k, _ in dims:
            if isinstance(k, int) or ("[" not in k and "*" not in k):
                out.append(k)
            else:
                return None
        return tuple(out)

    def pick(self, pred: Any = None) -> int | None:
        cands = [i for i in self.pool if pred is None or pred(self.metas[i])]
        if not cands:
            return None
        if self.chance(0.5):
            return cands[-1]
        return self.choice(cands)

    def partner(self, m: Meta, exact_shape: bool = False) -> int | None:
        """A second operand that broadcasts with ``m``: an existing node, a new placeholder
        or constant of a compatible shape."""
        if self.chance(0.4):
            j = self.pick(lambda o: o.is_float and (o.dims == m.dims if exact_shape else
                                                     broadcast(o.dims, m.dims) == m.dims))
            if j is not None:
                return j
        dims = list(m.dims)
        if not exact_shape:
            dims = dims[int(self.rng.integers(0, len(dims) + 1)):] if self.chance(0.4) else dims
            dims = [(1, 1) if self.chance(0.25) else d for d in dims]
        spec = self.spec_of(tuple(dims))
        if spec is None:
            spec = tuple(1 if not isinstance(k, int) else k for k, _ in dims)
            if exact_shape and spec != tuple(k for k, _ in dims):
                return None
        if all(isinstance(s, int) for s in spec) and self.chance(0.25):
            shape = tuple(int(s) for s in spec)
            value = np.round(self.rng.uniform(-2, 2, shape), 2)
            return self.add("constant", (), True, value=value.tolist(), dtype=self.leaf_dtype())
        if enabled("symbolic_meet") and any(isinstance(s, str) for s in spec) and self.chance(0.5):
            # a size of its own, equal when called: two symbolic sizes meet
            sizes = dict(zip(range(len(spec)), [n for _, n in dims]))
            spec = tuple(None if isinstance(s, str) else s for s in spec)
            return self.placeholder(spec, fixed=sizes)
        return self.placeholder(spec)

    def positive(self, i: int) -> int | None:
        """A node with values bounded away from 0 made from node ``i``."""
        m = self.metas[i]
        if m.lo >= 0.2:
            return i
        if self.chance(0.5) and not m.zeros:
            a = self.add("abs", (i,))
            return None if a is None else self.add("scalar", (a,), c=0.1, how="add")
        s = self.add("square", (i,))
        return None if s is None else self.add("scalar", (s,), c=0.5, how="add")

    # -- categories ------------------------------------------------------------------------
    def unary(self) -> int | None:
        i = self.pick(lambda m: m.is_float)
        if i is None:
            return None
        op = self.choice(UNARY)
        m = self.metas[i]
        if op in ("log", "sqrt") and m.lo < 0.05:
            i = self.positive(i)
        elif op in ("exp", "softplus") and m.hi > 5:
            i = self.add("tanh", (i,))
        if i is None:
            return None
        return self.add(op, (i,))

    def binary(self) -> int | None:
        i = self.pick(lambda m: m.is_float)
        if i is None:
            return None
        op = self.choice(BINARY)
        j = self.partner(self.metas[i])
        if j is None:
            return None
        if op == "divide":
            j = self.positive(j)
            if j is None:
                return None
        if self.chance(0.5):
            i, j = j, i
            if op == "divide":
                i2 = self.positive(j)
                if i2 is None:
                    return None
                i, j = i, i2
        return self.add(op, (i, j))

    def canon(self) -> int | None:
        """A pattern the canonicalizer rewrites (add of a negation, ...), with a partner
        that may bring another dtype or another symbolic size."""
        i = self.pick(lambda m: m.is_float)
        if i is None:
            return None
        n = self.add("negative", (i,))
        j = self.partner(self.metas[i])
        if n is None or j is None:
            return None
        op, args = self.choice([("add", (n, j)), ("add", (j, n)), ("subtract", (j, n)),
                                ("multiply", (n, j))])
        return self.add(op, args)

    def scalar(self) -> int | None:
        i = self.pick(lambda m: m.is_float)
        if i is None:
            return None
        how = self.choice(["add", "sub", "rsub", "mul", "div"])
        c = float(self.choice([2.0, 0.5, -1.5, 3.0, 0.25]))
        return self.add("scalar", (i,), c=c, how=how)

    def axis_choice(self, ndim: int) -> Any:
        r = self.rng.random()
        if ndim == 0 or r < 0.3:
            return None if ndim == 0 or r < 0.25 else ()
        if r < 0.8 or ndim == 1:
            return int(self.rng.integers(-ndim, ndim))
        return tuple(sorted(int(a) for a in self.rng.choice(ndim, 2, replace=False)))

    def reduce(self) -> int | None:
        i = self.pick(lambda m: m.is_float)
        if i is None:
            return None
        m = self.metas[i]
        op = self.choice(REDUCE)
        axis = self.axis_choice(len(m.dims))
        keep = self.chance(0.3)
        if op in ("max", "min"):
            n = math.prod(m.shape[a] for a in _axes(axis, len(m.dims)))
            if n == 0 and not enabled("empty_max"):
                op = "sum"
        if op == "prod" and m.mag > 1.5:
            t = self.add("tanh", (i,))
            if t is None:
                return None
            i = t
        return self.add(op, (i,), axis=axis, keepdims=keep)

    def softmax(self) -> int | None:
        i = self.pick(lambda m: m.is_float and len(m.dims) >= 1)
        if i is None:
            return None
        nd = len(self.metas[i].dims)
        return self.add(self.choice(["softmax", "log_softmax"]), (i,), axis=int(self.rng.integers(-nd, nd)))

    def slice(self) -> int | None:
        i = self.pick(lambda m: len(m.dims) >= 1)
        if i is None:
            return None
        m = self.metas[i]
        key: list[Any] = []
        gather = enabled("gather") and self.chance(0.15)
        for k, n in m.dims:
            r = self.rng.random()
            if gather and isinstance(k, int) and n > 0:
                key.append([int(j) for j in self.rng.integers(-n, n, int(self.rng.integers(1, 4)))])
                gather = False
                continue
            if r < 0.1:
                key.append(None)
            if r < 0.35:
                key.append(slice(None))
            elif r < 0.5 and n > 0 and not any(isinstance(q, list) for q in key):
                idx = int(self.rng.integers(-n, n)) if isinstance(k, int) else int(self.rng.integers(0, n))
                key.append(idx)
            elif isinstance(k, int):
                step = int(self.choice([1, 1, 2, 3, -1, -1, -2]))
                lo = -n - 3 if step > 0 or enabled("neg_step_slice") else -n
                start = None if self.chance(0.3) else int(self.rng.integers(lo, n + 3))
                stop = None if self.chance(0.3) else int(self.rng.integers(-n - 3, n + 3))
                key.append(slice(start, stop, None if step == 1 and self.chance(0.5) else step))
            elif enabled("symbolic_slice") and n >= 1:
                start = int(self.rng.integers(0, min(n, 2) + 1))
                key.append(slice(start, None) if self.chance(0.5) else slice(None, -1 if n >= 1 else None))
            else:
                key.append(slice(None))
        while key and key[-1] == slice(None) and self.chance(0.7):
            key.pop()
        if not key:
            key = [slice(None, None, 2)] if isinstance(m.dims[0][0], int) else [slice(None)]
        return self.add("getitem", (i,), key=tuple(key))

    def reshape(self) -> int | None:
        i = self.pick(lambda m: len(m.dims) >= 1)
        if i is None:
            return None
        m = self.metas[i]
        if any(not isinstance(k, int) for k in m.keys):
            return self.add("reshape", (i,), shape=(-1,))
        n = m.size
        divisors = [d for d in range(1, n + 1) if n % d == 0] or [1]
        opts: list[tuple[int, ...]] = [(-1,), (1, -1), (-1, 1)]
        if n > 0:
            d = int(self.choice(divisors))
            opts += [(d, -1), (d, n // d), (n // d, 1, d)]
        else:
            opts += [(0, 3), (2, 0, 1)]
        return self.add("reshape", (i,), shape=self.choice(opts))

    def transpose(self) -> int | None:
        i = self.pick(lambda m: len(m.dims) >= 2)
        if i is None:
            return None
        nd = len(self.metas[i].dims)
        return self.add("transpose", (i,), axes=tuple(int(a) for a in self.rng.permutation(nd)))

    def expand(self) -> int | None:
        i = self.pick()
        if i is None:
            return None
        m = self.metas[i]
        ones = [a for a, (k, _) in enumerate(m.dims) if k == 1]
        if ones and self.chance(0.5):
            return self.add("squeeze", (i,), axis=int(self.choice(ones)))
        if self.chance(0.5) and m.is_float:
            # broadcast to a bigger shape, given by another node
            dims = [(self.size(),) * 2 if k == 1 and self.chance(0.5) else (k, n) for k, n in m.dims]
            dims = [(s, s) for s in [self.size() for _ in range(int(self.rng.integers(0, 2)))]] + dims
            spec = self.spec_of(tuple(dims))
            if spec is None or not enabled("size_only"):
                j = self.pick(lambda o: broadcast(m.dims, o.dims) == o.dims and o.dims != m.dims)
                if j is None:
                    return None
            else:
                j = self.placeholder(spec)
            return self.add("broadcast_like", (i, j))
        return self.add("expand_dims", (i,), axis=int(self.rng.integers(-len(m.dims) - 1, len(m.dims) + 1)))

    def matmul(self) -> int | None:
        i = self.pick(lambda m: m.is_float and len(m.dims) >= 1)
        if i is None:
            return None
        return self._product(i)

    def _product(self, i: int, int_dtype: str | None = None) -> int | None:
        m = self.metas[i]
        kdim = m.dims[-1]
        if kdim[1] == 0 and not enabled("inner_zero"):
            return None
        kspec = self.spec_of((kdim,))
        if kspec is None:
            return None
        dtype = int_dtype or m.dtype
        if self.chance(0.7 if int_dtype else 0.4):
            lead = [] if self.chance(0.7) else [self.size()]
            j = self.placeholder(tuple(lead) + kspec, dtype=dtype)
            return self.add("inner", (i, j))
        n = None if self.chance(0.2) else self.size()
        if len(m.dims) >= 3 and self.chance(0.5):
            batch = self.spec_of(m.dims[:-2])
            if batch is None:
                return None
            j = self.placeholder(batch + kspec + (n,), dtype=dtype)
        else:
            j = self.placeholder(kspec + ((n,) if self.chance(0.8) else ()), dtype=dtype)
        if self.chance(0.3) and len(self.metas[j].dims) >= 2:
            # the product the other way round: b.T @ a.T
            jt = self.add("transpose", (j,), axes=tuple(range(len(self.metas[j].dims) - 2)) + (
                len(self.metas[j].dims) - 1, len(self.metas[j].dims) - 2))
            if jt is not None and len(m.dims) >= 2:
                it = self.add("transpose", (i,), axes=tuple(range(len(m.dims) - 2)) + (
                    len(m.dims) - 1, len(m.dims) - 2))
                if it is not None:
                    return self.add("matmul", (jt, it))
        return self.add("matmul", (i, j))

    def concat(self) -> int | None:
        i = self.pick(lambda m: len(m.dims) >= 1 and m.is_float)
        if i is None:
            return None
        m = self.metas[i]
        static = [a for a, (k, _) in enumerate(m.dims) if isinstance(k, int)]
        if not static:
            return None
        ax = int(self.choice(static))
        if self.chance(0.3):
            j = i
        else:
            dims = list(m.dims)
            s = self.size()
            dims[ax] = (s, s)
            spec = self.spec_of(tuple(dims))
            if spec is None:
                return None
            j = self.placeholder(spec, dtype=m.dtype)
        return self.add("concatenate", (i, j), axis=ax - len(m.dims) if self.chance(0.3) else ax)

    def cast(self) -> int | None:
        if self.chance(0.5) or not enabled("int_cast"):
            i = self.pick(lambda m: m.is_float)
            if i is None:
                return None
            other = "float64" if self.metas[i].dtype == "float32" else "float32"
            return self.add("cast", (i,), dtype=other)
        # a value never near an integer, perhaps doubled (exactly), cast to an int and back
        i = self.pick(lambda m: m.is_float and m.exact and m.mag < 4)
        if i is None or self.chance(0.5):
            i = self.placeholder(self.random_spec(), data="grid")
        if self.chance(0.5):
            i2 = self.add("scalar", (i,), c=2.0, how="mul")
            i = i2 if i2 is not None else i
        c = self.add("cast", (i,), pool=False, dtype=self.choice(["int32", "int64", "bool"]))
        if c is None:
            return None
        f = self.add("cast", (c,), dtype=self.dtype)
        if f is not None and self.chance(0.6):
            return self.add(self.choice(["sin", "tanh", "square"]), (f,))
        return f

    def where(self) -> int | None:
        i = self.pick(lambda m: m.is_float)
        if i is None:
            return None
        m = self.metas[i]
        c = self.pick(lambda o: o.is_float and o.exact and broadcast(o.dims, m.dims) == m.dims)
        if c is None:
            c = self.partner(m)
            if c is None or not self.metas[c].exact:
                return None
        cond = self.add("greater", (c,), pool=False, c=float(self.choice([0.0, 0.5, -0.3])))
        if cond is None:
            return None
        j = self.partner(m)
        if j is None:
            return None
        return self.add("where", (cond, i, j) if self.chance(0.5) else (cond, j, i))

    def size_only(self) -> int | None:
        if not enabled("size_only"):
            return None
        spec = self.random_spec()
        i = self.placeholder(spec, pool=False) if self.chance(0.7) else self.pick()
        if i is None:
            return None
        m = self.metas[i]
        r = self.rng.random()
        if r < 0.3 and m.dims:
            a = self.add("arange", (i,), pool=False, axis=int(self.rng.integers(len(m.dims))))
            return None if a is None else self.add("cast", (a,), dtype=self.dtype)
        op = self.choice(["zeros_like", "ones_like", "full_like"])
        j = self.add(op, (i,), dtype=self.dtype)
        if j is not None and self.chance(0.5):
            k = self.pick(lambda o: o.is_float and broadcast(o.dims, m.dims) is not None and o is not self.metas[j])
            if k is not None:
                return self.add("add", (j, k))
        return j

    def int_chain(self) -> int | None:
        if not enabled("int_inner"):
            return None
        d = self.choice(["int32", "int64"])
        spec = (self.size(),) if self.chance(0.5) else (self.random_spec() or (self.size(),))
        i = self.placeholder(spec, dtype=d, data="int", pool=False)
        p = self._product(i, int_dtype=d)
        if p is None:
            return None
        self.pool = [q for q in self.pool if q != p]
        self.int_outputs.append(p)
        return self.add("cast", (p,), dtype=self.dtype)

    def prod_zeros(self) -> int | None:
        if not enabled("prod_zeros"):
            return None
        spec = self.random_spec() or (2,)
        i = self.placeholder(spec, dtype=self.dtype, data="zeros", pool=False)
        nd = len(self.metas[i].dims)
        return self.add("prod", (i,), axis=None if self.chance(0.5) else int(self.rng.integers(nd)),
                        keepdims=self.chance(0.3))

    def dim_value(self) -> int | None:
        if not enabled("dim_value"):
            return None
        i = self.pick(lambda m: m.is_float)
        if i is None:
            return None
        if enabled("dim_value_size_only"):
            j = self.pick(lambda m: any(not isinstance(k, int) for k in m.keys))
        else:  # a size of a value that i is computed from, so its placeholder is an input anyway
            up = self.ancestors(i)
            cands = [a for a in up if any(not isinstance(k, int) for k in self.metas[a].keys)]
            j = self.choice(cands) if cands else None
        if j is None:
            return None
        axes = [a for a, k in enumerate(self.metas[j].keys) if not isinstance(k, int)]
        d = self.add("dim_value", (j,), pool=False, axis=int(self.choice(axes)))
        if d is None:
            return None
        c = self.add("cast", (d,), pool=False, dtype=self.metas[i].dtype)
        return None if c is None else self.add(self.choice(["multiply", "add"]), (i, c))

    def ancestors(self, i: int) -> list[int]:
        seen = {i}
        for k in range(i, -1, -1):
            if k in seen:
                seen.update(self.prog.nodes[k].args)
        return sorted(seen)

    # -- the whole program -------------------------------------------------------------------
    def generate(self) -> Program:
        for _ in range(int(self.rng.integers(1, 3))):
            self.placeholder(self.random_spec())
        want = int(self.rng.integers(2, 7))
        made = 0
        names = list(CATEGORIES)
        weights = np.array([CATEGORIES[n] for n in names], float)
        for _ in range(want * 6):
            if made >= want:
                break
            cat = names[int(self.rng.choice(len(names), p=weights / weights.sum()))]
            if getattr(self, cat)() is not None:
                made += 1
        floats = [i for i in self.pool if self.metas[i].is_float and self.prog.nodes[i].op != "placeholder"]
        last = floats[-1] if floats else self.pool[-1]
        outs = [last]
        if len(floats) > 1 and self.chance(0.4):
            outs.append(self.choice(floats[:-1]))
        if enabled("alias_outputs") and self.chance(0.15):
            m = self.metas[last]
            if self.chance(0.5) and m.dims and isinstance(m.dims[0][0], int):
                s = self.add("getitem", (last,), pool=False, key=(slice(1, None),))
                if s is not None:
                    outs.append(s)
            else:
                outs.append(last)
        outs += [i for i in self.int_outputs if self.chance(0.6)]
        self.prog.outputs = outs
        self.derive(floats or [last])
        return compact(self.prog)

    def derive(self, floats: list[int]) -> None:
        targets = [i for i in floats if self.metas[i].deps and self.metas[i].is_float]
        if not targets:
            return
        derived: list[Derived] = []
        reducer = self.choice(["sum", "sumsin", "sumsq"])
        t = self.choice(targets) if self.chance(0.3) else targets[-1]
        deps = sorted(self.metas[t].deps)
        if self.chance(0.7):
            k = int(self.rng.integers(1, len(deps) + 1))
            derived.append(Derived("grad", t, tuple(sorted(str(w) for w in self.rng.choice(deps, k, replace=False))), reducer))
        if enabled("jvp") and self.chance(0.4):
            derived.append(Derived("jvp", t, (str(self.choice(deps)),)))
        zeros = any(self.prog.nodes[a].op == "prod" and self.metas[self.prog.nodes[a].args[0]].zeros
                    for a in self.ancestors(t))
        if enabled("hessian") and self.chance(0.6 if zeros else 0.15):
            w = str(self.choice(deps))
            size = next(m.size for n, m in zip(self.prog.nodes, self.metas)
                        if n.op == "placeholder" and n.p["name"] == w)
            kind = "hessian" if size <= 6 and self.chance(0.5) else "hvp"
            derived.append(Derived(kind, t, (w,), reducer))
        self.prog.derived = derived


def generate(seed: int) -> Program:
    return Gen(seed).generate()


__all__ = ["generate", "Gen"]
