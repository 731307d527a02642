"""The driver: graph -> pipeline -> backend -> a checked callable.

Casting policy for inputs (the same for every backend): an input whose dtype differs
from its placeholder's is converted when NumPy's ``same_kind`` rule allows it (bool to
anything, int to wider int or to float, float64 to float32); integers narrowed to int32
must fit. Anything else (float to int, numbers to bool) raises :class:`InputDTypeError`
naming the input. Inputs are never written to.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from symgrad.backends.base import Program, gc_paused, get_backend
from symgrad.errors import InputDTypeError, InputError
from symgrad.ir import shape as S
from symgrad.ir.dtypes import DTYPES
from symgrad.ir.graph import order_cache, placeholders, to_text, toposort
from symgrad.ir.shape import Dim, Size, shape_str
from symgrad.ir.tensor import Tensor, size_owners
from symgrad.ops.api import as_tensor
from symgrad.passes import DEFAULT_PIPELINE
from symgrad.passes.manager import PassManager, Report, parse_pipeline

_MISSING = object()


class Function:
    """A compiled function. Call it with arrays by placeholder name or by position.

    Attributes
    ----------
    source : the generated code.
    graph : the optimized graph's outputs; ``graph_text`` is its text form.
    pipeline : the exact pipeline text that ran.
    report : per-pass timings, node counts and the rewrites that fired.
    inputs : the input names, in positional order.
    """

    def __init__(
        self,
        inputs: list[Tensor],
        outputs: list[Tensor],
        single: bool,
        impl: Any,
        pipeline: str,
        report: Report,
        backend: str,
        checks: list[tuple[str, Size, Size, str, str]],
        check_nan: bool,
    ) -> None:
        self._inputs = inputs
        self.inputs = [t.label for t in inputs]
        self._index = {name: i for i, name in enumerate(self.inputs)}
        self.graph = outputs
        self._single = single
        self._impl = impl
        self.source: str = impl.source
        # native backends describe their lowered kernels in readable text
        self.kernels: str | None = getattr(impl, "kernels", None)
        self.pipeline = pipeline
        self.report = report
        self.backend = backend
        self._checks = checks
        self._check_nan = check_nan
        self._specs = [
            (t.label, DTYPES[t.dtype], t.shape, [
                (axis, s) for axis, s in enumerate(t.shape)
            ]) for t in inputs
        ]
        # backends that run on a GPU take device arrays (CuPy, PyTorch...) as they are
        self._device_ok = bool(getattr(impl, "accepts_device_arrays", False))
        self._fast = None if check_nan or self._device_ok else _fast_binder(inputs, checks)
        # a backend whose outputs are fresh arrays needs no aliasing check at call time;
        # on any other, an output may be a view of an input, of another output or of a
        # temporary that another output is a view of, whatever its op
        firsts: dict[int, int] = {}
        self._plan = []
        fresh_backend = bool(getattr(impl, "outputs_are_fresh", False))
        for k, o in enumerate(outputs):
            if firsts.setdefault(id(o), k) != k:
                self._plan.append(_COPY)
            elif fresh_backend:
                self._plan.append(_FRESH)
            elif o.op.name in ("placeholder", "constant"):
                self._plan.append(_COPY)
            else:
                self._plan.append(_CHECK)
        self._fresh = all(p == _FRESH for p in self._plan)
        self._simple = all(p != _CHECK for p in self._plan)
        # a native backend's fast call: checks, allocation and the run in one native
        # function for the common positional call; it hands anything else back
        make = getattr(impl, "fast_callable", None)
        self._cfast = make(single) if make is not None and self._fast is not None \
            and not checks and self._fresh else None
        self._slow = getattr(impl, "SLOW", None)
        # the keyword arguments in input order, as a tuple (KeyError when one is missing)
        self._by_name: Any = operator.itemgetter(*self.inputs) if len(inputs) > 1 else \
            (lambda kw, _n=tuple(self.inputs): tuple([kw[k] for k in _n]))

    @property
    def graph_text(self) -> str:
        return to_text(self.graph)

    @property
    def rewrites(self) -> dict[str, int]:
        return dict(self.report.rewrites)

    def __repr__(self) -> str:
        return f"<symgrad.Function ({', '.join(self.inputs)}) -> {len(self.graph)} outputs, {self.backend}>"

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[list[np.ndarray], dict[str, int]]:
        """Check and convert the call's arguments; return the arrays and the sizes."""
        n = len(self._inputs)
        if len(args) > n:
            raise InputError(f"expected at most {n} positional inputs ({', '.join(self.inputs)}), "
                             f"got {len(args)}")
        values: list[Any] = list(args) + [_MISSING] * (n - len(args))
        for key, v in kwargs.items():
            i = self._index.get(key)
            if i is None:
                raise InputError(f"unknown input {key!r}; inputs are: {', '.join(self.inputs)}")
            if values[i] is not _MISSING:
                raise InputError(f"input {key!r} given twice (by position and by name)")
            values[i] = v
        missing = [self.inputs[i] for i, v in enumerate(values) if v is _MISSING]
        if missing:
            raise InputError(f"missing input{'s' if len(missing) > 1 else ''}: {', '.join(missing)}")
        env: dict[str, int] = {}
        arrays = []
        for v, (name, dtype, shape, dims) in zip(values, self._specs):
            arr = v if self._device_ok and _on_device(v) else _convert(name, v, dtype, self._check_nan)
            if arr.ndim != len(shape):
                raise InputError(f"input {name!r}: expected rank {len(shape)} {shape_str(shape)}, "
                                 f"got shape {arr.shape}")
            for axis, s in dims:
                got = arr.shape[axis]
                if isinstance(s, int):
                    if got != s:
                        raise InputError(f"input {name!r}: axis {axis} has size {got}, expected {s} "
                                         f"(declared shape {shape_str(shape)})")
                elif s.is_symbol():
                    sym = s.terms[0][0][0]
                    assert isinstance(sym, str)
                    prev = env.get(sym)
                    if prev is None:
                        env[sym] = got
                    elif prev != got:
                        raise InputError(f"input {name!r}: axis {axis} has size {got}, but size "
                                         f"{sym!r} is already {prev} from an earlier input")
            arrays.append(arr)
        for v, (name, _, _shape, dims) in zip(arrays, self._specs):
            for axis, s in dims:
                if isinstance(s, Dim) and not s.is_symbol() and S.evaluate(s, env) != v.shape[axis]:
                    raise InputError(f"input {name!r}: axis {axis} has size {v.shape[axis]}, "
                                     f"expected {s} = {S.evaluate(s, env)}")
        for rel, a, b, what, loc in self._checks:
            va, vb = S.evaluate(a, env), S.evaluate(b, env)
            if rel == "==" and va != vb:
                raise InputError(f"{what}: sizes must match, but {a} is {va} and {b} is {vb} "
                                 f"(op built at {loc})")
            if rel == "<=" and va > vb:
                raise InputError(f"{what}: needs {a} <= {b}, but they are {va} and {vb} "
                                 f"(op built at {loc})")
        return arrays, env

    def __call__(self, /, *args: Any, **kwargs: Any) -> Any:  # "/": an input may be named self
        fast = self._cfast
        if fast is not None:
            if not kwargs:
                out = fast(*args)
            elif args or len(kwargs) != len(self.inputs):
                out = self._slow
            else:
                try:
                    out = fast(*self._by_name(kwargs))
                except KeyError:
                    out = self._slow
            if out is not self._slow:
                return out
        arrays = self._fast(args, kwargs) if self._fast is not None else None
        if arrays is None:
            arrays, _ = self.bind(args, kwargs)
        outs = self._impl(*arrays)
        if self._device_ok:  # such a backend returns fresh arrays, on the host or the device
            return outs[0] if self._single else tuple(outs)
        if self._fresh:
            result: tuple[np.ndarray, ...] = tuple(
                o if type(o) is np.ndarray else np.asarray(o) for o in outs)
        elif self._simple:
            result = tuple(
                np.array(o) if p == _COPY else o if type(o) is np.ndarray else np.asarray(o)
                for o, p in zip(outs, self._plan))
        elif len(outs) == 1:
            result = (_own(outs[0], arrays),)
        else:  # outputs share memory neither with the inputs nor with each other
            owned = list(outs)
            for k, p in enumerate(self._plan):
                if p == _COPY:
                    owned[k] = np.array(owned[k])
                elif p == _CHECK:
                    owned[k] = _own(owned[k], [*arrays, *owned[:k], *owned[k + 1:]])
            result = tuple(o if type(o) is np.ndarray else np.asarray(o) for o in owned)
        return result[0] if self._single else result


def _fast_binder(inputs: list[Tensor], checks: list[tuple[str, Size, Size, str, str]]) -> Any:
    """Generate a checker for the common call: arrays of exactly the declared dtypes and
    sizes. It returns the arrays, or None whenever anything differs, and the thorough
    ``Function.bind`` then converts or raises with a precise message. It accepts nothing
    that ``bind`` would reject. No user text enters the source: names are passed in the
    namespace and variables are numbered."""
    from symgrad.backends.base import size_expr

    n = len(inputs)
    ns: dict[str, Any] = {"_nd": np.ndarray, "_asarray": np.asarray}
    lines = ["def _fast(args, kwargs):", "    if kwargs:",
             f"        if args or len(kwargs) != {n}:", "            return None"]
    for i, t in enumerate(inputs):
        ns[f"_n{i}"] = t.label
        lines.append(f"        v{i} = kwargs.get(_n{i})")
        lines.append(f"        if v{i} is None:")
        lines.append("            return None")
    lines += ["    else:", f"        if len(args) != {n}:", "            return None"]
    if n:
        lines.append(f"        {', '.join(f'v{i}' for i in range(n))}, = args")
    syms: dict[str, str] = {}
    for i, t in enumerate(inputs):
        ns[f"_dt{i}"] = DTYPES[t.dtype]
        lines.append(f"    if type(v{i}) is not _nd:")
        lines.append(f"        v{i} = _asarray(v{i})")
        lines.append(f"    if v{i}.dtype is not _dt{i} or v{i}.ndim != {t.ndim}:")
        lines.append("        return None")
        for axis, s in enumerate(t.shape):
            got = f"v{i}.shape[{axis}]"
            if isinstance(s, int):
                lines.append(f"    if {got} != {s}:")
                lines.append("        return None")
            elif s.is_symbol():
                sym = s.terms[0][0][0]
                assert isinstance(sym, str)
                if sym in syms:
                    lines.append(f"    if {got} != {syms[sym]}:")
                    lines.append("        return None")
                else:
                    syms[sym] = f"z{len(syms)}"
                    lines.append(f"    {syms[sym]} = {got}")
    try:
        for t_i, t in enumerate(inputs):
            for axis, s in enumerate(t.shape):
                if isinstance(s, Dim) and not s.is_symbol():
                    lines.append(f"    if v{t_i}.shape[{axis}] != {size_expr(s, syms)}:")
                    lines.append("        return None")
        for rel, a, b, _what, _loc in checks:
            op = "!=" if rel == "==" else ">"
            lines.append(f"    if {size_expr(a, syms)} {op} {size_expr(b, syms)}:")
            lines.append("        return None")
    except KeyError:  # a size only the thorough path can evaluate
        return None
    lines.append(f"    return [{', '.join(f'v{i}' for i in range(n))}]")
    exec("\n".join(lines) + "\n", ns)  # no user text in the source: see the docstring
    return ns["_fast"]


_FRESH, _COPY, _CHECK = 0, 1, 2


def _own(value: Any, others: list[np.ndarray]) -> np.ndarray:
    """The output as a writable array that shares no memory with any of ``others`` (the
    inputs, and the other outputs)."""
    if type(value) is np.ndarray and value.base is None and value.flags.writeable and not any(
        value is a for a in others
    ):
        return value
    arr = np.asarray(value)
    if not arr.flags.writeable or (
        (arr.base is not None or any(arr is a for a in others))
        and any(np.may_share_memory(arr, a) for a in others)
    ):
        arr = np.array(arr, copy=True)
    return arr


def _on_device(value: Any) -> bool:
    """Whether ``value`` is an array in GPU memory (``__cuda_array_interface__`` or a
    DLPack device other than the CPU)."""
    if isinstance(value, np.ndarray):
        return False
    if hasattr(value, "__cuda_array_interface__"):
        return True
    dev = getattr(value, "__dlpack_device__", None)
    try:
        return dev is not None and int(dev()[0]) not in (1, 3)  # kDLCPU, kDLCUDAHost
    except Exception:
        return False


def _convert(name: str, value: Any, dtype: np.dtype[Any], check_nan: bool) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype != dtype:
        if arr.dtype.kind not in "biuf":
            raise InputDTypeError(f"input {name!r}: cannot use an array of dtype {arr.dtype} "
                                  f"as {dtype.name}")
        if not np.can_cast(arr.dtype, dtype, casting="same_kind"):
            raise InputDTypeError(f"input {name!r}: casting {arr.dtype} to {dtype.name} is not "
                                  "allowed (only same-kind conversions are; cast explicitly)")
        if dtype.kind == "i" and arr.dtype.kind in "iu" and arr.size:
            info = np.iinfo(dtype)
            if arr.min() < info.min or arr.max() > info.max:
                raise InputDTypeError(f"input {name!r}: values do not fit in {dtype.name}")
        arr = arr.astype(dtype)
    if check_nan and arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        raise InputError(f"input {name!r} contains NaN or Inf")
    return arr


def _size_sources(inputs: list[Tensor], nodes: list[Tensor]) -> dict[str, tuple[int, int]]:
    sources: dict[str, tuple[int, int]] = {}
    for pos, t in enumerate(inputs):
        for axis, s in enumerate(t.shape):
            if isinstance(s, Dim) and s.is_symbol():
                sym = s.terms[0][0][0]
                assert isinstance(sym, str)
                sources.setdefault(sym, (pos, axis))
    needed: set[str] = set()
    for n in nodes:
        for s in n.shape:
            if isinstance(s, Dim):
                needed |= s.symbols
    unknown = needed - set(sources)
    if unknown:
        raise ValueError(f"sizes {sorted(unknown)} cannot be read from any input's shape; "
                         "list a placeholder that has them in inputs=")
    return sources


def _size_only_inputs(found: list[Tensor], outputs: list[Tensor]) -> list[Tensor]:
    """Placeholders that the outputs use only for their sizes (``zeros_like(x)``,
    ``arange(x.shape[0])``), for each symbolic size no other input carries: the live
    placeholder with that size asked for most recently (an older one with the same size
    name may belong to another model still alive in the process), ordered by creation."""
    have: set[str] = set()
    for t in found:
        for s in t.shape:
            if isinstance(s, Dim):
                have |= s.symbols
    extra: dict[int, Tensor] = {}
    for n in toposort(outputs):
        sizes = list(n.shape) + ([n.attr("size")] if n.op.name == "dim" else [])
        for s in sizes:
            if isinstance(s, Dim):
                for sym in sorted(s.symbols - have):
                    owners = size_owners(sym)
                    if owners:
                        newest = owners[-1]
                        extra.setdefault(id(newest), newest)
                        have |= {x for d in newest.shape if isinstance(d, Dim) for x in d.symbols}
    return sorted(extra.values(), key=lambda t: t.serial)


def compile(  # noqa: A001 - the public name promised by the API
    outputs: Tensor | Sequence[Tensor],
    inputs: Sequence[Tensor | str] | None = None,
    backend: str = "numpy",
    pipeline: str | None = None,
    *,
    check_nan: bool = False,
    verify_each: bool = False,
    print_changed: bool = False,
    dump_dir: str | None = None,
) -> Function:
    """Compile symbolic outputs into a callable.

    Parameters
    ----------
    outputs : a tensor (the call returns one array) or a list/tuple of tensors (a tuple).
    inputs : placeholders (or their names) in positional order; by default every
        placeholder the outputs depend on or take a symbolic size from, in the order
        they were created.
    backend : ``"numpy"``, ``"llvm"``, ``"cuda"`` or a registered backend.
    pipeline : pass pipeline text; ``f.pipeline`` prints back exactly what ran.
    check_nan : reject inputs holding NaN or Inf.
    verify_each, print_changed, dump_dir : pass-manager instrumentation.
    """
    single = isinstance(outputs, Tensor)
    outs = [as_tensor(o) for o in ([outputs] if single else list(outputs))]
    found = placeholders(outs)
    if inputs is None:
        ins = sorted(found + _size_only_inputs(found, outs), key=lambda t: t.serial)
    else:
        by_name = {t.label: t for t in found}
        ins = []
        for item in inputs:
            if isinstance(item, str):
                if item not in by_name:
                    raise InputError(f"input {item!r} is not a placeholder the outputs use; they "
                                     f"use: {', '.join(sorted(n for n in by_name if n))}")
                item = by_name[item]
            if not isinstance(item, Tensor) or item.op.name != "placeholder":
                raise TypeError(f"inputs must be placeholders, got {item!r}")
            ins.append(item)
        unused = [t.label for t in found if all(t is not i for i in ins)]
        if unused:
            raise InputError(f"the outputs depend on placeholder{'s' if len(unused) > 1 else ''} "
                             f"{', '.join(map(repr, unused))} missing from inputs")
    names = [t.label for t in ins]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"two different placeholders are named {', '.join(map(repr, dup))}")

    pm = PassManager(parse_pipeline(pipeline if pipeline is not None else DEFAULT_PIPELINE),
                     verify_each=verify_each, print_changed=print_changed, dump_dir=dump_dir)
    with order_cache(), gc_paused():
        optimized = pm.run(outs)
        nodes = toposort(optimized)
        program = Program(ins, optimized, _size_sources(ins, nodes), nodes)
        impl = get_backend(backend).build(program)
    checks = []
    seen: set[tuple[Any, ...]] = set()
    for node in nodes:
        for rel, a, b, what in node.checks:
            key = (rel, a, b)
            if key not in seen:
                seen.add(key)
                checks.append((rel, a, b, what, node.loc))
    text = pipeline if pipeline is not None else DEFAULT_PIPELINE
    return Function(ins, optimized, single, impl, text, pm.report, backend, checks, check_nan)
